//! Binance's legacy user-data flow against real nodes: listen keys through
//! `/api/v3/userDataStream`, private events at `/ws/<listenKey>` and `/stream?streams=<listenKey>`
//! from a real NATS source through the `binance_user_data` mapper, each user seeing only their
//! own; expiry, keepalive, revocation (across two nodes of a cluster), address binding, limits.

mod common;

use std::time::{Duration, Instant};

use common::accounts::{
    balance, config, connect_from, create_key, drain, listen_key, publish, until_flowing,
    user_data_stream, Key,
};
use common::nats::NatsServer;
use common::redis::RedisServer;
use common::{next_seen, Gateway, Seen, TEST_TOKEN};
use serde_json::json;

fn gateway(nats: &NatsServer, extra: &[&str]) -> Gateway {
    let mut args = vec!["--admin-token", TEST_TOKEN];
    args.extend_from_slice(extra);
    Gateway::start_with(config(&nats.url()), &args)
}

fn keys(gateway: &Gateway) -> (Key, Key) {
    (
        create_key(gateway, "alice", "user-stream,trade"),
        create_key(gateway, "bob", "user-stream"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_sees_only_their_own_events_and_unaddressed_ones_reach_nobody() {
    let nats = NatsServer::new();
    let gateway = gateway(&nats, &[]);
    let (alice, bob) = keys(&gateway);
    let alice_key = listen_key(gateway.addr, &alice.key);
    let bob_key = listen_key(gateway.addr, &bob.key);
    assert_eq!(alice_key.len(), 64);
    assert_ne!(alice_key, bob_key);

    let mut alice_ws = connect_from(gateway.addr, "127.0.0.1", &format!("/ws/{alice_key}"))
        .await
        .unwrap();
    let mut bob_ws = connect_from(
        gateway.addr,
        "127.0.0.1",
        &format!("/stream?streams={bob_key}"),
    )
    .await
    .unwrap();
    until_flowing(&nats.url(), "alice", &mut alice_ws).await;
    until_flowing(&nats.url(), "bob", &mut bob_ws).await;

    publish(
        &nats.url(),
        &[
            (Some("alice"), balance("BTC", 1)),
            (Some("bob"), balance("ETH", 2)),
            (None, balance("XRP", 3)),
            (Some("carol"), balance("SOL", 4)),
            (Some("alice"), balance("BTC", 5)),
        ],
    )
    .await;
    let to_alice = drain(&mut alice_ws, Duration::from_millis(800)).await;
    let to_bob = drain(&mut bob_ws, Duration::from_millis(800)).await;
    // Unwrapped on /ws, in the mapper's field order.
    assert_eq!(to_alice, [balance("BTC", 1), balance("BTC", 5)]);
    // Wrapped with the listen key on /stream.
    assert_eq!(
        to_bob,
        [json!({"stream": bob_key, "data": balance("ETH", 2)})]
    );
    let (_, metrics) = gateway.http_get("/metrics").unwrap();
    let unaddressed: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("wsgate_mapper_errors_total{") && l.contains("no_user_id"))
        .collect();
    assert_eq!(unaddressed.len(), 1, "{unaddressed:?}");
    assert!(
        unaddressed[0].contains("binance_user_data"),
        "{unaddressed:?}"
    );
    assert_eq!(
        common::metric_value(unaddressed[0], "wsgate_mapper_errors_total"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_key_endpoints_answer_like_binance() {
    let nats = NatsServer::new();
    let gateway = gateway(&nats, &["--listen-key-creates-per-key", "5"]);
    let (alice, bob) = keys(&gateway);
    let addr = gateway.addr;
    let key = listen_key(addr, &alice.key);
    assert_eq!(listen_key(addr, &alice.key), key, "the active key again");

    let call = |method: &str, api_key: Option<&str>, query: &str, body: &str| {
        user_data_stream(addr, "127.0.0.1", method, api_key, query, body)
    };
    let unknown = json!({"code": -1125, "msg": "This listenKey does not exist."});
    assert_eq!(
        call("PUT", Some(&alice.key), &format!("listenKey={key}"), ""),
        (200, json!({}))
    );
    // python-binance sends the key in a form body.
    assert_eq!(
        call("PUT", Some(&alice.key), "", &format!("listenKey={key}")),
        (200, json!({}))
    );
    assert_eq!(
        call("PUT", Some(&alice.key), "listenKey=nope", ""),
        (400, unknown.clone())
    );
    // Another user's key is as unknown as a made-up one.
    assert_eq!(
        call("PUT", Some(&bob.key), &format!("listenKey={key}"), ""),
        (400, unknown.clone())
    );
    assert_eq!(
        call("DELETE", Some(&bob.key), &format!("listenKey={key}"), ""),
        (400, unknown.clone())
    );
    let (status, body) = call("PUT", Some(&alice.key), "", "");
    assert_eq!((status, body["code"].clone()), (400, json!(-1102)));
    let (status, body) = call("POST", None, "", "");
    assert_eq!((status, body["code"].clone()), (401, json!(-2014)));
    let (status, body) = call("POST", Some("no-such-key"), "", "");
    assert_eq!((status, body["code"].clone()), (401, json!(-2015)));

    // A key without the user-stream permission gets no listen key.
    let trader = create_key(&gateway, "carol", "trade");
    let (status, body) = call("POST", Some(&trader.key), "", "");
    assert_eq!((status, body["code"].clone()), (401, json!(-2015)));

    // Unknown listen key on connect.
    let made_up = "A".repeat(64);
    let refused = connect_from(addr, "127.0.0.1", &format!("/ws/{made_up}")).await;
    assert_eq!(refused.err(), Some((400, unknown.clone())));
    // Bound to the address that created it.
    let elsewhere = connect_from(addr, "127.0.0.2", &format!("/ws/{key}")).await;
    assert_eq!(elsewhere.err(), Some((400, unknown.clone())));
    assert!(connect_from(addr, "127.0.0.1", &format!("/ws/{key}"))
        .await
        .is_ok());

    // Creations per API key are limited (5 per minute here; 2 were made above).
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(call("POST", Some(&alice.key), "", "").0);
    }
    assert_eq!(answers, [200, 200, 200, 429]);
    let (status, body) = call("POST", Some(&alice.key), "", "");
    assert_eq!((status, body["code"].clone()), (429, json!(-1003)));
    // The limit is per key: bob still creates.
    assert_eq!(call("POST", Some(&bob.key), "", "").0, 200);

    // Revoked: gone for good.
    assert_eq!(
        call("DELETE", Some(&alice.key), &format!("listenKey={key}"), ""),
        (200, json!({}))
    );
    assert_eq!(
        call("PUT", Some(&alice.key), &format!("listenKey={key}"), ""),
        (400, unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_sends_listen_key_expired_and_closes_and_keepalive_postpones_it() {
    let nats = NatsServer::new();
    let gateway = gateway(&nats, &["--listen-key-validity", "2s"]);
    let (alice, _) = keys(&gateway);
    let key = listen_key(gateway.addr, &alice.key);
    let mut client = connect_from(gateway.addr, "127.0.0.1", &format!("/ws/{key}"))
        .await
        .unwrap();
    let opened = Instant::now();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _) = user_data_stream(
        gateway.addr,
        "127.0.0.1",
        "PUT",
        Some(&alice.key),
        &format!("listenKey={key}"),
        "",
    );
    assert_eq!(status, 200);
    // Without the keepalive the key would expire at 2 s; it now lives until about 3.2 s.
    let notice = match next_seen(&mut client, Duration::from_secs(6)).await {
        Seen::Json(value) => value,
        other => panic!("expected listenKeyExpired, got {other:?}"),
    };
    let lived = opened.elapsed();
    assert!(
        lived > Duration::from_millis(2900),
        "expired after {lived:?}"
    );
    assert_eq!(notice["e"], "listenKeyExpired");
    assert_eq!(notice["listenKey"], key.as_str());
    assert!(notice["E"].as_u64().unwrap() > 1_600_000_000_000);
    match next_seen(&mut client, Duration::from_secs(2)).await {
        Seen::Close(code, reason) => {
            assert_eq!((code, reason.as_str()), (4001, "listenKey expired"))
        }
        other => panic!("expected a close, got {other:?}"),
    }
    let refused = connect_from(gateway.addr, "127.0.0.1", &format!("/ws/{key}")).await;
    assert_eq!(refused.err().map(|(status, _)| status), Some(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_two_nodes_keys_work_everywhere_events_follow_users_and_a_revoke_closes_within_a_second(
) {
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let config = config(&nats.url());
    let node = |id: &str| {
        let extra = ["--admin-token", TEST_TOKEN];
        Gateway::cluster_node_with(&config, &redis.url(), &nats.url(), id, &extra)
    };
    let (a, b) = (node("a"), node("b"));
    let (alice, bob) = keys(&a);
    // Created through node A, used on node B (and the other way round).
    let alice_key = listen_key(a.addr, &alice.key);
    let bob_key = listen_key(b.addr, &bob.key);
    let mut alice_on_b = connect_from(b.addr, "127.0.0.1", &format!("/ws/{alice_key}"))
        .await
        .unwrap();
    let mut bob_on_a = connect_from(a.addr, "127.0.0.1", &format!("/ws/{bob_key}"))
        .await
        .unwrap();
    until_flowing(&nats.url(), "alice", &mut alice_on_b).await;
    until_flowing(&nats.url(), "bob", &mut bob_on_a).await;
    publish(
        &nats.url(),
        &[
            (Some("alice"), balance("BTC", 1)),
            (Some("bob"), balance("ETH", 2)),
        ],
    )
    .await;
    assert_eq!(
        drain(&mut alice_on_b, Duration::from_millis(800)).await,
        [balance("BTC", 1)]
    );
    assert_eq!(
        drain(&mut bob_on_a, Duration::from_millis(800)).await,
        [balance("ETH", 2)]
    );

    let revoking = Instant::now();
    let (status, _) = user_data_stream(
        a.addr,
        "127.0.0.1",
        "DELETE",
        Some(&alice.key),
        &format!("listenKey={alice_key}"),
        "",
    );
    assert_eq!(status, 200);
    match next_seen(&mut alice_on_b, Duration::from_secs(3)).await {
        Seen::Close(code, _) => assert_eq!(code, 4002),
        other => panic!("expected a close, got {other:?}"),
    }
    let took = revoking.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "closed {took:?} after the revoke"
    );
    // Bob's connection on node A is untouched.
    publish(&nats.url(), &[(Some("bob"), balance("ETH", 3))]).await;
    assert_eq!(
        drain(&mut bob_on_a, Duration::from_millis(800)).await,
        [balance("ETH", 3)]
    );
}
