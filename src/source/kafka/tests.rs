//! Unit tests of the `kafka` datasource: property validation, readiness, positions, and the
//! run loop against librdkafka's mock cluster.

use super::*;
use crate::config::DatasourceKind;
use serde_json::json;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::context::readiness;
use super::event::position;
use crate::source::{Backpressure, Consumption, Dispatcher, Source};

fn datasource(properties: Json) -> Datasource {
    crate::source::properties::datasource(DatasourceKind::Kafka, "kf", properties)
}

fn error(properties: Json) -> String {
    match KafkaSource::from_datasource(&datasource(properties), &Consumption::default()) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

fn ok() -> Json {
    json!({"bootstrap.servers": "127.0.0.1:9092", "group.id": "wsgate", "topics": ["trades"]})
}

#[test]
fn defaults_apply() {
    let started = Instant::now();
    let source = KafkaSource::from_datasource(&datasource(ok()), &Consumption::default()).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "validation is quick"
    );
    let c = source.config();
    assert_eq!(c.bootstrap_servers, "127.0.0.1:9092");
    assert_eq!(c.group_id, "wsgate");
    assert_eq!(c.topics, vec!["trades".to_string()]);
    assert_eq!(c.auto_offset_reset, "earliest");
    assert!(c.passthrough.is_empty());
    assert_eq!(source.backpressure(), Backpressure::Wait);
    let client = c.client_config();
    assert_eq!(client.get("enable.auto.commit"), Some("false"));
    assert_eq!(client.get("enable.auto.offset.store"), Some("false"));
    assert_eq!(client.get("auto.offset.reset"), Some("earliest"));
}

#[test]
fn topics_default_to_the_routes_upstream() {
    let mut props = ok();
    props.as_object_mut().unwrap().remove("topics");
    let read_by = |upstream: &[&str]| Consumption {
        upstream: upstream.iter().map(|s| s.to_string()).collect(),
        ..Consumption::default()
    };
    let source = KafkaSource::from_datasource(&datasource(props.clone()), &read_by(&["a", "b.c"]));
    assert_eq!(source.unwrap().config().topics, ["a", "b.c"]);
    let pattern = KafkaSource::from_datasource(&datasource(props.clone()), &read_by(&["md.*"]));
    let message = pattern.err().expect("a pattern is no topic").to_string();
    assert!(
        message.contains("properties.topics: not given"),
        "{message}"
    );
    let unread = Consumption {
        unread: true,
        ..Consumption::default()
    };
    let source = KafkaSource::from_datasource(&datasource(props), &unread).unwrap();
    assert!(source.config().topics.is_empty(), "nothing to consume");
}

#[test]
fn a_sole_consumer_joins_as_a_static_member() {
    let sole = Consumption {
        consumers: crate::source::Consumers::OneAtATime,
        ..Consumption::default()
    };
    let source = KafkaSource::from_datasource(&datasource(ok()), &sole).unwrap();
    let client = source.config().client_config();
    assert_eq!(client.get("group.instance.id"), Some("wsgate-kf"));
    let mut named = ok();
    named["group.instance.id"] = json!("mine");
    let source = KafkaSource::from_datasource(&datasource(named), &sole).unwrap();
    assert_eq!(
        source.config().client_config().get("group.instance.id"),
        Some("mine")
    );
    let shared = KafkaSource::from_datasource(&datasource(ok()), &Consumption::default());
    assert_eq!(
        shared
            .unwrap()
            .config()
            .client_config()
            .get("group.instance.id"),
        None
    );
}

#[test]
fn other_properties_pass_through_to_librdkafka() {
    let mut props = ok();
    props["topics"] = json!(["a", "b.c"]);
    props["auto.offset.reset"] = json!("latest");
    props["security.protocol"] = json!("plaintext");
    props["session.timeout.ms"] = json!(10000);
    props["check.crcs"] = json!(true);
    let source = KafkaSource::from_datasource(&datasource(props), &Consumption::default()).unwrap();
    let c = source.config();
    assert_eq!(c.topics, vec!["a".to_string(), "b.c".to_string()]);
    assert_eq!(c.auto_offset_reset, "latest");
    let client = c.client_config();
    assert_eq!(client.get("security.protocol"), Some("plaintext"));
    assert_eq!(client.get("session.timeout.ms"), Some("10000"));
    assert_eq!(client.get("check.crcs"), Some("true"));
    assert_eq!(client.get("enable.auto.commit"), Some("false"));
}

#[test]
fn bad_properties_are_named() {
    let with = |key: &str, value: Json| {
        let mut p = ok();
        p[key] = value;
        p
    };
    let without = |key: &str| {
        let mut p = ok();
        p.as_object_mut().unwrap().remove(key);
        p
    };
    let cases = [
        (without("bootstrap.servers"), "properties.bootstrap.servers"),
        (
            with("bootstrap.servers", json!("")),
            "properties.bootstrap.servers",
        ),
        (
            with("bootstrap.servers", json!(9092)),
            "properties.bootstrap.servers",
        ),
        (without("group.id"), "properties.group.id"),
        (with("group.id", json!(["g"])), "properties.group.id"),
        (without("topics"), "properties.topics"),
        (with("topics", json!([])), "properties.topics"),
        (with("topics", json!("trades")), "properties.topics"),
        (with("topics", json!(["a", "a"])), "properties.topics[1]"),
        (with("topics", json!(["a", "b c"])), "properties.topics[1]"),
        (with("topics", json!([".."])), "properties.topics[0]"),
        (
            with("auto.offset.reset", json!(1)),
            "properties.auto.offset.reset",
        ),
        // librdkafka's own validation, naming the property it rejects.
        (
            with("auto.offset.reset", json!("sideways")),
            "properties.auto.offset.reset",
        ),
        (
            with("no.such.property", json!("x")),
            "properties.no.such.property",
        ),
        (
            with("session.timeout.ms", json!("soon")),
            "properties.session.timeout.ms",
        ),
        (
            with("security.protocol", json!("carrier-pigeon")),
            "properties.security.protocol",
        ),
        (
            with("enable.auto.commit", json!("true")),
            "properties.enable.auto.commit",
        ),
        (
            with("enable.auto.offset.store", json!(true)),
            "properties.enable.auto.offset.store",
        ),
        (with("client.id", json!({"a": 1})), "properties.client.id"),
    ];
    for (props, expected) in cases {
        let message = error(props.clone());
        assert!(
            message.contains(&format!("{expected}:")),
            "{props}: `{message}` does not name {expected}"
        );
        assert!(message.starts_with("datasource `kf`"), "{message}");
    }
}

