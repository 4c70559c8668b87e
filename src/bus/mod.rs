//! The bus between the node that maps an event and every node that delivers it.
//!
//! The owner of a source publishes each mapped output once to its mapping's fanout subject; every
//! node subscribes to the subjects its clients need and hands what arrives to its hub. Alone, a
//! node uses the in-process [`MemoryBus`]; in a cluster, NATS.

mod memory;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

pub use memory::MemoryBus;

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
}

/// Why the bus refused a publish or subscribe.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus is shutting down or lost its connection.
    #[error("bus closed")]
    Closed,
}

/// A stream of messages for one subscription; dropping it unsubscribes.
pub struct Subscription {
    rx: mpsc::Receiver<BusMessage>,
}

impl Subscription {
    /// Wraps the receiving end of a subscription channel.
    pub fn new(rx: mpsc::Receiver<BusMessage>) -> Self {
        Subscription { rx }
    }

    /// The next message, or `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<BusMessage> {
        self.rx.recv().await
    }

    /// Receives up to `limit` messages, waiting for at least one; returns how many arrived.
    pub async fn next_batch(&mut self, into: &mut Vec<BusMessage>, limit: usize) -> usize {
        self.rx.recv_many(into, limit).await
    }
}

/// Publish/subscribe between nodes.
pub trait Bus: Send + Sync + 'static {
    /// Publishes `messages`, each on its subject, in order.
    fn publish(&self, messages: Vec<(Arc<str>, BusMessage)>)
        -> BoxFuture<'_, Result<(), BusError>>;

    /// Subscribes to subjects matching `pattern` (`*` one token, `>` the rest).
    fn subscribe(&self, pattern: &str) -> BoxFuture<'_, Result<Subscription, BusError>>;
}
