//! The `kafka` datasource: consumes Kafka topics as a member of a consumer group (librdkafka,
//! built from source, through `rdkafka`).
//!
//! Records are polled in batches by one thread and dispatched in poll order, so the order within
//! a partition is kept through mapping and fanout. Offsets are never committed automatically:
//! once every route has published what a batch mapped to (the dispatcher's hand-off), the
//! highest offset of the batch per partition is committed (`offset + 1`), so a restarted or
//! rebalanced consumer resumes at the first record not yet handed off: at-least-once delivery.
//!
//! Properties:
//! - `bootstrap.servers` (required): `host:port[,host:port...]`.
//! - `group.id` (required): the consumer group (one per gateway cluster).
//! - `topics` (required): the topics to consume (a route's `upstream` names them).
//! - `auto.offset.reset`: where a group without a committed offset starts, default `earliest`.
//! - any other property is passed to librdkafka verbatim (`security.protocol`, `sasl.*`,
//!   `session.timeout.ms`, ...), and librdkafka's own validation applies to it; only
//!   `enable.auto.commit` and `enable.auto.offset.store` are reserved (wsgate commits after
//!   hand-off).
//!
//! Each event's position is `"<partition>:<offset>"`, its channel the topic, its key, headers
//! and payload the record's, its timestamp the record timestamp.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::{Backpressure, Dispatcher, Source, SourceError, UpstreamEvent};
use crate::config::Datasource;

/// Records dispatched as one batch at most.
const BATCH: usize = 500;
/// How long one poll waits for a first record (bounds shutdown latency).
const POLL: Duration = Duration::from_millis(100);
/// How long a stopping source waits for its in-flight batches to be handed off.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Properties wsgate sets itself.
const RESERVED: [&str; 2] = ["enable.auto.commit", "enable.auto.offset.store"];
/// Default `statistics.interval.ms`: the lag gauge and broker state are refreshed this often.
const STATS_INTERVAL_MS: &str = "1000";

/// Validated `kafka` properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `group.id`.
    pub group_id: String,
    /// Topics consumed.
    pub topics: Vec<String>,
    /// `auto.offset.reset`.
    pub auto_offset_reset: String,
    /// Every other property, passed to librdkafka as is (sorted by name).
    pub passthrough: Vec<(String, String)>,
}

fn config_error(name: &str, property: &str, message: impl std::fmt::Display) -> SourceError {
    SourceError::Config {
        name: name.to_string(),
        message: format!("properties.{property}: {message}"),
    }
}

