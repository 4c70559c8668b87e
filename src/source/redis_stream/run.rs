//! The source's run loop: connects (reconnecting with backoff), steps the consumer, hands
//! batches to the dispatcher and acknowledges what is in flight on shutdown.

use std::collections::HashSet;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use redis::Client;
use tokio_util::sync::CancellationToken;

use super::consumer::{Consumer, Step};
use super::{RedisStreamSource, BACKOFF_MIN};
use crate::config::secrets::redact_text;
use crate::source::{Backpressure, Dispatcher, Source};

/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Source for RedisStreamSource {
    /// A broker keeps what is not read: a slow route slows the source instead of losing events.
    fn backpressure(&self) -> Backpressure {
        Backpressure::Wait
    }

    fn run(self: Box<Self>, mut dispatcher: Dispatcher, shutdown: CancellationToken) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(datasource = %self.name, error = %e, "cannot start a runtime");
                return;
            }
        };
        let (acks_tx, acks_rx) = std_mpsc::channel();
        let mut consumer = Consumer {
            channels: self
                .config
                .streams
                .iter()
                .map(|s| Arc::from(s.as_str()))
                .collect(),
            pending_cursor: Vec::new(),
            in_flight: HashSet::new(),
            acks_tx,
            acks_rx,
            next_claim: Instant::now(),
            next_lag: Instant::now(),
            name: self.name,
            config: self.config,
        };
        let client = match Client::open(consumer.config.url.as_str()) {
            Ok(client) => client,
            Err(e) => {
                let error = e.to_string();
                let error = redact_text(&error);
                tracing::error!(datasource = %consumer.name, %error, "invalid redis url");
                return;
            }
        };
        let mut backoff = BACKOFF_MIN;
        while !shutdown.is_cancelled() {
            let connected = runtime.block_on(async {
                tokio::select! {
                    _ = shutdown.cancelled() => None,
                    c = consumer.connect(&client) => Some(c),
                }
            });
            let mut conn = match connected {
                None => return,
                Some(Ok(conn)) => {
                    dispatcher.health().set_up();
                    tracing::info!(
                        datasource = %consumer.name,
                        group = %consumer.config.group,
                        consumer = %consumer.config.consumer,
                        streams = ?consumer.config.streams,
                        "connected to redis"
                    );
                    conn
                }
                Some(Err(e)) => {
                    let error = e.to_string();
                    let error = redact_text(&error);
                    tracing::warn!(datasource = %consumer.name, %error, "redis connect failed");
                    dispatcher
                        .health()
                        .set_down(&format!("cannot connect: {error}"));
                    dispatcher.health().reconnecting();
                    if !sleep_backoff(&runtime, &shutdown, &mut backoff) {
                        return;
                    }
                    continue;
                }
            };
            // A read in progress when shutdown comes is let finish (it blocks at most
            // block_ms): entries the server handed out are dispatched, not stranded.
            let grace = Duration::from_millis(consumer.config.block_ms) + Duration::from_secs(1);
            loop {
                let step = runtime.block_on(async {
                    tokio::select! {
                        step = consumer.step(&mut conn) => step,
                        _ = async {
                            shutdown.cancelled().await;
                            tokio::time::sleep(grace).await;
                        } => Ok(Step::Stop),
                    }
                });
                let stopping = shutdown.is_cancelled();
                match step {
                    Ok(Step::Stop) => {}
                    Ok(Step::Idle) => backoff = BACKOFF_MIN,
                    Ok(Step::Events(events, acks)) => {
                        backoff = BACKOFF_MIN;
                        let tx = consumer.acks_tx.clone();
                        if !dispatcher.dispatch_blocking_then(events, move || {
                            let _ = tx.send(acks);
                        }) {
                            tracing::info!(datasource = %consumer.name, "no routes left; stopping");
                            return;
                        }
                    }
                    Err(e) if !stopping => {
                        let error = e.to_string();
                        let error = redact_text(&error);
                        tracing::warn!(datasource = %consumer.name, %error, "redis error; reconnecting");
                        dispatcher.health().set_down(&format!("redis error: {e}"));
                        dispatcher.health().reconnecting();
                        break;
                    }
                    Err(_) => {}
                }
                if stopping {
                    drop(conn);
                    runtime.block_on(consumer.finish(&client));
                    return;
                }
                if let Some(lag) = runtime.block_on(consumer.lag(&mut conn)) {
                    dispatcher.health().set_lag(lag);
                }
            }
            if !sleep_backoff(&runtime, &shutdown, &mut backoff) {
                return;
            }
        }
    }
}

/// Sleeps a jittered `backoff` (between half and all of it), then doubles it up to the cap.
/// False if shutdown came first.
fn sleep_backoff(
    runtime: &tokio::runtime::Runtime,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
) -> bool {
    let half = backoff.as_millis() as u64 / 2;
    let wait = Duration::from_millis(half + rand::rng().random_range(0..=half));
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    runtime.block_on(async {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    })
}
