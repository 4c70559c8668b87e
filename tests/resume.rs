//! Resume after reconnect: a client that opted into sequence numbers (`resume=true`) and comes
//! back with `resumeFrom` gets every event it missed exactly once, in order, from the node's
//! ring or from the cluster's JetStream capture, on the same node or another one; what is no
//! longer kept (past the ring, or past the capture's retention) is announced with a resync
//! notice, never skipped silently.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::haproxy::HaProxy;
use common::nats::NatsServer;
use common::redis::RedisServer;
use common::trades::{next_got, produce, redis_stream_config, trades_owner, Got};
use common::{request, wait_for, Client, Gateway};

const STREAM: &str = "btcusdt@trade";
const WAIT: Duration = Duration::from_secs(30);

/// The next `count` events or notices.
async fn take(client: &mut Client, count: usize) -> Vec<Got> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        match next_got(client, WAIT).await {
            Some(g) => got.push(g),
            None => panic!("only {} of {count}: {got:?}", got.len()),
        }
    }
    got
}

/// Trades `ids` numbered consecutively from `first_seq`.
fn trades(ids: std::ops::RangeInclusive<u64>, first_seq: u64) -> Vec<Got> {
    ids.enumerate()
        .map(|(i, t)| Got::Trade {
            seq: first_seq + i as u64,
            t,
        })
        .collect()
}

fn last_seq(got: &[Got]) -> u64 {
    got.iter()
        .rev()
        .find_map(|g| match g {
            Got::Trade { seq, .. } => Some(*seq),
            _ => None,
        })
        .unwrap()
}

/// Nothing more on the stream for half a second.
async fn expect_nothing_more(client: &mut Client) {
    if let Some(got) = next_got(client, Duration::from_millis(500)).await {
        panic!("unexpected: {got:?}");
    }
}

/// The HTTP status and body of a refused upgrade.
async fn refused(gateway: &Gateway, path: &str) -> (u16, String) {
    use tokio_tungstenite::tungstenite::Error;
    match tokio_tungstenite::connect_async(gateway.url(path)).await {
        Err(Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned());
            (response.status().as_u16(), body.unwrap_or_default())
        }
        Err(e) => panic!("{path}: {e}"),
        Ok(_) => panic!("{path} was accepted"),
    }
}

