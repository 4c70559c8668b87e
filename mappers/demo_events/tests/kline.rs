//! `binance_kline`: `kline` → `kline`.

mod common;

use common::{edited, map_ok, payloads, vars, KLINE};
use demo_events::map::kline::map;
use serde_json::json;

#[test]
fn maps_a_kline() {
    let outputs = map_ok(map, KLINE);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"kline","E":1767000000123,"s":"BTCUSDT","k":{"t":1766999960000,"T":1767000019999,"s":"BTCUSDT","i":"1m","f":4900,"L":5003,"o":"66990.00000000","c":"67000.02000000","h":"67010.00000000","l":"66985.00000000","v":"3.20000000","n":104,"x":false,"q":"214390.12000000","V":"1.70000000","Q":"113890.05000000","B":"0"}}"#
        ]
    );
    assert_eq!(
        vars(&outputs[0]),
        [("symbol", "btcusdt"), ("interval", "1m")]
    );
}

#[test]
fn maps_an_empty_closed_candle() {
    let event = edited(KLINE, |e| {
        e.insert("interval".into(), json!("1M"));
        e.insert("first_trade_id".into(), json!(-1));
        e.insert("last_trade_id".into(), json!(-1));
        e.insert("trades".into(), json!(0));
        e.insert("closed".into(), json!(true));
    });
    let outputs = map_ok(map, &event);
    let payload = &outputs[0].payload;
    assert!(payload.contains(r#""i":"1M","f":-1,"L":-1,"#), "{payload}");
    assert!(payload.contains(r#""n":0,"x":true,"#), "{payload}");
    assert_eq!(vars(&outputs[0])[1], ("interval", "1M"));
}
