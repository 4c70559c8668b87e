//! The `kafka` datasource against a real Kafka-protocol broker (`tansu`, a private one per test
//! on a free port): records produced with a real librdkafka producer reach WebSocket clients
//! mapped, in order and once; offsets are committed once handed off; a crashed gateway resumes
//! from the committed position; a broker killed and restarted mid-stream shows in `/readyz` and
//! costs clients nothing (no loss, no duplicate); bad properties are rejected naming them. Needs
//! `tansu` (`cargo install tansu --features dynostore,libsql`, or `$WSGATE_TEST_TANSU`).

mod common;

use std::time::{Duration, Instant};

use common::kafka::KafkaBroker;
use common::trades::{expect_silence, expect_trades, match_event, wait_events};
use common::Gateway;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const TOPIC: &str = "trades";
const PARTITIONS: u32 = 3;
const GROUP: &str = "wsgate-test";
const WS_PATH: &str = "/stream?streams=btcusdt@trade";

/// A gateway config consuming `trades` from `bootstrap` in group `GROUP`, mapping it to
/// `btcusdt@trade`.
fn config(bootstrap: &str) -> Value {
    json!({
        "vars": {},
        "datasource": [
            {"version": 1, "type": "kafka", "name": "kafka", "properties": {
                "bootstrap.servers": bootstrap,
                "group.id": GROUP,
                "topics": [TOPIC],
                "auto.offset.reset": "earliest",
                "session.timeout.ms": "10000"
            }}
        ],
        "topics": [
            {"version": 1, "topic": "{symbol}@trade", "vars": {"symbol": ["btcusdt"]}, "auth": "public"}
        ],
        "routes": [
            {
                "id": "kafka-trades",
                "version": 1,
                "data_source": "kafka",
                "upstream": [TOPIC],
                "mappings": [
                    {"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade", "ws_topic": "{symbol}@trade"}
                ]
            }
        ]
    })
}

/// [`config`] with a static group membership (`group.instance.id`): a restarted gateway takes
/// over its crashed predecessor's partitions at once instead of after the session timeout
/// (tansu does not expire the session of a member that died without leaving).
fn static_member(bootstrap: &str) -> Value {
    let mut config = config(bootstrap);
    config["datasource"][0]["properties"]["group.instance.id"] = json!("wsgate-test-node-1");
    config
}

/// A broker with the `trades` topic.
fn broker() -> KafkaBroker {
    let broker = KafkaBroker::new();
    broker.create_topic(TOPIC, PARTITIONS);
    broker
}

fn producer(bootstrap: &str) -> FutureProducer {
    producer_with_timeout(bootstrap, Duration::from_secs(20))
}

/// A producer that gives up on a record not acknowledged within `timeout`
/// (`message.timeout.ms`).
fn producer_with_timeout(bootstrap: &str, timeout: Duration) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .create()
        .expect("producer")
}

/// Produces trades `ids` with key `BTCUSDT` (so all to one partition), one at a time so that
/// they are stored in order.
async fn produce(producer: &FutureProducer, ids: std::ops::RangeInclusive<u64>) {
    for id in ids {
        let payload = match_event(id);
        let record = FutureRecord::to(TOPIC).key("BTCUSDT").payload(&payload);
        if let Err((e, _)) = producer.send(record, Duration::from_secs(20)).await {
            panic!("producing trade {id}: {e}");
        }
    }
}

/// Records of `trades` committed by the group (offsets start at 0 in every partition).
fn committed(bootstrap: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for partition in 0..PARTITIONS as i32 {
        tpl.add_partition(TOPIC, partition);
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(5)) {
        Ok(offsets) => offsets
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(n) => n,
                _ => 0,
            })
            .sum(),
        Err(_) => -1,
    }
}

