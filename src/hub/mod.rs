//! The hub: which connection watches which stream, and fan-out of each message to them.
//!
//! A message arriving from the bus becomes one [`Delivery`], shared by reference count with every
//! subscriber's [`Outbox`]. Each delivery lazily holds its encoded WebSocket frames, one per
//! [`FrameVariant`] the node's dialects registered, so a message is encoded at most once per
//! variant no matter how many connections receive it.

mod archive;
pub mod flow;
mod frames;
mod lanes;
pub mod outbox;
mod private;
mod ring;
mod topic;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::Mutex;
use prometheus::Histogram;

use crate::bus::{BusMessage, BusSink};
use crate::metrics::Metrics;

pub use archive::{Archive, Captured, REPLAY_BUFFER};
pub use flow::{Flow, Overflow};
pub use frames::{Encoder, FrameVariant, FrameVariants};
use lanes::Lanes;
pub use outbox::{ConnId, Outbox, Pushed};
pub use private::{UserSubscription, Users, Wrap};
pub use ring::{Ring, RingLimits, RingRead};
pub use topic::{FanOut, InterestWatcher, Topic, TopicId};
pub use wire::{Flushed, Wire};

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
    /// One cached frame per registered [`FrameVariant`].
    frames: Box<[OnceLock<Bytes>]>,
    /// Where its delivery latency is observed (its stream's kind and datasource); `None` for
    /// frames that are not stream messages (replies, notices).
    latency: Option<Histogram>,
}

impl Delivery {
    /// A delivery without encoded frames yet, with room for `variants` of them (the length of
    /// the node's [`FrameVariants`]).
    pub fn new(
        stream: Arc<str>,
        seq: u64,
        event_time_us: i64,
        published_us: i64,
        payload: Bytes,
        variants: usize,
    ) -> Self {
        Delivery {
            stream,
            seq,
            event_time_us,
            published_us,
            payload,
            frames: (0..variants).map(|_| OnceLock::new()).collect(),
            latency: None,
        }
    }

    /// The same delivery, its latency observed in `latency` when it is written.
    pub fn with_latency(mut self, latency: Option<Histogram>) -> Self {
        self.latency = latency;
        self
    }

    /// Where its delivery latency is observed, if it is a stream message.
    pub fn latency(&self) -> Option<&Histogram> {
        self.latency.as_ref()
    }

    /// Observes the time from its publish to `now_us` (a socket write carrying it), if it is a
    /// stream message.
    pub fn observe_latency(&self, now_us: i64) {
        if let Some(latency) = &self.latency {
            latency.observe((now_us - self.published_us).max(0) as f64 / 1e6);
        }
    }

    /// A delivery of a bus message, with room for `variants` frames.
    pub fn of(m: BusMessage, variants: usize) -> Self {
        Delivery::new(
            m.stream,
            m.seq,
            m.event_time_us,
            m.published_us,
            m.payload,
            variants,
        )
    }

    /// A copy of this delivery already framed as `frame` in each of its `variants` slots: how a
    /// frame built for one receiver (a private event, a reply) travels through an outbox.
    pub fn prebuilt(&self, frame: Bytes, variants: usize) -> Self {
        Delivery {
            stream: Arc::clone(&self.stream),
            seq: self.seq,
            event_time_us: self.event_time_us,
            published_us: self.published_us,
            payload: self.payload.clone(),
            frames: (0..variants)
                .map(|_| OnceLock::from(frame.clone()))
                .collect(),
            latency: self.latency.clone(),
        }
    }

