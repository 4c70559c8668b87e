//! The `redis_stream` datasource against a real `redis-server` (a private one per test, on a unix
//! socket): entries produced with the `redis` client reach WebSocket clients mapped, in order and
//! once; they are acknowledged only once handed off; a crashed gateway resumes from its pending
//! entries; abandoned entries of a dead consumer are claimed; a broker restart is survived.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::trades::{expect_trades, match_event, wait_events};
use common::{wait_for, Gateway};
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const STREAM: &str = "trades";
const GROUP: &str = "wsgate";
const WS_PATH: &str = "/stream?streams=btcusdt@trade";

/// A gateway config reading `trades` from `url` as consumer `consumer`, mapping it to
/// `btcusdt@trade`; `extra` properties are merged in.
fn config(url: &str, consumer: &str, extra: Value) -> Value {
    let mut properties = json!({
        "url": url,
        "streams": [STREAM],
        "consumer": consumer,
        "block_ms": 200,
    });
    for (k, v) in extra.as_object().unwrap() {
        properties[k] = v.clone();
    }
    json!({
        "vars": {},
        "datasource": [
            {"version": 1, "type": "redis_stream", "name": "redis", "properties": properties}
        ],
        "topics": [
            {"version": 1, "topic": "{symbol}@trade", "vars": {"symbol": ["btcusdt"]}, "auth": "public"}
        ],
        "routes": [
            {
                "id": "redis-trades",
                "version": 1,
                "data_source": "redis",
                "upstream": [STREAM],
                "mappings": [
                    {"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade", "ws_topic": "{symbol}@trade"}
                ]
            }
        ]
    })
}

async fn producer(redis: &RedisServer) -> MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// `XADD trades * key BTCUSDT payload <trade>` for every id.
async fn produce(conn: &mut MultiplexedConnection, ids: std::ops::RangeInclusive<u64>) {
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("key")
            .arg("BTCUSDT")
            .arg("payload")
            .arg(match_event(id))
            .ignore();
    }
    pipe.query_async::<()>(conn).await.unwrap();
}

/// Entries delivered to the group and not acknowledged.
async fn pending(conn: &mut MultiplexedConnection) -> usize {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg(GROUP)
        .query_async(conn)
        .await
        .unwrap();
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as usize,
            other => panic!("unexpected XPENDING count {other:?}"),
        },
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

