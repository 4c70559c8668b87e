//! The mapper runtime: WebAssembly components (the `wit/mapper.wit` world) that turn upstream
//! events into client payloads, sandboxed and bounded in CPU time and memory.
//!
//! [`MapperEngine`] compiles each module once per content hash; a [`MapperInstance`] is a warm,
//! reused instance that maps batches and contains every failure (trap, timeout, memory cap,
//! malformed output) to the event that caused it.

mod cache;
mod disk_cache;
mod engine;
mod host;
mod instance;
pub mod sample;
mod ticker;

use std::time::Duration;

pub use cache::CacheMetrics;
pub use engine::{CompiledMapper, MapperEngine};
pub use host::Grants;
pub use instance::{check_outputs, EventOutcome, Failure, MapperInstance, Sandbox};

/// The WIT world every mapper implements, as recorded with each pushed version.
pub const WORLD: &str = "wsgate:mapper/event-mapper@0.1.0";

/// Generated bindings of the `event-mapper` world.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "event-mapper",
    });

    pub use exports::wsgate::mapper::mapper::Guest;
    pub use wsgate::mapper::types::{Event, Header, MapError, Output, SourceKind};
}

/// The memory cache's default bound (see `docs/benchmarks.md`, "Compiled-mapper cache").
pub const DEFAULT_CACHE_MEMORY_BYTES: u64 = 256 << 20;
/// The disk cache's default bound.
pub const DEFAULT_CACHE_DISK_BYTES: u64 = 1 << 30;

/// Limits every mapper call runs under, and the compile cache's bounds.
#[derive(Debug, Clone)]
pub struct MapperLimits {
    /// CPU time allowed per call, on top of the per-event allowance.
    pub call_timeout: Duration,
    /// Extra CPU time allowed per event in a batch.
    pub per_event_timeout: Duration,
    /// Largest linear memory an instance may grow to.
    pub max_memory_bytes: usize,
    /// Most outputs one event may produce.
    pub max_outputs_per_event: usize,
    /// Largest payload one output may carry.
    pub max_output_bytes: usize,
    /// Compiled code the cache keeps in memory, in bytes; only versions in use (held by running
    /// routes) are kept beyond it.
    pub cache_memory_bytes: u64,
    /// Compiled code the cache keeps on disk (with a cache directory), in bytes.
    pub cache_disk_bytes: u64,
}

impl Default for MapperLimits {
    fn default() -> Self {
        MapperLimits {
            call_timeout: Duration::from_millis(20),
            per_event_timeout: Duration::from_millis(2),
            max_memory_bytes: 64 << 20,
            max_outputs_per_event: 1024,
            max_output_bytes: 1 << 20,
            cache_memory_bytes: DEFAULT_CACHE_MEMORY_BYTES,
            cache_disk_bytes: DEFAULT_CACHE_DISK_BYTES,
        }
    }
}

/// Every `<name>.wasm` in `dir`, sorted by name: the modules an empty store is seeded with.
pub fn modules_in_dir(dir: &std::path::Path) -> Result<Vec<(String, Vec<u8>)>, LoadError> {
    let read_error = |error| LoadError::Read {
        path: dir.display().to_string(),
        error,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_error)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    paths.sort();
    let mut modules = Vec::new();
    for path in paths {
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let bytes = std::fs::read(&path).map_err(|error| LoadError::Read {
            path: path.display().to_string(),
            error,
        })?;
        modules.push((name.to_string(), bytes));
    }
    Ok(modules)
}

/// Why a module could not become a mapper.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a WebAssembly component, or it failed to compile.
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// A component, but not of the `wsgate:mapper` world (missing exports, unknown imports).
    #[error("component does not implement the wsgate:mapper/event-mapper world: {0}")]
    World(String),
    /// Reading the module failed.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
}
