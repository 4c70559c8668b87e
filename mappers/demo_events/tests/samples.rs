//! The sample files in `mappers/samples/` (the input of `wsgate mapper test` and of the smoke
//! call a push must pass) map without error, each through the mappers it is the sample of.

mod common;

use common::{payloads, MapFn};
use demo_events::map;
use serde_json::Value;

/// Every sample file with the mappers it serves.
const SAMPLES: [(&str, &[(&str, MapFn)]); 5] = [
    (
        "trade.json",
        &[
            ("trade", map::trade::map),
            ("agg_trade", map::agg_trade::map),
            ("hashkey_trade", map::hashkey_trade::map),
            ("futures_trade", map::futures_trade::map),
        ],
    ),
    (
        "book_snapshot.json",
        &[
            ("partial_depth", map::partial_depth::map),
            ("hashkey_depth", map::hashkey_depth::map),
        ],
    ),
    ("mark_price.json", &[("mark_price", map::mark_price::map)]),
    (
        "liquidation.json",
        &[("force_order", map::force_order::map)],
    ),
    (
        "account.json",
        &[
            ("user_data", map::user_data::map),
            ("hashkey_user_data", map::hashkey_user_data::map),
        ],
    ),
];

/// The payloads of the events of sample file `name`, as the gateway sends them.
fn sample_payloads(name: &str) -> Vec<String> {
    let path = format!("{}/../samples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let events = match serde_json::from_str(&text).unwrap() {
        Value::Array(events) => events,
        event => vec![event],
    };
    events
        .into_iter()
        .map(|event| match &event["payload"] {
            Value::String(raw) => raw.clone(),
            payload => payload.to_string(),
        })
        .collect()
}

#[test]
fn every_sample_maps_to_valid_json() {
    for (file, mappers) in SAMPLES {
        let events = sample_payloads(file);
        assert!(!events.is_empty(), "{file}");
        for (name, map) in mappers {
            let mut outputs = 0;
            for event in &events {
                let mapped = common::map_ok(*map, event);
                for payload in payloads(&mapped) {
                    serde_json::from_str::<Value>(payload)
                        .unwrap_or_else(|e| panic!("{name} on {file}: {e}: {payload}"));
                }
                outputs += mapped.len();
            }
            assert!(outputs > 0, "{name} maps nothing of {file}");
        }
    }
}
