//! `binance_mark_price`: `mark_price` → `markPriceUpdate` on the 1 s stream, and every third
//! second on the 3 s one.

mod common;

use common::{edited, invalid_input, map_ok, payloads, vars, MARK_PRICE};
use demo_events::map::mark_price::{map, on_3s_stream};
use serde_json::json;

const GOLDEN: &str = r#"{"e":"markPriceUpdate","E":1767000001000,"s":"BTCUSDT","p":"67001.23000000","ap":"67000.90000000","P":"67000.40000000","i":"67000.00000000","r":"0.00010000","T":1767024000000}"#;

/// The sample event at `time_ms`.
fn at(time_ms: u64) -> String {
    edited(MARK_PRICE, |e| {
        e.insert("time_ms".into(), json!(time_ms));
    })
}

#[test]
fn maps_to_the_1s_stream() {
    // 1767000001 s is not a multiple of 3.
    let outputs = map_ok(map, MARK_PRICE);
    assert_eq!(payloads(&outputs), [GOLDEN]);
    assert_eq!(
        vars(&outputs[0]),
        [("symbol", "btcusdt"), ("mark_speed", "@1s")]
    );
    assert_eq!(outputs[0].user_id, None);
}

#[test]
fn every_third_second_also_feeds_the_3s_stream() {
    let outputs = map_ok(map, &at(1_767_000_000_000));
    let golden = GOLDEN.replace("1767000001000", "1767000000000");
    assert_eq!(payloads(&outputs), [golden.as_str(), golden.as_str()]);
    assert_eq!(
        vars(&outputs[0]),
        [("symbol", "btcusdt"), ("mark_speed", "@1s")]
    );
    assert_eq!(
        vars(&outputs[1]),
        [("symbol", "btcusdt"), ("mark_speed", "")]
    );
}

#[test]
fn the_3s_rule_uses_whole_seconds_of_time_ms() {
    for (time_ms, expected) in [
        (1_767_000_000_000, 2),
        (1_767_000_000_999, 2),
        (1_767_000_001_000, 1),
        (1_767_000_002_999, 1),
        (1_767_000_003_000, 2),
        (0, 2),
    ] {
        assert_eq!(map_ok(map, &at(time_ms)).len(), expected, "{time_ms}");
        assert_eq!(on_3s_stream(time_ms), expected == 2, "{time_ms}");
    }
}

#[test]
fn ts_us_does_not_drive_the_event_time() {
    let payload = edited(MARK_PRICE, |e| {
        e.insert("ts_us".into(), json!(1_767_000_003_500_000_u64));
    });
    assert_eq!(payloads(&map_ok(map, &payload)), [GOLDEN]);
}

#[test]
fn missing_or_mistyped_fields_are_invalid() {
    for field in [
        "time_ms",
        "mark_price",
        "funding_rate",
        "next_funding_time_ms",
    ] {
        let payload = edited(MARK_PRICE, |e| {
            e.remove(field);
        });
        let message = invalid_input(map, &payload);
        assert!(
            message.contains(&format!("missing field `{field}`")),
            "{message}"
        );
    }
    let payload = edited(MARK_PRICE, |e| {
        e.insert("mark_price".into(), json!(67001.23));
    });
    assert!(invalid_input(map, &payload).starts_with("invalid `mark_price` event: "));
}
