//! The WebSocket API, `/ws-api/v3`, against real nodes: signed user-data subscriptions and
//! `session.logon`, each user seeing only their own events; Binance's refusals for forged,
//! stale and wrong-key requests; trade actions forwarded over real NATS request/reply to a
//! stand-in exchange backend (the one part the gateway does not ship) with the verified user id,
//! their fills back on the user's stream, pipelining, and the backend timeout.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::accounts::{
    balance, config, create_ed25519_key, create_key, drain, next_within, now_ms, publish, sign,
    until_flowing, Key, Signer, SUBJECT,
};
use common::nats::NatsServer;
use common::redis::RedisServer;
use common::{send_text, Client, Gateway, Seen, TEST_TOKEN};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn gateway(nats: &NatsServer) -> Gateway {
    Gateway::start_with(
        config(&nats.url()),
        &[
            "--admin-token",
            TEST_TOKEN,
            "--trade-nats",
            &nats.url(),
            "--trade-timeout",
            "1s",
        ],
    )
}

/// Sends `request` and returns the answer with its id.
async fn call(client: &mut Client, request: Value) -> Value {
    call_seeing(client, request).await.0
}

/// Sends `request`; returns the answer with its id and the other messages that came first
/// (user-data events).
async fn call_seeing(client: &mut Client, request: Value) -> (Value, Vec<Value>) {
    let id = request["id"].clone();
    send_text(client, &request.to_string()).await;
    let mut before = Vec::new();
    loop {
        match next_within(client, WAIT).await {
            Some(Seen::Json(answer)) if answer.get("status").is_some() && answer["id"] == id => {
                return (answer, before)
            }
            Some(Seen::Json(other)) => before.push(other),
            other => panic!("no answer to {id}: {other:?}"),
        }
    }
}

fn signed_subscribe(id: u64, key: &str, secret: &str, timestamp: u64) -> Value {
    json!({"id": id, "method": "userDataStream.subscribe.signature",
           "params": sign(json!({"apiKey": key, "timestamp": timestamp}), Signer::Hmac(secret))})
}

