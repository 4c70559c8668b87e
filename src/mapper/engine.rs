//! The wasmtime engine shared by every mapper: configuration, the linker, the epoch ticker that
//! bounds CPU time, and the compile cache keyed by content hash.
//!
//! The cache on disk holds native code, loaded without compiling: an entry is only trusted when
//! it carries the keyed hash (HMAC-SHA256) this cache's key gives its name and content, and the
//! cache is only used when nobody but the node's user can write it (see [`DiskCache`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use rand::RngCore;
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
    disk_cache: Option<DiskCache>,
    /// Cache entries refused because their tag did not verify.
    rejected: AtomicU64,
}

/// A compiled-mapper cache directory and the key its entries are tagged with.
///
/// An entry is `MAGIC`, then HMAC-SHA256(key, file name ‖ 0 ‖ artifact), then the artifact
/// (wasmtime's serialized component). The key is 32 random bytes in `<dir>/cache.key`, created
/// 0600 on first use. The directory is refused (the node compiles without a disk cache) when it
/// is not owned by the node's user or is writable by group or others, and so is a key file
/// that is not a regular file of the node's user readable by it alone.
struct DiskCache {
    dir: PathBuf,
    key: [u8; 32],
}

/// The first bytes of every cache entry (format version 1).
const MAGIC: &[u8; 8] = b"wsgmac1\0";
/// The tag's length.
const TAG: usize = 32;
/// The key file's name in the cache directory.
const KEY_FILE: &str = "cache.key";

