//! Cluster membership: the peer registry with heartbeats, the join/leave negotiation that
//! assigns each datasource to one live peer, and the leases that keep two peers from ever
//! consuming one datasource at once.
//!
//! A peer heartbeats every [`ClusterSettings::heartbeat`]; after [`ClusterSettings::ttl`]
//! without one it is gone: the first peer to notice wins the `peer-left` lock and announces it,
//! one peer handles the announcement and moves the gone peer's datasources, and their new
//! owners take the leases as soon as they lapse. So a killed owner's datasources resume on
//! another peer within about `ttl` plus one heartbeat.

mod assign;
pub mod directory;
mod lease;
mod negotiate;
mod peers;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::store::{ConfigStore, StoreHealth};

pub use lease::{Leases, Tenure};
use negotiate::Negotiator;
use peers::{Keys, PeerRegistry};

/// How a peer takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This peer's stable id.
    pub peer_id: String,
    /// Redis URL of the registry (the config store's Redis).
    pub redis: String,
    /// Prefix of every key.
    pub prefix: String,
    /// How often the peer heartbeats.
    pub heartbeat: Duration,
    /// After how long without a heartbeat a peer is gone (also the lease TTL).
    pub ttl: Duration,
}

/// A peer's membership: running until `leave` or drop of its stop token.
pub struct Cluster {
    registry: PeerRegistry,
    leases: Leases,
    stop: CancellationToken,
}

impl Cluster {
    /// Joins: heartbeats, announces `peer_join`, and starts heartbeating and negotiating in the
    /// background.
    pub async fn join(
        settings: &ClusterSettings,
        store: Arc<dyn ConfigStore>,
    ) -> anyhow::Result<Cluster> {
        let keys = Keys::new(&settings.prefix);
        let registry = PeerRegistry::new(
            connect(&settings.redis).await?,
            keys.clone(),
            &settings.peer_id,
            settings.ttl,
        );
        let leases = Leases::new(
            connect(&settings.redis).await?,
            keys.clone(),
            &settings.peer_id,
            settings.ttl,
        );
        let stop = CancellationToken::new();
        let mut joining = registry.clone();
        joining.join().await?;
        tracing::info!(peer = %settings.peer_id, "joined the cluster");
        tokio::spawn(heartbeats(
            registry.clone(),
            settings.heartbeat,
            store.health(),
            stop.clone(),
        ));
        let negotiator = Negotiator {
            conn: connect(&settings.redis).await?,
            keys,
            peer_id: settings.peer_id.clone(),
            registry: registry.clone(),
            check_every: settings.heartbeat * 2,
            settle: settings.ttl + settings.heartbeat,
            health: store.health(),
            // A peer that starts finds the others' heartbeats in place.
            serving_since: tokio::time::Instant::now().checked_sub(settings.ttl * 2),
            store,
        };
        tokio::spawn(negotiator.run(stop.clone()));
        Ok(Cluster {
            registry,
            leases,
            stop,
        })
    }

    /// The consumption leases of this peer.
    pub fn leases(&self) -> Leases {
        self.leases.clone()
    }

    /// Stops heartbeating and negotiating and leaves the registry, so the others move this
    /// peer's datasources at once instead of after the TTL.
    pub async fn leave(mut self) {
        self.stop.cancel();
        if let Err(e) = self.registry.leave().await {
            tracing::warn!(error = %e, "could not announce leaving; the others notice after the TTL");
        }
    }
}

async fn heartbeats(
    mut registry: PeerRegistry,
    every: Duration,
    store: tokio::sync::watch::Receiver<StoreHealth>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = registry.heartbeat().await {
            // The node says once that the store is away; this would repeat it every beat.
            if *store.borrow() == StoreHealth::Serving {
                tracing::warn!(error = %e, "heartbeat failed");
            } else {
                tracing::debug!(error = %e, "heartbeat failed while the store is away");
            }
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    Ok(ConnectionManager::new_with_config(client, config).await?)
}
