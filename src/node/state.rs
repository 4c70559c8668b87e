//! The desired state of a node: the store's config, validated, with every mapping resolved to a
//! compiled mapper version and its sandbox.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use parking_lot::Mutex;

use crate::config::store::{ConfigStore, MapperMeta, MapperVersionMeta, StoreImage, Versioned};
use crate::config::{MapperRef, Mapping, Snapshot};
use crate::control::config_ops;
use crate::mapper::{CompiledMapper, Grants, MapperEngine, Sandbox};

use super::backends::Membership;
use super::interest::FanoutRule;

/// One mapping's mapper, resolved.
#[derive(Clone)]
pub struct ResolvedMapper {
    /// `name@version`, the label in logs and metrics.
    pub label: String,
    /// The compiled module.
    pub compiled: Arc<CompiledMapper>,
    /// Grants and limits from the version's manifest.
    pub sandbox: Sandbox,
}

impl ResolvedMapper {
    /// What identifies this mapper's behaviour: a mapping is swapped when this changes.
    pub fn identity(&self) -> (String, [u8; 32]) {
        (self.label.clone(), self.compiled.hash)
    }
}

/// A validated config with its mappers resolved.
pub struct Desired {
    /// Store revision this state was read at.
    pub revision: u64,
    /// Config version.
    pub version: u64,
    /// The validated config.
    pub snapshot: Snapshot,
    /// Per route id, one resolved mapper per mapping, in order.
    pub mappers: BTreeMap<String, Vec<ResolvedMapper>>,
    /// How every mapping of the whole config, this node's or not, names its outputs.
    pub fanout: Vec<FanoutRule>,
    /// The datasource whose routes publish each declared topic (by the topic's text), over the
    /// whole config: the delivery latency's `datasource` label.
    pub feeds: HashMap<String, String>,
    /// The store's state this was resolved from: what an emptied store is restored from.
    pub image: Arc<StoreImage>,
}

impl Desired {
    /// The resolved mappers of a route's mappings, with the mappings.
    pub fn route_mappers<'a>(
        &'a self,
        route_id: &str,
        mappings: &'a [Mapping],
    ) -> impl Iterator<Item = (&'a Mapping, &'a ResolvedMapper)> {
        mappings.iter().zip(self.mappers[route_id].iter())
    }
}

/// What a node needs to turn the store's state into a [`Desired`].
pub struct Resolver {
    /// The store.
    pub store: Arc<dyn ConfigStore>,
    /// The mapper engine (compiles, caches by hash in memory and on disk).
    pub engine: Arc<MapperEngine>,
    /// Capabilities the operator allows mappers to ask for.
    pub allowed_capabilities: Vec<String>,
    /// Which routes this node runs (in a cluster, those assigned to it).
    pub membership: Arc<dyn Membership>,
    /// What the node keeps of the store for a restore: the config versions it has run and the
    /// module bytes a restored registry needs.
    pub kept: Kept,
}

/// Config versions kept for a restore.
const KEPT_CONFIG_VERSIONS: usize = 32;

/// What a node keeps of the store beyond what it runs, so that it can write an emptied store
/// back: the last [`KEPT_CONFIG_VERSIONS`] config versions it loaded, and the bytes of every
/// module the whole cluster's config uses, of every mapper's promoted version and of the one a
/// rollback would move to.
#[derive(Default)]
pub struct Kept {
    configs: Mutex<Vec<Versioned>>,
    modules: Mutex<BTreeMap<String, Bytes>>,
}

impl Resolver {
    /// Reads the store and resolves it. Fails, changing nothing, when the stored config does not
    /// validate or a module cannot be loaded.
    pub async fn load(&self) -> anyhow::Result<Desired> {
        let revision = self.store.revision().await?;
        let current = self.store.current().await?;
        let registry = self.store.mappers().await?;
        let mut snapshot = config_ops::check(current.config.clone(), &registry)
            .map_err(|e| anyhow!("stored config version {}: {e}", current.version))?;
        let fanout = FanoutRule::all(&snapshot);
        let feeds = feeding_datasources(&snapshot.config);
        let image = self
            .image(revision, &current, &snapshot, registry.clone())
            .await?;
        self.membership.keep_own(&mut snapshot.config);
        let mut mappers = BTreeMap::new();
        for route in &snapshot.config.routes {
            let mut resolved = Vec::new();
            for mapping in &route.mappings {
                let reference = MapperRef::parse(&mapping.mapper).map_err(|e| anyhow!(e))?;
                let meta = config_ops::resolve(&registry, &reference)
                    .ok_or_else(|| anyhow!("mapper `{reference}` is not in the registry"))?;
                resolved.push(self.resolve(&reference, meta, &image).await?);
            }
            mappers.insert(route.id.clone(), resolved);
        }
        Ok(Desired {
            revision,
            version: current.version,
            snapshot,
            mappers,
            fanout,
            feeds,
            image: Arc::new(image),
        })
    }

