//! Several nodes on one real Redis (config store) and one real NATS (bus): the node a route is
//! assigned to consumes and maps its events once, and clients on every node receive them.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::nats::NatsServer;
use common::redis::RedisServer;
use common::{wait_for, Gateway};
use serde_json::{json, Value};

/// Waits until `gateway` subscribes to `subjects` bus subjects for its clients.
fn wait_bus_subscriptions(gateway: &Gateway, subjects: f64) {
    wait_for("the node's bus subscriptions", || {
        gateway.metric("wsgate_bus_subscriptions ") == subjects
    });
}

/// `count` redis_stream datasources `s1..`, each reading key `k<i>` and mapping it to
/// `s<i>usdt@trade`, with no owner assigned: the cluster assigns them.
fn many_sources(url: &str, count: usize) -> Value {
    let symbols: Vec<String> = (1..=count).map(|i| format!("s{i}usdt")).collect();
    let datasource: Vec<Value> = (1..=count)
        .map(|i| {
            json!({"version": 1, "type": "redis_stream", "name": format!("s{i}"),
                   "properties": {"url": url, "streams": [format!("k{i}")], "block_ms": 100}})
        })
        .collect();
    let routes: Vec<Value> = (1..=count)
        .map(|i| {
            json!({"id": format!("r{i}"), "version": 1, "data_source": format!("s{i}"),
                   "upstream": [format!("k{i}")],
                   "mappings": [{"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade",
                                 "ws_topic": "{symbol}@trade"}]})
        })
        .collect();
    json!({
        "vars": {},
        "datasource": datasource,
        "topics": [{"version": 1, "topic": "{symbol}@trade", "vars": {"symbol": symbols},
                    "auth": "public"}],
        "routes": routes
    })
}

/// The demo `match` event of trade `id` of `S<i>USDT`.
fn trade(i: usize, id: u64) -> String {
    json!({
        "type": "match", "symbol": format!("S{i}USDT"), "ts_us": 1_767_000_000_000_000u64 + id,
        "taker_order_id": id, "taker_side": "BUY",
        "fills": [{"trade_id": id, "agg_id": id, "price": "1.00000000", "qty": "1.00000000",
                   "maker_order_id": id}]
    })
    .to_string()
}

