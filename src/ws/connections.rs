//! The node's live connections, so a shutdown can reach every one of them, all at once or
//! spread over a drain window.
//!
//! Sessions never poll a shared shutdown future (a `CancellationToken` or `Notify` takes a lock
//! shared by every connection on each poll); instead shutdown raises one cutoff, which sessions
//! compare their connection's rank with (a relaxed load), and interrupts the outboxes of the
//! connections it reaches. Its locks are taken only when a connection opens or closes, and once
//! per connection by a drain.
//!
//! A drain closes connections in the order of their rank, a hash of their id, so the
//! connections of any one client, address or stream leave spread over the window.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::hub::{ConnId, Outbox};

const SHARDS: usize = 64;

type Shard = Mutex<HashMap<ConnId, Arc<Outbox>>>;

/// Live connections and the shutdown cutoff.
pub struct Connections {
    shards: Box<[Shard]>,
    /// Connections whose rank is at most this are to close: 0 none, `u64::MAX` all.
    cutoff: AtomicU64,
}

/// How often a drain raises its cutoff.
const DRAIN_TICK: Duration = Duration::from_millis(10);

/// A connection's place in a drain, from 1 (never 0, which closes none) to `u64::MAX`: its id
/// scrambled (SplitMix64's finaliser), so ranks are spread evenly whatever the ids.
fn rank(id: ConnId) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

impl Connections {
    /// An empty connections.
    pub fn new() -> Self {
        Connections {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            cutoff: AtomicU64::new(0),
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

    /// True once [`shut_down`](Self::shut_down) was called (or a drain finished).
    pub fn shutting_down(&self) -> bool {
        self.cutoff.load(Ordering::Relaxed) == u64::MAX
    }

    /// True when connection `id` is to close for a shutdown or a drain.
    pub fn closing(&self, id: ConnId) -> bool {
        let cutoff = self.cutoff.load(Ordering::Relaxed);
        cutoff != 0 && rank(id) <= cutoff
    }

    /// Marks every connection to close and wakes each live one so it sees it.
    pub fn shut_down(&self) {
        self.cutoff.store(u64::MAX, Ordering::SeqCst);
        for outbox in self.all() {
            outbox.interrupt();
        }
    }

    /// Closes every connection, spread evenly over `window`: the connections live now each at
    /// its rank's share of the window, and any that opens meanwhile at once if its rank is
    /// already passed. Returns when all are marked ([`shut_down`](Self::shut_down) at the end).
    pub async fn drain(&self, window: Duration) {
        let mut waiting: Vec<(u64, Arc<Outbox>)> = self
            .all()
            .into_iter()
            .map(|outbox| (rank(outbox.id()), outbox))
            .collect();
        waiting.sort_unstable_by_key(|(rank, _)| *rank);
        let start = tokio::time::Instant::now();
        let mut next = 0;
        let mut tick = tokio::time::interval(DRAIN_TICK);
        loop {
            tick.tick().await;
            let share = start.elapsed().as_secs_f64() / window.as_secs_f64();
            if share >= 1.0 || window.is_zero() {
                break;
            }
            let cutoff = (u64::MAX as f64 * share) as u64;
            self.cutoff.fetch_max(cutoff, Ordering::SeqCst);
            while let Some((_, outbox)) = waiting.get(next).filter(|(r, _)| *r <= cutoff) {
                outbox.interrupt();
                next += 1;
            }
        }
        self.shut_down();
    }

    fn all(&self) -> Vec<Arc<Outbox>> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            all.extend(shard.lock().values().cloned());
        }
        all
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

    #[tokio::test(start_paused = true)]
    async fn a_drain_closes_connections_evenly_over_its_window() {
        let connections = Arc::new(Connections::new());
        for id in 0..1000 {
            connections.insert(&Outbox::new(id, 1024));
        }
        let window = Duration::from_secs(10);
        let drain = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move { connections.drain(window).await }
        });
        let closing = |c: &Connections| (0..1000).filter(|id| c.closing(*id)).count();
        let mut seen = Vec::new();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            seen.push(closing(&connections));
        }
        drain.await.unwrap();
        assert!(connections.shutting_down());
        assert_eq!(closing(&connections), 1000);
        // Each second of the window closes about a tenth of them, and the count only grows.
        for (second, pair) in seen.windows(2).enumerate() {
            let step = pair[1] - pair[0];
            assert!((50..=150).contains(&step), "second {second}: {seen:?}");
        }
        assert!((50..=150).contains(&seen[0]), "{seen:?}");
    }
}
