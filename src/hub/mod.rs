//! The hub: which connection watches which stream, and fan-out of each message to them.
//!
//! A message arriving from the bus becomes one [`Delivery`], shared by reference count with every
//! subscriber's [`Outbox`]. Each delivery lazily holds its encoded WebSocket frames (one per
//! client format), so a message is encoded at most once per format no matter how many
//! connections receive it.

pub mod outbox;
mod topic;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::bus::{BusMessage, BusSink};
use crate::metrics::Metrics;

pub use outbox::{ConnId, Outbox, Pushed};
pub use topic::{FanOut, Topic};

/// How many encoded forms a delivery can cache (the client protocol decides what each means).
pub const FRAME_FORMATS: usize = 4;

/// One message on its way to every subscriber of its stream.
pub struct Delivery {
    /// Client stream name.
    pub stream: Arc<str>,
    /// Position in the stream.
    pub seq: u64,
    /// Upstream event time, µs since the epoch.
    pub event_time_us: i64,
    /// When it was published to the bus, µs since the epoch.
    pub published_us: i64,
    /// The payload as the mapper produced it.
    pub payload: Bytes,
    frames: [OnceLock<Bytes>; FRAME_FORMATS],
}

impl Delivery {
    /// A delivery without encoded frames yet.
    pub fn new(
        stream: Arc<str>,
        seq: u64,
        event_time_us: i64,
        published_us: i64,
        payload: Bytes,
    ) -> Self {
        Delivery {
            stream,
            seq,
            event_time_us,
            published_us,
            payload,
            frames: Default::default(),
        }
    }

    /// The encoded frame in `format`, built by `encode` the first time any connection asks.
    pub fn frame(&self, format: usize, encode: impl FnOnce(&Delivery) -> Bytes) -> &Bytes {
        self.frames[format].get_or_init(|| encode(self))
    }
}

impl From<BusMessage> for Delivery {
    fn from(m: BusMessage) -> Self {
        Delivery::new(m.stream, m.seq, m.event_time_us, m.published_us, m.payload)
    }
}

/// The node's subscription index.
pub struct Hub {
    topics: ArcSwap<HashMap<Arc<str>, Arc<Topic>>>,
    update: Mutex<()>,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// A hub with no streams.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Hub {
            topics: ArcSwap::from_pointee(HashMap::new()),
            update: Mutex::new(()),
            metrics,
        }
    }

    /// Makes exactly `names` subscribable. Existing topics keep their subscribers; a removed
    /// topic stops receiving, and its subscribers keep it until they unsubscribe.
    pub fn set_streams<'a>(&self, names: impl IntoIterator<Item = &'a Arc<str>>) {
        let _serialized = self.update.lock();
        let current = self.topics.load();
        let next: HashMap<Arc<str>, Arc<Topic>> = names
            .into_iter()
            .map(|name| {
                let topic = current.get(name).cloned().unwrap_or_else(|| {
                    let gauge = self.metrics.subscriptions.with_label_values(&[&**name]);
                    Arc::new(Topic::new(Arc::clone(name), gauge))
                });
                (Arc::clone(name), topic)
            })
            .collect();
        self.topics.store(Arc::new(next));
    }

    /// The topic serving `stream`, if the config declares it.
    pub fn topic(&self, stream: &str) -> Option<Arc<Topic>> {
        self.topics.load().get(stream).cloned()
    }

    /// Number of subscribable streams.
    pub fn stream_count(&self) -> usize {
        self.topics.load().len()
    }

    /// Fans `message` out to its stream's subscribers and wakes them.
    pub fn publish(&self, message: BusMessage) -> FanOut {
        self.publish_batch(std::iter::once(message))
    }

    /// Fans out a batch, then wakes every subscriber that received something, once: a client
    /// taking several of the batch's streams gets them all in one write.
    pub fn publish_batch(&self, messages: impl IntoIterator<Item = BusMessage>) -> FanOut {
        let mut total = FanOut::default();
        let mut touched: Vec<Arc<Topic>> = Vec::new();
        for message in messages {
            self.metrics.messages_in.inc();
            let Some(topic) = self.topic(&message.stream) else {
                self.metrics
                    .messages_dropped
                    .with_label_values(&["unknown_stream"])
                    .inc();
                continue;
            };
            if topic.subscribers() == 0 {
                continue;
            }
            let counts = topic.fan_out(&Arc::new(Delivery::from(message)));
            total.queued += counts.queued;
            total.overflowed += counts.overflowed;
            total.refused += counts.refused;
            if !touched.iter().any(|t| Arc::ptr_eq(t, &topic)) {
                touched.push(topic);
            }
        }
        for topic in &touched {
            topic.wake();
        }
        let dropped = total.overflowed + total.refused;
        if dropped > 0 {
            self.metrics
                .messages_dropped
                .with_label_values(&["slow_consumer"])
                .inc_by(dropped as u64);
        }
        total
    }
}

impl BusSink for Hub {
    fn deliver(&self, message: BusMessage) {
        self.publish(message);
    }

    fn deliver_batch(&self, messages: Vec<BusMessage>) {
        self.publish_batch(messages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(stream: &str, seq: u64) -> BusMessage {
        BusMessage {
            stream: Arc::from(stream),
            seq,
            event_time_us: 0,
            published_us: 0,
            payload: Bytes::from_static(b"{\"x\":1}"),
            user_id: None,
        }
    }

    #[test]
    fn publish_reaches_subscribers_of_that_stream_only() {
        let hub = Hub::new(Arc::new(Metrics::new()));
        let names: Vec<Arc<str>> = vec![Arc::from("a@trade"), Arc::from("b@trade")];
        hub.set_streams(&names);
        let outbox = Outbox::new(1, 1 << 20);
        hub.topic("a@trade").unwrap().subscribe(&outbox);
        assert_eq!(hub.publish(message("a@trade", 1)).queued, 1);
        assert_eq!(hub.publish(message("b@trade", 1)).queued, 0);
        assert_eq!(hub.publish(message("nope", 1)).queued, 0);
        let mut got = std::collections::VecDeque::new();
        outbox.take_all(&mut got);
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn set_streams_keeps_existing_subscribers() {
        let hub = Hub::new(Arc::new(Metrics::new()));
        hub.set_streams(&[Arc::from("a@trade")]);
        let outbox = Outbox::new(1, 1 << 20);
        hub.topic("a@trade").unwrap().subscribe(&outbox);
        hub.set_streams(&[Arc::from("a@trade"), Arc::from("c@trade")]);
        assert_eq!(hub.topic("a@trade").unwrap().subscribers(), 1);
        assert!(hub.topic("c@trade").is_some());
    }

    #[test]
    fn frames_are_encoded_once_per_format() {
        let d = Delivery::new(Arc::from("s"), 1, 0, 0, Bytes::from_static(b"{}"));
        let mut calls = 0;
        for _ in 0..3 {
            d.frame(1, |_| {
                calls += 1;
                Bytes::from_static(b"frame")
            });
        }
        assert_eq!(calls, 1);
    }
}
