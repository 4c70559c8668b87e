//! Operator workflows against a real node through the `wsgate` CLI and its admin API: config
//! apply/diff/history/rollback with validation, mapper push/promote/rollback with refusal of bad
//! modules, a hot swap under load that clients cannot see except in the payload format, and
//! automatic rollback of a failing version.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{
    collect_stream, mappers_dir, next_json, shipped_config, wait_for, without_rate_limits,
    CliOutput, Gateway,
};
use serde_json::{json, Value};

fn token_args() -> Vec<&'static str> {
    vec!["--admin-token", common::TEST_TOKEN]
}

fn write_temp(dir: &tempfile::TempDir, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn sample_path() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("mappers/samples/trade.json")
        .display()
        .to_string()
}

fn module(name: &str) -> String {
    mappers_dir().join(name).display().to_string()
}

/// `wsgate mapper push binance_trade FILE --sample <trade sample> EXTRA...`.
fn push_trade_mapper(gateway: &Gateway, file: &str, extra: &[&str]) -> CliOutput {
    let sample = sample_path();
    let mut args = vec!["mapper", "push", "binance_trade", file, "--sample", &sample];
    args.extend_from_slice(extra);
    gateway.cli(&args)
}

fn assert_refused(output: &CliOutput, needle: &str) {
    assert!(!output.ok, "expected a refusal, got success: {output:?}");
    assert!(
        output.stderr.contains(needle),
        "the error should mention `{needle}`: {}",
        output.stderr
    );
}

