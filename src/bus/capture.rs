//! Reading the cluster's JetStream capture of the fanout subjects: where a stream's numbering
//! stopped (so a new owner continues it), and a stream's messages after a sequence number (so a
//! client that reconnects to any node gets what it missed).
//!
//! Both look up the capture by subject. A subject is expected to carry one stream (the fanout
//! templates of the shipped configs do); messages of other streams on it are skipped.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, message::StreamMessage};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::nats::{decode, NatsBus};
use super::BusMessage;

/// What a capture replay hands over, in order.
#[derive(Debug)]
pub enum Captured {
    /// A captured message of the stream, past the position asked for.
    Message(BusMessage),
    /// Everything captured so far was handed over; later messages follow as they are captured.
    /// Sent again every [`IDLE_TICK`] while nothing new arrives.
    CaughtUp,
    /// The capture cannot be read (no capture, or JetStream refused).
    Unavailable,
}

/// How often a caught-up replay says so again while nothing new is captured.
pub const IDLE_TICK: Duration = Duration::from_millis(250);

/// Lookups of the last captured message, tried this often before giving up.
const LOOKUP_ATTEMPTS: u32 = 3;

impl NatsBus {
    async fn capture_stream(&self) -> Option<Stream> {
        let name = self.capture.get()?;
        let context = jetstream::new(self.client.clone());
        match context.get_stream(name).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::debug!(error = %e, stream = %name, "capture stream not readable");
                None
            }
        }
    }

    /// The last captured message of `stream` on `subject` (see [`super::Bus::last_captured`]).
    pub(super) async fn last_in_capture(&self, subject: &str, stream: &str) -> Option<BusMessage> {
        for attempt in 1..=LOOKUP_ATTEMPTS {
            let capture = self.capture_stream().await?;
            match capture.get_last_raw_message_by_subject(subject).await {
                Ok(raw) => {
                    let message = message_of(&raw)?;
                    if &*message.stream != stream {
                        tracing::warn!(%subject, %stream, other = %message.stream,
                            "the subject carries another stream too; its numbering starts afresh");
                        return None;
                    }
                    return Some(message);
                }
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return None,
                Err(e) => {
                    tracing::warn!(error = %e, %subject, attempt, "cannot read the last captured message");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
            }
        }
        None
    }

    /// Hands `into` the captured messages of `stream` on `subject` with a sequence number past
    /// `after`, in order, then [`Captured::CaughtUp`], then what is captured later, until `into`
    /// is closed. The first message is found by a binary search over the capture's sequence
    /// numbers (a few dozen lookups however long the retention), then an ordered consumer
    /// reads from there.
    pub async fn replay_capture(
        &self,
        subject: String,
        stream: Arc<str>,
        after: u64,
        into: mpsc::Sender<Captured>,
    ) {
        let Some(mut capture) = self.capture_stream().await else {
            let _ = into.send(Captured::Unavailable).await;
            return;
        };
        let (first, last) = match capture.info().await {
            Ok(info) => (info.state.first_sequence, info.state.last_sequence),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the capture's state");
                let _ = into.send(Captured::Unavailable).await;
                return;
            }
        };
        let start = first_past(&capture, &subject, after, first, last + 1).await;
        let config = OrderedConfig {
            filter_subject: subject.clone(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start.max(1),
            },
            ..Default::default()
        };
        let messages = match capture.create_consumer(config).await {
            Ok(consumer) => consumer.messages().await,
            Err(e) => {
                tracing::warn!(error = %e, %subject, "cannot create a replay consumer");
                let _ = into.send(Captured::Unavailable).await;
                return;
            }
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(error = %e, %subject, "cannot read a replay consumer");
                let _ = into.send(Captured::Unavailable).await;
                return;
            }
        };
        // Nothing to read from the start: caught up at once.
        let mut caught_up = start > last;
        if caught_up && into.send(Captured::CaughtUp).await.is_err() {
            return;
        }
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = into.closed() => return,
                _ = tokio::time::sleep(IDLE_TICK) => {
                    if caught_up && into.send(Captured::CaughtUp).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, %subject, "replay consumer error");
                    continue;
                }
                None => return,
            };
            let pending = message.info().map(|i| i.pending).unwrap_or(0);
            let decoded = message
                .message
                .headers
                .as_ref()
                .and_then(|h| decode(h, &message.message.payload));
            if let Some(decoded) = decoded.filter(|m| m.stream == stream && m.seq > after) {
                if into.send(Captured::Message(decoded)).await.is_err() {
                    return;
                }
            }
            if pending == 0 && !caught_up {
                caught_up = true;
                if into.send(Captured::CaughtUp).await.is_err() {
                    return;
                }
            } else if pending > 0 {
                caught_up = false;
            }
        }
    }
}

/// The bus message of a captured message.
fn message_of(raw: &StreamMessage) -> Option<BusMessage> {
    decode(&raw.headers, &raw.payload)
}

/// The smallest capture sequence in `lo..=hi` from which the first message on `subject` has a
/// stream sequence number past `after` (or `hi` when there is none): a binary search, each
/// lookup jumping past the message it found.
async fn first_past(capture: &Stream, subject: &str, after: u64, mut lo: u64, mut hi: u64) -> u64 {
    lo = lo.max(1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match capture.get_first_raw_message_by_subject(subject, mid).await {
            Ok(raw) => match message_of(&raw) {
                Some(message) if message.seq <= after => lo = raw.sequence + 1,
                _ => hi = mid.min(raw.sequence),
            },
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => hi = mid,
            Err(e) => {
                tracing::debug!(error = %e, %subject, "capture lookup failed; replaying from {lo}");
                return lo;
            }
        }
    }
    lo
}
