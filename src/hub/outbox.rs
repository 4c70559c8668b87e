//! A connection's bounded outbound queue: the hub pushes shared messages, the connection's
//! writer takes them all at once.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use super::topic::TopicId;
use super::Delivery;

/// Identifies a connection within one node.
pub type ConnId = u64;

/// What happened to a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for the writer.
    Queued,
    /// The queue was full: the message was dropped and the connection marked as a slow consumer.
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
            waker: AtomicWaker::new(),
        })
    }

    /// The connection this outbox belongs to.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Queues `delivery` unless that would exceed the byte limit. The writer is not woken until
    /// [`wake_if_due`](Self::wake_if_due).
    pub fn push(&self, delivery: &Arc<Delivery>) -> Pushed {
        let size = delivery.payload.len();
        let mut state = self.state.lock();
        if state.overflowed || state.closed {
            return Pushed::Refused;
        }
        if state.bytes + size > self.limit_bytes && !state.queue.is_empty() {
            state.overflowed = true;
            drop(state);
            self.signal();
            return Pushed::Overflowed;
        }
        let was_empty = state.queue.is_empty();
        state.queue.push_back(Arc::clone(delivery));
        state.bytes += size;
        drop(state);
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

    /// Moves everything queued to the back of `into`. Returns true if the outbox overflowed.
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
        state.overflowed
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
        state.closed = true;
        state.queue = VecDeque::new();
        state.bytes = 0;
        state.removed = None;
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
