//! The mapper lifecycle: push (validated before anything is stored), promote and rollback.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ControlError;
use crate::config::store::{ConfigStore, MapperManifest, MapperMeta, MapperVersionMeta};
use crate::config::MapperRef;
use crate::mapper::bindings::Event;
use crate::mapper::{sample, EventOutcome, MapperEngine, MapperInstance, WORLD};
use crate::metrics::Metrics;
use crate::util::now_ms;

/// Compare-and-set attempts before a push gives up on a busy registry.
const CAS_ATTEMPTS: usize = 8;

/// A push request.
pub struct Push {
    /// Mapper name (`[A-Za-z0-9_-]{1,64}`).
    pub name: String,
    /// The component's bytes.
    pub module: Bytes,
    /// Sample events (the `wsgate::mapper::sample` format) the module must map without error.
    pub sample: String,
    /// Params passed to `init` for the smoke call.
    pub params: Vec<(String, String)>,
    /// Free text kept with the version.
    pub notes: String,
    /// Capabilities and limits the mapper asks for.
    pub manifest: MapperManifest,
    /// Promote the new version at once (the first version of a name always is).
    pub promote: bool,
}

/// What a push stored.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    /// The new version's metadata.
    pub version: MapperVersionMeta,
    /// The promoted version after the push.
    pub promoted: u32,
    /// The smoke call's outputs, one entry per sample event.
    pub smoke: Vec<serde_json::Value>,
}

