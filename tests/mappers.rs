//! Mapper containment: a mapper that loops forever, traps, returns junk or allocates without
//! bound loses only its own events, is counted, and never stops the other streams.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// One demo symbol, and beside the healthy trade route one route per faulty mode, each mapper
/// loaded under its own name so its metrics stand apart.
fn faulty_config(modes: &[&str]) -> Value {
    let mut topics = vec![json!({"version": 1, "topic": "{symbol}@trade"})];
    let mut routes = vec![json!({
        "id": "trades", "version": 1, "data_source": "demo", "upstream": ["trade.*"],
        "mappings": [{"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade", "ws_topic": "{symbol}@trade"}]
    })];
    for mode in modes {
        topics.push(json!({"version": 1, "topic": format!("{{symbol}}@{mode}")}));
        routes.push(json!({
            "id": format!("faulty-{mode}"), "version": 1, "data_source": "demo", "upstream": ["trade.*"],
            "mappings": [{
                "mapper": format!("faulty_{mode}"),
                "fanout_topic": format!("md.{{symbol}}.{mode}"),
                "ws_topic": format!("{{symbol}}@{mode}"),
                "params": {"mode": mode}
            }]
        }));
    }
    json!({
        "vars": {"symbol": ["btcusdt"]},
        "datasource": [{
            "version": 1, "type": "demo", "name": "demo",
            "properties": {
                "symbols": [{"symbol": "BTCUSDT", "price": "67000.00", "tick": "0.01", "lot": "0.00001"}],
                "trades_per_sec": 20
            }
        }],
        "topics": topics,
        "routes": routes
    })
}

/// A mappers directory with the healthy trade mapper and `faulty.wasm` under one name per mode.
fn mappers_with(modes: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = mappers_dir();
    std::fs::copy(
        source.join("binance_trade.wasm"),
        dir.path().join("binance_trade.wasm"),
    )
    .unwrap();
    for mode in modes {
        std::fs::copy(
            source.join("faulty.wasm"),
            dir.path().join(format!("faulty_{mode}.wasm")),
        )
        .unwrap();
    }
    dir
}

/// Trades received over `window`, checking ids are contiguous.
async fn contiguous_trades(client: &mut Client, window: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + window;
    let mut last: Option<i64> = None;
    let mut count = 0;
    while tokio::time::Instant::now() < deadline {
        let trade = next_json(client, Duration::from_secs(5)).await;
        let id = trade["t"].as_i64().expect("trade id");
        if let Some(previous) = last {
            assert_eq!(
                id,
                previous + 1,
                "trade ids must stay contiguous while other mappers fail"
            );
        }
        last = Some(id);
        count += 1;
    }
    count
}

#[tokio::test]
async fn failing_mappers_lose_only_their_own_events() {
    let modes = ["loop", "trap", "junk", "oom"];
    let mappers = mappers_with(&modes);
    // A small memory cap, so the allocating mapper hits it well before its CPU deadline.
    let gateway = Gateway::start_in(
        faulty_config(&modes),
        &["--mapper-memory-bytes", "8388608"],
        mappers.path(),
    );
    let mut client = gateway.connect("/ws/btcusdt@trade").await;
    let mut junk = gateway.connect("/ws/btcusdt@junk").await;

    let first = contiguous_trades(&mut client, Duration::from_secs(3)).await;
    let errors = |mapper: &str, kind: &str| {
        gateway.metric(&format!(
            "wsgate_mapper_errors_total{{kind=\"{kind}\",mapper=\"{mapper}@1\"}}"
        ))
    };
    let before = [
        errors("faulty_loop", "timeout"),
        errors("faulty_trap", "trap"),
        errors("faulty_junk", "bad_output"),
        errors("faulty_oom", "memory"),
    ];
    let second = contiguous_trades(&mut client, Duration::from_secs(3)).await;
    let after = [
        errors("faulty_loop", "timeout"),
        errors("faulty_trap", "trap"),
        errors("faulty_junk", "bad_output"),
        errors("faulty_oom", "memory"),
    ];
    assert!(
        first >= 20 && second >= 20,
        "healthy stream slowed: {first} then {second} trades in 3 s"
    );
    for (i, mode) in modes.iter().enumerate() {
        assert!(
            before[i] > 0.0,
            "no failure counted for `{mode}`:\n{}",
            gateway.http_get("/metrics").unwrap().1
        );
        assert!(
            after[i] > before[i],
            "`{mode}` stopped being called: its route must keep running"
        );
    }
    // The junk outputs never reached their subscriber.
    let quiet = tokio::time::timeout(
        Duration::from_millis(200),
        futures_util::StreamExt::next(&mut junk),
    )
    .await;
    assert!(
        quiet.is_err(),
        "a malformed output reached a client: {quiet:?}"
    );
}

#[tokio::test]
async fn an_endless_loop_is_cut_off_at_its_deadline() {
    let mappers = mappers_with(&["loop"]);
    let gateway = Gateway::start_in(
        faulty_config(&["loop"]),
        &["--mapper-timeout", "10ms", "--mapper-event-timeout", "1ms"],
        mappers.path(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, metrics) = gateway.http_get("/metrics").unwrap();
    let value = |name: &str| metric_value(&metrics, name);
    let calls = value("wsgate_mapper_duration_seconds_count{mapper=\"faulty_loop@1\"}");
    let within =
        value("wsgate_mapper_duration_seconds_bucket{mapper=\"faulty_loop@1\",le=\"0.065536\"}");
    let quick =
        value("wsgate_mapper_duration_seconds_bucket{mapper=\"faulty_loop@1\",le=\"0.008192\"}");
    let timeouts = value("wsgate_mapper_errors_total{kind=\"timeout\",mapper=\"faulty_loop@1\"}");
    let events = value("wsgate_mapper_events_total{mapper=\"faulty_loop@1\"}");
    assert!(
        calls >= 10.0,
        "only {calls} calls in 3 s: the loop was not interrupted"
    );
    assert_eq!(
        within, calls,
        "every call must end within its ~11 ms deadline (65 ms bucket)"
    );
    assert_eq!(
        quick, 0.0,
        "no call may end before its deadline: the mapper loops"
    );
    // Every event is dropped as a timeout (one batch may be in flight while metrics are read).
    assert!(
        timeouts <= events && timeouts >= events - 5.0,
        "{timeouts} timeouts for {events} events"
    );
}
