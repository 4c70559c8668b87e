//! The discrete-event engine: schedules taker orders, passive book changes, liquidations and the
//! 100 ms publication windows of every symbol, and runs them in time order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::SmallRng;

use super::config::{MarketConfig, Stamp};
use super::noise::exponential;
use super::symbol::{SymbolParams, SymbolSim};

/// Price levels as (price, qty), best first (tests only).
#[cfg(test)]
pub(super) type Levels = Vec<(i64, i64)>;

/// Length of the shortest publication window.
const WINDOW_US: i64 = 100_000;

/// One internal event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoEvent {
    /// Channel, `<kind>.<SYMBOL>`, e.g. `trade.BTCUSDT`.
    pub channel: String,
    /// The symbol, e.g. `BTCUSDT`.
    pub symbol: String,
    /// Event time, µs since the epoch (scheduled or wall-clock, per `stamp`).
    pub ts_us: i64,
    /// The event as JSON, per `docs/demo-market.md`.
    pub payload: Vec<u8>,
}

/// What a scheduled activity is; the order is the tie-break at equal times (windows first, so a
/// window ending at `t` never contains an activity scheduled at `t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Task {
    Window,
    Taker,
    Passive,
    Liquidation,
}

impl Task {
    /// The recurring activities of a symbol, in the order of its clocks.
    const ACTIVITIES: [Task; 3] = [Task::Taker, Task::Passive, Task::Liquidation];
}

/// A recurring activity of one symbol: fixed period in `schedule` mode, exponential
/// inter-arrival times (same mean) in `wall` mode or for a Poisson activity.
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin_us: i64,
    /// Occurrences per 1000 time units; 0 disables the activity.
    rate_milli: u64,
    /// The time unit of the rate (a second or a minute), in µs.
    unit_us: u64,
    /// Random arrivals in both stamp modes.
    poisson: bool,
    k: u64,
    next_us: i64,
}

impl Clock {
    /// A clock at `rate_milli` occurrences per 1000 s.
    fn new(origin_us: i64, rate_milli: u64) -> Self {
        Self {
            origin_us,
            rate_milli,
            unit_us: 1_000_000,
            poisson: false,
            k: 0,
            next_us: origin_us,
        }
    }

    /// A Poisson clock at `rate_milli` occurrences per 1000 min.
    fn poisson_per_min(origin_us: i64, rate_milli: u64) -> Self {
        Self {
            unit_us: 60_000_000,
            poisson: true,
            ..Self::new(origin_us, rate_milli)
        }
    }

    /// Advances to the next occurrence and returns its time.
    fn step(&mut self, stamp: Stamp, rng: &mut SmallRng) -> i64 {
        self.k += 1;
        let span_us = u128::from(self.unit_us) * 1000;
        self.next_us = match stamp {
            Stamp::Schedule if !self.poisson => {
                let off = u128::from(self.k) * span_us / u128::from(self.rate_milli);
                self.origin_us + off as i64
            }
            _ => {
                let mean_us = span_us as f64 / self.rate_milli as f64;
                self.next_us + exponential(rng, mean_us).round() as i64
            }
        };
        self.next_us
    }
}

/// Offset of symbol `index` of `count` within one period of an activity at `rate_milli`
/// occurrences per 1000 s.
fn phase(rate_milli: u64, (index, count): (usize, usize)) -> i64 {
    if rate_milli == 0 {
        return 0;
    }
    let period_us = 1_000_000_000 / u128::from(rate_milli);
    (period_us * index as u128 / count.max(1) as u128) as i64
}

/// The synthetic exchange: a deterministic, synchronous engine emitting internal events.
pub struct DemoMarket {
    stamp: Stamp,
    symbols: Vec<SymbolSim>,
    clocks: Vec<[Clock; 3]>,
    heap: BinaryHeap<Reverse<(i64, Task, u32)>>,
}

