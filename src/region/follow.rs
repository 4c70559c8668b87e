//! A follower region's copy of the leader region's config store.
//!
//! Every node of a follower region (`--config-leader`) reads the leader's store whenever it
//! announces a new revision and at least every [`FOLLOW_EVERY`], and writes what differs into
//! its own region's store through the same compare-and-set calls an operator's change takes,
//! audited as `region.follow`: first the mapper registry (each version's module, then the
//! metadata with the promoted pointer), then the config, then the API keys. The region's nodes
//! then reload from their own store as after any change. Several nodes following at once is
//! safe: one write wins, the others find it done on their next look.
//!
//! The config is copied without the leader's ownership (`peer_id`): each region assigns its own
//! nodes. Entry versions are the leader's. When the leader cannot be read, the region keeps
//! running its last copy, and `wsgate_config_leader_up` is 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::{IntCounterVec, IntGauge};
use tokio_util::sync::CancellationToken;

use crate::config::secrets::redact_text;
use crate::config::store::{ApiKeyRecord, ConfigStore, MapperMeta, RedisStore, StoreError};
use crate::config::GatewayConfig;
use crate::control::config_ops;

/// How often the leader is read without an announcement.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// The audit action of a copied change.
const ACTION: &str = "region.follow";

/// Copies the leader region's store into this region's.
pub struct ConfigFollower {
    leader_url: String,
    prefix: String,
    local: Arc<dyn ConfigStore>,
    who: String,
    follows: IntCounterVec,
    leader_up: IntGauge,
}

impl ConfigFollower {
    /// A follower of the store at `leader_url` (keys under `prefix`) into `local`, writing as
    /// node `node`, counting copies on `follows` and the leader's health on `leader_up`.
    pub fn new(
        leader_url: &str,
        prefix: &str,
        local: Arc<dyn ConfigStore>,
        node: &str,
        follows: IntCounterVec,
        leader_up: IntGauge,
    ) -> Self {
        ConfigFollower {
            leader_url: leader_url.to_string(),
            prefix: prefix.to_string(),
            local,
            who: format!("follower:{node}"),
            follows,
            leader_up,
        }
    }

    /// Follows the leader until `stop`; connects (again) while it cannot be reached.
    pub async fn run(self, stop: CancellationToken) {
        let leader_name = redact_text(&self.leader_url).into_owned();
        let mut said_down = false;
        loop {
            let leader = match RedisStore::connect(&self.leader_url, &self.prefix).await {
                Ok(leader) => leader,
                Err(e) => {
                    self.leader_up.set(0);
                    if !said_down {
                        tracing::warn!(leader = %leader_name, error = %e, "cannot reach the leader region's config store; running the last copy");
                        said_down = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(FOLLOW_EVERY) => continue,
                        _ = stop.cancelled() => return,
                    }
                }
            };
            let mut announced = leader.watch();
            let mut ticks = tokio::time::interval(FOLLOW_EVERY);
            loop {
                match self.follow_once(&*leader).await {
                    Ok(()) => {
                        if said_down || self.leader_up.get() == 0 {
                            tracing::info!(leader = %leader_name, "following the leader region's config store");
                        }
                        said_down = false;
                        self.leader_up.set(1);
                    }
                    Err(e) => {
                        self.leader_up.set(0);
                        if !said_down {
                            tracing::warn!(leader = %leader_name, error = %format!("{e:#}"), "cannot copy the leader region's config store; running the last copy");
                            said_down = true;
                        }
                    }
                }
                tokio::select! {
                    _ = ticks.tick() => {}
                    changed = announced.changed() => if changed.is_err() { break },
                    _ = stop.cancelled() => return,
                }
            }
        }
    }

    /// One look at the leader: copies whatever differs.
    pub async fn follow_once(&self, leader: &dyn ConfigStore) -> anyhow::Result<()> {
        self.follow_mappers(leader).await.context("mappers")?;
        self.follow_config(leader).await.context("config")?;
        self.follow_keys(leader).await.context("API keys")
    }

    async fn follow_mappers(&self, leader: &dyn ConfigStore) -> anyhow::Result<()> {
        let local = self.local.mappers().await?;
        for (name, meta) in leader.mappers().await? {
            let here = local.get(&name);
            if here.is_some_and(|h| same_mapper(h, &meta)) {
                continue;
            }
            for version in &meta.versions {
                if self.local.module(&version.hash).await?.is_some() {
                    continue;
                }
                let module = leader.module(&version.hash).await?.with_context(|| {
                    format!("the leader lacks module {} of {name}", version.hash)
                })?;
                self.local.put_module(&version.hash, module).await?;
            }
            let replaces = here.map_or(0, |h| h.revision);
            if written(
                self.local
                    .update_mapper(replaces, meta, &self.who, ACTION)
                    .await,
            )? {
                tracing::info!(mapper = %name, "copied the leader region's mapper registry");
                self.follows.with_label_values(&["mapper"]).inc();
            }
        }
        Ok(())
    }

    async fn follow_config(&self, leader: &dyn ConfigStore) -> anyhow::Result<()> {
        let wanted = leader.current().await?.config;
        let current = self.local.current().await?;
        if comparable(&wanted) == comparable(&current.config) {
            return Ok(());
        }
        let mut config = wanted;
        // Each region assigns its own nodes: keep this region's owners of known routes.
        for route in &mut config.routes {
            route.peer_id = current
                .config
                .routes
                .iter()
                .find(|r| r.id == route.id && r.data_source == route.data_source)
                .and_then(|r| r.peer_id.clone());
        }
        let snapshot = config_ops::check(config, &self.local.mappers().await?)
            .map_err(|e| anyhow::anyhow!("the leader's config does not validate here: {e}"))?;
        let applied = self
            .local
            .apply(current.version, snapshot.config, &self.who, ACTION)
            .await;
        if written(applied)? {
            tracing::info!(
                replaced = current.version,
                "copied the leader region's config"
            );
            self.follows.with_label_values(&["config"]).inc();
        }
        Ok(())
    }