    /// The image of the store this node keeps: `current` added to the kept config versions,
    /// and the module bytes a restore needs (fetched once per module).
    async fn image(
        &self,
        revision: u64,
        current: &Versioned,
        snapshot: &Snapshot,
        registry: BTreeMap<String, MapperMeta>,
    ) -> anyhow::Result<StoreImage> {
        let wanted = restorable_modules(snapshot, &registry);
        let mut modules = self.kept.modules.lock().clone();
        modules.retain(|hash, _| wanted.contains(hash));
        for hash in &wanted {
            if !modules.contains_key(hash) {
                if let Some(bytes) = self.store.module(hash).await? {
                    modules.insert(hash.clone(), bytes);
                }
            }
        }
        *self.kept.modules.lock() = modules.clone();
        let configs = {
            let mut configs = self.kept.configs.lock();
            configs.retain(|kept| kept.version < current.version);
            configs.push(current.clone());
            let excess = configs.len().saturating_sub(KEPT_CONFIG_VERSIONS);
            configs.drain(..excess);
            configs.clone()
        };
        Ok(StoreImage {
            revision,
            configs,
            mappers: registry,
            modules,
        })
    }

    async fn resolve(
        &self,
        reference: &MapperRef,
        meta: &MapperVersionMeta,
        image: &StoreImage,
    ) -> anyhow::Result<ResolvedMapper> {
        let label = format!("{}@{}", reference.name, meta.version);
        let compiled = self.compiled(meta, &label, image).await?;
        let (grants, refused) =
            Grants::resolve(&meta.manifest.capabilities, &self.allowed_capabilities);
        if !refused.is_empty() {
            tracing::warn!(mapper = %label, ?refused, "capabilities asked for but not allowed by --mapper-allow");
        }
        let sandbox = Sandbox {
            grants,
            call_timeout: meta.manifest.timeout_ms.map(Duration::from_millis),
            memory_bytes: meta.manifest.memory_bytes.map(|m| m as usize),
        };
        Ok(ResolvedMapper {
            label,
            compiled,
            sandbox,
        })
    }

    /// The compiled module with this hash: from the engine's caches, else compiled from the
    /// bytes the image holds or fetched.
    async fn compiled(
        &self,
        meta: &MapperVersionMeta,
        label: &str,
        image: &StoreImage,
    ) -> anyhow::Result<Arc<CompiledMapper>> {
        let hash = meta.hash.as_str();
        if let Some(compiled) = self.engine.cached(hash, meta.size as usize) {
            return Ok(compiled);
        }
        let bytes =
            match image.modules.get(hash) {
                Some(bytes) => bytes.clone(),
                None => self.store.module(hash).await?.ok_or_else(|| {
                    anyhow!("module {hash} of `{label}` is missing from the store")
                })?,
            };
        let engine = Arc::clone(&self.engine);
        let compiled = tokio::task::spawn_blocking(move || engine.compile(&bytes))
            .await
            .context("compile task")?
            .with_context(|| format!("compiling `{label}`"))?;
        if compiled.hash_hex() != hash {
            return Err(anyhow!(
                "module of `{label}` does not match its hash {hash}"
            ));
        }
        Ok(compiled)
    }
}

/// The modules a restored store needs: those every mapping of the whole config resolves to,
/// and each mapper's promoted version and the version a rollback would move to.
fn restorable_modules(
    snapshot: &Snapshot,
    registry: &BTreeMap<String, MapperMeta>,
) -> BTreeSet<String> {
    let mapped = snapshot
        .config
        .routes
        .iter()
        .flat_map(|route| &route.mappings)
        .filter_map(|mapping| {
            let reference = MapperRef::parse(&mapping.mapper).ok()?;
            config_ops::resolve(registry, &reference)
        });
    let promoted = registry.values().flat_map(|meta| {
        [meta.promoted, meta.promoted.saturating_sub(1)]
            .into_iter()
            .filter_map(|version| meta.version(version))
    });
    mapped.chain(promoted).map(|v| v.hash.clone()).collect()
}

/// The datasource whose routes publish each topic of `config` (by the topic's text); a topic
/// no route publishes is absent.
fn feeding_datasources(config: &crate::config::GatewayConfig) -> HashMap<String, String> {
    let mut feeds = HashMap::new();
    for route in &config.routes {
        for mapping in &route.mappings {
            feeds.insert(mapping.ws_topic.clone(), route.data_source.clone());
        }
    }
    feeds
}
