//! A config change that removes a stream clients hold: each of its subscribers is told and
//! drops it, a connection left with no stream is closed with 4003, every other connection and
//! stream is untouched, and a stream declared again reaches only those that subscribe again.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const REMOVED: &str = "xrpusdt@trade";
const KEPT: &str = "btcusdt@trade";
const OTHER: &str = "ethusdt@trade";

/// What a client holding the removed stream is told.
fn notice() -> Value {
    json!({"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": null,
           "stream": REMOVED})
}

fn apply(gateway: &Gateway, config: &Value) {
    gateway.apply_config(config)
}

/// The stored config with the `{symbol}@trade` topic's entry passed through `edit` (the entry
/// keeps the version it replaces).
fn with_trade_topic(gateway: &Gateway, edit: impl FnOnce(&mut Value)) -> Value {
    let out = gateway.cli(&["config", "get"]);
    assert!(out.ok, "{out:?}");
    let mut config: Value = serde_json::from_str(&out.stdout).unwrap();
    let topic = config["config"]["topics"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["topic"] == "{symbol}@trade")
        .expect("the shipped config declares {symbol}@trade");
    edit(topic);
    config["config"].take()
}

/// Reads `client` (combined) until `count` messages of `stream` arrived, failing on any other
/// message; the last one's event time.
async fn only(client: &mut Client, stream: &str, count: usize) -> i64 {
    let mut event_time = 0;
    for _ in 0..count {
        let message = next_json(client, WAIT).await;
        assert_eq!(message["stream"], stream, "unexpected message {message}");
        event_time = message["data"]["E"].as_i64().unwrap();
    }
    event_time
}

/// Reads `client` (combined) until a message of `stream` with an event time past `after_ms`,
/// failing on any message of another stream.
async fn only_until(client: &mut Client, stream: &str, after_ms: i64) {
    loop {
        let message = next_json(client, WAIT).await;
        assert_eq!(message["stream"], stream, "unexpected message {message}");
        if message["data"]["E"].as_i64().unwrap() > after_ms {
            return;
        }
    }
}

/// Reads `client` until the removal notice, skipping market data; the notice comes once.
async fn until_notice(client: &mut Client) {
    loop {
        let message = next_json(client, WAIT).await;
        if message.get("error").is_some() {
            assert_eq!(message, notice());
            return;
        }
        assert!(message.get("id").is_none(), "unexpected reply {message}");
    }
}

/// Reads `client` until its close, which follows the removal notice; the close code.
async fn notice_then_close(client: &mut Client) -> (u16, String) {
    until_notice(client).await;
    match next_seen(client, WAIT).await {
        Seen::Close(code, reason) => (code, reason),
        other => panic!("expected the close right after the notice, got {other:?}"),
    }
}

/// Opens `/ws/<stream>` once the node serves `stream` (refused with 400 until then).
async fn connect_when_served(gateway: &Gateway, stream: &str) -> Client {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio_tungstenite::connect_async(gateway.url(&format!("/ws/{stream}"))).await {
            Ok((client, _)) => return client,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "{stream} not served in time: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_stream_is_told_and_dropped_and_does_not_come_back_by_itself() {
    let gateway = Gateway::start(&["--admin-token", TEST_TOKEN]);
    let mut raw = gateway.connect(&format!("/ws/{REMOVED}")).await;
    let mut combined = gateway
        .connect(&format!("/stream?streams={REMOVED}/{KEPT}"))
        .await;
    let mut live = gateway.connect("/ws").await;
    let reply = request(
        &mut live,
        json!({"method": "SUBSCRIBE", "params": [REMOVED], "id": 1}),
    )
    .await;
    assert_eq!(reply, json!({"result": null, "id": 1}));
    let mut other = gateway.connect(&format!("/stream?streams={OTHER}")).await;
    assert_eq!(next_json(&mut raw, WAIT).await["s"], "XRPUSDT");
    collect_stream(&mut combined, REMOVED, 1, WAIT).await;
    collect_stream(&mut combined, KEPT, 1, WAIT).await;
    only(&mut other, OTHER, 1).await;

    // Remove xrpusdt@trade: the topic declares every symbol but XRPUSDT.
    let removed = with_trade_topic(&gateway, |topic| {
        topic["vars"] = json!({"symbol": ["btcusdt", "ethusdt", "solusdt", "bnbusdt"]});
    });
    apply(&gateway, &removed);

    // Connections left with no stream: the notice, then close 4003.
    assert_eq!(
        notice_then_close(&mut raw).await,
        (4003, "Stream removed".to_string())
    );
    assert_eq!(
        notice_then_close(&mut live).await,
        (4003, "Stream removed".to_string())
    );
    // A connection with another stream: the notice after the removed stream's last event,
    // then only the stream it kept.
    until_notice(&mut combined).await;
    only(&mut combined, KEPT, 5).await;
    let listed = request(
        &mut combined,
        json!({"method": "LIST_SUBSCRIPTIONS", "id": 2}),
    )
    .await;
    assert_eq!(listed, json!({"result": [KEPT], "id": 2}));
    // Untouched: no notice (it would come before this reply), its stream flowing.
    let listed = request(&mut other, json!({"method": "LIST_SUBSCRIPTIONS", "id": 3})).await;
    assert_eq!(listed, json!({"result": [OTHER], "id": 3}));
    only(&mut other, OTHER, 5).await;
    assert_eq!(gateway.metric("wsgate_subscriptions_removed_total "), 3.0);
    assert_eq!(gateway.metric("wsgate_closes_total{code=\"4003\"}"), 2.0);

    // Declared again: served to whoever subscribes, not to the connection that held it.
    let declared = with_trade_topic(&gateway, |topic| {
        topic.as_object_mut().unwrap().remove("vars");
    });
    apply(&gateway, &declared);
    let mut fresh = connect_when_served(&gateway, REMOVED).await;
    let mut last_fresh = 0;
    for _ in 0..3 {
        let trade = next_json(&mut fresh, WAIT).await;
        assert_eq!(trade["s"], "XRPUSDT");
        last_fresh = trade["E"].as_i64().unwrap();
    }
    // Past the time of xrpusdt trades the fresh client received, the combined one had none.
    only_until(&mut combined, KEPT, last_fresh + 1000).await;
    let reply = request(
        &mut combined,
        json!({"method": "SUBSCRIBE", "params": [REMOVED], "id": 4}),
    )
    .await;
    assert_eq!(reply, json!({"result": null, "id": 4}));
    collect_stream(&mut combined, REMOVED, 2, WAIT).await;
    assert_eq!(gateway.metric("wsgate_subscriptions_removed_total "), 3.0);
}
