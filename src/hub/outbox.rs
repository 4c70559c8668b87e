//! A connection's bounded outbound queue: the hub pushes shared messages, the connection's
//! writer takes them all at once.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use futures_util::task::AtomicWaker;
use governor::Quota;
use parking_lot::{Mutex, MutexGuard};

use super::flow::{self, Bucket, Flow, Overflow};
use super::topic::{FanOut, TopicId};
use super::wire::{self, Flushed, Outcome, Wire};
use super::Delivery;

/// Identifies a connection within one node.
pub type ConnId = u64;

/// What happened to a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for the writer.
    Queued,
    /// Over the stream's rate limit: held back until the next token (the first held message
    /// of the stream; later ones are coalesced into it).
    Held,
    /// Merged into, or put in place of, an earlier message of the stream not taken yet.
    Coalesced,
    /// Dropped by the stream's policy (`drop`).
    Dropped,
    /// The queue was full (or the rate exceeded on a stream that closes): the message was
    /// dropped and the connection marked as a slow consumer.
    Overflowed,
    /// The connection had already overflowed or closed; the message was dropped.
    Refused,
}

/// A connection's outbound queue, bounded in bytes.
///
/// Pushing takes only this connection's lock and never wakes anyone: the publisher calls
/// [`wake_if_due`](Self::wake_if_due) after its whole batch, so the writer wakes once per batch
/// (and only on an empty-to-non-empty transition), and then writes the batch in one go.
pub struct Outbox {
    id: ConnId,
    limit_bytes: usize,
    state: Mutex<State>,
    /// News the writer has not seen yet.
    signalled: AtomicBool,
    /// A wake-up the publisher still owes the writer.
    wake_due: AtomicBool,
    /// Topics in `State::removed` the connection has not taken yet.
    removals: AtomicBool,
    /// A rate-limited stream holds a message back (see [`release_at`](Self::release_at)).
    holding: AtomicBool,
    /// The connection lent its socket to the lanes (mirrors `State::lent`, read without the
    /// lock).
    lent: AtomicBool,
    /// The front of the queue is what is left of a frame a lane wrote only part of: it must
    /// go out before anything else ([`take_partial_front`](Self::take_partial_front)).
    partial_front: AtomicBool,
    waker: AtomicWaker,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Arc<Delivery>>,
    bytes: usize,
    overflowed: bool,
    closed: bool,
    /// Retired topics this connection was subscribed to. Boxed: one word in every
    /// connection's state, for what a config change rarely fills.
    #[allow(clippy::box_collection)]
    removed: Option<Box<Vec<TopicId>>>,
    /// The token bucket and held message of each rate-limited stream; boxed for the same
    /// reason, and empty on every connection whose streams are unlimited.
    #[allow(clippy::box_collection)]
    limited: Option<Box<Vec<Limited>>>,
    /// The connection's socket while it is lent to the lanes ([`Outbox::lend_wire`]).
    lent: Option<Wire>,
}

/// One rate-limited stream of a connection.
struct Limited {
    topic: TopicId,
    quota: Quota,
    bucket: Bucket,
    /// The message over the limit, waiting for a token (coalesced per the stream's policy).
    held: Option<Arc<Delivery>>,
    /// When the next token is due.
    due: Instant,
}

impl Outbox {
    /// An empty outbox that holds at most `limit_bytes` of payload.
    pub fn new(id: ConnId, limit_bytes: usize) -> Arc<Self> {
        Arc::new(Outbox {
            id,
            limit_bytes,
            state: Mutex::new(State::default()),
            signalled: AtomicBool::new(false),
            wake_due: AtomicBool::new(false),
            removals: AtomicBool::new(false),
            holding: AtomicBool::new(false),
            lent: AtomicBool::new(false),
            partial_front: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        })
    }

    /// The connection this outbox belongs to.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Queues `delivery` unless that would exceed the byte limit, which makes the connection a
    /// slow consumer. The writer is not woken until [`wake_if_due`](Self::wake_if_due).
    pub fn push(&self, delivery: &Arc<Delivery>) -> Pushed {
        self.push_flow(delivery, &Flow::UNLIMITED, 0, None)
    }

