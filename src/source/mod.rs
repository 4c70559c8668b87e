//! Upstream sources: where events come from before mapping.
//!
//! A source turns its upstream (the demo market, Kafka, NATS, Redis Streams) into batches of
//! [`UpstreamEvent`]s, each with its typed [`Position`], and hands them to a [`Dispatcher`],
//! which routes each event to the routes that read its channel.

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

use crate::config::secrets::Scrubber;
use crate::config::{Datasource, DatasourceKind, GatewayConfig};

pub use crate::position::Position;
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
    /// Where it sits upstream.
    pub position: Position,
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

    /// Runs until `shutdown`, handing every event to `dispatcher`.
    fn run(self: Box<Self>, dispatcher: Dispatcher, shutdown: CancellationToken);
}

/// How many consumers of one datasource run at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consumers {
    /// Any number, side by side (an embedded node; nodes sharing a store without a bus).
    #[default]
    Many,
    /// One at a time, which the caller guarantees (a cluster's lease): a new consumer may take
    /// its predecessor's place at once, e.g. as the same static member of a Kafka group.
    OneAtATime,
}

/// How a datasource is consumed, beside its own properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumption {
    /// The channels its routes read (their `upstream`, each once, in order): what a Kafka,
    /// NATS or Redis Streams source consumes when its properties list no topics, subjects or
    /// streams of their own.
    pub upstream: Vec<String>,
    /// True when no route reads the datasource: it is validated but never started, so it
    /// needs no list of channels.
    pub unread: bool,
    /// How many consumers of the datasource run at once.
    pub consumers: Consumers,
}

impl Consumption {
    /// The consumption of `datasource` by the routes of `config` that read it.
    pub fn of(config: &GatewayConfig, datasource: &str, consumers: Consumers) -> Self {
        let mut upstream: Vec<String> = Vec::new();
        let mut unread = true;
        for route in config.routes.iter().filter(|r| r.data_source == datasource) {
            unread = false;
            for channel in &route.upstream {
                if !upstream.contains(channel) {
                    upstream.push(channel.clone());
                }
            }
        }
        Consumption {
            upstream,
            unread,
            consumers,
        }
    }
}

/// Validates a datasource's properties and builds its source. An error never carries the
/// datasource's secrets: whatever a parser or librdkafka echoed of them is scrubbed
/// ([`crate::config::secrets`]).
pub fn build(
    datasource: &Datasource,
    consumption: &Consumption,
) -> Result<Box<dyn Source>, SourceError> {
    build_source(datasource, consumption).map_err(|error| match error {
        SourceError::Config { name, message } => {
            let properties = serde_json::Value::Object(datasource.properties.clone());
            SourceError::Config {
                name,
                message: Scrubber::of_tree(&properties).scrub(&message),
            }
        }
        other => other,
    })
}

fn build_source(
    datasource: &Datasource,
    consumption: &Consumption,
) -> Result<Box<dyn Source>, SourceError> {
    match datasource.kind {
        DatasourceKind::Demo => Ok(Box::new(demo::DemoSource::from_datasource(datasource)?)),
        DatasourceKind::Kafka => Ok(Box::new(kafka::KafkaSource::from_datasource(
            datasource,
            consumption,
        )?)),
        DatasourceKind::Nats => Ok(Box::new(nats::NatsSource::from_datasource(
            datasource,
            consumption,
        )?)),
        DatasourceKind::RedisStream => Ok(Box::new(
            redis_stream::RedisStreamSource::from_datasource(datasource, consumption)?,
        )),
    }
}