    /// A delivery that is only `frame` (a reply, a notice) in each of its `variants` slots,
    /// handed over at `published_us`.
    pub fn framed(frame: Bytes, published_us: i64, variants: usize) -> Self {
        static NO_STREAM: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));
        Delivery {
            stream: Arc::clone(&NO_STREAM),
            seq: 0,
            event_time_us: published_us,
            published_us,
            payload: frame.clone(),
            frames: (0..variants)
                .map(|_| OnceLock::from(frame.clone()))
                .collect(),
            latency: None,
        }
    }

    /// The number of frame variants this delivery has room for.
    pub fn variant_slots(&self) -> usize {
        self.frames.len()
    }

    /// The frame cached in `slot`, if one was encoded.
    pub fn cached(&self, slot: usize) -> Option<&Bytes> {
        self.frames.get(slot)?.get()
    }

    /// The frame in `variant`, encoded the first time any connection asks for it.
    ///
    /// Panics if `variant` was registered with another node's [`FrameVariants`] (a slot this
    /// delivery does not have).
    pub fn frame(&self, variant: FrameVariant) -> &Bytes {
        self.frames[variant.slot()].get_or_init(|| variant.encode(self))
    }
}

/// The node's subscription index and its fan-out lanes.
pub struct Hub {
    topics: ArcSwap<HashMap<Arc<str>, Arc<Topic>>>,
    update: Mutex<()>,
    metrics: Arc<Metrics>,
    lanes: Lanes,
    watcher: Arc<OnceLock<InterestWatcher>>,
    variants: FrameVariants,
    users: Users,
    /// Each topic's replay ring (same keys as `topics`, replaced together).
    rings: ArcSwap<HashMap<Arc<str>, Arc<Ring>>>,
    ring_limits: RingLimits,
    archive: OnceLock<Arc<dyn Archive>>,
    /// Where private events' delivery latency is observed.
    user_latency: arc_swap::ArcSwapOption<Histogram>,
}

impl Hub {
    /// A hub with no streams and `lanes` fan-out tasks (one per runtime worker is right),
    /// caching every delivery in each of `variants`. Must be called inside a tokio runtime.
    pub fn new(metrics: Arc<Metrics>, lanes: usize, variants: FrameVariants) -> Self {
        Hub {
            topics: ArcSwap::from_pointee(HashMap::new()),
            update: Mutex::new(()),
            lanes: Lanes::start(lanes, Arc::clone(&metrics)),
            watcher: Arc::new(OnceLock::new()),
            users: Users::new(metrics.subscriptions.with_label_values(&["<private>"])),
            metrics,
            variants,
            rings: ArcSwap::from_pointee(HashMap::new()),
            ring_limits: RingLimits::OFF,
            archive: OnceLock::new(),
            user_latency: Default::default(),
        }
    }

    /// The same hub, keeping the last messages of every stream within `limits` for clients
    /// that resume ([`ring`](Self::ring)); before any stream is set.
    pub fn with_replay_ring(mut self, limits: RingLimits) -> Self {
        self.ring_limits = limits;
        self
    }

    /// The replay ring of `stream`, if the node keeps rings and declares the stream.
    pub fn ring(&self, stream: &str) -> Option<Arc<Ring>> {
        self.rings.load().get(stream).cloned()
    }

    /// Reads replays from `archive` when a ring no longer holds what a client missed (set
    /// once; later calls are ignored).
    pub fn set_archive(&self, archive: Arc<dyn Archive>) {
        let _ = self.archive.set(archive);
    }

    /// The cluster's archive, if this node has one.
    pub fn archive(&self) -> Option<&Arc<dyn Archive>> {
        self.archive.get()
    }

    /// The frame variants every delivery is cached in.
    pub fn variants(&self) -> &FrameVariants {
        &self.variants
    }

    /// The users with private subscriptions on this node.
    pub fn users(&self) -> &Users {
        &self.users
    }

    /// Tells `watcher` the name of every stream whose local subscriber count leaves or reaches
    /// zero (set once; later calls are ignored).
    pub fn watch_interest(&self, watcher: InterestWatcher) {
        let _ = self.watcher.set(watcher);
    }

