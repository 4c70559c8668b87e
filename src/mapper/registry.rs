//! The mapper registry of an embedded node: every `*.wasm` in a directory becomes version 1 of
//! the mapper named after the file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::engine::{CompiledMapper, MapperEngine};
use super::LoadError;
use crate::config::MapperRef;

/// One version of a mapper.
#[derive(Clone)]
pub struct MapperVersion {
    /// Mapper name.
    pub name: String,
    /// Version number, from 1.
    pub version: u32,
    /// The compiled module.
    pub compiled: Arc<CompiledMapper>,
}

impl MapperVersion {
    /// `name@version`, the label used in logs and metrics.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Mapper names, their ordered versions and the promoted one.
#[derive(Default, Clone)]
pub struct MapperRegistry {
    mappers: BTreeMap<String, Entry>,
}

#[derive(Clone)]
struct Entry {
    versions: Vec<MapperVersion>,
    promoted: u32,
}

impl MapperRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        MapperRegistry::default()
    }

    /// Compiles every `*.wasm` in `dir` as version 1 of the mapper named after the file stem.
    pub fn load_dir(engine: &MapperEngine, dir: &Path) -> Result<Self, LoadError> {
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
        let mut registry = MapperRegistry::new();
        for path in paths {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let compiled = engine.compile_file(&path)?;
            tracing::info!(mapper = %name, hash = %compiled.hash_hex(), size = compiled.size, "mapper loaded");
            registry.add(&name, compiled);
        }
        Ok(registry)
    }

    /// Appends a new version of `name` and promotes it; returns its number.
    pub fn add(&mut self, name: &str, compiled: Arc<CompiledMapper>) -> u32 {
        let entry = self.mappers.entry(name.to_string()).or_insert(Entry {
            versions: Vec::new(),
            promoted: 0,
        });
        let version = entry.versions.len() as u32 + 1;
        entry.versions.push(MapperVersion {
            name: name.to_string(),
            version,
            compiled,
        });
        entry.promoted = version;
        version
    }

    /// The version a reference names: pinned, or the promoted one.
    pub fn resolve(&self, reference: &MapperRef) -> Option<&MapperVersion> {
        let entry = self.mappers.get(&reference.name)?;
        let version = reference.version.unwrap_or(entry.promoted);
        entry.versions.get(version.checked_sub(1)? as usize)
    }

    /// Mapper names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.mappers.keys().map(String::as_str)
    }
}
