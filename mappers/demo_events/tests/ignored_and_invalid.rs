//! Behaviour common to every mapper: events of other types are ignored, malformed input is
//! `invalid-input`.

mod common;

use common::{edited, invalid_input, MapFn, ALL};
use demo_events::map;

/// Every mapper with the event `type` it handles.
/// (`hashkey_depth` maps only 100 ms snapshots: `tests/hashkey_depth.rs` covers it.)
const MAPPERS: [(&str, MapFn, &str); 13] = [
    ("trade", map::trade::map, "match"),
    ("agg_trade", map::agg_trade::map, "match"),
    ("depth", map::depth::map, "book_delta"),
    ("partial_depth", map::partial_depth::map, "book_snapshot"),
    ("book_ticker", map::book_ticker::map, "bbo"),
    ("kline", map::kline::map, "kline"),
    ("mini_ticker", map::mini_ticker::map, "ticker"),
    ("ticker", map::ticker::map, "ticker"),
    ("hashkey_trade", map::hashkey_trade::map, "match"),
    ("hashkey_realtimes", map::hashkey_realtimes::map, "ticker"),
    ("futures_trade", map::futures_trade::map, "match"),
    ("mark_price", map::mark_price::map, "mark_price"),
    ("force_order", map::force_order::map, "liquidation"),
];

/// The sample event of `kind`.
fn sample(kind: &str) -> &'static str {
    ALL.iter().find(|(k, _)| *k == kind).unwrap().1
}

#[test]
fn each_mapper_maps_its_own_event_and_ignores_the_others() {
    for (name, map, own) in MAPPERS {
        for (kind, payload) in ALL {
            let outputs = map(payload.as_bytes()).unwrap();
            assert_eq!(outputs.is_empty(), kind != own, "{name} on {kind}");
        }
    }
}

#[test]
fn unknown_event_types_are_ignored() {
    for (name, map, own) in MAPPERS {
        // Also with `type` last (serde_json::Value sorts keys), so not fail-fast.
        let payload = edited(sample(own), |e| {
            e.insert("type".into(), "order_ack".into());
        });
        assert_eq!(map(payload.as_bytes()), Ok(Vec::new()), "{name}");
        let payload = br#"{"type":"funding","rate":"0.0001"}"#;
        assert_eq!(map(payload), Ok(Vec::new()), "{name}");
    }
}

#[test]
fn malformed_json_is_invalid_input() {
    for (name, map, own) in MAPPERS {
        let truncated = &sample(own)[..40];
        for payload in ["", "{not json", "[]", "null", "42", truncated] {
            let message = invalid_input(map, payload);
            assert!(
                message.starts_with(&format!("invalid `{own}` event: ")),
                "{name}: {message}"
            );
        }
    }
}

#[test]
fn missing_fields_are_invalid_input() {
    for (name, map, own) in MAPPERS {
        for field in ["type", "symbol", "ts_us"] {
            let payload = edited(sample(own), |e| {
                e.remove(field);
            });
            let message = invalid_input(map, &payload);
            assert!(
                message.contains(&format!("missing field `{field}`")),
                "{name}: {message}"
            );
        }
    }
}

#[test]
fn wrongly_typed_fields_are_invalid_input() {
    for (name, map, own) in MAPPERS {
        let payload = edited(sample(own), |e| {
            e.insert("ts_us".into(), "1767000000123456".into());
        });
        let message = invalid_input(map, &payload);
        assert!(message.contains("invalid type"), "{name}: {message}");
        let payload = edited(sample(own), |e| {
            e.insert("type".into(), 7.into());
        });
        invalid_input(map, &payload);
    }
}
