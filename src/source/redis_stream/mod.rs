//! The `redis_stream` datasource: reads Redis Streams as a member of a consumer group.
//!
//! Entries are read with `XREADGROUP` (first this consumer's own pending entries, so that a
//! restarted consumer re-delivers what it had not acknowledged, then new ones), entries left
//! pending by dead consumers are taken over with `XAUTOCLAIM`, and an entry is acknowledged
//! (`XACK`) only once every route has published what it mapped to: at-least-once delivery.
//!
//! Properties:
//! - `url` (required): `redis://host:port[/db]` or `redis+unix:///path/to.sock`.
//! - `streams` (required): the stream keys to read (a route's `upstream` names them).
//! - `group`: consumer group, default `wsgate` (created with `MKSTREAM` if missing).
//! - `consumer`: consumer name, default `wsgate`. A datasource has one consumer at a time (in a
//!   cluster, its owner), so one stable name lets a restarted or newly assigned consumer re-read
//!   what the last one left pending, in order, before new entries. Gateways that share a group
//!   to split a stream between them need names of their own.
//! - `block_ms`: how long one read blocks, default 1000 (also bounds shutdown latency).
//! - `batch`: entries per read (`COUNT`), default 500.
//! - `claim_idle_ms`: take over entries pending longer than this on other consumers, default
//!   30000; 0 disables claiming.
//! - `start`: where a newly created group starts: `0` (everything, the default) or `$` (new
//!   entries only).

mod config;
mod consumer;
mod entry;
mod run;
#[cfg(test)]
mod tests;

use std::time::Duration;

use super::{Consumption, SourceError};
use crate::config::Datasource;

pub use config::RedisStreamConfig;

/// First reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// A consumer of one group on a set of Redis streams.
pub struct RedisStreamSource {
    name: String,
    config: RedisStreamConfig,
}

impl RedisStreamSource {
    /// Validates the datasource's properties for `consumption`.
    pub fn from_datasource(
        datasource: &Datasource,
        consumption: &Consumption,
    ) -> Result<Self, SourceError> {
        Ok(RedisStreamSource {
            name: datasource.name.clone(),
            config: RedisStreamConfig::from_datasource(datasource, consumption)?,
        })
    }

    /// The validated properties.
    pub fn config(&self) -> &RedisStreamConfig {
        &self.config
    }
}
