//! The `nats` datasource: core NATS subscriptions shared through a queue group, or a JetStream
//! durable pull consumer acknowledged only after hand-off (at-least-once).
//!
//! Properties:
//! - `servers` (required): `nats://host:port` (or `tls://`), a string or an array of them.
//! - `subjects`: non-empty array of subjects to consume, wildcards allowed; by default those the
//!   datasource's routes name as their `upstream`.
//! - `queue_group`: core mode's queue group (default `wsgate`), so several gateways share a
//!   subject instead of each receiving every message.
//! - `jetstream`: switches to JetStream: `{stream (required), durable (default "wsgate"),
//!   deliver ("all" | "new", default "all"), ack_wait_ms (default 30000)}`.
//! - `max_reconnect_attempts` (default unlimited), `reconnect_time_wait_ms` (default 1000; the
//!   delay grows exponentially from it, capped at 30 s, with jitter), or `reconnect_time_wait`
//!   in seconds, as the seed design's sample config writes it.
//! - Credentials: `user` + `password`, or `token`, or `creds_file`, or in the servers' URLs
//!   (`nats://user:password@host`, `nats://token@host`; the same in every URL). Errors and
//!   logs never show a password or a token.
//!
//! Core NATS is at-most-once: what is published while the gateway is disconnected is not
//! seen. JetStream messages are acknowledged once every route has published their mapped
//! outputs to the bus, so a crash redelivers whatever was not handed off.

mod config;
mod core_nats;
mod feed;
mod jetstream;
mod message;
mod run;
#[cfg(test)]
mod tests;

use std::time::Duration;

use async_nats::ServerAddr;
use tokio_util::sync::CancellationToken;

use super::{Backpressure, Consumption, Dispatcher, Source, SourceError};
use crate::config::Datasource;
use config::parse;

/// Most messages handed to the dispatcher at once.
const MAX_BATCH: usize = 500;
/// Longest wait between two attempts to (re)establish a session.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How the source authenticates.
#[derive(Clone, PartialEq, Eq)]
enum Credentials {
    None,
    UserPassword(String, String),
    Token(String),
    CredsFile(String),
}

/// Shows which kind, never the password or the token.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::UserPassword(user, _) => write!(f, "UserPassword({user:?}, \"***\")"),
            Credentials::Token(_) => f.write_str("Token(\"***\")"),
            Credentials::CredsFile(path) => write!(f, "CredsFile({path:?})"),
        }
    }
}

/// Where `deliver` starts a new durable consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deliver {
    All,
    New,
}

/// JetStream settings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JetStreamSettings {
    stream: String,
    durable: String,
    deliver: Deliver,
    ack_wait: Duration,
}

/// A NATS datasource.
#[derive(Debug)]
pub struct NatsSource {
    name: String,
    servers: Vec<ServerAddr>,
    subjects: Vec<String>,
    queue_group: String,
    jetstream: Option<JetStreamSettings>,
    max_reconnect_attempts: Option<usize>,
    reconnect_time_wait: Duration,
    credentials: Credentials,
}

/// Why a session ended.
enum Ended {
    /// Shutdown was requested, or every route is gone.
    Stopped,
    /// The upstream failed; try again after a pause.
    Failed(String),
}

impl NatsSource {
    /// Validates the datasource's properties for `consumption`; errors name the offending
    /// property.
    pub fn from_datasource(
        datasource: &Datasource,
        consumption: &Consumption,
    ) -> Result<Self, SourceError> {
        parse(&datasource.properties, consumption)
            .map_err(|message| SourceError::Config {
                name: datasource.name.clone(),
                message,
            })
            .map(|mut source| {
                source.name = datasource.name.clone();
                source
            })
    }

    /// Whether this source consumes through JetStream.
    pub fn is_jetstream(&self) -> bool {
        self.jetstream.is_some()
    }
}

impl Source for NatsSource {
    /// A broker keeps what is not consumed: a slow route slows the source, nothing is dropped.
    fn backpressure(&self) -> Backpressure {
        Backpressure::Wait
    }

    fn run(self: Box<Self>, dispatcher: Dispatcher, shutdown: CancellationToken) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(datasource = %self.name, error = %e, "cannot start nats runtime");
                return;
            }
        };
        runtime.block_on((*self).serve(dispatcher, shutdown));
    }
}