    /// Makes exactly `streams` subscribable, each with its [`Flow`] and the datasource that
    /// feeds it (a latency label). Existing topics keep their subscribers (and take the new
    /// flow). A topic no longer named is retired
    /// ([`Topic::retire`]): its subscribers are dropped, and each connection's outbox is told,
    /// so the connection drops the stream and its dialect tells the client. A stream named
    /// again later gets a new topic, which none of them holds. Returns the number of
    /// subscriptions dropped.
    pub fn set_streams<'a>(
        &self,
        streams: impl IntoIterator<Item = (&'a Arc<str>, Flow, &'a str)>,
    ) -> usize {
        let _serialized = self.update.lock();
        let current = self.topics.load_full();
        let next: HashMap<Arc<str>, Arc<Topic>> = streams
            .into_iter()
            .map(|(name, flow, datasource)| {
                let topic = current.get(name).cloned().unwrap_or_else(|| {
                    Arc::new(Topic::watched(
                        Arc::clone(name),
                        &self.metrics,
                        Arc::clone(&self.watcher),
                    ))
                });
                topic.set_flow(flow);
                topic.set_latency(self.latency_of(name, datasource));
                (Arc::clone(name), topic)
            })
            .collect();
        let retired: Vec<&Arc<Topic>> = current
            .iter()
            .filter(|(name, _)| !next.contains_key(*name))
            .map(|(_, topic)| topic)
            .collect();
        if !self.ring_limits.is_off() {
            let rings = self.rings.load();
            let limits = self.ring_limits;
            let kept = next.keys().map(|name| {
                let ring = rings.get(name).cloned();
                let ring = ring.unwrap_or_else(|| Arc::new(Ring::new(limits)));
                (Arc::clone(name), ring)
            });
            self.rings.store(Arc::new(kept.collect()));
        }
        // Stored first: the interest watcher, told as a retired topic loses its last
        // subscriber, must no longer find it, and no new subscriber may.
        self.topics.store(Arc::new(next));
        retired.into_iter().map(|topic| topic.retire()).sum()
    }

    /// Private events are fed by `datasource` (their delivery latency label).
    pub fn set_user_datasource(&self, datasource: &str) {
        let latency = self.latency_of("userData", datasource);
        self.user_latency.store(Some(Arc::new(latency)));
    }

    fn latency_of(&self, stream: &str, datasource: &str) -> Histogram {
        let kind = crate::config::stream_kind(stream);
        self.metrics
            .delivery_latency
            .with_label_values(&[kind, datasource])
    }

    /// The topic serving `stream`, if the config declares it.
    pub fn topic(&self, stream: &str) -> Option<Arc<Topic>> {
        self.topics.load().get(stream).cloned()
    }

    /// Every subscribable stream's topic.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.load().values().cloned().collect()
    }

    /// Number of subscribable streams.
    pub fn stream_count(&self) -> usize {
        self.topics.load().len()
    }

    /// Hands a batch to the fan-out lanes, waiting while they are full. Every subscriber gets
    /// the messages of its streams in order, and is woken once for the whole batch, so a client
    /// taking several of the batch's streams receives them in one write. A message whose
    /// upstream origin was already delivered on its stream (a redelivery) is dropped.
    pub async fn publish_batch(&self, messages: Vec<BusMessage>) {
        let mut batch = Vec::with_capacity(messages.len());
        let rings = self.rings.load_full();
        for message in messages {
            self.metrics.messages_in.inc();
            if let Some(user) = &message.user_id {
                // A private event goes to its user's connections only, never to a topic's.
                let user = Arc::clone(user);
                let latency = self.user_latency.load().as_deref().cloned();
                let delivery = Delivery::of(message, self.variants.len()).with_latency(latency);
                let counts = self.users.deliver(&user, &delivery, self.variants.len());
                let dropped = counts.overflowed + counts.refused;
                if dropped > 0 {
                    self.metrics
                        .messages_dropped
                        .with_label_values(&["slow_consumer"])
                        .inc_by(dropped as u64);
                }
                continue;
            }
            let Some(topic) = self.topic(&message.stream) else {
                self.metrics
                    .messages_dropped
                    .with_label_values(&["unknown_stream"])
                    .inc();
                continue;
            };
            if let Some(origin) = &message.origin {
                if !topic.admit(origin) {
                    self.metrics
                        .messages_dropped
                        .with_label_values(&["duplicate"])
                        .inc();
                    continue;
                }
            }
            // Into the ring first, then checked for subscribers: a connection that subscribes
            // and then reads the ring finds every message in one or the other.
            let ring = rings.get(&message.stream);
            if ring.is_some() || topic.subscribers() > 0 {
                let delivery =
                    Delivery::of(message, self.variants.len()).with_latency(topic.latency());
                let delivery = Arc::new(delivery);
                if let Some(ring) = ring {
                    ring.push(&delivery);
                }
                if topic.subscribers() > 0 {
                    batch.push((topic, delivery));
                }
            }
        }
        if !batch.is_empty() {
            self.lanes.send(Arc::from(batch)).await;
        }
    }
}

