//! Self-healing of the config store: while it is unreachable, empty or behind the node says so
//! (in `/readyz`, `wsgate_config_store_up` and one log line, repeated at most every
//! [`REMIND_EVERY`]); when it comes back empty (a Redis restarted without its data, or failed
//! over to an empty replica) or at a lower revision than the node runs (a replica that was
//! behind), one node, elected through the store itself, writes back the state the nodes run,
//! and the others check that it is what they run.
//!
//! What comes back: the config version the nodes run (with its routes' owners, so ownership is
//! unchanged) and the earlier versions the restoring node kept, the whole mapper registry
//! (versions, promoted pointers, manifests), the modules of the versions in use, promoted, or one
//! rollback away, the demo accounts' API keys, and a revision above the one the nodes run, so
//! every node reloads and finds nothing to change. What cannot come back is counted in
//! `wsgate_store_restore_lost_total{kind}` and listed in the `store.restore` audit entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminState;
use crate::config::store::{ConfigStore, StoreHealth, StoreImage};
use crate::metrics::Metrics;

/// How often a node that could not restore (or is waiting for the elected one) tries again.
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// How long the elected node may take before another may try.
const LEAD_FOR: Duration = Duration::from_secs(10);
/// How often the log line about a store that is still away is repeated.
const REMIND_EVERY: Duration = Duration::from_secs(60);
/// How often the number of API keys in the store is read while it serves (to count those a
/// loss takes).
const COUNT_KEYS_EVERY: Duration = Duration::from_secs(2);

/// What the restorer needs.
pub(super) struct Restorer {
    /// This node's id: the restore lock's holder and the audit entry's author.
    pub node_id: String,
    /// The config store.
    pub store: Arc<dyn ConfigStore>,
    /// The image of the state the node runs, kept current by the reload loop.
    pub image: Arc<ArcSwapOption<StoreImage>>,
    /// Where the store's state is counted.
    pub metrics: Arc<Metrics>,
    /// Where `/readyz` reads the store's problem.
    pub admin: Arc<AdminState>,
    /// Seeds the demo accounts' API keys again after a restore.
    pub reseed_keys: Box<dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>,
}

/// The audit action of a restore.
const RESTORE_ACTION: &str = "store.restore";
/// How many of the newest audit entries are searched for a restore.
const RECENT_ENTRIES: usize = 16;
/// How far the nodes' clocks may disagree, when a node tells a restore during its outage from an
/// older one.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// What is wrong with the store, as `/readyz` says it.
enum Problem {
    /// It cannot be reached (or does not answer): nothing to do but wait.
    Away(String),
    /// It lost state the nodes run (empty, or behind): to be restored.
    Lost(String),
}

/// One spell of the store being away or empty.
struct Outage {
    since: Instant,
    /// When it began, in ms since the epoch (to compare with the restore entry's time).
    since_ms: u64,
    last_said: Instant,
    /// Whether the store was seen to lose state (empty, or behind), not only unreachable.
    lost: bool,
    /// Whether this node wrote it back.
    restored: bool,
}

