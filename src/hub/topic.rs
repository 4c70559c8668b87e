//! One stream's subscriber set, sharded so that fan-out never holds one lock for everyone.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use indexmap::IndexMap;
use parking_lot::{Mutex, RwLock};
use prometheus::{Histogram, IntCounterVec, IntGauge};

use super::flow::Flow;
use super::outbox::{ConnId, Outbox, Pushed};
use super::wire::Flushed;
use super::Delivery;
use crate::bus::Origin;
use crate::metrics::Metrics;
use crate::position::Watermarks;

/// Number of subscriber shards per topic.
const SHARDS: usize = 16;

/// Counts from one fan-out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    /// Subscribers the message was queued for.
    pub queued: usize,
    /// Subscribers whose queue overflowed with this message.
    pub overflowed: usize,
    /// Subscribers that refused it (already overflowed or closing).
    pub refused: usize,
    /// Subscribers that merged it into, or put it in place of, an earlier message they had
    /// not taken yet (coalesced).
    pub coalesced: usize,
    /// Subscribers whose stream policy dropped it.
    pub dropped: usize,
    /// Subscribers over their rate limit that hold it back for later.
    pub held: usize,
}

impl std::ops::AddAssign for FanOut {
    fn add_assign(&mut self, other: FanOut) {
        self.queued += other.queued;
        self.overflowed += other.overflowed;
        self.refused += other.refused;
        self.coalesced += other.coalesced;
        self.dropped += other.dropped;
        self.held += other.held;
    }
}

impl FanOut {
    /// Counts one subscriber's push.
    pub fn count(&mut self, pushed: Pushed) {
        match pushed {
            Pushed::Queued => self.queued += 1,
            Pushed::Held => self.held += 1,
            Pushed::Coalesced => self.coalesced += 1,
            Pushed::Dropped => self.dropped += 1,
            Pushed::Overflowed => self.overflowed += 1,
            Pushed::Refused => self.refused += 1,
        }
    }
}

/// A topic's share of `wsgate_slow_consumer_total`: its stream's series, by reason.
struct SlowCounters {
    counters: IntCounterVec,
    stream: Arc<str>,
}

impl SlowCounters {
    fn of(metrics: &Metrics, stream: &Arc<str>) -> Self {
        SlowCounters {
            counters: metrics.slow_consumer.clone(),
            stream: stream.clone(),
        }
    }

    /// Counts a fan-out's flow-control actions. A stream's series appear with its first
    /// action, so a config of thousands of streams does not export thousands of zeros.
    fn count(&self, counts: &FanOut) {
        for (reason, n) in [
            ("coalesced", counts.coalesced),
            ("dropped", counts.dropped),
            ("closed", counts.overflowed),
        ] {
            if n > 0 {
                self.counters
                    .with_label_values(&[reason, &self.stream])
                    .inc_by(n as u64);
            }
        }
    }
}

/// Tells a topic from every other the process made, a later topic of the same stream included.
pub type TopicId = u64;

static NEXT_TOPIC_ID: AtomicU64 = AtomicU64::new(1);

/// Told the name of a stream whose subscriber count left or reached zero.
pub type InterestWatcher = Arc<dyn Fn(&Arc<str>) + Send + Sync>;

/// What a topic remembers of the origins it delivered: the last order per feed, and the last
/// origin admitted.
#[derive(Default)]
struct Delivered {
    marks: Watermarks<Arc<str>>,
    last: Option<Origin>,
}

/// One shard of a topic's subscribers.
type Shard = RwLock<IndexMap<ConnId, Arc<Outbox>>>;

/// A client stream: its name, last sequence number, subscribers, and the upstream origin of
/// the last message delivered per feed.
///
/// A topic whose stream a config change removed is *retired*: its subscribers are dropped and
/// each one's outbox is told ([`Outbox::stream_removed`]); it never takes a subscriber again.
pub struct Topic {
    id: TopicId,
    name: Arc<str>,
    shards: Box<[Shard]>,
    subscribers: AtomicUsize,
    retired: AtomicBool,
    last_seq: AtomicU64,
    delivered: Mutex<Delivered>,
    flow: ArcSwap<Flow>,
    latency: arc_swap::ArcSwapOption<Histogram>,
    gauge: IntGauge,
    slow: SlowCounters,
    watcher: Arc<OnceLock<InterestWatcher>>,
}

