//! HashKey's private side on a real node: the signed listen-key endpoint
//! (`POST/PUT/DELETE /api/v1/userDataStream`), the private stream `/api/v1/ws/<listenKey>` with
//! its events as JSON arrays in HashKey's formats, mapped from the same account events as the
//! Binance user-data stream of the same order, and the server's JSON pings with HashKey's
//! two-missed-pings rule.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::accounts::{connect_from, drain, form_request, hmac_hex, now_ms, sign, Signer};
use common::{next_seen, send_text, Client, Gateway, Seen};

/// The demo config's alice: API key and HMAC secret.
const ALICE: (&str, &str) = ("wsgate-demo-alice", "wsgate-demo-alice-secret");
const PATH: &str = "/api/v1/userDataStream";

/// A signed HashKey request to the listen-key endpoint: `params` then `timestamp`, signed as
/// ccxt's `hashkey` signs (the form body as sent, without `signature`).
fn signed(gateway: &Gateway, method: &str, key: (&str, &str), params: &str) -> (u16, Value) {
    let mut body = format!("timestamp={}", now_ms());
    if !params.is_empty() {
        body = format!("{params}&{body}");
    }
    let body = format!("{body}&signature={}", hmac_hex(key.1, &body));
    let header = Some(("X-HK-APIKEY", key.0));
    form_request(gateway.addr, "127.0.0.1", method, PATH, header, "", &body)
}

fn create(gateway: &Gateway) -> String {
    let (status, body) = signed(gateway, "POST", ALICE, "");
    assert_eq!(status, 200, "{body}");
    body["listenKey"].as_str().expect("a listenKey").to_string()
}

#[test]
fn the_signed_endpoint_creates_extends_and_deletes_listen_keys() {
    let gateway = Gateway::start(&[]);
    let key = create(&gateway);
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
    // The caller's active key is returned again, as Binance's endpoint does.
    assert_eq!(create(&gateway), key);

    let header = Some(("X-HK-APIKEY", ALICE.0));
    let post = |body: &str| form_request(gateway.addr, "127.0.0.1", "POST", PATH, header, "", body);
    let now = now_ms();
    let (status, body) = post(&format!("timestamp={now}"));
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(-1102)),
        "{body}"
    );
    assert!(
        body["msg"].as_str().unwrap().contains("'signature'"),
        "{body}"
    );
    let (status, body) = post(&format!("timestamp={now}&signature={}", "ab".repeat(32)));
    assert_eq!((status, &body["code"]), (400, &json!(-1022)), "{body}");
    let stale = format!("timestamp={}", now - 60_000);
    let (status, body) = post(&format!("{stale}&signature={}", hmac_hex(ALICE.1, &stale)));
    assert_eq!((status, &body["code"]), (400, &json!(-1021)), "{body}");
    let (status, body) = signed(&gateway, "POST", (ALICE.0, "not-alices-secret"), "");
    assert_eq!((status, &body["code"]), (400, &json!(-1022)), "{body}");
    let (status, body) = form_request(gateway.addr, "127.0.0.1", "POST", PATH, None, "", "");
    assert_eq!(status, 401, "{body}");

    let extended = signed(&gateway, "PUT", ALICE, &format!("listenKey={key}"));
    assert_eq!(extended.0, 200, "{extended:?}");
    let deleted = signed(&gateway, "DELETE", ALICE, &format!("listenKey={key}"));
    assert_eq!(deleted.0, 200, "{deleted:?}");
    let refused = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(connect_from(
            gateway.addr,
            "127.0.0.1",
            &format!("/api/v1/ws/{key}"),
        ));
    match refused {
        Err((status, body)) => assert_eq!((status, &body["code"]), (400, &json!(-1125))),
        Ok(_) => panic!("a deleted listen key opened a private stream"),
    }
}

/// Sends a Binance WebSocket API request signed with `who`; its answer, and the stream events
/// that arrived before it.
async fn call(
    client: &mut Client,
    id: u64,
    method: &str,
    who: (&str, &str),
    params: Value,
) -> (Value, Vec<Value>) {
    let mut params = params;
    params["apiKey"] = json!(who.0);
    params["timestamp"] = json!(now_ms());
    let request = json!({"id": id, "method": method, "params": sign(params, Signer::Hmac(who.1))});
    send_text(client, &request.to_string()).await;
    let mut events = Vec::new();
    loop {
        match next_seen(client, Duration::from_secs(10)).await {
            Seen::Json(m) if m["id"] == id => return (m, events),
            Seen::Json(m) => events.push(m),
            other => panic!("no answer to {id}: {other:?}"),
        }
    }
}