impl DiskCache {
    /// Opens (creating it 0700 if missing) the cache in `dir`, or says why it cannot be trusted.
    fn open(dir: PathBuf) -> anyhow::Result<DiskCache> {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating the mapper cache {}", dir.display()))?;
        }
        let meta = std::fs::metadata(&dir)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() {
            bail!("it is not a directory");
        }
        if meta.uid() != me {
            bail!(
                "it is owned by uid {}, not this node's uid {me}",
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 {
            bail!(
                "it is writable by {} (mode {:o}); `chmod go-w` it",
                if meta.mode() & 0o002 != 0 {
                    "anyone"
                } else {
                    "its group"
                },
                meta.mode() & 0o7777
            );
        }
        let key = Self::key(&dir, me)?;
        Ok(DiskCache { dir, key })
    }

    /// The cache's key: read, or created 0600 by the first node that uses the directory (nodes
    /// sharing it race safely: the key is published with a hard link, which fails if another
    /// was first).
    fn key(dir: &Path, me: u32) -> anyhow::Result<[u8; 32]> {
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            let partial = dir.join(format!("{KEY_FILE}.partial-{}", std::process::id()));
            let _ = std::fs::remove_file(&partial);
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
                .and_then(|mut file| std::io::Write::write_all(&mut file, &key));
            let published = written.and_then(|()| std::fs::hard_link(&partial, &path));
            let _ = std::fs::remove_file(&partial);
            match published {
                Ok(()) => return Ok(key),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).context("creating the cache key"),
            }
        }
        let meta = std::fs::symlink_metadata(&path)?;
        if !meta.file_type().is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 {
            bail!(
                "its key {} must be a regular file of uid {me} with mode 0600",
                path.display()
            );
        }
        std::fs::read(&path)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("its key {} is not 32 bytes", path.display()))
    }

    /// The tag of an entry named `name` holding `artifact`.
    fn mac(&self, name: &str, artifact: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(artifact);
        mac
    }

    /// The artifact of an entry, if its tag verifies.
    fn verify<'a>(&self, name: &str, entry: &'a [u8]) -> Option<&'a [u8]> {
        let rest = entry.strip_prefix(MAGIC.as_slice())?;
        if rest.len() < TAG {
            return None;
        }
        let (tag, artifact) = rest.split_at(TAG);
        self.mac(name, artifact).verify_slice(tag).ok()?;
        Some(artifact)
    }

    /// An entry holding `artifact`, tagged.
    fn seal(&self, name: &str, artifact: &[u8]) -> Vec<u8> {
        let tag = self.mac(name, artifact).finalize().into_bytes();
        let mut entry = Vec::with_capacity(MAGIC.len() + TAG + artifact.len());
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&tag);
        entry.extend_from_slice(artifact);
        entry
    }
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
            rejected: AtomicU64::new(0),
        }))
    }

    /// Like [`new`](Self::new), keeping compiled modules in `dir` (created 0700 if missing) so a
    /// restarted node loads them without compiling. Entries are keyed by content hash and the
    /// engine's compatibility hash, so a wasmtime upgrade or another configuration never loads
    /// a stale artifact, and tagged with a keyed hash, so an entry this cache did not write is
    /// never loaded. A directory that others can write (or whose key is not the node's alone)
    /// is not used: the engine logs why and compiles without a disk cache.
    pub fn with_disk_cache(
        limits: MapperLimits,
        max_instances: u32,
        dir: std::path::PathBuf,
    ) -> anyhow::Result<Arc<Self>> {
        let mut engine = Arc::into_inner(Self::new(limits, max_instances)?).expect("fresh");
        match DiskCache::open(dir.clone()) {
            Ok(cache) => engine.disk_cache = Some(cache),
            Err(e) => tracing::warn!(
                dir = %dir.display(),
                error = %format!("{e:#}"),
                "mapper cache refused: compiling without it"
            ),
        }
        Ok(Arc::new(engine))
    }

    /// The cache directory in use, if any (`None` also when it was refused).
    pub fn disk_cache(&self) -> Option<&Path> {
        self.disk_cache.as_ref().map(|c| c.dir.as_path())
    }

    /// How many cache entries were refused because their tag did not verify (tampered, damaged,
    /// or not written by this cache); each was removed and its module compiled afresh.
    pub fn disk_cache_rejections(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
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

    /// The cache and the name of the entry of the module with this hash.
    fn disk_entry(&self, hash: &[u8; 32]) -> Option<(&DiskCache, String)> {
        let cache = self.disk_cache.as_ref()?;
        let mut engine_hash = std::hash::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let name = format!("{}-{:016x}.cwasm", hex::encode(hash), engine_hash.finish());
        Some((cache, name))
    }

    fn load_from_disk(&self, hash: &[u8; 32]) -> Option<Component> {
        let (cache, name) = self.disk_entry(hash)?;
        let path = cache.dir.join(&name);
        if !path.exists() {
            return None;
        }
        // Read into memory rather than mapping the file: a mapped file truncated by someone
        // else would crash the process (SIGBUS) instead of failing a load.
        let bytes = std::fs::read(&path).ok()?;
        let Some(artifact) = cache.verify(&name, &bytes) else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                path = %path.display(),
                "mapper cache entry failed verification (tampered, damaged or not written by \
                 this cache): not loaded, removed, compiled afresh"
            );
            let _ = std::fs::remove_file(&path);
            return None;
        };
        // SAFETY: the entry's tag verifies under this cache's key, so this engine's cache wrote
        // it with `Component::serialize` of an engine with the same compatibility hash (it is
        // in the name, which the tag covers); wasmtime still checks its header.
        match unsafe { Component::deserialize(&self.engine, artifact) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a bad cache entry");
                None
            }
        }
    }

    fn save_to_disk(&self, hash: &[u8; 32], component: &Component) {
        if let Some((cache, name)) = self.disk_entry(hash) {
            let path = cache.dir.join(&name);
            if let Err(e) = write_atomically(cache, &name, &path, component) {
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

fn write_atomically(
    cache: &DiskCache,
    name: &str,
    path: &Path,
    component: &Component,
) -> anyhow::Result<()> {
    let entry = cache.seal(name, &component.serialize()?);
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    // A file left by someone else under that name keeps its mode: make it the node's alone.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    std::io::Write::write_all(&mut file, &entry)?;
    drop(file);
    std::fs::rename(&partial, path)?;
    Ok(())
}
