//! `binance_agg_trade`: `match` → one `aggTrade` per run of fills sharing an `agg_id`.

mod common;

use common::{edited, invalid_input, map_ok, payloads, vars, MATCH};
use demo_events::map::agg_trade::map;
use serde_json::json;

/// A `match` event with the given `(trade_id, agg_id, price, qty)` fills.
fn with_fills(side: &str, fills: &[(u64, u64, &str, &str)]) -> String {
    edited(MATCH, |event| {
        event.insert("taker_side".into(), side.into());
        let fills = fills
            .iter()
            .map(|&(trade_id, agg_id, price, qty)| {
                json!({"trade_id": trade_id, "agg_id": agg_id, "price": price, "qty": qty,
                       "maker_order_id": 1})
            })
            .collect();
        event.insert("fills".into(), serde_json::Value::Array(fills));
    })
}

#[test]
fn groups_consecutive_fills_by_agg_id() {
    let outputs = map_ok(map, MATCH);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"aggTrade","E":1767000000123,"s":"BTCUSDT","a":2001,"p":"67000.01000000","q":"0.01500000","f":5001,"l":5002,"T":1767000000123,"m":false,"M":true}"#,
            r#"{"e":"aggTrade","E":1767000000123,"s":"BTCUSDT","a":2002,"p":"67000.02000000","q":"0.10000000","f":5003,"l":5003,"T":1767000000123,"m":false,"M":true}"#,
        ]
    );
    for output in &outputs {
        assert_eq!(vars(output), [("symbol", "btcusdt")]);
    }
}

#[test]
fn sums_quantities_exactly() {
    let event = with_fills(
        "SELL",
        &[
            (1, 7, "1.00000000", "0.10000000"),
            (2, 7, "1.00000000", "0.20000000"),
            (3, 7, "1.00000000", "0.00000001"),
            (4, 8, "1.01000000", "12345678.99999999"),
            (5, 8, "1.01000000", "0.00000001"),
        ],
    );
    let outputs = map_ok(map, &event);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"aggTrade","E":1767000000123,"s":"BTCUSDT","a":7,"p":"1.00000000","q":"0.30000001","f":1,"l":3,"T":1767000000123,"m":true,"M":true}"#,
            r#"{"e":"aggTrade","E":1767000000123,"s":"BTCUSDT","a":8,"p":"1.01000000","q":"12345679.00000000","f":4,"l":5,"T":1767000000123,"m":true,"M":true}"#,
        ]
    );
}

#[test]
fn single_fill_quantity_is_normalized_to_8_decimals() {
    let event = with_fills("BUY", &[(1, 1, "2.00000000", "3.5")]);
    let outputs = map_ok(map, &event);
    assert!(outputs[0].payload.contains(r#""q":"3.50000000""#));
}

#[test]
fn no_fills_no_aggregates() {
    assert!(map_ok(map, &with_fills("BUY", &[])).is_empty());
}

#[test]
fn invalid_quantity_is_rejected() {
    let event = with_fills("BUY", &[(1, 1, "2.00000000", "-1.00000000")]);
    let message = invalid_input(map, &event);
    assert!(message.contains("trade 1: qty"), "{message}");
}

#[test]
fn mixed_prices_in_one_aggregate_are_rejected() {
    let event = with_fills(
        "BUY",
        &[
            (1, 1, "2.00000000", "1.00000000"),
            (2, 1, "2.01000000", "1.00000000"),
        ],
    );
    let message = invalid_input(map, &event);
    assert!(message.contains("agg_id 1"), "{message}");
}
