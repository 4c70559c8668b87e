//! The USD-M perpetual of each symbol: its mark price, funding and forced orders, published on
//! `perp.<SYMBOL>` (field names and order per `docs/demo-market.md`). It draws from a generator of
//! its own and never touches the spot book, whose mid is its index price.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::fixed::{begin, key, push_dec8, push_int, SCALE};
use super::noise::{log_uniform, normal, uniform};
use super::symbol::{Kind, SymbolSim};
use super::DemoEvent;

/// Mean reversion of the premium, per second (back towards zero within about a minute).
const PREMIUM_KAPPA: f64 = 1.0 / 60.0;
/// Typical size of the premium: the stationary standard deviation of its random walk.
const PREMIUM_STD: f64 = 2e-4;
/// The premium stays within ± this.
const MAX_PREMIUM: f64 = 2e-3;
/// Time constant of `mark_price_avg`, in seconds.
const MARK_AVG_SECS: f64 = 8.0;
/// Interest part of the funding rate, per funding period.
const INTEREST: f64 = 1e-4;
/// The funding rate stays within ± this.
const MAX_FUNDING: f64 = 0.00375;
/// Length of a funding period: settlements at 00:00, 08:00 and 16:00 UTC.
pub(super) const FUNDING_MS: i64 = 8 * 3_600_000;
/// Distance of a liquidation's price from the mark, against the position, as a fraction.
const LIQ_DISTANCE: (f64, f64) = (0.001, 0.005);
/// Liquidation sizes, in quote currency (log-uniform).
const LIQ_NOTIONAL: (f64, f64) = (100.0, 50_000.0);

/// State of one symbol's perpetual.
pub(super) struct Perp {
    /// The perpetual's own generator (premium walk, liquidation times and orders).
    pub rng: SmallRng,
    /// Mark price over index price, minus one.
    premium: f64,
    /// Exponential moving average of the mark price, in 1e-8 units (none before the first).
    mark_avg: Option<f64>,
    /// Funding period (multiples of [`FUNDING_MS`] since the epoch) the running sums cover.
    period: i64,
    index_sum: i128,
    premium_sum: f64,
    samples: i64,
}

impl Perp {
    /// A perpetual whose premium starts at a random typical value.
    pub(super) fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let premium = (normal(&mut rng) * PREMIUM_STD).clamp(-MAX_PREMIUM, MAX_PREMIUM);
        Self {
            rng,
            premium,
            mark_avg: None,
            period: i64::MIN,
            index_sum: 0,
            premium_sum: 0.0,
            samples: 0,
        }
    }

    /// Moves the premium one second forward (a discrete Ornstein-Uhlenbeck walk).
    fn step(&mut self) {
        let sigma = PREMIUM_STD * (PREMIUM_KAPPA * (2.0 - PREMIUM_KAPPA)).sqrt();
        let z = normal(&mut self.rng);
        self.premium =
            (self.premium * (1.0 - PREMIUM_KAPPA) + sigma * z).clamp(-MAX_PREMIUM, MAX_PREMIUM);
    }

    /// Adds one per-second sample of the index to the running means of funding period `period`,
    /// starting afresh when the period changes.
    fn sample(&mut self, period: i64, index: i128) {
        if period != self.period {
            self.period = period;
            self.index_sum = 0;
            self.premium_sum = 0.0;
            self.samples = 0;
        }
        self.index_sum += index;
        self.premium_sum += self.premium;
        self.samples += 1;
    }
}

/// `units` (1e-8 units) rounded to the nearest multiple of `tick`, at least one tick.
fn on_tick(units: f64, tick: i64) -> i128 {
    ((units / tick as f64).round().max(1.0) as i128) * i128::from(tick)
}

/// The first funding time strictly after `t_ms`.
pub(super) fn next_funding_ms(t_ms: i64) -> i64 {
    (t_ms.div_euclid(FUNDING_MS) + 1) * FUNDING_MS
}