/// The events of HashKey private frames (each a JSON array), skipping the server's pings.
fn unwrap_arrays(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f.get("ping").is_none())
        .flat_map(|f| {
            let events = f.as_array().unwrap_or_else(|| panic!("not an array: {f}"));
            assert_eq!(events.len(), 1, "{f}");
            events.clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_reaches_the_hashkey_stream_as_arrays_and_the_binance_stream_in_its_format() {
    let gateway = Gateway::start(&[]);
    let key = create(&gateway);
    let mut hashkey = gateway.connect(&format!("/api/v1/ws/{key}")).await;
    let mut binance = gateway.connect("/ws-api/v3").await;
    let subscribed = call(
        &mut binance,
        1,
        "userDataStream.subscribe.signature",
        ALICE,
        json!({}),
    )
    .await
    .0;
    assert_eq!(subscribed["status"], 200, "{subscribed}");

    let start = Instant::now();
    // The order's first events may come before the answer to order.place.
    let mut binance_frames = Vec::new();
    let placed = loop {
        let order =
            json!({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"});
        let (answer, events) = call(&mut binance, 2, "order.place", ALICE, order).await;
        binance_frames.extend(events);
        if answer["status"] == 200 || start.elapsed() > Duration::from_secs(10) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(placed["result"]["status"], "FILLED", "{placed}");
    let order_id = placed["result"]["orderId"].as_u64().unwrap();

    let (hashkey_frames, binance_later) = tokio::join!(
        drain(&mut hashkey, Duration::from_millis(1_500)),
        drain(&mut binance, Duration::from_millis(1_500))
    );
    binance_frames.extend(binance_later);
    let events = unwrap_arrays(&hashkey_frames);
    let kinds: Vec<&str> = events.iter().map(|e| e["e"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "executionReport",
            "outboundAccountInfo",
            "executionReport",
            "ticketInfo",
            "outboundAccountInfo",
            "outboundAccountInfo"
        ],
        "{events:?}"
    );
    let (new, fill, ticket) = (&events[0], &events[2], &events[3]);
    assert_eq!((&new["X"], &fill["X"]), (&json!("NEW"), &json!("FILLED")));
    for event in [new, fill] {
        assert_eq!(event["i"], json!(order_id.to_string()), "{event}");
        assert_eq!(event["s"], "BTCUSDT");
    }
    assert_eq!(fill["z"], "0.01", "HashKey prints trimmed decimals: {fill}");
    assert_eq!(ticket["o"], json!(order_id.to_string()), "{ticket}");
    assert_eq!(ticket["q"], "0.01");
    // One account info per asset (ccxt reads the first balance of each).
    let balances: Vec<&Value> = events[4..].iter().map(|info| &info["B"]).collect();
    assert!(
        balances.iter().all(|b| b.as_array().unwrap().len() == 1),
        "{balances:?}"
    );
    let btc = balances
        .iter()
        .map(|b| &b[0])
        .find(|b| b["a"] == "BTC")
        .cloned()
        .expect("a BTC balance");
    assert_eq!(btc["f"], "1.01", "{btc}");

    // The same order on the Binance stream, in Binance's format and nothing of HashKey's.
    let binance_kinds: Vec<&str> = binance_frames
        .iter()
        .map(|m| m["event"]["e"].as_str().unwrap())
        .collect();
    assert_eq!(
        binance_kinds,
        [
            "executionReport",
            "outboundAccountPosition",
            "executionReport",
            "outboundAccountPosition"
        ]
    );
    assert_eq!(binance_frames[2]["event"]["i"], json!(order_id));
    assert_eq!(binance_frames[2]["event"]["z"], "0.01000000");
}

#[tokio::test]
async fn the_server_pings_in_json_and_closes_after_two_missed_pings() {
    let gateway = Gateway::start(&["--ping-interval", "1s"]);
    let key = create(&gateway);
    let path = format!("/api/v1/ws/{key}");
    let mut silent = gateway.connect(&path).await;
    let mut answering = gateway.connect(&path).await;
    let started = Instant::now();

    let answer = async {
        let mut pings = 0;
        while started.elapsed() < Duration::from_millis(4_500) {
            match tokio::time::timeout(
                Duration::from_millis(500),
                next_seen(&mut answering, Duration::from_secs(5)),
            )
            .await
            {
                Ok(Seen::Json(m)) if m.get("ping").is_some() => {
                    assert_eq!(m.as_object().map(|o| o.len()), Some(1), "{m}");
                    pings += 1;
                    send_text(&mut answering, &json!({"pong": m["ping"]}).to_string()).await;
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(_) => {}
            }
        }
        let sent = now_ms();
        send_text(&mut answering, &json!({"ping": sent}).to_string()).await;
        let pong = loop {
            match next_seen(&mut answering, Duration::from_secs(5)).await {
                Seen::Json(m) if m.get("pong").is_some() => break m,
                Seen::Json(_) => continue,
                other => panic!("no pong: {other:?}"),
            }
        };
        (pings, pong, sent)
    };
    let closed = async {
        let close = common::expect_close(&mut silent, Duration::from_secs(10)).await;
        (close, started.elapsed())
    };
    let ((pings, pong, sent), ((code, _), after)) = tokio::join!(answer, closed);
    assert!(pings >= 3, "{pings} pings");
    // A client's ping is answered with its own time stamp on the private stream.
    assert_eq!(pong, json!({"pong": sent}));
    assert_eq!(code, 1008);
    // Pings at 1 s and 2 s unanswered: closed one interval after the second.
    assert!(
        after >= Duration::from_millis(2_900) && after < Duration::from_secs(6),
        "{after:?}"
    );
}

/// ccxt.pro's `hashkey` with alice's credentials, unmodified but for its URLs: a listen key from
/// the signed endpoint, then `watch_orders` on the private stream sees the orders placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccxt_hashkey_watches_its_orders() {
    let gateway = Gateway::start(&[]);
    let (http, ws) = (
        format!("http://{}", gateway.addr),
        format!("ws://{}", gateway.addr),
    );
    let (child, lines) = common::scripts::run_client(
        "dialect_clients.py",
        &["hashkey-orders", &http, &ws, ALICE.0, ALICE.1, "2"],
    );
    let lines = std::sync::Arc::new(std::sync::Mutex::new(lines));
    let first = {
        let lines = std::sync::Arc::clone(&lines);
        tokio::task::spawn_blocking(move || {
            common::scripts::next_line(&lines.lock().unwrap(), Duration::from_secs(30))
        })
        .await
        .unwrap()
    };
    let listen_key = first["listen_key"]
        .as_str()
        .expect("a listen key first")
        .to_string();
    assert_eq!(listen_key.len(), 64, "{first}");

    // Orders until ccxt has seen two of them (its socket opens a moment after the key).
    let mut placing = gateway.connect("/ws-api/v3").await;
    let mut placed = Vec::new();
    let mut seen = Vec::new();
    let start = Instant::now();
    while seen.len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "ccxt saw {seen:?} of {placed:?}"
        );
        let order =
            json!({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"});
        let answer = call(
            &mut placing,
            10 + placed.len() as u64,
            "order.place",
            ALICE,
            order,
        )
        .await
        .0;
        if answer["status"] == 200 {
            placed.push(answer["result"]["orderId"].as_u64().unwrap().to_string());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok(line) = lines.lock().unwrap().try_recv() {
            if let Some(order) = line.get("order") {
                seen.push(order.clone());
            }
        }
    }
    for order in &seen {
        assert!(
            placed.contains(&order["id"].as_str().unwrap().to_string()),
            "{order} not in {placed:?}"
        );
        assert_eq!(
            (&order["symbol"], &order["side"], &order["type"]),
            (&json!("BTC/USDT"), &json!("buy"), &json!("market")),
            "{order}"
        );
        assert!(
            matches!(order["status"].as_str(), Some("open" | "closed")),
            "{order}"
        );
    }
    common::scripts::wait_success(child, Duration::from_secs(30));
}
