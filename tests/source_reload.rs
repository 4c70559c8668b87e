//! Hot add and remove of a datasource and its route while another source streams: the added
//! one starts delivering, the removed one stops, and the other stream sees no gap.

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{collect_stream, shipped_config, wait_for, Client, Gateway};
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
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("XADD")
            .arg("doge")
            .arg("*")
            .arg("payload")
            .arg(doge_trade(id))
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await.unwrap();
}

/// The shipped demo config plus a `redis_stream` datasource feeding `dogeusdt@trade`.
fn with_redis_source(url: &str) -> Value {
    let mut config = shipped_config();
    config["datasource"].as_array_mut().unwrap().push(json!({
        "version": 1, "type": "redis_stream", "name": "doge",
        "properties": {"url": url, "streams": ["doge"], "block_ms": 200}
    }));
    config["topics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"version": 1, "topic": "dogeusdt@trade"}));
    config["routes"].as_array_mut().unwrap().push(json!({
        "id": "doge-trades", "version": 1, "data_source": "doge", "upstream": ["doge"],
        "mappings": [{"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade",
                      "ws_topic": "{symbol}@trade"}]
    }));
    config
}

fn apply(gateway: &Gateway, config: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let out = gateway.cli(&["config", "apply", file.to_str().unwrap()]);
    assert!(out.ok, "{out:?}");
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
