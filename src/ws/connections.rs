//! The node's live connections, so a shutdown can reach every one of them.
//!
//! Sessions never poll a shared shutdown future (a `CancellationToken` or `Notify` takes a lock
//! shared by every connection on each poll); instead shutdown sets one flag, which sessions read
//! with a relaxed load, and interrupts each connection's outbox. Its locks are taken
//! only when a connection opens or closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::hub::{ConnId, Outbox};

const SHARDS: usize = 64;

type Shard = Mutex<HashMap<ConnId, Arc<Outbox>>>;

/// Live connections and the shutdown flag.
pub struct Connections {
    shards: Box<[Shard]>,
    shutting_down: AtomicBool,
}

impl Connections {
    /// An empty connections.
    pub fn new() -> Self {
        Connections {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            shutting_down: AtomicBool::new(false),
        }
    }

    fn shard(&self, id: ConnId) -> &Shard {
        &self.shards[id as usize % SHARDS]
    }

    /// Registers a connection's outbox.
    pub fn insert(&self, outbox: &Arc<Outbox>) {
        self.shard(outbox.id())
            .lock()
            .insert(outbox.id(), Arc::clone(outbox));
    }

    /// Forgets a connection.
    pub fn remove(&self, id: ConnId) {
        self.shard(id).lock().remove(&id);
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// True when no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once [`shut_down`](Self::shut_down) was called.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Sets the shutdown flag and wakes every live connection so it sees it.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for shard in self.shards.iter() {
            let outboxes: Vec<Arc<Outbox>> = shard.lock().values().cloned().collect();
            for outbox in outboxes {
                outbox.interrupt();
            }
        }
    }
}

impl Default for Connections {
    fn default() -> Self {
        Connections::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn shut_down_wakes_every_waiting_connection() {
        let connections = Arc::new(Connections::new());
        let mut waiting = Vec::new();
        for id in 0..100 {
            let outbox = Outbox::new(id, 1024);
            connections.insert(&outbox);
            waiting.push(tokio::spawn(async move { outbox.ready().await }));
        }
        connections.remove(99);
        assert_eq!(connections.len(), 99);
        tokio::task::yield_now().await;
        connections.shut_down();
        assert!(connections.shutting_down());
        for task in waiting.drain(..99) {
            tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .unwrap()
                .unwrap();
        }
    }
}
