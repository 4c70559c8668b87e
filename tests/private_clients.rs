//! Real client libraries on the private side, unmodified but for their URLs (versions pinned in
//! `tests/clients/requirements.txt`, installed by `make test`): python-binance's `user_socket()`
//! and WebSocket API order placement, and binance-connector's legacy listen key.

mod common;

use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::accounts::{balance, config, create_key, now_ms, publish, SUBJECT};
use common::nats::NatsServer;
use common::scripts::{self, next_line, wait_success};
use common::{Gateway, TEST_TOKEN};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Starts `private_clients.py` with `args`; its output lines, parsed, arrive on the receiver.
fn run_client(args: &[&str]) -> (Child, mpsc::Receiver<Value>) {
    scripts::run_client("private_clients.py", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_binance_user_socket_and_ws_api_order() {
    let nats = NatsServer::new();
    let gateway = Gateway::start_with(
        config(&nats.url()),
        &["--admin-token", TEST_TOKEN, "--trade-nats", &nats.url()],
    );
    let alice = create_key(&gateway, "alice", "user-stream,trade");
    // The exchange's backend, stood in for: fills every order for the user the gateway names.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut orders = client.subscribe("wsgate.trade.order.place").await.unwrap();
    let backend = tokio::spawn(async move {
        let message = orders.next().await.unwrap();
        let request: Value = serde_json::from_slice(&message.payload).unwrap();
        let params = &request["params"];
        let result = json!({"symbol": params["symbol"], "orderId": 42, "orderListId": -1,
                            "clientOrderId": params["newClientOrderId"], "transactTime": now_ms(),
                            "status": "FILLED"});
        let reply = json!({"status": 200, "result": result});
        client
            .publish(message.reply.unwrap(), reply.to_string().into())
            .await
            .unwrap();
        let fill = json!({"user_id": request["user_id"], "event": {
            "e": "executionReport", "E": now_ms(), "s": params["symbol"], "i": 42,
            "c": params["newClientOrderId"], "X": "FILLED", "x": "TRADE"}});
        client
            .publish(SUBJECT, fill.to_string().into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        request
    });

    let url = format!("ws://{}/ws-api/v3", gateway.addr);
    let (child, lines) = run_client(&["python-binance", &url, &alice.key, &alice.secret]);
    let lines = tokio::task::spawn_blocking(move || {
        let limit = Duration::from_secs(30);
        let got: Vec<Value> = (0..3).map(|_| next_line(&lines, limit)).collect();
        wait_success(child, limit);
        got
    })
    .await
    .unwrap();
    assert_eq!(lines[0], json!({"subscribed": true}));
    assert_eq!(lines[1]["order"]["orderId"], 42, "{lines:?}");
    assert_eq!(lines[2]["fill"]["i"], 42, "{lines:?}");
    assert_eq!(lines[2]["fill"]["c"], lines[1]["order"]["clientOrderId"]);
    let request = backend.await.unwrap();
    assert_eq!(request["user_id"], "alice");
    assert_eq!(request["params"]["side"], "BUY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_connector_legacy_listen_key() {
    let nats = NatsServer::new();
    let gateway = Gateway::start_with(config(&nats.url()), &["--admin-token", TEST_TOKEN]);
    let alice = create_key(&gateway, "alice", "user-stream");
    let http = format!("http://{}", gateway.addr);
    let ws = format!("ws://{}", gateway.addr);
    let (child, lines) = run_client(&["binance-connector", &http, &ws, &alice.key]);
    let first =
        tokio::task::spawn_blocking(move || (next_line(&lines, Duration::from_secs(30)), lines))
            .await
            .unwrap();
    let (announced, lines) = first;
    let key = announced["listenKey"]
        .as_str()
        .expect("a listen key")
        .to_string();
    assert_eq!(key.len(), 64);
    // Publish alice's event until the client has it (its SUBSCRIBE may still be on its way).
    let start = Instant::now();
    let event = loop {
        publish(&nats.url(), &[(Some("alice"), balance("PY", 1))]).await;
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(300)) {
            break line;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the client got nothing"
        );
    };
    assert_eq!(event["event"], balance("PY", 1));
    let closed = tokio::task::spawn_blocking(move || {
        let closed = next_line(&lines, Duration::from_secs(20));
        wait_success(child, Duration::from_secs(20));
        closed
    });
    assert_eq!(closed.await.unwrap(), json!({"closed": true}));
}
