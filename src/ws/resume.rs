//! Resuming streams on one connection: what a reconnecting client missed, replayed in order
//! and stitched to the live stream exactly once.
//!
//! A resume starts once the connection is subscribed to the stream's topic, so everything
//! published from then on reaches it live. Then:
//!
//! 1. the node's ring ([`crate::hub::Ring`]) is read: when it holds everything past the
//!    client's position, that is the replay, and the live messages follow without a gap;
//! 2. otherwise, in a cluster, the archive (the JetStream capture) is read from the client's
//!    position while the stream's live messages are held (bounded); the replay ends when it
//!    reaches the first held message (or the archive has nothing more and holds for a moment),
//!    and the held messages follow;
//! 3. whatever cannot be replayed is announced: a resync notice (the dialect's words, e.g.
//!    `{"stream":..,"resync":{"from":124,"next":1000}}`) goes out right before the first
//!    message after the hole, so the client never sees a silent gap.
//!
//! Every message of a resuming stream passes through one rule ([`Resuming::pass`]): at or
//! below the client's position it is a duplicate and dropped, the next one is delivered, one
//! further on is delivered after a resync notice. The other streams of the connection flow
//! meanwhile.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::hub::{Captured, Delivery, Hub};
use crate::metrics::Metrics;
use crate::util::now_us;

/// Builds a dialect's resync notice for `stream`: events from `from` on were missed, and the
/// next one delivered is `next`.
pub type ResyncNotice = fn(stream: &str, from: u64, next: u64) -> Bytes;

/// Where a connection's new streams resume from: the last sequence number the client received
/// per stream, and how its dialect announces a hole.
#[derive(Debug, Clone)]
pub struct ResumeFrom {
    /// Stream and last sequence number received, per stream to resume.
    pub positions: Vec<(String, u64)>,
    /// The dialect's resync notice.
    pub notice: ResyncNotice,
}

/// Payload bytes of live messages held per stream while its archive replay runs; beyond, the
/// replay ends and what it did not reach is announced.
const HOLD_BYTES: usize = 4 << 20;

/// `CaughtUp` ticks of an archive with nothing more, while live messages wait, before the
/// messages the archive did not have are announced as missed.
const IDLE_TICKS_HOLDING: u32 = 2;

/// `CaughtUp` ticks of an archive with nothing more and no live message, before the replay
/// ends (the stream is quiet; later messages arrive live).
const IDLE_TICKS_QUIET: u32 = 20;

/// The resumes in progress on one connection.
pub struct Resumes {
    streams: Vec<Resuming>,
    /// Frames for the writer, in order.
    ready: VecDeque<Arc<Delivery>>,
    notice: ResyncNotice,
    variants: usize,
    metrics: Arc<Metrics>,
}

/// Where a resuming stream's missed messages come from now.
enum Phase {
    /// The archive is read; live messages are held.
    Archive(mpsc::Receiver<Captured>),
    /// The replay is over; the first live message that passes ends the resume.
    Live,
}

/// One stream being resumed.
struct Resuming {
    stream: Arc<str>,
    /// The last sequence number the client has (received, or told it will not get).
    after: u64,
    phase: Phase,
    held: VecDeque<Arc<Delivery>>,
    held_bytes: usize,
    idle: u32,
    from_ring: u64,
    from_archive: u64,
    resynced: bool,
    /// The client's position is past anything the stream reached here (its numbering started
    /// again): the first message is announced with a resync.
    ahead: bool,
    done: bool,
}

impl Resumes {
    /// No resume yet; resync notices are built by `notice`, frames have `variants` slots.
    pub fn new(notice: ResyncNotice, variants: usize, metrics: Arc<Metrics>) -> Self {
        Resumes {
            streams: Vec::new(),
            ready: VecDeque::new(),
            notice,
            variants,
            metrics,
        }
    }

    /// Starts the resumes of `from` (its streams just subscribed on the connection) in `slot`,
    /// creating the connection's resumes on first use.
    pub fn start_all(
        slot: &mut Option<Box<Resumes>>,
        hub: &Hub,
        metrics: &Arc<Metrics>,
        from: ResumeFrom,
    ) {
        let resumes = slot.get_or_insert_with(|| {
            Box::new(Resumes::new(
                from.notice,
                hub.variants().len(),
                Arc::clone(metrics),
            ))
        });
        for (name, after) in from.positions {
            if let Some(topic) = hub.topic(&name) {
                resumes.start(hub, topic.name(), after);
            }
        }
    }

