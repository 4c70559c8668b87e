//! The wasmtime engine shared by every mapper: configuration, the linker, the epoch ticker that
//! bounds CPU time, and the compile cache keyed by content hash.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use anyhow::Context;
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::bindings::{EventMapper, EventMapperPre};
use super::host::HostState;
use super::ticker::EpochTicker;
use super::{LoadError, MapperLimits};

/// A module compiled and linked against the mapper world, ready to instantiate.
pub struct CompiledMapper {
    /// SHA-256 of the module bytes.
    pub hash: [u8; 32],
    /// Size of the module in bytes.
    pub size: usize,
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
    cache: Mutex<HashMap<[u8; 32], Arc<CompiledMapper>>>,
    limits: MapperLimits,
    ticker: EpochTicker,
    disk_cache: Option<std::path::PathBuf>,
}

impl MapperEngine {
    /// Builds the engine with a pooling allocator sized for `max_instances` live instances.
    pub fn new(limits: MapperLimits, max_instances: u32) -> anyhow::Result<Arc<Self>> {
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
        Ok(Arc::new(MapperEngine {
            engine,
            linker,
            cache: Mutex::new(HashMap::new()),
            limits,
            ticker,
            disk_cache: None,
        }))
    }

    /// Like [`new`](Self::new), keeping compiled modules in `dir` (created if missing) so a
    /// restarted node loads them without compiling. Entries are keyed by content hash and the
    /// engine's compatibility hash, so a wasmtime upgrade or another configuration never loads
    /// a stale artifact.
    pub fn with_disk_cache(
        limits: MapperLimits,
        max_instances: u32,
        dir: std::path::PathBuf,
    ) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the mapper cache {}", dir.display()))?;
        let mut engine = Arc::into_inner(Self::new(limits, max_instances)?).expect("fresh");
        engine.disk_cache = Some(dir);
        Ok(Arc::new(engine))
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
            return Ok(Arc::clone(compiled));
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
            return Some(Arc::clone(compiled));
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
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::World(format!("{e:#}")))?;
        let pre =
            EventMapperPre::new(instance_pre).map_err(|e| LoadError::World(format!("{e:#}")))?;
        let compiled = Arc::new(CompiledMapper { hash, size, pre });
        self.cache.lock().insert(hash, Arc::clone(&compiled));
        Ok(compiled)
    }

    fn disk_path(&self, hash: &[u8; 32]) -> Option<std::path::PathBuf> {
        let dir = self.disk_cache.as_ref()?;
        let mut engine_hash = std::hash::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let name = format!("{}-{:016x}.cwasm", hex::encode(hash), engine_hash.finish());
        Some(dir.join(name))
    }

    fn load_from_disk(&self, hash: &[u8; 32]) -> Option<Component> {
        let path = self.disk_path(hash).filter(|p| p.exists())?;
        // Read into memory rather than mapping the file: a mapped file truncated by someone
        // else would crash the process (SIGBUS) instead of failing a load.
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: the entry was written by `Component::serialize` of an engine with the same
        // compatibility hash (it is in the name), into a directory only nodes write; wasmtime
        // still checks its header and refuses anything else.
        match unsafe { Component::deserialize(&self.engine, &bytes) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a bad cache entry");
                None
            }
        }
    }

    fn save_to_disk(&self, hash: &[u8; 32], component: &Component) {
        if let Some(path) = self.disk_path(hash) {
            if let Err(e) = write_atomically(&path, component) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the mapper cache");
            }
        }
    }

    /// Reads and compiles a module file.
    pub fn compile_file(&self, path: &std::path::Path) -> Result<Arc<CompiledMapper>, LoadError> {
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            path: path.display().to_string(),
            error,
        })?;
        self.compile(&bytes)
    }
}

fn write_atomically(path: &std::path::Path, component: &Component) -> anyhow::Result<()> {
    let bytes = component.serialize()?;
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}
