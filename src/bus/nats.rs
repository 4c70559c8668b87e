//! The bus of a cluster: core NATS. The owner of a source publishes each mapped output once on
//! its fanout subject, with headers carrying what the receiving hubs need (the ws stream, its
//! sequence number, the upstream origin, event and publish times); every node subscribes to
//! the subjects its clients need.
//!
//! Publishing only queues the message on the client's connection, which writes whatever has
//! queued in one go: nothing is flushed per message. While NATS is unreachable the client
//! reconnects on its own and its subscriptions are restored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Bus, BusError, BusMessage, BusSink, Origin, SubscriptionId};
use crate::position::Order;

/// Header names of a bus message on NATS.
mod header {
    pub const STREAM: &str = "Wsgate-Stream";
    pub const SEQ: &str = "Wsgate-Seq";
    pub const EVENT_US: &str = "Wsgate-Event-Us";
    pub const PUBLISHED_US: &str = "Wsgate-Published-Us";
    pub const USER: &str = "Wsgate-User";
    pub const ORIGIN: &str = "Wsgate-Origin";
}

/// Messages handed to a sink at most per delivery.
const MAX_BATCH: usize = 512;

/// A bus over a NATS connection.
pub struct NatsBus {
    pub(super) client: async_nats::Client,
    /// The JetStream stream capturing the fanout subjects, when the cluster keeps one.
    pub(super) capture: std::sync::OnceLock<String>,
    subscriptions: Mutex<HashMap<SubscriptionId, JoinHandle<()>>>,
    next_id: AtomicU64,
    /// The hubs' last answer on where streams stopped (without a capture).
    pub(super) last_seen: super::last_seen::Answers,
}

impl NatsBus {
    /// A bus over `client`.
    pub fn new(client: async_nats::Client) -> Arc<Self> {
        Arc::new(NatsBus {
            client,
            capture: std::sync::OnceLock::new(),
            subscriptions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            last_seen: Default::default(),
        })
    }

    /// Reads the capture in the JetStream stream `name` from now on: where a stream's numbering
    /// continues from ([`Bus::last_captured`]) and what is replayed to resuming clients
    /// ([`NatsBus::replay_capture`]). Set once; later calls are ignored.
    pub fn use_capture(&self, name: &str) {
        let _ = self.capture.set(name.to_string());
    }