    /// Queues `delivery` of stream `topic` under the stream's `flow`: over its rate limit
    /// (`now` is given for a limited stream) or with the queue full, the stream's overflow
    /// policy decides (see [`Pushed`]). The writer is not woken until
    /// [`wake_if_due`](Self::wake_if_due).
    pub fn push_flow(
        &self,
        delivery: &Arc<Delivery>,
        flow: &Flow,
        topic: TopicId,
        now: Option<Instant>,
    ) -> Pushed {
        self.push_locked(&mut self.state.lock(), delivery, flow, topic, now)
    }

    /// [`push_flow`](Self::push_flow) of each of `deliveries` (one stream's, in order) under
    /// one lock, counted in `counts`, then what [`flush_or_wake`](Self::flush_or_wake) does,
    /// still under that lock: how a lane feeds a subscriber with one visit per turn.
    pub fn deliver(
        &self,
        deliveries: &[Arc<Delivery>],
        flow: &Flow,
        topic: TopicId,
        now: Option<Instant>,
        counts: &mut FanOut,
    ) -> Flushed {
        let mut state = self.state.lock();
        if let Some(wire) = state.lent {
            if flow.limit.is_none() && state.queue.is_empty() && !self.needs_attention(&state) {
                // Nothing waits: written straight from the turn's messages, without a queue
                // entry or a reference each; queued only if the socket does not take them all.
                let mut flushed = Flushed::default();
                let written = wire::write_slice(&wire, deliveries, &mut flushed);
                if written.outcome == Outcome::Drained {
                    counts.queued += deliveries.len();
                    return flushed;
                }
                let mut rest = &deliveries[written.done..];
                if let (Some(left), Some(partial)) = (written.rest, rest.first()) {
                    let left = Arc::new(partial.prebuilt(left, partial.variant_slots()));
                    counts.count(self.push_locked(&mut state, &left, flow, topic, now));
                    self.partial_front.store(true, Ordering::Release);
                    rest = &rest[1..];
                }
                counts.queued += written.done;
                for delivery in rest {
                    counts.count(self.push_locked(&mut state, delivery, flow, topic, now));
                }
                state.lent = None;
                self.lent.store(false, Ordering::Release);
                self.wake_due.store(false, Ordering::Release);
                drop(state);
                self.signalled.store(true, Ordering::Release);
                self.waker.wake();
                return flushed;
            }
        }
        for delivery in deliveries {
            counts.count(self.push_locked(&mut state, delivery, flow, topic, now));
        }
        if !self.wake_due.swap(false, Ordering::AcqRel) {
            return Flushed::default();
        }
        self.flush_locked(state)
    }

    fn push_locked(
        &self,
        state: &mut State,
        delivery: &Arc<Delivery>,
        flow: &Flow,
        topic: TopicId,
        now: Option<Instant>,
    ) -> Pushed {
        let size = delivery.payload.len();
        if state.overflowed || state.closed {
            return Pushed::Refused;
        }
        if let (Some(quota), Some(now)) = (flow.limit, now) {
            if let Some(pushed) = state.over_limit(topic, quota, delivery, flow.overflow, now) {
                match pushed {
                    Pushed::Held => {
                        // The writer must learn when to come back for it.
                        self.holding.store(true, Ordering::Release);
                        self.signal();
                    }
                    Pushed::Overflowed => self.signal(),
                    _ => {}
                }
                return pushed;
            }
        }
        if state.bytes + size > self.limit_bytes && !state.queue.is_empty() {
            let pushed = state.absorb(delivery, flow.overflow);
            if pushed == Pushed::Overflowed {
                self.signal();
            }
            return pushed;
        }
        let was_empty = state.queue.is_empty();
        state.queue.push_back(Arc::clone(delivery));
        state.bytes += size;
        if was_empty {
            self.signal();
        }
        Pushed::Queued
    }

    fn signal(&self) {
        self.signalled.store(true, Ordering::Release);
        self.wake_due.store(true, Ordering::Release);
    }

