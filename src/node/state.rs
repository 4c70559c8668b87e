//! The desired state of a node: the store's config, validated, with every mapping resolved to a
//! compiled mapper version and its sandbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::config::store::{ConfigStore, MapperVersionMeta};
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
}

impl Resolver {
    /// Reads the store and resolves it. Fails, changing nothing, when the stored config does not
    /// validate or a module cannot be loaded.
    pub async fn load(&self) -> anyhow::Result<Desired> {
        let revision = self.store.revision().await?;
        let current = self.store.current().await?;
        let registry = self.store.mappers().await?;
        let mut snapshot = config_ops::check(current.config, &registry)
            .map_err(|e| anyhow!("stored config version {}: {e}", current.version))?;
        let fanout = FanoutRule::all(&snapshot);
        self.membership.keep_own(&mut snapshot.config);
        let mut mappers = BTreeMap::new();
        for route in &snapshot.config.routes {
            let mut resolved = Vec::new();
            for mapping in &route.mappings {
                let reference = MapperRef::parse(&mapping.mapper).map_err(|e| anyhow!(e))?;
                let meta = config_ops::resolve(&registry, &reference)
                    .ok_or_else(|| anyhow!("mapper `{reference}` is not in the registry"))?;
                resolved.push(self.resolve(&reference, meta).await?);
            }
            mappers.insert(route.id.clone(), resolved);
        }
        Ok(Desired {
            revision,
            version: current.version,
            snapshot,
            mappers,
            fanout,
        })
    }

    async fn resolve(
        &self,
        reference: &MapperRef,
        meta: &MapperVersionMeta,
    ) -> anyhow::Result<ResolvedMapper> {
        let label = format!("{}@{}", reference.name, meta.version);
        let compiled = self.compiled(meta, &label).await?;
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

    /// The compiled module with this hash: from the engine's caches, else fetched and compiled.
    async fn compiled(
        &self,
        meta: &MapperVersionMeta,
        label: &str,
    ) -> anyhow::Result<Arc<CompiledMapper>> {
        let hash = meta.hash.as_str();
        if let Some(compiled) = self.engine.cached(hash, meta.size as usize) {
            return Ok(compiled);
        }
        let bytes = self
            .store
            .module(hash)
            .await?
            .ok_or_else(|| anyhow!("module {hash} of `{label}` is missing from the store"))?;
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