/// A Kafka topic name: 1 to 249 of `[A-Za-z0-9._-]`, not `.` or `..`.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl KafkaConfig {
    /// Parses and validates a datasource's properties, letting librdkafka check them too.
    pub fn from_datasource(datasource: &Datasource) -> Result<Self, SourceError> {
        let name = datasource.name.as_str();
        let props = &datasource.properties;
        let required = |property: &str| match props.get(property) {
            None => Err(config_error(name, property, "required")),
            Some(Json::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(_) => Err(config_error(name, property, "must be a non-empty string")),
        };
        let bootstrap_servers = required("bootstrap.servers")?;
        let group_id = required("group.id")?;
        let topics = match props.get("topics") {
            None => {
                return Err(config_error(
                    name,
                    "topics",
                    "required (the Kafka topics to consume)",
                ))
            }
            Some(Json::Array(items)) if !items.is_empty() => {
                let mut topics: Vec<String> = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let property = format!("topics[{i}]");
                    match item.as_str() {
                        Some(topic) if valid_topic(topic) => {
                            if topics.iter().any(|t| t == topic) {
                                return Err(config_error(
                                    name,
                                    &property,
                                    format!("`{topic}` is listed twice"),
                                ));
                            }
                            topics.push(topic.to_string());
                        }
                        _ => {
                            return Err(config_error(
                                name,
                                &property,
                                "must be a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -)",
                            ))
                        }
                    }
                }
                topics
            }
            Some(_) => {
                return Err(config_error(
                    name,
                    "topics",
                    "must be a non-empty array of topic names",
                ))
            }
        };
        let auto_offset_reset = match props.get("auto.offset.reset") {
            None => "earliest".to_string(),
            Some(Json::String(s)) => s.clone(),
            Some(_) => {
                return Err(config_error(
                    name,
                    "auto.offset.reset",
                    "must be a string (earliest or latest)",
                ))
            }
        };
        let mut passthrough = Vec::new();
        for (key, value) in props {
            if matches!(
                key.as_str(),
                "bootstrap.servers" | "group.id" | "topics" | "auto.offset.reset"
            ) {
                continue;
            }
            if RESERVED.contains(&key.as_str()) {
                return Err(config_error(
                    name,
                    key,
                    "is managed by wsgate (offsets are committed once handed off)",
                ));
            }
            let value = match value {
                Json::String(s) => s.clone(),
                Json::Number(n) => n.to_string(),
                Json::Bool(b) => b.to_string(),
                _ => {
                    return Err(config_error(
                        name,
                        key,
                        "must be a string, number or boolean",
                    ))
                }
            };
            passthrough.push((key.clone(), value));
        }
        passthrough.sort();
        let config = KafkaConfig {
            bootstrap_servers,
            group_id,
            topics,
            auto_offset_reset,
            passthrough,
        };
        // librdkafka checks property names, values and their combinations when a client is
        // created; no connection is made by an unsubscribed consumer.
        if let Err(e) = config.client_config().create::<BaseConsumer>() {
            return Err(match e {
                KafkaError::ClientConfig(_, description, key, _) => {
                    config_error(name, &key, description)
                }
                other => {
                    let message = other.to_string();
                    let property = props
                        .keys()
                        .find(|k| message.contains(&format!("\"{k}\"")) || message.contains(*k))
                        .map(String::as_str);
                    match property {
                        Some(property) => config_error(name, property, message),
                        None => SourceError::Config {
                            name: name.to_string(),
                            message: format!("properties: librdkafka rejects them: {message}"),
                        },
                    }
                }
            });
        }
        Ok(config)
    }

    /// The librdkafka configuration of the consumer.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("statistics.interval.ms", STATS_INTERVAL_MS)
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("auto.offset.reset", &self.auto_offset_reset);
        for (key, value) in &self.passthrough {
            config.set(key, value);
        }
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        config
    }
}

/// A member of a consumer group on a set of Kafka topics.
pub struct KafkaSource {
    name: String,
    config: KafkaConfig,
}

impl KafkaSource {
    /// Validates the datasource's properties.
    pub fn from_datasource(datasource: &Datasource) -> Result<Self, SourceError> {
        Ok(KafkaSource {
            name: datasource.name.clone(),
            config: KafkaConfig::from_datasource(datasource)?,
        })
    }

    /// The validated properties.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }
}

/// Offsets handed off and not yet committed: the highest per (topic, partition).
type Offsets = HashMap<(Arc<str>, i32), i64>;

/// What librdkafka's callbacks (run on the consumer thread, inside `poll`) and the hand-off
/// callbacks (run on route threads) share with the consumer loop.
#[derive(Default)]
struct Shared {
    /// Handed off, not yet committed.
    handed_off: Mutex<Offsets>,
    /// Batches dispatched and not yet handed off.
    in_flight: AtomicUsize,
    /// Broker errors since the loop last looked.
    errors: Mutex<Vec<String>>,
    /// Whether the last statistics showed the consumer able to consume, or why not.
    readiness: Mutex<Option<Result<(), String>>>,
    /// Uncommitted records of the assigned partitions, from the last statistics.
    lag: Mutex<Option<u64>>,
}

impl Shared {
    fn take_offsets(&self) -> Offsets {
        std::mem::take(&mut *self.handed_off.lock())
    }
}

struct Context {
    name: String,
    shared: Arc<Shared>,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        *self.shared.readiness.lock() = Some(readiness(&statistics));
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.desired && p.consumer_lag > 0)
            .map(|p| p.consumer_lag)
            .sum();
        *self.shared.lag.lock() = Some(lag.max(0) as u64);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(datasource = %self.name, error = %error, %reason, "kafka client error");
        let serious = match &error {
            KafkaError::Global(code) => matches!(
                code,
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::Resolve
                    | RDKafkaErrorCode::Fatal
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::SSL
            ),
            _ => false,
        };
        if serious {
            self.shared.errors.lock().push(format!("{error}: {reason}"));
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            // Partitions may move to another member: commit what was handed off while this
            // member still owns them.
            commit(
                &self.name,
                consumer,
                self.shared.take_offsets(),
                CommitMode::Sync,
            );
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(
                    datasource = %self.name,
                    partitions = tpl.count(),
                    "kafka partitions assigned"
                );
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(
                    datasource = %self.name,
                    partitions = tpl.count(),
                    "kafka partitions revoked"
                );
            }
            Rebalance::Error(e) => {
                tracing::warn!(datasource = %self.name, error = %e, "kafka rebalance failed");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(
                datasource = %self.name,
                error = %e,
                offsets = ?offsets.to_topic_map(),
                "kafka offset commit failed"
            );
        }
    }
}

