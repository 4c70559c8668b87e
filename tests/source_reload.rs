//! Hot add, remove and change of a datasource and of a route while another source streams: the
//! added one starts delivering, the removed one stops, a changed one follows its new config from
//! where it was (nothing consumed twice, nothing skipped), and the other stream sees no gap and
//! is never restarted.

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{collect_stream, next_seen, shipped_config, wait_for, Client, Gateway, Seen};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// The demo `match` event of DOGEUSDT trade `id`.
fn doge_trade(id: u64) -> String {
    json!({
        "type": "match", "symbol": "DOGEUSDT", "ts_us": 1_767_000_000_000_000u64 + id,
        "taker_order_id": id, "taker_side": "SELL",
        "fills": [{"trade_id": id, "agg_id": id, "price": "0.10000000", "qty": "5.00000000",
                   "maker_order_id": id}]
    })
    .to_string()
}

async fn produce(redis: &RedisServer, ids: std::ops::RangeInclusive<u64>) {
    produce_to(redis, "doge", ids).await;
}

/// XADDs the DOGEUSDT trades `ids` to stream `key`, in order.
async fn produce_to(redis: &RedisServer, key: &str, ids: std::ops::RangeInclusive<u64>) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("payload")
            .arg(doge_trade(id))
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await.unwrap();
}

/// The shipped demo config plus a `redis_stream` datasource feeding `dogeusdt@trade`.
fn with_redis_source(url: &str) -> Value {
    with_redis_streams(url, &["doge"], &["doge"])
}

/// The shipped demo config plus a `redis_stream` datasource `doge` reading `streams`, and its
/// route `doge-trades` reading `upstream` into `dogeusdt@trade`.
fn with_redis_streams(url: &str, streams: &[&str], upstream: &[&str]) -> Value {
    let mut config = shipped_config();
    config["datasource"].as_array_mut().unwrap().push(json!({
        "version": 1, "type": "redis_stream", "name": "doge",
        "properties": {"url": url, "streams": streams, "block_ms": 200}
    }));
    config["topics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"version": 1, "topic": "dogeusdt@trade"}));
    config["routes"].as_array_mut().unwrap().push(json!({
        "id": "doge-trades", "version": 1, "data_source": "doge", "upstream": upstream,
        "mappings": [{"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade",
                      "ws_topic": "{symbol}@trade"}]
    }));
    config
}

fn apply(gateway: &Gateway, config: &Value) {
    gateway.apply_config(config)
}

/// The config the store holds now (`wsgate config get`), entry versions included: what an
/// operator edits and applies back.
fn stored_config(gateway: &Gateway) -> Value {
    let out = gateway.cli(&["config", "get"]);
    assert!(out.ok, "{out:?}");
    let mut current: Value = serde_json::from_str(&out.stdout).unwrap();
    current["config"].take()
}

/// The entry of `config[list]` whose `field` is `key`.
fn entry<'a>(config: &'a mut Value, list: &str, field: &str, key: &str) -> &'a mut Value {
    config[list]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e[field] == key)
        .unwrap_or_else(|| panic!("no {list} entry with {field} {key}"))
}

/// How many times datasource `name` was started (its `source started` log lines).
fn starts(gateway: &Gateway, name: &str) -> usize {
    let field = format!("datasource={name}");
    gateway
        .log()
        .lines()
        .filter(|line| line.contains("source started"))
        .filter(|line| line.split_whitespace().any(|word| word == field))
        .count()
}

/// The config version the node last applied (its `store revision applied` log lines).
fn applied_config_version(gateway: &Gateway) -> u64 {
    gateway
        .log()
        .lines()
        .filter(|line| line.contains("store revision applied"))
        .filter_map(|line| {
            let word = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("config_version="))?;
            word.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Reads `client` for `quiet`, failing on any message of `stream`.
async fn assert_no_more(client: &mut Client, stream: &str, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let next = next_seen(client, left + Duration::from_secs(1));
        match tokio::time::timeout(left, next).await {
            Err(_) => return,
            Ok(Seen::Json(value)) => {
                assert_ne!(
                    value["stream"], stream,
                    "unexpected `{stream}` message: {value}"
                )
            }
            Ok(other) => panic!("the `{stream}` client saw {other:?}"),
        }
    }
}

/// The trade ids of `trades` with ids in `range`, in arrival order.
fn ids_in(trades: &[Value], range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    trade_ids(trades)
        .into_iter()
        .filter(|id| range.contains(id))
        .collect()
}

fn trade_ids(trades: &[Value]) -> Vec<u64> {
    trades.iter().map(|t| t["t"].as_u64().unwrap()).collect()
}

fn assert_consecutive(ids: &[u64]) {
    for pair in ids.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a gap or repeat in the demo stream");
    }
}