/// Produces trades `1..=rounds` on each of `count` keys, a round every 20 ms.
async fn produce_rounds(url: String, count: usize, rounds: u64) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for id in 1..=rounds {
        let mut pipe = redis::pipe();
        for i in 1..=count {
            pipe.cmd("XADD")
                .arg(format!("k{i}"))
                .arg("*")
                .arg("payload")
                .arg(trade(i, id))
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Reads trade ids per stream from `client` until it has been quiet for six seconds (longer
/// than a failover).
fn record(mut client: common::Client) -> tokio::task::JoinHandle<BTreeMap<String, Vec<u64>>> {
    tokio::spawn(async move {
        let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        loop {
            let next = common::next_seen(&mut client, Duration::from_secs(60));
            match tokio::time::timeout(Duration::from_secs(6), next).await {
                Ok(common::Seen::Json(value)) => {
                    if let (Some(stream), Some(id)) =
                        (value["stream"].as_str(), value["data"]["t"].as_u64())
                    {
                        seen.entry(stream.to_string()).or_default().push(id);
                    }
                }
                _ => return seen,
            }
        }
    })
}

/// Every stream of `count` received trades `1..=rounds`, in order, once.
fn assert_complete(seen: &BTreeMap<String, Vec<u64>>, count: usize, rounds: u64, who: &str) {
    let expected: Vec<u64> = (1..=rounds).collect();
    for i in 1..=count {
        let stream = format!("s{i}usdt@trade");
        let got = seen.get(&stream).cloned().unwrap_or_default();
        if got != expected {
            let dups = got.windows(2).filter(|w| w[1] <= w[0]).count();
            let gaps = got.windows(2).filter(|w| w[1] > w[0] + 1).count();
            panic!(
                "{who}: `{stream}` got {} trades ({dups} repeats, {gaps} gaps, first {:?}, last {:?})",
                got.len(),
                got.first(),
                got.last()
            );
        }
    }
}

/// Waits until the cluster has settled: every join and leave on the queue handled, every node
/// running the stored config version, and `datasources` consumed.
async fn wait_settled(redis: &RedisServer, nodes: &[&Gateway], datasources: usize) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let groups: redis::Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg("cluster:peer_update_queue")
            .query_async(&mut conn)
            .await
            .unwrap_or(redis::Value::Nil);
        let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg("cluster:peer_update_queue")
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let handled = last.first().is_some_and(|(id, _)| group_done(&groups, id));
        let version: Option<u64> = redis::cmd("GET")
            .arg("cluster:config:version")
            .query_async(&mut conn)
            .await
            .unwrap();
        let applied = nodes
            .iter()
            .all(|g| Some(g.metric("wsgate_config_version ") as u64) == version);
        if handled && applied && consuming(nodes) == datasources as f64 {
            return;
        }
        assert!(Instant::now() < deadline, "the cluster did not settle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the negotiators' group has delivered up to `last_id` and has nothing pending.
fn group_done(groups: &redis::Value, last_id: &str) -> bool {
    let redis::Value::Array(groups) = groups else {
        return false;
    };
    groups.iter().any(|group| {
        let fields: HashMap<String, redis::Value> =
            redis::from_redis_value(group.clone()).unwrap_or_default();
        let field = |name: &str| fields.get(name).cloned().unwrap_or(redis::Value::Nil);
        let pending: u64 = redis::from_redis_value(field("pending")).unwrap_or(1);
        let delivered: String =
            redis::from_redis_value(field("last-delivered-id")).unwrap_or_default();
        pending == 0 && delivered == last_id
    })
}

/// Sum of `wsgate_source_up` over `nodes`: datasources being consumed.
fn consuming(nodes: &[&Gateway]) -> f64 {
    nodes.iter().map(|g| g.metric("wsgate_source_up{")).sum()
}

fn all_streams(count: usize) -> String {
    let streams: Vec<String> = (1..=count).map(|i| format!("s{i}usdt@trade")).collect();
    format!("/stream?streams={}", streams.join("/"))
}

const SOURCES: usize = 8;

/// Nodes `node-a`, `node-b` and `node-c`, with their ids.
fn three_nodes(config: &Value, redis: &RedisServer, nats: &NatsServer) -> Vec<(String, Gateway)> {
    ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| {
            let node = Gateway::cluster_node(config, &redis.url(), &nats.url(), id);
            (id.to_string(), node)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_mapped_once_on_their_owner_reach_clients_on_every_node() {
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let config = many_sources(&redis.url(), 2);
    let nodes: Vec<Gateway> = three_nodes(&config, &redis, &nats)
        .into_iter()
        .map(|(_, node)| node)
        .collect();
    let all: Vec<&Gateway> = nodes.iter().collect();
    wait_settled(&redis, &all, 2).await;
    let mut recorders = Vec::new();
    for gateway in &nodes {
        let client = gateway.connect("/stream?streams=s1usdt@trade").await;
        wait_bus_subscriptions(gateway, 1.0);
        recorders.push(record(client));
    }
    produce_rounds(redis.url(), 1, 100).await;
    for (i, recorder) in recorders.into_iter().enumerate() {
        assert_complete(
            &recorder.await.unwrap(),
            1,
            100,
            &format!("client on node {i}"),
        );
    }

    // Mapped once in the whole cluster: one node consumed and mapped every event, the
    // others none.
    let mapped: Vec<f64> = nodes
        .iter()
        .map(|g| g.metric("wsgate_source_mapped_total{datasource=\"s1\"}"))
        .collect();
    let consumed: Vec<f64> = nodes
        .iter()
        .map(|g| g.metric("wsgate_source_events_total"))
        .collect();
    assert_eq!(mapped.iter().sum::<f64>(), 100.0, "{mapped:?}");
    assert_eq!(consumed.iter().sum::<f64>(), 100.0, "{consumed:?}");
    assert_eq!(mapped.iter().filter(|m| **m > 0.0).count(), 1, "{mapped:?}");

    // JetStream keeps what was published, once, for replay.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut replay = async_nats::jetstream::new(client)
        .get_stream("wsgate_fanout")
        .await
        .unwrap();
    let info = replay.info().await.unwrap();
    assert_eq!(info.state.messages, 100, "{:?}", info.config.subjects);

    // Interest follows the clients: the last one leaving a stream ends the bus subscription,
    // and a stream nobody publishes on gets nothing.
    wait_bus_subscriptions(&nodes[2], 0.0);
    let mut other = nodes[2].connect("/stream?streams=s2usdt@trade").await;
    wait_bus_subscriptions(&nodes[2], 1.0);
    common::trades::expect_silence(&mut other).await;
    drop(other);
    wait_bus_subscriptions(&nodes[2], 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_joining_node_takes_over_sources_with_no_duplicate_or_gap() {
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let config = many_sources(&redis.url(), SOURCES);
    let a = Gateway::cluster_node(&config, &redis.url(), &nats.url(), "node-a");
    let b = Gateway::cluster_node(&config, &redis.url(), &nats.url(), "node-b");
    let c = Gateway::cluster_node(&config, &redis.url(), &nats.url(), "node-c");
    wait_settled(&redis, &[&a, &b, &c], SOURCES).await;
    let on_a = a.connect(&all_streams(SOURCES)).await;
    let on_b = b.connect(&all_streams(SOURCES)).await;
    wait_bus_subscriptions(&a, SOURCES as f64);
    wait_bus_subscriptions(&b, SOURCES as f64);
    let (on_a, on_b) = (record(on_a), record(on_b));

    let producer = tokio::spawn(produce_rounds(redis.url(), SOURCES, 300));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let joined = Instant::now();
    let d = Gateway::cluster_node(&config, &redis.url(), &nats.url(), "node-d");
    wait_for("the new node to take over some datasources", || {
        d.metric("wsgate_source_up{") >= 1.0 && consuming(&[&a, &b, &c, &d]) == SOURCES as f64
    });
    println!("rebalance on join took {:?}", joined.elapsed());
    producer.await.unwrap();

    assert_complete(&on_a.await.unwrap(), SOURCES, 300, "client on node-a");
    assert_complete(&on_b.await.unwrap(), SOURCES, 300, "client on node-b");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_owner_is_replaced_within_seconds_with_no_duplicate_or_gap() {
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let config = many_sources(&redis.url(), 2);
    let mut nodes = three_nodes(&config, &redis, &nats);
    wait_settled(&redis, &nodes.iter().map(|(_, g)| g).collect::<Vec<_>>(), 2).await;
    // Kill the owner of `s1`; clients watch from the two other nodes.
    let owner = nodes
        .iter()
        .position(|(_, g)| g.metric("wsgate_source_up{datasource=\"s1\"}") == 1.0)
        .unwrap();
    let (victim_id, mut victim) = nodes.remove(owner);
    let mut recorders = Vec::new();
    for (_, gateway) in &nodes {
        let client = gateway.connect(&all_streams(2)).await;
        wait_bus_subscriptions(gateway, 2.0);
        recorders.push(record(client));
    }

    let producer = tokio::spawn(produce_rounds(redis.url(), 2, 400));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    victim.signal("KILL");
    let killed = Instant::now();
    assert!(victim.wait_exit(Duration::from_secs(5)).is_some());
    wait_for("a surviving node to consume s1", || {
        nodes
            .iter()
            .any(|(_, g)| g.metric("wsgate_source_up{datasource=\"s1\"}") == 1.0)
    });
    let failover = killed.elapsed();
    println!("failover after SIGKILL took {failover:?}");
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    producer.await.unwrap();

    for (recorder, (id, _)) in recorders.into_iter().zip(&nodes) {
        assert_complete(&recorder.await.unwrap(), 2, 400, id);
    }
    // Of the peers that saw the heartbeat lapse, one announced the departure.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let events: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("cluster:peer_update_queue")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let left = events
        .iter()
        .filter(|(_, fields)| {
            fields
                .iter()
                .any(|(_, v)| *v == format!("peer_left:{victim_id}"))
        })
        .count();
    assert_eq!(left, 1, "peer_left announcements: {events:?}");
}

/// `peer_left:<peer>` events on the queue.
async fn departures(conn: &mut redis::aio::MultiplexedConnection, peer: &str) -> usize {
    let events: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("cluster:peer_update_queue")
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    let wanted = format!("peer_left:{peer}");
    events
        .iter()
        .filter(|(_, fields)| fields.iter().any(|(_, v)| *v == wanted))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_holder_of_the_peer_left_lock_announces_a_departure() {
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let config = many_sources(&redis.url(), 1);
    let nodes: Vec<Gateway> = three_nodes(&config, &redis, &nats)
        .into_iter()
        .map(|(_, node)| node)
        .collect();
    wait_for("the datasource consumed", || {
        consuming(&nodes.iter().collect::<Vec<_>>()) == 1.0
    });
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // A peer whose heartbeat lapsed long ago, whose departure somebody else is announcing.
    let _: () = redis::cmd("SET")
        .arg("cluster:peer-left:ghost")
        .arg("someone-else")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("cluster:peers")
        .arg(1)
        .arg("ghost")
        .query_async(&mut conn)
        .await
        .unwrap();
    // Every node sees it lapse on each heartbeat, but none holds the lock.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(departures(&mut conn, "ghost").await, 0);
    // Once the lock is free, exactly one of the three announces it.
    let _: () = redis::cmd("DEL")
        .arg("cluster:peer-left:ghost")
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(departures(&mut conn, "ghost").await, 1);
}

#[test]
fn nats_without_redis_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["serve", "--nats", "nats://127.0.0.1:4222"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--redis"), "{stderr}");
}
