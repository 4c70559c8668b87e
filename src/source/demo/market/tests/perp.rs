//! The perpetuals: mark price, funding and liquidations.

use serde_json::json;

use super::super::perp::FUNDING_MS;
use super::super::DemoEvent;
use super::util::{dec_wide, of_type, parse, props, run, J, START};
use super::SYMBOLS;

/// The fields of a `liquidation` event, in order.
pub(super) const LIQUIDATION_FIELDS: [&str; 7] = [
    "type",
    "symbol",
    "ts_us",
    "side",
    "price",
    "qty",
    "avg_price",
];

/// The fields of a `mark_price` event, in order.
pub(super) const MARK_FIELDS: [&str; 10] = [
    "type",
    "symbol",
    "ts_us",
    "time_ms",
    "mark_price",
    "mark_price_avg",
    "index_price",
    "estimated_settle_price",
    "funding_rate",
    "next_funding_time_ms",
];

/// The events that are not on a `perp.*` channel.
fn spot(events: &[DemoEvent]) -> Vec<&DemoEvent> {
    events
        .iter()
        .filter(|e| !e.channel.starts_with("perp."))
        .collect()
}

/// Checks one `mark_price` of a symbol with price step `tick`.
fn check_mark(j: &J, tick: i64) {
    assert_eq!(j.keys(), MARK_FIELDS);
    let t = j.int("time_ms");
    assert_eq!(t % 1000, 0, "whole seconds");
    let next = j.int("next_funding_time_ms");
    assert_eq!(next % FUNDING_MS, 0, "funding at 00:00, 08:00, 16:00 UTC");
    assert!(t < next && next <= t + FUNDING_MS, "{t} -> {next}");
    let (mark, index) = (j.dec("mark_price"), j.dec("index_price"));
    assert!(
        (mark - index).abs() * 200 <= index,
        "mark {mark} within 0.5% of index {index}"
    );
    for k in ["mark_price", "mark_price_avg", "estimated_settle_price"] {
        let v = j.dec(k);
        assert!(v > 0 && v % tick == 0, "{k} {v} off tick");
        assert!(
            (v - index).abs() * 100 <= index,
            "{k} {v} near index {index}"
        );
    }
    let rate = dec_wide(j.str("funding_rate"));
    assert!(rate.abs() <= 375_000, "funding rate {rate}");
}

#[test]
fn mark_price_once_per_second_per_symbol_at_whole_seconds() {
    for stamp in ["schedule", "wall"] {
        let (_, events) = run(props(json!({"stamp": stamp})), START, 12);
        for (sym, tick, _) in SYMBOLS {
            let marks: Vec<(&DemoEvent, J)> = events
                .iter()
                .filter(|e| e.symbol == sym)
                .map(|e| (e, parse(e)))
                .filter(|(_, j)| j.str("type") == "mark_price")
                .collect();
            assert_eq!(marks.len(), 12, "{stamp} {sym}");
            let first = (START / 1_000_000 + 1) * 1000;
            for (i, (e, j)) in marks.iter().enumerate() {
                assert_eq!(e.channel, format!("perp.{sym}"));
                assert_eq!(j.int("time_ms"), first + 1000 * i as i64, "{stamp} {sym}");
                if stamp == "schedule" {
                    assert_eq!(j.int("ts_us"), j.int("time_ms") * 1000);
                }
                check_mark(j, tick);
            }
        }
    }
}

