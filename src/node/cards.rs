//! This node's card: what it reports about itself to the cluster view every heartbeat
//! (state, datasources, load), and the cluster's directory of cards in Redis.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::admin::api::NodeStatus;
use crate::admin::cluster::{now_ms, NodeCard, NodeDirectory};
use crate::admin::AdminState;
use crate::cluster::directory::{Directory, FORGET_AFTER};

/// The cluster's cards, kept in Redis ([`Directory`]).
pub struct RedisDirectory(pub Directory);

impl NodeDirectory for RedisDirectory {
    fn publish(&self, card: NodeCard) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let json = serde_json::to_string(&card)?;
            Ok(self.0.put(&card.node_id, &json).await?)
        })
    }

    fn list(&self, fresh: Duration) -> BoxFuture<'_, anyhow::Result<Vec<NodeCard>>> {
        Box::pin(async move {
            let now = now_ms();
            let age = |card: &NodeCard| Duration::from_millis(now.saturating_sub(card.at_ms));
            let mut live = Vec::new();
            let mut forgotten = Vec::new();
            let stored = self.0.all().await?;
            for (node, json) in &stored {
                match serde_json::from_str::<NodeCard>(json) {
                    Ok(card) if age(&card) <= fresh => live.push(card),
                    Ok(card) if age(&card) < FORGET_AFTER => {}
                    _ => forgotten.push(node.as_str()),
                }
            }
            if let Err(e) = self.0.remove(&forgotten).await {
                tracing::debug!(error = %e, "could not remove old node cards");
            }
            Ok(live)
        })
    }

    fn withdraw(&self, node_id: &str) -> BoxFuture<'_, ()> {
        let node_id = node_id.to_string();
        Box::pin(async move {
            if let Err(e) = self.0.remove(&[&node_id]).await {
                tracing::debug!(error = %e, "could not withdraw this node's card");
            }
        })
    }
}

/// Publishes this node's card to `directory` every `every` until `stop`, then withdraws it.
pub async fn publish(
    directory: Arc<dyn NodeDirectory>,
    admin: Arc<AdminState>,
    status: tokio::sync::watch::Receiver<NodeStatus>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => break,
        }
        let card = card(&admin, &status.borrow());
        match directory.publish(card).await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::debug!(error = %e, "could not publish this node's card");
            }
            Err(_) => {}
        }
    }
    let node_id = status.borrow().node_id.clone();
    directory.withdraw(&node_id).await;
}

/// This node's card now.
fn card(admin: &AdminState, status: &NodeStatus) -> NodeCard {
    let metrics = &admin.metrics;
    let mut owned: Vec<String> = admin
        .sources
        .load()
        .iter()
        .map(|source| source.name().to_string())
        .collect();
    owned.sort();
    NodeCard {
        node_id: status.node_id.clone(),
        state: admin.state().as_str().to_string(),
        owned,
        config_version: status.config_version,
        revision: status.revision,
        connections: metrics.connections.get(),
        messages_out_total: metrics.messages_out.get(),
        messages_in_total: metrics.messages_in.get(),
        at_ms: now_ms(),
    }
}
