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
//! - `topics`: the topics to consume; by default those the datasource's routes name as their
//!   `upstream` (each must then be a topic name, not a pattern).
//! - `auto.offset.reset`: where a group without a committed offset starts, default `earliest`.
//! - any other property is passed to librdkafka verbatim (`security.protocol`, `sasl.*`,
//!   `session.timeout.ms`, ...), and librdkafka's own validation applies to it; only
//!   `enable.auto.commit` and `enable.auto.offset.store` are reserved (wsgate commits after
//!   hand-off).
//!
//! Each event's position is its partition and offset (`"<partition>:<offset>"` to mappers), its
//! channel the topic, its key, headers and payload the record's, its timestamp the record
//! timestamp.
//!
//! A datasource consumed by one node at a time (a cluster's lease, [`Consumers::OneAtATime`])
//! joins its group as a static member, `group.instance.id` = `wsgate-<datasource>` unless the
//! properties name one: every owner is the same member to the broker, so a new owner takes a
//! dead owner's partitions at once instead of waiting for the broker to expire its session.

mod config;
mod context;
mod event;
mod run;
#[cfg(test)]
mod tests;

use super::{Consumers, Consumption, SourceError};
use crate::config::Datasource;

pub use config::KafkaConfig;

/// A member of a consumer group on a set of Kafka topics.
pub struct KafkaSource {
    name: String,
    config: KafkaConfig,
}

impl KafkaSource {
    /// Validates the datasource's properties for `consumption`.
    pub fn from_datasource(
        datasource: &Datasource,
        consumption: &Consumption,
    ) -> Result<Self, SourceError> {
        let mut config = KafkaConfig::from_datasource(datasource, consumption)?;
        if consumption.consumers == Consumers::OneAtATime {
            config.join_as_static_member(&datasource.name);
        }
        Ok(KafkaSource {
            name: datasource.name.clone(),
            config,
        })
    }

    /// The validated properties.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }
}
