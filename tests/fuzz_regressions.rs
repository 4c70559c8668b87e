//! The fuzz corpus as regression tests (`docs/fuzzing.md`): every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the same
//! `wsgate::fuzz_targets` function the fuzzer calls, and must not panic. Runs in plain
//! `cargo test`; the fuzzer itself is not needed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use wsgate::fuzz_targets::{self, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files in `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` over its corpus (which must not be empty) and its crash reproducers; fails
/// naming every input that panics.
fn replay(name: &str, target: fn(&[u8])) {
    let corpus = inputs(&fuzz_dir().join("corpus").join(name));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{name}/ holds no inputs: the corpus of fuzz target `{name}` is gone"
    );
    let regressions = inputs(&fuzz_dir().join("regressions").join(name));
    let failed: Vec<String> = corpus
        .iter()
        .chain(&regressions)
        .filter(|path| {
            let data = std::fs::read(path).expect("a readable corpus file");
            catch_unwind(AssertUnwindSafe(|| target(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "fuzz target `{name}` panics on {failed:?}"
    );
}

#[test]
fn frame_reader_replays_its_corpus() {
    replay("frame_reader", fuzz_targets::frame_reader);
}

#[test]
fn control_message_replays_its_corpus() {
    replay("control_message", fuzz_targets::control_message);
}

#[test]
fn connect_url_replays_its_corpus() {
    replay("connect_url", fuzz_targets::connect_url);
}

#[test]
fn config_validate_replays_its_corpus_and_the_billion_names_config() {
    replay("config_validate", fuzz_targets::config_validate);
    let reproducers = inputs(&fuzz_dir().join("regressions").join("config_validate"));
    assert!(!reproducers.is_empty(), "the expansion reproducer is gone");
}

#[test]
fn mapper_output_replays_its_corpus() {
    replay("mapper_output", fuzz_targets::mapper_output);
}

/// Every target has its fuzzer binary and a corpus, and every corpus folder names a target, so
/// a target added on one side only is noticed.
#[test]
fn every_target_has_a_binary_and_a_corpus() {
    for (name, _) in TARGETS {
        let binary = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(binary.is_file(), "no fuzzer binary {}", binary.display());
        let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml lacks [[bin]] {name}"
        );
    }
    for kind in ["corpus", "regressions"] {
        for entry in std::fs::read_dir(fuzz_dir().join(kind)).unwrap() {
            let folder = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                TARGETS.iter().any(|(name, _)| *name == folder),
                "fuzz/{kind}/{folder}/ belongs to no fuzz target"
            );
        }
    }
}