#[test]
fn the_premium_stays_small_and_funding_rolls_every_8_hours() {
    // 2025-12-29T07:59:50.25Z: the funding period ends at 08:00.
    let start = (1_766_995_200 - 10) * 1_000_000 + 250_000;
    let eight = 1_766_995_200_000;
    let p = props(json!({"trades_per_sec": 20, "book_updates_per_sec": 50}));
    let (_, events) = run(p, start, 90);
    for (sym, tick, _) in SYMBOLS {
        let marks = of_type(&events, sym, "mark_price");
        assert_eq!(marks.len(), 90);
        let mut premium = 0.0;
        for j in &marks {
            check_mark(j, tick);
            let t = j.int("time_ms");
            let want = if t < eight { eight } else { eight + FUNDING_MS };
            assert_eq!(j.int("next_funding_time_ms"), want, "{t}");
            let index = j.dec("index_price");
            premium += ((j.dec("mark_price") - index) as f64 / index as f64).abs();
            if t == eight {
                // A new period: the settle price is the average of one index.
                let settle = j.dec("estimated_settle_price");
                assert!((settle - index).abs() * 2 <= tick, "{sym} {settle} {index}");
            }
        }
        let mean = premium / marks.len() as f64;
        // The premium itself is ≲ 5e-4; XRPUSDT's tick adds up to 2e-4 of rounding.
        assert!(mean < 7e-4, "{sym}: mean |premium| {mean}");
    }
}

#[test]
fn liquidations_arrive_at_the_configured_rate_against_the_position() {
    let (_, events) = run(props(json!({"liquidations_per_min": 120})), START, 60);
    for (sym, tick, lot) in SYMBOLS {
        let mut mark = None;
        let (mut count, mut sides) = (0, [0, 0]);
        for e in events.iter().filter(|e| e.symbol == sym) {
            let j = parse(e);
            match j.str("type") {
                "mark_price" => mark = Some(j.dec("mark_price")),
                "liquidation" => {
                    assert_eq!(e.channel, format!("perp.{sym}"));
                    assert_eq!(j.keys(), LIQUIDATION_FIELDS);
                    let (price, qty, avg) = (j.dec("price"), j.dec("qty"), j.dec("avg_price"));
                    assert!(price % tick == 0 && avg % tick == 0, "{sym} off tick");
                    assert!(qty >= lot && qty % lot == 0, "{sym} qty {qty}");
                    let notional = price as f64 * qty as f64 / 1e16;
                    assert!((90.0..=55_000.0).contains(&notional), "{sym} {notional}");
                    let Some(mark) = mark else { continue };
                    let away = (price - mark) as f64 / mark as f64;
                    // The mark at the liquidation is within 0.05% of the last published one.
                    let slack = mark / 2000;
                    match j.str("side") {
                        "SELL" => {
                            assert!(-0.006 < away && away < -0.0005, "{sym} sell {away}");
                            assert!(price <= avg && avg <= mark + slack, "{sym} sell avg");
                            sides[0] += 1;
                        }
                        "BUY" => {
                            assert!(0.0005 < away && away < 0.006, "{sym} buy {away}");
                            assert!(mark - slack <= avg && avg <= price, "{sym} buy avg");
                            sides[1] += 1;
                        }
                        other => panic!("side {other}"),
                    }
                    count += 1;
                }
                _ => {}
            }
        }
        // 120 expected per symbol; the standard deviation is about 11.
        assert!((70..=170).contains(&count), "{sym}: {count} liquidations");
        assert!(sides.iter().all(|&n| n > 20), "{sym}: {sides:?}");
    }
}

#[test]
fn perpetuals_leave_the_spot_market_alone_and_can_be_turned_off() {
    let (_, busy) = run(props(json!({"liquidations_per_min": 600})), START, 5);
    let (_, quiet) = run(props(json!({"liquidations_per_min": 0})), START, 5);
    let (_, off) = run(props(json!({"perpetuals": false})), START, 5);
    for (sym, ..) in SYMBOLS {
        assert!(of_type(&busy, sym, "liquidation").len() > 10, "{sym}");
        assert!(of_type(&quiet, sym, "liquidation").is_empty(), "{sym}");
        assert_eq!(of_type(&quiet, sym, "mark_price").len(), 5, "{sym}");
    }
    assert!(off.iter().all(|e| !e.channel.starts_with("perp.")));
    assert_eq!(
        spot(&busy),
        spot(&off),
        "liquidations do not touch the spot book"
    );
    assert_eq!(spot(&quiet), spot(&off));
    let (_, wall_off) = run(
        props(json!({"perpetuals": false, "stamp": "wall"})),
        START,
        3,
    );
    assert!(wall_off.iter().all(|e| !e.channel.starts_with("perp.")));
}
