//! A connection's bounded outbound queue: the hub pushes shared messages, the connection's
//! writer takes them all at once.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
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
                self.give_back(&mut state);
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
        if !(self.wake_due.load(Ordering::Relaxed) && self.wake_due.swap(false, Ordering::AcqRel)) {
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
            self.give_back(state);
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

    /// Clears the lent socket (the caller holds the outbox's lock).
    fn give_back(&self, state: &mut State) {
        state.lent = None;
        self.lent.store(false, Ordering::Release);
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
            self.give_back(&mut self.state.lock());
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
        poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// [`ready`](Self::ready) as a poll: `cx`'s waker is woken by the next news.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.signalled.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.signalled.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
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
        self.give_back(&mut state);
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
mod tests;