/// Commits `offset + 1` for every handed-off (topic, partition).
/// Whether `statistics` show a consumer that can consume: a broker connection up and, in a
/// group, a member whose assignment has settled. Until then a restarted broker is not enough:
/// the member must rejoin the group before it fetches anything.
fn readiness(statistics: &Statistics) -> Result<(), String> {
    let broker_up = statistics
        .brokers
        .values()
        .any(|b| b.nodeid >= 0 && b.state == "UP");
    if !broker_up {
        return Err("no broker connection is up".into());
    }
    match &statistics.cgrp {
        Some(group) if group.state != "up" || group.join_state != "steady" => Err(format!(
            "joining the consumer group (state {}, join state {})",
            group.state, group.join_state
        )),
        _ => Ok(()),
    }
}

fn commit(name: &str, consumer: &BaseConsumer<Context>, offsets: Offsets, mode: CommitMode) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, partition), offset) in &offsets {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(offset + 1)) {
            tracing::warn!(datasource = %name, error = %e, "invalid offset to commit");
        }
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            tracing::debug!(datasource = %name, offsets = ?tpl.to_topic_map(), "kafka offsets committed")
        }
        Err(e) => tracing::warn!(datasource = %name, error = %e, "kafka offset commit failed"),
    }
}

/// The event for a record.
fn event(channels: &HashMap<String, Arc<str>>, message: &BorrowedMessage<'_>) -> UpstreamEvent {
    let topic = message.topic();
    let channel = channels
        .get(topic)
        .cloned()
        .unwrap_or_else(|| Arc::from(topic));
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    UpstreamEvent {
        channel,
        key: message.key().map(Bytes::copy_from_slice),
        headers,
        payload: message
            .payload()
            .map(Bytes::copy_from_slice)
            .unwrap_or_default(),
        timestamp_us: message
            .timestamp()
            .to_millis()
            .map_or(0, |ms| ms.saturating_mul(1000)),
        position: position(message.partition(), message.offset()),
    }
}

/// `"<partition>:<offset>"`, as the dedup stage expects for Kafka.
fn position(partition: i32, offset: i64) -> String {
    format!("{partition}:{offset}")
}

impl Source for KafkaSource {
    /// A broker keeps what is not read: a slow route slows the source instead of losing events.
    fn backpressure(&self) -> Backpressure {
        Backpressure::Wait
    }

    fn durable_positions(&self) -> bool {
        true
    }

