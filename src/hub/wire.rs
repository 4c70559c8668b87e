//! Direct writes: a connection lends its socket to the fan-out lanes while it has nothing of its
//! own to say, and a lane then writes what it queued for the connection straight to the socket,
//! without waking the connection's task.
//!
//! This is how uWebSockets corks: one write per socket per batch, from the loop that made the
//! batch. A lane writes each connection it fed once per batch (several messages in one
//! `sendmsg`); the connection's task sleeps through the traffic and is woken only when the
//! socket cannot take everything (it then waits for the socket itself), on an overflow, or for
//! its own business (a client message, a timer). The socket is written only under the outbox's
//! lock, and the connection takes it back under the same lock before it writes, or closes the
//! socket: the two never write at once, and a lane never writes a closed (or reused) descriptor.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::sync::Arc;

use bytes::Bytes;

use super::{Delivery, FrameVariant};

/// Frames handed to one send at most.
const MAX_IOV: usize = 128;

/// Sends the leading bytes of some slices on a non-blocking descriptor, without waiting:
/// the bytes taken, or `WouldBlock`.
pub type Send = fn(RawFd, &[IoSlice<'_>]) -> io::Result<usize>;

/// A connection's socket as the lanes may write it: its descriptor, how to send on it, and the
/// frame variant the connection reads.
#[derive(Clone, Copy)]
pub struct Wire {
    fd: RawFd,
    send: Send,
    variant: FrameVariant,
}

impl Wire {
    /// The socket `fd`, written with `send`, in frames of `variant`. The connection keeps the
    /// descriptor open while the wire is lent ([`Outbox::lend_wire`](super::Outbox::lend_wire)).
    pub fn new(fd: RawFd, send: Send, variant: FrameVariant) -> Self {
        Wire { fd, send, variant }
    }
}

/// What a lane's writes to the connections it fed achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Frames completely written.
    pub frames: usize,
    /// Sends made.
    pub sends: usize,
}

impl std::ops::AddAssign for Flushed {
    fn add_assign(&mut self, other: Flushed) {
        self.frames += other.frames;
        self.sends += other.sends;
    }
}

/// How a direct write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Everything queued was written.
    Drained,
    /// The socket took nothing more: the connection must wait for it.
    Blocked,
    /// The socket took part of the front frame, which is now what is left of it: the
    /// connection must finish it before anything else, then wait for the socket.
    Partial,
    /// The socket failed: the connection must find out.
    Failed,
}

/// Writes `queue` on `wire` until it is empty or the socket is full, taking each completed
/// frame off the queue and its payload off `bytes`; a frame the socket took only part of is
/// replaced by what is left of it (a frame of its own, so whoever writes next goes on from
/// there).
pub(super) fn write_queue(
    wire: &Wire,
    queue: &mut VecDeque<Arc<Delivery>>,
    bytes: &mut usize,
    flushed: &mut Flushed,
) -> Outcome {
    let written = write_slice(wire, queue.make_contiguous(), flushed);
    for delivery in queue.drain(..written.done) {
        *bytes = bytes.saturating_sub(delivery.payload.len());
    }
    if let (Some(rest), Some(front)) = (written.rest, queue.front_mut()) {
        *bytes = (*bytes + rest.len()).saturating_sub(front.payload.len());
        *front = Arc::new(front.prebuilt(rest, front.variant_slots()));
    }
    written.outcome
}

