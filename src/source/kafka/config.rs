//! Parsing and validation of the `kafka` datasource's properties, and the librdkafka
//! configuration they make.

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;
use serde_json::Value as Json;

use crate::config::Datasource;
use crate::source::properties::{name_list, property_error, NameList};
use crate::source::{Consumption, SourceError};

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
    pub fn from_datasource(
        datasource: &Datasource,
        consumption: &Consumption,
    ) -> Result<Self, SourceError> {
        let name = datasource.name.as_str();
        let props = &datasource.properties;
        let required = |property: &str| match props.get(property) {
            None => Err(property_error(name, property, "required")),
            Some(Json::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(_) => Err(property_error(name, property, "must be a non-empty string")),
        };
        let bootstrap_servers = required("bootstrap.servers")?;
        let group_id = required("group.id")?;
        let topics = name_list(
            name,
            props,
            &NameList {
                property: "topics",
                holds: "the Kafka topics to consume",
                of: "topic names",
                valid: valid_topic,
                each_must_be: "must be a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -)",
            },
            consumption,
        )?;
        let auto_offset_reset = match props.get("auto.offset.reset") {
            None => "earliest".to_string(),
            Some(Json::String(s)) => s.clone(),
            Some(_) => {
                return Err(property_error(
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
                return Err(property_error(
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
                    return Err(property_error(
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
                    property_error(name, &key, description)
                }
                other => {
                    let message = other.to_string();
                    let property = props
                        .keys()
                        .find(|k| message.contains(&format!("\"{k}\"")) || message.contains(*k))
                        .map(String::as_str);
                    match property {
                        Some(property) => property_error(name, property, message),
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

    /// Makes the consumer a static member of its group, `wsgate-<datasource>`, unless the
    /// properties name a `group.instance.id`: for a datasource only one node consumes at a
    /// time, so that each new consumer takes its predecessor's place in the group at once.
    pub fn join_as_static_member(&mut self, datasource: &str) {
        const INSTANCE: &str = "group.instance.id";
        if self.passthrough.iter().any(|(key, _)| key == INSTANCE) {
            return;
        }
        self.passthrough
            .push((INSTANCE.to_string(), format!("wsgate-{datasource}")));
        self.passthrough.sort();
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
