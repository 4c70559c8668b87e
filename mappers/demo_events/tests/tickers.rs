//! `binance_mini_ticker` and `binance_ticker`: `ticker` → `24hrMiniTicker` / `24hrTicker`.

mod common;

use common::{map_ok, payloads, vars, TICKER};
use demo_events::map::{mini_ticker, ticker};

#[test]
fn maps_a_mini_ticker() {
    let outputs = map_ok(mini_ticker::map, TICKER);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"24hrMiniTicker","E":1767000000123,"s":"BTCUSDT","c":"67000.02000000","o":"66100.00000000","h":"67500.00000000","l":"65800.00000000","v":"18211.50000000","q":"1214911212.55000000"}"#
        ]
    );
    assert_eq!(vars(&outputs[0]), [("symbol", "btcusdt")]);
}

#[test]
fn maps_a_ticker() {
    let outputs = map_ok(ticker::map, TICKER);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"24hrTicker","E":1767000000123,"s":"BTCUSDT","p":"900.02000000","P":"1.362","w":"66712.44000000","x":"66099.50000000","c":"67000.02000000","Q":"0.10000000","b":"67000.00000000","B":"1.20000000","a":"67000.02000000","A":"0.50000000","o":"66100.00000000","h":"67500.00000000","l":"65800.00000000","v":"18211.50000000","q":"1214911212.55000000","O":1766913600123,"C":1767000000123,"F":1,"L":9003,"n":9003}"#
        ]
    );
    assert_eq!(vars(&outputs[0]), [("symbol", "btcusdt")]);
}
