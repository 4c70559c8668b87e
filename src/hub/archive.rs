//! Where a resuming client's missed messages come from when the node's ring no longer (or
//! never) held them: the cluster's capture of the fanout subjects, read through the bus.
//!
//! The hub only knows the trait; a cluster node installs the JetStream reader
//! ([`Hub::set_archive`](super::Hub::set_archive)), an embedded node has none.

use std::sync::Arc;

use tokio::sync::mpsc;

pub use crate::bus::Captured;

/// Messages handed from an archive replay to its connection before the reader waits.
pub const REPLAY_BUFFER: usize = 1024;

/// A cluster-wide history of the public streams.
pub trait Archive: Send + Sync + 'static {
    /// Starts reading `stream`'s messages numbered past `after`, in order: each as a
    /// [`Captured::Message`], then [`Captured::CaughtUp`] whenever everything captured so far
    /// was handed over (again while nothing new arrives), until the receiver is dropped.
    /// `None` when the archive does not keep `stream`.
    fn replay(&self, stream: &Arc<str>, after: u64) -> Option<mpsc::Receiver<Captured>>;
}
