//! `binance_book_ticker`: `bbo` → `bookTicker`.

mod common;

use common::{map_ok, payloads, vars, BBO};
use demo_events::map::book_ticker::map;

#[test]
fn maps_a_bbo() {
    let outputs = map_ok(map, BBO);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"u":160,"s":"BTCUSDT","b":"67000.00000000","B":"1.20000000","a":"67000.02000000","A":"0.50000000"}"#
        ]
    );
    assert_eq!(vars(&outputs[0]), [("symbol", "btcusdt")]);
}
