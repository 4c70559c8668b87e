//! The node's precompiled-mapper cache on disk: keyed by content hash and engine, loaded by a
//! new engine without the module's bytes, and a damaged entry is ignored, not trusted. Entries
//! carry a keyed hash (HMAC-SHA256 under the cache's own key): a tampered or unsigned entry is
//! not loaded, and a directory others can write is not used. Both tiers are bounded in bytes
//! and evict the least recently used entries, never those running routes use: a node pushed
//! 200 versions of a mapper stays within its bounds and still maps events.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
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

/// `module` with a custom section appended that carries `n`: another module (another hash)
/// that behaves the same.
fn version_of(module: &[u8], n: u32) -> Vec<u8> {
    fn leb128(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"wsgate-test-version";
    let mut section = Vec::new();
    leb128(name.len(), &mut section);
    section.extend_from_slice(name);
    section.extend_from_slice(&n.to_le_bytes());
    let mut versioned = module.to_vec();
    versioned.push(0); // custom section
    leb128(section.len(), &mut versioned);
    versioned.extend_from_slice(&section);
    versioned
}

/// The cache's own accounting, as a node exports it.
fn gauge(metrics: &wsgate::metrics::Metrics, name: &str, tier: &str) -> u64 {
    common::metric_value(
        &metrics.encode(),
        &format!("wsgate_{name}{{tier=\"{tier}\"}}"),
    ) as u64
}

#[test]
fn the_engine_cache_stays_within_its_bounds_and_keeps_what_is_in_use() {
    let module = std::fs::read(common::mappers_dir().join("binance_trade.wasm")).unwrap();
    let probe = MapperEngine::new(MapperLimits::default(), 4).unwrap();
    let cost = probe.compile(&module).unwrap().code_bytes as u64;
    // Room for three compiled versions in memory and on disk (an entry: 40 bytes of header).
    let limits = MapperLimits {
        cache_memory_bytes: 3 * cost,
        cache_disk_bytes: 3 * (cost + 40),
        ..MapperLimits::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = wsgate::metrics::Metrics::new();
    let engine = MapperEngine::with_cache(
        limits,
        4,
        Some(dir.path().to_path_buf()),
        wsgate::mapper::CacheMetrics::of(&metrics),
    )
    .unwrap();
    let versions: Vec<Vec<u8>> = (0..10).map(|n| version_of(&module, n)).collect();
    // Version 0 is held throughout, as a running route holds its mapper.
    let running = engine.compile(&versions[0]).unwrap();
    let mut hashes = vec![running.hash_hex()];
    for version in &versions[1..] {
        let compiled = engine.compile(version).unwrap();
        assert_eq!(compiled.code_bytes as u64, cost, "versions cost alike");
        hashes.push(compiled.hash_hex());
        drop(compiled);
        assert!(engine.memory_cache_bytes() <= 3 * cost);
        assert!(gauge(&metrics, "mapper_cache_bytes", "memory") <= 3 * cost);
        assert!(gauge(&metrics, "mapper_cache_bytes", "disk") <= 3 * (cost + 40));
        assert_eq!(
            cwasm_entries(dir.path()).len() as u64,
            gauge(&metrics, "mapper_cache_entries", "disk")
        );
    }
    assert_eq!(gauge(&metrics, "mapper_cache_entries", "memory"), 3);
    assert_eq!(gauge(&metrics, "mapper_cache_evictions_total", "memory"), 7);
    assert_eq!(gauge(&metrics, "mapper_cache_evictions_total", "disk"), 7);
    assert!(dir.path().join("cache.key").exists());

    // The version in use, oldest of all, is still a hit on the very same compiled mapper, in
    // memory and on disk.
    let found = engine
        .cached(&hashes[0], module.len())
        .expect("in use, still cached");
    assert!(std::sync::Arc::ptr_eq(&found, &running));
    assert!(cwasm_entries(dir.path()).iter().any(|entry| entry
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(&hashes[0])));
    // The two newest are on disk: a new engine (a restarted node) loads them.
    let restarted =
        MapperEngine::with_disk_cache(MapperLimits::default(), 4, dir.path().to_path_buf())
            .unwrap();
    assert!(restarted.cached(&hashes[9], module.len()).is_some());
    assert!(restarted.cached(&hashes[8], module.len()).is_some());
    // An evicted version is gone from both tiers; compiling its bytes again brings it back.
    assert!(engine.cached(&hashes[1], module.len()).is_none());
    assert_eq!(engine.compile(&versions[1]).unwrap().hash_hex(), hashes[1]);
    assert!(engine.cached(&hashes[1], module.len()).is_some());
    assert!(engine.memory_cache_bytes() <= 3 * cost);
}

/// What a compiled mapper costs the cache: its code image, the bytes its disk entry holds.
/// `cargo test --test mapper_cache -- --ignored --nocapture` prints it for every module in the
/// mappers directory (the Python and JavaScript ones take seconds each to compile).
#[test]
#[ignore = "compiles every shipped mapper, the large ones for seconds: run for the numbers"]
fn compiled_sizes_of_the_shipped_mappers() {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        MapperEngine::with_disk_cache(MapperLimits::default(), 4, dir.path().to_path_buf())
            .unwrap();
    for (name, bytes) in wsgate::mapper::modules_in_dir(&common::mappers_dir()).unwrap() {
        let compiled = engine.compile(&bytes).unwrap();
        let entry = cwasm_entries(dir.path())
            .into_iter()
            .find(|e| {
                e.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&compiled.hash_hex())
            })
            .expect("written to disk");
        let on_disk = std::fs::metadata(&entry).unwrap().len();
        assert_eq!(on_disk, compiled.code_bytes as u64 + 40, "{name}");
        println!(
            "{name}: module {} B, compiled code {} B",
            bytes.len(),
            compiled.code_bytes
        );
    }
}

/// A POST to the admin API (token `TEST_TOKEN`): status and body.
fn post(gateway: &common::Gateway, path: &str, body: &Value) -> (u16, String) {
    common::admin_send(gateway.admin, "POST", path, body)
}

/// What a run of [`push_versions`] saw.
struct PushRun {
    /// Largest `wsgate_mapper_cache_bytes` seen after any push, by tier (memory, disk).
    peak: (u64, u64),
    /// The same at the end.
    end: (u64, u64),
    /// `wsgate_mapper_cache_evictions_total` at the end, by tier.
    evictions: (u64, u64),
    /// `.cwasm` files in the cache directory at the end.
    disk_entries: usize,
    /// The node's RSS once started, and at the end, in bytes.
    rss: (u64, u64),
    /// How long the pushes took.
    took: Duration,
}

/// Starts an embedded node running only the trade route, with `bounds` (memory, disk) for its
/// compile cache, pushes `count` distinct versions of `binance_trade`, each promoted, then
/// checks that the last one runs and a client still receives trades.
async fn push_versions(count: u32, bounds: (u64, u64), cache: &std::path::Path) -> PushRun {
    let mut config = common::shipped_config();
    config["routes"]
        .as_array_mut()
        .unwrap()
        .retain(|route| route["id"] == "demo-trades");
    let (memory, disk) = (bounds.0.to_string(), bounds.1.to_string());
    let gateway = common::Gateway::start_with(
        config,
        &[
            "--admin-token",
            common::TEST_TOKEN,
            "--mapper-cache-dir",
            cache.to_str().unwrap(),
            "--mapper-cache-memory",
            &memory,
            "--mapper-cache-disk",
            &disk,
        ],
    );
    let module = std::fs::read(common::mappers_dir().join("binance_trade.wasm")).unwrap();
    let sample_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappers/samples/trade.json");
    let sample: Value =
        serde_json::from_str(&std::fs::read_to_string(sample_path).unwrap()).unwrap();
    let bytes = |gateway: &common::Gateway| {
        let (_, body) = gateway.http_get("/metrics").expect("metrics");
        let tier = |name: &str| {
            common::metric_value(
                &body,
                &format!("wsgate_mapper_cache_bytes{{tier=\"{name}\"}}"),
            ) as u64
        };
        (tier("memory"), tier("disk"))
    };
    let rss_started = gateway.rss_bytes();
    let started = Instant::now();
    let mut peak = (0, 0);
    for n in 1..=count {
        let body = json!({
            "module_base64": base64::engine::general_purpose::STANDARD.encode(version_of(&module, n)),
            "sample": sample,
            "notes": format!("version {n} of the cache test"),
            "promote": true,
        });
        let (status, answer) = post(&gateway, "/api/v1/mappers/binance_trade", &body);
        assert_eq!(status, 200, "push {n}: {answer}");
        let now = bytes(&gateway);
        peak = (peak.0.max(now.0), peak.1.max(now.1));
    }
    let took = started.elapsed();
    // Version 1 was seeded from the mappers directory: the last push is version count + 1.
    let last = format!("binance_trade@{}", count + 1);
    common::wait_for(&format!("the node to run {last}"), || {
        common::http_get_auth(gateway.admin, "/api/v1/status", common::TEST_TOKEN)
            .is_ok_and(|(_, body)| body.contains(&format!("\"{last}\"")))
    });
    let mut client = gateway.connect("/stream?streams=btcusdt@trade").await;
    let trades =
        common::collect_stream(&mut client, "btcusdt@trade", 3, Duration::from_secs(20)).await;
    assert!(trades.iter().all(|t| t["s"] == "BTCUSDT"), "{trades:?}");
    let evictions = |tier: &str| {
        gateway.metric(&format!(
            "wsgate_mapper_cache_evictions_total{{tier=\"{tier}\"}}"
        )) as u64
    };
    PushRun {
        peak,
        end: bytes(&gateway),
        evictions: (evictions("memory"), evictions("disk")),
        disk_entries: cwasm_entries(cache).len(),
        rss: (rss_started, gateway.rss_bytes()),
        took,
    }
}

fn report(label: &str, run: &PushRun) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "{label}: pushes took {:.1} s; cache memory peak {:.1} MiB, end {:.1} MiB; disk peak \
         {:.1} MiB, end {:.1} MiB ({} entries); evictions memory {} disk {}; node RSS {:.1} MiB started, {:.1} MiB after",
        run.took.as_secs_f64(),
        mib(run.peak.0),
        mib(run.end.0),
        mib(run.peak.1),
        mib(run.end.1),
        run.disk_entries,
        run.evictions.0,
        run.evictions.1,
        mib(run.rss.0),
        mib(run.rss.1)
    );
}

