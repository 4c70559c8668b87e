//! The `nats` datasource against a real `nats-server -js` of the test's own: core queue
//! subscriptions and JetStream durable consumers, end to end from a real async-nats publisher
//! through the `binance_trade` mapper to a real WebSocket client; a gateway SIGKILLed
//! mid-stream and a broker restarted mid-stream lose nothing.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use common::nats::NatsServer;
use common::trades::match_event;
use common::{wait_for, Client, Gateway};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const STREAM: &str = "btcusdt@trade";
const JS_STREAM: &str = "MD";
const DURABLE: &str = "wsgate";

fn topics() -> Value {
    json!([{"version": 1, "topic": "{symbol}@trade", "auth": "public"}])
}

/// Datasource and route reading `trade.>` from `url`; JetStream when `jetstream` is given.
fn nats_entries(url: &str, jetstream: Option<Value>) -> (Value, Value) {
    let mut properties = json!({
        "servers": [url],
        "subjects": ["trade.>"],
        "reconnect_time_wait_ms": 100,
    });
    if let Some(js) = jetstream {
        properties["jetstream"] = js;
    }
    let datasource =
        json!([{"version": 1, "type": "nats", "name": "nats-md", "properties": properties}]);
    let routes = json!([{
        "id": "nats-trades", "version": 1, "data_source": "nats-md", "upstream": ["trade.>"],
        "mappings": [{"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade",
                      "ws_topic": "{symbol}@trade"}]
    }]);
    (datasource, routes)
}

fn config(url: &str, jetstream: Option<Value>) -> Value {
    let (datasource, routes) = nats_entries(url, jetstream);
    json!({"vars": {"symbol": ["btcusdt"]}, "datasource": datasource, "topics": topics(),
           "routes": routes})
}

fn js_settings() -> Value {
    json!({"stream": JS_STREAM, "durable": DURABLE, "ack_wait_ms": 2000})
}

/// The trade id of the next `btcusdt@trade` message within `limit`; None on timeout or end.
async fn next_trade(client: &mut Client, limit: Duration) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let message = tokio::time::timeout_at(deadline, client.next())
            .await
            .ok()??;
        match message {
            Ok(Message::Text(text)) => {
                let value: Value = serde_json::from_str(&text).expect("gateway sent JSON");
                if value["stream"] == STREAM {
                    return Some(value["data"]["t"].as_u64().expect("trade id `t`"));
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Trade ids until `last` has been seen (or `limit` passes).
async fn trades_until(client: &mut Client, last: u64, limit: Duration) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    while got.last() != Some(&last) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_trade(client, left).await {
            Some(id) => got.push(id),
            None => panic!(
                "trade {last} not seen in time; got {} trades, last {:?}",
                got.len(),
                got.last()
            ),
        }
    }
    got
}

async fn jetstream_with_stream(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url).await.expect("publisher connects");
    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: JS_STREAM.to_string(),
        subjects: vec!["trade.>".to_string()],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("stream created");
    js
}