/// What [`write_slice`] wrote.
pub(super) struct Written {
    /// Messages completely written, from the first.
    pub done: usize,
    /// What is left of the next one, if the socket took part of it.
    pub rest: Option<Bytes>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Writes the frames of `deliveries` on `wire`, in order, until all are written or the socket
/// is full. The oldest frame of the first send carries the delivery latency.
pub(super) fn write_slice(
    wire: &Wire,
    deliveries: &[Arc<Delivery>],
    flushed: &mut Flushed,
) -> Written {
    let mut done = 0;
    let mut first = true;
    let stop = |done, outcome| Written {
        done,
        rest: None,
        outcome,
    };
    while done < deliveries.len() {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let mut count = 0;
        for delivery in deliveries[done..].iter().take(MAX_IOV) {
            slices[count] = IoSlice::new(delivery.frame(wire.variant));
            count += 1;
        }
        let mut written = match (wire.send)(wire.fd, &slices[..count]) {
            Ok(0) => return stop(done, Outcome::Failed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return stop(done, Outcome::Blocked),
            Err(_) => return stop(done, Outcome::Failed),
        };
        if first {
            deliveries[done].observe_latency(crate::util::now_us());
            first = false;
        }
        flushed.sends += 1;
        while written > 0 {
            let frame = deliveries[done].frame(wire.variant);
            if written < frame.len() {
                return Written {
                    done,
                    rest: Some(frame.slice(written..)),
                    outcome: Outcome::Partial,
                };
            }
            written -= frame.len();
            done += 1;
            flushed.frames += 1;
        }
        // Ended on a frame boundary: the rest goes in the next send (a send gathers at most
        // so much), which also finds out if the socket is full.
    }
    stop(done, Outcome::Drained)
}

/// A socket for tests: what it took, and how much room it has left.
#[cfg(test)]
pub(super) mod test_socket {
    use super::*;
    use crate::hub::FrameVariants;
    use std::cell::RefCell;

    thread_local! {
        /// What the socket took, and how many more bytes it takes (`usize::MAX`: any).
        static SOCKET: RefCell<(Vec<u8>, usize)> = const { RefCell::new((Vec::new(), usize::MAX)) };
    }

    /// Empties the socket; it takes `room` bytes from now on.
    pub fn reset(room: usize) {
        SOCKET.with_borrow_mut(|s| *s = (Vec::new(), room));
    }

    /// Gives the socket `room` more bytes.
    pub fn make_room(room: usize) {
        SOCKET.with_borrow_mut(|s| s.1 = room);
    }

    /// What the socket took so far.
    pub fn taken() -> Vec<u8> {
        SOCKET.with_borrow(|s| s.0.clone())
    }

    fn send(_fd: RawFd, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        SOCKET.with_borrow_mut(|(taken, room)| {
            if *room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for slice in slices {
                let take = slice.len().min(*room - n);
                taken.extend_from_slice(&slice[..take]);
                n += take;
                if n == *room {
                    break;
                }
            }
            if *room != usize::MAX {
                *room -= n;
            }
            Ok(n)
        })
    }

    /// The test socket as a wire, its frames the payloads themselves.
    pub fn wire() -> Wire {
        let mut variants = FrameVariants::new();
        let variant = variants.register("test/payload", |d| d.payload.clone());
        Wire::new(-1, send, variant)
    }
}

#[cfg(test)]
mod tests {
    use super::test_socket::{self, wire};
    use super::*;

    fn queue(payloads: &[&'static str]) -> VecDeque<Arc<Delivery>> {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let payload = Bytes::from_static(p.as_bytes());
                Arc::new(Delivery::new(Arc::from("s"), i as u64, 0, 0, payload, 1))
            })
            .collect()
    }

    #[test]
    fn a_socket_that_takes_everything_drains_the_queue_in_one_send() {
        test_socket::reset(usize::MAX);
        let mut q = queue(&["ab", "cde", "f"]);
        let (mut bytes, mut flushed) = (6, Flushed::default());
        let outcome = write_queue(&wire(), &mut q, &mut bytes, &mut flushed);
        assert_eq!(outcome, Outcome::Drained);
        assert_eq!(
            flushed,
            Flushed {
                frames: 3,
                sends: 1
            }
        );
        assert_eq!((q.len(), bytes), (0, 0));
        assert_eq!(test_socket::taken(), b"abcdef");
    }

    #[test]
    fn a_full_socket_leaves_the_rest_and_how_far_the_front_got() {
        test_socket::reset(4);
        let mut q = queue(&["ab", "cde", "f"]);
        let (mut bytes, mut flushed) = (6, Flushed::default());
        let outcome = write_queue(&wire(), &mut q, &mut bytes, &mut flushed);
        assert_eq!(outcome, Outcome::Partial);
        assert_eq!(
            flushed,
            Flushed {
                frames: 1,
                sends: 1
            }
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].frame(wire().variant), "e", "what is left of \"cde\"");
        assert_eq!(bytes, 2);

        // Room again: the front goes on from where it stopped.
        test_socket::make_room(usize::MAX);
        let outcome = write_queue(&wire(), &mut q, &mut bytes, &mut flushed);
        assert_eq!(outcome, Outcome::Drained);
        assert_eq!(flushed.frames, 3);
        assert_eq!(test_socket::taken(), b"abcdef");
    }

    #[test]
    fn a_socket_that_takes_nothing_changes_nothing() {
        test_socket::reset(0);
        let mut q = queue(&["ab"]);
        let (mut bytes, mut flushed) = (2, Flushed::default());
        let outcome = write_queue(&wire(), &mut q, &mut bytes, &mut flushed);
        assert_eq!(outcome, Outcome::Blocked);
        assert_eq!((q.len(), bytes, flushed.sends), (1, 2, 0));
    }
}
