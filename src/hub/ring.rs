//! A stream's replay ring: the last messages the node delivered on it, bounded by count and
//! payload bytes, for clients that reconnect and resume after the last sequence number they
//! received.
//!
//! The hub pushes every message of the stream once, before it fans the message out (one push
//! per message, never per subscriber), so a connection that subscribes and then reads the ring
//! misses nothing between the two: what the ring does not hold yet reaches the connection live.
//! The ring only ever holds consecutive sequence numbers: a message that does not follow the
//! last one (the node was not receiving the stream for a while, or its numbering restarted)
//! empties it first.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use super::Delivery;

/// How much each stream's ring holds; the oldest messages leave first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLimits {
    /// Messages kept per stream at most (0: no ring).
    pub messages: usize,
    /// Payload bytes kept per stream at most (0: no ring). The encoded frames cached on the
    /// same messages come on top.
    pub bytes: usize,
}

impl RingLimits {
    /// No ring at all.
    pub const OFF: RingLimits = RingLimits {
        messages: 0,
        bytes: 0,
    };

    /// True when rings keep nothing.
    pub fn is_off(&self) -> bool {
        self.messages == 0 || self.bytes == 0
    }
}

impl Default for RingLimits {
    /// 16,384 messages or 1 MiB of payload per stream, whichever is reached first.
    fn default() -> Self {
        RingLimits {
            messages: 16_384,
            bytes: 1 << 20,
        }
    }
}

/// One stream's ring.
pub struct Ring {
    limits: RingLimits,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Arc<Delivery>>,
    bytes: usize,
}

/// What a ring held past a sequence number, read at one instant.
#[derive(Default)]
pub struct RingRead {
    /// Sequence number of the oldest message held (none when empty).
    pub oldest: Option<u64>,
    /// Sequence number of the newest message held.
    pub newest: Option<u64>,
    /// The messages held past the number asked for, in order.
    pub messages: Vec<Arc<Delivery>>,
}

impl RingRead {
    /// True when the messages read start right after `after` (or nothing past it exists):
    /// the ring covers everything the client missed.
    pub fn covers(&self, after: u64) -> bool {
        match (self.oldest, self.newest) {
            (Some(oldest), Some(newest)) => oldest <= after.saturating_add(1) || newest <= after,
            _ => false,
        }
    }
}

impl Ring {
    /// An empty ring bounded by `limits`.
    pub fn new(limits: RingLimits) -> Self {
        Ring {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Keeps `delivery`, dropping the oldest messages beyond the limits (the newest one is
    /// always kept). O(1) amortised: one lock, one push, rarely a few pops.
    pub fn push(&self, delivery: &Arc<Delivery>) {
        if self.limits.is_off() {
            return;
        }
        let size = delivery.payload.len();
        let mut inner = self.inner.lock();
        if let Some(last) = inner.queue.back() {
            if delivery.seq != last.seq.wrapping_add(1) {
                inner.queue.clear();
                inner.bytes = 0;
            }
        }
        inner.queue.push_back(Arc::clone(delivery));
        inner.bytes += size;
        while inner.queue.len() > 1
            && (inner.queue.len() > self.limits.messages || inner.bytes > self.limits.bytes)
        {
            let oldest = inner.queue.pop_front().expect("more than one");
            inner.bytes -= oldest.payload.len();
        }
    }

    /// The messages held with a sequence number past `after`, and the range held.
    pub fn since(&self, after: u64) -> RingRead {
        let inner = self.inner.lock();
        let (Some(front), Some(back)) = (inner.queue.front(), inner.queue.back()) else {
            return RingRead::default();
        };
        let (oldest, newest) = (front.seq, back.seq);
        let skip = usize::try_from(after.saturating_add(1).saturating_sub(oldest))
            .unwrap_or(usize::MAX)
            .min(inner.queue.len());
        RingRead {
            oldest: Some(oldest),
            newest: Some(newest),
            messages: inner.queue.range(skip..).cloned().collect(),
        }
    }

    /// Messages held and their payload bytes.
    pub fn size(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.queue.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn delivery(seq: u64, size: usize) -> Arc<Delivery> {
        Arc::new(Delivery::new(
            Arc::from("a@trade"),
            seq,
            0,
            0,
            Bytes::from(vec![b'x'; size]),
            0,
        ))
    }

    fn seqs(read: &RingRead) -> Vec<u64> {
        read.messages.iter().map(|d| d.seq).collect()
    }

    #[test]
    fn the_ring_keeps_the_newest_messages_within_its_count() {
        let ring = Ring::new(RingLimits {
            messages: 3,
            bytes: 1 << 20,
        });
        for seq in 1..=5 {
            ring.push(&delivery(seq, 10));
        }
        assert_eq!(ring.size(), (3, 30));
        let read = ring.since(0);
        assert_eq!((read.oldest, read.newest), (Some(3), Some(5)));
        assert_eq!(seqs(&read), [3, 4, 5]);
        assert!(!read.covers(1), "4 and 5 are held, 2 is not");
        assert!(read.covers(2));
        assert_eq!(seqs(&ring.since(3)), [4, 5]);
        assert!(ring.since(5).messages.is_empty());
        assert!(ring.since(9).covers(9), "nothing past 9 exists");
    }

    #[test]
    fn the_ring_keeps_the_newest_messages_within_its_bytes() {
        let ring = Ring::new(RingLimits {
            messages: 100,
            bytes: 25,
        });
        for seq in 1..=4 {
            ring.push(&delivery(seq, 10));
        }
        assert_eq!(ring.size(), (2, 20));
        // A message larger than the whole bound is still kept, alone.
        ring.push(&delivery(5, 100));
        assert_eq!(ring.size(), (1, 100));
        assert_eq!(seqs(&ring.since(0)), [5]);
    }

    #[test]
    fn a_gap_in_the_numbering_empties_the_ring() {
        let ring = Ring::new(RingLimits::default());
        for seq in [1, 2, 3, 7, 8] {
            ring.push(&delivery(seq, 1));
        }
        let read = ring.since(2);
        assert_eq!((read.oldest, seqs(&read)), (Some(7), vec![7, 8]));
        assert!(!read.covers(2));
        // A numbering that starts again from 1 as well.
        ring.push(&delivery(1, 1));
        assert_eq!(seqs(&ring.since(0)), [1]);
    }

    #[test]
    fn an_empty_or_disabled_ring_covers_nothing() {
        let ring = Ring::new(RingLimits::OFF);
        ring.push(&delivery(1, 1));
        assert_eq!(ring.size(), (0, 0));
        assert!(!ring.since(0).covers(0));
    }
}
