//! `binance_partial_depth`: `book_snapshot` → partial depth of 5, 10 and 20 levels.

mod common;

use common::{edited, map_ok, payloads, vars, BOOK_SNAPSHOT};
use demo_events::map::partial_depth::map;
use serde_json::{json, Value};

/// A snapshot with `bids` bid levels and `asks` ask levels, 100 ms window.
fn snapshot(bids: usize, asks: usize) -> String {
    let level = |price: usize| json!([format!("{price}.00000000"), "1.00000000"]);
    edited(BOOK_SNAPSHOT, |e| {
        e.insert("window_ms".into(), json!(100));
        e.insert("bids".into(), (0..bids).map(|i| level(100 - i)).collect());
        e.insert("asks".into(), (0..asks).map(|i| level(101 + i)).collect());
    })
}

/// The number of bid and ask levels of a partial depth payload.
fn sizes(payload: &str) -> (usize, usize) {
    let value: Value = serde_json::from_str(payload).unwrap();
    let len = |side: &str| value[side].as_array().unwrap().len();
    (len("bids"), len("asks"))
}

#[test]
fn maps_a_snapshot_to_three_sizes() {
    let outputs = map_ok(map, BOOK_SNAPSHOT);
    let golden = r#"{"lastUpdateId":160,"bids":[["67000.00000000","1.20000000"]],"asks":[["67000.02000000","0.50000000"]]}"#;
    assert_eq!(payloads(&outputs), [golden; 3]);
    let levels: Vec<_> = outputs.iter().map(vars).collect();
    assert_eq!(
        levels,
        [
            [("symbol", "btcusdt"), ("levels", "5"), ("speed", "")],
            [("symbol", "btcusdt"), ("levels", "10"), ("speed", "")],
            [("symbol", "btcusdt"), ("levels", "20"), ("speed", "")],
        ]
    );
}

#[test]
fn truncates_to_the_best_levels() {
    let outputs = map_ok(map, &snapshot(20, 20));
    let got: Vec<_> = outputs.iter().map(|o| sizes(&o.payload)).collect();
    assert_eq!(got, [(5, 5), (10, 10), (20, 20)]);
    assert_eq!(
        outputs[0].payload,
        r#"{"lastUpdateId":160,"bids":[["100.00000000","1.00000000"],["99.00000000","1.00000000"],["98.00000000","1.00000000"],["97.00000000","1.00000000"],["96.00000000","1.00000000"]],"asks":[["101.00000000","1.00000000"],["102.00000000","1.00000000"],["103.00000000","1.00000000"],["104.00000000","1.00000000"],["105.00000000","1.00000000"]]}"#
    );
    assert_eq!(vars(&outputs[0])[2], ("speed", "@100ms"));
}

#[test]
fn keeps_short_sides_whole() {
    let outputs = map_ok(map, &snapshot(7, 0));
    let got: Vec<_> = outputs.iter().map(|o| sizes(&o.payload)).collect();
    assert_eq!(got, [(5, 0), (7, 0), (7, 0)]);
}

#[test]
fn ignores_levels_beyond_20() {
    let outputs = map_ok(map, &snapshot(25, 3));
    assert_eq!(sizes(&outputs[2].payload), (20, 3));
}
