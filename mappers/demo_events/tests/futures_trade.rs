//! `binance_futures_trade`: `match` → one USD-M futures `trade` per fill.

mod common;

use common::{edited, map_ok, payloads, vars, MATCH};
use demo_events::map::futures_trade::map;

#[test]
fn one_trade_per_fill() {
    let outputs = map_ok(map, MATCH);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"trade","E":1767000000123,"T":1767000000123,"s":"BTCUSDT","t":5001,"p":"67000.01000000","q":"0.01200000","X":"MARKET","m":false}"#,
            r#"{"e":"trade","E":1767000000123,"T":1767000000123,"s":"BTCUSDT","t":5002,"p":"67000.01000000","q":"0.00300000","X":"MARKET","m":false}"#,
            r#"{"e":"trade","E":1767000000123,"T":1767000000123,"s":"BTCUSDT","t":5003,"p":"67000.02000000","q":"0.10000000","X":"MARKET","m":false}"#,
        ]
    );
    for output in &outputs {
        assert_eq!(vars(output), [("symbol", "btcusdt")]);
    }
}

#[test]
fn taker_sell_means_buyer_is_maker() {
    let sell = edited(MATCH, |event| {
        event.insert("taker_side".into(), "SELL".into());
    });
    let outputs = map_ok(map, &sell);
    assert_eq!(
        outputs[0].payload,
        r#"{"e":"trade","E":1767000000123,"T":1767000000123,"s":"BTCUSDT","t":5001,"p":"67000.01000000","q":"0.01200000","X":"MARKET","m":true}"#
    );
}

#[test]
fn unknown_taker_side_is_invalid() {
    let bad = edited(MATCH, |event| {
        event.insert("taker_side".into(), "HOLD".into());
    });
    let message = common::invalid_input(map, &bad);
    assert!(message.contains("HOLD"), "{message}");
}