impl BusSink for Hub {
    fn deliver(&self, messages: Vec<BusMessage>) -> BoxFuture<'_, ()> {
        self.publish_batch(messages).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::time::Duration;

    fn message(stream: &str, seq: u64) -> BusMessage {
        BusMessage::for_tests(stream, seq, Bytes::from_static(b"{\"x\":1}"))
    }

    /// The sequence numbers delivered to `outbox` once `count` have arrived (lanes may hand
    /// them over in several wake-ups), or whatever came within two seconds.
    async fn received(outbox: &Outbox, count: usize) -> Vec<u64> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut got = VecDeque::new();
        while got.len() < count {
            if tokio::time::timeout_at(deadline, outbox.ready())
                .await
                .is_err()
            {
                break;
            }
            outbox.take_all(&mut got);
        }
        got.iter().map(|d| d.seq).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publish_reaches_subscribers_of_that_stream_only() {
        let hub = Hub::new(Arc::new(Metrics::new()), 2, FrameVariants::new());
        let names: Vec<Arc<str>> = vec![Arc::from("a@trade"), Arc::from("b@trade")];
        hub.set_streams(crate::hub::flow::unlimited(&names));
        let outboxes: Vec<_> = (0..4).map(|id| Outbox::new(id, 1 << 20)).collect();
        for outbox in &outboxes {
            hub.topic("a@trade").unwrap().subscribe(outbox);
        }
        hub.publish_batch(vec![
            message("a@trade", 1),
            message("b@trade", 1),
            message("nope", 1),
            message("a@trade", 2),
        ])
        .await;
        for outbox in &outboxes {
            assert_eq!(received(outbox, 2).await, [1, 2], "outbox {}", outbox.id());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redelivered_origin_is_not_delivered_again() {
        let hub = Hub::new(Arc::new(Metrics::new()), 2, FrameVariants::new());
        hub.set_streams(crate::hub::flow::unlimited(&[Arc::from("a@trade")]));
        let outbox = Outbox::new(1, 1 << 20);
        hub.topic("a@trade").unwrap().subscribe(&outbox);
        let partition = crate::position::Partition {
            channel: Some(Arc::from("trades")),
            number: 0,
        };
        let feed = crate::bus::Origin::feed("src", &partition, "{symbol}@trade");
        let from = |seq: u64, offset: u64| BusMessage {
            origin: Some(crate::bus::Origin {
                feed: Arc::clone(&feed),
                order: crate::position::Order {
                    major: offset,
                    minor: 0,
                    output: 0,
                },
            }),
            ..message("a@trade", seq)
        };
        hub.publish_batch(vec![from(1, 100), from(2, 101)]).await;
        assert_eq!(received(&outbox, 2).await, [1, 2]);
        // The source restarted from offset 100: its first two outputs are dropped.
        hub.publish_batch(vec![from(3, 100), from(4, 101), from(5, 102)])
            .await;
        assert_eq!(received(&outbox, 1).await, [5]);
        assert_eq!(
            hub.metrics
                .messages_dropped
                .with_label_values(&["duplicate"])
                .get(),
            2
        );
    }

    #[tokio::test]
    async fn set_streams_keeps_existing_subscribers() {
        let hub = Hub::new(Arc::new(Metrics::new()), 1, FrameVariants::new());
        hub.set_streams(crate::hub::flow::unlimited(&[Arc::from("a@trade")]));
        let outbox = Outbox::new(1, 1 << 20);
        hub.topic("a@trade").unwrap().subscribe(&outbox);
        hub.set_streams(crate::hub::flow::unlimited(&[
            Arc::from("a@trade"),
            Arc::from("c@trade"),
        ]));
        assert_eq!(hub.topic("a@trade").unwrap().subscribers(), 1);
        assert!(hub.topic("c@trade").is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn set_streams_retires_a_removed_stream_and_tells_its_subscribers_only() {
        let hub = Hub::new(Arc::new(Metrics::new()), 2, FrameVariants::new());
        let reported = Arc::new(Mutex::new(Vec::<Arc<str>>::new()));
        let seen = Arc::clone(&reported);
        hub.watch_interest(Arc::new(move |name: &Arc<str>| {
            seen.lock().push(Arc::clone(name))
        }));
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a@trade"), Arc::from("b@trade"));
        hub.set_streams(crate::hub::flow::unlimited([&a, &b]));
        let both = Outbox::new(1, 1 << 20);
        let only_b = Outbox::new(2, 1 << 20);
        let old_a = hub.topic("a@trade").unwrap();
        old_a.subscribe(&both);
        hub.topic("b@trade").unwrap().subscribe(&both);
        hub.topic("b@trade").unwrap().subscribe(&only_b);
        reported.lock().clear();

        assert_eq!(hub.set_streams(crate::hub::flow::unlimited([&b])), 1);
        assert!(hub.topic("a@trade").is_none());
        assert!(old_a.is_retired());
        assert_eq!(old_a.subscribers(), 0);
        assert_eq!(
            hub.metrics
                .subscriptions
                .with_label_values(&["a@trade"])
                .get(),
            0
        );
        assert_eq!(
            *reported.lock(),
            [Arc::clone(&a)],
            "interest in a@trade ended"
        );
        assert_eq!(both.take_removed(), [old_a.id()]);
        assert!(only_b.take_removed().is_empty());

        // A subscribe racing the removal is told too, and is not added.
        let late = Outbox::new(3, 1 << 20);
        assert!(!old_a.subscribe(&late));
        assert_eq!(late.take_removed(), [old_a.id()]);
        assert_eq!(old_a.subscribers(), 0);

        // Declared again: a new topic, which nobody holds, and b@trade still flows.
        hub.set_streams(crate::hub::flow::unlimited([&a, &b]));
        let new_a = hub.topic("a@trade").unwrap();
        assert_ne!(new_a.id(), old_a.id());
        assert_eq!(new_a.subscribers(), 0);
        hub.publish_batch(vec![message("a@trade", 1), message("b@trade", 7)])
            .await;
        assert_eq!(received(&both, 1).await, [7]);
        assert_eq!(received(&only_b, 1).await, [7]);
    }

    #[test]
    fn frames_are_encoded_once_per_format() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        fn counted(_: &Delivery) -> Bytes {
            CALLS.fetch_add(1, Ordering::Relaxed);
            Bytes::from_static(b"frame")
        }
        let mut variants = FrameVariants::new();
        variants.register("test/other", |_| Bytes::new());
        let format = variants.register("test/counted", counted);
        let d = Delivery::new(Arc::from("s"), 1, 0, 0, Bytes::from_static(b"{}"), 2);
        for _ in 0..3 {
            d.frame(format);
        }
        assert_eq!(CALLS.load(Ordering::Relaxed), 1);
    }
}
