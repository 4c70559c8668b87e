//! HashKey's public streams (`/quote/ws/v1`, `/quote/ws/v2`) on a real node next to Binance's:
//! `sub` and `cancel` with their replies, JSON heartbeats and the close of a silent client, the
//! trade and depth pushes of both versions, HashKey's error code, and one upstream trade reaching
//! a Binance client and a HashKey client of the same node, each in its own format, mapped once
//! per format.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::{during, expect_close, keys, next_seen, send_text, Client, Gateway, Seen};

/// A decimal string's value (HashKey prints decimals trimmed, Binance with 8 places).
fn decimal(value: &Value) -> f64 {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {value}"))
        .parse()
        .unwrap()
}

/// The next JSON message, skipping none; panics on a close.
async fn next(client: &mut Client) -> Value {
    match next_seen(client, Duration::from_secs(10)).await {
        Seen::Json(value) => value,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The next message that is not a push (a reply or a pong).
async fn next_reply(client: &mut Client) -> Value {
    loop {
        let value = next(client).await;
        if value.get("data").is_none() {
            return value;
        }
    }
}

async fn send(client: &mut Client, message: Value) -> Value {
    send_text(client, &message.to_string()).await;
    next_reply(client).await
}

fn assert_trade_item(item: &Value) {
    assert_eq!(keys(item), ["v", "t", "p", "q", "m"], "{item}");
    assert!(item["v"].as_str().unwrap().parse::<u64>().is_ok(), "{item}");
    assert!(item["t"].is_u64() && item["m"].is_boolean(), "{item}");
    assert!(
        decimal(&item["p"]) > 0.0 && decimal(&item["q"]) > 0.0,
        "{item}"
    );
    for field in ["p", "q"] {
        let text = item[field].as_str().unwrap();
        assert!(
            !text.ends_with('0') || !text.contains('.'),
            "not trimmed: {item}"
        );
    }
}

#[tokio::test]
async fn v1_subscribes_pushes_trades_in_data_arrays_and_cancels() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway.connect("/quote/ws/v1").await;
    // v1 answers only failures: ccxt takes any message with a topic for a push.
    let sub =
        json!({"symbol": "BTCUSDT", "topic": "trade", "event": "sub", "params": {"binary": false}});
    send_text(&mut client, &sub.to_string()).await;
    let mut pushes = 0;
    while pushes < 5 {
        let push = next(&mut client).await;
        assert_eq!(
            keys(&push),
            [
                "symbol",
                "symbolName",
                "topic",
                "params",
                "data",
                "f",
                "sendTime",
                "shared"
            ],
            "{push}"
        );
        assert_eq!(
            (&push["symbol"], &push["symbolName"], &push["topic"]),
            (&json!("BTCUSDT"), &json!("BTCUSDT"), &json!("trade"))
        );
        assert_eq!(
            push["params"],
            json!({"realtimeInterval": "24h", "binary": "false"})
        );
        assert_eq!(
            (&push["f"], &push["shared"]),
            (&json!(false), &json!(false))
        );
        let data = push["data"].as_array().expect("data is an array");
        assert_eq!(data.len(), 1, "{push}");
        assert_trade_item(&data[0]);
        let sent = push["sendTime"].as_u64().unwrap();
        assert!(sent >= data[0]["t"].as_u64().unwrap(), "{push}");
        pushes += 1;
    }
    let cancel = json!({"symbol": "BTCUSDT", "topic": "trade", "event": "cancel"});
    send_text(&mut client, &cancel.to_string()).await;
    // What was queued before the cancel still arrives; nothing after it.
    let queued = during(&mut client, Duration::from_millis(300)).await;
    assert!(
        queued.iter().all(|push| push["topic"] == "trade"),
        "{queued:?}"
    );
    let after = during(&mut client, Duration::from_millis(800)).await;
    assert!(after.is_empty(), "pushes after cancel: {after:?}");
}

#[tokio::test]
async fn v1_realtimes_pushes_the_24_hour_ticker_with_the_change_as_a_ratio() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway.connect("/quote/ws/v1").await;
    let sub = json!({"symbol": "ETHUSDT", "topic": "realtimes", "event": "sub"});
    send_text(&mut client, &sub.to_string()).await;
    for _ in 0..2 {
        let push = next(&mut client).await;
        assert_eq!(
            (&push["symbol"], &push["topic"]),
            (&json!("ETHUSDT"), &json!("realtimes"))
        );
        let ticker = &push["data"][0];
        assert_eq!(
            keys(ticker),
            ["t", "s", "sn", "c", "h", "l", "o", "v", "qv", "m", "e"],
            "{ticker}"
        );
        assert_eq!(
            (&ticker["s"], &ticker["sn"], &ticker["e"]),
            (&json!("ETHUSDT"), &json!("ETHUSDT"), &json!(301))
        );
        let (last, open) = (decimal(&ticker["c"]), decimal(&ticker["o"]));
        let (high, low) = (decimal(&ticker["h"]), decimal(&ticker["l"]));
        assert!(
            low <= last && last <= high && low <= open && open <= high,
            "{ticker}"
        );
        // HashKey's `m` is the change as a ratio (Binance's percentage / 100).
        let ratio = decimal(&ticker["m"]);
        assert!((ratio - (last - open) / open).abs() < 1e-4, "{ticker}");
    }
}

