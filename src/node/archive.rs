//! A cluster node's archive for resuming clients: the JetStream capture of the fanout
//! subjects (`--replay-retention`), read on the subject the stream's mapping publishes it on.

use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::mpsc;

use super::interest::FanoutRule;
use crate::bus::NatsBus;
use crate::hub::{Archive, Captured, REPLAY_BUFFER};

/// Replays from the cluster's capture, following the mappings' fanout rules.
pub struct CaptureArchive {
    nats: Arc<NatsBus>,
    rules: RwLock<Arc<Vec<FanoutRule>>>,
}

impl CaptureArchive {
    /// An archive reading the capture through `nats` (which must [`NatsBus::use_capture`]).
    pub fn new(nats: Arc<NatsBus>) -> Self {
        CaptureArchive {
            nats,
            rules: RwLock::new(Arc::new(Vec::new())),
        }
    }

    /// Finds streams' subjects with `rules` from now on.
    pub fn set_rules(&self, rules: Vec<FanoutRule>) {
        *self.rules.write() = Arc::new(rules);
    }
}

impl Archive for CaptureArchive {
    fn replay(&self, stream: &Arc<str>, after: u64) -> Option<mpsc::Receiver<Captured>> {
        let subject = self.rules.read().iter().find_map(|r| r.subject(stream))?;
        let (sender, receiver) = mpsc::channel(REPLAY_BUFFER);
        let (nats, stream) = (Arc::clone(&self.nats), Arc::clone(stream));
        tokio::spawn(async move { nats.replay_capture(subject, stream, after, sender).await });
        Some(receiver)
    }
}