    /// True when no stream is being resumed and nothing waits for the writer.
    pub fn is_idle(&self) -> bool {
        self.streams.is_empty() && self.ready.is_empty()
    }

    /// Frames ready for the writer (replayed messages, notices, held messages), in order.
    pub fn ready(&mut self) -> &mut VecDeque<Arc<Delivery>> {
        &mut self.ready
    }

    /// True while some stream's archive is being read.
    pub fn reading(&self) -> bool {
        self.streams
            .iter()
            .any(|s| matches!(s.phase, Phase::Archive(_)))
    }

    /// Resumes `stream` (already subscribed on the connection) after sequence number `after`.
    pub fn start(&mut self, hub: &Hub, stream: &Arc<str>, after: u64) {
        self.forget(std::slice::from_ref(stream));
        let ring = hub.ring(stream).map(|ring| ring.since(after));
        let ring = ring.unwrap_or_default();
        let archive = hub.archive();
        let tip = ring
            .newest
            .unwrap_or(0)
            .max(hub.topic(stream).map_or(0, |t| t.last_seq()));
        let mut resuming = Resuming {
            stream: Arc::clone(stream),
            after,
            phase: Phase::Live,
            held: VecDeque::new(),
            held_bytes: 0,
            idle: 0,
            from_ring: 0,
            from_archive: 0,
            resynced: false,
            // Alone, the node saw every message its clients got: a position past them is
            // from an earlier numbering.
            ahead: archive.is_none() && after > tip,
            done: false,
        };
        if resuming.ahead {
            // Nothing to replay.
        } else if ring.covers(after) {
            for delivery in ring.messages {
                resuming.replay(delivery, &mut self.ready, self.notice, self.variants);
                resuming.from_ring += 1;
            }
        } else if let Some(receiver) = archive.and_then(|a| a.replay(stream, after)) {
            resuming.phase = Phase::Archive(receiver);
        } else {
            // What the ring holds is all there is: the rest is announced first.
            for delivery in ring.messages {
                resuming.replay(delivery, &mut self.ready, self.notice, self.variants);
                resuming.from_ring += 1;
            }
        }
        self.streams.push(resuming);
    }

    /// Ends the resumes of `names` (unsubscribed, or removed by a config change).
    pub fn forget(&mut self, names: &[Arc<str>]) {
        self.streams.retain(|s| !names.contains(&s.stream));
    }

    fn index(&self, stream: &Arc<str>) -> Option<usize> {
        self.streams
            .iter()
            .position(|s| Arc::ptr_eq(&s.stream, stream) || s.stream == *stream)
    }

    /// Takes the live messages of resuming streams out of `queue` (just filled from the
    /// outbox): held while their archive is read, else passed through the resume rule. The
    /// other messages stay where they are.
    pub fn take_live(&mut self, queue: &mut VecDeque<Arc<Delivery>>) {
        if !queue.iter().any(|d| self.index(&d.stream).is_some()) {
            return;
        }
        let taken = std::mem::take(queue);
        for delivery in taken {
            let Some(i) = self.index(&delivery.stream) else {
                queue.push_back(delivery);
                continue;
            };
            let (notice, variants) = (self.notice, self.variants);
            let resuming = &mut self.streams[i];
            match resuming.phase {
                Phase::Live => resuming.pass(delivery, queue, notice, variants),
                Phase::Archive(_) => {
                    resuming.held_bytes += delivery.payload.len();
                    resuming.held.push_back(delivery);
                    if resuming.held_bytes > HOLD_BYTES {
                        resuming.end_archive(queue, notice, variants);
                    }
                }
            }
        }
        self.finish();
    }

    /// Polls the archives being read; the index of the resume and what its archive handed over.
    pub fn poll_archive(&mut self, cx: &mut Context<'_>) -> Poll<(usize, Captured)> {
        for (i, resuming) in self.streams.iter_mut().enumerate() {
            if let Phase::Archive(receiver) = &mut resuming.phase {
                match receiver.poll_recv(cx) {
                    Poll::Ready(Some(item)) => return Poll::Ready((i, item)),
                    Poll::Ready(None) => return Poll::Ready((i, Captured::Unavailable)),
                    Poll::Pending => {}
                }
            }
        }
        Poll::Pending
    }

