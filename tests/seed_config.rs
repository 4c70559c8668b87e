//! The seed design's sample config (§5.2, kept verbatim in `tests/fixtures/seed-sample.json`)
//! loads into a real node once its route names its upstream, and nothing else is added.

mod common;

use std::path::PathBuf;

use common::{mappers_dir, CliOutput, Gateway};
use serde_json::{json, Value};

/// The sample exactly as the seed design prints it.
fn seed_sample() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-sample.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The seed document, where this checkout sits next to it (`../shared/seed/`).
fn seed_document() -> Option<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/seed");
    let entry = std::fs::read_dir(dir).ok()?.flatten().next()?;
    std::fs::read_to_string(entry.path()).ok()
}

#[test]
fn the_fixture_is_the_seed_designs_sample() {
    let Some(document) = seed_document() else {
        eprintln!("the seed document is not beside this checkout; the fixture is kept as is");
        return;
    };
    let start = document
        .find("Sample of routing and mapping configuration:")
        .expect("the seed's §5.2 sample");
    let start = start + document[start..].find('{').unwrap();
    let end = document.find("5.2.1 Negotiation algorithm").unwrap();
    let sample: Value = serde_json::from_str(document[start..end].trim()).unwrap();
    assert_eq!(sample, seed_sample());
}

/// A mappers directory with the standard mappers and, under the three names the sample's
/// mappings use, the trade mapper.
fn mappers_with_the_seeds_names() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(mappers_dir()).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    for name in ["trade_v1", "depth_v2", "balance"] {
        let target = dir.path().join(format!("{name}.wasm"));
        std::fs::copy(mappers_dir().join("binance_trade.wasm"), target).unwrap();
    }
    dir
}

/// A node started with the shipped config and the seed's mapper names, and what `wsgate config
/// apply` said of `config` there.
fn apply_to_a_node(config: &Value) -> (Gateway, CliOutput) {
    let mappers = mappers_with_the_seeds_names();
    let gateway = Gateway::start_in(
        common::shipped_config(),
        &["--admin-token", common::TEST_TOKEN],
        mappers.path(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seed.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let applied = gateway.cli(&["config", "apply", file.to_str().unwrap()]);
    (gateway, applied)
}

#[tokio::test]
async fn the_seed_designs_sample_config_loads_once_its_route_names_its_upstream() {
    let mut config = seed_sample();
    let route = &mut config["routes"][0];
    assert!(
        route.get("upstream").is_none(),
        "the seed names no upstream"
    );
    route["upstream"] = json!(["trade.btcusdt", "depth.btcusdt", "balance"]);

    let (gateway, applied) = apply_to_a_node(&config);
    assert!(applied.ok, "{applied:?}");
    assert!(
        applied.stdout.contains("applied as version 2"),
        "{applied:?}"
    );
    assert!(!applied.stderr.contains("warning"), "{applied:?}");

    // Stored as given, the NATS datasource's reconnect properties included.
    let stored = gateway.cli(&["config", "get"]);
    let stored: Value = serde_json::from_str(&stored.stdout).unwrap();
    assert_eq!(stored["version"], 2);
    assert_eq!(stored["config"]["datasource"], config["datasource"]);
    assert_eq!(
        stored["config"]["datasource"][1]["properties"]["reconnect_time_wait"],
        2
    );
    // The node runs the sample's route with its three mappers.
    let (_, status) =
        common::http_get_auth(gateway.admin, "/api/v1/status", common::TEST_TOKEN).unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["config_version"], 2, "{status}");
    assert_eq!(
        status["routes"]["uuid4"],
        json!(["trade_v1@1", "depth_v2@1", "balance@1"]),
        "{status}"
    );
    // Its streams are served: a client may subscribe to them.
    let mut client = gateway.connect("/ws").await;
    let reply = common::request(
        &mut client,
        json!({"method": "SUBSCRIBE", "params": ["btcusdt@trade", "btcusdt@depth"], "id": 1}),
    )
    .await;
    assert_eq!(reply, json!({"result": null, "id": 1}));
}

#[tokio::test]
async fn a_sample_whose_nats_properties_are_wrong_is_refused_naming_them() {
    let mut config = seed_sample();
    config["routes"][0]["upstream"] = json!(["trade.btcusdt"]);
    config["datasource"][1]["properties"]["reconnect_time_wait"] = json!("2s");
    let (_gateway, refused) = apply_to_a_node(&config);
    assert!(!refused.ok, "{refused:?}");
    assert!(
        refused.stderr.contains("properties.reconnect_time_wait"),
        "{refused:?}"
    );
}