impl SymbolSim {
    /// The index price in 1e-8 units: the spot mid, or the last trade price if a side is empty.
    fn index_units(&self) -> i128 {
        let [bid, _, ask, _] = self.bbo();
        let twice = if bid > 0 && ask > 0 {
            bid + ask
        } else {
            2 * self.last_price
        };
        i128::from(twice) * i128::from(self.tick) / 2
    }

    /// Publishes the `mark_price` of the whole second `t_ms` (a no-op without perpetuals).
    pub(super) fn publish_mark_price(&mut self, t_ms: i64, ts: i64, out: &mut Vec<DemoEvent>) {
        let index = self.index_units();
        let tick = self.tick;
        let Some(perp) = self.perp.as_mut() else {
            return;
        };
        perp.step();
        perp.sample(t_ms.div_euclid(FUNDING_MS), index);
        let mark = index as f64 * (1.0 + perp.premium);
        let alpha = 1.0 - (-1.0 / MARK_AVG_SECS).exp();
        let avg = perp.mark_avg.map_or(mark, |a| a + alpha * (mark - a));
        perp.mark_avg = Some(avg);
        let n = perp.samples as f64;
        let settle = perp.index_sum as f64 / n;
        let funding = (perp.premium_sum / n + INTEREST).clamp(-MAX_FUNDING, MAX_FUNDING);
        let mut buf = std::mem::take(&mut self.buf);
        begin(&mut buf, "mark_price", &self.name, ts);
        key(&mut buf, "time_ms");
        push_int(&mut buf, t_ms);
        key(&mut buf, "mark_price");
        push_dec8(&mut buf, on_tick(mark, tick));
        key(&mut buf, "mark_price_avg");
        push_dec8(&mut buf, on_tick(avg, tick));
        key(&mut buf, "index_price");
        push_dec8(&mut buf, index);
        key(&mut buf, "estimated_settle_price");
        push_dec8(&mut buf, on_tick(settle, tick));
        key(&mut buf, "funding_rate");
        push_dec8(&mut buf, (funding * SCALE as f64).round() as i128);
        key(&mut buf, "next_funding_time_ms");
        push_int(&mut buf, next_funding_ms(t_ms));
        buf.push(b'}');
        self.buf = buf;
        self.push_event(Kind::Perp, ts, out);
    }

    /// Publishes one forced order of the perpetual at the current mark price (a no-op without
    /// perpetuals). A liquidated long sells below the mark, a liquidated short buys above it.
    pub(super) fn liquidation(&mut self, ts: i64, out: &mut Vec<DemoEvent>) {
        let index = self.index_units();
        let (tick, lot) = (self.tick, self.lot);
        let Some(perp) = self.perp.as_mut() else {
            return;
        };
        let rng = &mut perp.rng;
        let mark = index as f64 * (1.0 + perp.premium);
        let sell = rng.random::<bool>();
        let away = uniform(rng, LIQ_DISTANCE.0, LIQ_DISTANCE.1);
        let price = on_tick(
            if sell {
                mark * (1.0 - away)
            } else {
                mark * (1.0 + away)
            },
            tick,
        );
        let mark = on_tick(mark, tick);
        let avg = on_tick(uniform(rng, price as f64, mark as f64), tick);
        let notional = log_uniform(rng, LIQ_NOTIONAL.0.ln(), LIQ_NOTIONAL.1.ln());
        // Lots = notional / (price × lot), both in 1e-8 units.
        let lots = notional * (SCALE as f64 * SCALE as f64) / (price as f64 * lot as f64);
        let lots = (lots.round() as i64).max(1);
        let mut buf = std::mem::take(&mut self.buf);
        begin(&mut buf, "liquidation", &self.name, ts);
        key(&mut buf, "side");
        buf.extend_from_slice(if sell { b"\"SELL\"" } else { b"\"BUY\"" });
        key(&mut buf, "price");
        push_dec8(&mut buf, price);
        key(&mut buf, "qty");
        push_dec8(&mut buf, i128::from(lots) * i128::from(lot));
        key(&mut buf, "avg_price");
        push_dec8(&mut buf, avg);
        buf.push(b'}');
        self.buf = buf;
        self.push_event(Kind::Perp, ts, out);
    }
}
