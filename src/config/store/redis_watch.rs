//! The Redis store's watcher: keeps receivers of [`ConfigStore::watch`] and
//! [`ConfigStore::health`] current (see the `redis` module's docs, "Watching").
//!
//! [`ConfigStore::watch`]: super::ConfigStore::watch
//! [`ConfigStore::health`]: super::ConfigStore::health

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use redis::{Client, RedisError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::redis::{query, Keys, RESPONSE_TIMEOUT};
use super::StoreHealth;

/// How often the watcher reads the revision (and whether the store still holds a config) even
/// without an announcement.
pub(super) const POLL_EVERY: Duration = Duration::from_secs(1);
/// The watcher's first reconnection delay; doubled after every failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The watcher's longest reconnection delay.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long subscribing may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the watcher keeps up to date: the newest revision and the store's health.
pub(super) struct Watched {
    pub(super) conn: ConnectionManager,
    pub(super) keys: Arc<Keys>,
    pub(super) announce: Arc<watch::Sender<u64>>,
    pub(super) health: Arc<watch::Sender<StoreHealth>>,
}

impl Watched {
    /// Reads the store revision into `announce`, and whether the store answers and holds a
    /// config into `health`.
    pub(super) async fn refresh(&self) {
        let cmd = redis::cmd("MGET")
            .arg(&self.keys.revision)
            .arg(&self.keys.version)
            .clone();
        let health = match query::<(Option<u64>, Option<u64>)>(&self.conn, &cmd).await {
            Ok((Some(revision), Some(_))) => {
                self.announce
                    .send_if_modified(|seen| std::mem::replace(seen, revision) != revision);
                StoreHealth::Serving
            }
            // Empty (a Redis restarted without its data): receivers keep the last revision
            // until the store is restored or seeded.
            Ok(_) => StoreHealth::Empty,
            Err(error) => {
                tracing::debug!(%error, "config store: cannot read the revision");
                StoreHealth::Unreachable(error.to_string())
            }
        };
        self.health.send_if_modified(|seen| {
            let changed = *seen != health;
            *seen = health;
            changed
        });
    }
}

/// Keeps the watched values current until `stop` is cancelled: reads them on every
/// announcement and every [`POLL_EVERY`], resubscribing with capped backoff.
pub(super) async fn watch_revisions(client: Client, watched: Watched, stop: CancellationToken) {
    let keys = Arc::clone(&watched.keys);
    let refresh = || watched.refresh();
    let mut backoff = BACKOFF_MIN;
    loop {
        let subscribed = match stop.run_until_cancelled(subscribe(&client, &keys)).await {
            None => return,
            Some(subscribed) => subscribed,
        };
        let (mut sink, mut messages) = match subscribed {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, ?backoff, "config store: cannot subscribe, retrying");
                // The command connection may still work; a change is then seen anyway.
                let wait = async {
                    refresh().await;
                    tokio::time::sleep(backoff).await;
                };
                if stop.run_until_cancelled(wait).await.is_none() {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        // Announcements made while unsubscribed are lost: the first tick, immediate, reads the
        // revision now.
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let alive = async {
                tokio::select! {
                    message = messages.next() => {
                        refresh().await;
                        message.is_some()
                    }
                    _ = poll.tick() => {
                        refresh().await;
                        let ping = tokio::time::timeout(RESPONSE_TIMEOUT, sink.ping::<redis::Value>());
                        matches!(ping.await, Ok(Ok(_)))
                    }
                }
            };
            match stop.run_until_cancelled(alive).await {
                None => return,
                Some(true) => {}
                Some(false) => {
                    tracing::debug!("config store: subscription lost, resubscribing");
                    break;
                }
            }
        }
    }
}

/// A pub/sub connection subscribed to the store's announcements.
async fn subscribe(client: &Client, keys: &Keys) -> Result<(PubSubSink, PubSubStream), RedisError> {
    let connect = async {
        let (mut sink, messages) = client.get_async_pubsub().await?.split();
        sink.subscribe(&keys.channel).await?;
        Ok((sink, messages))
    };
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, connect)
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting to Redis timed out",
            )))
        })
}