    async fn follow_keys(&self, leader: &dyn ConfigStore) -> anyhow::Result<()> {
        let local = self.local.api_keys().await?;
        for (key, record) in leader.api_keys().await? {
            let here = local.get(&key);
            if here.is_some_and(|h| same_key(h, &record)) {
                continue;
            }
            let secret = match here {
                None => leader.api_key_secret(&key).await?,
                Some(_) => None,
            };
            let replaces = here.map_or(0, |h| h.revision);
            let put = self
                .local
                .put_api_key(replaces, record, secret.as_deref(), &self.who, ACTION)
                .await;
            if written(put)? {
                self.follows.with_label_values(&["key"]).inc();
            }
        }
        Ok(())
    }
}

/// True when the write landed, false when another writer got there first.
fn written<T>(result: Result<T, StoreError>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(StoreError::Stale { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `config` without what differs between regions by design: entry versions and owners.
fn comparable(config: &GatewayConfig) -> GatewayConfig {
    let mut config = config.clone();
    config.datasource.iter_mut().for_each(|d| d.version = 0);
    config.topics.iter_mut().for_each(|t| t.version = 0);
    for route in &mut config.routes {
        route.version = 0;
        route.peer_id = None;
    }
    config
}

fn same_mapper(a: &MapperMeta, b: &MapperMeta) -> bool {
    (&a.name, &a.versions, a.promoted) == (&b.name, &b.versions, b.promoted)
}

fn same_key(a: &ApiKeyRecord, b: &ApiKeyRecord) -> bool {
    let strip = |r: &ApiKeyRecord| ApiKeyRecord {
        revision: 0,
        ..r.clone()
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::store::{MapperVersionMeta, MemoryStore};

    fn config(fanout: &str, peer: Option<&str>) -> GatewayConfig {
        let mut config = GatewayConfig::from_json(&format!(
            r#"{{"datasource": [{{"version": 1, "type": "demo", "name": "demo"}}],
                "topics": [{{"version": 1, "topic": "btcusdt@trade", "auth": "public"}}],
                "routes": [{{"id": "r", "version": 1, "data_source": "demo", "upstream": ["x"],
                             "mappings": [{{"mapper": "m", "fanout_topic": "{fanout}",
                                            "ws_topic": "btcusdt@trade"}}]}}]}}"#
        ))
        .unwrap();
        config.routes[0].peer_id = peer.map(str::to_string);
        config
    }

    fn mapper() -> MapperMeta {
        MapperMeta {
            name: "m".into(),
            versions: vec![MapperVersionMeta {
                version: 1,
                hash: "00".into(),
                size: 1,
                uploader: "test".into(),
                uploaded_at_ms: 0,
                world: "wsgate:mapper/event-mapper@0.1.0".into(),
                notes: String::new(),
                manifest: Default::default(),
            }],
            promoted: 1,
            revision: 0,
        }
    }

    fn follower(local: &Arc<dyn ConfigStore>) -> ConfigFollower {
        ConfigFollower::new(
            "redis://unused",
            "",
            Arc::clone(local),
            "b1",
            IntCounterVec::new(prometheus::Opts::new("f", "f"), &["what"]).unwrap(),
            IntGauge::new("u", "u").unwrap(),
        )
    }

    #[test]
    fn versions_and_owners_are_not_differences() {
        let mut other = config("md.t", Some("b1"));
        other.routes[0].version = 7;
        assert_eq!(comparable(&config("md.t", Some("a1"))), comparable(&other));
        assert_ne!(
            comparable(&config("md.t", None)),
            comparable(&config("md.u", None))
        );
    }

    #[tokio::test]
    async fn a_config_is_copied_with_this_regions_owners_once() {
        let leader = MemoryStore::new(config("md.new", Some("a1")));
        let local: Arc<dyn ConfigStore> = Arc::new(MemoryStore::new(config("md.old", Some("b1"))));
        local
            .update_mapper(0, mapper(), "test", "mapper.push")
            .await
            .unwrap();
        let follower = follower(&local);
        let before = local.current().await.unwrap().version;
        follower.follow_config(&leader).await.unwrap();
        let now = local.current().await.unwrap();
        let mut expected = config("md.new", Some("b1"));
        expected.routes[0].version = 1;
        assert_eq!((now.version, &now.config), (before + 1, &expected));
        // Nothing differs now: nothing is written again.
        follower.follow_config(&leader).await.unwrap();
        assert_eq!(local.current().await.unwrap().version, before + 1);
        let audit = local.audit(1).await.unwrap();
        assert_eq!(
            (audit[0].who.as_str(), audit[0].action.as_str()),
            ("follower:b1", ACTION)
        );
    }

    #[tokio::test]
    async fn a_config_the_local_registry_cannot_run_is_refused_and_changes_nothing() {
        let leader = MemoryStore::new(config("md.new", None));
        let local: Arc<dyn ConfigStore> = Arc::new(MemoryStore::new(config("md.old", None)));
        let before = local.current().await.unwrap();
        let e = follower(&local).follow_config(&leader).await.unwrap_err();
        assert!(format!("{e:#}").contains("does not validate"), "{e:#}");
        assert_eq!(local.current().await.unwrap(), before);
    }
}
