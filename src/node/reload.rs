//! The reload loop: applies every revision the store announces to the running components, and
//! reports what the node runs (metrics, the status API, readiness).

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::backends::Membership;
use super::components::Components;
use super::state::{Desired, Resolver};
use crate::admin::api::{Api, NodeStatus};
use crate::admin::AdminState;
use crate::metrics::Metrics;

/// Applies every new store revision until `stop`; returns the components for shutdown.
pub(super) async fn run(
    reporting: Reporting,
    resolver: Resolver,
    mut components: Components,
    membership: Arc<dyn Membership>,
    mut current: Desired,
    stop: CancellationToken,
) -> Components {
    let mut announcements = resolver.store.watch();
    // Only a source that consumes under a lease can lose it; elsewhere this never yields.
    let mut lost_leases = components
        .lost_leases()
        .expect("the reload loop is the only reader");
    loop {
        // A revision announced before this loop first ran counts too. A lower one means the
        // store lost changes this node runs: the node keeps running them while the restorer
        // writes them back (under a higher revision, which is then applied).
        let mut announced = *announcements.borrow_and_update();
        if announced <= current.revision {
            tokio::select! {
                changed = announcements.changed() => if changed.is_err() { break },
                Some(lost) = lost_leases.recv() => {
                    if let Err(e) = components.restart_lost(lost, &current).await {
                        tracing::error!(error = %format!("{e:#}"), "cannot restart a source that lost its lease");
                    }
                    reporting.admin.sources.store(Arc::new(components.health()));
                    continue;
                }
                _ = stop.cancelled() => break,
            }
            announced = *announcements.borrow_and_update();
            if announced <= current.revision {
                continue;
            }
        }
        let started = Instant::now();
        let result = match resolver.load().await {
            Ok(desired) => components.apply(&desired).await.map(|()| desired),
            Err(e) => Err(e),
        };
        if let Ok(desired) = &result {
            if desired.fanout != current.fanout {
                membership.fanout_rules_changed(&desired.fanout);
            }
        }
        reporting.admin.sources.store(Arc::new(components.health()));
        match result {
            Ok(desired) => {
                reporting
                    .metrics
                    .config_reloads
                    .with_label_values(&["applied"])
                    .inc();
                tracing::info!(
                    revision = desired.revision,
                    config_version = desired.version,
                    took = ?started.elapsed(),
                    "store revision applied"
                );
                reporting.applied(&desired, None);
                current = desired;
            }
            Err(e) => {
                reporting
                    .metrics
                    .config_reloads
                    .with_label_values(&["failed"])
                    .inc();
                tracing::error!(revision = announced, error = %format!("{e:#}"), "store revision not applied; the node keeps running its last state");
                reporting.applied(&current, Some(format!("{e:#}")));
                // Do not retry the same revision in a loop; the next announcement tries again.
                current.revision = announced;
            }
        }
    }
    components
}

/// Where a node reports what it runs: metrics, the status API, readiness.
pub(super) struct Reporting {
    /// This node's id, in the status API.
    pub node_id: String,
    /// Config version and store revision gauges.
    pub metrics: Arc<Metrics>,
    /// The status API.
    pub api: Arc<Api>,
    /// Readiness: the running sources.
    pub admin: Arc<AdminState>,
    /// The image of the store the node runs, for a restore.
    pub image: Arc<arc_swap::ArcSwapOption<crate::config::store::StoreImage>>,
}

impl Reporting {
    /// Records that `desired` runs (with the error of a newer revision that did not apply).
    pub fn applied(&self, desired: &Desired, error: Option<String>) {
        self.image.store(Some(Arc::clone(&desired.image)));
        self.metrics.config_version.set(desired.version as i64);
        self.metrics.store_revision.set(desired.revision as i64);
        let routes = desired
            .mappers
            .iter()
            .map(|(id, mappers)| {
                (
                    id.clone(),
                    mappers.iter().map(|m| m.label.clone()).collect(),
                )
            })
            .collect();
        self.api.status.send_replace(NodeStatus {
            node_id: self.node_id.clone(),
            config_version: desired.version,
            revision: desired.revision,
            routes,
            last_error: error,
        });
    }
}
