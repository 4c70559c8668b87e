//! What a mapper costs before its first event: compiling a module (a cold node, or a push's
//! validation) against loading the node's precompiled disk cache (a restarted node), per module
//! in the mappers directory. Each figure is the median of several runs, with fresh engines so no
//! in-memory cache is involved.
//!
//! `make mappers && cargo bench --bench mapper_load` (set `WSGATE_TEST_MAPPERS_DIR` to use
//! another directory).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wsgate::mapper::{MapperEngine, MapperLimits};

/// Runs per module and path; the median is reported.
const RUNS: usize = 5;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // where a few seconds of compiling per module has no place.
    if !std::env::args().any(|a| a == "--bench") {
        println!("mapper_load: skipped (run it with `cargo bench --bench mapper_load`)");
        return;
    }
    // Anything else is a name filter.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let dir = std::env::var_os("WSGATE_TEST_MAPPERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/mappers"));
    let modules = wsgate::mapper::modules_in_dir(&dir).expect("run `make mappers` first");
    let limits = MapperLimits::default();
    println!(
        "{:<24} {:>10} {:>12} {:>12} {:>8}",
        "module", "size", "compile", "cache load", "speedup"
    );
    for (name, bytes) in modules {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let cache = tempfile::tempdir().expect("temporary directory");
        let mut compile = Vec::new();
        let mut load = Vec::new();
        // Compile runs are expensive for big modules: fewer of them.
        let compile_runs = if bytes.len() > 4 << 20 { 1 } else { RUNS };
        for _ in 0..compile_runs {
            let _ = std::fs::remove_dir_all(cache.path());
            let engine =
                MapperEngine::with_disk_cache(limits.clone(), 4, cache.path().to_path_buf())
                    .expect("engine");
            let started = Instant::now();
            engine.compile(&bytes).expect("module compiles");
            compile.push(started.elapsed());
        }
        for _ in 0..RUNS {
            let engine =
                MapperEngine::with_disk_cache(limits.clone(), 4, cache.path().to_path_buf())
                    .expect("engine");
            let started = Instant::now();
            engine.compile(&bytes).expect("module loads");
            load.push(started.elapsed());
        }
        let (compile, load) = (median(compile), median(load));
        println!(
            "{:<24} {:>9}K {:>10.1}ms {:>10.2}ms {:>7.0}x",
            name,
            bytes.len() / 1024,
            compile.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
            compile.as_secs_f64() / load.as_secs_f64()
        );
    }
}
