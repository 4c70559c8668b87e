//! Upstream sources: where events come from before mapping.
//!
//! A source turns its upstream (the demo market; later Kafka, NATS, Redis Streams) into batches
//! of [`UpstreamEvent`]s and hands them to a [`Dispatcher`], which routes each event to the
//! routes that read its channel.

pub mod demo;
mod dispatch;
mod health;
pub mod kafka;
pub mod nats;
mod properties;
pub mod redis_stream;

use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::config::{Datasource, DatasourceKind};

pub use dispatch::{Backpressure, Dispatcher, RouteBatch, RouteInbox};
pub use health::SourceHealth;

/// One event as the upstream delivered it.
#[derive(Debug, Clone)]
pub struct UpstreamEvent {
    /// Kafka topic, NATS subject, Redis stream key or demo channel.
    pub channel: Arc<str>,
    /// Record key, if any.
    pub key: Option<Bytes>,
    /// Upstream headers.
    pub headers: Vec<(String, Bytes)>,
    /// Raw payload.
    pub payload: Bytes,
    /// Upstream timestamp, µs since the epoch (0 when unknown).
    pub timestamp_us: i64,
    /// Upstream position (partition:offset, sequence, entry id).
    pub position: String,
}

/// Why a datasource could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The datasource's properties are invalid; the message names the property.
    #[error("datasource `{name}`: {message}")]
    Config {
        /// Datasource name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The kind is valid config but not available in this build.
    #[error("datasource `{name}`: type `{kind}` is not supported yet")]
    Unsupported {
        /// Datasource name.
        name: String,
        /// Its type.
        kind: &'static str,
    },
}

/// A running upstream connection.
pub trait Source: Send {
    /// How the source's dispatcher treats a route that falls behind.
    fn backpressure(&self) -> Backpressure;

    /// Whether a restarted consumer resumes from a committed position, redelivering events
    /// with the positions they had (Kafka, JetStream, Redis Streams); false where positions
    /// are counted afresh by each run (the demo market, core NATS).
    fn durable_positions(&self) -> bool;

    /// Runs until `shutdown`, handing every event to `dispatcher`.
    fn run(self: Box<Self>, dispatcher: Dispatcher, shutdown: CancellationToken);
}

/// Validates a datasource's properties and builds its source.
pub fn build(datasource: &Datasource) -> Result<Box<dyn Source>, SourceError> {
    match datasource.kind {
        DatasourceKind::Demo => Ok(Box::new(demo::DemoSource::from_datasource(datasource)?)),
        DatasourceKind::Kafka => Ok(Box::new(kafka::KafkaSource::from_datasource(datasource)?)),
        DatasourceKind::Nats => Ok(Box::new(nats::NatsSource::from_datasource(datasource)?)),
        DatasourceKind::RedisStream => Ok(Box::new(
            redis_stream::RedisStreamSource::from_datasource(datasource)?,
        )),
    }
}
