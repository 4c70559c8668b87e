//! A connection's writer: everything queued goes out in as few `sendmsg` calls as the socket
//! allows, straight from the shared frame buffers (no copy into a per-connection buffer; TLS
//! copies once, into its records).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::Bytes;

use super::transport::Transport;
use crate::hub::{Delivery, FrameVariant};
use crate::util::now_us;

/// Frames handed to one `sendmsg` call at most.
const MAX_IOV: usize = 128;

/// Queues of frames waiting for the socket.
///
/// The connection's own frames (replies, pongs, notices, close) go before market data, except
/// that a frame already partly written is always finished first.
#[derive(Default)]
pub struct Writer {
    /// A frame partly written: its bytes, how far, and whether it is market data.
    partial: Option<(Bytes, usize, bool)>,
    own: VecDeque<Bytes>,
    /// Bytes in `own` (a bound on replies to a client that does not read).
    own_bytes: usize,
    data: VecDeque<Arc<Delivery>>,
}

/// What one call to [`Writer::write_now`] achieved (it also observes the delivery latency of
/// the oldest market-data frame of its first write).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Market-data frames completely written.
    pub data_frames: usize,
    /// `sendmsg` calls made.
    pub syscalls: usize,
    /// True when the socket stopped accepting bytes before the queues emptied.
    pub blocked: bool,
}

impl Writer {
    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.partial.is_none() && self.own.is_empty() && self.data.is_empty()
    }

    /// Queues one of the connection's own frames.
    pub fn push_own(&mut self, frame: Bytes) {
        self.own_bytes += frame.len();
        self.own.push_back(frame);
    }

    /// Bytes of the connection's own frames waiting for the socket.
    pub fn own_bytes(&self) -> usize {
        self.own_bytes
    }

    /// The market-data queue, for the outbox to move messages into.
    pub fn data_queue(&mut self) -> &mut VecDeque<Arc<Delivery>> {
        &mut self.data
    }

    /// Makes the oldest queued market-data frame one already partly written (what a fan-out
    /// lane left of it), so it goes out before anything else.
    pub fn finish_front_first(&mut self, variant: FrameVariant) {
        if self.partial.is_none() {
            if let Some(front) = self.data.pop_front() {
                self.partial = Some((front.frame(variant).clone(), 0, true));
            }
        }
    }

    /// Drops queued market data (the connection is closing).
    pub fn discard_data(&mut self) {
        self.data = VecDeque::new();
    }

    /// Frees queue memory left over from a burst once the queues are empty.
    pub fn release_idle_buffers(&mut self) {
        if self.data.is_empty() && self.data.capacity() > 64 {
            self.data = VecDeque::new();
        }
        if self.own.is_empty() && self.own.capacity() > 8 {
            self.own = VecDeque::new();
        }
    }

    /// Writes as much as the socket takes now, without waiting, market data in `variant`.
    pub fn write_now(
        &mut self,
        socket: &mut Transport,
        variant: FrameVariant,
    ) -> io::Result<Written> {
        let mut result = Written::default();
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            if let Some((frame, offset, _)) = &self.partial {
                slices[0] = IoSlice::new(&frame[*offset..]);
                count = 1;
            }
            for frame in self.own.iter().take(MAX_IOV - count) {
                slices[count] = IoSlice::new(frame);
                count += 1;
            }
            for delivery in self.data.iter().take(MAX_IOV - count) {
                slices[count] = IoSlice::new(delivery.frame(variant));
                count += 1;
            }
            let written = match socket.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    result.blocked = true;
                    return Ok(result);
                }
                Err(e) => return Err(e),
            };
            if result.syscalls == 0 {
                // The oldest market-data frame of the first write carries the delivery latency.
                if let Some(oldest) = self.data.front() {
                    oldest.observe_latency(now_us());
                }
            }
            result.syscalls += 1;
            result.data_frames += self.advance(written, variant);
        }
        // TLS: the records of what was taken may still wait for the socket.
        result.blocked = !socket.flush_pending()?;
        Ok(result)
    }

    /// Consumes `written` bytes from the queue fronts; returns data frames completed.
    fn advance(&mut self, mut written: usize, variant: FrameVariant) -> usize {
        let mut completed = 0;
        if let Some((frame, offset, is_data)) = &mut self.partial {
            let left = frame.len() - *offset;
            if written < left {
                *offset += written;
                return 0;
            }
            written -= left;
            completed += usize::from(*is_data);
            self.partial = None;
        }
        while written > 0 {
            let Some(frame) = self.own.front() else { break };
            self.own_bytes -= frame.len();
            if written < frame.len() {
                let frame = self.own.pop_front().expect("front exists");
                self.partial = Some((frame, written, false));
                return completed;
            }
            written -= frame.len();
            self.own.pop_front();
        }
        while written > 0 {
            let Some(delivery) = self.data.front() else {
                break;
            };
            let frame = delivery.frame(variant);
            if written < frame.len() {
                self.partial = Some((frame.clone(), written, true));
                self.data.pop_front();
                return completed;
            }
            written -= frame.len();
            self.data.pop_front();
            completed += 1;
        }
        completed
    }
}
