//! The wasmtime engine shared by every mapper: configuration, the linker, the epoch ticker that
//! bounds CPU time, and the compile cache keyed by content hash, in memory ([`MemoryCache`]) and
//! on disk ([`DiskCache`]), both bounded in bytes and evicting the least recently used entries.
//!
//! The cache on disk holds native code, loaded without compiling: an entry is only trusted when
//! it carries the keyed hash (HMAC-SHA256) this cache's key gives its name and content, and the
//! cache is only used when nobody but the node's user can write it (see [`DiskCache`]).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::bindings::{EventMapper, EventMapperPre};
use super::cache::{CacheMetrics, MemoryCache};
use super::disk_cache::DiskCache;
use super::host::HostState;
use super::ticker::EpochTicker;
use super::{LoadError, MapperLimits};

/// A module compiled and linked against the mapper world, ready to instantiate.
pub struct CompiledMapper {
    /// SHA-256 of the module bytes.
    pub hash: [u8; 32],
    /// Size of the module in bytes.
    pub size: usize,
    /// Size of its compiled code image in bytes: what it costs the cache.
    pub code_bytes: usize,
    pub(super) pre: EventMapperPre<HostState>,
}

impl CompiledMapper {
    /// The hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// The shared engine.
pub struct MapperEngine {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Mutex<MemoryCache<[u8; 32], CompiledMapper>>,
    limits: MapperLimits,
    ticker: EpochTicker,
    disk_cache: Option<DiskCache>,
    /// This engine's compatibility hash, part of every disk entry's name.
    engine_hash: u64,
    metrics: CacheMetrics,
}

impl MapperEngine {
    /// Builds the engine with a pooling allocator sized for `max_instances` live instances and
    /// a compile cache in memory bounded by `limits.cache_memory_bytes`.
    pub fn new(limits: MapperLimits, max_instances: u32) -> anyhow::Result<Arc<Self>> {
        Self::with_cache(limits, max_instances, None, CacheMetrics::default())
    }

    /// Like [`new`](Self::new), keeping compiled modules in `dir` too (see
    /// [`with_cache`](Self::with_cache)).
    pub fn with_disk_cache(
        limits: MapperLimits,
        max_instances: u32,
        dir: PathBuf,
    ) -> anyhow::Result<Arc<Self>> {
        Self::with_cache(limits, max_instances, Some(dir), CacheMetrics::default())
    }