    fn run(self: Box<Self>, mut dispatcher: Dispatcher, shutdown: CancellationToken) {
        let name = self.name;
        let shared = Arc::new(Shared::default());
        let context = Context {
            name: name.clone(),
            shared: Arc::clone(&shared),
        };
        let consumer: BaseConsumer<Context> = match self
            .config
            .client_config()
            .create_with_context(context)
        {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::error!(datasource = %name, error = %e, "cannot create the kafka consumer");
                dispatcher
                    .health()
                    .set_down(&format!("cannot create the consumer: {e}"));
                return;
            }
        };
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        if let Err(e) = consumer.subscribe(&topics) {
            tracing::error!(datasource = %name, error = %e, "cannot subscribe");
            dispatcher
                .health()
                .set_down(&format!("cannot subscribe: {e}"));
            return;
        }
        tracing::info!(
            datasource = %name,
            group = %self.config.group_id,
            topics = ?self.config.topics,
            "kafka consumer started"
        );
        let channels: HashMap<String, Arc<str>> = self
            .config
            .topics
            .iter()
            .map(|t| (t.clone(), Arc::from(t.as_str())))
            .collect();
        let mut up = false;
        let mut stopped_by_routes = false;
        while !shutdown.is_cancelled() {
            commit(&name, &consumer, shared.take_offsets(), CommitMode::Async);
            let mut events = Vec::new();
            let mut batch: Offsets = HashMap::new();
            let mut error = None;
            let mut wait = POLL;
            while events.len() < BATCH {
                match consumer.poll(wait) {
                    None => break,
                    Some(Ok(message)) => {
                        let event = event(&channels, &message);
                        let offset = batch
                            .entry((Arc::clone(&event.channel), message.partition()))
                            .or_insert(message.offset());
                        *offset = (*offset).max(message.offset());
                        events.push(event);
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => {
                        error = Some(e);
                        break;
                    }
                }
                wait = Duration::ZERO;
            }
            // Health: broker errors take the source down (and count a reconnect, which
            // librdkafka performs itself); records, or statistics showing a settled group
            // member, bring it back.
            let mut problems = std::mem::take(&mut *shared.errors.lock());
            if let Some(e) = error {
                tracing::warn!(datasource = %name, error = %e, "kafka consume error");
                problems.push(e.to_string());
            }
            let readiness = match problems.pop() {
                Some(problem) => Some(Err(problem)),
                None if !events.is_empty() => Some(Ok(())),
                None => shared.readiness.lock().take(),
            };
            match readiness {
                Some(Ok(())) if !up => {
                    dispatcher.health().set_up();
                    up = true;
                }
                Some(Err(why)) => {
                    if up {
                        dispatcher.health().reconnecting();
                    }
                    dispatcher.health().set_down(&format!("kafka: {why}"));
                    up = false;
                }
                _ => {}
            }
            if let Some(lag) = shared.lag.lock().take() {
                dispatcher.health().set_lag(lag);
            }
            if events.is_empty() {
                continue;
            }
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
            let handed = Arc::clone(&shared);
            let alive = dispatcher.dispatch_blocking_then(events, move || {
                let mut offsets = handed.handed_off.lock();
                for (key, offset) in batch {
                    let entry = offsets.entry(key).or_insert(offset);
                    *entry = (*entry).max(offset);
                }
                drop(offsets);
                handed.in_flight.fetch_sub(1, Ordering::SeqCst);
            });
            if !alive {
                tracing::info!(datasource = %name, "no routes left; stopping");
                stopped_by_routes = true;
                break;
            }
        }
        // Commit what was handed off, giving in-flight batches a moment to be.
        let deadline = Instant::now() + STOP_GRACE;
        while !stopped_by_routes
            && shared.in_flight.load(Ordering::SeqCst) > 0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let offsets = shared.take_offsets();
        if !offsets.is_empty() {
            tracing::info!(datasource = %name, partitions = offsets.len(), "committing kafka offsets on stop");
            commit(&name, &consumer, offsets, CommitMode::Sync);
        }
        consumer.unsubscribe();
        drop(consumer);
        tracing::info!(datasource = %name, "kafka consumer stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatasourceKind;
    use serde_json::json;

    fn datasource(properties: Json) -> Datasource {
        Datasource {
            version: 1,
            kind: DatasourceKind::Kafka,
            name: "kf".to_string(),
            properties: properties.as_object().unwrap().clone(),
        }
    }

    fn error(properties: Json) -> String {
        match KafkaSource::from_datasource(&datasource(properties)) {
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
        let source = KafkaSource::from_datasource(&datasource(ok())).unwrap();
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
    fn other_properties_pass_through_to_librdkafka() {
        let mut props = ok();
        props["topics"] = json!(["a", "b.c"]);
        props["auto.offset.reset"] = json!("latest");
        props["security.protocol"] = json!("plaintext");
        props["session.timeout.ms"] = json!(10000);
        props["check.crcs"] = json!(true);
        let source = KafkaSource::from_datasource(&datasource(props)).unwrap();
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

        let source = KafkaSource::from_datasource(&datasource(json!({
            "bootstrap.servers": bootstrap, "group.id": "g", "topics": ["trades"]
        })))
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
                        let (partition, offset) = e.position.split_once(':').unwrap();
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
        assert_eq!(position(2, 1234), "2:1234");
        assert_eq!(position(0, 0), "0:0");
    }
}