    /// Makes the JetStream stream `name` capture `subjects` (created, or updated to them),
    /// keeping each message for `max_age`, in memory: the replay window of the fanout subjects.
    /// Subjects covered by a wider one of the list are left out (a stream refuses overlaps).
    pub async fn capture(
        &self,
        name: &str,
        subjects: &[String],
        max_age: Duration,
    ) -> anyhow::Result<()> {
        let mut kept: Vec<String> = subjects
            .iter()
            .filter(|s| {
                !subjects
                    .iter()
                    .any(|wider| wider != *s && crate::subject::matches(wider, s))
            })
            .cloned()
            .collect();
        kept.sort();
        kept.dedup();
        if kept.is_empty() {
            return Ok(());
        }
        let jetstream = async_nats::jetstream::new(self.client.clone());
        jetstream
            .create_or_update_stream(async_nats::jetstream::stream::Config {
                name: name.to_string(),
                subjects: kept,
                max_age,
                storage: async_nats::jetstream::stream::StorageType::Memory,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Checks the bus end to end until `stop`: every `every`, publishes a probe on `subject`
    /// and waits for it to come back through a subscription of its own. A connection can look
    /// healthy while the server no longer delivers to it (a subscription lost in a failover),
    /// so the state of the connection alone is not trusted. `report` gets `None` when a probe
    /// arrives and the problem when one does not; after two misses in a row the connection is
    /// forced to reconnect (again every third miss while they go on), which restores every
    /// subscription.
    pub async fn probe(
        &self,
        subject: String,
        every: Duration,
        report: impl Fn(Option<String>),
        stop: CancellationToken,
    ) {
        let mut subscriber = None;
        let mut misses = 0u32;
        for round in 0u64.. {
            if subscriber.is_none() {
                subscriber = self.client.subscribe(subject.clone()).await.ok();
            }
            let token = round.to_string();
            let sent = self
                .client
                .publish(subject.clone(), token.clone().into())
                .await
                .is_ok();
            let deadline = tokio::time::Instant::now() + every;
            let arrived = match (&mut subscriber, sent) {
                (Some(probe), true) => loop {
                    tokio::select! {
                        message = probe.next() => match message {
                            Some(m) if m.payload == token.as_bytes() => break true,
                            Some(_) => continue,
                            None => break false,
                        },
                        _ = tokio::time::sleep_until(deadline) => break false,
                        _ = stop.cancelled() => return,
                    }
                },
                _ => false,
            };
            if arrived {
                if misses > 0 {
                    tracing::info!("bus probe answered again");
                }
                misses = 0;
                report(None);
            } else {
                misses += 1;
                let why = format!("bus probe unanswered {misses} time(s) in a row");
                tracing::warn!(%why, state = ?self.client.connection_state(), "bus probe missed");
                report(Some(why));
                // Forced on the second miss, then on every third: a reconnect needs a moment,
                // and a probe sent meanwhile may go down with the old connection.
                if misses % 3 == 2 {
                    subscriber = None;
                    if let Err(e) = self.client.force_reconnect().await {
                        tracing::warn!(error = %e, "forced bus reconnect failed");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        for (_, task) in self.subscriptions.lock().drain() {
            task.abort();
        }
    }
}

impl Bus for NatsBus {
    fn publish(
        &self,
        messages: Vec<(Arc<str>, BusMessage)>,
    ) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            for (subject, message) in messages {
                let payload = message.payload.clone();
                self.client
                    .publish_with_headers(subject.to_string(), headers_of(&message), payload)
                    .await
                    .map_err(|_| BusError::Closed)?;
            }
            Ok(())
        }
        .boxed()
    }

    fn subscribe(
        &self,
        pattern: &str,
        sink: Arc<dyn BusSink>,
    ) -> BoxFuture<'_, Result<SubscriptionId, BusError>> {
        let pattern = pattern.to_string();
        async move {
            let subscriber = self
                .client
                .subscribe(pattern.clone())
                .await
                .map_err(|_| BusError::Closed)?;
            let id = SubscriptionId(self.next_id.fetch_add(1, Ordering::Relaxed));
            let task = tokio::spawn(async move {
                let mut batches = subscriber.ready_chunks(MAX_BATCH);
                while let Some(batch) = batches.next().await {
                    let messages: Vec<BusMessage> = batch
                        .into_iter()
                        .filter_map(|m| {
                            let decoded = message_of(&m);
                            if decoded.is_none() {
                                tracing::debug!(subject = %m.subject, "not a wsgate bus message");
                            }
                            decoded
                        })
                        .collect();
                    if !messages.is_empty() {
                        sink.deliver(messages).await;
                    }
                }
                tracing::debug!(%pattern, "bus subscription ended");
            });
            self.subscriptions.lock().insert(id, task);
            Ok(id)
        }
        .boxed()
    }

    fn last_captured<'a>(
        &'a self,
        subject: &'a str,
        stream: &'a str,
    ) -> BoxFuture<'a, Option<BusMessage>> {
        async move {
            // Without a capture, the hubs that delivered the stream know.
            if self.capture.get().is_some() {
                return self.last_in_capture(subject, stream).await;
            }
            self.last_seen_by_hubs(stream).await
        }
        .boxed()
    }

    fn unsubscribe(&self, id: SubscriptionId) -> BoxFuture<'_, Result<(), BusError>> {
        // Dropping the subscriber (with its task) unsubscribes it on the server.
        if let Some(task) = self.subscriptions.lock().remove(&id) {
            task.abort();
        }
        async { Ok(()) }.boxed()
    }
}

/// The headers that carry `message`'s fields besides its payload.
fn headers_of(message: &BusMessage) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::STREAM, &*message.stream);
    headers.insert(header::SEQ, message.seq.to_string().as_str());
    headers.insert(header::EVENT_US, message.event_time_us.to_string().as_str());
    headers.insert(
        header::PUBLISHED_US,
        message.published_us.to_string().as_str(),
    );
    if let Some(user) = &message.user_id {
        headers.insert(header::USER, &**user);
    }
    if let Some(origin) = &message.origin {
        headers.insert(header::ORIGIN, origin_text(origin).as_str());
    }
    headers
}

