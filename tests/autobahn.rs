//! Autobahn|Testsuite against the gateway's framing: a real node serves the test echo endpoint
//! (`--test-echo-path`, the production session behind a dialect that echoes every message), the
//! suite's fuzzing client (`wstest -m fuzzingclient`, pinned in `tests/autobahn/requirements.txt`,
//! installed by `make test`) runs every case but the permessage-deflate ones (12.*, 13.*: the
//! gateway offers no compression), and every case must end OK, NON-STRICT or INFORMATIONAL, both
//! its behaviour and its closing behaviour. The HTML report is left in `target/autobahn-report/`
//! (docs/autobahn.md).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Gateway;
use serde_json::{json, Value};

/// The path the echo endpoint is served on.
const ECHO_PATH: &str = "/echo";

/// Largest message the suite sends (cases 9.1.6 and 9.2.6: 16 MiB).
const LARGEST_MESSAGE: usize = 16 << 20;

/// How long the whole suite may take before the test gives up on it.
const SUITE_LIMIT: Duration = Duration::from_secs(20 * 60);

/// Behaviours a case may end with.
const PASSING: [&str; 3] = ["OK", "NON-STRICT", "INFORMATIONAL"];

/// The fuzzing client: `WSGATE_TEST_WSTEST` (set by `make test`).
fn wstest() -> PathBuf {
    let wstest = std::env::var_os("WSGATE_TEST_WSTEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/autobahn-env/bin/wstest")
        });
    assert!(
        wstest.exists(),
        "{} is missing: run `make test` (it installs tests/autobahn/requirements.txt into a \
         Python 2.7 virtualenv)",
        wstest.display()
    );
    wstest
}

/// Where the report goes (outside git: `target/` is ignored).
fn report_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/autobahn-report")
}

/// A case id as numbers, so that 1.1.10 sorts after 1.1.9.
fn case_key(id: &str) -> Vec<u32> {
    id.split('.')
        .map(|n| n.parse().unwrap_or(u32::MAX))
        .collect()
}

/// Runs the fuzzing client `wstest` with `spec` in `dir`, its output in `dir/wstest.log`.
fn run_fuzzingclient(wstest: &Path, dir: &Path, spec: &Value) {
    let spec_path = dir.join("fuzzingclient.json");
    std::fs::write(&spec_path, serde_json::to_string_pretty(spec).unwrap()).unwrap();
    let log_path = dir.join("wstest.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(wstest)
        .args(["-m", "fuzzingclient", "-s"])
        .arg(&spec_path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting wstest");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > SUITE_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the fuzzing client did not finish in {SUITE_LIMIT:?}; its log:\n{}",
                tail(&log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "wstest failed ({status}); its log:\n{}",
        tail(&log_path)
    );
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Why a case failed, from its own report file: what it did and what it expected.
fn case_detail(dir: &Path, case: &Value) -> String {
    let Some(file) = case["reportfile"].as_str() else {
        return String::new();
    };
    let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
        return String::new();
    };
    let report: Value = serde_json::from_str(&text).unwrap_or_default();
    let mut detail = report["description"].as_str().unwrap_or("").to_string();
    for field in ["result", "resultClose"] {
        if let Some(text) = report[field].as_str() {
            detail.push_str(&format!("\n      {field}: {text}"));
        }
    }
    detail
}

#[test]
fn autobahn_fuzzingclient_every_case_passes() {
    let wstest = wstest();
    let max_message = LARGEST_MESSAGE.to_string();
    // Room for the echo of the largest message among the connection's queued replies.
    let reply_bytes = (4 * LARGEST_MESSAGE).to_string();
    let gateway = Gateway::start(&[
        "--test-echo-path",
        ECHO_PATH,
        "--max-message-bytes",
        &max_message,
        "--reply-bytes",
        &reply_bytes,
    ]);
    let dir = report_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spec = json!({
        "outdir": dir,
        "servers": [{ "agent": "wsgate", "url": gateway.url(ECHO_PATH) }],
        "cases": ["*"],
        // permessage-deflate: the gateway offers no compression.
        "exclude-cases": ["12.*", "13.*"],
        "exclude-agent-cases": {},
    });
    let started = Instant::now();
    run_fuzzingclient(&wstest, &dir, &spec);
    let took = started.elapsed();

    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("index.json")).expect("the report's index.json"),
    )
    .expect("index.json is JSON");
    let cases = index["wsgate"]
        .as_object()
        .expect("the report has the wsgate agent's cases");
    let mut cases: Vec<(&String, &Value)> = cases.iter().collect();
    cases.sort_by_key(|(id, _)| case_key(id));
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut close_counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failing = Vec::new();
    for (id, case) in &cases {
        let behavior = case["behavior"].as_str().unwrap_or("?");
        let close = case["behaviorClose"].as_str().unwrap_or("?");
        *counts.entry(behavior).or_default() += 1;
        *close_counts.entry(close).or_default() += 1;
        let allowed = |b: &str| {
            PASSING.contains(&b)
                || (b == "UNIMPLEMENTED" && (id.starts_with("12.") || id.starts_with("13.")))
        };
        if !allowed(behavior) || !allowed(close) {
            failing.push(format!(
                "  {id}: {behavior} / close {close} (remote close code {}): {}",
                case["remoteCloseCode"],
                case_detail(&dir, case)
            ));
        }
    }
    println!(
        "Autobahn|Testsuite: {} cases in {:.0?}; behaviour: {counts:?}; closing behaviour: \
         {close_counts:?}; report: {}",
        cases.len(),
        took,
        dir.join("index.html").display()
    );
    // Every case of sections 1 to 10 ran (about 300): an empty or cut report passes nothing.
    assert!(
        cases.len() >= 290,
        "only {} cases in the report; wstest's log:\n{}",
        cases.len(),
        tail(&dir.join("wstest.log"))
    );
    assert!(
        failing.is_empty(),
        "{} of {} Autobahn cases failed (report: {}):\n{}",
        failing.len(),
        cases.len(),
        dir.join("index.html").display(),
        failing.join("\n")
    );
}
