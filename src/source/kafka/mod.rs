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

mod config;
mod context;
mod event;
mod run;
#[cfg(test)]
mod tests;

use super::SourceError;
use crate::config::Datasource;

pub use config::KafkaConfig;

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
