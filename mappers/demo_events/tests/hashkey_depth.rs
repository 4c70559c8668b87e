//! `hashkey_depth`: `book_snapshot` of the 100 ms series → one HashKey depth snapshot.

mod common;

use common::{edited, invalid_input, map_ok, payloads, vars, ALL, BOOK_SNAPSHOT};
use demo_events::map::hashkey_depth::map;
use serde_json::json;

/// The sample snapshot, in the 100 ms series.
fn snapshot_100ms() -> String {
    edited(BOOK_SNAPSHOT, |e| {
        e.insert("window_ms".into(), json!(100));
    })
}

#[test]
fn maps_a_100ms_snapshot() {
    let outputs = map_ok(map, &snapshot_100ms());
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":301,"s":"BTCUSDT","t":1767000000200,"v":"160","b":[["67000","1.2"]],"a":[["67000.02","0.5"]],"o":0}"#
        ]
    );
    assert_eq!(vars(&outputs[0]), [("symbol", "btcusdt")]);
}

#[test]
fn keeps_every_level_in_order() {
    let payload = edited(&snapshot_100ms(), |e| {
        e.insert(
            "bids".into(),
            json!([
                ["67000.00000000", "1.20000000"],
                ["66999.99000000", "0.00100000"],
                ["66990.00000000", "10.00000000"]
            ]),
        );
        e.insert(
            "asks".into(),
            json!([
                ["67000.02000000", "0.50000000"],
                ["67001.00000000", "3.00000000"]
            ]),
        );
    });
    assert_eq!(
        payloads(&map_ok(map, &payload)),
        [
            r#"{"e":301,"s":"BTCUSDT","t":1767000000200,"v":"160","b":[["67000","1.2"],["66999.99","0.001"],["66990","10"]],"a":[["67000.02","0.5"],["67001","3"]],"o":0}"#
        ]
    );
    let empty = edited(&snapshot_100ms(), |e| {
        e.insert("bids".into(), json!([]));
        e.insert("asks".into(), json!([]));
    });
    assert_eq!(
        payloads(&map_ok(map, &empty)),
        [r#"{"e":301,"s":"BTCUSDT","t":1767000000200,"v":"160","b":[],"a":[],"o":0}"#]
    );
}

#[test]
fn other_windows_map_to_nothing() {
    for window in [1000, 500, 0] {
        let payload = edited(BOOK_SNAPSHOT, |e| {
            e.insert("window_ms".into(), json!(window));
        });
        assert!(map_ok(map, &payload).is_empty(), "window {window}");
    }
}

#[test]
fn other_events_map_to_nothing() {
    for (kind, payload) in ALL {
        assert!(map_ok(map, payload).is_empty(), "{kind}");
    }
    let payload = edited(&snapshot_100ms(), |e| {
        e.insert("type".into(), "book_delta".into());
    });
    assert!(map_ok(map, &payload).is_empty());
    assert!(map_ok(map, r#"{"type":"funding","rate":"0.0001"}"#).is_empty());
}

#[test]
fn malformed_input_is_invalid() {
    let snapshot = snapshot_100ms();
    for payload in ["", "{not json", "[]", "null", "42", &snapshot[..40]] {
        let message = invalid_input(map, payload);
        assert!(
            message.starts_with("invalid `book_snapshot` event: "),
            "{message}"
        );
    }
    for field in [
        "type",
        "symbol",
        "ts_us",
        "window_ms",
        "last_update_id",
        "bids",
    ] {
        let payload = edited(&snapshot, |e| {
            e.remove(field);
        });
        let message = invalid_input(map, &payload);
        assert!(
            message.contains(&format!("missing field `{field}`")),
            "{message}"
        );
    }
    let payload = edited(&snapshot, |e| {
        e.insert("last_update_id".into(), "160".into());
    });
    assert!(invalid_input(map, &payload).contains("invalid type"));
}
