//! Automatic rollback: a promoted mapper version whose events keep failing on this node is
//! rolled back to the version before it, through the store, so every node follows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admin::api::Api;
use crate::config::store::ConfigStore;
use crate::control::mapper_ops;
use crate::metrics::Metrics;

/// Failure kinds counted against a mapper version.
const FAILURE_KINDS: [&str; 5] = ["error", "trap", "timeout", "memory", "bad_output"];

/// When to roll a promoted version back.
#[derive(Debug, Clone)]
pub struct AutoRollback {
    /// Share of failed events in one window that triggers the rollback (0..=1).
    pub error_ratio: f64,
    /// Fewest events a window must hold to judge it.
    pub min_events: u64,
    /// Length of a window.
    pub window: Duration,
}

/// Checks every running promoted mapper version once per window until `stop`.
pub async fn watch(
    policy: AutoRollback,
    store: Arc<dyn ConfigStore>,
    metrics: Arc<Metrics>,
    api: Arc<Api>,
    node_id: String,
    stop: CancellationToken,
) {
    let mut last: HashMap<String, (u64, u64)> = HashMap::new();
    let who = format!("auto-rollback:{node_id}");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(policy.window) => {}
            _ = stop.cancelled() => return,
        }
        let Ok(mappers) = store.mappers().await else {
            continue;
        };
        let running: Vec<String> = api
            .status
            .borrow()
            .routes
            .values()
            .flatten()
            .cloned()
            .collect();
        for label in running {
            let Some((name, version)) = label.rsplit_once('@') else {
                continue;
            };
            let Some(meta) = mappers.get(name) else {
                continue;
            };
            // Only the promoted version, and only when there is an earlier one to go back to.
            if version.parse() != Ok(meta.promoted) || meta.promoted <= 1 {
                continue;
            }
            let events = metrics.mapper_events.with_label_values(&[&label]).get();
            let failures: u64 = FAILURE_KINDS
                .iter()
                .map(|kind| {
                    metrics
                        .mapper_errors
                        .with_label_values(&[label.as_str(), kind])
                        .get()
                })
                .sum();
            let (seen_events, seen_failures) = last
                .insert(label.clone(), (events, failures))
                .unwrap_or((events, failures));
            let window_events = events.saturating_sub(seen_events);
            let window_failures = failures.saturating_sub(seen_failures);
            if window_events < policy.min_events
                || (window_failures as f64) < policy.error_ratio * window_events as f64
            {
                continue;
            }
            match mapper_ops::rollback(&*store, name, None, &who).await {
                Ok(meta) => {
                    metrics.mapper_auto_rollbacks.inc();
                    tracing::warn!(
                        mapper = %label,
                        failed = window_failures,
                        events = window_events,
                        now = meta.promoted,
                        "mapper version keeps failing: rolled back"
                    );
                }
                Err(e) => tracing::error!(mapper = %label, error = %e, "automatic rollback failed"),
            }
        }
    }
}
