//! The client protocol of `docs/binance-protocol.md` §1–3 against a real gateway process:
//! URL forms, control methods and their exact replies, error texts, limits, ping/pong and closes.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn control_methods_reply_exactly_like_binance() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway.connect("/ws").await;
    let sub =
        json!({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "btcusdt@depth"], "id": 1});
    assert_eq!(
        request(&mut client, sub).await,
        json!({"result": null, "id": 1})
    );
    let list = request(
        &mut client,
        json!({"method": "LIST_SUBSCRIPTIONS", "id": 3}),
    )
    .await;
    assert_eq!(
        list,
        json!({"result": ["btcusdt@aggTrade", "btcusdt@depth"], "id": 3})
    );
    let unsub = json!({"method": "UNSUBSCRIBE", "params": ["btcusdt@depth"], "id": 312});
    assert_eq!(
        request(&mut client, unsub).await,
        json!({"result": null, "id": 312})
    );
    let list = request(
        &mut client,
        json!({"method": "LIST_SUBSCRIPTIONS", "id": 4}),
    )
    .await;
    assert_eq!(list["result"], json!(["btcusdt@aggTrade"]));

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let get = request(
        &mut client,
        json!({"method": "GET_PROPERTY", "params": ["combined"], "id": 2}),
    )
    .await;
    assert_eq!(get, json!({"result": false, "id": 2}));
    let set = request(
        &mut client,
        json!({"method": "SET_PROPERTY", "params": ["combined", true], "id": 5}),
    )
    .await;
    assert_eq!(set, json!({"result": null, "id": 5}));
    let get = request(
        &mut client,
        json!({"method": "GET_PROPERTY", "params": ["combined"], "id": 6}),
    )
    .await;
    assert_eq!(get, json!({"result": true, "id": 6}));
}

#[tokio::test]
async fn ids_may_be_negative_integers_uuid_strings_or_null() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway.connect("/stream").await;
    for id in [
        json!(-42),
        json!("e2a8b3c4-1f0d-4c5e-9a7b-3d2c1b0a9f8e"),
        json!(null),
        json!(i64::MAX),
    ] {
        let reply = request(
            &mut client,
            json!({"method": "LIST_SUBSCRIPTIONS", "id": id}),
        )
        .await;
        assert_eq!(reply, json!({"result": [], "id": id}));
    }
}

/// Sends raw text and returns the reply text exactly as the gateway wrote it.
async fn raw_reply(client: &mut Client, text: &str) -> String {
    send_text(client, text).await;
    match next_seen(client, WAIT).await {
        Seen::Json(value) => value.to_string(),
        other => panic!("expected a reply to {text}, got {other:?}"),
    }
}