impl Topic {
    /// A topic without subscribers or limits, counted in `metrics`.
    pub fn new(name: Arc<str>, metrics: &Metrics) -> Self {
        Topic::watched(name, metrics, Arc::new(OnceLock::new()))
    }

    /// Like [`new`](Self::new); `watcher`, once set, is told when the first subscriber
    /// arrives and when the last one leaves.
    pub fn watched(
        name: Arc<str>,
        metrics: &Metrics,
        watcher: Arc<OnceLock<InterestWatcher>>,
    ) -> Self {
        Topic {
            gauge: metrics.subscriptions.with_label_values(&[&name]),
            slow: SlowCounters::of(metrics, &name),
            flow: ArcSwap::from_pointee(Flow::UNLIMITED),
            latency: Default::default(),
            id: NEXT_TOPIC_ID.fetch_add(1, Ordering::Relaxed),
            name,
            shards: (0..SHARDS).map(|_| RwLock::new(IndexMap::new())).collect(),
            subscribers: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            last_seq: AtomicU64::new(0),
            delivered: Mutex::new(Delivered::default()),
            watcher,
        }
    }

    /// Makes `flow` the stream's flow control from its next message on.
    pub fn set_flow(&self, flow: Flow) {
        if **self.flow.load() != flow {
            self.flow.store(Arc::new(flow));
        }
    }

    /// Makes `latency` where the stream's delivery latency is observed.
    pub fn set_latency(&self, latency: Histogram) {
        self.latency.store(Some(Arc::new(latency)));
    }

    /// Where the stream's delivery latency is observed, once set.
    pub fn latency(&self) -> Option<Histogram> {
        self.latency.load().as_deref().cloned()
    }

    /// The stream's flow control.
    pub fn flow(&self) -> Flow {
        **self.flow.load()
    }

    /// This topic's identity.
    pub fn id(&self) -> TopicId {
        self.id
    }

    /// The stream name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Current number of subscribers.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Sequence number of the last message delivered (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    /// True when `origin` is past the last message delivered from its feed (and records it);
    /// false for a redelivery, which must be dropped. Only publishers take this lock, once per
    /// message, never a subscriber.
    pub fn admit(&self, origin: &Origin) -> bool {
        let mut delivered = self.delivered.lock();
        if !delivered.marks.admit(&origin.feed, origin.order) {
            return false;
        }
        match &mut delivered.last {
            // The feed rarely changes: no reference count touched per message.
            Some(last) if Arc::ptr_eq(&last.feed, &origin.feed) => last.order = origin.order,
            last => *last = Some(origin.clone()),
        }
        true
    }

    /// The origin of the last message admitted, if it had one: with [`last_seq`](Self::last_seq),
    /// where a new publisher of the stream continues (`crate::bus::NatsBus::last_seen_by_hubs`).
    pub fn last_origin(&self) -> Option<Origin> {
        self.delivered.lock().last.clone()
    }

    fn shard(&self, id: ConnId) -> &Shard {
        &self.shards[id as usize % SHARDS]
    }

    /// Adds a subscriber; false if it was already subscribed, or if the topic is retired (the
    /// outbox is then told the stream was removed, as its subscribers were).
    pub fn subscribe(&self, outbox: &Arc<Outbox>) -> bool {
        let mut shard = self.shard(outbox.id()).write();
        // Checked under the shard's lock, which `retire` takes after setting the flag: a
        // subscriber is either drained by `retire` or sees the flag here, never neither.
        if self.retired.load(Ordering::Acquire) {
            drop(shard);
            outbox.stream_removed(self.id);
            return false;
        }
        let added = shard.insert(outbox.id(), Arc::clone(outbox)).is_none();
        // Counted before the lock is released, so `retire` never takes away a subscriber not
        // counted yet.
        let first = added && self.subscribers.fetch_add(1, Ordering::Relaxed) == 0;
        drop(shard);
        if added {
            self.gauge.inc();
        }
        if first {
            self.interest_changed();
        }
        added
    }

