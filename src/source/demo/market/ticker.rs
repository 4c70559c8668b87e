//! Rolling 24-hour statistics from per-minute buckets, and the invented history that fills them
//! at start.

use std::collections::VecDeque;

use rand::rngs::SmallRng;

use super::candles::Stats;
use super::noise::{normal, uniform};

const MIN_MS: i64 = 60_000;
/// Length of the rolling window.
pub(super) const WINDOW_MS: i64 = 86_400_000;

/// Trades of one UTC minute.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    pub minute_ms: i64,
    pub stats: Stats,
}

/// The rolling window: the buckets that intersect the last 24 hours.
#[derive(Debug)]
pub(super) struct Ticker {
    buckets: VecDeque<Bucket>,
    /// Price of the last trade before the oldest bucket.
    prev_close: i64,
}

/// Parameters of the invented history.
pub(super) struct HistorySpec {
    /// Engine start (ms); history ends there.
    pub start_ms: i64,
    /// Last price of the history (ticks): the starting mid price.
    pub end_price: i64,
    /// Mean trades per minute.
    pub trades_per_min: f64,
    /// Mean lots per trade.
    pub lots_per_trade: f64,
    /// Standard deviation of the log price over one minute.
    pub sigma_min: f64,
}

impl Ticker {
    /// A window holding invented trades for the 24 hours before `spec.start_ms` (including the
    /// current, partial minute), with trade ids from 1. Returns it with the last trade id used.
    pub(super) fn invent(spec: &HistorySpec, rng: &mut SmallRng) -> (Self, i64) {
        let m0 = spec.start_ms.div_euclid(MIN_MS) * MIN_MS;
        let n = (WINDOW_MS / MIN_MS) as usize + 1;
        // Walk the price backwards from the end price, one minute at a time.
        let mut shapes = Vec::with_capacity(n);
        let mut close = (spec.end_price as f64).ln();
        for i in (0..n).rev() {
            let minute = m0 - (n - 1 - i) as i64 * MIN_MS;
            let frac = if i == n - 1 {
                (spec.start_ms - m0) as f64 / MIN_MS as f64
            } else {
                1.0
            };
            let sigma = spec.sigma_min * frac.sqrt();
            let open = close - sigma * normal(rng);
            let hi = open.max(close) + (sigma * normal(rng) * 0.5).abs();
            let lo = open.min(close) - (sigma * normal(rng) * 0.5).abs();
            shapes.push((minute, frac, open, hi, lo, close));
            close = open;
        }
        shapes.reverse();
        let ticks = |ln: f64| (ln.exp().round() as i64).max(1);
        let prev_close = ticks(shapes[0].2);
        let mut next_id = 1i64;
        let mut buckets = VecDeque::with_capacity(n + 2);
        for &(minute, frac, o, h, l, c) in &shapes {
            let mut stats = Stats::EMPTY;
            let count = (spec.trades_per_min * frac * uniform(rng, 0.6, 1.4)).round() as i64;
            if count > 0 {
                let (open, close) = (ticks(o), ticks(c));
                let high = ticks(h).max(open).max(close);
                let low = ticks(l).min(open).min(close);
                let vwap = i128::from((open + high + low + close) / 4);
                let lots = spec.lots_per_trade * uniform(rng, 0.7, 1.3);
                let volume = ((count as f64 * lots).round() as i128).max(i128::from(count));
                let buy = (volume as f64 * uniform(rng, 0.4, 0.6)).round() as i128;
                stats = Stats {
                    first_id: next_id,
                    last_id: next_id + count - 1,
                    open,
                    high,
                    low,
                    close,
                    count,
                    volume,
                    quote: volume * vwap,
                    buy_volume: buy,
                    buy_quote: buy * vwap,
                };
                next_id += count;
            }
            buckets.push_back(Bucket {
                minute_ms: minute,
                stats,
            });
        }
        (
            Self {
                buckets,
                prev_close,
            },
            next_id - 1,
        )
    }

    /// The buckets, oldest first.
    pub(super) fn buckets(&self) -> impl Iterator<Item = &Bucket> {
        self.buckets.iter()
    }

    /// Adds the trades of the second starting at `sec_ms`.
    pub(super) fn record_second(&mut self, sec_ms: i64, stats: &Stats) {
        let minute = sec_ms.div_euclid(MIN_MS) * MIN_MS;
        if self.buckets.back().is_none_or(|b| b.minute_ms < minute) {
            self.buckets.push_back(Bucket {
                minute_ms: minute,
                stats: Stats::EMPTY,
            });
        }
        let last = self.buckets.back_mut().expect("bucket exists");
        last.stats.merge(stats);
    }

    /// Drops the buckets that ended before `t_ms - 24h`; returns the statistics of the rest and
    /// the price of the last trade before them.
    pub(super) fn window(&mut self, t_ms: i64) -> (Stats, i64) {
        while let Some(front) = self.buckets.front() {
            if front.minute_ms + MIN_MS > t_ms - WINDOW_MS {
                break;
            }
            if front.stats.count > 0 {
                self.prev_close = front.stats.close;
            }
            self.buckets.pop_front();
        }
        let mut total = Stats::EMPTY;
        for b in &self.buckets {
            total.merge(&b.stats);
        }
        (total, self.prev_close)
    }
}