/// Validates and stores a new mapper version: the module must compile as a component of the
/// mapper world, its manifest must ask only for known capabilities, and it must map every
/// sample event without a trap, timeout, error or malformed output. Nothing is stored otherwise.
pub async fn push(
    store: &dyn ConfigStore,
    engine: &Arc<MapperEngine>,
    push: Push,
    who: &str,
) -> Result<Pushed, ControlError> {
    MapperRef::parse(&push.name).map_err(ControlError::BadRequest)?;
    check_manifest(&push.manifest)?;
    let events = sample::parse_samples(&push.sample).map_err(ControlError::BadRequest)?;
    let smoke = smoke_test(engine, &push.module, &push.params, &events).await?;
    let hash = hex::encode(Sha256::digest(&push.module));
    store.put_module(&hash, push.module.clone()).await?;
    for _ in 0..CAS_ATTEMPTS {
        let existing = store.mappers().await?.remove(&push.name);
        let replaces = existing.as_ref().map_or(0, |m| m.revision);
        let mut meta = existing.unwrap_or_else(|| MapperMeta {
            name: push.name.clone(),
            versions: Vec::new(),
            promoted: 0,
            revision: 0,
        });
        let version = MapperVersionMeta {
            version: meta.versions.len() as u32 + 1,
            hash: hash.clone(),
            size: push.module.len() as u64,
            uploader: who.to_string(),
            uploaded_at_ms: now_ms(),
            world: WORLD.to_string(),
            notes: push.notes.clone(),
            manifest: push.manifest.clone(),
        };
        meta.versions.push(version.clone());
        if push.promote || meta.promoted == 0 {
            meta.promoted = version.version;
        }
        let promoted = meta.promoted;
        match store
            .update_mapper(replaces, meta, who, "mapper.push")
            .await
        {
            Ok(_) => {
                return Ok(Pushed {
                    version,
                    promoted,
                    smoke,
                })
            }
            Err(crate::config::store::StoreError::Stale { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ControlError::Conflict(format!(
        "mapper `{}` changed {CAS_ATTEMPTS} times during the push; try again",
        push.name
    )))
}

/// Compiles `module` and maps `events` on a fresh instance; every event must map cleanly.
/// Returns each event's outputs as JSON.
pub async fn smoke_test(
    engine: &Arc<MapperEngine>,
    module: &Bytes,
    params: &[(String, String)],
    events: &[Event],
) -> Result<Vec<serde_json::Value>, ControlError> {
    let engine = Arc::clone(engine);
    let module = module.clone();
    let params = params.to_vec();
    let events = events.to_vec();
    tokio::task::spawn_blocking(move || {
        let compiled = engine
            .compile(&module)
            .map_err(|e| ControlError::BadMapper(e.to_string()))?;
        let metrics = Arc::new(Metrics::new());
        let mut instance = MapperInstance::new(engine, compiled, "smoke-test", params, metrics);
        let outcomes = instance.map_batch(&events);
        let mut results = Vec::with_capacity(outcomes.len());
        for (i, outcome) in outcomes.iter().enumerate() {
            if let EventOutcome::Failed(failure) = outcome {
                return Err(ControlError::BadMapper(format!(
                    "smoke call failed on sample event {i}: {} ({failure:?})",
                    failure.kind()
                )));
            }
            results.push(sample::outcome_json(outcome));
        }
        Ok(results)
    })
    .await
    .map_err(|e| ControlError::Internal(format!("smoke test task: {e}")))?
}

fn check_manifest(manifest: &MapperManifest) -> Result<(), ControlError> {
    for capability in &manifest.capabilities {
        let known = capability == "clock"
            || capability
                .strip_prefix("env:")
                .is_some_and(|name| !name.is_empty());
        if !known {
            return Err(ControlError::BadRequest(format!(
                "manifest.capabilities: unknown capability `{capability}` (known: clock, env:NAME; \
                 filesystem and network are never granted)"
            )));
        }
    }
    if manifest.timeout_ms == Some(0) {
        return Err(ControlError::BadRequest(
            "manifest.timeout_ms: must be positive".into(),
        ));
    }
    if manifest.memory_bytes.is_some_and(|m| m < 1 << 16) {
        return Err(ControlError::BadRequest(
            "manifest.memory_bytes: must be at least 65536 (one page)".into(),
        ));
    }
    Ok(())
}

/// Points `name` at `version`, which must exist (audited as `action`).
pub async fn promote(
    store: &dyn ConfigStore,
    name: &str,
    version: u32,
    who: &str,
    action: &str,
) -> Result<MapperMeta, ControlError> {
    for _ in 0..CAS_ATTEMPTS {
        let Some(mut meta) = store.mappers().await?.remove(name) else {
            return Err(ControlError::NotFound(format!("mapper `{name}`")));
        };
        if meta.version(version).is_none() {
            return Err(ControlError::NotFound(format!(
                "mapper `{name}` has no version {version} (it has 1..={})",
                meta.versions.len()
            )));
        }
        let replaces = meta.revision;
        meta.promoted = version;
        match store
            .update_mapper(replaces, meta.clone(), who, action)
            .await
        {
            Ok(revision) => {
                meta.revision = revision;
                return Ok(meta);
            }
            Err(crate::config::store::StoreError::Stale { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ControlError::Conflict(format!(
        "mapper `{name}` is changing too often; try again"
    )))
}

/// Moves `name`'s pointer back: to `version`, or to the version just below the promoted one.
pub async fn rollback(
    store: &dyn ConfigStore,
    name: &str,
    version: Option<u32>,
    who: &str,
) -> Result<MapperMeta, ControlError> {
    let target = match version {
        Some(version) => version,
        None => {
            let meta = store
                .mappers()
                .await?
                .remove(name)
                .ok_or_else(|| ControlError::NotFound(format!("mapper `{name}`")))?;
            if meta.promoted <= 1 {
                return Err(ControlError::Conflict(format!(
                    "mapper `{name}` is at version {}: there is no earlier version",
                    meta.promoted
                )));
            }
            meta.promoted - 1
        }
    };
    promote(store, name, target, who, "mapper.rollback").await
}

/// Registers `module` as version 1 of `name` when the registry has no such name: how an empty
/// store is seeded from a directory of modules the operator ships with the node. Seeding does not
/// compile (a big module takes seconds, and most seeded mappers may never be used); a module is
/// compiled and checked against the mapper world when a route first uses it. Returns false when
/// the name already existed (another node may have seeded it first).
pub async fn seed(
    store: &dyn ConfigStore,
    name: &str,
    module: Bytes,
    who: &str,
) -> Result<bool, ControlError> {
    MapperRef::parse(name).map_err(ControlError::BadRequest)?;
    if store.mappers().await?.contains_key(name) {
        return Ok(false);
    }
    let hash = hex::encode(Sha256::digest(&module));
    store.put_module(&hash, module.clone()).await?;
    let meta = MapperMeta {
        name: name.to_string(),
        versions: vec![MapperVersionMeta {
            version: 1,
            hash,
            size: module.len() as u64,
            uploader: who.to_string(),
            uploaded_at_ms: now_ms(),
            world: WORLD.to_string(),
            notes: "seeded from the node's mappers directory".to_string(),
            manifest: MapperManifest::default(),
        }],
        promoted: 1,
        revision: 0,
    };
    match store.update_mapper(0, meta, who, "mapper.push").await {
        Ok(_) => Ok(true),
        Err(crate::config::store::StoreError::Stale { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