#[tokio::test]
async fn v2_names_the_symbol_in_params_and_pushes_full_depth_snapshots() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway.connect("/quote/ws/v2").await;
    let sub = json!({"topic": "depth", "event": "sub", "params": {"symbol": "ETHUSDT"}});
    assert_eq!(
        send(&mut client, sub).await,
        json!({"topic": "depth", "event": "sub", "params": {"symbol": "ETHUSDT"}, "code": "0", "msg": "Success"})
    );
    let mut last_version = 0;
    for _ in 0..5 {
        let push = next(&mut client).await;
        assert_eq!(keys(&push), ["topic", "params", "data"], "{push}");
        assert_eq!(push["topic"], "depth");
        assert_eq!(push["params"], json!({"symbol": "ETHUSDT"}));
        let book = &push["data"];
        assert_eq!(keys(book), ["e", "s", "t", "v", "b", "a", "o"], "{book}");
        assert_eq!(
            (&book["e"], &book["s"], &book["o"]),
            (&json!(301), &json!("ETHUSDT"), &json!(0))
        );
        let version: u64 = book["v"].as_str().unwrap().parse().unwrap();
        assert!(version >= last_version, "{book}");
        last_version = version;
        let side = |name: &str| -> Vec<f64> {
            book[name]
                .as_array()
                .unwrap()
                .iter()
                .map(|level| {
                    assert_eq!(level.as_array().unwrap().len(), 2, "{level}");
                    assert!(decimal(&level[1]) > 0.0, "{level}");
                    decimal(&level[0])
                })
                .collect()
        };
        let (bids, asks) = (side("b"), side("a"));
        // A full snapshot of the top 20 levels each push, best first.
        assert_eq!((bids.len(), asks.len()), (20, 20), "{book}");
        assert!(bids.windows(2).all(|w| w[0] > w[1]), "{book}");
        assert!(asks.windows(2).all(|w| w[0] < w[1]), "{book}");
        assert!(bids[0] < asks[0], "crossed: {book}");
    }
    let cancel = json!({"topic": "depth", "event": "cancel", "params": {"symbol": "ETHUSDT"}});
    assert_eq!(send(&mut client, cancel).await["code"], "0");
    assert!(during(&mut client, Duration::from_millis(500))
        .await
        .is_empty());
}

