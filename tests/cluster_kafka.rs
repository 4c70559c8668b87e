//! A `kafka` datasource in a cluster: when its owner is killed (SIGKILL, no goodbye to the
//! consumer group), another node takes its partitions over and clients see every record once,
//! in order. Real `redis-server`, `nats-server -js` and a Kafka-protocol broker (`tansu`).

mod common;

use std::time::{Duration, Instant};

use common::kafka::KafkaBroker;
use common::nats::NatsServer;
use common::redis::RedisServer;
use common::trades::match_event;
use common::{collect_stream, wait_for, Gateway};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

const TOPIC: &str = "trades";
const WS_PATH: &str = "/stream?streams=btcusdt@trade";

/// One `kafka` datasource on `trades` (three partitions), with no owner assigned and librdkafka's
/// default session timeout: the cluster assigns it.
fn config(bootstrap: &str) -> Value {
    json!({
        "vars": {},
        "datasource": [{"version": 1, "type": "kafka", "name": "kafka", "properties": {
            "bootstrap.servers": bootstrap, "group.id": "wsgate-cluster", "topics": [TOPIC],
            "auto.offset.reset": "earliest"}}],
        "topics": [{"version": 1, "topic": "{symbol}@trade", "vars": {"symbol": ["btcusdt"]},
                    "auth": "public"}],
        "routes": [{"id": "trades", "version": 1, "data_source": "kafka", "upstream": [TOPIC],
                    "mappings": [{"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade",
                                  "ws_topic": "{symbol}@trade"}]}]
    })
}

/// Produces trades `ids` to one partition (key `BTCUSDT`), one every 10 ms.
async fn produce(bootstrap: String, ids: std::ops::RangeInclusive<u64>) {
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

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_kafka_owner_is_replaced_with_no_duplicate_or_gap() {
    const LAST: u64 = 400;
    let broker = KafkaBroker::new();
    broker.create_topic(TOPIC, 3);
    let (redis, nats) = (RedisServer::new(), NatsServer::new());
    let config = config(&broker.bootstrap());
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

    let producer = tokio::spawn(produce(broker.bootstrap(), 1..=LAST));
    let first = collect_stream(&mut client, "btcusdt@trade", 50, Duration::from_secs(30)).await;
    victim.signal("KILL");
    let killed = Instant::now();
    assert!(victim.wait_exit(Duration::from_secs(5)).is_some());
    wait_for("the survivor to consume", || {
        survivor.metric("wsgate_source_up{") == 1.0
    });
    println!("kafka failover after SIGKILL took {:?}", killed.elapsed());
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
}