async fn demo_trades(client: &mut Client, count: usize) -> Vec<u64> {
    trade_ids(&collect_stream(client, "btcusdt@trade", count, WAIT).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_datasource_added_and_removed_at_run_time_leaves_the_others_flowing() {
    let redis = RedisServer::new();
    let gateway = Gateway::start(&["--admin-token", common::TEST_TOKEN]);
    let mut demo = gateway.connect("/stream?streams=btcusdt@trade").await;
    let mut seen = demo_trades(&mut demo, 10).await;

    // Add: the new source starts and delivers; the demo stream does not notice.
    apply(&gateway, &with_redis_source(&redis.url()));
    wait_for("the added source to come up", || {
        gateway.metric("wsgate_source_up{datasource=\"doge\"}") == 1.0
    });
    let mut doge = gateway.connect("/stream?streams=dogeusdt@trade").await;
    produce(&redis, 1..=30).await;
    let got = collect_stream(&mut doge, "dogeusdt@trade", 30, WAIT).await;
    assert_eq!(trade_ids(&got), (1..=30).collect::<Vec<_>>());
    seen.extend(demo_trades(&mut demo, 10).await);

    // Remove: the source stops consuming; the demo stream still does not notice.
    apply(&gateway, &shipped_config());
    wait_for("the removed source to go down", || {
        gateway.metric("wsgate_source_up{datasource=\"doge\"}") == 0.0
    });
    let consumed = gateway.metric("wsgate_source_events_total{datasource=\"doge\"}");
    produce(&redis, 31..=40).await;
    seen.extend(demo_trades(&mut demo, 10).await);
    assert_eq!(
        gateway.metric("wsgate_source_events_total{datasource=\"doge\"}"),
        consumed,
        "a removed datasource must not consume"
    );
    assert_consecutive(&seen);
    let (status, _) = gateway.http_get("/readyz").unwrap();
    assert_eq!(status, 200, "a removed source does not hold readiness");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_datasource_changed_at_run_time_follows_its_new_properties_and_leaves_the_others_flowing()
{
    let redis = RedisServer::new();
    let config = with_redis_streams(&redis.url(), &["doge.a"], &["doge.*"]);
    let gateway = Gateway::start_with(config, &["--admin-token", common::TEST_TOKEN]);
    let mut demo = gateway.connect("/stream?streams=btcusdt@trade").await;
    let mut doge = gateway.connect("/stream?streams=dogeusdt@trade").await;
    let mut seen = demo_trades(&mut demo, 10).await;

    // Before: the source reads `doge.a`.
    produce_to(&redis, "doge.a", 1..=10).await;
    let got = collect_stream(&mut doge, "dogeusdt@trade", 10, WAIT).await;
    assert_eq!(trade_ids(&got), (1..=10).collect::<Vec<_>>());
    seen.extend(demo_trades(&mut demo, 10).await);

    // Change its properties: `doge.b` instead of `doge.a`. The entry names the version it
    // replaces; the route and the demo datasource are left as they are.
    let mut config = stored_config(&gateway);
    let source = entry(&mut config, "datasource", "name", "doge");
    assert_eq!(source["version"], 1);
    source["properties"]["streams"] = json!(["doge.b"]);
    apply(&gateway, &config);
    let mut stored = stored_config(&gateway);
    assert_eq!(
        entry(&mut stored, "datasource", "name", "doge")["version"],
        2
    );
    assert_eq!(
        entry(&mut stored, "datasource", "name", "demo")["version"],
        1
    );
    assert_eq!(
        entry(&mut stored, "routes", "id", "doge-trades")["version"],
        1
    );

    // The changed source now reads `doge.b` (entries added while it restarts included)...
    produce_to(&redis, "doge.b", 11..=20).await;
    let got = collect_stream(&mut doge, "dogeusdt@trade", 10, WAIT).await;
    assert_eq!(trade_ids(&got), (11..=20).collect::<Vec<_>>());
    wait_for("the changed source to be up again", || {
        starts(&gateway, "doge") == 2
            && gateway.metric("wsgate_source_up{datasource=\"doge\"}") == 1.0
    });
    let consumed = gateway.metric("wsgate_source_events_total{datasource=\"doge\"}");
    assert_eq!(consumed, 20.0, "each entry is consumed once");

    // ...and no longer `doge.a`.
    produce_to(&redis, "doge.a", 1001..=1010).await;
    seen.extend(demo_trades(&mut demo, 10).await);
    assert_no_more(&mut doge, "dogeusdt@trade", Duration::from_secs(1)).await;
    assert_eq!(
        gateway.metric("wsgate_source_events_total{datasource=\"doge\"}"),
        consumed,
        "the changed datasource still reads the stream it no longer names"
    );

    // The demo source was neither restarted nor interrupted.
    seen.extend(demo_trades(&mut demo, 10).await);
    assert_consecutive(&seen);
    assert_eq!(starts(&gateway, "demo"), 1, "the demo source was restarted");
    assert_eq!(
        starts(&gateway, "doge"),
        2,
        "the changed source restarted again"
    );
    let (status, _) = gateway.http_get("/readyz").unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_changed_at_run_time_follows_its_new_config_from_where_it_was() {
    let redis = RedisServer::new();
    let config = with_redis_streams(&redis.url(), &["doge.a", "doge.b"], &["doge.a"]);
    let gateway = Gateway::start_with(config, &["--admin-token", common::TEST_TOKEN]);
    let mut demo = gateway.connect("/stream?streams=btcusdt@trade").await;
    let mut doge = gateway.connect("/stream?streams=dogeusdt@trade").await;
    let mut seen = demo_trades(&mut demo, 10).await;

    // Before: the route reads `doge.a` only; `doge.b` is consumed but feeds no route.
    produce_to(&redis, "doge.a", 1..=10).await;
    produce_to(&redis, "doge.b", 101..=105).await;
    let got = collect_stream(&mut doge, "dogeusdt@trade", 10, WAIT).await;
    assert_eq!(trade_ids(&got), (1..=10).collect::<Vec<_>>());
    wait_for("the source to consume both streams", || {
        gateway.metric("wsgate_source_events_total{datasource=\"doge\"}") == 15.0
    });
    seen.extend(demo_trades(&mut demo, 10).await);

    // Change the route's upstream to both streams; entries keep coming meanwhile.
    let mut config = stored_config(&gateway);
    let route = entry(&mut config, "routes", "id", "doge-trades");
    assert_eq!(route["version"], 1);
    route["upstream"] = json!(["doge.a", "doge.b"]);
    apply(&gateway, &config);
    produce_to(&redis, "doge.a", 11..=20).await;
    wait_for("the doge source to restart with the changed route", || {
        starts(&gateway, "doge") == 2
            && gateway.metric("wsgate_source_up{datasource=\"doge\"}") == 1.0
    });
    produce_to(&redis, "doge.a", 21..=30).await;
    produce_to(&redis, "doge.b", 106..=110).await;
    // Exactly once each, from where the route was: nothing consumed before the change comes
    // again (1..=10, nor 101..=105 that no route read then), nothing is skipped.
    let got = collect_stream(&mut doge, "dogeusdt@trade", 25, WAIT).await;
    assert_no_more(&mut doge, "dogeusdt@trade", Duration::from_secs(1)).await;
    assert_eq!(ids_in(&got, 1..=100), (11..=30).collect::<Vec<_>>());
    assert_eq!(ids_in(&got, 101..=200), (106..=110).collect::<Vec<_>>());
    assert_eq!(got.len(), 25);
    seen.extend(demo_trades(&mut demo, 10).await);

    // Change the route's mapper: swapped between two events, without restarting the source.
    produce_to(&redis, "doge.a", 31..=40).await;
    let got = collect_stream(&mut doge, "dogeusdt@trade", 10, WAIT).await;
    assert_eq!(trade_ids(&got), (31..=40).collect::<Vec<_>>());
    let swaps = gateway.metric("wsgate_mapper_swaps_total");
    let mut config = stored_config(&gateway);
    let route = entry(&mut config, "routes", "id", "doge-trades");
    assert_eq!(route["version"], 2);
    route["mappings"][0]["mapper"] = json!("tagged_trade");
    apply(&gateway, &config);
    // Entries added while the node applies the change are mapped by either mapper; those added
    // once it has applied it, by the new one (a route swaps before its next batch).
    produce_to(&redis, "doge.a", 41..=60).await;
    wait_for("the node to apply config version 3", || {
        applied_config_version(&gateway) == 3
    });
    produce_to(&redis, "doge.a", 61..=70).await;
    let got = collect_stream(&mut doge, "dogeusdt@trade", 30, WAIT).await;
    assert_no_more(&mut doge, "dogeusdt@trade", Duration::from_secs(1)).await;
    assert_eq!(trade_ids(&got), (41..=70).collect::<Vec<_>>());
    let tagged: Vec<bool> = got.iter().map(|t| t["mapper"] == "tagged_trade").collect();
    let first_tagged = tagged
        .iter()
        .position(|&t| t)
        .expect("the new mapper never ran");
    assert!(
        tagged[first_tagged..].iter().all(|&t| t),
        "the old mapper ran after the new one: {tagged:?}"
    );
    assert!(tagged[20..].iter().all(|&t| t), "not swapped once applied");
    assert_eq!(gateway.metric("wsgate_mapper_swaps_total"), swaps + 1.0);
    assert_eq!(
        starts(&gateway, "doge"),
        2,
        "a mapper change restarted the source"
    );
    let mut stored = stored_config(&gateway);
    assert_eq!(
        entry(&mut stored, "routes", "id", "doge-trades")["version"],
        3
    );

    // The demo source was neither restarted nor interrupted by either change.
    seen.extend(demo_trades(&mut demo, 10).await);
    assert_consecutive(&seen);
    assert_eq!(starts(&gateway, "demo"), 1, "the demo source was restarted");
}