/// `wsgate config get`: the current config and its version.
fn current_config(gateway: &Gateway) -> Value {
    let out = gateway.cli(&["config", "get"]);
    assert!(out.ok, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap()
}

/// One trade from `btcusdt@trade` on a raw stream connection.
async fn trades_flow(gateway: &Gateway) {
    let mut client = gateway.connect("/ws/btcusdt@trade").await;
    let trade = next_json(&mut client, Duration::from_secs(10)).await;
    assert_eq!(trade["e"], "trade");
}

#[tokio::test]
async fn bad_configs_are_refused_naming_the_field_and_change_nothing() {
    let gateway = Gateway::start(&token_args());
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    let mut bad = shipped_config();
    bad["routes"][0]["data_source"] = json!("nope");
    cases.push((bad, "routes[0].data_source"));
    let mut bad = shipped_config();
    bad["topics"][0]["rate"] = json!(0);
    cases.push((bad, "topics[0].rate"));
    let mut bad = shipped_config();
    bad["datasource"][0]["properties"]["colour"] = json!("blue");
    cases.push((bad, "datasource[0].properties"));
    let mut bad = shipped_config();
    bad["routes"][0]["mappings"][0]["mapper"] = json!("binance_trade@9");
    cases.push((bad, "routes[0].mappings[0].mapper"));
    let mut bad = shipped_config();
    bad["routes"][0]["mappings"][0]["ws_topic"] = json!("{symbol@trade");
    cases.push((bad, "routes[0].mappings[0].ws_topic"));
    for (i, (config, field)) in cases.iter().enumerate() {
        let file = write_temp(&dir, &format!("bad{i}.json"), config.to_string().as_bytes());
        let out = gateway.cli(&["config", "apply", file.to_str().unwrap()]);
        assert_refused(&out, field);
    }
    let unparsable = write_temp(&dir, "unparsable.json", b"{\"datasource\": 7}");
    assert_refused(
        &gateway.cli(&["config", "apply", unparsable.to_str().unwrap()]),
        "invalid config",
    );
    assert_eq!(current_config(&gateway)["version"], 1);
    let history = gateway.cli(&["config", "history"]);
    assert!(
        history.ok && !history.stdout.contains("config.apply"),
        "{history:?}"
    );
    trades_flow(&gateway).await;
}

#[tokio::test]
async fn apply_diff_stale_writers_history_and_rollback() {
    let gateway = Gateway::start(&token_args());
    let dir = tempfile::tempdir().unwrap();
    let original = current_config(&gateway)["config"].clone();

    // A change: one more topic. `diff` shows it without applying it.
    let mut changed = original.clone();
    changed["topics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"version": 1, "topic": "btcusdt@avgPrice"}));
    let file = write_temp(&dir, "changed.json", changed.to_string().as_bytes());
    let diff = gateway.cli(&["config", "diff", file.to_str().unwrap()]);
    assert!(diff.ok, "{diff:?}");
    assert!(
        diff.stdout.contains("+ topic btcusdt@avgPrice"),
        "{}",
        diff.stdout
    );
    assert_eq!(current_config(&gateway)["version"], 1);

    // `apply` answers once this node runs the new version, so a client can use it at once.
    let applied = gateway.cli(&["config", "apply", file.to_str().unwrap(), "--replaces", "1"]);
    assert!(applied.ok, "{applied:?}");
    assert!(
        applied.stdout.contains("applied as version 2"),
        "{}",
        applied.stdout
    );
    assert!(!applied.stderr.contains("warning"), "{applied:?}");
    // A second writer that read version 1 is refused, at the document and at the entry level.
    let stale = gateway.cli(&["config", "apply", file.to_str().unwrap(), "--replaces", "1"]);
    assert_refused(&stale, "stale");
    let mut entry_stale = changed.clone();
    entry_stale["routes"][0]["upstream"] = json!(["trade.BTCUSDT"]);
    entry_stale["routes"][0]["version"] = json!(0);
    let file2 = write_temp(&dir, "entry-stale.json", entry_stale.to_string().as_bytes());
    assert_refused(
        &gateway.cli(&["config", "apply", file2.to_str().unwrap()]),
        "routes[0].version",
    );

    // The new topic is live: a client may subscribe to it now.
    let mut client = gateway.connect("/ws").await;
    let reply = common::request(
        &mut client,
        json!({"method": "SUBSCRIBE", "params": ["btcusdt@avgPrice"], "id": 1}),
    )
    .await;
    assert_eq!(reply, json!({"result": null, "id": 1}));

    // Rollback restores version 1's content exactly, as version 3.
    let rollback = gateway.cli(&["config", "rollback", "1"]);
    assert!(rollback.ok, "{rollback:?}");
    assert!(
        rollback.stdout.contains("as version 3"),
        "{}",
        rollback.stdout
    );
    let now = current_config(&gateway);
    assert_eq!(now["version"], 3);
    assert_eq!(now["config"], original);

    let history = gateway.cli(&["config", "history"]);
    assert!(history.ok, "{history:?}");
    let lines: Vec<&str> = history.stdout.lines().collect();
    assert!(
        lines[0].contains("config.rollback") && lines[0].contains("2 -> 3"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("config.apply") && lines[1].contains("1 -> 2"),
        "{lines:?}"
    );
    assert!(lines[1].contains("tester"), "{lines:?}");
}

/// `config get > f` then `config apply f` (or `diff f`) works: the file `get` prints is taken as
/// it is, and the version in it guards the apply.
#[tokio::test]
async fn what_config_get_prints_applies_back_guarded_by_its_version() {
    let gateway = Gateway::start(&token_args());
    let dir = tempfile::tempdir().unwrap();
    let got = gateway.cli(&["config", "get"]);
    assert!(got.ok, "{got:?}");
    let file = write_temp(&dir, "got.json", got.stdout.as_bytes());
    let file = file.to_str().unwrap();
    let diff = gateway.cli(&["config", "diff", file]);
    assert!(diff.ok, "{diff:?}");
    let same = gateway.cli(&["config", "apply", file]);
    assert!(same.ok, "{same:?}");
    assert!(same.stdout.contains("no change"), "{}", same.stdout);

    // Someone else moves the store on: the file read at version 1 is now stale.
    let mut changed = current_config(&gateway)["config"].clone();
    changed["topics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"version": 1, "topic": "btcusdt@avgPrice"}));
    let other = write_temp(&dir, "other.json", changed.to_string().as_bytes());
    assert!(
        gateway
            .cli(&["config", "apply", other.to_str().unwrap()])
            .ok
    );
    assert_refused(&gateway.cli(&["config", "apply", file]), "stale");
    assert_eq!(current_config(&gateway)["version"], 2);
}

#[tokio::test]
async fn an_apply_the_node_cannot_run_is_stored_with_a_warning_naming_why() {
    let gateway = Gateway::start(&token_args());
    let dir = tempfile::tempdir().unwrap();
    let mut config = current_config(&gateway)["config"].clone();
    config["topics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"version": 1, "topic": "btcusdt@avgPrice"}));
    // Valid as a config, but the mapper's `init` refuses the parameter when the node starts it.
    config["routes"].as_array_mut().unwrap().push(json!({
        "id": "broken", "version": 1, "data_source": "demo", "upstream": ["trade.BTCUSDT"],
        "mappings": [{"mapper": "faulty", "params": {"mode": "bogus"},
                      "fanout_topic": "md.btcusdt.avg", "ws_topic": "btcusdt@avgPrice"}]
    }));
    let file = write_temp(&dir, "broken.json", config.to_string().as_bytes());
    let applied = gateway.cli(&["config", "apply", file.to_str().unwrap()]);
    assert!(applied.ok, "{applied:?}");
    assert!(
        applied.stdout.contains("applied as version 2"),
        "{applied:?}"
    );
    assert!(
        applied.stderr.contains("this node does not run it")
            && applied.stderr.contains("fails to start"),
        "{applied:?}"
    );
    // The node keeps running version 1, and says why.
    let (_, status) =
        common::http_get_auth(gateway.admin, "/api/v1/status", common::TEST_TOKEN).unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["config_version"], 1, "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("faulty")),
        "{status}"
    );
    trades_flow(&gateway).await;
}

#[tokio::test]
async fn bad_mappers_are_refused_and_nothing_is_stored() {
    let gateway = Gateway::start(&token_args());
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = write_temp(&dir, "not.wasm", b"[package]\nname = \"x\"\n");
    // A valid, empty component: it compiles but exports nothing of the mapper world.
    let empty_component = write_temp(&dir, "empty.wasm", b"\0asm\x0d\x00\x01\x00");
    let push = |file: &str, extra: &[&str]| push_trade_mapper(&gateway, file, extra);
    assert_refused(
        &push(not_wasm.to_str().unwrap(), &[]),
        "not a valid WebAssembly component",
    );
    assert_refused(
        &push(empty_component.to_str().unwrap(), &[]),
        "does not implement the wsgate:mapper/event-mapper world",
    );
    assert_refused(
        &push(&module("faulty.wasm"), &["--param", "mode=trap"]),
        "smoke call failed on sample event 0: trap",
    );
    let bad_sample = write_temp(&dir, "sample.json", b"[]");
    let out = gateway.cli(&[
        "mapper",
        "push",
        "binance_trade",
        &module("tagged_trade.wasm"),
        "--sample",
        bad_sample.to_str().unwrap(),
    ]);
    assert_refused(&out, "no event");

    let show = gateway.cli(&["mapper", "show", "binance_trade"]);
    let meta: Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(meta["versions"].as_array().unwrap().len(), 1, "{meta}");
    let history = gateway.cli(&["config", "history"]);
    assert!(!history.stdout.contains("tester"), "{}", history.stdout);
    trades_flow(&gateway).await;
}

/// A config whose demo market makes `events_per_sec` match events per second over five symbols,
/// with only the trade route.
fn busy_trades_config(takers_per_symbol: u32, params: Value) -> Value {
    let mut config = shipped_config();
    // Thousands of trades a second: past the shipped per-connection limit.
    without_rate_limits(&mut config);
    config["datasource"][0]["properties"] = json!({
        "trades_per_sec": takers_per_symbol,
        "book_updates_per_sec": 1,
        "seed": 11,
    });
    let routes = config["routes"].as_array().unwrap().clone();
    let mut trade_route = routes
        .into_iter()
        .find(|r| r["id"] == "demo-trades")
        .expect("the shipped config has a trade route");
    trade_route["mappings"] = json!([{
        "mapper": "binance_trade",
        "fanout_topic": "md.{symbol}.trade",
        "ws_topic": "{symbol}@trade",
        "params": params,
    }]);
    config["routes"] = json!([trade_route]);
    config
}

#[tokio::test]
async fn hot_swap_under_load_switches_format_at_one_event_boundary() {
    let gateway = Gateway::start_with(busy_trades_config(2_400, json!({})), &token_args());
    let mut client = gateway.connect("/stream?streams=btcusdt@trade").await;
    let started = Instant::now();
    let events_before = gateway.metric("wsgate_source_events_total");
    let mut seen: Vec<Value> =
        collect_stream(&mut client, "btcusdt@trade", 200, Duration::from_secs(20)).await;

    let push = push_trade_mapper(
        &gateway,
        &module("tagged_trade.wasm"),
        &["--promote", "--notes", "tagged format"],
    );
    assert!(push.ok, "{push:?}");
    let tagged = |v: &Value| v.get("mapper").is_some();
    while !seen.iter().any(tagged) {
        seen.extend(collect_stream(&mut client, "btcusdt@trade", 1, Duration::from_secs(20)).await);
    }
    seen.extend(collect_stream(&mut client, "btcusdt@trade", 200, Duration::from_secs(20)).await);

    let rollback = gateway.cli(&["mapper", "rollback", "binance_trade"]);
    assert!(rollback.ok, "{rollback:?}");
    assert!(
        rollback.stdout.contains("binance_trade@1"),
        "{}",
        rollback.stdout
    );
    while tagged(seen.last().unwrap()) {
        seen.extend(collect_stream(&mut client, "btcusdt@trade", 1, Duration::from_secs(20)).await);
    }
    seen.extend(collect_stream(&mut client, "btcusdt@trade", 200, Duration::from_secs(20)).await);
    let rate = (gateway.metric("wsgate_source_events_total") - events_before)
        / started.elapsed().as_secs_f64();

    // No gap and no repeat: trade ids are consecutive across both swaps.
    for pair in seen.windows(2) {
        assert_eq!(
            pair[1]["t"].as_u64().unwrap(),
            pair[0]["t"].as_u64().unwrap() + 1,
            "trade ids must be consecutive: {} then {}",
            pair[0],
            pair[1]
        );
    }
    // The format switches exactly twice: untagged, then tagged, then untagged again.
    let switches = seen
        .windows(2)
        .filter(|p| tagged(&p[0]) != tagged(&p[1]))
        .count();
    assert_eq!(
        switches, 2,
        "the format must switch at exactly one event boundary each way"
    );
    assert!(!tagged(&seen[0]) && !tagged(seen.last().unwrap()));
    assert!(
        rate >= 10_000.0,
        "the load must be at least 10,000 events/s through the mapper, was {rate:.0}"
    );
    assert_eq!(gateway.metric("wsgate_mapper_swaps_total"), 2.0);
    assert_eq!(
        gateway.metric("wsgate_messages_dropped_total{reason=\"route_backlog\"}"),
        0.0
    );
}

#[tokio::test]
async fn a_failing_promoted_version_is_rolled_back_automatically() {
    // The live mapping passes `mode=trap`: binance_trade ignores it, the faulty module obeys it.
    let config = busy_trades_config(20, json!({"mode": "trap"}));
    let mut args = token_args();
    args.extend([
        "--mapper-auto-rollback",
        "0.5",
        "--mapper-auto-rollback-min-events",
        "20",
        "--mapper-auto-rollback-window",
        "1s",
    ]);
    let gateway = Gateway::start_with(config, &args);
    trades_flow(&gateway).await;
    // Passes its smoke call (echo mode), then traps on every live event.
    let push = push_trade_mapper(
        &gateway,
        &module("faulty.wasm"),
        &["--param", "mode=echo", "--promote"],
    );
    assert!(push.ok, "{push:?}");
    wait_for("an automatic rollback", || {
        gateway.metric("wsgate_mapper_auto_rollbacks_total") >= 1.0
    });
    let history = gateway.cli(&["config", "history", "--limit", "1"]);
    assert!(
        history.stdout.contains("auto-rollback:"),
        "{}",
        history.stdout
    );
    assert!(
        history.stdout.contains("mapper.rollback"),
        "{}",
        history.stdout
    );
    assert!(
        gateway.metric("wsgate_mapper_errors_total{kind=\"trap\",mapper=\"binance_trade@2\"}")
            > 0.0
    );
    trades_flow(&gateway).await;
}

#[tokio::test]
async fn a_config_change_restarts_only_what_it_touches() {
    let gateway = Gateway::start(&token_args());
    let mut client = gateway.connect("/stream?streams=btcusdt@trade").await;
    let mut seen = collect_stream(&mut client, "btcusdt@trade", 20, Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = current_config(&gateway)["config"].clone();
    let klines = config["routes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["id"] == "demo-klines")
        .expect("the shipped config has a kline route");
    klines["mappings"][0]["params"] = json!({"note": "changed"});
    let file = write_temp(&dir, "klines.json", config.to_string().as_bytes());
    let applied = gateway.cli(&["config", "apply", file.to_str().unwrap()]);
    assert!(applied.ok, "{applied:?}");
    assert!(
        applied.stdout.contains("~ route demo-klines"),
        "{}",
        applied.stdout
    );
    wait_for("the kline route's swap", || {
        gateway.metric("wsgate_mapper_swaps_total") >= 1.0
    });
    seen.extend(collect_stream(&mut client, "btcusdt@trade", 20, Duration::from_secs(20)).await);
    // The demo source was not restarted (a restart begins a new market): trade ids continue.
    for pair in seen.windows(2) {
        assert_eq!(
            pair[1]["t"].as_u64().unwrap(),
            pair[0]["t"].as_u64().unwrap() + 1
        );
    }
    assert_eq!(gateway.metric("wsgate_mapper_swaps_total"), 1.0);
}

/// What the `faulty` mapper in `probe` mode reports from inside its sandbox.
async fn probe_seen(gateway: &Gateway, manifest: Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_temp(&dir, "manifest.json", manifest.to_string().as_bytes());
    let push = push_trade_mapper(
        gateway,
        &module("faulty.wasm"),
        &[
            "--param",
            "mode=probe",
            "--manifest",
            manifest.to_str().unwrap(),
            "--promote",
        ],
    );
    assert!(push.ok, "{push:?}");
    let mut client = gateway.connect("/stream?streams=btcusdt@trade").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let data = collect_stream(&mut client, "btcusdt@trade", 1, Duration::from_secs(20)).await;
        // Only messages of the version just pushed count.
        let version_running =
            common::http_get_auth(gateway.admin, "/api/v1/status", common::TEST_TOKEN)
                .map(|(_, body)| body)
                .unwrap_or_default();
        if data[0].get("clock_s").is_some()
            && version_running.contains(&expected_label(&push.stdout))
        {
            return data[0].clone();
        }
        assert!(Instant::now() < deadline, "no probe output");
    }
}

/// `binance_trade@N` from a push's output line.
fn expected_label(push_stdout: &str) -> String {
    push_stdout
        .split_whitespace()
        .find(|w| w.starts_with("binance_trade@"))
        .expect("the push names the version")
        .to_string()
}

#[tokio::test]
async fn mappers_get_only_capabilities_their_manifest_asks_and_the_operator_allows() {
    let home = std::env::var("HOME").expect("HOME is set");
    let config = busy_trades_config(20, json!({"mode": "probe"}));
    let mut args = token_args();
    args.extend(["--mapper-allow", "clock,env:HOME"]);
    let allowing = Gateway::start_with(config.clone(), &args);
    // Asked for the environment variable only: no clock.
    let seen = probe_seen(&allowing, json!({"capabilities": ["env:HOME"]})).await;
    assert_eq!(seen, json!({"env": home, "clock_s": 0}));
    // Asked for the clock only: no environment.
    let seen = probe_seen(&allowing, json!({"capabilities": ["clock"]})).await;
    assert_eq!(seen["env"], Value::Null);
    assert!(seen["clock_s"].as_u64().unwrap() > 1_700_000_000, "{seen}");
    drop(allowing);

    // Asked for both, on a node whose operator allows nothing: neither.
    let strict = Gateway::start_with(config, &token_args());
    let seen = probe_seen(&strict, json!({"capabilities": ["clock", "env:HOME"]})).await;
    assert_eq!(seen, json!({"env": null, "clock_s": 0}));
    // A manifest asking for what no node can grant is refused at push.
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_temp(&dir, "m.json", br#"{"capabilities": ["network"]}"#);
    let out = push_trade_mapper(
        &strict,
        &module("faulty.wasm"),
        &["--manifest", manifest.to_str().unwrap()],
    );
    assert_refused(&out, "unknown capability `network`");
}

#[tokio::test]
async fn python_and_javascript_mappers_go_through_the_same_registry() {
    // What is checked is the registry's path in every language, not the call budget, which
    // epoch ticks count in wall-clock time: on a machine busy with the suite's other tests an
    // interpreter's call can pass the default 20 ms.
    let mut args = token_args();
    args.extend(["--mapper-timeout", "1s"]);
    let gateway = Gateway::start_with(busy_trades_config(50, json!({})), &args);
    let mut client = gateway.connect("/stream?streams=btcusdt@trade").await;
    let mut seen = collect_stream(&mut client, "btcusdt@trade", 10, Duration::from_secs(20)).await;
    for (file, version) in [("py_binance_trade.wasm", 2), ("js_binance_trade.wasm", 3)] {
        let push = push_trade_mapper(&gateway, &module(file), &["--promote"]);
        assert!(push.ok, "{push:?}");
        let label = format!("binance_trade@{version}");
        assert!(
            push.stdout.contains(&format!("promoted: {label}")),
            "{}",
            push.stdout
        );
        let events = format!("wsgate_mapper_events_total{{mapper=\"{label}\"}}");
        wait_for(&format!("{label} to map live events"), || {
            gateway.metric(&events) >= 20.0
        });
        seen.extend(
            collect_stream(&mut client, "btcusdt@trade", 10, Duration::from_secs(20)).await,
        );
    }
    // Three languages in turn on one stream: same fields, no gap, no repeat.
    let fields = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    for pair in seen.windows(2) {
        assert_eq!(fields(&pair[0]), fields(&pair[1]));
        assert_eq!(
            pair[1]["t"].as_u64().unwrap(),
            pair[0]["t"].as_u64().unwrap() + 1
        );
    }
    let errors = gateway.metric("wsgate_mapper_errors_total");
    assert_eq!(errors, 0.0, "no mapper error in any language");
}
