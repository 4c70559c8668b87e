//! `binance_depth`: `book_delta` → `depthUpdate`.

mod common;

use common::{edited, invalid_input, map_ok, payloads, vars, BOOK_DELTA};
use demo_events::map::depth::map;
use serde_json::json;

#[test]
fn maps_a_100ms_delta() {
    let outputs = map_ok(map, BOOK_DELTA);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"depthUpdate","E":1767000000200,"s":"BTCUSDT","U":157,"u":160,"b":[["67000.00000000","1.20000000"],["66999.99000000","0.00000000"]],"a":[["67000.02000000","0.50000000"]]}"#
        ]
    );
    assert_eq!(
        vars(&outputs[0]),
        [("symbol", "btcusdt"), ("speed", "@100ms")]
    );
}

#[test]
fn a_1000ms_delta_has_an_empty_speed() {
    let event = edited(BOOK_DELTA, |e| {
        e.insert("window_ms".into(), json!(1000));
        e.insert("asks".into(), json!([]));
    });
    let outputs = map_ok(map, &event);
    assert_eq!(vars(&outputs[0]), [("symbol", "btcusdt"), ("speed", "")]);
    assert!(outputs[0].payload.ends_with(r#","a":[]}"#));
}

#[test]
fn other_windows_are_invalid() {
    let event = edited(BOOK_DELTA, |e| {
        e.insert("window_ms".into(), json!(500));
    });
    let message = invalid_input(map, &event);
    assert!(message.contains("window_ms is 500"), "{message}");
}

#[test]
fn malformed_levels_are_invalid() {
    let event = edited(BOOK_DELTA, |e| {
        e.insert("bids".into(), json!([["67000.00000000"]]));
    });
    invalid_input(map, &event);
}