fn resume_path(after: u64) -> String {
    format!("/stream?streams={STREAM}&resumeFrom={STREAM}:{after}")
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_from_the_ring_gets_exactly_the_missed_trades_in_order() {
    let redis = RedisServer::new();
    let gateway = Gateway::start_with(redis_stream_config(&redis.url()), &[]);
    let mut client = gateway
        .connect(&format!("/stream?streams={STREAM}&resume=true"))
        .await;
    produce(&redis.url(), 1..=100).await;
    let got = take(&mut client, 100).await;
    assert_eq!(got, trades(1..=100, 1));
    drop(client);

    // Missed while away: the node keeps them in its ring.
    produce(&redis.url(), 101..=300).await;
    wait_in_hub(&gateway, 300);
    let mut client = gateway.connect(&resume_path(last_seq(&got))).await;
    assert_eq!(take(&mut client, 200).await, trades(101..=300, 101));
    produce(&redis.url(), 301..=350).await;
    assert_eq!(take(&mut client, 50).await, trades(301..=350, 301));
    expect_nothing_more(&mut client).await;
    assert_eq!(
        gateway.metric("wsgate_resume_replayed_total{from=\"ring\"}"),
        200.0
    );
    assert_eq!(
        gateway.metric("wsgate_resumes_total{outcome=\"replayed\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_from_beyond_the_ring_gets_a_resync_notice_then_live_data() {
    let redis = RedisServer::new();
    let gateway = Gateway::start_with(
        redis_stream_config(&redis.url()),
        &["--replay-ring-messages", "50"],
    );
    let mut client = gateway
        .connect(&format!("/stream?streams={STREAM}&resume=true"))
        .await;
    produce(&redis.url(), 1..=10).await;
    assert_eq!(take(&mut client, 10).await, trades(1..=10, 1));
    drop(client);

    produce(&redis.url(), 11..=200).await;
    wait_in_hub(&gateway, 200);
    let mut client = gateway.connect(&resume_path(10)).await;
    expect_resync_then_live(&mut client, &gateway, &redis, 151..=200).await;
}

/// After a resume from 10: the resync notice for what is no longer kept, the kept trades
/// `kept`, then live trades; the resume counted as a resync on `node`.
async fn expect_resync_then_live(
    client: &mut Client,
    node: &Gateway,
    redis: &RedisServer,
    kept: std::ops::RangeInclusive<u64>,
) {
    let (next, last) = (*kept.start(), *kept.end());
    let mut expected = vec![Got::Resync { from: 11, next }];
    expected.extend(trades(kept, next));
    assert_eq!(take(client, expected.len()).await, expected);
    produce(&redis.url(), last + 1..=last + 5).await;
    assert_eq!(take(client, 5).await, trades(last + 1..=last + 5, last + 1));
    assert_eq!(node.metric("wsgate_resumes_total{outcome=\"resync\"}"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_is_a_property_and_a_subscribe_can_resume() {
    let redis = RedisServer::new();
    let gateway = Gateway::start_with(redis_stream_config(&redis.url()), &[]);
    // A raw connection has no wrapper for the number: refused, in Binance's words.
    let (status, body) = refused(&gateway, "/ws/btcusdt@trade?resume=true").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"code\":-1100"), "{body}");
    let (status, body) = refused(&gateway, "/stream?streams=btcusdt@trade&resumeFrom=x").await;
    assert_eq!(status, 400, "{body}");

    let mut client = gateway.connect("/stream").await;
    let reply = request(
        &mut client,
        json!({"method": "GET_PROPERTY", "params": ["resume"], "id": 1}),
    )
    .await;
    assert_eq!(reply, json!({"result": false, "id": 1}));
    produce(&redis.url(), 1..=20).await;
    wait_in_hub(&gateway, 20);
    // SUBSCRIBE with resumeFrom turns resume on and replays what came after 5.
    let reply = request(
        &mut client,
        json!({"method": "SUBSCRIBE", "params": [STREAM], "resumeFrom": {STREAM: 5}, "id": 2}),
    )
    .await;
    assert_eq!(reply, json!({"result": null, "id": 2}));
    assert_eq!(take(&mut client, 15).await, trades(6..=20, 6));
    let reply = request(
        &mut client,
        json!({"method": "GET_PROPERTY", "params": ["resume"], "id": 3}),
    )
    .await;
    assert_eq!(reply, json!({"result": true, "id": 3}));
    // The wrapper carries the number: it cannot be turned off while resume is on.
    let reply = request(
        &mut client,
        json!({"method": "SET_PROPERTY", "params": ["combined", false], "id": 4}),
    )
    .await;
    assert_eq!(reply["error"]["code"], 2, "{reply}");
    let reply = request(
        &mut client,
        json!({"method": "SET_PROPERTY", "params": ["resume", false], "id": 5}),
    )
    .await;
    assert_eq!(reply, json!({"result": null, "id": 5}));
    produce(&redis.url(), 21..=21).await;
    let plain = common::next_json(&mut client, WAIT).await;
    assert_eq!(plain["data"]["t"], 21);
    assert!(plain.get("seq").is_none(), "{plain}");
}

/// Cluster nodes `ids` on one Redis and one NATS, serving the trades, started with `args`.
fn cluster(redis: &RedisServer, nats: &NatsServer, ids: &[&str], args: &[&str]) -> Vec<Gateway> {
    let config = redis_stream_config(&redis.url());
    ids.iter()
        .map(|id| Gateway::cluster_node_with(&config, &redis.url(), &nats.url(), id, args))
        .collect()
}

/// Three cluster nodes, capturing the fanout subjects in JetStream for ten minutes.
fn three_nodes(redis: &RedisServer, nats: &NatsServer) -> Vec<Gateway> {
    let ids = ["node-a", "node-b", "node-c"];
    cluster(redis, nats, &ids, &["--replay-retention", "10m"])
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_on_another_node_is_served_from_jetstream() {
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let nodes = three_nodes(&redis, &nats);
    let at = trades_owner(&nodes);
    // A node that neither consumes the source nor had a client on the stream.
    let elsewhere = (1..3).find(|&i| i != at).unwrap();
    let mut client = nodes[0]
        .connect(&format!("/stream?streams={STREAM}&resume=true"))
        .await;
    wait_for("node-a's bus subscription", || {
        nodes[0].metric("wsgate_bus_subscriptions ") == 1.0
    });
    produce(&redis.url(), 1..=100).await;
    assert_eq!(take(&mut client, 100).await, trades(1..=100, 1));
    drop(client);

    produce(&redis.url(), 101..=400).await;
    wait_published(&nodes[at], 400);
    // Nothing of the stream in that node's ring: it reads the capture.
    let mut client = nodes[elsewhere].connect(&resume_path(100)).await;
    assert_eq!(take(&mut client, 300).await, trades(101..=400, 101));
    produce(&redis.url(), 401..=450).await;
    assert_eq!(take(&mut client, 50).await, trades(401..=450, 401));
    expect_nothing_more(&mut client).await;
    // The 300 missed; live trades that came while the capture was still read may be read from
    // it too (and then not again live).
    let replayed = nodes[elsewhere].metric("wsgate_resume_replayed_total{from=\"jetstream\"}");
    assert!((300.0..=350.0).contains(&replayed), "{replayed} replayed");
    assert_eq!(
        nodes[elsewhere].metric("wsgate_resume_replayed_total{from=\"ring\"}"),
        0.0
    );
}

/// Waits until `owner` has mapped `events` upstream events, whose outputs it publishes (and
/// the capture holds) right after.
fn wait_published(owner: &Gateway, events: u64) {
    wait_for("the outputs published", || {
        owner.metric("wsgate_source_mapped_total") == events as f64
    });
}

/// Waits until an embedded node's hub has received `messages` (and its ring holds them).
fn wait_in_hub(gateway: &Gateway, messages: u64) {
    wait_for("the messages in the hub", || {
        gateway.metric("wsgate_messages_in_total") == messages as f64
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_from_beyond_the_capture_gets_a_resync_notice_on_another_node() {
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    // The capture keeps two seconds.
    let nodes = cluster(
        &redis,
        &nats,
        &["node-a", "node-b"],
        &["--replay-retention", "2s"],
    );
    let at = trades_owner(&nodes);
    let mut client = nodes[at]
        .connect(&format!("/stream?streams={STREAM}&resume=true"))
        .await;
    wait_for("the owner's bus subscription", || {
        nodes[at].metric("wsgate_bus_subscriptions ") == 1.0
    });
    produce(&redis.url(), 1..=10).await;
    assert_eq!(take(&mut client, 10).await, trades(1..=10, 1));
    drop(client);

    // Missed, and gone from the capture by the time the client is back.
    produce(&redis.url(), 11..=100).await;
    wait_published(&nodes[at], 100);
    tokio::time::sleep(Duration::from_secs(4)).await;
    produce(&redis.url(), 101..=110).await;
    wait_published(&nodes[at], 110);
    let mut client = nodes[1 - at].connect(&resume_path(10)).await;
    expect_resync_then_live(&mut client, &nodes[1 - at], &redis, 101..=110).await;
}

/// Connects through `proxy` to `path`, retrying while HAProxy still sends it to a dead node.
async fn connect_retrying(proxy: &HaProxy, path: &str) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio_tungstenite::connect_async(proxy.url(path)).await {
            Ok((client, _)) => return client,
            Err(e) => {
                assert!(Instant::now() < deadline, "no node took the client: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The node whose connection count `connect` raised.
async fn placed(
    nodes: &[Gateway],
    connect: impl std::future::Future<Output = Client>,
) -> (Client, usize) {
    let before: Vec<f64> = nodes
        .iter()
        .map(|n| n.metric("wsgate_connections "))
        .collect();
    let client = connect.await;
    let mut at = None;
    wait_for("the connection counted", || {
        at = nodes
            .iter()
            .zip(&before)
            .position(|(n, b)| n.metric("wsgate_connections ") > *b);
        at.is_some()
    });
    (client, at.unwrap())
}

/// The acceptance test: the node a resuming client is on, which also owns the source, is
/// killed mid-stream; the client reconnects through HAProxy to another node with its last
/// position, and sees every trade id exactly once, in order, numbered without a gap.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_on_a_killed_node_resumes_elsewhere_with_every_trade_once_in_order() {
    const TRADES: u64 = 3000;
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let mut nodes = three_nodes(&redis, &nats);
    let proxy = HaProxy::start(&nodes);
    let victim = trades_owner(&nodes);
    // Least connections: three clients land on three nodes; follow the one on the owner.
    let mut on_victim = None;
    for _ in 0..3 {
        let path = format!("/stream?streams={STREAM}&resume=true");
        let (client, at) = placed(&nodes, proxy.connect(&path)).await;
        if at == victim {
            on_victim = Some(client);
        }
    }
    let mut client = on_victim.expect("a client on the owner");
    wait_for("the owner's bus subscription", || {
        nodes[victim].metric("wsgate_bus_subscriptions ") == 1.0
    });

    let url = redis.url();
    let producer = tokio::spawn(async move {
        for first in (1..=TRADES).step_by(10) {
            produce(&url, first..=first + 9).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut seen: Vec<Got> = Vec::new();
    let mut killed_at = None;
    let mut reconnects = Vec::new();
    let mut first_after = None;
    while last_t(&seen) < TRADES {
        match next_got(&mut client, WAIT).await {
            Some(got) => {
                if first_after.is_none() && !reconnects.is_empty() {
                    first_after = Some(Instant::now());
                }
                seen.push(got);
                if killed_at.is_none() && last_t(&seen) >= 800 {
                    nodes[victim].signal("KILL");
                    killed_at = Some(Instant::now());
                }
            }
            None => {
                let down = Instant::now();
                assert!(
                    killed_at.is_some(),
                    "connection lost before the kill: {seen:?}"
                );
                let after = last_seq_of(&seen);
                client = connect_retrying(&proxy, &resume_path(after)).await;
                reconnects.push((down, Instant::now(), seen.len()));
            }
        }
    }
    producer.await.unwrap();
    assert!(nodes[victim].wait_exit(Duration::from_secs(5)).is_some());
    let ids: Vec<u64> = seen
        .iter()
        .map(|g| match g {
            Got::Trade { t, .. } => *t,
            other => panic!("a resync in a resume the capture covers: {other:?}"),
        })
        .collect();
    assert_eq!(
        ids,
        (1..=TRADES).collect::<Vec<_>>(),
        "trade ids across the kill"
    );
    assert_eq!(
        seen,
        trades(1..=TRADES, 1),
        "sequence numbers across the kill"
    );
    expect_nothing_more(&mut client).await;
    assert_eq!(reconnects.len(), 1, "{reconnects:?}");
    let (down, up, at) = reconnects[0];
    // The first trade after the reconnect: replayed, or live once the new owner publishes.
    let killed = killed_at.unwrap();
    println!(
        "killed after trade {}: connection lost {:?} after the kill, reconnected in {:?}, \
         first trade {:?} after the reconnect ({:?} after the kill)",
        ids[at - 1],
        down - killed,
        up - down,
        first_after.unwrap() - up,
        first_after.unwrap() - killed,
    );
    nodes.remove(victim);
}

fn last_t(seen: &[Got]) -> u64 {
    seen.iter()
        .rev()
        .find_map(|g| match g {
            Got::Trade { t, .. } => Some(*t),
            _ => None,
        })
        .unwrap_or(0)
}

fn last_seq_of(seen: &[Got]) -> u64 {
    if seen.is_empty() {
        0
    } else {
        last_seq(seen)
    }
}

/// Replay rates, printed (a measurement, not a check; `docs/benchmarks.md` has the command):
/// 10,000 missed trades resumed from an embedded node's ring, then from the JetStream capture on
/// a cluster node that never had them.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn replay_rates() {
    const MISSED: u64 = 10_000;
    let large_ring = [
        "--replay-ring-messages",
        "100000",
        "--replay-ring-bytes",
        "67108864",
    ];
    let redis = RedisServer::new();
    let gateway = Gateway::start_with(redis_stream_config(&redis.url()), &large_ring);
    produce(&redis.url(), 1..=MISSED).await;
    wait_in_hub(&gateway, MISSED);
    let start = Instant::now();
    let mut client = gateway.connect(&resume_path(0)).await;
    assert_eq!(
        take(&mut client, MISSED as usize).await,
        trades(1..=MISSED, 1)
    );
    let ring = start.elapsed();
    drop((client, gateway, redis));

    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let mut args = vec!["--replay-retention", "10m"];
    args.extend(large_ring);
    let nodes = cluster(&redis, &nats, &["node-a", "node-b"], &args);
    let at = trades_owner(&nodes);
    produce(&redis.url(), 1..=MISSED).await;
    wait_published(&nodes[at], MISSED);
    let other = &nodes[1 - at];
    let start = Instant::now();
    let mut client = other.connect(&resume_path(0)).await;
    assert_eq!(
        take(&mut client, MISSED as usize).await,
        trades(1..=MISSED, 1)
    );
    let jetstream = start.elapsed();
    // A resume is counted once a live message passes after it (one the capture also had is
    // dropped as a duplicate of the replay).
    produce(&redis.url(), MISSED + 1..=MISSED + 2).await;
    take(&mut client, 2).await;
    let from_capture = other.metric("wsgate_resume_replayed_total{from=\"jetstream\"}");
    let rate = |took: Duration| MISSED as f64 / took.as_secs_f64();
    println!(
        "replayed {MISSED} trades: from the ring in {ring:?} ({:.0}/s), from JetStream in \
         {jetstream:?} ({:.0}/s, {from_capture} of them read from the capture), from \
         connecting to the last one replayed",
        rate(ring),
        rate(jetstream)
    );
}