    /// Takes what resume `i`'s archive handed over (from [`poll_archive`](Self::poll_archive)).
    pub fn on_archive(&mut self, i: usize, item: Captured) {
        let (notice, variants) = (self.notice, self.variants);
        let Some(resuming) = self.streams.get_mut(i) else {
            return;
        };
        let out = &mut self.ready;
        match item {
            Captured::Message(message) => {
                resuming.idle = 0;
                if message.seq > resuming.after && message.stream == resuming.stream {
                    let delivery = Arc::new(Delivery::of(message, variants));
                    resuming.replay(delivery, out, notice, variants);
                    resuming.from_archive += 1;
                }
                if resuming
                    .held
                    .front()
                    .is_some_and(|d| d.seq <= resuming.after + 1)
                {
                    resuming.end_archive(out, notice, variants);
                }
            }
            Captured::CaughtUp => {
                resuming.idle += 1;
                let limit = if resuming.held.is_empty() {
                    IDLE_TICKS_QUIET
                } else {
                    IDLE_TICKS_HOLDING
                };
                let reached = resuming
                    .held
                    .front()
                    .is_some_and(|d| d.seq <= resuming.after + 1);
                if reached || resuming.idle >= limit {
                    resuming.end_archive(out, notice, variants);
                }
            }
            Captured::Unavailable => resuming.end_archive(out, notice, variants),
        }
        self.finish();
    }

    /// Counts and drops the resumes that reached live.
    fn finish(&mut self) {
        let metrics = &self.metrics;
        self.streams.retain(|s| {
            if !s.done {
                return true;
            }
            s.count(metrics);
            false
        });
    }
}

impl Resuming {
    /// Sends a replayed message (announcing a hole before it, if any).
    fn replay(
        &mut self,
        delivery: Arc<Delivery>,
        out: &mut VecDeque<Arc<Delivery>>,
        notice: ResyncNotice,
        variants: usize,
    ) {
        if delivery.seq <= self.after {
            return;
        }
        if delivery.seq > self.after + 1 {
            self.resync(delivery.seq, out, notice, variants);
        }
        self.after = delivery.seq;
        out.push_back(delivery);
    }

    /// The resume rule for a live message: a duplicate is dropped, the next one is sent, one
    /// further on is sent after a resync notice; the first one sent ends the resume.
    fn pass(
        &mut self,
        delivery: Arc<Delivery>,
        out: &mut VecDeque<Arc<Delivery>>,
        notice: ResyncNotice,
        variants: usize,
    ) {
        if self.done {
            out.push_back(delivery);
            return;
        }
        if self.ahead {
            self.ahead = false;
            self.resync(delivery.seq, out, notice, variants);
        } else if delivery.seq <= self.after {
            return;
        } else if delivery.seq > self.after + 1 {
            self.resync(delivery.seq, out, notice, variants);
        }
        self.after = delivery.seq;
        self.done = true;
        out.push_back(delivery);
    }

    fn resync(
        &mut self,
        next: u64,
        out: &mut VecDeque<Arc<Delivery>>,
        notice: ResyncNotice,
        variants: usize,
    ) {
        let frame = notice(&self.stream, self.after + 1, next);
        out.push_back(Arc::new(Delivery::framed(frame, now_us(), variants)));
        self.resynced = true;
    }

    /// Ends the archive replay (dropping the reader) and passes the held messages on.
    fn end_archive(
        &mut self,
        out: &mut VecDeque<Arc<Delivery>>,
        notice: ResyncNotice,
        variants: usize,
    ) {
        self.phase = Phase::Live;
        self.held_bytes = 0;
        for delivery in std::mem::take(&mut self.held) {
            self.pass(delivery, out, notice, variants);
        }
    }

