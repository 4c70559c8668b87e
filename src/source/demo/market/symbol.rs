//! The simulation of one symbol: a latent fair price on a random walk, taker orders that sweep
//! the book, makers that quote around the fair price, cancel, and keep `depth_levels` levels per
//! side. Publication of the resulting events lives in `publish.rs`.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::book::{Book, Fill, Side, SERIES};
use super::candles::{Candle, KlineInterval, Stats};
use super::config::SymbolSpec;
use super::fixed::SCALE;
use super::noise::{exponential, log_uniform, normal};
use super::perp::Perp;
use super::ticker::{HistorySpec, Ticker};

/// Volatility of the fair price: standard deviation of its log per √second.
const SIGMA: f64 = 3e-5;
/// Mean reversion of the fair price towards the starting price, per second (≈ 3 days).
const KAPPA: f64 = 1.0 / (3.0 * 86_400.0);
/// The fair price stays within this factor of the starting price.
const MAX_FACTOR: f64 = 4.0;
/// Average gap between price levels, relative to the price.
const LEVEL_GAP: f64 = 1e-5;
/// Most levels one taker order may touch.
const MAX_SWEEP: usize = 5;
/// Maker order sizes, in quote currency (log-uniform).
const MAKER_NOTIONAL: (f64, f64) = (10.0, 10_000.0);
/// Taker order sizes, in quote currency (log-uniform).
const TAKER_NOTIONAL: (f64, f64) = (20.0, 40_000.0);
/// Rough number of fills per taker order, for the invented history.
const FILLS_PER_TAKER: f64 = 3.4;
/// Rough mean fill size relative to the mean maker order size, for the invented history.
const FILL_TO_MAKER: f64 = 0.7;

/// Event kinds, one channel each.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Trade = 0,
    Book = 1,
    Bbo = 2,
    Kline = 3,
    Ticker = 4,
    Perp = 5,
}

const KIND_NAMES: [&str; 6] = ["trade", "book", "bbo", "kline", "ticker", "perp"];

/// State of one simulated symbol.
pub(super) struct SymbolSim {
    pub name: String,
    pub channels: [String; 6],
    /// Price step and quantity step in 1e-8 units.
    pub tick: i64,
    pub lot: i64,
    pub rng: SmallRng,
    pub book: Book,
    depth: usize,
    gap: i64,
    ln_fair: f64,
    ln_anchor: f64,
    fair_us: i64,
    ln_maker: (f64, f64),
    ln_taker: (f64, f64),
    pub next_trade_id: i64,
    pub next_agg_id: i64,
    next_order_id: u64,
    /// Last trade price (ticks) and quantity (lots).
    pub last_price: i64,
    pub last_qty: i64,
    /// Trades of the current second.
    pub second: Stats,
    pub candles: Vec<Candle>,
    pub ticker: Ticker,
    /// Last update id published by each delta series.
    pub published: [u64; SERIES],
    /// Last published best bid price, bid qty, ask price, ask qty.
    pub last_bbo: [i64; 4],
    pub fills: Vec<Fill>,
    pub scratch: Vec<(Side, i64)>,
    pub buf: Vec<u8>,
    /// The symbol's USD-M perpetual, unless `perpetuals` is off.
    pub perp: Option<Perp>,
}

/// What a symbol needs besides its spec.
pub(super) struct SymbolParams<'a> {
    pub seed: u64,
    pub index: usize,
    pub depth: usize,
    pub trades_per_sec: f64,
    pub intervals: &'a [KlineInterval],
    pub perpetuals: bool,
    pub start_us: i64,
}

