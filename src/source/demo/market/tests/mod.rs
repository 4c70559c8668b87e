//! Behavioural tests of the demo market.

mod config;
mod perp;
mod stats;
mod util;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use self::util::{config, of_type, parse, props, run, LocalBook, J, START};
use super::DemoMarket;

const SYMBOLS: [(&str, i64, i64); 2] = [
    ("BTCUSDT", 1_000_000, 1_000),
    ("XRPUSDT", 10_000, 10_000_000),
];

#[test]
fn payload_fields_are_exactly_the_documented_ones_in_order() {
    let (_, events) = run(
        props(json!({"kline_intervals": ["1s", "1m", "1d"], "liquidations_per_min": 600})),
        START,
        3,
    );
    let expected: BTreeMap<&str, Vec<&str>> = [
        (
            "match",
            vec![
                "type",
                "symbol",
                "ts_us",
                "taker_order_id",
                "taker_side",
                "fills",
            ],
        ),
        (
            "book_delta",
            vec![
                "type",
                "symbol",
                "ts_us",
                "window_ms",
                "first_update_id",
                "last_update_id",
                "bids",
                "asks",
            ],
        ),
        (
            "book_snapshot",
            vec![
                "type",
                "symbol",
                "ts_us",
                "window_ms",
                "last_update_id",
                "bids",
                "asks",
            ],
        ),
        (
            "bbo",
            vec![
                "type",
                "symbol",
                "ts_us",
                "update_id",
                "bid_price",
                "bid_qty",
                "ask_price",
                "ask_qty",
            ],
        ),
        (
            "kline",
            vec![
                "type",
                "symbol",
                "ts_us",
                "interval",
                "open_time_ms",
                "close_time_ms",
                "first_trade_id",
                "last_trade_id",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "quote_volume",
                "trades",
                "taker_buy_volume",
                "taker_buy_quote_volume",
                "closed",
            ],
        ),
        (
            "ticker",
            vec![
                "type",
                "symbol",
                "ts_us",
                "open_time_ms",
                "close_time_ms",
                "open",
                "high",
                "low",
                "last",
                "last_qty",
                "prev_close",
                "price_change",
                "price_change_percent",
                "weighted_avg_price",
                "volume",
                "quote_volume",
                "bid_price",
                "bid_qty",
                "ask_price",
                "ask_qty",
                "first_trade_id",
                "last_trade_id",
                "trade_count",
            ],
        ),
        ("mark_price", perp::MARK_FIELDS.to_vec()),
        ("liquidation", perp::LIQUIDATION_FIELDS.to_vec()),
    ]
    .into_iter()
    .collect();
    let channel_kind = [
        ("match", "trade"),
        ("book_delta", "book"),
        ("book_snapshot", "book"),
        ("bbo", "bbo"),
        ("kline", "kline"),
        ("ticker", "ticker"),
        ("mark_price", "perp"),
        ("liquidation", "perp"),
    ];
    let mut seen = BTreeSet::new();
    for e in &events {
        let j = parse(e);
        let ty = j.str("type").to_owned();
        assert_eq!(j.keys(), expected[ty.as_str()], "{ty}");
        assert_eq!(j.str("symbol"), e.symbol);
        assert_eq!(j.int("ts_us"), e.ts_us);
        let kind = channel_kind.iter().find(|(t, _)| *t == ty).unwrap().1;
        assert_eq!(e.channel, format!("{kind}.{}", e.symbol));
        if ty == "match" {
            assert!(["BUY", "SELL"].contains(&j.str("taker_side")));
            for f in j.arr("fills") {
                assert_eq!(
                    f.keys(),
                    ["trade_id", "agg_id", "price", "qty", "maker_order_id"]
                );
            }
        }
        if ty == "ticker" {
            let pct = j.str("price_change_percent");
            let (_, frac) = pct.split_once('.').expect("decimal");
            assert_eq!(frac.len(), 3, "{pct}");
        }
        // Every other string-valued number has exactly 8 decimals (checked by `dec`).
        if let J::Obj(fields) = &j {
            for (k, v) in fields {
                if let J::Str(s) = v {
                    if ![
                        "type",
                        "symbol",
                        "taker_side",
                        "side",
                        "interval",
                        "price_change_percent",
                    ]
                    .contains(&k.as_str())
                    {
                        util::dec_wide(s);
                    }
                }
            }
        }
        seen.insert(ty);
    }
    assert_eq!(seen.len(), expected.len(), "all event types seen: {seen:?}");
    let times: Vec<i64> = events.iter().map(|e| e.ts_us).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "events in time order"
    );
}