/// Waits until the group has committed exactly `expected` records.
fn wait_committed(bootstrap: &str, gateway: &Gateway, expected: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let count = committed(bootstrap);
        if count == expected {
            return;
        }
        assert!(count <= expected, "{count} committed, expected {expected}");
        assert!(
            Instant::now() < deadline,
            "{count} of {expected} records committed in time:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_reach_clients_in_order_once_and_are_committed() {
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let producer = producer(&bootstrap);
    let gateway = Gateway::start_with(config(&bootstrap), &[]);
    let mut client = gateway.connect(WS_PATH).await;
    produce(&producer, 1..=200).await;
    expect_trades(&mut client, 1..=200).await;
    wait_committed(&bootstrap, &gateway, 200);
    // A second run after the first was committed continues where it left off.
    produce(&producer, 201..=250).await;
    expect_trades(&mut client, 201..=250).await;
    wait_committed(&bootstrap, &gateway, 250);
    assert_eq!(gateway.metric("wsgate_source_events_total"), 250.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_gateway_resumes_from_the_committed_offsets() {
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let producer = producer(&bootstrap);
    let mut gateway = Gateway::start_with(static_member(&bootstrap), &[]);
    let mut client = gateway.connect(WS_PATH).await;
    produce(&producer, 1..=20).await;
    expect_trades(&mut client, 1..=20).await;
    wait_committed(&bootstrap, &gateway, 20);

    gateway.signal("KILL");
    assert!(gateway.wait_exit(Duration::from_secs(10)).is_some());
    drop(client);
    // Produced while no gateway runs.
    produce(&producer, 21..=40).await;

    let gateway = Gateway::start_with(static_member(&bootstrap), &[]);
    // Exactly the 20 records after the committed offset: none skipped (as `latest` would), none
    // of the committed ones again (as `earliest` would).
    wait_events(&gateway, 20.0);
    wait_committed(&bootstrap, &gateway, 40);
    let mut client = gateway.connect(WS_PATH).await;
    produce(&producer, 41..=50).await;
    expect_trades(&mut client, 41..=50).await;
    wait_committed(&bootstrap, &gateway, 50);
    assert_eq!(gateway.metric("wsgate_source_events_total"), 30.0);
}

/// Waits until the gateway's `/readyz` answers `status`; returns its body.
fn wait_readyz(gateway: &Gateway, status: u16) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = gateway.http_get("/readyz");
        if let Ok((code, body)) = &last {
            if *code == status {
                return body.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not answer {status} in time (last: {last:?}):\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The broker is killed (SIGKILL) mid-stream and restarted on the same port with the same
/// storage: `/readyz` reports the outage (503) while it lasts and recovers (200) after it, and
/// the client receives every record once, in order, including one produced during the outage.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_killed_and_restarted_mid_stream_costs_clients_nothing() {
    const BEFORE: u64 = 100;
    const LAST: u64 = 200;
    const OUTAGE: Duration = Duration::from_secs(3);
    let mut broker = KafkaBroker::persistent();
    broker.create_topic(TOPIC, PARTITIONS);
    let bootstrap = broker.bootstrap();
    // Patient enough for a record queued during the outage: the broker is down for 3 s, then
    // librdkafka's reconnect backoff (up to 10 s by default) may delay the producer's return.
    let producer = producer_with_timeout(&bootstrap, Duration::from_secs(60));
    // A static member: tansu does not expire the session of a member it lost track of.
    let gateway = Gateway::start_with(static_member(&bootstrap), &[]);
    let mut client = gateway.connect(WS_PATH).await;
    produce(&producer, 1..=BEFORE).await;
    expect_trades(&mut client, 1..=BEFORE).await;
    wait_committed(&bootstrap, &gateway, BEFORE as i64);
    let reconnects = gateway.metric("wsgate_source_reconnects_total");
    assert_eq!(gateway.http_get("/readyz").unwrap().0, 200);

    // Crash: SIGKILL, nothing flushed or said goodbye.
    let port = broker.addr().port();
    broker.kill();
    let outage = Instant::now();
    let body = wait_readyz(&gateway, 503);
    assert!(body.contains("source kafka: kafka:"), "{body}");
    let detected = outage.elapsed();
    assert!(
        gateway.metric("wsgate_source_reconnects_total") > reconnects,
        "the outage was not counted as a reconnect"
    );
    // A record produced during the outage is queued by librdkafka, not lost: it is delivered
    // once the broker is back (within `message.timeout.ms`), ahead of anything produced later.
    let payload = match_event(BEFORE + 1);
    let queued = producer
        .send_result(FutureRecord::to(TOPIC).key("BTCUSDT").payload(&payload))
        .map_err(|(e, _)| e)
        .expect("trade queued during the outage");
    // Nothing reaches the client while the broker is down, and the gateway keeps reporting
    // the outage for as long as it lasts (3 s, some of librdkafka's reconnect attempts).
    expect_silence(&mut client).await;
    while outage.elapsed() < OUTAGE {
        let (status, body) = gateway.http_get("/readyz").unwrap();
        assert_eq!(status, 503, "ready while the broker is down: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    broker.start();
    assert_eq!(broker.addr().port(), port);
    let down_for = outage.elapsed();
    // Committed offsets survived the crash (a broker that forgot them would report 0).
    let deadline = Instant::now() + WAIT;
    loop {
        let survived = committed(&bootstrap);
        if survived >= BEFORE as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{survived} committed after the restart, {BEFORE} before:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let delivery = tokio::time::timeout(Duration::from_secs(60), queued)
        .await
        .expect("the queued trade was delivered or failed in time")
        .expect("producer alive")
        .unwrap_or_else(|(e, _)| panic!("the trade queued during the outage was lost: {e}"));
    // Stored once, right after the records of before the crash (all of one key, one
    // partition, offsets from 0): the log survived and the queued record was not duplicated.
    assert_eq!(delivery.offset, BEFORE as i64, "{delivery:?}");
    let delivered_after = outage.elapsed();
    produce(&producer, BEFORE + 2..=LAST).await;
    // The gateway's consumer resumes either at once (its coordinator connection came back
    // within its session) or after rejoining its group (librdkafka's reconnect backoff let the
    // 10 s session lapse first, and tansu rebalances), which can take 20 s more: wait for it
    // before expecting the trades.
    let deadline = Instant::now() + Duration::from_secs(90);
    while gateway.metric("wsgate_source_events_total") < LAST as f64 {
        assert!(
            Instant::now() < deadline,
            "the gateway did not resume consuming:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every record after the crash exactly once and in order, the queued one first; and no
    // record of before the crash again (expect_trades asserts silence after the last).
    expect_trades(&mut client, BEFORE + 1..=LAST).await;
    let recovered = outage.elapsed();
    wait_readyz(&gateway, 200);
    wait_committed(&bootstrap, &gateway, LAST as i64);
    let events = gateway.metric("wsgate_source_events_total");
    assert!(events >= LAST as f64, "{events} events");
    eprintln!(
        "broker restart: outage seen by /readyz after {detected:?} ({}), broker back after \
         {down_for:?}, queued trade delivered after {delivered_after:?}, all trades received \
         after {recovered:?}; {events} events received, {} dropped as duplicates, {} \
         reconnects",
        body.trim(),
        gateway.metric("wsgate_messages_dropped_total{reason=\"duplicate\"}"),
        gateway.metric("wsgate_source_reconnects_total") - reconnects,
    );
}

/// Validation happens before any connection, so no broker is needed.
#[test]
fn a_bad_datasource_config_is_rejected_naming_the_property() {
    let without = |property: &str| {
        let mut config = config("127.0.0.1:9");
        config["datasource"][0]["properties"]
            .as_object_mut()
            .unwrap()
            .remove(property);
        config
    };
    common::assert_start_refused(without("bootstrap.servers"), "bootstrap.servers");
    common::assert_start_refused(without("group.id"), "group.id");
    // Without `topics`, the datasource consumes its routes' upstream, which must then be
    // topic names, not patterns.
    let mut pattern = without("topics");
    pattern["routes"][0]["upstream"] = json!(["trades.*"]);
    common::assert_start_refused(pattern, "topics");
    let mut invalid = config("127.0.0.1:9");
    invalid["datasource"][0]["properties"]["fetch.wait.max.ms"] = json!("soon");
    common::assert_start_refused(invalid, "fetch.wait.max.ms");
    let mut unknown = config("127.0.0.1:9");
    unknown["datasource"][0]["properties"]["no.such.property"] = json!("x");
    common::assert_start_refused(unknown, "no.such.property");
}
