//! The bus between the node that maps an event and every node that delivers it.
//!
//! The owner of a source publishes each mapped output once to its mapping's fanout subject; every
//! node subscribes to the subjects its clients need and the bus hands what arrives to a
//! [`BusSink`] (the node's hub). Alone, a node uses the in-process [`MemoryBus`], which hands each
//! published batch straight to the sinks; in a cluster, NATS.

mod capture;
mod last_seen;
mod memory;
mod nats;
mod origin;
mod user;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

pub use capture::Captured;
pub use last_seen::LastDelivered;
pub use memory::MemoryBus;
pub use nats::NatsBus;
pub use origin::Origin;
pub use user::{is_user_id, user_subject, MAX_USER_ID};

/// One mapped output on its way to clients.
#[derive(Debug, Clone)]
pub struct BusMessage {
    /// The client stream it belongs to, e.g. `btcusdt@trade`.
    pub stream: Arc<str>,
    /// Position in that stream, assigned by the publisher: consecutive per stream, from 1.
    pub seq: u64,
    /// Time of the upstream event, µs since the epoch.
    pub event_time_us: i64,
    /// When the publisher handed it to the bus, µs since the epoch.
    pub published_us: i64,
    /// The client payload (JSON text).
    pub payload: Bytes,
    /// Target user for private streams.
    pub user_id: Option<Arc<str>>,
    /// Where it came from upstream, for sources that resume from a committed position (a
    /// redelivered event yields the same origin again); `None` for the others.
    pub origin: Option<Origin>,
}

#[cfg(test)]
impl BusMessage {
    /// A public message of `stream` numbered `seq`, carrying `payload` (unit tests).
    pub(crate) fn for_tests(stream: &str, seq: u64, payload: impl Into<Bytes>) -> BusMessage {
        BusMessage {
            stream: Arc::from(stream),
            seq,
            event_time_us: 0,
            published_us: 0,
            payload: payload.into(),
            user_id: None,
            origin: None,
        }
    }
}

/// Why the bus refused a publish or subscribe.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus is shutting down or lost its connection.
    #[error("bus closed")]
    Closed,
}

/// Where a subscription's messages go.
pub trait BusSink: Send + Sync + 'static {
    /// Takes a batch of messages, in order; resolves once they are accepted (it may wait while
    /// the sink is full, which slows the publisher down).
    fn deliver(&self, messages: Vec<BusMessage>) -> BoxFuture<'_, ()>;
}

/// Identifies a subscription for [`Bus::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub u64);

/// Publish/subscribe between nodes.
pub trait Bus: Send + Sync + 'static {
    /// Publishes `messages`, each on its subject, in order.
    fn publish(&self, messages: Vec<(Arc<str>, BusMessage)>)
        -> BoxFuture<'_, Result<(), BusError>>;

    /// Delivers messages on subjects matching `pattern` (`*` one token, `>` the rest) to `sink`.
    fn subscribe(
        &self,
        pattern: &str,
        sink: Arc<dyn BusSink>,
    ) -> BoxFuture<'_, Result<SubscriptionId, BusError>>;

    /// Ends a subscription.
    fn unsubscribe(&self, id: SubscriptionId) -> BoxFuture<'_, Result<(), BusError>>;

    /// The last message of `stream` the cluster captured for replay on `subject` (its sequence
    /// number and origin), so that a node that starts publishing a stream another node
    /// published before continues its numbering; `None` when nothing of the stream was
    /// captured. A cluster without a capture asks the hubs that delivered the stream instead;
    /// a bus in the process has neither (the default).
    fn last_captured<'a>(
        &'a self,
        _subject: &'a str,
        _stream: &'a str,
    ) -> BoxFuture<'a, Option<BusMessage>> {
        Box::pin(async { None })
    }
}
