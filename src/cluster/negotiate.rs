//! Negotiation: the peers read `peer_update_queue` as one consumer group, so exactly one live
//! peer handles each join or leave. It recomputes who owns which datasource over the live
//! peers and writes the routes' `peer_id` through the versioned config store (compare and set:
//! a concurrent change makes it read again and retry), which announces the new config to every
//! node. An event left pending by a peer that died while handling it is claimed by another.
//!
//! Every peer also checks the stored assignment against the live peers now and then, so an
//! operator's config change that drops `peer_id`, or an event lost with a Redis restart, is
//! corrected without waiting for the next join or leave.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, RedisResult};
use tokio_util::sync::CancellationToken;

use super::assign;
use super::peers::{Keys, PeerRegistry};
use crate::config::store::{ConfigStore, StoreError, StoreHealth};
use crate::control::{config_ops, ControlError};

/// The consumer group of the negotiating peers.
const GROUP: &str = "negotiators";
/// An event pending this long on a peer is taken over by another.
const CLAIM_IDLE: Duration = Duration::from_secs(5);
/// Attempts at writing one rebalance against concurrent changes.
const ATTEMPTS: usize = 5;

/// One peer's side of the negotiation.
pub struct Negotiator {
    /// A connection of its own: reads block on it.
    pub conn: ConnectionManager,
    /// Key names.
    pub keys: Keys,
    /// This peer's id (its consumer name, and the author of its config changes).
    pub peer_id: String,
    /// The peer registry, for the live set.
    pub registry: PeerRegistry,
    /// The config store.
    pub store: Arc<dyn ConfigStore>,
    /// How often the stored assignment is checked without an event.
    pub check_every: Duration,
    /// How long after the store came back (from an outage, or a loss of its data) the peers
    /// are given to heartbeat again before the live set is trusted: a registry emptied with the
    /// store lists only the peers that have beaten since, and ownership must not move to them.
    pub settle: Duration,
    /// The store's health, and since when it has served.
    pub health: tokio::sync::watch::Receiver<StoreHealth>,
    /// Since when the store has served without interruption, as this peer saw it.
    pub serving_since: Option<tokio::time::Instant>,
}

impl Negotiator {
    /// Handles queue events and checks the assignment until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut last_check = tokio::time::Instant::now();
        loop {
            if stop.is_cancelled() {
                return;
            }
            if let Err(e) = self.step().await {
                if self.store_away() {
                    tracing::debug!(error = %e, "negotiation step failed while the store is away; retrying");
                } else {
                    tracing::warn!(error = %e, "negotiation step failed; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
            if last_check.elapsed() >= self.check_every {
                last_check = tokio::time::Instant::now();
                if let Err(e) = self.rebalance("check").await {
                    // The node says once that the store is away; this would repeat it.
                    if self.store_away() {
                        tracing::debug!(error = %e, "assignment check failed while the store is away");
                    } else {
                        tracing::warn!(error = %e, "assignment check failed");
                    }
                }
            }
        }
    }

    /// Whether the config store is unreachable or empty, as the store last saw itself.
    fn store_away(&self) -> bool {
        *self.health.borrow() != StoreHealth::Serving
    }

    /// Whether the live set can be trusted: the store has served for [`settle`](Self::settle).
    fn settled(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if self.store_away() {
            self.serving_since = None;
            return false;
        }
        let since = *self.serving_since.get_or_insert(now);
        now - since >= self.settle
    }

    /// Ensures the group, claims stalled events, reads new ones (blocking briefly), handles
    /// them.
    async fn step(&mut self) -> anyhow::Result<()> {
        self.ensure_group().await?;
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.keys.queue())
            .arg(GROUP)
            .arg(&self.peer_id)
            .arg(CLAIM_IDLE.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(16)
            .query_async(&mut self.conn)
            .await?;
        let mut events: Vec<(String, String)> = claimed
            .claimed
            .iter()
            .map(|entry| (entry.id.clone(), field(&entry.map)))
            .collect();
        let options = StreamReadOptions::default()
            .group(GROUP, &self.peer_id)
            .count(16)
            .block(500);
        let read: Option<StreamReadReply> = self
            .conn
            .xread_options(&[self.keys.queue()], &[">"], &options)
            .await?;
        for key in read.into_iter().flat_map(|r| r.keys) {
            events.extend(key.ids.iter().map(|e| (e.id.clone(), field(&e.map))));
        }
        for (id, event) in events {
            self.handle(&event).await?;
            let _: () = self.conn.xack(self.keys.queue(), GROUP, &[&id]).await?;
        }
        Ok(())
    }

    async fn ensure_group(&mut self) -> RedisResult<()> {
        let created: RedisResult<()> = self
            .conn
            .xgroup_create_mkstream(self.keys.queue(), GROUP, "0")
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    async fn handle(&mut self, event: &str) -> anyhow::Result<()> {
        tracing::info!(event, "handling peer update");
        self.rebalance(event).await?;
        if let Some(peer) = event.strip_prefix("peer_left:") {
            let _: () = self.conn.del(self.keys.left_lock(peer)).await?;
        }
        Ok(())
    }

    /// Writes the assignment for the live peers if it differs from the stored one. Until the
    /// store has served for [`settle`](Self::settle) nothing is written; the next check does it.
    async fn rebalance(&mut self, reason: &str) -> anyhow::Result<()> {
        if !self.settled() {
            tracing::debug!(
                reason,
                "not rebalancing until the peers have heartbeaten again"
            );
            return Ok(());
        }
        let live = self.registry.live().await?;
        if live.is_empty() {
            return Ok(());
        }
        for _ in 0..ATTEMPTS {
            let current = self.store.current().await?;
            let mut config = current.config;
            if !assign::assign(&mut config, &live) {
                return Ok(());
            }
            let who = format!("cluster:{}", self.peer_id);
            match config_ops::apply(
                &*self.store,
                Some(current.version),
                config,
                &who,
                "cluster.rebalance",
            )
            .await
            {
                Ok(applied) => {
                    tracing::info!(reason, version = applied.version, peers = ?live, "ownership rebalanced");
                    return Ok(());
                }
                Err(ControlError::Store(StoreError::Stale { .. })) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("the config kept changing during {ATTEMPTS} rebalance attempts")
    }
}

/// The `event` field of a queue entry.
fn field(map: &std::collections::HashMap<String, redis::Value>) -> String {
    map.get("event")
        .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
        .unwrap_or_default()
}
