//! The `binance_trade` mapper written three times, in Rust (`mappers/binance_trade`), Python
//! (`mappers/python/binance_trade`) and JavaScript (`mappers/js/binance_trade`), run through the
//! real host (wasmtime, WIT lowering, output checks) on the golden events.
//!
//! - The Rust mapper's outcomes must equal `tests/golden/trade-outputs.json`, values and key
//!   order. After a deliberate change, regenerate that file with
//!   `WSGATE_BLESS=1 cargo test --test polyglot rust` and review its diff.
//! - The Python and JavaScript mappers must give the Rust mapper's outcome for every event:
//!   byte-identical payloads (so the same fields, field order and decimal strings), the same
//!   topic vars and user id, and an `invalid input` rejection where Rust rejects (the messages
//!   may differ).
//!
//! Needs the mappers built: `make mappers` (or `make test`), or `WSGATE_TEST_MAPPERS_DIR`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use wsgate::mapper::bindings::Event;
use wsgate::mapper::sample::{outcome_json, parse_samples};
use wsgate::mapper::{EventOutcome, Failure, MapperEngine, MapperInstance, MapperLimits};
use wsgate::metrics::Metrics;

const EVENTS: &str = "tests/golden/trade-events.json";
const OUTPUTS: &str = "tests/golden/trade-outputs.json";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Where `make mappers` puts the mappers, as in `tests/common/mod.rs`.
fn mappers_dir() -> PathBuf {
    std::env::var_os("WSGATE_TEST_MAPPERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_file("target/mappers"))
}

fn golden_events() -> Vec<Event> {
    let text = std::fs::read_to_string(repo_file(EVENTS)).unwrap();
    parse_samples(&text).unwrap()
}

/// The outcomes of `events` from the mapper in `file`, mapped as one batch and then one event
/// at a time on the same warm instance (which must agree). Prints compile and start-up times.
fn run(file: &str, events: &[Event]) -> Vec<EventOutcome> {
    let path = mappers_dir().join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): run `make mappers` (or `make test`) first",
            path.display()
        )
    });
    let engine = MapperEngine::new(MapperLimits::default(), 16).unwrap();
    let started = Instant::now();
    let compiled = engine
        .compile(&bytes)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let compile = started.elapsed();
    let mut mapper = MapperInstance::new(
        Arc::clone(&engine),
        compiled,
        file,
        Vec::new(),
        Arc::new(Metrics::new()),
    );
    // The first call instantiates the component and runs `init`; the second is warm.
    let started = Instant::now();
    let first = mapper.map_batch(&events[..1]);
    let cold = started.elapsed();
    let started = Instant::now();
    mapper.map_batch(&events[..1]);
    let warm = started.elapsed();
    assert!(
        matches!(&first[0], EventOutcome::Mapped(_)),
        "{file}: first event: {:?}",
        first[0]
    );
    eprintln!(
        "{file}: {} bytes, compiled in {compile:.2?}; first call (instantiate + init + 1 event) \
         {cold:.2?}, warm call {warm:.2?}",
        bytes.len()
    );

    let batch = mapper.map_batch(events);
    assert_eq!(batch.len(), events.len(), "{file}: one outcome per event");
    let one_by_one: Vec<EventOutcome> = events
        .iter()
        .flat_map(|event| mapper.map_batch(std::slice::from_ref(event)))
        .collect();
    let mismatches: Vec<String> = batch
        .iter()
        .zip(&one_by_one)
        .enumerate()
        .filter_map(|(i, (whole, single))| {
            compare(whole, single).map(|why| describe(i, &events[i], why, whole, single))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{file}: a batch and single events disagree:\n{}",
        mismatches.join("\n")
    );
    batch
}