#[test]
fn librdkafka_explains_what_it_rejects() {
    let mut props = ok();
    props["no.such.property"] = json!("x");
    let message = error(props);
    assert!(
        message.contains("No such configuration property"),
        "{message}"
    );
}

/// The run loop against librdkafka's built-in mock cluster (the real-broker tests are in
/// tests/source_kafka.rs): records are dispatched in partition order with their positions,
/// committed once their batches are handed off, and a broker outage shows in the health.
#[test]
fn records_are_dispatched_in_order_then_committed_mock_cluster() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("trades", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for i in 0..50 {
        let payload = i.to_string();
        producer
            .send(BaseRecord::to("trades").key("BTCUSDT").payload(&payload))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let source = KafkaSource::from_datasource(
        &datasource(json!({
            "bootstrap.servers": bootstrap, "group.id": "g", "topics": ["trades"]
        })),
        &Consumption::default(),
    )
    .unwrap();
    let health = Arc::new(super::super::SourceHealth::detached("kf"));
    let mut dispatcher = Dispatcher::new(Backpressure::Wait).with_health(Arc::clone(&health));
    let mut inbox = dispatcher.add_route(vec!["trades".to_string()], None);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let thread = std::thread::spawn(move || Box::new(source).run(dispatcher, stop));

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while seen.len() < 50 {
        assert!(Instant::now() < deadline, "only {} records", seen.len());
        match inbox.try_recv() {
            Ok(batch) => {
                for e in batch.iter() {
                    assert_eq!(&*e.channel, "trades");
                    assert_eq!(e.key.as_deref(), Some(&b"BTCUSDT"[..]));
                    assert!(e.timestamp_us > 0);
                    let position = e.position.to_string();
                    let (partition, offset) = position.split_once(':').unwrap();
                    seen.push((
                        partition.to_string(),
                        offset.parse::<i64>().unwrap(),
                        String::from_utf8(e.payload.to_vec()).unwrap(),
                    ));
                }
                // Dropping the batch hands it off.
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert!(health.problem().is_none(), "{:?}", health.problem());
    let partition = seen[0].0.clone();
    for (i, (p, offset, payload)) in seen.iter().enumerate() {
        assert_eq!(p, &partition);
        assert_eq!(*offset, i as i64);
        assert_eq!(payload, &i.to_string());
    }

    let checker: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", "g")
        .create()
        .unwrap();
    let committed = || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("trades", partition.parse().unwrap());
        checker
            .committed_offsets(tpl, Duration::from_secs(5))
            .ok()
            .and_then(|t| t.elements().first().map(|e| e.offset()))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while committed() != Some(Offset::Offset(50)) {
        assert!(Instant::now() < deadline, "committed {:?}", committed());
        std::thread::sleep(Duration::from_millis(100));
    }

    cluster.broker_down(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while health.problem().is_none() {
        assert!(Instant::now() < deadline, "the outage was not reported");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.broker_up(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(problem) = health.problem() {
        assert!(Instant::now() < deadline, "still down: {problem}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let stopping = Instant::now();
    shutdown.cancel();
    thread.join().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
}

#[test]
fn ready_only_with_a_broker_up_and_a_settled_group_member() {
    use rdkafka::statistics::{Broker, ConsumerGroup};
    let statistics = |broker: &str, group: Option<(&str, &str)>| Statistics {
        brokers: HashMap::from([(
            "b1".to_string(),
            Broker {
                nodeid: 1,
                state: broker.to_string(),
                ..Default::default()
            },
        )]),
        cgrp: group.map(|(state, join_state)| ConsumerGroup {
            state: state.to_string(),
            join_state: join_state.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(readiness(&statistics("UP", Some(("up", "steady")))), Ok(()));
    assert_eq!(readiness(&statistics("UP", None)), Ok(()));
    assert_eq!(
        readiness(&statistics("DOWN", Some(("up", "steady")))),
        Err("no broker connection is up".to_string())
    );
    // A broker back after a restart, but the member still rejoining: not ready yet.
    assert_eq!(
        readiness(&statistics("UP", Some(("up", "wait-join")))),
        Err("joining the consumer group (state up, join state wait-join)".to_string())
    );
    assert!(readiness(&statistics("UP", Some(("wait-coord", "init")))).is_err());
}

#[test]
fn positions_are_partition_and_offset() {
    assert_eq!(position(2, 1234).to_string(), "2:1234");
    assert_eq!(position(0, 0).to_string(), "0:0");
}