#[test]
fn trade_and_agg_ids_are_contiguous_and_fills_are_on_the_grid() {
    let (_, events) = run(props(json!({})), START, 5);
    for (sym, tick, lot) in SYMBOLS {
        let matches = of_type(&events, sym, "match");
        assert!(matches.len() >= 900, "{sym}: {} matches", matches.len());
        let mut trade = None;
        let mut agg = None;
        let mut several = 0;
        for m in &matches {
            let fills = m.arr("fills");
            assert!(!fills.is_empty());
            several += usize::from(fills.len() > 1);
            let mut prev_price = None;
            for f in fills {
                let (t, a, p) = (f.int("trade_id"), f.int("agg_id"), f.dec("price"));
                if let Some(prev) = trade {
                    assert_eq!(t, prev + 1, "{sym} trade ids");
                }
                match agg {
                    Some(prev) if prev_price == Some(p) => {
                        assert_eq!(a, prev, "{sym} agg same price")
                    }
                    Some(prev) => assert_eq!(a, prev + 1, "{sym} agg ids"),
                    None => {}
                }
                assert!(p > 0 && p % tick == 0, "{sym} price {p} off tick");
                let q = f.dec("qty");
                assert!(q > 0 && q % lot == 0, "{sym} qty {q} off lot");
                let taker_buy = m.str("taker_side") == "BUY";
                if let Some(pp) = prev_price {
                    // A taker walks the book away from the touch.
                    assert!(if taker_buy { p >= pp } else { p <= pp });
                }
                (trade, agg, prev_price) = (Some(t), Some(a), Some(p));
            }
        }
        assert!(
            several * 4 > matches.len(),
            "{sym}: taker orders should often fill several makers"
        );
    }
}

/// The book of symbol `i` right after `new`, as a local book in 1e-8 units.
#[test]
fn deltas_chain_and_rebuild_every_snapshot_and_bbo() {
    for depth in [20, 100] {
        let p = props(json!({ "depth_levels": depth, "trades_per_sec": 500 }));
        let (_, events) = run(p, START, 4);
        for (sym, tick, lot) in SYMBOLS {
            for window in [100, 1000] {
                // From an empty book at update id 0: the deltas alone rebuild everything.
                let mut local = LocalBook::default();
                let mut last_bbo: Option<J> = None;
                let mut checked = (0, 0);
                for e in events.iter().filter(|e| e.symbol == sym) {
                    let j = parse(e);
                    match j.str("type") {
                        "book_delta" if j.int("window_ms") == window => {
                            assert_eq!(j.ts_us_mod(window), 0);
                            local.apply(&j);
                            let bids = j.levels("bids");
                            let asks = j.levels("asks");
                            assert!(bids.windows(2).all(|w| w[0].0 > w[1].0), "bids descending");
                            assert!(asks.windows(2).all(|w| w[0].0 < w[1].0), "asks ascending");
                            if let Some(bbo) = &last_bbo {
                                let (b, a) = local.top(1);
                                assert_eq!(
                                    b[0],
                                    (bbo.dec("bid_price"), bbo.dec("bid_qty")),
                                    "{sym} bbo bid"
                                );
                                assert_eq!(
                                    a[0],
                                    (bbo.dec("ask_price"), bbo.dec("ask_qty")),
                                    "{sym} bbo ask"
                                );
                                assert!(bbo.int("update_id") <= local.update_id);
                            }
                        }
                        "book_snapshot" if j.int("window_ms") == window => {
                            assert_eq!(
                                j.int("last_update_id"),
                                local.update_id,
                                "{sym} snapshot id"
                            );
                            let (b, a) = local.top(20);
                            assert_eq!(j.levels("bids"), b, "{sym} depth {depth} snapshot bids");
                            assert_eq!(j.levels("asks"), a, "{sym} depth {depth} snapshot asks");
                            assert!(b[0].0 < a[0].0, "crossed");
                            checked.0 += 1;
                        }
                        "bbo" => {
                            if let Some(prev) = &last_bbo {
                                assert!(
                                    j.int("update_id") > prev.int("update_id"),
                                    "bbo ids increase"
                                );
                            }
                            assert!(j.dec("bid_price") < j.dec("ask_price"), "crossed bbo");
                            assert!(j.int("update_id") > local.update_id, "bbo after its window");
                            last_bbo = Some(j);
                            checked.1 += 1;
                        }
                        _ => {}
                    }
                }
                assert!(
                    checked.0 >= 4_000 / window && checked.1 > 100,
                    "{sym}: {checked:?}"
                );
                for (p, q) in local.bids.iter().chain(local.asks.iter()) {
                    assert!(p % tick == 0 && q % lot == 0 && *q > 0);
                }
                if depth == 20 {
                    assert_eq!(local.bids.len(), 20, "the full book is published");
                }
            }
        }
    }
}