    /// Wakes the writer now, whether or not anything is queued (to make it look at its
    /// connection's state, e.g. at shutdown).
    pub fn interrupt(&self) {
        self.signalled.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Wakes the writer if a push since the last call needs it to.
    pub fn wake_if_due(&self) {
        if self.wake_due.load(Ordering::Relaxed) && self.wake_due.swap(false, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// What [`wake_if_due`](Self::wake_if_due) does, unless the connection lent its socket
    /// ([`lend_wire`](Self::lend_wire)): then what is queued is written to the socket here,
    /// and the writer is woken only if the socket could not take it all (the wire is then
    /// returned to the connection, with what is left of the queue), or the outbox
    /// needs the connection's attention (an overflow, a held message, a removed stream).
    pub fn flush_or_wake(&self) -> Flushed {
        if !(self.wake_due.load(Ordering::Relaxed) && self.wake_due.swap(false, Ordering::AcqRel))
        {
            return Flushed::default();
        }
        if !self.lent.load(Ordering::Acquire) {
            self.waker.wake();
            return Flushed::default();
        }
        self.flush_locked(self.state.lock())
    }

    /// Writes the queue to the lent socket, or gives the socket back and wakes the writer (see
    /// [`flush_or_wake`](Self::flush_or_wake)).
    fn flush_locked(&self, mut guard: MutexGuard<'_, State>) -> Flushed {
        let mut flushed = Flushed::default();
        let state = &mut *guard;
        if let Some(wire) = state.lent {
            if !self.needs_attention(state) {
                match wire::write_queue(&wire, &mut state.queue, &mut state.bytes, &mut flushed) {
                    Outcome::Drained => return flushed,
                    Outcome::Partial => self.partial_front.store(true, Ordering::Release),
                    Outcome::Blocked | Outcome::Failed => {}
                }
            }
            state.lent = None;
            self.lent.store(false, Ordering::Release);
        }
        drop(guard);
        self.waker.wake();
        flushed
    }

    /// True when the outbox holds news only the connection can act on: an overflow, a close,
    /// a removed stream, a held message.
    fn needs_attention(&self, state: &State) -> bool {
        state.overflowed
            || state.closed
            || state.removed.is_some()
            || self.holding.load(Ordering::Acquire)
    }

    /// Lends the connection's socket to the lanes, which then write what they queue for it
    /// straight to the socket ([`flush_or_wake`](Self::flush_or_wake)) until the connection
    /// takes it back ([`reclaim_wire`](Self::reclaim_wire)). Refused (false) while something
    /// is queued or the outbox needs the connection's attention: the connection writes that
    /// first. The connection must keep the socket open while it is lent.
    pub fn lend_wire(&self, wire: Wire) -> bool {
        let mut state = self.state.lock();
        if !state.queue.is_empty() || self.needs_attention(&state) {
            return false;
        }
        state.lent = Some(wire);
        self.lent.store(true, Ordering::Release);
        true
    }

    /// True (once) when the oldest message the last [`take_all`](Self::take_all) took is what
    /// is left of a frame a lane wrote only part of: the writer must finish it before it
    /// writes anything of its own.
    pub fn take_partial_front(&self) -> bool {
        self.partial_front.load(Ordering::Acquire)
            && self.partial_front.swap(false, Ordering::AcqRel)
    }

    /// Takes the socket back from the lanes: when this returns, no lane is writing it, nor
    /// will one until it is lent again.
    pub fn reclaim_wire(&self) {
        if self.lent.load(Ordering::Acquire) {
            self.state.lock().lent = None;
            self.lent.store(false, Ordering::Release);
        }
    }

    /// Moves everything queued to the back of `into`, then the held messages of rate-limited
    /// streams whose next token is due. Returns true if the outbox overflowed.
    pub fn take_all(&self, into: &mut VecDeque<Arc<Delivery>>) -> bool {
        let mut state = self.state.lock();
        if into.is_empty() {
            std::mem::swap(into, &mut state.queue);
            if state.queue.capacity() > 64 {
                state.queue = VecDeque::new();
            }
        } else {
            into.append(&mut state.queue);
        }
        state.bytes = 0;
        if self.holding.load(Ordering::Acquire) {
            let holding = state.release_due(into, Instant::now());
            self.holding.store(holding, Ordering::Release);
        }
        state.overflowed
    }

    /// When the next held message of a rate-limited stream may go out, if one waits; the
    /// writer comes back for it then (through [`take_all`](Self::take_all)).
    pub fn release_at(&self) -> Option<Instant> {
        if !self.holding.load(Ordering::Acquire) {
            return None;
        }
        let state = self.state.lock();
        state
            .limited
            .iter()
            .flat_map(|limited| limited.iter())
            .filter(|l| l.held.is_some())
            .map(|l| l.due)
            .min()
    }

    /// Forgets the rate limit and held message of `topic` (the connection left the stream).
    pub fn forget_stream(&self, topic: TopicId) {
        let mut state = self.state.lock();
        if let Some(limited) = &mut state.limited {
            limited.retain(|l| l.topic != topic);
        }
    }

    /// True once a message could not be queued nor absorbed: the connection is a slow
    /// consumer, whatever its writer still holds.
    pub fn overflowed(&self) -> bool {
        self.state.lock().overflowed
    }

    /// True when messages are waiting or the outbox overflowed.
    pub fn has_news(&self) -> bool {
        let state = self.state.lock();
        !state.queue.is_empty() || state.overflowed
    }

    /// Waits until a push arrives after the last [`take_all`](Self::take_all) (or an overflow).
    /// Only one task (the connection's) may wait.
    pub async fn ready(&self) {
        poll_fn(|cx| {
            if self.signalled.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.signalled.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Tells the connection that `topic` was retired (a config change removed its stream)
    /// and dropped it as a subscriber, and wakes it; see [`take_removed`](Self::take_removed).
    pub fn stream_removed(&self, topic: TopicId) {
        {
            let mut state = self.state.lock();
            if state.closed {
                return;
            }
            state.removed.get_or_insert_default().push(topic);
            if let Some(limited) = &mut state.limited {
                limited.retain(|l| l.topic != topic);
            }
        }
        self.removals.store(true, Ordering::Release);
        self.interrupt();
    }

    /// The retired topics this connection was dropped from since the last call, in the order
    /// they were retired; empty (without taking the lock) when there are none.
    pub fn take_removed(&self) -> Vec<TopicId> {
        if !self.removals.load(Ordering::Relaxed) || !self.removals.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        self.state
            .lock()
            .removed
            .take()
            .map(|removed| *removed)
            .unwrap_or_default()
    }

    /// Refuses further pushes and frees what is queued.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.lent = None;
        self.lent.store(false, Ordering::Release);
        state.closed = true;
        state.queue = VecDeque::new();
        state.bytes = 0;
        state.removed = None;
        state.limited = None;
    }
}

impl State {
    /// Applies `topic`'s rate limit to `delivery`: `None` when a token lets it through, else
    /// what the stream's `overflow` policy made of it. While a message of the stream is held,
    /// later ones join it rather than overtake it.
    fn over_limit(
        &mut self,
        topic: TopicId,
        quota: Quota,
        delivery: &Arc<Delivery>,
        overflow: Overflow,
        now: Instant,
    ) -> Option<Pushed> {
        let limited = self.limited.get_or_insert_default();
        let at = match limited.iter().position(|l| l.topic == topic) {
            Some(at) => at,
            None => {
                // Exactly one more: a connection keeps this for every limited stream it takes.
                limited.reserve_exact(1);
                limited.push(Limited {
                    topic,
                    quota,
                    bucket: flow::bucket(quota),
                    held: None,
                    due: now,
                });
                limited.len() - 1
            }
        };
        let entry = &mut limited[at];
        if entry.quota != quota {
            // The config changed the stream's limit: a new, full bucket.
            entry.quota = quota;
            entry.bucket = flow::bucket(quota);
        }
        if entry.held.is_none() {
            match flow::take_token(&entry.bucket) {
                Ok(()) => return None,
                Err(due) => entry.due = due,
            }
        }
        Some(match (overflow, entry.held.take()) {
            (Overflow::Close, _) => {
                self.overflowed = true;
                Pushed::Overflowed
            }
            (Overflow::Drop, held) => {
                entry.held = held;
                Pushed::Dropped
            }
            (Overflow::Latest | Overflow::Coalesce, None) => {
                entry.held = Some(Arc::clone(delivery));
                Pushed::Held
            }
            (Overflow::Latest, Some(_)) => {
                entry.held = Some(Arc::clone(delivery));
                Pushed::Coalesced
            }
            (Overflow::Coalesce, Some(held)) => {
                match flow::merge_depth(&held.payload, &delivery.payload) {
                    Some(payload) => {
                        entry.held = Some(flow::combined(&held, delivery, payload));
                        Pushed::Coalesced
                    }
                    None => {
                        // Cannot be merged without a gap: the client must reconnect.
                        self.overflowed = true;
                        Pushed::Overflowed
                    }
                }
            }
        })
    }

    /// Makes room for `delivery` in a full queue by the stream's `overflow` policy: merged into
    /// (`coalesce`) or put in place of (`latest`) the stream's newest queued message, or
    /// dropped (`drop`); anything else overflows the queue.
    fn absorb(&mut self, delivery: &Arc<Delivery>, overflow: Overflow) -> Pushed {
        if overflow == Overflow::Drop {
            return Pushed::Dropped;
        }
        let same_stream = |queued: &Arc<Delivery>| {
            Arc::ptr_eq(&queued.stream, &delivery.stream) || queued.stream == delivery.stream
        };
        if matches!(overflow, Overflow::Latest | Overflow::Coalesce) {
            if let Some(at) = self.queue.iter().rposition(same_stream) {
                let queued = &self.queue[at];
                let replacement = match overflow {
                    Overflow::Latest => Some(Arc::clone(delivery)),
                    _ => flow::merge_depth(&queued.payload, &delivery.payload)
                        .map(|payload| flow::combined(queued, delivery, payload)),
                };
                if let Some(replacement) = replacement {
                    self.bytes = self.bytes - queued.payload.len() + replacement.payload.len();
                    self.queue[at] = replacement;
                    return Pushed::Coalesced;
                }
            }
        }
        self.overflowed = true;
        Pushed::Overflowed
    }

    /// Moves each held message whose stream has a token now to the back of `into`; true while
    /// some are still held.
    fn release_due(&mut self, into: &mut VecDeque<Arc<Delivery>>, now: Instant) -> bool {
        let Some(limited) = &mut self.limited else {
            return false;
        };
        let mut holding = false;
        for entry in limited.iter_mut().filter(|l| l.held.is_some()) {
            if entry.due <= now {
                match flow::take_token(&entry.bucket) {
                    Ok(()) => {
                        into.extend(entry.held.take());
                        continue;
                    }
                    Err(due) => entry.due = due,
                }
            }
            holding = true;
        }
        holding
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn delivery(size: usize) -> Arc<Delivery> {
        Arc::new(Delivery::new(
            Arc::from("s"),
            1,
            0,
            0,
            Bytes::from(vec![b'x'; size]),
            0,
        ))
    }

    #[test]
    fn overflow_marks_the_connection_and_refuses_more() {
        let outbox = Outbox::new(1, 100);
        assert_eq!(outbox.push(&delivery(60)), Pushed::Queued);
        assert_eq!(outbox.push(&delivery(60)), Pushed::Overflowed);
        assert_eq!(outbox.push(&delivery(1)), Pushed::Refused);
        let mut taken = VecDeque::new();
        assert!(outbox.take_all(&mut taken));
        assert_eq!(taken.len(), 1);
    }

    mod lent {
        use super::*;
        use crate::hub::wire::test_socket::{self, wire};
        use std::task::{Wake, Waker};

        /// Counts its wake-ups.
        struct Counter(std::sync::atomic::AtomicUsize);

        impl Wake for Counter {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }

        /// An outbox whose writer waits (a registered waker), and its wake-up count.
        fn waiting(limit: usize) -> (Arc<Outbox>, Arc<Counter>) {
            let outbox = Outbox::new(1, limit);
            let counter = Arc::new(Counter(Default::default()));
            outbox.waker.register(&Waker::from(Arc::clone(&counter)));
            (outbox, counter)
        }

        /// What the writer would write of each queued message: the frame a lane left, or
        /// the payload (the test wire's frame) of one never written.
        fn frames(taken: &VecDeque<Arc<Delivery>>) -> Vec<String> {
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
            taken
                .iter()
                .map(|d| text(d.cached(0).unwrap_or(&d.payload)))
                .collect()
        }

        fn wakes(counter: &Counter) -> usize {
            counter.0.load(Ordering::Relaxed)
        }

        fn on(payload: &'static str) -> Arc<Delivery> {
            let payload = Bytes::from_static(payload.as_bytes());
            Arc::new(Delivery::new(Arc::from("s"), 1, 0, 0, payload, 1))
        }

        #[test]
        fn a_lane_writes_a_lent_socket_without_waking_the_writer() {
            test_socket::reset(usize::MAX);
            let (outbox, counter) = waiting(1000);
            assert!(outbox.lend_wire(wire()));
            outbox.push(&on("ab"));
            outbox.push(&on("cd"));
            let flushed = outbox.flush_or_wake();
            assert_eq!(flushed, Flushed { frames: 2, sends: 1 });
            assert_eq!(test_socket::taken(), b"abcd");
            assert_eq!(wakes(&counter), 0);
            assert!(!outbox.has_news());
        }

        #[test]
        fn a_socket_taken_back_is_never_written_by_a_lane() {
            test_socket::reset(usize::MAX);
            let (outbox, counter) = waiting(1000);
            assert!(outbox.lend_wire(wire()));
            outbox.reclaim_wire();
            outbox.push(&on("ab"));
            assert_eq!(outbox.flush_or_wake(), Flushed::default());
            assert!(test_socket::taken().is_empty());
            assert_eq!(wakes(&counter), 1, "the writer writes it");
            let mut taken = VecDeque::new();
            outbox.take_all(&mut taken);
            assert_eq!(taken.len(), 1);
        }

        #[test]
        fn lending_is_refused_while_something_waits_or_needs_the_connection() {
            let outbox = Outbox::new(1, 10);
            outbox.push(&on("abcdefgh"));
            assert!(!outbox.lend_wire(wire()), "a message waits");
            outbox.push(&on("abcdefgh"));
            outbox.take_all(&mut VecDeque::new());
            assert!(!outbox.lend_wire(wire()), "overflowed");
            let closed = Outbox::new(2, 10);
            closed.close();
            assert!(!closed.lend_wire(wire()), "closed");
        }

        #[test]
        fn a_socket_full_mid_frame_goes_back_to_the_writer_with_the_rest_first() {
            test_socket::reset(3);
            let (outbox, counter) = waiting(1000);
            assert!(outbox.lend_wire(wire()));
            outbox.push(&on("ab"));
            outbox.push(&on("cde"));
            let flushed = outbox.flush_or_wake();
            assert_eq!(flushed, Flushed { frames: 1, sends: 1 });
            assert_eq!(wakes(&counter), 1);
            // The wire is the writer's again: a later push is not written by a lane.
            outbox.push(&on("f"));
            test_socket::make_room(usize::MAX);
            outbox.flush_or_wake();
            assert_eq!(test_socket::taken(), b"abc");
            let mut taken = VecDeque::new();
            outbox.take_all(&mut taken);
            assert!(outbox.take_partial_front(), "the front is the rest of a frame");
            assert!(!outbox.take_partial_front(), "told once");
            assert_eq!(frames(&taken), ["de", "f"]);
        }

        #[test]
        fn a_turn_goes_straight_to_a_lent_socket_and_queues_only_what_it_did_not_take() {
            test_socket::reset(usize::MAX);
            let (outbox, counter) = waiting(1000);
            assert!(outbox.lend_wire(wire()));
            let turn = [on("ab"), on("cd")];
            let mut counts = FanOut::default();
            let flushed = outbox.deliver(&turn, &Flow::UNLIMITED, 7, None, &mut counts);
            assert_eq!(flushed, Flushed { frames: 2, sends: 1 });
            assert_eq!(counts.queued, 2);
            assert_eq!(Arc::strong_count(&turn[0]), 1, "no reference kept");
            assert_eq!(wakes(&counter), 0);

            test_socket::reset(3);
            let turn = [on("ef"), on("gh"), on("ij")];
            let flushed = outbox.deliver(&turn, &Flow::UNLIMITED, 7, None, &mut counts);
            assert_eq!(flushed, Flushed { frames: 1, sends: 1 });
            assert_eq!(test_socket::taken(), b"efg");
            assert_eq!(wakes(&counter), 1);
            let mut taken = VecDeque::new();
            outbox.take_all(&mut taken);
            assert!(outbox.take_partial_front());
            assert_eq!(frames(&taken), ["h", "ij"]);
        }
    }

    #[test]
    fn a_message_larger_than_the_limit_still_goes_to_an_idle_connection() {
        let outbox = Outbox::new(1, 10);
        assert_eq!(outbox.push(&delivery(50)), Pushed::Queued);
    }

    #[tokio::test]
    async fn a_waiting_writer_is_woken_only_after_the_batch() {
        let outbox = Outbox::new(1, 1000);
        let waiter = Arc::clone(&outbox);
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            waiter.ready().await;
            tx.send(()).unwrap();
        });
        tokio::task::yield_now().await;
        outbox.push(&delivery(1));
        outbox.push(&delivery(1));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(rx.try_recv().is_err(), "woken before the publisher's wake");
        outbox.wake_if_due();
        tokio::time::timeout(std::time::Duration::from_secs(1), rx)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_removed_stream_wakes_the_connection_and_is_taken_once() {
        let outbox = Outbox::new(1, 1000);
        assert!(outbox.take_removed().is_empty());
        outbox.stream_removed(7);
        outbox.stream_removed(9);
        tokio::time::timeout(std::time::Duration::from_secs(1), outbox.ready())
            .await
            .expect("woken");
        assert_eq!(outbox.take_removed(), [7, 9]);
        assert!(outbox.take_removed().is_empty());
        outbox.close();
        outbox.stream_removed(11);
        assert!(
            outbox.take_removed().is_empty(),
            "a closed outbox keeps nothing"
        );
    }

    fn on(stream: &str, seq: u64, payload: String) -> Arc<Delivery> {
        Arc::new(Delivery::new(
            Arc::from(stream),
            seq,
            0,
            0,
            Bytes::from(payload),
            0,
        ))
    }

    fn depth(first: u64, last: u64, price: &str) -> String {
        format!(
            r#"{{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":{first},"u":{last},"b":[["{price}","1"]],"a":[]}}"#
        )
    }

    fn seqs(outbox: &Outbox) -> Vec<u64> {
        let mut taken = VecDeque::new();
        outbox.take_all(&mut taken);
        taken.iter().map(|d| d.seq).collect()
    }

    #[test]
    fn over_the_rate_a_latest_stream_holds_its_newest_message_until_the_next_token() {
        let outbox = Outbox::new(1, 1 << 20);
        let flow = Flow::new(Some(10), Some(2), Overflow::Latest);
        let now = Some(Instant::now());
        let pushed: Vec<Pushed> = (1..=5)
            .map(|seq| outbox.push_flow(&on("s", seq, "{}".into()), &flow, 7, now))
            .collect();
        use Pushed::*;
        assert_eq!(pushed, [Queued, Queued, Held, Coalesced, Coalesced]);
        assert_eq!(seqs(&outbox), [1, 2], "the burst goes out, the rest waits");
        let due = outbox.release_at().expect("a message is held");
        assert!(due > Instant::now());
        std::thread::sleep(due - Instant::now());
        assert_eq!(seqs(&outbox), [5], "the newest value, once a token is due");
        assert_eq!(outbox.release_at(), None);
        assert_eq!(
            outbox.push_flow(&on("s", 6, "{}".into()), &flow, 7, Some(Instant::now())),
            Held,
            "the bucket is empty again"
        );
        outbox.forget_stream(7);
        assert_eq!(outbox.release_at(), None, "unsubscribed: nothing held");
    }

    #[test]
    fn over_the_rate_depth_events_merge_and_a_closing_stream_overflows() {
        let outbox = Outbox::new(1, 1 << 20);
        let coalesce = Flow::new(Some(1), Some(1), Overflow::Coalesce);
        let now = Some(Instant::now());
        for (seq, (first, last)) in [(1, 1), (2, 3), (4, 6)].into_iter().enumerate() {
            let d = on("btcusdt@depth", seq as u64 + 1, depth(first, last, "1.0"));
            outbox.push_flow(&d, &coalesce, 1, now);
        }
        let mut taken = VecDeque::new();
        outbox.take_all(&mut taken);
        assert_eq!(taken.len(), 1);
        std::thread::sleep(outbox.release_at().unwrap() - Instant::now());
        outbox.take_all(&mut taken);
        let merged: serde_json::Value = serde_json::from_slice(&taken[1].payload).unwrap();
        assert_eq!(
            (merged["U"].as_u64(), merged["u"].as_u64()),
            (Some(2), Some(6))
        );

        let close = Flow::new(Some(1), Some(1), Overflow::Close);
        let trades = Outbox::new(2, 1 << 20);
        assert_eq!(
            trades.push_flow(&delivery(1), &close, 1, now),
            Pushed::Queued
        );
        assert_eq!(
            trades.push_flow(&delivery(1), &close, 1, now),
            Pushed::Overflowed
        );
        assert!(trades.take_all(&mut VecDeque::new()), "a slow consumer now");

        let drop = Flow::new(Some(1), Some(1), Overflow::Drop);
        let dropping = Outbox::new(3, 1 << 20);
        dropping.push_flow(&delivery(1), &drop, 1, now);
        assert_eq!(
            dropping.push_flow(&delivery(1), &drop, 1, now),
            Pushed::Dropped
        );
        assert_eq!(dropping.release_at(), None);
    }

    #[test]
    fn a_limited_stream_costs_its_connections_one_small_entry() {
        let size = std::mem::size_of::<Limited>();
        assert!(size <= 96, "{size} bytes per limited stream and connection");
        let outbox = Outbox::new(1, 1 << 20);
        let flow = Flow::new(Some(100), Some(100), Overflow::Close);
        for topic in 1..=5 {
            outbox.push_flow(&delivery(10), &flow, topic, Some(Instant::now()));
        }
        let state = outbox.state.lock();
        let limited = state.limited.as_ref().unwrap();
        assert_eq!((limited.len(), limited.capacity()), (5, 5));
    }

    #[test]
    fn a_full_queue_coalesces_by_the_stream_policy_before_it_overflows() {
        let unlimited = |overflow| Flow::new(None, None, overflow);
        let outbox = Outbox::new(1, 200);
        let book = unlimited(Overflow::Coalesce);
        let ticker = unlimited(Overflow::Latest);
        assert_eq!(
            outbox.push_flow(&on("d", 1, depth(1, 1, "1.0")), &book, 1, None),
            Pushed::Queued
        );
        assert_eq!(
            outbox.push_flow(&on("t", 2, "x".repeat(120)), &ticker, 2, None),
            Pushed::Queued
        );
        // Full: the next depth event merges into the queued one, the ticker replaces its own.
        assert_eq!(
            outbox.push_flow(&on("d", 3, depth(2, 4, "2.0")), &book, 1, None),
            Pushed::Coalesced
        );
        assert_eq!(
            outbox.push_flow(&on("t", 4, "y".repeat(120)), &ticker, 2, None),
            Pushed::Coalesced
        );
        assert_eq!(
            outbox.push_flow(&on("d", 5, depth(9, 9, "3.0")), &book, 1, None),
            Pushed::Overflowed,
            "a gap cannot be merged"
        );
        let mut taken = VecDeque::new();
        assert!(outbox.take_all(&mut taken));
        assert_eq!(taken.iter().map(|d| d.seq).collect::<Vec<_>>(), [3, 4]);
        assert!(std::str::from_utf8(&taken[0].payload)
            .unwrap()
            .contains(r#""U":1,"u":4"#));
        assert_eq!(&taken[1].payload[..], "y".repeat(120).as_bytes());

        let dropping = Outbox::new(2, 10);
        let drop = unlimited(Overflow::Drop);
        dropping.push_flow(&delivery(20), &drop, 1, None);
        assert_eq!(
            dropping.push_flow(&delivery(20), &drop, 1, None),
            Pushed::Dropped
        );
        assert!(
            !dropping.take_all(&mut VecDeque::new()),
            "still a good consumer"
        );
    }

    #[tokio::test]
    async fn push_wakes_the_writer_once() {
        let outbox = Outbox::new(1, 1000);
        outbox.push(&delivery(1));
        outbox.push(&delivery(1));
        outbox.ready().await;
        let mut taken = VecDeque::new();
        assert!(!outbox.take_all(&mut taken));
        assert_eq!(taken.len(), 2);
        assert!(!outbox.has_news());
    }
}
