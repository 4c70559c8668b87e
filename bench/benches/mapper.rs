//! Per-event cost of a mapper call, through the real host (wasmtime, WIT lowering, output
//! checks). Baseline in the same run: the `faulty` mapper in `echo` mode, which copies each event
//! out unchanged, so the difference is the cost of the mapping itself.
//!
//! The `polyglot_*` groups run the same `binance_trade` mapping written in Rust, Python
//! (componentize-py) and JavaScript (ComponentizeJS) on the same event.
//!
//! Needs the mappers built: `make mappers && cargo bench --bench mapper`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wsgate::mapper::bindings::{Event, SourceKind};
use wsgate::mapper::{CompiledMapper, EventOutcome, MapperEngine, MapperInstance, MapperLimits};
use wsgate::metrics::Metrics;

/// A demo `match` event with one fill: 200 bytes, the size the benchmarks quote.
const MATCH: &str = r#"{"type":"match","symbol":"BTCUSDT","ts_us":1767000000123456,"taker_order_id":1,"taker_side":"BUY","fills":[{"trade_id":51,"agg_id":201,"price":"67000.01000000","qty":"0.01200000","maker_order_id":1}]}"#;

fn event() -> Event {
    Event {
        source: "demo".into(),
        kind: SourceKind::Demo,
        channel: "trade.BTCUSDT".into(),
        key: Some(b"BTCUSDT".to_vec()),
        headers: Vec::new(),
        payload: MATCH.as_bytes().to_vec(),
        timestamp_us: 1_767_000_000_123_456,
        position: "1".into(),
    }
}

fn mappers_dir() -> PathBuf {
    let dir = std::env::var_os("WSGATE_TEST_MAPPERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/mappers"));
    assert!(
        dir.join("binance_trade.wasm").exists(),
        "run `make mappers` first"
    );
    dir
}

fn instance(engine: &Arc<MapperEngine>, file: &str, params: &[(&str, &str)]) -> MapperInstance {
    let compiled = engine.compile_file(&mappers_dir().join(file)).unwrap();
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    MapperInstance::new(
        Arc::clone(engine),
        compiled,
        file,
        params,
        Arc::new(Metrics::new()),
    )
}

fn per_event(c: &mut Criterion) {
    assert_eq!(MATCH.len(), 200, "the benchmark event is 200 bytes");
    let engine = MapperEngine::new(MapperLimits::default(), 16).unwrap();
    let mut group = c.benchmark_group("mapper_per_event");
    for (name, file, params) in [
        ("echo_baseline", "faulty.wasm", &[("mode", "echo")][..]),
        ("binance_trade", "binance_trade.wasm", &[][..]),
        ("binance_agg_trade", "binance_agg_trade.wasm", &[][..]),
    ] {
        let mut mapper = instance(&engine, file, params);
        for batch in [1usize, 16, 64] {
            let events: Vec<Event> = (0..batch).map(|_| event()).collect();
            let outcome = mapper.map_batch(&events);
            assert!(outcome
                .iter()
                .all(|o| matches!(o, EventOutcome::Mapped(out) if out.len() == 1)));
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("{name}/batch_{batch}"), |b| {
                b.iter_batched(
                    || events.clone(),
                    |events| mapper.map_batch(&events),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

fn compile(c: &mut Criterion) {
    let bytes = std::fs::read(mappers_dir().join("binance_trade.wasm")).unwrap();
    let mut group = c.benchmark_group("mapper_compile");
    group.sample_size(10);
    group.bench_function("binance_trade", |b| {
        b.iter_batched(
            || MapperEngine::new(MapperLimits::default(), 4).unwrap(),
            |engine| engine.compile(&bytes).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// The `binance_trade` mapping in each language: (label, module file).
const POLYGLOT: [(&str, &str); 3] = [
    ("rust", "binance_trade.wasm"),
    ("python", "py_binance_trade.wasm"),
    ("javascript", "js_binance_trade.wasm"),
];

/// The polyglot mappers that are built, compiled once (Python and JavaScript take seconds each,
/// printed). Missing ones are skipped with a note, and so are Python and JavaScript when the
/// benchmarks only run as tests (`cargo test --all-targets`), to spare those compiles.
fn polyglot_mappers(engine: &Arc<MapperEngine>) -> Vec<(&'static str, Arc<CompiledMapper>)> {
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    POLYGLOT
        .into_iter()
        .filter_map(|(name, file)| {
            let path = mappers_dir().join(file);
            if !path.exists() {
                eprintln!(
                    "note: skipping the {name} mapper: no {} (`make mappers` builds it)",
                    path.display()
                );
                return None;
            }
            if !benchmarking && name != "rust" {
                eprintln!("note: skipping the {name} mapper in test mode");
                return None;
            }
            let started = Instant::now();
            let compiled = engine.compile_file(&path).unwrap();
            eprintln!("{file}: compiled in {:.2?}", started.elapsed());
            Some((name, compiled))
        })
        .collect()
}

fn fresh(engine: &Arc<MapperEngine>, compiled: &Arc<CompiledMapper>, name: &str) -> MapperInstance {
    MapperInstance::new(
        Arc::clone(engine),
        Arc::clone(compiled),
        name,
        Vec::new(),
        Arc::new(Metrics::new()),
    )
}

/// Per-event time of the same mapping in Rust, Python and JavaScript, at batch sizes 1 and 16.
fn polyglot_per_event(c: &mut Criterion) {
    let engine = MapperEngine::new(MapperLimits::default(), 16).unwrap();
    let mut group = c.benchmark_group("polyglot_trade_per_event");
    for (name, compiled) in polyglot_mappers(&engine) {
        let mut mapper = fresh(&engine, &compiled, name);
        for batch in [1usize, 16] {
            let events: Vec<Event> = (0..batch).map(|_| event()).collect();
            let outcome = mapper.map_batch(&events);
            assert!(
                outcome
                    .iter()
                    .all(|o| matches!(o, EventOutcome::Mapped(out) if out.len() == 1)),
                "{name}: {outcome:?}"
            );
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("{name}/batch_{batch}"), |b| {
                b.iter_batched(
                    || events.clone(),
                    |events| mapper.map_batch(&events),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

/// A fresh instance of each: instantiate, `init`, and map one event (the instance is dropped
/// outside the timing).
fn polyglot_start(c: &mut Criterion) {
    let engine = MapperEngine::new(MapperLimits::default(), 16).unwrap();
    let mut group = c.benchmark_group("polyglot_trade_start");
    group.sample_size(20);
    let events = [event()];
    for (name, compiled) in polyglot_mappers(&engine) {
        group.bench_function(name, |b| {
            b.iter_batched(
                || fresh(&engine, &compiled, name),
                |mut mapper| {
                    let outcome = mapper.map_batch(&events);
                    assert!(matches!(&outcome[0], EventOutcome::Mapped(out) if out.len() == 1));
                    mapper
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    per_event,
    compile,
    polyglot_per_event,
    polyglot_start
);
criterion_main!(benches);