/// Waits until nothing is pending in the group.
async fn wait_no_pending(conn: &mut MultiplexedConnection) {
    let deadline = Instant::now() + WAIT;
    loop {
        let count = pending(conn).await;
        if count == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{count} entries still pending after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `/readyz` says every source is up.
fn wait_source_up(gateway: &Gateway) {
    let deadline = Instant::now() + WAIT;
    while gateway.http_get("/readyz").map(|(s, _)| s).ok() != Some(200) {
        assert!(Instant::now() < deadline, "never ready:\n{}", gateway.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_reach_clients_in_order_once_and_are_acknowledged() {
    let redis = RedisServer::new();
    let mut conn = producer(&redis).await;
    let gateway = Gateway::start_with(config(&redis.url(), "c1", json!({})), &[]);
    let mut client = gateway.connect(WS_PATH).await;
    produce(&mut conn, 1..=200).await;
    expect_trades(&mut client, 1..=200).await;
    wait_no_pending(&mut conn).await;
    // A second batch after the first was acknowledged continues where it left off.
    produce(&mut conn, 201..=250).await;
    expect_trades(&mut client, 201..=250).await;
    wait_no_pending(&mut conn).await;
    assert_eq!(gateway.metric("wsgate_source_events_total"), 250.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_gateway_resumes_from_its_pending_entries() {
    let redis = RedisServer::new();
    let mut conn = producer(&redis).await;
    let url = redis.url();
    let mut gateway = Gateway::start_with(config(&url, "c1", json!({})), &[]);
    let mut client = gateway.connect(WS_PATH).await;
    produce(&mut conn, 1..=20).await;
    expect_trades(&mut client, 1..=20).await;
    wait_no_pending(&mut conn).await;

    gateway.signal("KILL");
    assert!(gateway.wait_exit(Duration::from_secs(10)).is_some());
    drop(client);
    // While it is down: entries 21..=30 are delivered to consumer c1 but never acknowledged (as
    // if it had crashed between reading and hand-off), and 31..=40 are not read at all.
    produce(&mut conn, 21..=30).await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("c1")
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    produce(&mut conn, 31..=40).await;
    assert_eq!(pending(&mut conn).await, 10);

    let gateway = Gateway::start_with(config(&url, "c1", json!({})), &[]);
    // Each of the 20 exactly once, then all acknowledged.
    wait_events(&gateway, 20.0);
    wait_no_pending(&mut conn).await;
    let mut client = gateway.connect(WS_PATH).await;
    produce(&mut conn, 41..=50).await;
    expect_trades(&mut client, 41..=50).await;
    wait_no_pending(&mut conn).await;
    assert_eq!(gateway.metric("wsgate_source_events_total"), 30.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_abandoned_by_a_dead_consumer_are_claimed() {
    let redis = RedisServer::new();
    let mut conn = producer(&redis).await;
    let gateway = Gateway::start_with(
        config(&redis.url(), "c1", json!({"claim_idle_ms": 1000})),
        &[],
    );
    let mut client = gateway.connect(WS_PATH).await;
    // Atomically: add entries and deliver them to another consumer, which then dies; the
    // gateway's blocked read never sees them.
    let mut pipe = redis::pipe();
    pipe.atomic();
    for id in 1..=10 {
        pipe.cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("key")
            .arg("BTCUSDT")
            .arg("payload")
            .arg(match_event(id))
            .ignore();
    }
    pipe.cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("dead")
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .ignore();
    pipe.query_async::<()>(&mut conn).await.unwrap();
    assert_eq!(pending(&mut conn).await, 10);
    expect_trades(&mut client, 1..=10).await;
    wait_no_pending(&mut conn).await;
    produce(&mut conn, 11..=15).await;
    expect_trades(&mut client, 11..=15).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_source_reconnects_after_a_broker_restart() {
    let mut redis = RedisServer::new();
    let mut conn = producer(&redis).await;
    let gateway = Gateway::start_with(config(&redis.url(), "c1", json!({})), &[]);
    let mut client = gateway.connect(WS_PATH).await;
    produce(&mut conn, 1..=10).await;
    expect_trades(&mut client, 1..=10).await;

    redis.stop();
    // The outage shows on /readyz while the gateway keeps serving its clients.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = gateway.http_get("/readyz").unwrap();
        if status == 503 {
            assert!(body.contains("redis"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never reported the outage"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    redis.start();
    wait_source_up(&gateway);

    // The restarted broker is empty; the source recreated its group and reads what comes now.
    let mut conn = producer(&redis).await;
    produce(&mut conn, 11..=30).await;
    expect_trades(&mut client, 11..=30).await;
    wait_no_pending(&mut conn).await;
    assert!(gateway.metric("wsgate_source_reconnects_total") >= 1.0);
}

#[test]
fn a_bad_datasource_config_is_rejected_naming_the_property() {
    let redis = RedisServer::new();
    let mut bad_url = config(&redis.url(), "c1", json!({}));
    bad_url["datasource"][0]["properties"]["url"] = json!("http://nope");
    common::assert_start_refused(bad_url, "url");
    let mut no_streams = config(&redis.url(), "c1", json!({}));
    no_streams["datasource"][0]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("streams");
    // Without `streams`, the datasource reads its routes' upstream, which must then be stream
    // keys, not patterns.
    no_streams["routes"][0]["upstream"] = json!(["trades.*"]);
    common::assert_start_refused(no_streams, "streams");
    common::assert_start_refused(config(&redis.url(), "c1", json!({"batch": 0})), "batch");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_acknowledges_what_was_handed_off() {
    let redis = RedisServer::new();
    let mut conn = producer(&redis).await;
    let mut gateway = Gateway::start_with(config(&redis.url(), "c1", json!({"batch": 20})), &[]);
    let _client = gateway.connect(WS_PATH).await;
    // Entries keep coming while the gateway stops, so batches are in flight when it does.
    let mut feed = producer(&redis).await;
    let feeding = tokio::spawn(async move {
        let mut id = 1;
        loop {
            produce(&mut feed, id..=id + 19).await;
            id += 20;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    wait_events_at_least(&gateway, 500.0);
    gateway.signal("TERM");
    assert!(gateway.wait_exit(Duration::from_secs(15)).is_some());
    feeding.abort();
    assert_eq!(pending(&mut conn).await, 0, "{}", gateway.log());
}

/// Waits until the gateway has received at least `count` events.
fn wait_events_at_least(gateway: &Gateway, count: f64) {
    let deadline = Instant::now() + WAIT;
    while gateway.metric("wsgate_source_events_total") < count {
        assert!(
            Instant::now() < deadline,
            "too few events:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lag_gauge_counts_what_the_group_has_not_acknowledged() {
    let redis = RedisServer::new();
    let mut conn = producer(&redis).await;
    // Claiming off: entries another consumer holds stay pending in the group.
    let gateway = Gateway::start_with(config(&redis.url(), "c1", json!({"claim_idle_ms": 0})), &[]);
    let lag = "wsgate_source_lag{datasource=\"redis\"}";
    let mut pipe = redis::pipe();
    pipe.atomic();
    for id in 1..=7 {
        pipe.cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("payload")
            .arg(match_event(id))
            .ignore();
    }
    pipe.cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("other")
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .ignore();
    pipe.query_async::<()>(&mut conn).await.unwrap();
    wait_for("a lag of the 7 entries another consumer holds", || {
        gateway.metric(lag) == 7.0
    });
    // Acknowledged elsewhere: the lag drops to zero.
    let ids: Vec<String> = {
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg(STREAM)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        match reply {
            redis::Value::Array(entries) => entries
                .into_iter()
                .filter_map(|e| match e {
                    redis::Value::Array(mut parts) => match parts.remove(0) {
                        redis::Value::BulkString(id) => String::from_utf8(id).ok(),
                        _ => None,
                    },
                    _ => None,
                })
                .collect(),
            other => panic!("unexpected XRANGE reply {other:?}"),
        }
    };
    let _: i64 = redis::cmd("XACK")
        .arg(STREAM)
        .arg(GROUP)
        .arg(&ids)
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_for("the lag to go back to 0", || gateway.metric(lag) == 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_entry_is_counted_logged_with_its_id_and_skipped() {
    let redis = RedisServer::new();
    let mut conn = producer(&redis).await;
    let gateway = Gateway::start_with(config(&redis.url(), "c1", json!({})), &[]);
    let mut client = gateway.connect(WS_PATH).await;
    produce(&mut conn, 1..=5).await;
    let poison_id: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("payload")
        .arg(r#"{"type":"match","symbol":"BTCUSDT","fills":"not a list"}"#)
        .query_async(&mut conn)
        .await
        .unwrap();
    produce(&mut conn, 6..=10).await;
    expect_trades(&mut client, 1..=10).await;
    wait_no_pending(&mut conn).await;
    assert_eq!(
        gateway.metric("wsgate_mapper_errors_total{kind=\"error\",mapper=\"binance_trade@1\"}"),
        1.0
    );
    // Per datasource: eleven consumed, ten mapped, one error.
    let per_source = |name: &str| gateway.metric(&format!("{name}{{datasource=\"redis\"}}"));
    assert_eq!(per_source("wsgate_source_events_total"), 11.0);
    assert_eq!(per_source("wsgate_source_mapped_total"), 10.0);
    assert_eq!(per_source("wsgate_source_errors_total"), 1.0);
    let log = gateway.log();
    let line = log
        .lines()
        .find(|l| l.contains("event dropped by its mapper"))
        .unwrap_or_else(|| panic!("no log line for the poison entry:\n{log}"));
    assert!(
        line.contains(&poison_id),
        "the log names the entry id {poison_id}: {line}"
    );
}
