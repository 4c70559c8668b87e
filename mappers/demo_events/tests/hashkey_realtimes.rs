//! `hashkey_realtimes`: `ticker` → HashKey's 24-hour ticker.

mod common;

use common::{map_ok, payloads, vars, TICKER};
use demo_events::map::hashkey_realtimes::map;

#[test]
fn the_ticker_in_hashkeys_fields_with_the_change_as_a_ratio() {
    let outputs = map_ok(map, TICKER);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"t":1767000000123,"s":"BTCUSDT","sn":"BTCUSDT","c":"67000.02","h":"67500","l":"65800","o":"66100","v":"18211.5","qv":"1214911212.55","m":"0.01362","e":301}"#
        ]
    );
    assert_eq!(vars(&outputs[0]), [("symbol", "btcusdt")]);
}