    /// Builds the engine whose cache reports to `metrics`; with `dir`, compiled modules are
    /// also kept there (created 0700 if missing, bounded by `limits.cache_disk_bytes`) so a
    /// restarted node loads them without compiling. Entries are keyed by content hash and the
    /// engine's compatibility hash, so a wasmtime upgrade or another configuration never loads
    /// a stale artifact, and tagged with a keyed hash, so an entry this cache did not write is
    /// never loaded. A directory that others can write (or whose key is not the node's alone)
    /// is not used: the engine logs why and compiles without a disk cache.
    pub fn with_cache(
        limits: MapperLimits,
        max_instances: u32,
        dir: Option<PathBuf>,
        metrics: CacheMetrics,
    ) -> anyhow::Result<Arc<Self>> {
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_component_instances(max_instances)
            .total_core_instances(max_instances * 40)
            .total_memories(max_instances * 2)
            .total_tables(max_instances * 4)
            .max_core_instances_per_component(128)
            .max_memories_per_component(16)
            .max_tables_per_component(32)
            .max_memory_size(limits.max_memory_bytes);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            // Mappers are synchronous: the cheaper call path (≈140 ns instead of ≈600 ns).
            .concurrency_support(false)
            .cranelift_opt_level(OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        EventMapper::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
        let ticker = EpochTicker::start(engine.clone());
        let mut engine_hash = std::hash::DefaultHasher::new();
        engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let disk_cache = dir.and_then(|dir| {
            DiskCache::open(dir.clone(), limits.cache_disk_bytes, &metrics)
                .inspect_err(|e| {
                    tracing::warn!(
                        dir = %dir.display(),
                        error = %format!("{e:#}"),
                        "mapper cache refused: compiling without it"
                    )
                })
                .ok()
        });
        let cache = MemoryCache::new(limits.cache_memory_bytes, metrics.memory.clone());
        Ok(Arc::new(MapperEngine {
            engine,
            linker,
            cache: Mutex::new(cache),
            limits,
            ticker,
            disk_cache,
            engine_hash: engine_hash.finish(),
            metrics,
        }))
    }

    /// The cache directory in use, if any (`None` also when it was refused).
    pub fn disk_cache(&self) -> Option<&Path> {
        self.disk_cache.as_ref().map(DiskCache::dir)
    }

    /// How many cache entries were refused because their tag did not verify (tampered, damaged,
    /// or not written by this cache); each was removed and its module compiled afresh.
    pub fn disk_cache_rejections(&self) -> u64 {
        self.metrics.rejected.get()
    }

    /// Bytes of compiled code the cache holds in memory (entries in use included).
    pub fn memory_cache_bytes(&self) -> u64 {
        self.cache.lock().bytes()
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &MapperLimits {
        &self.limits
    }

    pub(super) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(super) fn ticker(&self) -> &EpochTicker {
        &self.ticker
    }

    /// Compiles `bytes` (or returns the cached result for the same content) and checks that it
    /// implements the mapper world.
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledMapper>, LoadError> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(compiled) = self.cache.lock().get(&hash) {
            return Ok(compiled);
        }
        let component = match self.load_from_disk(&hash) {
            Some(component) => component,
            None => {
                let component = Component::new(&self.engine, bytes)
                    .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
                self.save_to_disk(&hash, &component);
                component
            }
        };
        self.link(hash, bytes.len(), component)
    }

    /// The module with this SHA-256 (hex) if it was compiled before, in this process or (with a
    /// disk cache) by an earlier one; `None` means the bytes are needed.
    pub fn cached(&self, hash_hex: &str, size: usize) -> Option<Arc<CompiledMapper>> {
        let hash: [u8; 32] = hex::decode(hash_hex).ok()?.try_into().ok()?;
        if let Some(compiled) = self.cache.lock().get(&hash) {
            return Some(compiled);
        }
        let component = self.load_from_disk(&hash)?;
        self.link(hash, size, component).ok()
    }

    /// Links a compiled component against the mapper world and caches it.
    fn link(
        &self,
        hash: [u8; 32],
        size: usize,
        component: Component,
    ) -> Result<Arc<CompiledMapper>, LoadError> {
        let image = component.image_range();
        let code_bytes = image.end as usize - image.start as usize;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::World(format!("{e:#}")))?;
        let pre =
            EventMapperPre::new(instance_pre).map_err(|e| LoadError::World(format!("{e:#}")))?;
        let compiled = Arc::new(CompiledMapper {
            hash,
            size,
            code_bytes,
            pre,
        });
        Ok(self.cache.lock().insert(hash, compiled, code_bytes as u64))
    }

    fn load_from_disk(&self, hash: &[u8; 32]) -> Option<Component> {
        let cache = self.disk_cache.as_ref()?;
        let name = DiskCache::name(hash, self.engine_hash);
        let artifact = cache.load(&name)?;
        // SAFETY: the entry's tag verifies under this cache's key, so this engine's cache wrote
        // it with `Component::serialize` of an engine with the same compatibility hash (it is
        // in the name, which the tag covers); wasmtime still checks its header.
        match unsafe { Component::deserialize(&self.engine, &artifact) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(entry = %name, error = %e, "ignoring a bad cache entry");
                None
            }
        }
    }

    /// Writes the disk entry of a module just compiled; entries of modules in use stay.
    fn save_to_disk(&self, hash: &[u8; 32], component: &Component) {
        let Some(cache) = &self.disk_cache else {
            return;
        };
        let name = DiskCache::name(hash, self.engine_hash);
        let in_use: HashSet<String> = (self.cache.lock().in_use())
            .map(|hash| DiskCache::name(hash, self.engine_hash))
            .collect();
        let stored = match component.serialize() {
            Ok(artifact) => cache.store(&name, &artifact, &in_use),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
        if let Err(e) = stored {
            tracing::warn!(entry = %name, error = %e, "cannot write the mapper cache");
        }
    }

    /// Reads and compiles a module file.
    pub fn compile_file(&self, path: &Path) -> Result<Arc<CompiledMapper>, LoadError> {
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            path: path.display().to_string(),
            error,
        })?;
        self.compile(&bytes)
    }
}
