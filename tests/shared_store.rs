//! Two nodes on one real Redis: a mapper promoted through one node's admin API is applied on the
//! other, whose clients see the new format; either node's CLI prints the same history.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{collect_stream, mappers_dir, Gateway};
use serde_json::Value;

fn node_args<'a>(redis: &'a str, id: &'a str) -> Vec<&'a str> {
    vec![
        "--redis",
        redis,
        "--redis-prefix",
        "test:",
        "--node-id",
        id,
        "--admin-token",
        common::TEST_TOKEN,
    ]
}

fn status(gateway: &Gateway) -> Value {
    let (code, body) =
        common::http_get_auth(gateway.admin, "/api/v1/status", common::TEST_TOKEN).expect("status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn a_promote_on_one_node_is_applied_on_the_other() {
    let redis = RedisServer::new();
    let url = redis.url();
    let a = Gateway::start(&node_args(&url, "node-a"));
    let b = Gateway::start(&node_args(&url, "node-b"));
    // Both run the config node A seeded (B found the store full and seeded nothing).
    assert_eq!(status(&a)["config_version"], 1);
    assert_eq!(status(&b)["config_version"], 1);
    let history = b.cli(&["config", "history", "--limit", "100"]);
    let seeds = history
        .stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(4) == Some("binance_trade"))
        .count();
    assert_eq!(seeds, 1, "one seed of each mapper:\n{}", history.stdout);

    let mut client = b.connect("/stream?streams=btcusdt@trade").await;
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mappers/samples/trade.json");
    let started = Instant::now();
    let push = a.cli(&[
        "mapper",
        "push",
        "binance_trade",
        mappers_dir().join("tagged_trade.wasm").to_str().unwrap(),
        "--sample",
        sample.to_str().unwrap(),
        "--promote",
    ]);
    assert!(push.ok, "{push:?}");
    let deadline = started + Duration::from_secs(20);
    while status(&b)["routes"]["demo-trades"][0] != "binance_trade@2" {
        assert!(
            Instant::now() < deadline,
            "node B never applied the promote:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("promote on A applied on B after {:?}", started.elapsed());
    // B's clients get the new format.
    loop {
        let trade = collect_stream(&mut client, "btcusdt@trade", 1, Duration::from_secs(30)).await;
        if trade[0].get("mapper").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node B's clients never saw the new format"
        );
    }

    let history = b.cli(&["config", "history", "--limit", "3"]);
    assert!(history.ok, "{history:?}");
    let first = history.stdout.lines().next().unwrap_or_default();
    assert!(
        first.contains("mapper.push")
            && first.contains("tester")
            && first.contains("binance_trade"),
        "{}",
        history.stdout
    );
    let list = b.cli(&["mapper", "list"]);
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("binance_trade "))
        .expect("binance_trade listed");
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        columns[1..3],
        ["2", "2"],
        "promoted 2 of 2 versions: {line}"
    );
}