/// Publishes trade `id` with its id as `Nats-Msg-Id` (so a retried publish is stored once),
/// retrying until JetStream acknowledges it.
async fn js_publish(js: &jetstream::Context, id: u64) {
    for _ in 0..600 {
        let message = jetstream::message::PublishMessage::build()
            .payload(Bytes::from(match_event(id)))
            .message_id(id.to_string());
        if let Ok(ack) = js.send_publish("trade.BTCUSDT", message).await {
            if ack.await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("trade {id} could not be published");
}

/// The durable consumer's (pending, ack pending), once both are 0 or after 10 s.
async fn settled_consumer(js: &jetstream::Context) -> (u64, usize) {
    let stream = js.get_stream(JS_STREAM).await.expect("stream");
    let mut last = (u64::MAX, usize::MAX);
    for _ in 0..100 {
        let info = stream.consumer_info(DURABLE).await.expect("consumer info");
        last = (info.num_pending, info.num_ack_pending);
        if last == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

fn assert_consecutive(ids: &[u64], first: u64, last: u64, what: &str) {
    let expected: Vec<u64> = (first..=last).collect();
    assert_eq!(
        ids,
        expected.as_slice(),
        "{what}: not {first}..={last} exactly once in order"
    );
}

#[tokio::test]
async fn core_subjects_reach_clients_in_order_exactly_once() {
    let server = NatsServer::new();
    let gateway = Gateway::start_with(config(&server.url(), None), &[]);
    let mut client = gateway.connect(&format!("/stream?streams={STREAM}")).await;
    let publisher = async_nats::connect(server.url()).await.unwrap();

    // Core NATS keeps nothing: publish until the gateway's subscription demonstrably delivers.
    let mut id = 0;
    let first_seen = loop {
        id += 1;
        assert!(id < 200, "the gateway never received a core message");
        publisher
            .publish("trade.BTCUSDT", Bytes::from(match_event(id)))
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        if let Some(seen) = next_trade(&mut client, Duration::from_millis(100)).await {
            break seen;
        }
    };
    // Everything published after that one was published while the subscription was live.
    let last = id + 1000;
    for next in id + 1..=last {
        publisher
            .publish("trade.BTCUSDT", Bytes::from(match_event(next)))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let got = trades_until(&mut client, last, Duration::from_secs(30)).await;
    assert_consecutive(&got, first_seen + 1, last, "core subscription");
    // And nothing more (no duplicate) arrives afterwards.
    assert_eq!(
        next_trade(&mut client, Duration::from_millis(500)).await,
        None,
        "an extra message arrived after the last one"
    );
}

#[tokio::test]
async fn jetstream_acks_after_handoff_and_resumes_after_gateway_crash() {
    let server = NatsServer::new();
    let js = jetstream_with_stream(&server.url()).await;
    // The first gateway's route also runs a mapper that spins until the host interrupts it, so
    // its batches queue up: at the crash, much has been fetched that was not handed off.
    let mappers = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("binance_trade", "binance_trade"),
        ("faulty", "faulty_loop"),
    ] {
        let dir = common::mappers_dir();
        std::fs::copy(
            dir.join(format!("{from}.wasm")),
            mappers.path().join(format!("{to}.wasm")),
        )
        .unwrap();
    }
    let mut slow = config(&server.url(), Some(js_settings()));
    slow["topics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"version": 1, "topic": "{symbol}@loop"}));
    slow["routes"][0]["mappings"].as_array_mut().unwrap().push(json!({
        "mapper": "faulty_loop", "fanout_topic": "md.{symbol}.loop", "ws_topic": "{symbol}@loop",
        "params": {"mode": "loop"}
    }));
    let mut gateway = Gateway::start_in(slow, &[], mappers.path());
    let mut client = gateway.connect(&format!("/stream?streams={STREAM}")).await;
    // Published only now that the client is subscribed: the stream starts empty.
    for id in 1..=200 {
        js_publish(&js, id).await;
    }
    let got = trades_until(&mut client, 200, Duration::from_secs(30)).await;
    assert_consecutive(&got, 1, 200, "jetstream");
    assert_eq!(
        settled_consumer(&js).await,
        (0, 0),
        "every handed-off message is acknowledged"
    );

    // Mid-stream SIGKILL: a publisher keeps going while the gateway dies.
    const LAST: u64 = 700;
    let publishing = {
        let js = js.clone();
        tokio::spawn(async move {
            for id in 201..=LAST {
                js_publish(&js, id).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut seen_by_first: Vec<u64> = (1..=200).collect();
    while seen_by_first.last().copied().unwrap_or(0) < 350 {
        let id = next_trade(&mut client, Duration::from_secs(30))
            .await
            .expect("trades keep flowing before the crash");
        seen_by_first.push(id);
    }
    gateway.signal("KILL");
    gateway
        .wait_exit(Duration::from_secs(10))
        .expect("gateway died");
    while let Some(id) = next_trade(&mut client, Duration::from_millis(200)).await {
        seen_by_first.push(id);
    }
    publishing.await.unwrap();
    drop(gateway);

    // A new gateway; its client subscribes before the datasource is added (hot), so it sees
    // everything the consumer delivers.
    let empty = json!({"vars": {"symbol": ["btcusdt"]}, "topics": topics()});
    let second = Gateway::start_with(empty, &["--admin-token", common::TEST_TOKEN]);
    let mut client = second.connect(&format!("/stream?streams={STREAM}")).await;
    let current = second.cli(&["config", "get"]);
    assert!(current.ok, "{current:?}");
    let current: Value = serde_json::from_str(&current.stdout).unwrap();
    let mut next = current["config"].clone();
    let (datasource, routes) = nats_entries(&server.url(), Some(js_settings()));
    next["datasource"] = datasource;
    next["routes"] = routes;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("with-nats.json");
    std::fs::write(&file, next.to_string()).unwrap();
    let version = current["version"].to_string();
    let applied = second.cli(&[
        "config",
        "apply",
        file.to_str().unwrap(),
        "--replaces",
        &version,
    ]);
    assert!(applied.ok, "{applied:?}");

    let seen_by_second = trades_until(&mut client, LAST, Duration::from_secs(60)).await;
    let resumed_at = seen_by_second[0];
    let first_max = seen_by_first.iter().copied().max().unwrap();
    assert!(
        resumed_at <= first_max + 1,
        "gap: the first gateway's client saw up to {first_max}, the second resumed at {resumed_at}"
    );
    assert!(
        resumed_at > 200,
        "the second gateway redelivered {resumed_at}, acknowledged before the crash"
    );
    // The second gateway resumes at the first message not handed off, then in order, once.
    assert_consecutive(&seen_by_second, resumed_at, LAST, "after the crash");
    let mut all: Vec<u64> = seen_by_first
        .iter()
        .chain(&seen_by_second)
        .copied()
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_consecutive(&all, 1, LAST, "across the crash");
    assert_eq!(settled_consumer(&js).await, (0, 0));
}

/// Asserts no loss and preserved order for a stream that may replay a suffix (at-least-once):
/// every id is at most one past the highest seen so far, and the distinct ids are 1..=last.
/// Returns the number of duplicates.
fn assert_no_loss_in_order(got: &[u64], last: u64) -> usize {
    let mut max = 0;
    let mut duplicates = 0;
    for (i, &id) in got.iter().enumerate() {
        assert!(
            id <= max + 1,
            "message {id} (#{i}) skips ahead of {max}: lost or reordered"
        );
        if id <= max {
            duplicates += 1;
        }
        max = max.max(id);
    }
    assert_eq!(max, last);
    duplicates
}

#[tokio::test]
async fn jetstream_survives_a_broker_restart_without_loss_or_duplicates() {
    let mut server = NatsServer::new();
    let js = jetstream_with_stream(&server.url()).await;
    let gateway = Gateway::start_with(config(&server.url(), Some(js_settings())), &[]);
    let mut client = gateway.connect(&format!("/stream?streams={STREAM}")).await;

    const LAST: u64 = 600;
    let publishing = {
        let js = js.clone();
        tokio::spawn(async move {
            for id in 1..=LAST {
                js_publish(&js, id).await;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let mut got = Vec::new();
    while got.last().copied().unwrap_or(0) < 200 {
        got.push(
            next_trade(&mut client, Duration::from_secs(10))
                .await
                .expect("trades flow before the restart"),
        );
    }
    let port = server.port();
    server.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.start();
    assert_eq!(server.port(), port);

    got.extend(trades_until(&mut client, LAST, Duration::from_secs(90)).await);
    publishing.await.unwrap();
    // Messages pulled but not acknowledged when the broker died are redelivered
    // (at-least-once); the route drops what it already mapped, so clients get each once.
    let duplicates = assert_no_loss_in_order(&got, LAST);
    assert_eq!(duplicates, 0, "a redelivery reached the client");
    eprintln!(
        "broker restart: {} messages, dropped as redelivered: {}",
        got.len(),
        gateway.metric("wsgate_messages_dropped_total{reason=\"duplicate\"}")
    );
    assert_eq!(settled_consumer(&js).await, (0, 0));
}

#[tokio::test]
async fn a_core_source_that_cannot_log_in_is_not_up() {
    let server = NatsServer::with_user("wsgate", "right");
    let at = |password: &str| format!("nats://wsgate:{password}@127.0.0.1:{}", server.port());
    let refused = Gateway::start_unready(config(&at("wrong"), None), &[]);
    wait_for("the refused login reported", || {
        let (status, body) = refused.http_get("/readyz").unwrap();
        status == 503 && body.contains("source nats-md: nats refused the credentials")
    });
    assert_eq!(refused.metric("wsgate_source_up{"), 0.0);

    let accepted = Gateway::start_with(config(&at("right"), None), &[]);
    wait_for("the source up with the right password", || {
        accepted.metric("wsgate_source_up{") == 1.0
            && accepted.http_get("/readyz").unwrap() == (200, "ready\n".to_string())
    });
    // A server that is not there at all: not up either.
    let mut gone = NatsServer::new();
    gone.stop();
    let unreached = Gateway::start_unready(config(&gone.url(), None), &[]);
    std::thread::sleep(Duration::from_secs(1));
    let (status, body) = unreached.http_get("/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("source nats-md: connecting to nats"),
        "{body}"
    );

    // Still refused, and still saying so.
    let (status, body) = refused.http_get("/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("nats refused the credentials"), "{body}");
}
