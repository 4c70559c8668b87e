//! The node's precompiled-mapper cache on disk: keyed by content hash and engine, loaded by a
//! new engine without the module's bytes, and a damaged entry is ignored, not trusted.

mod common;

use wsgate::mapper::{MapperEngine, MapperLimits};

fn cache_entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_compiled_module_is_loaded_from_disk_by_the_next_engine() {
    let bytes = std::fs::read(common::mappers_dir().join("binance_trade.wasm")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine =
        MapperEngine::with_disk_cache(MapperLimits::default(), 4, dir.path().to_path_buf())
            .unwrap();
    let hash = engine.compile(&bytes).unwrap().hash_hex();
    let entries = cache_entries(dir.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].starts_with(&hash) && entries[0].ends_with(".cwasm"));

    // A new engine (a restarted node) has it without the bytes.
    let restarted =
        MapperEngine::with_disk_cache(MapperLimits::default(), 4, dir.path().to_path_buf())
            .unwrap();
    let loaded = restarted
        .cached(&hash, bytes.len())
        .expect("loaded from disk");
    assert_eq!(loaded.hash_hex(), hash);
    // Without a disk cache, a new engine must compile.
    let cold = MapperEngine::new(MapperLimits::default(), 4).unwrap();
    assert!(cold.cached(&hash, bytes.len()).is_none());

    // A damaged entry is ignored; compiling again replaces it.
    let path = dir.path().join(&entries[0]);
    std::fs::write(&path, b"not a compiled module").unwrap();
    let after_damage =
        MapperEngine::with_disk_cache(MapperLimits::default(), 4, dir.path().to_path_buf())
            .unwrap();
    assert!(after_damage.cached(&hash, bytes.len()).is_none());
    assert_eq!(after_damage.compile(&bytes).unwrap().hash_hex(), hash);
    assert_ne!(std::fs::read(&path).unwrap(), b"not a compiled module");
}