#[tokio::test]
async fn every_documented_error_text() {
    let gateway = Gateway::start(&[]);
    let cases: Vec<(&str, Value)> = vec![
        (
            r#"{"method":"GET_PROPERTY","params":["compressed"],"id":1}"#,
            json!({"error": {"code": 0, "msg": "Unknown property"}, "id": 1}),
        ),
        (
            r#"{"method":"SET_PROPERTY","params":["combined","yes"],"id":2}"#,
            json!({"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": 2}),
        ),
        (
            r#"{"method":"SET_PROPERTY","params":[true],"id":3}"#,
            json!({"error": {"code": 2, "msg": "Invalid request: property name must be a string"}, "id": 3}),
        ),
        (
            r#"{"method":"LIST_SUBSCRIPTIONS","id":1.5}"#,
            json!({"error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}, "id": null}),
        ),
        (
            r#"{"method":"SUBSCRIBEX","params":[],"id":4}"#,
            json!({"error": {"code": 2, "msg": "Invalid request: unknown variant `SUBSCRIBEX`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` at line 1 column 22"}, "id": 4}),
        ),
        (
            r#"{"method":"GET_PROPERTY","params":["combined","x"],"id":5}"#,
            json!({"error": {"code": 2, "msg": "Invalid request: too many parameters"}, "id": 5}),
        ),
        (
            r#"{"params":["btcusdt@trade"],"id":6}"#,
            json!({"error": {"code": 2, "msg": "Invalid request: missing field `method` at line 1 column 35"}, "id": 6}),
        ),
        (
            r#"{"method":"SUBSCRIBE","params":["btcusdt@nosuchstream"],"id":7}"#,
            json!({"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 7}),
        ),
        (
            r#"{"method":"SUBSCRIBE","params":["not a stream"],"id":8}"#,
            json!({"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 8}),
        ),
    ];
    for (i, (sent, expected)) in cases.iter().enumerate() {
        // A fresh connection per request keeps within the 5 messages/s budget.
        if i % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(1050)).await;
        }
        let mut client = gateway.connect("/ws").await;
        let reply: Value = serde_json::from_str(&raw_reply(&mut client, sent).await).unwrap();
        assert_eq!(&reply, expected, "reply to {sent}");
    }
}

#[tokio::test]
async fn invalid_json_gets_code_3_then_close_1008() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway.connect("/ws").await;
    let reply = raw_reply(&mut client, "{\"method\": SUBSCRIBE").await;
    assert_eq!(
        reply,
        json!({"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 12"}})
            .to_string()
    );
    assert_eq!(expect_close(&mut client, WAIT).await.0, 1008);
}

#[tokio::test]
async fn a_sixth_message_within_one_second_closes_with_1008() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway.connect("/ws").await;
    for id in 0..6 {
        send_text(
            &mut client,
            &json!({"method": "LIST_SUBSCRIPTIONS", "id": id}).to_string(),
        )
        .await;
    }
    for id in 0..5 {
        assert_eq!(
            next_json(&mut client, WAIT).await,
            json!({"result": [], "id": id})
        );
    }
    assert_eq!(
        expect_close(&mut client, WAIT).await,
        (1008, "Too many requests".to_string())
    );

    // Pings count too.
    let mut client = gateway.connect("/ws").await;
    for _ in 0..6 {
        client.send(Message::Ping(vec![1].into())).await.unwrap();
    }
    assert_eq!(expect_close(&mut client, WAIT).await.0, 1008);

    // Five a second is fine.
    let mut client = gateway.connect("/ws").await;
    for id in 0..10 {
        let reply = request(
            &mut client,
            json!({"method": "LIST_SUBSCRIPTIONS", "id": id}),
        )
        .await;
        assert_eq!(reply["id"], id);
        tokio::time::sleep(Duration::from_millis(210)).await;
    }
}

#[tokio::test]
async fn the_1025th_stream_is_rejected_and_none_of_its_batch_subscribed() {
    let names: Vec<String> = (0..1100).map(|i| format!("s{i:04}usdt")).collect();
    let config = json!({
        "vars": {"symbol": names},
        "datasource": [{"version": 1, "type": "demo", "name": "demo"}],
        "topics": [{"version": 1, "topic": "{symbol}@trade"}],
        "routes": [{
            "id": "trades", "version": 1, "data_source": "demo", "upstream": ["trade.*"],
            "mappings": [{"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade", "ws_topic": "{symbol}@trade"}]
        }]
    });
    let gateway = Gateway::start_with(config, &[]);
    let mut client = gateway.connect("/ws").await;
    let first: Vec<String> = names[..1000].iter().map(|s| format!("{s}@trade")).collect();
    let reply = request(
        &mut client,
        json!({"method": "SUBSCRIBE", "params": first, "id": 1}),
    )
    .await;
    assert_eq!(reply, json!({"result": null, "id": 1}));
    let next: Vec<String> = names[1000..1024]
        .iter()
        .map(|s| format!("{s}@trade"))
        .collect();
    let reply = request(
        &mut client,
        json!({"method": "SUBSCRIBE", "params": next, "id": 2}),
    )
    .await;
    assert_eq!(reply, json!({"result": null, "id": 2}));
    let over = vec![
        format!("{}@trade", names[1024]),
        format!("{}@trade", names[1025]),
    ];
    let reply = request(
        &mut client,
        json!({"method": "SUBSCRIBE", "params": over, "id": 3}),
    )
    .await;
    assert_eq!(
        reply,
        json!({"error": {"code": 2, "msg": "Invalid request: too many streams"}, "id": 3})
    );
    let list = request(
        &mut client,
        json!({"method": "LIST_SUBSCRIPTIONS", "id": 4}),
    )
    .await;
    let listed = list["result"].as_array().unwrap();
    assert_eq!(listed.len(), 1024);
    assert!(!listed.contains(&json!(format!("{}@trade", names[1024]))));

    // An invalid stream anywhere in a batch subscribes none of it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut client = gateway.connect("/ws").await;
    let batch =
        json!({"method": "SUBSCRIBE", "params": ["s0001usdt@trade", "s0001usdt@bogus"], "id": 5});
    assert_eq!(request(&mut client, batch).await["error"]["code"], 2);
    let list = request(
        &mut client,
        json!({"method": "LIST_SUBSCRIPTIONS", "id": 6}),
    )
    .await;
    assert_eq!(list["result"], json!([]));
}

#[tokio::test]
async fn compat_mode_accepts_unknown_streams_silently() {
    let gateway = Gateway::start(&["--accept-unknown-streams"]);
    let mut client = gateway.connect("/ws").await;
    let reply = request(
        &mut client,
        json!({"method": "SUBSCRIBE", "params": ["btcusdt@nosuch"], "id": 99}),
    )
    .await;
    assert_eq!(reply, json!({"result": null, "id": 99}));
    let list = request(
        &mut client,
        json!({"method": "LIST_SUBSCRIPTIONS", "id": 100}),
    )
    .await;
    assert_eq!(list["result"], json!(["btcusdt@nosuch"]));
}

#[tokio::test]
async fn binary_frames_close_with_1003() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway.connect("/ws").await;
    client
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(expect_close(&mut client, WAIT).await.0, 1003);
}