#[tokio::test]
async fn what_is_not_served_gets_hashkeys_parameter_error_and_the_connection_stays() {
    let gateway = Gateway::start(&[]);
    let mut v1 = gateway.connect("/quote/ws/v1").await;
    let error = |echo: Value| {
        let mut reply = echo;
        reply["code"] = json!("-100011");
        reply["msg"] = json!("Parameter error!");
        reply
    };
    // A v1 error reply echoes the request but for its topic (which would make it a push).
    for request in [
        json!({"symbol": "BTCUSDT", "topic": "nonsense", "event": "sub"}),
        json!({"symbol": "NOSUCHCOIN", "topic": "trade", "event": "sub"}),
        // One unknown symbol refuses the whole request.
        json!({"symbol": "BTCUSDT,NOSUCHCOIN", "topic": "trade", "event": "sub"}),
        json!({"symbol": "BTCUSDT", "topic": "trade", "event": "sub", "params": {"binary": true}}),
        json!({"topic": "trade", "event": "subscribe"}),
    ] {
        let mut echoed = request.clone();
        echoed.as_object_mut().unwrap().remove("topic");
        assert_eq!(send(&mut v1, request).await, error(echoed));
    }
    send_text(&mut v1, "not json").await;
    assert_eq!(next_reply(&mut v1).await, error(json!({})));
    // Nothing was subscribed, and the connection still serves.
    assert!(during(&mut v1, Duration::from_millis(500)).await.is_empty());
    let fine = json!({"symbol": "SOLUSDT", "topic": "trade", "event": "sub"});
    send_text(&mut v1, &fine.to_string()).await;
    let push = next(&mut v1).await;
    assert_eq!(
        (&push["symbol"], &push["topic"]),
        (&json!("SOLUSDT"), &json!("trade"))
    );

    let mut v2 = gateway.connect("/quote/ws/v2").await;
    let request = json!({"topic": "kline", "event": "sub", "params": {"symbol": "BTCUSDT", "klineType": "122m"}});
    assert_eq!(send(&mut v2, request.clone()).await, error(request));
    assert_eq!(
        gateway.metric("wsgate_client_errors_total{code=\"-100011\"}"),
        7.0
    );
}