impl Restorer {
    /// Follows the store's health and revision until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut health = self.store.health();
        let mut revisions = self.store.watch();
        let mut outage: Option<Outage> = None;
        // API keys live in the store alone: how many there were is what a loss takes.
        let mut api_keys = 0;
        let mut count_keys = tokio::time::interval(COUNT_KEYS_EVERY);
        let mut health_reported = true;
        loop {
            let seen = health.borrow_and_update().clone();
            let stored = *revisions.borrow_and_update();
            let problem = match &seen {
                StoreHealth::Serving => self.behind(stored),
                StoreHealth::Unreachable(why) => {
                    Some(Problem::Away(format!("config store unreachable: {why}")))
                }
                StoreHealth::Empty => Some(Problem::Lost(
                    "config store is empty: restoring it from what the nodes run".to_string(),
                )),
            };
            match problem {
                None => {
                    if let Some(ended) = outage.take() {
                        self.recovered(ended).await;
                    }
                }
                Some(problem) => {
                    self.away(&mut outage, &problem);
                    let outage = outage.as_mut().expect("set by away");
                    if let Problem::Lost(_) = problem {
                        outage.lost = true;
                        if !outage.restored {
                            outage.restored = self.try_restore(api_keys).await;
                        }
                    }
                }
            }
            let serving = outage.is_none();
            tokio::select! {
                // A store that cannot lose its state (in memory) reports no health.
                changed = health.changed(), if health_reported => {
                    health_reported = changed.is_ok();
                }
                changed = revisions.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(RETRY_EVERY), if !serving => {}
                _ = count_keys.tick(), if serving => {
                    if let Ok(count) = self.store.api_key_count().await {
                        api_keys = count;
                        self.metrics.api_keys.set(count as i64);
                    }
                }
                _ = stop.cancelled() => return,
            }
        }
    }

    /// The problem when the store's revision `stored` is below the one this node runs: it lost
    /// changes (a failover to a replica that was behind).
    fn behind(&self, stored: u64) -> Option<Problem> {
        let ran = self.image.load().as_ref()?.revision;
        (stored < ran).then(|| {
            Problem::Lost(format!(
                "config store went back to revision {stored} (the node runs {ran}): restoring what the nodes run"
            ))
        })
    }

    /// Reports the store away (`/readyz`, the gauge) and says so in the log once, then at most
    /// every [`REMIND_EVERY`].
    fn away(&self, outage: &mut Option<Outage>, problem: &Problem) {
        // Said again when the store, away so far, turns out to have lost its state.
        let changed =
            matches!(problem, Problem::Lost(_)) && outage.as_ref().is_some_and(|o| !o.lost);
        let (Problem::Away(text) | Problem::Lost(text)) = problem;
        let problem = text.as_str();
        self.metrics.config_store_up.set(0);
        *self.admin.store_problem.lock() = Some(problem.to_string());
        let now = Instant::now();
        match outage {
            None => {
                tracing::warn!(
                    problem,
                    "the config store is away; the node keeps running its last state"
                );
                *outage = Some(Outage {
                    since: now,
                    since_ms: crate::util::now_ms(),
                    last_said: now,
                    lost: false,
                    restored: false,
                });
            }
            Some(outage) if changed || now - outage.last_said >= REMIND_EVERY => {
                tracing::warn!(problem, away_for = ?outage.since.elapsed(), "the config store is still away");
                outage.last_said = now;
            }
            Some(_) => {}
        }
    }

    /// The store answers with a config again: clear the problem, and check what a restore by
    /// another node wrote.
    async fn recovered(&self, outage: Outage) {
        self.metrics.config_store_up.set(1);
        *self.admin.store_problem.lock() = None;
        let took = outage.since.elapsed();
        if outage.restored {
            return tracing::info!(?took, "the config store is back");
        }
        // Another node may have restored it before this one saw it empty.
        let restored_meanwhile = match self.store.audit(RECENT_ENTRIES).await {
            Ok(newest) => newest.iter().any(|entry| {
                entry.action == RESTORE_ACTION
                    && entry.at_ms + CLOCK_SKEW.as_millis() as u64 >= outage.since_ms
            }),
            Err(_) => false,
        };
        if !outage.lost && !restored_meanwhile {
            return tracing::info!(?took, "the config store is back");
        }
        let Some(image) = self.image.load_full() else {
            return;
        };
        match self.matches(&image).await {
            Ok(None) => {
                self.count("followed");
                tracing::info!(
                    ?took,
                    "the config store was restored by another node and holds what this node runs"
                );
            }
            Ok(Some(difference)) => {
                self.count("differed");
                tracing::warn!(?took, difference, "the config store came back with another state than this node ran; the node now loads it");
            }
            Err(e) => tracing::warn!(error = %e, "cannot check the restored config store"),
        }
    }

    /// How the store differs from `image`, if it does.
    async fn matches(
        &self,
        image: &StoreImage,
    ) -> Result<Option<String>, crate::config::store::StoreError> {
        let current = self.store.current().await?;
        let mut registry = self.store.mappers().await?;
        let mut expected = image.mappers.clone();
        // Record revisions count changes of the record, which a restore does not repeat.
        for meta in registry.values_mut().chain(expected.values_mut()) {
            meta.revision = 0;
        }
        if image.current() != Some(&current) {
            let ran = image.current().map_or(0, |c| c.version);
            return Ok(Some(format!(
                "config version {} stored, {ran} run",
                current.version
            )));
        }
        if registry != expected {
            return Ok(Some("the mapper registry differs".to_string()));
        }
        Ok(None)
    }

    /// If elected, writes the image back; true once the store is restored by this node.
    /// `api_keys` is how many the store held before.
    async fn try_restore(&self, api_keys: usize) -> bool {
        let Some(image) = self.image.load_full() else {
            return false;
        };
        match self.store.lead_restore(&self.node_id, LEAD_FOR).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::debug!(error = %e, "cannot take the restore lock");
                return false;
            }
        }
        let started = Instant::now();
        let lost_modules = image.missing_modules();
        let lost_versions = image.missing_config_versions();
        let summary = summary(
            &self.node_id,
            &image,
            &lost_modules,
            lost_versions,
            api_keys,
        );
        let who = format!("node:{}", self.node_id);
        match self.store.restore(&image, &who, summary).await {
            Ok(Some(revision)) => {
                (self.reseed_keys)().await;
                let api_keys_lost = match self.store.api_key_count().await {
                    Ok(now) => api_keys.saturating_sub(now) as u64,
                    Err(_) => 0,
                };
                self.count("restored");
                let lost = &self.metrics.store_restore_lost;
                lost.with_label_values(&["module"])
                    .inc_by(lost_modules.len() as u64);
                lost.with_label_values(&["config_version"])
                    .inc_by(lost_versions);
                lost.with_label_values(&["audit"]).inc();
                lost.with_label_values(&["api_key"]).inc_by(api_keys_lost);
                tracing::warn!(
                    revision,
                    config_version = image.current().map_or(0, |c| c.version),
                    mappers = image.mappers.len(),
                    modules = image.modules.len(),
                    lost_modules = ?lost_modules,
                    lost_config_versions = lost_versions,
                    lost_api_keys = api_keys_lost,
                    took = ?started.elapsed(),
                    "restored the empty config store from what this node runs"
                );
                true
            }
            // Another node restored it (or an operator seeded it) meanwhile: once the store is
            // seen serving, this node checks what it holds.
            Ok(None) => false,
            Err(e) => {
                self.count("failed");
                tracing::warn!(error = %e, "cannot restore the config store; trying again");
                false
            }
        }
    }

    fn count(&self, result: &str) {
        self.metrics
            .store_restores
            .with_label_values(&[result])
            .inc();
    }
}

/// The `store.restore` audit entry's `after`: what was written back and what was lost.
fn summary(
    node_id: &str,
    image: &StoreImage,
    lost_modules: &[String],
    lost_config_versions: u64,
    api_keys: usize,
) -> serde_json::Value {
    let mappers: serde_json::Map<String, serde_json::Value> = image
        .mappers
        .values()
        .map(|meta| {
            let entry = json!({"versions": meta.versions.len(), "promoted": meta.promoted});
            (meta.name.clone(), entry)
        })
        .collect();
    json!({
        "restored_by": node_id,
        "from_revision": image.revision,
        "config_version": image.current().map_or(0, |c| c.version),
        "config_versions": image.configs.iter().map(|c| c.version).collect::<Vec<_>>(),
        "mappers": mappers,
        "modules": image.modules.len(),
        "lost": {
            "config_versions": lost_config_versions,
            "modules": lost_modules,
            "audit": "every entry before this one",
            "api_keys_before": api_keys,
            "listen_keys": "those no connection held",
        },
    })
}