/// Alice (HMAC) subscribed by signature and bob (Ed25519, seed `seed`) logged on, each on a
/// connection of their own: (alice's key, her connection, bob's key, his connection).
async fn alice_signed_bob_logged_on(
    gateway: &Gateway,
    seed: u8,
    bob_url: &str,
) -> (Key, Client, String, Client) {
    let alice = create_key(gateway, "alice", "user-stream,trade");
    let (bob_key, bob_signing) = create_ed25519_key(gateway, "bob", "user-stream", seed);
    let mut alice_ws = gateway.connect("/ws-api/v3").await;
    let answer = call(
        &mut alice_ws,
        signed_subscribe(1, &alice.key, &alice.secret, now_ms()),
    )
    .await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["result"], json!({"subscriptionId": 0}));
    let mut bob_ws = gateway.connect(bob_url).await;
    let logon = json!({"id": "logon-1", "method": "session.logon", "params":
        sign(json!({"apiKey": bob_key, "timestamp": now_ms()}), Signer::Ed25519(&bob_signing))});
    let answer = call(&mut bob_ws, logon).await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["result"]["apiKey"], bob_key.as_str());
    (alice, alice_ws, bob_key, bob_ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_and_logged_on_subscriptions_each_see_only_their_own_events() {
    let nats = NatsServer::new();
    let gateway = gateway(&nats);
    let (_, mut alice_ws, _, mut bob_ws) =
        alice_signed_bob_logged_on(&gateway, 7, "/ws-api/v3?returnRateLimits=false").await;
    // rateLimits unless the URL said returnRateLimits=false.
    let status = call(&mut alice_ws, json!({"id": 20, "method": "session.status"})).await;
    assert_eq!(
        status["rateLimits"][0]["rateLimitType"], "REQUEST_WEIGHT",
        "{status}"
    );
    let status = call(&mut bob_ws, json!({"id": 21, "method": "session.status"})).await;
    assert!(status.get("rateLimits").is_none(), "{status}");
    assert_eq!(status["result"]["userDataStream"], false);
    let answer = call(
        &mut bob_ws,
        json!({"id": 2, "method": "userDataStream.subscribe"}),
    )
    .await;
    assert_eq!(answer["result"], json!({"subscriptionId": 0}), "{answer}");
    let status = call(&mut bob_ws, json!({"id": 3, "method": "session.status"})).await;
    assert_eq!(status["result"]["userDataStream"], true);

    until_flowing(&nats.url(), "alice", &mut alice_ws).await;
    until_flowing(&nats.url(), "bob", &mut bob_ws).await;
    publish(
        &nats.url(),
        &[
            (Some("alice"), balance("BTC", 1)),
            (Some("bob"), balance("ETH", 2)),
            (Some("carol"), balance("SOL", 3)),
        ],
    )
    .await;
    let wrapped = |n, event| json!({"subscriptionId": n, "event": event});
    assert_eq!(
        drain(&mut alice_ws, Duration::from_millis(800)).await,
        [wrapped(0, balance("BTC", 1))]
    );
    assert_eq!(
        drain(&mut bob_ws, Duration::from_millis(800)).await,
        [wrapped(0, balance("ETH", 2))]
    );

    // Logout ends the logon's subscription with eventStreamTerminated.
    send_text(
        &mut bob_ws,
        &json!({"id": 4, "method": "session.logout"}).to_string(),
    )
    .await;
    let seen = drain(&mut bob_ws, Duration::from_millis(500)).await;
    assert!(
        seen.iter()
            .any(|m| m["event"]["e"] == "eventStreamTerminated"),
        "{seen:?}"
    );
    let answer = seen
        .iter()
        .find(|m| m["id"] == 4)
        .expect("the logout's answer");
    assert_eq!(answer["result"]["apiKey"], Value::Null);
    publish(&nats.url(), &[(Some("bob"), balance("ETH", 4))]).await;
    assert!(drain(&mut bob_ws, Duration::from_millis(500))
        .await
        .is_empty());

    // Alice lists, then unsubscribes.
    let listed = call(
        &mut alice_ws,
        json!({"id": 5, "method": "session.subscriptions"}),
    )
    .await;
    assert_eq!(listed["result"], json!([{"subscriptionId": 0}]));
    send_text(
        &mut alice_ws,
        &json!({"id": 6, "method": "userDataStream.unsubscribe",
                                      "params": {"subscriptionId": 0}})
        .to_string(),
    )
    .await;
    let seen = drain(&mut alice_ws, Duration::from_millis(500)).await;
    assert!(seen.iter().any(|m| m == &json!({"subscriptionId": 0, "event": {"e": "eventStreamTerminated", "E": m["event"]["E"]}})), "{seen:?}");
    publish(&nats.url(), &[(Some("alice"), balance("BTC", 5))]).await;
    assert!(drain(&mut alice_ws, Duration::from_millis(500))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_foreign_requests_are_refused_and_deliver_nothing() {
    let nats = NatsServer::new();
    let gateway = gateway(&nats);
    let alice = create_key(&gateway, "alice", "user-stream,trade");
    let mut ws = gateway.connect("/ws-api/v3").await;
    let code = |answer: &Value| (answer["status"].clone(), answer["error"]["code"].clone());

    let forged = signed_subscribe(1, &alice.key, "not-the-secret", now_ms());
    assert_eq!(
        code(&call(&mut ws, forged).await),
        (json!(400), json!(-1022))
    );
    let stale = signed_subscribe(2, &alice.key, &alice.secret, now_ms() - 10_000);
    assert_eq!(
        code(&call(&mut ws, stale).await),
        (json!(400), json!(-1021))
    );
    let ahead = signed_subscribe(3, &alice.key, &alice.secret, now_ms() + 5_000);
    assert_eq!(
        code(&call(&mut ws, ahead).await),
        (json!(400), json!(-1021))
    );
    // A replay within a wider window is accepted only while the window lasts.
    let params = sign(
        json!({"apiKey": alice.key, "timestamp": now_ms() - 10_000, "recvWindow": 20_000}),
        Signer::Hmac(&alice.secret),
    );
    let wide = json!({"id": 4, "method": "userDataStream.subscribe.signature", "params": params});
    let too_wide = sign(
        json!({"apiKey": alice.key, "timestamp": now_ms(), "recvWindow": 70_000}),
        Signer::Hmac(&alice.secret),
    );
    let too_wide =
        json!({"id": 5, "method": "userDataStream.subscribe.signature", "params": too_wide});
    assert_eq!(
        code(&call(&mut ws, too_wide).await),
        (json!(400), json!(-1131))
    );
    let unknown = signed_subscribe(6, "no-such-key", &alice.secret, now_ms());
    assert_eq!(
        code(&call(&mut ws, unknown).await),
        (json!(401), json!(-2015))
    );
    // session.logon takes Ed25519 keys only.
    let logon = json!({"id": 7, "method": "session.logon", "params":
        sign(json!({"apiKey": alice.key, "timestamp": now_ms()}), Signer::Hmac(&alice.secret))});
    assert_eq!(
        code(&call(&mut ws, logon).await),
        (json!(400), json!(-4056))
    );
    // Not logged on.
    let bare = json!({"id": 8, "method": "userDataStream.subscribe"});
    assert_eq!(code(&call(&mut ws, bare).await), (json!(401), json!(-1002)));
    let listed = call(&mut ws, json!({"id": 9, "method": "session.subscriptions"})).await;
    assert_eq!(listed["result"], json!([]));
    publish(&nats.url(), &[(Some("alice"), balance("BTC", 1))]).await;
    assert!(drain(&mut ws, Duration::from_millis(500)).await.is_empty());

    // The replay inside its 20 s window still works: the window is the only replay bound.
    assert_eq!(call(&mut ws, wide).await["status"], 200);

    // A bad id: -1135 with id null, then close 1008.
    let long_id = "x".repeat(51);
    send_text(
        &mut ws,
        &json!({"id": long_id, "method": "ping"}).to_string(),
    )
    .await;
    match next_within(&mut ws, WAIT).await {
        Some(Seen::Json(answer)) => {
            assert_eq!(answer["id"], Value::Null);
            assert_eq!(code(&answer), (json!(400), json!(-1135)));
        }
        other => panic!("expected -1135, got {other:?}"),
    }
    match next_within(&mut ws, WAIT).await {
        Some(Seen::Close(code, reason)) => {
            assert_eq!((code, reason.as_str()), (1008, "disconnected"))
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

/// A stand-in exchange backend on `nats`: answers `order.place` with an order and publishes its
/// fill as an `executionReport` for the user the gateway named; ignores `order.status` (a silent
/// backend). Every request it gets is sent to the returned channel.
async fn backend(nats: &str) -> mpsc::UnboundedReceiver<Value> {
    let client = async_nats::connect(nats).await.unwrap();
    let mut requests = client.subscribe("wsgate.trade.>").await.unwrap();
    let (seen, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut order_id = 0u64;
        while let Some(message) = requests.next().await {
            let request: Value = serde_json::from_slice(&message.payload).unwrap();
            let _ = seen.send(request.clone());
            if request["method"] != "order.place" {
                continue;
            }
            order_id += 1;
            let params = &request["params"];
            let result = json!({"symbol": params["symbol"], "orderId": order_id,
                                "clientOrderId": params["newClientOrderId"], "status": "FILLED"});
            let reply = json!({"status": 200, "result": result});
            client
                .publish(message.reply.unwrap(), reply.to_string().into())
                .await
                .unwrap();
            let fill = json!({"user_id": request["user_id"], "event": {
                "e": "executionReport", "E": now_ms(), "s": params["symbol"], "i": order_id,
                "X": "FILLED", "x": "TRADE"}});
            client
                .publish(SUBJECT, fill.to_string().into())
                .await
                .unwrap();
        }
    });
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_reach_the_backend_as_the_verified_user_and_their_fills_come_back() {
    let nats = NatsServer::new();
    let gateway = gateway(&nats);
    let alice = create_key(&gateway, "alice", "user-stream,trade");
    let mut backend_saw = backend(&nats.url()).await;
    let mut ws = gateway.connect("/ws-api/v3").await;
    let answer = call(
        &mut ws,
        signed_subscribe(1, &alice.key, &alice.secret, now_ms()),
    )
    .await;
    assert_eq!(answer["status"], 200, "{answer}");
    until_flowing(&nats.url(), "alice", &mut ws).await;

    // The client claims to be bob: the backend hears the key's owner, and the params verbatim.
    let params = sign(
        json!({"apiKey": alice.key, "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
               "quantity": "0.01", "newClientOrderId": "c-1", "user_id": "bob",
               "timestamp": now_ms()}),
        Signer::Hmac(&alice.secret),
    );
    let (placed, mut fills) = call_seeing(
        &mut ws,
        json!({"id": "order-1", "method": "order.place", "params": params.clone()}),
    )
    .await;
    assert_eq!(placed["status"], 200, "{placed}");
    assert_eq!(placed["result"]["clientOrderId"], "c-1");
    let heard = backend_saw.recv().await.unwrap();
    assert_eq!(heard["user_id"], "alice");
    assert_eq!(heard["method"], "order.place");
    assert_eq!(heard["params"], params);
    fills.extend(drain(&mut ws, Duration::from_millis(800)).await);
    assert_eq!(fills.len(), 1, "{fills:?}");
    assert_eq!(fills[0]["subscriptionId"], 0);
    assert_eq!(fills[0]["event"]["e"], "executionReport");
    assert_eq!(fills[0]["event"]["i"], placed["result"]["orderId"]);

    // An unsigned order is refused before it reaches the backend.
    let unsigned = json!({"id": 2, "method": "order.place",
                          "params": {"apiKey": alice.key, "symbol": "BTCUSDT", "timestamp": now_ms()}});
    assert_eq!(call(&mut ws, unsigned).await["error"]["code"], -1102);

    // 100 pipelined orders: 100 answers, matched by id.
    for n in 0..100 {
        let params = sign(
            json!({"apiKey": alice.key, "symbol": "BTCUSDT", "side": "SELL", "type": "MARKET",
                   "quantity": "0.01", "newClientOrderId": format!("p-{n}"), "timestamp": now_ms()}),
            Signer::Hmac(&alice.secret),
        );
        let request = json!({"id": format!("p-{n}"), "method": "order.place", "params": params});
        send_text(&mut ws, &request.to_string()).await;
    }
    let mut answered = BTreeSet::new();
    while answered.len() < 100 {
        match next_within(&mut ws, WAIT).await {
            Some(Seen::Json(m)) if m.get("status").is_some() => {
                assert_eq!(m["status"], 200, "{m}");
                let id = m["id"].as_str().unwrap().to_string();
                assert_eq!(m["result"]["clientOrderId"], id.as_str());
                assert!(answered.insert(id), "answered twice: {m}");
            }
            Some(Seen::Json(_)) => {} // fills
            other => panic!("after {} answers: {other:?}", answered.len()),
        }
    }

    // A silent backend: -1007 after the (1 s) timeout, status unknown.
    let params = sign(
        json!({"apiKey": alice.key, "symbol": "BTCUSDT", "orderId": 1, "timestamp": now_ms()}),
        Signer::Hmac(&alice.secret),
    );
    let started = std::time::Instant::now();
    let status = call(
        &mut ws,
        json!({"id": 3, "method": "order.status", "params": params}),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(status["status"], 503, "{status}");
    assert_eq!(status["error"]["code"], -1007);
    assert_eq!(
        status["error"]["msg"],
        "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_two_nodes_an_order_on_one_fills_on_the_users_stream_on_the_other() {
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let config = config(&nats.url());
    let node = |id: &str| {
        let extra = ["--admin-token", TEST_TOKEN];
        Gateway::cluster_node_with(&config, &redis.url(), &nats.url(), id, &extra)
    };
    let (a, b) = (node("a"), node("b"));
    let alice = create_key(&a, "alice", "user-stream,trade");
    let bob = create_key(&a, "bob", "user-stream,trade");
    let mut backend_saw = backend(&nats.url()).await;
    let mut alice_on_b = b.connect("/ws-api/v3").await;
    let mut bob_on_b = b.connect("/ws-api/v3").await;
    let answer = call(
        &mut alice_on_b,
        signed_subscribe(1, &alice.key, &alice.secret, now_ms()),
    )
    .await;
    assert_eq!(answer["status"], 200, "{answer}");
    let answer = call(
        &mut bob_on_b,
        signed_subscribe(1, &bob.key, &bob.secret, now_ms()),
    )
    .await;
    assert_eq!(answer["status"], 200, "{answer}");
    until_flowing(&nats.url(), "alice", &mut alice_on_b).await;
    until_flowing(&nats.url(), "bob", &mut bob_on_b).await;

    let mut alice_on_a = a.connect("/ws-api/v3").await;
    let params = sign(
        json!({"apiKey": alice.key, "symbol": "ETHUSDT", "side": "BUY", "type": "MARKET",
               "quantity": "1", "newClientOrderId": "x-1", "timestamp": now_ms()}),
        Signer::Hmac(&alice.secret),
    );
    let placed = call(
        &mut alice_on_a,
        json!({"id": 1, "method": "order.place", "params": params}),
    )
    .await;
    assert_eq!(placed["status"], 200, "{placed}");
    assert_eq!(backend_saw.recv().await.unwrap()["user_id"], "alice");
    let fills = drain(&mut alice_on_b, Duration::from_millis(800)).await;
    assert_eq!(fills.len(), 1, "{fills:?}");
    assert_eq!(fills[0]["event"]["s"], "ETHUSDT");
    assert!(drain(&mut bob_on_b, Duration::from_millis(300))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_ends_its_session_and_subscriptions() {
    let nats = NatsServer::new();
    let gateway = gateway(&nats);
    let (alice, mut alice_ws, bob_key, mut bob_ws) =
        alice_signed_bob_logged_on(&gateway, 9, "/ws-api/v3").await;

    for key in [&alice.key, &bob_key] {
        let revoked = gateway.cli(&["key", "revoke", key]);
        assert!(revoked.ok, "{revoked:?}");
    }
    // Within the check interval (5 s): alice's stream is terminated, bob's session refused.
    let terminated = next_within(&mut alice_ws, Duration::from_secs(8)).await;
    match terminated {
        Some(Seen::Json(m)) => assert_eq!(m["event"]["e"], "eventStreamTerminated", "{m}"),
        other => panic!("expected eventStreamTerminated, got {other:?}"),
    }
    match next_within(&mut bob_ws, Duration::from_secs(8)).await {
        Some(Seen::Json(m)) => {
            assert_eq!(m["id"], Value::Null);
            assert_eq!(
                (m["status"].clone(), m["error"]["code"].clone()),
                (json!(401), json!(-2015))
            );
        }
        other => panic!("expected the 401, got {other:?}"),
    }
    let status = call(&mut bob_ws, json!({"id": 2, "method": "session.status"})).await;
    assert_eq!(status["result"]["apiKey"], Value::Null);
    let again = call(
        &mut alice_ws,
        signed_subscribe(3, &alice.key, &alice.secret, now_ms()),
    )
    .await;
    assert_eq!(again["error"]["code"], -2015);
}