/// Why `actual` is not the same outcome as `expected`, if it is not.
fn compare(expected: &EventOutcome, actual: &EventOutcome) -> Option<String> {
    match (expected, actual) {
        (EventOutcome::Mapped(want), EventOutcome::Mapped(got)) => {
            if want.len() != got.len() {
                return Some(format!("{} outputs instead of {}", got.len(), want.len()));
            }
            want.iter()
                .zip(got)
                .enumerate()
                .find_map(|(n, (want, got))| {
                    if want.payload != got.payload {
                        Some(format!(
                            "output {n}: payload\n      {}\n    instead of\n      {}",
                            got.payload, want.payload
                        ))
                    } else if want.topic_vars != got.topic_vars {
                        Some(format!(
                            "output {n}: topic vars {:?} instead of {:?}",
                            got.topic_vars, want.topic_vars
                        ))
                    } else if want.user_id != got.user_id {
                        Some(format!(
                            "output {n}: user id {:?} instead of {:?}",
                            got.user_id, want.user_id
                        ))
                    } else {
                        None
                    }
                })
        }
        (EventOutcome::Failed(want), EventOutcome::Failed(got))
            if is_invalid_input(want) && is_invalid_input(got) =>
        {
            None
        }
        _ => Some("different kind of outcome".to_string()),
    }
}

/// A `map-error.invalid-input` rejection (the message text is the mapper's own).
fn is_invalid_input(failure: &Failure) -> bool {
    matches!(failure, Failure::Rejected(why) if why.starts_with("invalid input: "))
}

fn describe(
    index: usize,
    event: &Event,
    why: String,
    expected: &EventOutcome,
    actual: &EventOutcome,
) -> String {
    let payload = String::from_utf8_lossy(&event.payload);
    let payload: String = payload.chars().take(160).collect();
    format!(
        "  event {index} (position {}): {why}\n    payload:  {payload}\n    expected: {}\n    actual:   {}",
        event.position,
        outcome_json(expected),
        outcome_json(actual),
    )
}

#[test]
fn rust_trade_mapper_matches_the_golden_outputs() {
    let events = golden_events();
    let outcomes: Vec<Value> = run("binance_trade.wasm", &events)
        .iter()
        .map(outcome_json)
        .collect();
    let path = repo_file(OUTPUTS);
    if std::env::var_os("WSGATE_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&outcomes).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
        eprintln!("wrote {}: review its diff", path.display());
        return;
    }
    let golden: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{OUTPUTS}: {e}"));
    assert_eq!(
        golden.len(),
        events.len(),
        "{OUTPUTS} has {} outcomes for {} events in {EVENTS}",
        golden.len(),
        events.len()
    );
    let mismatches: Vec<String> = outcomes
        .iter()
        .zip(&golden)
        .enumerate()
        // Equal values, and equal text so that key order counts too (`Value` equality ignores it).
        .filter(|(_, (got, want))| got != want || got.to_string() != want.to_string())
        .map(|(i, (got, want))| {
            let payload = String::from_utf8_lossy(&events[i].payload);
            let payload: String = payload.chars().take(160).collect();
            format!("  event {i}: {payload}\n    expected: {want}\n    actual:   {got}")
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "the Rust mapper's outcomes differ from {OUTPUTS} for {} of {} events \
         (after a deliberate change: `WSGATE_BLESS=1 cargo test --test polyglot rust`):\n{}",
        mismatches.len(),
        events.len(),
        mismatches.join("\n")
    );
}

fn same_as_rust(file: &str) {
    let events = golden_events();
    let rust = run("binance_trade.wasm", &events);
    let other = run(file, &events);
    let mismatches: Vec<String> = rust
        .iter()
        .zip(&other)
        .enumerate()
        .filter_map(|(i, (want, got))| {
            compare(want, got).map(|why| describe(i, &events[i], why, want, got))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{file} differs from binance_trade.wasm on {} of {} events in {EVENTS}:\n{}",
        mismatches.len(),
        events.len(),
        mismatches.join("\n")
    );
    // The golden events cover every kind of outcome.
    let count = |f: fn(&EventOutcome) -> bool| other.iter().filter(|o| f(o)).count();
    assert!(count(|o| matches!(o, EventOutcome::Mapped(out) if !out.is_empty())) >= 20);
    assert!(count(|o| matches!(o, EventOutcome::Mapped(out) if out.is_empty())) >= 3);
    assert!(count(|o| matches!(o, EventOutcome::Failed(_))) >= 3);
}

#[test]
fn python_trade_mapper_matches_the_rust_one() {
    same_as_rust("py_binance_trade.wasm");
}

#[test]
fn javascript_trade_mapper_matches_the_rust_one() {
    same_as_rust("js_binance_trade.wasm");
}