impl DemoMarket {
    /// A market whose books and 24 h of history are ready at `start_us` (µs since the epoch).
    pub fn new(config: MarketConfig, start_us: i64) -> Self {
        let stamp = config.stamp();
        let mut symbols = Vec::with_capacity(config.symbols().len());
        let mut clocks = Vec::with_capacity(config.symbols().len());
        let mut heap = BinaryHeap::new();
        for (index, spec) in config.symbols().iter().enumerate() {
            let params = SymbolParams {
                seed: config.seed(),
                index,
                depth: config.depth_levels(),
                trades_per_sec: config.trades_per_sec(),
                intervals: config.kline_intervals(),
                perpetuals: config.perpetuals(),
                start_us,
            };
            let mut sim = SymbolSim::new(spec, &params);
            // Symbols are spread evenly over each period, so a fixed schedule does not make
            // every symbol trade at the same instant.
            let share = (index, config.symbols().len());
            let mut three = [
                Clock::new(
                    start_us + phase(config.trades_milli(), share),
                    config.trades_milli(),
                ),
                Clock::new(
                    start_us + phase(config.book_updates_milli(), share),
                    config.book_updates_milli(),
                ),
                Clock::poisson_per_min(start_us, config.liquidations_milli()),
            ];
            for (clock, task) in three.iter_mut().zip(Task::ACTIVITIES) {
                if clock.rate_milli == 0 {
                    continue;
                }
                let t = match (task, sim.perp.as_mut()) {
                    (Task::Liquidation, Some(perp)) => clock.step(stamp, &mut perp.rng),
                    (Task::Liquidation, None) => continue,
                    _ => clock.step(stamp, &mut sim.rng),
                };
                heap.push(Reverse((t, task, index as u32)));
            }
            symbols.push(sim);
            clocks.push(three);
        }
        let first_window = (start_us.div_euclid(WINDOW_US) + 1) * WINDOW_US;
        heap.push(Reverse((first_window, Task::Window, 0)));
        Self {
            stamp,
            symbols,
            clocks,
            heap,
        }
    }

    /// Runs the market up to `now_us` (wall-clock µs since the epoch), appending every event due
    /// by then to `out` in time order.
    pub fn advance(&mut self, now_us: i64, out: &mut Vec<DemoEvent>) {
        while let Some(&Reverse((t, task, index))) = self.heap.peek() {
            if t > now_us {
                break;
            }
            self.heap.pop();
            let ts = match self.stamp {
                Stamp::Schedule => t,
                Stamp::Wall => now_us,
            };
            let i = index as usize;
            match task {
                Task::Window => {
                    for sim in &mut self.symbols {
                        sim.on_window(t, ts, out);
                    }
                    self.heap.push(Reverse((t + WINDOW_US, Task::Window, 0)));
                }
                Task::Taker | Task::Passive => {
                    let sim = &mut self.symbols[i];
                    let slot = usize::from(task == Task::Passive);
                    if task == Task::Taker {
                        sim.taker(t, ts, out);
                    } else {
                        sim.passive(t, ts, out);
                    }
                    let next = self.clocks[i][slot].step(self.stamp, &mut sim.rng);
                    self.heap.push(Reverse((next, task, index)));
                }
                Task::Liquidation => {
                    let sim = &mut self.symbols[i];
                    sim.liquidation(ts, out);
                    let perp = sim.perp.as_mut().expect("scheduled only with perpetuals");
                    let next = self.clocks[i][2].step(self.stamp, &mut perp.rng);
                    self.heap.push(Reverse((next, task, index)));
                }
            }
        }
    }

    /// The time at which the next event is due (so the driver can sleep until then).
    pub fn next_due_us(&self) -> i64 {
        self.heap
            .peek()
            .map(|Reverse((t, _, _))| *t)
            .expect("the window task is always scheduled")
    }

    /// The simulated book of symbol `index`: (bids best first, asks best first, last update id),
    /// in ticks and lots.
    #[cfg(test)]
    pub(super) fn book_of(&self, index: usize) -> (Levels, Levels, u64) {
        use super::book::Side;
        let b = &self.symbols[index].book;
        b.check();
        (b.levels(Side::Bid), b.levels(Side::Ask), b.update_id())
    }
}