/// Compile cache bounds of the 200-push runs: seven compiled `binance_trade` versions (what is
/// in use at once: the route's two mappers, the version a push validates, the one a reload
/// swaps in, stays well below).
const SMALL_BOUND: u64 = 3 << 20;

#[tokio::test]
async fn two_hundred_pushes_keep_the_compile_cache_within_its_bounds() {
    let cache = tempfile::tempdir().unwrap();
    let run = push_versions(200, (SMALL_BOUND, SMALL_BOUND), cache.path()).await;
    report("bounded", &run);
    assert!(
        run.peak.0 <= SMALL_BOUND,
        "memory tier over its bound: {}",
        run.peak.0
    );
    assert!(
        run.peak.1 <= SMALL_BOUND,
        "disk tier over its bound: {}",
        run.peak.1
    );
    // 201 versions compiled (the seeded one and 200 pushed, each promoted), a handful kept.
    assert!(
        run.evictions.0 >= 190,
        "memory evictions: {}",
        run.evictions.0
    );
    assert!(
        run.evictions.1 >= 190,
        "disk evictions: {}",
        run.evictions.1
    );
    assert!(
        run.disk_entries <= 8,
        "{} entries on disk",
        run.disk_entries
    );
    assert!(cache.path().join("cache.key").exists());
}

/// The same run with bounds no cache reaches: what the node holds without eviction.
/// `cargo test --test mapper_cache -- --ignored --nocapture --test-threads=1 two_hundred`
/// prints both runs.
#[tokio::test]
#[ignore = "a measurement: the unbounded cache, for docs/benchmarks.md"]
async fn two_hundred_pushes_without_a_bound_for_comparison() {
    let cache = tempfile::tempdir().unwrap();
    let run = push_versions(200, (u64::MAX / 2, u64::MAX / 2), cache.path()).await;
    report("unbounded", &run);
    assert_eq!(run.evictions, (0, 0));
    // Every version compiled is still held: the seeded one and the 200 pushed.
    assert!(run.end.0 >= 201 * 300_000, "{} bytes", run.end.0);
    assert!(
        run.disk_entries >= 201,
        "{} entries on disk",
        run.disk_entries
    );
}