impl J {
    fn ts_us_mod(&self, window_ms: i64) -> i64 {
        self.int("ts_us") % (window_ms * 1000)
    }
}

#[test]
fn the_first_delta_of_each_series_carries_the_initial_book() {
    let p = props(json!({}));
    let fresh = DemoMarket::new(config(p.clone()), START);
    let (_, events) = run(p, START, 2);
    for (i, (sym, tick, _)) in SYMBOLS.into_iter().enumerate() {
        let (bids, asks, initial) = fresh.book_of(i);
        for window in [100, 1000] {
            let first = of_type(&events, sym, "book_delta")
                .into_iter()
                .find(|d| d.int("window_ms") == window)
                .expect("a delta");
            assert_eq!(first.int("first_update_id"), 1);
            assert!(first.int("last_update_id") >= initial as i64);
            // Every starting level is named (with its quantity at the window's end, 0 if gone).
            for (side, key) in [(&bids, "bids"), (&asks, "asks")] {
                let named: BTreeSet<i64> = first.levels(key).iter().map(|l| l.0).collect();
                assert!(
                    side.iter().all(|(p, _)| named.contains(&(p * tick))),
                    "{sym} {key}"
                );
            }
        }
    }
}

#[test]
fn stepping_event_by_event_keeps_the_book_sane_and_bbo_exact() {
    let mut m = DemoMarket::new(config(props(json!({"stamp": "wall"}))), START);
    let mut out = Vec::new();
    let mut last_id = [0u64; 2];
    for _ in 0..5_000 {
        let due = m.next_due_us();
        out.clear();
        m.advance(due, &mut out);
        assert!(m.next_due_us() > due);
        assert!(out.iter().all(|e| e.ts_us == due), "wall stamp is now_us");
        for (i, (sym, tick, lot)) in SYMBOLS.into_iter().enumerate() {
            let (bids, asks, id) = m.book_of(i); // checks sortedness, sums and crossing
            assert_eq!(bids.len(), 100);
            assert_eq!(asks.len(), 100);
            assert!(id >= last_id[i]);
            last_id[i] = id;
            if let Some(bbo) = out
                .iter()
                .rev()
                .filter(|e| e.symbol == sym)
                .map(parse)
                .find(|j| j.str("type") == "bbo")
            {
                assert_eq!(
                    (bbo.dec("bid_price"), bbo.dec("bid_qty")),
                    (bids[0].0 * tick, bids[0].1 * lot)
                );
                assert_eq!(
                    (bbo.dec("ask_price"), bbo.dec("ask_qty")),
                    (asks[0].0 * tick, asks[0].1 * lot)
                );
                assert!(bbo.int("update_id") as u64 <= id);
            }
        }
    }
}