#[tokio::test]
async fn oversized_messages_close_with_1009() {
    let gateway = Gateway::start(&["--max-message-bytes", "1024"]);
    let mut client = gateway.connect("/ws").await;
    send_text(&mut client, &"x".repeat(2000)).await;
    assert_eq!(expect_close(&mut client, WAIT).await.0, 1009);
}

#[tokio::test]
async fn every_url_form_clients_use_connects() {
    let gateway = Gateway::start(&[]);
    for path in ["/ws", "/ws/", "/ws/0", "/stream", "/stream?streams="] {
        let mut client = gateway.connect(path).await;
        let reply = request(
            &mut client,
            json!({"method": "LIST_SUBSCRIPTIONS", "id": 1}),
        )
        .await;
        assert_eq!(reply, json!({"result": [], "id": 1}), "{path}");
    }
    let forms = [
        ("/ws/btcusdt@trade", false, vec!["btcusdt@trade"]),
        ("/ws/btcusdt%40trade", false, vec!["btcusdt@trade"]),
        (
            "/stream?streams=btcusdt@trade/ethusdt@trade",
            true,
            vec!["btcusdt@trade", "ethusdt@trade"],
        ),
        (
            "/stream?streams=btcusdt%40trade%2Fethusdt%40trade",
            true,
            vec!["btcusdt@trade", "ethusdt@trade"],
        ),
        (
            "/stream?streams=btcusdt@trade&timeUnit=MICROSECOND",
            true,
            vec!["btcusdt@trade"],
        ),
    ];
    for (path, combined, streams) in forms {
        let mut client = gateway.connect(path).await;
        let reply = request(
            &mut client,
            json!({"method": "LIST_SUBSCRIPTIONS", "id": 7}),
        )
        .await;
        assert_eq!(reply["result"], json!(streams), "{path}");
        let get = request(
            &mut client,
            json!({"method": "GET_PROPERTY", "params": ["combined"], "id": 8}),
        )
        .await;
        assert_eq!(get["result"], combined, "{path}");
    }
    // Not a stream endpoint, or a bad timeUnit: the handshake is refused.
    for path in ["/nope", "/stream/nonsense", "/ws?timeUnit=NANOSECOND"] {
        assert!(
            tokio_tungstenite::connect_async(gateway.url(path))
                .await
                .is_err(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn server_pings_and_closes_when_pongs_stop() {
    let gateway = Gateway::start(&["--ping-interval", "300ms", "--pong-timeout", "1s"]);
    // A client that answers pings stays connected.
    let mut polite = gateway.connect("/ws").await;
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(message) =
        tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut polite)).await
    {
        match message {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(frame))) => panic!("polite client closed: {frame:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        pings >= 5,
        "saw {pings} pings in 2.5 s at a 300 ms interval"
    );

    // A client that never answers (a raw socket: tungstenite would answer pings by itself) is
    // closed once the pong timeout passes.
    let started = std::time::Instant::now();
    let mut silent = RawClient::connect(gateway.addr, "/ws");
    let (pings, close) = silent.read_until_close(WAIT);
    assert!(pings >= 1, "the silent client saw no ping");
    assert_eq!(close, 1008);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1200) && elapsed < Duration::from_secs(5),
        "closed after {elapsed:?}"
    );
}

#[tokio::test]
async fn client_pings_are_answered_at_once() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway.connect("/ws").await;
    let sent = std::time::Instant::now();
    client
        .send(Message::Ping(b"hello".to_vec().into()))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut client))
            .await
            .unwrap()
        {
            Some(Ok(Message::Pong(payload))) => {
                assert_eq!(&payload[..], b"hello");
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("no pong: {other:?}"),
        }
    }
    assert!(sent.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn lifetime_ends_with_server_shutdown_then_1001() {
    let gateway = Gateway::start(&["--max-lifetime", "1500ms"]);
    let mut raw = gateway.connect("/ws").await;
    let mut combined = gateway.connect("/stream").await;
    let notice = next_json(&mut raw, WAIT).await;
    assert_eq!(notice["e"], "serverShutdown");
    assert!(notice["E"].is_i64());
    assert_eq!(expect_close(&mut raw, WAIT).await.0, 1001);
    let notice = next_json(&mut combined, WAIT).await;
    assert_eq!(notice["stream"], "!serverShutdown");
    assert_eq!(notice["data"]["e"], "serverShutdown");
    assert_eq!(expect_close(&mut combined, WAIT).await.0, 1001);
}

#[tokio::test]
async fn closes_are_counted_by_code() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway.connect("/ws").await;
    client.send(Message::Binary(vec![0].into())).await.unwrap();
    assert_eq!(expect_close(&mut client, WAIT).await.0, 1003);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gateway.metric("wsgate_closes_total{code=\"1003\"}"), 1.0);
}