#[tokio::test]
async fn json_pings_are_answered_and_a_client_silent_past_the_timeout_is_closed() {
    let gateway = Gateway::start(&["--pong-timeout", "2s"]);
    let mut silent = gateway.connect("/quote/ws/v1").await;
    let mut json_pinger = gateway.connect("/quote/ws/v2").await;
    let mut frame_pinger = gateway.connect("/quote/ws/v1").await;
    let started = std::time::Instant::now();
    let pinging = async {
        for _ in 0..8 {
            let now = common::accounts::now_ms();
            let pong = send(&mut json_pinger, json!({"ping": now})).await;
            assert_eq!(keys(&pong), ["pong"], "{pong}");
            let server_time = pong["pong"].as_u64().unwrap();
            assert!(server_time.abs_diff(now) < 2_000, "{pong}");
            frame_pinger
                .send(Message::Ping(b"hb".to_vec().into()))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let closed = async {
        let close = expect_close(&mut silent, Duration::from_secs(10)).await;
        (close, started.elapsed())
    };
    let ((code, _), after) = tokio::join!(pinging, closed).1;
    assert_eq!(code, 1008);
    assert!(
        after >= Duration::from_millis(1_900) && after < Duration::from_secs(6),
        "{after:?}"
    );
    // Both heartbeats kept their connections through twice the timeout.
    assert!(started.elapsed() >= Duration::from_secs(4));
    let sub = json!({"symbol": "BTCUSDT", "topic": "trade", "event": "sub"});
    send_text(&mut frame_pinger, &sub.to_string()).await;
    assert_eq!(next(&mut frame_pinger).await["topic"], "trade");
    let sub = json!({"topic": "trade", "event": "sub", "params": {"symbol": "BTCUSDT"}});
    assert_eq!(send(&mut json_pinger, sub).await["code"], "0");
}

/// Calls of the Binance and the HashKey trade mapper on `node`, from one scrape.
fn trade_mapper_calls(node: &Gateway) -> (f64, f64) {
    let (_, body) = node.http_get("/metrics").expect("metrics");
    let calls = |mapper: &str| {
        common::metric_value(
            &body,
            &format!("wsgate_mapper_calls_total{{mapper=\"{mapper}@1\"}}"),
        )
    };
    (calls("binance_trade"), calls("hashkey_trade"))
}

/// Whether the two mappers ran about equally often over a window, `(binance, hashkey)` calls
/// each: once per upstream event both, give or take the events of one batch in flight at each
/// end of the window (a route maps a batch mapping by mapping). A mapping per client would be
/// a multiple.
fn mapped_once_per_format((binance, hashkey): (f64, f64)) -> bool {
    (binance - hashkey).abs() <= (binance * 0.1).max(4.0)
}

/// Trades by id: what a Binance client and a HashKey client of one node saw over a few seconds.
#[tokio::test]
async fn one_upstream_trade_reaches_binance_and_hashkey_clients_each_mapped_once_per_format() {
    let gateway = Gateway::start(&[]);
    let mut binance_raw = gateway.connect("/ws/btcusdt@trade").await;
    let mut binance_combined = gateway.connect("/stream?streams=btcusdt@trade").await;
    let mut v1 = gateway.connect("/quote/ws/v1").await;
    let mut v2 = gateway.connect("/quote/ws/v2").await;
    let sub = json!({"symbol": "BTCUSDT", "topic": "trade", "event": "sub"});
    send_text(&mut v1, &sub.to_string()).await;
    let sub = json!({"topic": "trade", "event": "sub", "params": {"symbol": "BTCUSDT"}});
    assert_eq!(send(&mut v2, sub).await["code"], "0");
    let before = trade_mapper_calls(&gateway);

    let window = Duration::from_secs(3);
    let (raw, combined, v1_seen, v2_seen) = tokio::join!(
        during(&mut binance_raw, window),
        during(&mut binance_combined, window),
        during(&mut v1, window),
        during(&mut v2, window),
    );
    let after = trade_mapper_calls(&gateway);
    // Each format's mapper ran once per upstream event, however many clients took it.
    let mapped = (after.0 - before.0, after.1 - before.1);
    assert!(mapped.0 > 0.0, "no trades mapped");
    assert!(mapped_once_per_format(mapped), "{mapped:?}");

    let binance: HashMap<u64, Value> = raw
        .iter()
        .map(|t| (t["t"].as_u64().unwrap(), t.clone()))
        .collect();
    assert_eq!(binance.len(), raw.len(), "a trade twice on the raw stream");
    let combined_ids: Vec<u64> = combined
        .iter()
        .map(|m| m["data"]["t"].as_u64().unwrap())
        .collect();
    let hashkey_items = |pushes: &[Value], v1: bool| -> Vec<Value> {
        pushes
            .iter()
            .flat_map(|push| {
                if v1 {
                    push["data"].as_array().unwrap().clone()
                } else {
                    vec![push["data"].clone()]
                }
            })
            .collect()
    };
    let v1_items = hashkey_items(&v1_seen, true);
    let v2_items = hashkey_items(&v2_seen, false);
    let mut matched = 0;
    for item in v1_items.iter().chain(&v2_items) {
        assert_trade_item(item);
        let id: u64 = item["v"].as_str().unwrap().parse().unwrap();
        let Some(trade) = binance.get(&id) else {
            continue; // the windows of the clients differ by their start
        };
        assert_eq!(
            decimal(&item["p"]),
            decimal(&trade["p"]),
            "{item} vs {trade}"
        );
        assert_eq!(
            decimal(&item["q"]),
            decimal(&trade["q"]),
            "{item} vs {trade}"
        );
        assert_eq!(item["m"], trade["m"], "{item} vs {trade}");
        assert_eq!(item["t"], trade["T"], "{item} vs {trade}");
        matched += 1;
    }
    assert!(
        matched * 10 >= (v1_items.len() + v2_items.len()) * 8,
        "{matched} matched"
    );
    // Every client saw each trade once, in order.
    for ids in [
        raw.iter()
            .map(|t| t["t"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        combined_ids,
        v1_items
            .iter()
            .map(|i| i["v"].as_str().unwrap().parse().unwrap())
            .collect(),
        v2_items
            .iter()
            .map(|i| i["v"].as_str().unwrap().parse().unwrap())
            .collect(),
    ] {
        assert!(ids.len() > 5, "{ids:?}");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }
}

/// ccxt.pro's `hashkey`, unmodified but for its public stream URL, watches trades, the 24-hour
/// ticker and an order book from the gateway.
#[test]
fn ccxt_hashkey_watches_trades_a_ticker_and_an_order_book() {
    let gateway = Gateway::start(&[]);
    let lines = common::scripts::run_to_end(
        "dialect_clients.py",
        &["hashkey", &format!("ws://{}", gateway.addr), "5"],
        Duration::from_secs(90),
    );
    let trades: Vec<&Value> = lines.iter().filter_map(|l| l.get("trade")).collect();
    let books: Vec<&Value> = lines.iter().filter_map(|l| l.get("book")).collect();
    assert!(trades.len() >= 5, "{lines:?}");
    for trade in &trades {
        assert_eq!(trade["symbol"], "BTC/USDT", "{trade}");
        assert!(trade["price"].as_f64().unwrap() > 0.0, "{trade}");
        assert!(trade["amount"].as_f64().unwrap() > 0.0, "{trade}");
        assert!(
            matches!(trade["side"].as_str(), Some("buy" | "sell")),
            "{trade}"
        );
    }
    let tickers: Vec<&Value> = lines.iter().filter_map(|l| l.get("ticker")).collect();
    assert_eq!(tickers.len(), 1, "{lines:?}");
    let ticker = tickers[0];
    assert_eq!(ticker["symbol"], "BTC/USDT", "{ticker}");
    let (last, open) = (
        ticker["last"].as_f64().unwrap(),
        ticker["open"].as_f64().unwrap(),
    );
    let percentage = ticker["percentage"].as_f64().expect("ccxt read the change");
    assert!(
        (percentage - (last - open) / open * 100.0).abs() < 0.01,
        "{ticker}"
    );
    assert_eq!(books.len(), 5, "{lines:?}");
    for book in &books {
        // Every push is a full snapshot: ccxt resets its book to it.
        assert_eq!(book["depth"], json!([20, 20]), "{book}");
        let (bid, ask) = (&book["bids"][0][0], &book["asks"][0][0]);
        assert!(bid.as_f64().unwrap() < ask.as_f64().unwrap(), "{book}");
        assert!(book["timestamp"].is_u64(), "{book}");
    }
    assert_eq!(lines.last(), Some(&json!({"done": true})));
}

/// In a cluster, the node owning the demo source maps each trade once per format, and HashKey
/// and futures clients on every node receive them over the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_every_node_serves_both_dialects_from_one_mapping_per_format() {
    let redis = common::redis::RedisServer::new();
    let nats = common::nats::NatsServer::new();
    let config = common::shipped_config();
    let nodes: Vec<Gateway> = ["hk-a", "hk-b"]
        .iter()
        .map(|id| Gateway::cluster_node(&config, &redis.url(), &nats.url(), id))
        .collect();
    common::wait_for("one node mapping the demo trades", || {
        nodes.iter().any(|n| trade_mapper_calls(n).1 > 0.0)
    });
    for node in &nodes {
        let mut hashkey = node.connect("/quote/ws/v2").await;
        let sub = json!({"topic": "trade", "event": "sub", "params": {"symbol": "ETHUSDT"}});
        assert_eq!(send(&mut hashkey, sub).await["code"], "0");
        let push = next(&mut hashkey).await;
        assert_eq!(push["params"]["symbol"], "ETHUSDT", "{push}");
        assert_trade_item(&push["data"]);
        let mut futures = node.connect("/futures/ws/ethusdt@trade").await;
        assert_eq!(next(&mut futures).await["X"], "MARKET");
    }
    // Settled, one owner maps (a node that owned the source before the other joined may have
    // mapped earlier): over a second, exactly one node's mappers run, each once per trade.
    let before: Vec<(f64, f64)> = nodes.iter().map(trade_mapper_calls).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut mapping = 0;
    for (node, (binance, hashkey)) in nodes.iter().zip(before) {
        let now = trade_mapper_calls(node);
        let ran = (now.0 - binance, now.1 - hashkey);
        assert!(mapped_once_per_format(ran), "{ran:?}");
        mapping += usize::from(ran.1 > 0.0);
    }
    assert_eq!(mapping, 1, "nodes mapping trades");
}
