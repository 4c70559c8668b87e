//! The node's precompiled-mapper cache on disk: keyed by content hash and engine, loaded by a
//! new engine without the module's bytes, and a damaged entry is ignored, not trusted. Entries
//! carry a keyed hash (HMAC-SHA256 under the cache's own key): a tampered or unsigned entry is
//! not loaded, and a directory others can write is not used.

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
    let entries: Vec<String> = cache_entries(dir.path())
        .into_iter()
        .filter(|name| name.ends_with(".cwasm"))
        .collect();
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

/// The `.cwasm` entries of a cache directory (beside them: the cache's key).
fn cwasm_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    cache_entries(dir)
        .into_iter()
        .filter(|name| name.ends_with(".cwasm"))
        .map(|name| dir.join(name))
        .collect()
}

/// Flips one byte in the middle of a file (inside the compiled code, not its headers).
fn flip_a_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_tampered_entry_is_not_loaded_and_the_module_is_compiled_afresh() {
    let bytes = std::fs::read(common::mappers_dir().join("binance_trade.wasm")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = || {
        MapperEngine::with_disk_cache(MapperLimits::default(), 4, dir.path().to_path_buf()).unwrap()
    };
    let hash = cache().compile(&bytes).unwrap().hash_hex();
    let entries = cwasm_entries(dir.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    let good = std::fs::read(entry).unwrap();

    // One byte changed in the compiled code: a valid artifact to wasmtime, but not what this
    // node wrote. It is not loaded, it is counted and removed, and compiling writes it anew.
    flip_a_byte(entry);
    let engine = cache();
    assert!(
        engine.cached(&hash, bytes.len()).is_none(),
        "a tampered cache entry was loaded"
    );
    assert_eq!(engine.disk_cache_rejections(), 1);
    assert!(!entry.exists(), "the tampered entry is still there");
    assert_eq!(engine.compile(&bytes).unwrap().hash_hex(), hash);
    assert!(entry.exists());
    assert!(cache().cached(&hash, bytes.len()).is_some());

    // An entry without this cache's tag (an artifact planted or left by an older node) is
    // refused too: here, the good artifact's bytes under another module's name.
    let other = entry.with_file_name(format!(
        "{}{}",
        "0".repeat(64),
        &entry.file_name().unwrap().to_string_lossy()[64..]
    ));
    std::fs::write(&other, &good).unwrap();
    let engine = cache();
    assert!(engine.cached(&"0".repeat(64), bytes.len()).is_none());
    assert_eq!(engine.disk_cache_rejections(), 1);
}

#[test]
fn a_cache_directory_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let bytes = std::fs::read(common::mappers_dir().join("binance_trade.wasm")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let engine =
        MapperEngine::with_disk_cache(MapperLimits::default(), 4, dir.path().to_path_buf())
            .unwrap();
    assert!(
        engine.disk_cache().is_none(),
        "a world-writable cache is used"
    );
    engine.compile(&bytes).unwrap();
    assert!(cwasm_entries(dir.path()).is_empty());

    // A cache directory wsgate creates is its own: 0700.
    let created = dir.path().join("new/cache");
    let engine =
        MapperEngine::with_disk_cache(MapperLimits::default(), 4, created.clone()).unwrap();
    assert_eq!(engine.disk_cache(), Some(created.as_path()));
    let mode = std::fs::metadata(&created).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn a_node_does_not_load_a_tampered_entry_and_still_serves() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().to_str().unwrap().to_string();
    let args = ["--mapper-cache-dir", dir.as_str()];
    drop(common::Gateway::start(&args));
    let entries = cwasm_entries(cache.path());
    assert!(!entries.is_empty(), "the node cached nothing");
    for entry in &entries {
        flip_a_byte(entry);
    }
    let gateway = common::Gateway::start(&args);
    let log = gateway.log();
    assert!(
        log.contains("mapper cache entry failed verification"),
        "no rejection logged:\n{log}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = gateway.connect("/stream?streams=btcusdt@trade").await;
        let trades = common::collect_stream(
            &mut client,
            "btcusdt@trade",
            1,
            std::time::Duration::from_secs(20),
        )
        .await;
        assert_eq!(trades[0]["s"], "BTCUSDT");
    });
    // Compiled afresh, the entries were written again, valid.
    for entry in &entries {
        assert!(entry.exists(), "{} not rewritten", entry.display());
    }
}