/// `origin` as `major.minor.output feed`.
pub(super) fn origin_text(origin: &Origin) -> String {
    let Order {
        major,
        minor,
        output,
    } = origin.order;
    format!("{major}.{minor}.{output} {}", origin.feed)
}

/// The bus message a NATS message carries; `None` when its headers are not a bus message's.
fn message_of(message: &async_nats::Message) -> Option<BusMessage> {
    decode(message.headers.as_ref()?, &message.payload)
}

/// The bus message of `headers` and `payload`; `None` when the headers are not a bus message's.
pub(super) fn decode(headers: &HeaderMap, payload: &bytes::Bytes) -> Option<BusMessage> {
    let text = |name: &str| headers.get(name).map(|v| v.as_str());
    let time = |name: &str| text(name).and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
    Some(BusMessage {
        stream: Arc::from(text(header::STREAM)?),
        seq: text(header::SEQ)?.parse().ok()?,
        event_time_us: time(header::EVENT_US),
        published_us: time(header::PUBLISHED_US),
        payload: payload.clone(),
        user_id: text(header::USER).map(Arc::from),
        origin: text(header::ORIGIN).and_then(parse_origin),
    })
}

/// Parses `major.minor.output feed`.
pub(super) fn parse_origin(value: &str) -> Option<Origin> {
    let (order, feed) = value.split_once(' ')?;
    let mut parts = order.split('.');
    let mut next = || parts.next()?.parse::<u64>().ok();
    let (major, minor, output) = (next()?, next()?, next()?);
    Some(Origin {
        feed: Arc::from(feed),
        order: Order {
            major,
            minor,
            output: u32::try_from(output).ok()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Partition;
    use bytes::Bytes;

    #[test]
    fn headers_round_trip_every_field() {
        let message = BusMessage {
            stream: Arc::from("btcusdt@trade"),
            seq: 42,
            event_time_us: 1_767_000_000_123_456,
            published_us: 1_767_000_000_124_000,
            payload: Bytes::from_static(b"{\"e\":\"trade\"}"),
            user_id: Some(Arc::from("u1")),
            origin: Some(Origin {
                feed: Origin::feed(
                    "kafka",
                    &Partition {
                        channel: Some(Arc::from("trades")),
                        number: 3,
                    },
                    "{symbol}@trade",
                ),
                order: Order {
                    major: 1234,
                    minor: 0,
                    output: 1,
                },
            }),
        };
        let nats = async_nats::Message {
            subject: "md.btcusdt.trade".into(),
            reply: None,
            payload: message.payload.clone(),
            headers: Some(headers_of(&message)),
            status: None,
            description: None,
            length: 0,
        };
        let back = message_of(&nats).unwrap();
        assert_eq!(&*back.stream, "btcusdt@trade");
        assert_eq!(back.seq, 42);
        assert_eq!(back.event_time_us, message.event_time_us);
        assert_eq!(back.published_us, message.published_us);
        assert_eq!(back.payload, message.payload);
        assert_eq!(back.user_id.as_deref(), Some("u1"));
        assert_eq!(back.origin, message.origin);
    }

    #[test]
    fn a_message_without_bus_headers_is_not_a_bus_message() {
        let nats = async_nats::Message {
            subject: "md.btcusdt.trade".into(),
            reply: None,
            payload: Bytes::from_static(b"x"),
            headers: None,
            status: None,
            description: None,
            length: 0,
        };
        assert!(message_of(&nats).is_none());
        assert!(parse_origin("1.2 feed").is_none());
        assert!(parse_origin("1.2.x feed").is_none());
    }
}