    /// Removes a subscriber; false if it was not subscribed.
    pub fn unsubscribe(&self, id: ConnId) -> bool {
        let removed = self.shard(id).write().swap_remove(&id);
        if let Some(outbox) = &removed {
            outbox.forget_stream(self.id);
        }
        let removed = removed.is_some();
        if removed {
            if self.subscribers.fetch_sub(1, Ordering::Relaxed) == 1 {
                self.interest_changed();
            }
            self.gauge.dec();
        }
        removed
    }

    /// True once the topic was [`retire`](Self::retire)d.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Retires the topic (its stream is no longer declared): drops every subscriber and tells
    /// each one's outbox, which wakes its connection. Each shard is locked only to take its
    /// subscribers out, so fan-out lanes wait at most that long. Returns how many were dropped.
    pub fn retire(&self) -> usize {
        self.retired.store(true, Ordering::Release);
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let subscribers = std::mem::take(&mut *shard.write());
            dropped += subscribers.len();
            for outbox in subscribers.into_values() {
                outbox.stream_removed(self.id);
            }
        }
        if dropped > 0 {
            if self.subscribers.fetch_sub(dropped, Ordering::Relaxed) == dropped {
                self.interest_changed();
            }
            self.gauge.sub(dropped as i64);
        }
        dropped
    }

    fn interest_changed(&self) {
        if let Some(watcher) = self.watcher.get() {
            watcher(&self.name);
        }
    }

    /// The shards of fan-out lane `lane` of `lanes`.
    fn lane_shards(&self, lane: usize, lanes: usize) -> impl Iterator<Item = &Shard> {
        self.shards.iter().skip(lane).step_by(lanes.max(1))
    }

    /// Queues `delivery` for the subscribers of lane `lane` of `lanes`, without waking them (see
    /// [`wake`](Self::wake)). Each shard is read-locked in turn, so subscribes and unsubscribes
    /// elsewhere proceed, and other lanes are never blocked.
    pub fn fan_out(&self, delivery: &Arc<Delivery>, lane: usize, lanes: usize) -> FanOut {
        self.last_seq.fetch_max(delivery.seq, Ordering::Relaxed);
        let flow = self.flow.load();
        // Read once per message, and only for a limited stream.
        let now = flow.limit.map(|_| Instant::now());
        let mut counts = FanOut::default();
        for shard in self.lane_shards(lane, lanes) {
            let subscribers = shard.read();
            for outbox in subscribers.values() {
                counts.count(outbox.push_flow(delivery, &flow, self.id, now));
            }
        }
        self.slow.count(&counts);
        counts
    }

    /// Queues `deliveries` (this stream's messages of one lane turn, in order) for the
    /// subscribers of lane `lane` of `lanes`, and writes out, or wakes, each one in the same
    /// visit ([`Outbox::deliver`]): one lock and one write per subscriber for the
    /// whole turn.
    pub fn deliver(
        &self,
        deliveries: &[Arc<Delivery>],
        lane: usize,
        lanes: usize,
    ) -> (FanOut, Flushed) {
        let Some(last) = deliveries.last() else {
            return Default::default();
        };
        self.last_seq.fetch_max(last.seq, Ordering::Relaxed);
        let flow = self.flow.load();
        let now = flow.limit.map(|_| Instant::now());
        let mut counts = FanOut::default();
        let mut flushed = Flushed::default();
        for shard in self.lane_shards(lane, lanes) {
            for outbox in shard.read().values() {
                flushed += outbox.deliver(deliveries, &flow, self.id, now, &mut counts);
            }
        }
        self.slow.count(&counts);
        (counts, flushed)
    }

    /// Writes out, or wakes, the subscribers of lane `lane` of `lanes` that received something
    /// since (see [`Outbox::flush_or_wake`]); what the lane wrote itself.
    pub fn wake(&self, lane: usize, lanes: usize) -> Flushed {
        let mut flushed = Flushed::default();
        for shard in self.lane_shards(lane, lanes) {
            for outbox in shard.read().values() {
                flushed += outbox.flush_or_wake();
            }
        }
        flushed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::{Order, Partition};
    use bytes::Bytes;
    use std::collections::VecDeque;

    #[test]
    fn admit_drops_what_a_feed_already_delivered() {
        let topic = Topic::new(Arc::from("btcusdt@trade"), &Metrics::new());
        let partition = |number| Partition {
            channel: Some(Arc::from("trades")),
            number,
        };
        let feed = Origin::feed("kafka", &partition(0), "{symbol}@trade");
        let other = Origin::feed("kafka", &partition(1), "{symbol}@trade");
        let at = |feed: &Arc<str>, (major, minor, output)| Origin {
            feed: Arc::clone(feed),
            order: Order {
                major,
                minor,
                output,
            },
        };
        assert!(topic.admit(&at(&feed, (10, 0, 0))));
        assert!(
            topic.admit(&at(&feed, (10, 0, 1))),
            "a second fill of one event"
        );
        assert!(topic.admit(&at(&feed, (11, 0, 0))));
        assert!(!topic.admit(&at(&feed, (10, 0, 1))), "a redelivery");
        assert!(!topic.admit(&at(&feed, (11, 0, 0))), "the last one again");
        assert!(topic.admit(&at(&other, (3, 0, 0))), "feeds are independent");
        assert!(topic.admit(&at(&feed, (12, 0, 0))));
        assert_eq!(topic.last_origin(), Some(at(&feed, (12, 0, 0))));
        assert!(
            !topic.admit(&at(&other, (2, 0, 0))),
            "a redelivery on the other feed"
        );
        assert_eq!(
            topic.last_origin(),
            Some(at(&feed, (12, 0, 0))),
            "a dropped redelivery is not the last origin"
        );
    }

    #[test]
    fn fan_out_reaches_every_subscriber_once() {
        let topic = Topic::new(Arc::from("btcusdt@trade"), &Metrics::new());
        let outboxes: Vec<_> = (0..40).map(|id| Outbox::new(id, 1 << 20)).collect();
        for outbox in &outboxes {
            assert!(topic.subscribe(outbox));
        }
        assert!(!topic.subscribe(&outboxes[3]));
        assert!(topic.unsubscribe(7));
        assert!(!topic.unsubscribe(7));
        assert_eq!(topic.subscribers(), 39);
        let delivery = Arc::new(Delivery::new(
            Arc::from("btcusdt@trade"),
            9,
            0,
            0,
            Bytes::from_static(b"{}"),
            0,
        ));
        assert_eq!(
            topic.fan_out(&delivery, 0, 2).queued + topic.fan_out(&delivery, 1, 2).queued,
            39
        );
        assert_eq!(topic.last_seq(), 9);
        for outbox in &outboxes {
            let mut got = VecDeque::new();
            outbox.take_all(&mut got);
            assert_eq!(got.len(), usize::from(outbox.id() != 7));
        }
    }

    #[test]
    fn retire_drops_every_subscriber_once_and_refuses_new_ones() {
        let metrics = Metrics::new();
        let gauge = metrics.subscriptions.with_label_values(&["btcusdt@trade"]);
        let topic = Topic::new(Arc::from("btcusdt@trade"), &metrics);
        let outboxes: Vec<_> = (0..40).map(|id| Outbox::new(id, 1 << 20)).collect();
        for outbox in &outboxes {
            topic.subscribe(outbox);
        }
        topic.unsubscribe(5);
        assert_eq!(topic.retire(), 39);
        assert_eq!((topic.subscribers(), gauge.get()), (0, 0));
        assert!(!topic.unsubscribe(6), "already dropped");
        for outbox in &outboxes {
            let told = outbox.take_removed();
            assert_eq!(
                told.len(),
                usize::from(outbox.id() != 5),
                "outbox {}",
                outbox.id()
            );
        }
        assert!(!topic.subscribe(&outboxes[5]));
        assert_eq!(outboxes[5].take_removed().len(), 1);
        assert_eq!((topic.subscribers(), gauge.get()), (0, 0));
        let delivery = Arc::new(Delivery::new(
            Arc::from("btcusdt@trade"),
            1,
            0,
            0,
            Bytes::from_static(b"{}"),
            0,
        ));
        assert_eq!(topic.fan_out(&delivery, 0, 1).queued, 0);
    }
}
