//! Durable sources other than Redis Streams in a cluster: when a datasource's owner is killed
//! (SIGKILL, no goodbye to the broker), another node takes it over and clients see every event
//! once, in order. A `kafka` datasource on a Kafka-protocol broker (`tansu`) and a JetStream one,
//! with real `redis-server` and `nats-server -js` for the cluster.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::kafka::KafkaBroker;
use common::nats::NatsServer;
use common::redis::RedisServer;
use common::trades::match_event;
use common::{collect_stream, wait_for, Gateway};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

const LAST: u64 = 400;

const TOPIC: &str = "trades";
const WS_PATH: &str = "/stream?streams=btcusdt@trade";

/// One datasource `kind` with `properties`, whose `upstream` is mapped to `btcusdt@trade`, with
/// no owner assigned: the cluster assigns it.
fn config(kind: &str, properties: Value, upstream: &str) -> Value {
    json!({
        "vars": {},
        "datasource": [{"version": 1, "type": kind, "name": "trades", "properties": properties}],
        "topics": [{"version": 1, "topic": "{symbol}@trade", "vars": {"symbol": ["btcusdt"]},
                    "auth": "public"}],
        "routes": [{"id": "trades", "version": 1, "data_source": "trades", "upstream": [upstream],
                    "mappings": [{"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade",
                                  "ws_topic": "{symbol}@trade"}]}]
    })
}

/// Produces Kafka trades `ids` to one partition (key `BTCUSDT`), one every 10 ms.
async fn produce_kafka(bootstrap: String, ids: std::ops::RangeInclusive<u64>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    for id in ids {
        let payload = match_event(id);
        let record = FutureRecord::to(TOPIC).key("BTCUSDT").payload(&payload);
        if let Err((e, _)) = producer.send(record, Duration::from_secs(20)).await {
            panic!("producing trade {id}: {e}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two cluster nodes run `config`; once the owner has delivered 50 of the trades `producer`
/// sends (`1..=LAST`), it is killed. A client on the other node must get every trade once, in
/// order. Returns the time from the kill until the survivor consumed.
async fn owner_killed_mid_stream(
    config: Value,
    producer: impl Future<Output = ()> + Send + 'static,
) -> Duration {
    let (redis, nats) = (RedisServer::new(), NatsServer::new());
    let mut nodes: Vec<Gateway> = ["node-a", "node-b"]
        .iter()
        .map(|id| Gateway::cluster_node(&config, &redis.url(), &nats.url(), id))
        .collect();
    wait_for("one node consuming", || {
        nodes
            .iter()
            .map(|g| g.metric("wsgate_source_up{"))
            .sum::<f64>()
            == 1.0
    });
    let owner = nodes
        .iter()
        .position(|g| g.metric("wsgate_source_up{") == 1.0)
        .unwrap();
    let mut victim = nodes.remove(owner);
    let survivor = nodes.remove(0);
    let mut client = survivor.connect(WS_PATH).await;
    wait_for("the survivor's bus subscription", || {
        survivor.metric("wsgate_bus_subscriptions ") == 1.0
    });

    let producer = tokio::spawn(producer);
    let first = collect_stream(&mut client, "btcusdt@trade", 50, Duration::from_secs(30)).await;
    victim.signal("KILL");
    let killed = Instant::now();
    assert!(victim.wait_exit(Duration::from_secs(5)).is_some());
    // Bounded, with room for a loaded machine (the Kafka broker alone takes up to 6 s).
    while survivor.metric("wsgate_source_up{") != 1.0 {
        assert!(
            killed.elapsed() < Duration::from_secs(45),
            "the survivor did not take over:\n{}",
            survivor.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failover = killed.elapsed();
    let rest = collect_stream(
        &mut client,
        "btcusdt@trade",
        LAST as usize - first.len(),
        Duration::from_secs(60),
    )
    .await;
    producer.await.unwrap();
    let ids: Vec<u64> = first
        .iter()
        .chain(&rest)
        .map(|t| t["t"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (1..=LAST).collect::<Vec<_>>());
    common::trades::expect_silence(&mut client).await;
    failover
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_kafka_owner_is_replaced_with_no_duplicate_or_gap() {
    let broker = KafkaBroker::new();
    broker.create_topic(TOPIC, 3);
    // librdkafka's default session timeout: the new owner must not wait for it.
    let properties = json!({"bootstrap.servers": broker.bootstrap(), "group.id": "wsgate-cluster",
                            "topics": [TOPIC], "auto.offset.reset": "earliest"});
    let failover = owner_killed_mid_stream(
        config("kafka", properties, TOPIC),
        produce_kafka(broker.bootstrap(), 1..=LAST),
    )
    .await;
    println!("kafka failover after SIGKILL took {failover:?}");
}

/// Publishes JetStream trades `ids` on `trade.BTCUSDT`, one every 10 ms, each acknowledged by
/// the stream.
async fn produce_jetstream(js: async_nats::jetstream::Context, ids: std::ops::RangeInclusive<u64>) {
    for id in ids {
        js.publish("trade.BTCUSDT", match_event(id).into())
            .await
            .unwrap()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_jetstream_owner_is_replaced_with_no_duplicate_or_gap() {
    let data = NatsServer::new();
    let client = async_nats::connect(data.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "MD".to_string(),
        subjects: vec!["trade.>".to_string()],
        ..Default::default()
    })
    .await
    .unwrap();
    // The default `ack_wait` (30 s): what the killed owner fetched and did not acknowledge
    // must not wait for it.
    let properties = json!({"servers": [data.url()], "subjects": ["trade.>"],
                            "jetstream": {"stream": "MD"}});
    let failover = owner_killed_mid_stream(
        config("nats", properties, "trade.>"),
        produce_jetstream(js, 1..=LAST),
    )
    .await;
    println!("jetstream failover after SIGKILL took {failover:?}");
}