impl SymbolSim {
    /// A symbol with a full book around its starting price and 24 hours of invented history.
    pub(super) fn new(spec: &SymbolSpec, p: &SymbolParams<'_>) -> Self {
        let mix = (p.index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = SmallRng::seed_from_u64(p.seed ^ mix);
        let start_ticks = spec.price / spec.tick;
        // Lots per unit of quote currency at the starting price.
        let lots_per_quote = (SCALE as f64 * SCALE as f64) / (spec.price as f64 * spec.lot as f64);
        let ln_range =
            |(lo, hi): (f64, f64)| ((lo * lots_per_quote).ln(), (hi * lots_per_quote).ln());
        let ln_maker = ln_range(MAKER_NOTIONAL);
        let mean_maker = (ln_maker.1.exp() - ln_maker.0.exp()) / (ln_maker.1 - ln_maker.0);
        let start_ms = p.start_us.div_euclid(1000);
        let history = HistorySpec {
            start_ms,
            end_price: start_ticks,
            trades_per_min: p.trades_per_sec * 60.0 * FILLS_PER_TAKER,
            lots_per_trade: (mean_maker * FILL_TO_MAKER).max(1.0),
            sigma_min: SIGMA * 60f64.sqrt(),
        };
        let (ticker, last_id) = Ticker::invent(&history, &mut rng);
        let mut candles: Vec<Candle> = p
            .intervals
            .iter()
            .map(|&iv| Candle::at(iv, start_ms))
            .collect();
        for c in candles
            .iter_mut()
            .filter(|c| c.interval != KlineInterval::S1)
        {
            for b in ticker.buckets().filter(|b| b.minute_ms >= c.open_ms) {
                c.stats.merge(&b.stats);
            }
        }
        let ln_anchor = (start_ticks as f64).ln();
        let mut sim = Self {
            name: spec.symbol.clone(),
            channels: KIND_NAMES.map(|k| format!("{k}.{}", spec.symbol)),
            tick: spec.tick,
            lot: spec.lot,
            rng,
            book: Book::new(0),
            depth: p.depth,
            gap: ((start_ticks as f64 * LEVEL_GAP).round() as i64).max(1),
            ln_fair: ln_anchor,
            ln_anchor,
            fair_us: p.start_us,
            ln_maker,
            ln_taker: ln_range(TAKER_NOTIONAL),
            next_trade_id: last_id + 1,
            next_agg_id: last_id / 2 + 1,
            next_order_id: 1,
            last_price: start_ticks,
            last_qty: history.lots_per_trade.round() as i64,
            second: Stats::EMPTY,
            candles,
            ticker,
            published: [0; SERIES],
            last_bbo: [0; 4],
            fills: Vec::with_capacity(64),
            scratch: Vec::new(),
            buf: Vec::with_capacity(4096),
            // Its own generator, so the spot market is the same with or without perpetuals.
            perp: p
                .perpetuals
                .then(|| Perp::new(p.seed ^ mix.rotate_left(17))),
        };
        let half = (sim.gap / 2).max(1);
        sim.add_level(Side::Bid, start_ticks - half);
        sim.add_level(Side::Ask, start_ticks + half);
        // The levels the market starts with stay in the journals: the first delta of each series
        // carries them from update id 1, so the deltas alone rebuild the whole book.
        sim.maintain();
        sim.last_bbo = sim.bbo();
        sim
    }

    /// Best bid price, bid qty, ask price, ask qty (ticks and lots; 0 for an empty side).
    pub(super) fn bbo(&self) -> [i64; 4] {
        let (bp, bq) = self.book.best(Side::Bid).unwrap_or((0, 0));
        let (ap, aq) = self.book.best(Side::Ask).unwrap_or((0, 0));
        [bp, bq, ap, aq]
    }

    /// Moves the fair price forward to `t_us`.
    fn walk(&mut self, t_us: i64) {
        let dt = (t_us - self.fair_us) as f64 * 1e-6;
        if dt <= 0.0 {
            return;
        }
        self.fair_us = t_us;
        let z = normal(&mut self.rng);
        let pull = KAPPA * dt.min(1.0 / KAPPA) * (self.ln_fair - self.ln_anchor);
        let bound = MAX_FACTOR.ln();
        self.ln_fair = (self.ln_fair + SIGMA * dt.sqrt() * z - pull)
            .clamp(self.ln_anchor - bound, self.ln_anchor + bound);
    }

    fn fair(&self) -> f64 {
        self.ln_fair.exp()
    }

    fn maker_lots(&mut self) -> i64 {
        (log_uniform(&mut self.rng, self.ln_maker.0, self.ln_maker.1).round() as i64).max(1)
    }

    fn order_id(&mut self) -> u64 {
        let id = self.next_order_id;
        self.next_order_id += 1;
        id
    }

    /// Adds a new level of one to six maker orders at `price`.
    fn add_level(&mut self, side: Side, price: i64) {
        let n = self.rng.random_range(1..=6);
        let mut orders = [(0u64, 0i64); 6];
        for o in orders.iter_mut().take(n) {
            *o = (self.order_id(), self.maker_lots());
        }
        self.book.add(side, price, orders.into_iter().take(n));
    }

    /// Adds one maker order near the fair price, never crossing the other side.
    fn quote_near_fair(&mut self, side: Side) {
        let fair = self.fair();
        let d = exponential(&mut self.rng, self.gap as f64 * 1.5) as i64;
        let price = match side {
            Side::Bid => {
                let p = fair.floor() as i64 - d;
                self.book.best(Side::Ask).map_or(p, |(a, _)| p.min(a - 1))
            }
            Side::Ask => {
                let p = fair.ceil() as i64 + d;
                self.book.best(Side::Bid).map_or(p, |(b, _)| p.max(b + 1))
            }
        };
        if price >= 1 {
            let order = (self.order_id(), self.maker_lots());
            self.book.add(side, price, [order]);
        }
    }

    /// Trims or refills both sides to `depth` levels. New levels go to free prices spread over
    /// the band the side should cover (about `depth` gaps from the touch), so that liquidity taken
    /// near the touch is replaced there rather than at the far end.
    fn maintain(&mut self) {
        for side in [Side::Bid, Side::Ask] {
            while self.book.len(side) > self.depth {
                self.book.remove_deepest(side);
            }
            while self.book.len(side) < self.depth {
                match self.refill_price(side) {
                    Some(price) => self.add_level(side, price),
                    None => break,
                }
            }
        }
    }

    /// A free price for a new level on `side`, if there is one above zero.
    fn refill_price(&mut self, side: Side) -> Option<i64> {
        let fair = self.fair();
        let touch = match (side, self.book.best(side.opposite())) {
            (Side::Bid, Some((a, _))) => (fair.floor() as i64).min(a - 1),
            (Side::Ask, Some((b, _))) => (fair.ceil() as i64).max(b + 1),
            (Side::Bid, None) => fair.floor() as i64,
            (Side::Ask, None) => fair.floor() as i64 + 1,
        };
        let mean = self.gap as f64 * (self.depth as f64 / 5.0).max(2.0);
        let sign = match side {
            Side::Bid => -1,
            Side::Ask => 1,
        };
        for _ in 0..16 {
            // Denser near the touch, where takers and cancels remove most liquidity.
            let price = touch + sign * exponential(&mut self.rng, mean) as i64;
            if price >= 1 && self.book.qty_at(side, price) == 0 {
                return Some(price);
            }
        }
        let beyond = self.book.deepest(side).unwrap_or(touch)
            + sign * self.rng.random_range(1..=2 * self.gap - 1);
        (beyond >= 1).then_some(beyond)
    }

    /// One taker order at scheduled time `t_us`: matches, publishes the `match` and, if the top
    /// of the book changed, a `bbo`.
    pub(super) fn taker(&mut self, t_us: i64, ts: i64, out: &mut Vec<super::DemoEvent>) {
        self.walk(t_us);
        let (Some((bid, _)), Some((ask, _))) =
            (self.book.best(Side::Bid), self.book.best(Side::Ask))
        else {
            self.maintain();
            return;
        };
        let mid = (bid + ask) as f64 / 2.0;
        let p_buy = (0.5 + (self.fair() - mid) / (8.0 * self.gap as f64)).clamp(0.1, 0.9);
        let buy = self.rng.random::<f64>() < p_buy;
        let qty =
            (log_uniform(&mut self.rng, self.ln_taker.0, self.ln_taker.1).round() as i64).max(1);
        let maker_side = if buy { Side::Ask } else { Side::Bid };
        let before = self.book.best(maker_side);
        let mut fills = std::mem::take(&mut self.fills);
        self.book.take(maker_side, qty, MAX_SWEEP, &mut fills);
        if !fills.is_empty() {
            let taker_id = self.order_id();
            self.publish_match(taker_id, buy, &fills, ts, out);
        }
        self.fills = fills;
        let moved = self.book.best(maker_side).map(|b| b.0) != before.map(|b| b.0);
        if moved && self.rng.random::<f64>() < 0.7 {
            self.quote_near_fair(maker_side);
        }
        self.maintain();
        self.publish_bbo(ts, out);
    }

    /// One passive book change (add or cancel) at scheduled time `t_us`.
    pub(super) fn passive(&mut self, t_us: i64, ts: i64, out: &mut Vec<super::DemoEvent>) {
        self.walk(t_us);
        let fair = self.fair();
        let gap = self.gap as f64;
        let stale_bid = self
            .book
            .best(Side::Bid)
            .is_some_and(|(b, _)| b as f64 > fair + gap);
        let stale_ask = self
            .book
            .best(Side::Ask)
            .is_some_and(|(a, _)| (a as f64) < fair - gap);
        let side = if self.rng.random::<bool>() {
            Side::Bid
        } else {
            Side::Ask
        };
        let r = self.rng.random::<f64>();
        if (stale_bid || stale_ask) && r < 0.5 {
            let side = if stale_bid { Side::Bid } else { Side::Ask };
            let pos = self.rng.random_range(0..self.book.orders_from_top(side, 0));
            self.book.cancel(side, 0, pos);
        } else if r < 0.4 {
            self.quote_near_fair(side);
        } else if r < 0.5 {
            let n = self.book.len(side);
            if n > 0 {
                let price = self.book.price_from_top(side, self.rng.random_range(0..n));
                let order = (self.order_id(), self.maker_lots());
                self.book.add(side, price, [order]);
            }
        } else {
            let n = self.book.len(side);
            if n > 0 {
                let u = self.rng.random::<f64>();
                let level = ((n as f64 * u * u) as usize).min(n - 1);
                let pos = self
                    .rng
                    .random_range(0..self.book.orders_from_top(side, level));
                self.book.cancel(side, level, pos);
            }
        }
        self.maintain();
        self.publish_bbo(ts, out);
    }
}
