//! `hashkey_trade`: `match` → one HashKey public trade per fill.

mod common;

use common::{edited, map_ok, payloads, vars, MATCH};
use demo_events::map::hashkey_trade::map;

#[test]
fn one_trade_per_fill_with_trimmed_decimals() {
    let outputs = map_ok(map, MATCH);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"v":"5001","t":1767000000123,"p":"67000.01","q":"0.012","m":false}"#,
            r#"{"v":"5002","t":1767000000123,"p":"67000.01","q":"0.003","m":false}"#,
            r#"{"v":"5003","t":1767000000123,"p":"67000.02","q":"0.1","m":false}"#,
        ]
    );
    for output in &outputs {
        assert_eq!(vars(output), [("symbol", "btcusdt")]);
        assert_eq!(output.user_id, None);
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
        r#"{"v":"5001","t":1767000000123,"p":"67000.01","q":"0.012","m":true}"#
    );
    assert!(outputs.iter().all(|o| o.payload.ends_with(r#""m":true}"#)));
}

#[test]
fn whole_numbers_lose_the_point() {
    let whole = edited(MATCH, |event| {
        event.insert(
            "fills".into(),
            serde_json::json!([{"trade_id":9,"agg_id":1,"price":"67000.00000000","qty":"2.00000000","maker_order_id":1}]),
        );
    });
    assert_eq!(
        payloads(&map_ok(map, &whole)),
        [r#"{"v":"9","t":1767000000123,"p":"67000","q":"2","m":false}"#]
    );
}

#[test]
fn no_fills_no_trades() {
    let empty = edited(MATCH, |event| {
        event.insert("fills".into(), serde_json::json!([]));
    });
    assert!(map_ok(map, &empty).is_empty());
}
