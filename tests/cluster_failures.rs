//! A cluster through the failures of its shared parts: NATS restarted, a bus connection that
//! silently stops delivering, the config store's Redis restarted, and a consumption lease taken
//! by someone else.

mod common;

use std::time::Duration;

use common::nats::NatsServer;
use common::proxy::StallingProxy;
use common::redis::RedisServer;
use common::trades::expect_trades;
use common::{wait_for, Gateway};
use serde_json::Value;

const WS_PATH: &str = "/stream?streams=btcusdt@trade";

fn config(url: &str) -> Value {
    common::trades::redis_stream_config(url)
}

async fn produce(data: &RedisServer, ids: std::ops::RangeInclusive<u64>) {
    common::trades::produce(&data.url(), ids).await
}

fn wait_subscribed(gateway: &Gateway) {
    wait_for("the node's bus subscription", || {
        gateway.metric("wsgate_bus_subscriptions ") == 1.0
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_resumes_after_nats_restarts() {
    let (store, data) = (RedisServer::new(), RedisServer::new());
    let mut nats = NatsServer::new();
    let config = config(&data.url());
    let a = Gateway::cluster_node(&config, &store.url(), &nats.url(), "node-a");
    let b = Gateway::cluster_node(&config, &store.url(), &nats.url(), "node-b");
    wait_for("the datasource consumed", || {
        a.metric("wsgate_source_up{") + b.metric("wsgate_source_up{") == 1.0
    });
    let mut on_a = a.connect(WS_PATH).await;
    let mut on_b = b.connect(WS_PATH).await;
    wait_subscribed(&a);
    wait_subscribed(&b);
    produce(&data, 1..=20).await;
    expect_trades(&mut on_a, 1..=20).await;
    expect_trades(&mut on_b, 1..=20).await;

    nats.stop();
    wait_for("both nodes to report the bus down", || {
        [&a, &b].iter().all(|g| {
            let (status, body) = g.http_get("/readyz").unwrap();
            status == 503 && body.contains("bus:")
        })
    });
    nats.start();
    wait_for("both nodes ready again", || {
        [&a, &b]
            .iter()
            .all(|g| g.http_get("/readyz").unwrap().0 == 200)
    });
    produce(&data, 101..=120).await;
    expect_after_outage(&mut on_a, 101..=120).await;
    expect_after_outage(&mut on_b, 101..=120).await;
}

/// Receives trades until `ids` have arrived in order, skipping earlier ones that were held up
/// during an outage (core NATS delivers at most once: what was in flight may be gone).
async fn expect_after_outage(client: &mut common::Client, ids: std::ops::RangeInclusive<u64>) {
    let first = *ids.start();
    let mut got = Vec::new();
    while got.last() != Some(ids.end()) {
        let trade = common::collect_stream(client, "btcusdt@trade", 1, Duration::from_secs(30))
            .await
            .remove(0);
        let id = trade["t"].as_u64().unwrap();
        if id >= first {
            got.push(id);
        }
    }
    assert_eq!(got, ids.collect::<Vec<_>>());
    common::trades::expect_silence(client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bus_probe_catches_a_connection_that_silently_stopped() {
    let (store, data) = (RedisServer::new(), RedisServer::new());
    let nats = NatsServer::new();
    let proxy = StallingProxy::start(format!("127.0.0.1:{}", nats.port()).parse().unwrap()).await;
    let url = format!("nats://{}", proxy.addr());
    let (gateway, mut client) = node_with_client(&store, &data, &url).await;
    produce(&data, 1..=20).await;
    expect_trades(&mut client, 1..=20).await;

    // The connection stays open but nothing passes: only the probe can tell.
    proxy.stall();
    wait_for("the probe to report the bus down", || {
        let (status, body) = gateway.http_get("/readyz").unwrap();
        status == 503 && body.contains("bus probe unanswered")
    });
    assert_eq!(gateway.metric("wsgate_bus_up "), 0.0);
    // It forces a new connection, which restores the subscriptions and delivery.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while gateway.http_get("/readyz").unwrap().0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the bus never answered again:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gateway.metric("wsgate_bus_up "), 1.0);
    produce(&data, 101..=120).await;
    expect_after_outage(&mut client, 101..=120).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_keep_streaming_through_a_config_store_restart_and_negotiate_after_it() {
    let mut store = RedisServer::persistent();
    let data = RedisServer::new();
    let nats = NatsServer::new();
    let config = config(&data.url());
    let a = Gateway::cluster_node(&config, &store.url(), &nats.url(), "node-a");
    let b = Gateway::cluster_node(&config, &store.url(), &nats.url(), "node-b");
    wait_for("the datasource consumed", || {
        a.metric("wsgate_source_up{") + b.metric("wsgate_source_up{") == 1.0
    });
    let (owner, other) = if a.metric("wsgate_source_up{") == 1.0 {
        (a, b)
    } else {
        (b, a)
    };
    let mut client = other.connect(WS_PATH).await;
    wait_subscribed(&other);
    produce(&data, 1..=20).await;
    expect_trades(&mut client, 1..=20).await;

    // Redis away: both nodes keep running their last config, and the stream keeps flowing.
    store.stop();
    produce(&data, 21..=40).await;
    expect_trades(&mut client, 21..=40).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    produce(&data, 41..=60).await;
    expect_trades(&mut client, 41..=60).await;
    store.start();

    // Heartbeats resume, and so does negotiation: the owner's departure is noticed and its
    // datasource moves to the other node, with nothing lost or repeated.
    let registry = redis::Client::open(store.url()).unwrap();
    let mut conn = registry.get_multiplexed_async_connection().await.unwrap();
    for _ in 0..100 {
        let live: usize = redis::cmd("ZCARD")
            .arg("cluster:peers")
            .query_async(&mut conn)
            .await
            .unwrap();
        if live == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let live: usize = redis::cmd("ZCARD")
        .arg("cluster:peers")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(live, 2, "both nodes heartbeat again");
    drop(owner);
    wait_for("the other node to take over", || {
        other.metric("wsgate_source_up{") == 1.0
    });
    produce(&data, 61..=80).await;
    expect_trades(&mut client, 61..=80).await;
}

/// Cluster node `node-a` alone, its store at `store` and its bus at `nats`, consuming `data`,
/// with a client subscribed to `WS_PATH`.
async fn node_with_client(
    store: &RedisServer,
    data: &RedisServer,
    nats: &str,
) -> (Gateway, common::Client) {
    let gateway = Gateway::cluster_node(&config(&data.url()), &store.url(), nats, "node-a");
    wait_for("the datasource consumed", || {
        gateway.metric("wsgate_source_up{") == 1.0
    });
    let client = gateway.connect(WS_PATH).await;
    wait_subscribed(&gateway);
    (gateway, client)
}

/// Who holds the `trades` datasource's consumption lease.
async fn lease_holder(conn: &mut redis::aio::MultiplexedConnection) -> Option<String> {
    redis::cmd("GET")
        .arg("cluster:lease:trades")
        .query_async(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_loses_its_lease_waits_and_resumes_once_it_is_free() {
    let (store, data) = (RedisServer::new(), RedisServer::new());
    let nats = NatsServer::new();
    let (gateway, mut client) = node_with_client(&store, &data, &nats.url()).await;
    produce(&data, 1..=20).await;
    expect_trades(&mut client, 1..=20).await;

    // Another holder takes the lease, as a node would after this one stalled past the TTL.
    let registry = redis::Client::open(store.url()).unwrap();
    let mut conn = registry.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("cluster:lease:trades")
        .arg("thief")
        .arg("PX")
        .arg(5000)
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_for("the source to stop and queue for its lease", || {
        let (status, body) = gateway.http_get("/readyz").unwrap();
        gateway.metric("wsgate_source_up{") == 0.0
            && status == 200
            && body.contains("source trades: waiting for the datasource's lease")
    });
    // While the other holds it, this node reads nothing.
    produce(&data, 21..=40).await;
    common::trades::expect_silence(&mut client).await;
    assert_eq!(lease_holder(&mut conn).await.as_deref(), Some("thief"));
    assert_eq!(gateway.metric("wsgate_source_events_total"), 20.0);

    // Once it lapses the node takes the lease back and goes on where it stopped.
    expect_trades(&mut client, 21..=40).await;
    assert_eq!(gateway.metric("wsgate_source_up{"), 1.0);
    assert_eq!(lease_holder(&mut conn).await.as_deref(), Some("node-a"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_outage_leaves_cluster_nodes_ready_and_is_listed() {
    let store = RedisServer::new();
    let mut data = RedisServer::persistent();
    let nats = NatsServer::new();
    let (gateway, mut client) = node_with_client(&store, &data, &nats.url()).await;

    // Every node would lack the same data: the owner stays in rotation, saying what is wrong.
    data.stop();
    wait_for("the outage listed while the node stays ready", || {
        let (status, body) = gateway.http_get("/readyz").unwrap();
        status == 200 && body.starts_with("degraded\n") && body.contains("source trades: ")
    });
    data.start();
    wait_for("the node fully ready again", || {
        gateway.http_get("/readyz").unwrap() == (200, "ready\n".to_string())
    });
    produce(&data, 1..=20).await;
    expect_trades(&mut client, 1..=20).await;
}