    fn count(&self, metrics: &Metrics) {
        let replayed = &metrics.resume_replayed;
        if self.from_ring > 0 {
            replayed.with_label_values(&["ring"]).inc_by(self.from_ring);
        }
        if self.from_archive > 0 {
            replayed
                .with_label_values(&["jetstream"])
                .inc_by(self.from_archive);
        }
        let outcome = if self.resynced {
            "resync"
        } else if self.from_ring + self.from_archive > 0 {
            "replayed"
        } else {
            "live"
        };
        metrics.resumes.with_label_values(&[outcome]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::BusMessage;
    use crate::hub::{Archive, FrameVariants, RingLimits};
    use parking_lot::Mutex;

    fn notice(stream: &str, from: u64, next: u64) -> Bytes {
        Bytes::from(format!("resync {stream} {from} {next}"))
    }

    fn message(seq: u64) -> BusMessage {
        BusMessage::for_tests("a@trade", seq, Bytes::from_static(b"{}"))
    }

    fn live(seqs: impl IntoIterator<Item = u64>) -> VecDeque<Arc<Delivery>> {
        seqs.into_iter()
            .map(|seq| Arc::new(Delivery::of(message(seq), 0)))
            .collect()
    }

    /// What the client would see: sequence numbers, and notices as their text.
    fn seen(queue: &mut VecDeque<Arc<Delivery>>) -> Vec<String> {
        queue
            .drain(..)
            .map(|d| match d.seq {
                0 => String::from_utf8_lossy(&d.payload).into_owned(),
                seq => seq.to_string(),
            })
            .collect()
    }

    /// An archive whose replays the test feeds by hand.
    #[derive(Default)]
    struct HandFed(Mutex<Option<mpsc::Sender<Captured>>>);

    impl Archive for HandFed {
        fn replay(&self, _stream: &Arc<str>, _after: u64) -> Option<mpsc::Receiver<Captured>> {
            let (sender, receiver) = mpsc::channel(64);
            *self.0.lock() = Some(sender);
            Some(receiver)
        }
    }

    async fn hub_with(ring: RingLimits, published: impl IntoIterator<Item = u64>) -> Arc<Hub> {
        let hub =
            Hub::new(Arc::new(Metrics::new()), 1, FrameVariants::new()).with_replay_ring(ring);
        hub.set_streams(crate::hub::flow::unlimited([&Arc::from("a@trade")]));
        hub.publish_batch(published.into_iter().map(message).collect())
            .await;
        Arc::new(hub)
    }

    fn resumes(hub: &Hub, after: u64) -> (Resumes, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let mut resumes = Resumes::new(notice, 0, Arc::clone(&metrics));
        resumes.start(hub, &Arc::from("a@trade"), after);
        (resumes, metrics)
    }

    fn outcome(metrics: &Metrics, label: &str) -> u64 {
        metrics.resumes.with_label_values(&[label]).get()
    }

    #[tokio::test]
    async fn the_ring_replays_exactly_the_missed_messages_then_live_follows_once() {
        let hub = hub_with(RingLimits::default(), 1..=10).await;
        let (mut resumes, metrics) = resumes(&hub, 6);
        assert_eq!(seen(resumes.ready()), ["7", "8", "9", "10"]);
        assert!(!resumes.reading());
        // Live messages the replay already sent are dropped; the next one ends the resume.
        let mut queue = live([9, 10, 11, 12]);
        resumes.take_live(&mut queue);
        assert_eq!(seen(&mut queue), ["11", "12"]);
        assert!(resumes.is_idle());
        assert_eq!(outcome(&metrics, "replayed"), 1);
        assert_eq!(
            metrics.resume_replayed.with_label_values(&["ring"]).get(),
            4
        );
    }

    #[tokio::test]
    async fn a_client_that_missed_nothing_goes_live() {
        let hub = hub_with(RingLimits::default(), 1..=10).await;
        let (mut resumes, metrics) = resumes(&hub, 10);
        assert!(resumes.ready().is_empty());
        let mut queue = live([11]);
        resumes.take_live(&mut queue);
        assert_eq!(seen(&mut queue), ["11"]);
        assert_eq!(outcome(&metrics, "live"), 1);
    }

    #[tokio::test]
    async fn beyond_the_ring_without_an_archive_the_hole_is_announced_first() {
        let ring = RingLimits {
            messages: 6,
            bytes: 1 << 20,
        };
        let hub = hub_with(ring, 1..=10).await;
        let (mut resumes, metrics) = resumes(&hub, 2);
        assert_eq!(
            seen(resumes.ready()),
            ["resync a@trade 3 5", "5", "6", "7", "8", "9", "10"]
        );
        let mut queue = live([11]);
        resumes.take_live(&mut queue);
        assert_eq!(seen(&mut queue), ["11"]);
        assert_eq!(outcome(&metrics, "resync"), 1);
    }

    #[tokio::test]
    async fn with_nothing_kept_the_first_live_message_comes_after_a_resync() {
        let hub = hub_with(RingLimits::OFF, 1..=10).await;
        let (mut resumes, metrics) = resumes(&hub, 4);
        let mut queue = live([11, 12]);
        resumes.take_live(&mut queue);
        assert_eq!(seen(&mut queue), ["resync a@trade 5 11", "11", "12"]);
        assert_eq!(outcome(&metrics, "resync"), 1);
    }

    #[tokio::test]
    async fn a_position_past_the_stream_is_resynced_alone() {
        let hub = hub_with(RingLimits::default(), 1..=10).await;
        let (mut resumes, _) = resumes(&hub, 50);
        assert!(resumes.ready().is_empty());
        let mut queue = live([11]);
        resumes.take_live(&mut queue);
        assert_eq!(seen(&mut queue), ["resync a@trade 51 11", "11"]);
    }

    #[tokio::test]
    async fn the_archive_replay_is_stitched_to_the_held_live_messages() {
        let ring = RingLimits {
            messages: 2,
            bytes: 1 << 20,
        };
        let hub = hub_with(ring, 1..=9).await;
        let archive = Arc::new(HandFed::default());
        hub.set_archive(Arc::clone(&archive) as Arc<dyn Archive>);
        let (mut resumes, metrics) = resumes(&hub, 3);
        assert!(resumes.reading(), "the ring holds 8 and 9 only");
        // Live messages wait while the archive is read; other streams' messages flow.
        let mut queue = live([10, 11]);
        queue.push_back(Arc::new(Delivery::of(
            BusMessage {
                stream: Arc::from("b@trade"),
                ..message(77)
            },
            0,
        )));
        resumes.take_live(&mut queue);
        assert_eq!(seen(&mut queue), ["77"]);
        for seq in 4..=9 {
            resumes.on_archive(0, Captured::Message(message(seq)));
            if seq < 9 {
                assert!(resumes.reading());
            }
        }
        // The archive reached the held messages: they follow, and the archive is dropped.
        assert!(!resumes.reading());
        assert_eq!(
            seen(resumes.ready()),
            ["4", "5", "6", "7", "8", "9", "10", "11"]
        );
        assert!(resumes.is_idle());
        assert_eq!(outcome(&metrics, "replayed"), 1);
        assert_eq!(
            metrics
                .resume_replayed
                .with_label_values(&["jetstream"])
                .get(),
            6
        );
    }

    #[tokio::test]
    async fn what_the_archive_lacks_before_the_held_messages_is_announced() {
        let hub = hub_with(RingLimits::OFF, 1..=9).await;
        let archive = Arc::new(HandFed::default());
        hub.set_archive(Arc::clone(&archive) as Arc<dyn Archive>);
        let (mut resumes, metrics) = resumes(&hub, 3);
        let mut queue = live([10]);
        resumes.take_live(&mut queue);
        assert!(queue.is_empty());
        // The archive starts later than asked (retention), then has nothing up to 9.
        resumes.on_archive(0, Captured::Message(message(6)));
        resumes.on_archive(0, Captured::Message(message(7)));
        resumes.on_archive(0, Captured::CaughtUp);
        assert!(resumes.reading(), "one idle tick is not enough");
        resumes.on_archive(0, Captured::CaughtUp);
        assert!(!resumes.reading());
        assert_eq!(
            seen(resumes.ready()),
            ["resync a@trade 4 6", "6", "7", "resync a@trade 8 10", "10"]
        );
        assert_eq!(outcome(&metrics, "resync"), 1);
    }

    #[tokio::test]
    async fn an_unreadable_archive_leaves_the_resume_to_live_messages() {
        let hub = hub_with(RingLimits::OFF, 1..=9).await;
        hub.set_archive(Arc::new(HandFed::default()) as Arc<dyn Archive>);
        let (mut resumes, _) = resumes(&hub, 8);
        let mut queue = live([9, 10]);
        resumes.take_live(&mut queue);
        resumes.on_archive(0, Captured::Unavailable);
        assert_eq!(seen(resumes.ready()), ["9", "10"]);
        assert!(resumes.is_idle());
    }

    #[tokio::test]
    async fn unsubscribing_ends_the_resume() {
        let hub = hub_with(RingLimits::OFF, 1..=9).await;
        let (mut resumes, _) = resumes(&hub, 8);
        resumes.forget(&[Arc::from("a@trade")]);
        assert!(resumes.is_idle());
        let mut queue = live([5]);
        resumes.take_live(&mut queue);
        assert_eq!(seen(&mut queue), ["5"]);
    }
}
