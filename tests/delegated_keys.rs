//! API keys kept by the exchange's own auth service, asked over real NATS request/reply: a key
//! it knows works, an unknown one is refused, answers are cached for their time to live, a key
//! the service disables stops working when the cache expires, and a silent service fails closed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::accounts::{
    balance, config, drain, next_within, now_ms, publish, sign, user_data_stream, Signer,
};
use common::nats::NatsServer;
use common::{send_text, Client, Gateway, Seen, TEST_TOKEN};
use futures_util::StreamExt;
use serde_json::{json, Value};

const KEY: &str = "ext-alice";
const SECRET: &str = "ext-alice-secret";

/// The stand-in auth service; answers while `up`, says alice's key is disabled once `disabled`.
struct AuthService {
    asked: Arc<AtomicUsize>,
    up: Arc<AtomicBool>,
    disabled: Arc<AtomicBool>,
}

async fn auth_service(nats: &str) -> AuthService {
    let client = async_nats::connect(nats).await.unwrap();
    let mut requests = client.subscribe("auth.keys").await.unwrap();
    let service = AuthService {
        asked: Arc::default(),
        up: Arc::new(AtomicBool::new(true)),
        disabled: Arc::default(),
    };
    let (asked, up, disabled) = (
        service.asked.clone(),
        service.up.clone(),
        service.disabled.clone(),
    );
    tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            asked.fetch_add(1, Ordering::SeqCst);
            if !up.load(Ordering::SeqCst) {
                continue;
            }
            let request: Value = serde_json::from_slice(&message.payload).unwrap();
            let answer = if request["api_key"] == KEY {
                json!({"key": {"user_id": "alice", "permissions": ["user-stream", "trade"],
                               "secret": SECRET, "disabled": disabled.load(Ordering::SeqCst)}})
            } else {
                json!({"key": null})
            };
            client
                .publish(message.reply.unwrap(), answer.to_string().into())
                .await
                .unwrap();
        }
    });
    service
}

async fn subscribe(ws: &mut Client, id: u64, key: &str) -> Value {
    let params = sign(
        json!({"apiKey": key, "timestamp": now_ms()}),
        Signer::Hmac(SECRET),
    );
    let request =
        json!({"id": id, "method": "userDataStream.subscribe.signature", "params": params});
    send_text(ws, &request.to_string()).await;
    loop {
        match next_within(ws, Duration::from_secs(10)).await {
            Some(Seen::Json(m)) if m["id"] == id => return m,
            Some(Seen::Json(_)) => {}
            other => panic!("no answer: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_auth_service_cached_and_failing_closed() {
    let nats = NatsServer::new();
    let service = auth_service(&nats.url()).await;
    let gateway = Gateway::start_with(
        config(&nats.url()),
        &[
            "--admin-token",
            TEST_TOKEN,
            "--trade-nats",
            &nats.url(),
            "--auth-subject",
            "auth.keys",
            "--auth-timeout",
            "500ms",
            "--auth-cache-ttl",
            "1s",
        ],
    );
    let mut ws = gateway.connect("/ws-api/v3").await;
    let answer = subscribe(&mut ws, 1, KEY).await;
    assert_eq!(answer["status"], 200, "{answer}");
    // Cached: a second use within the time to live asks nobody.
    let asked = service.asked.load(Ordering::SeqCst);
    let (status, _) = user_data_stream(gateway.addr, "127.0.0.1", "POST", Some(KEY), "", "");
    assert_eq!(status, 200);
    assert_eq!(service.asked.load(Ordering::SeqCst), asked);

    for _ in 0..30 {
        publish(&nats.url(), &[(Some("alice"), balance("EXT", 1))]).await;
        if let Some(Seen::Json(_)) = next_within(&mut ws, Duration::from_millis(300)).await {
            break;
        }
    }
    drain(&mut ws, Duration::from_millis(300)).await;
    publish(&nats.url(), &[(Some("alice"), balance("EXT", 2))]).await;
    let events = drain(&mut ws, Duration::from_millis(500)).await;
    assert_eq!(
        events,
        [json!({"subscriptionId": 0, "event": balance("EXT", 2)})]
    );

    let unknown = subscribe(&mut ws, 2, "nobody").await;
    assert_eq!(
        (unknown["status"].clone(), unknown["error"]["code"].clone()),
        (json!(401), json!(-2015))
    );

    // The service disables the key: refused once the cached answer expires.
    service.disabled.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let mut other = gateway.connect("/ws-api/v3").await;
    let refused = subscribe(&mut other, 3, KEY).await;
    assert_eq!(refused["error"]["code"], -2015, "{refused}");

    // A silent service fails closed: refused as unavailable, never let through.
    service.up.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let silent = subscribe(&mut other, 4, KEY).await;
    assert_eq!(
        (silent["status"].clone(), silent["error"]["code"].clone()),
        (json!(503), json!(-1001)),
        "{silent}"
    );
    let (status, body) = user_data_stream(gateway.addr, "127.0.0.1", "POST", Some(KEY), "", "");
    assert_eq!((status, body["code"].clone()), (503, json!(-1001)));
}
