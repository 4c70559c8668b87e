//! Market-stream payloads, end to end: demo market → WASM mappers → hub → a real client.
//! Golden checks of field names, order and JSON types for every stream type
//! (`docs/binance-protocol.md` §4), and the depth id chains clients rely on (§4.1).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn is_decimal(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let Some((int, frac)) = text.split_once('.') else {
        return false;
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() == 8
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn is_percent(value: &Value) -> bool {
    value.as_str().is_some_and(|t| {
        t.trim_start_matches('-').parse::<f64>().is_ok()
            && t.split_once('.').is_some_and(|(_, f)| f.len() == 3)
    })
}

fn assert_levels(levels: &Value) {
    for level in levels.as_array().expect("levels are an array") {
        let pair = level.as_array().expect("a level is [price, qty]");
        assert_eq!(pair.len(), 2, "level {level}");
        assert!(
            is_decimal(&pair[0]) && is_decimal(&pair[1]),
            "level {level}"
        );
    }
}

fn assert_ints(value: &Value, fields: &[&str]) {
    for field in fields {
        assert!(
            value[field].is_i64(),
            "`{field}` must be an integer in {value}"
        );
    }
}

fn assert_decimals(value: &Value, fields: &[&str]) {
    for field in fields {
        assert!(
            is_decimal(&value[field]),
            "`{field}` must be a decimal string in {value}"
        );
    }
}

async fn first_of(gateway: &Gateway, stream: &str) -> Value {
    let mut client = gateway.connect(&format!("/stream?streams={stream}")).await;
    collect_stream(&mut client, stream, 1, WAIT).await.remove(0)
}

#[tokio::test]
async fn every_stream_type_has_binance_fields_and_types() {
    let gateway = Gateway::start(&[]);

    let trade = first_of(&gateway, "btcusdt@trade").await;
    assert_eq!(keys(&trade), ["e", "E", "s", "t", "p", "q", "T", "m", "M"]);
    assert_eq!(trade["e"], "trade");
    assert_eq!(trade["s"], "BTCUSDT");
    assert_ints(&trade, &["E", "t", "T"]);
    assert_decimals(&trade, &["p", "q"]);
    assert!(trade["m"].is_boolean());
    assert_eq!(trade["M"], true);

    let agg = first_of(&gateway, "ethusdt@aggTrade").await;
    assert_eq!(
        keys(&agg),
        ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"]
    );
    assert_eq!(agg["e"], "aggTrade");
    assert_eq!(agg["s"], "ETHUSDT");
    assert_ints(&agg, &["E", "a", "f", "l", "T"]);
    assert!(agg["f"].as_i64() <= agg["l"].as_i64());
    assert_decimals(&agg, &["p", "q"]);
    assert!(agg["m"].is_boolean());

    for stream in ["solusdt@depth", "solusdt@depth@100ms"] {
        let depth = first_of(&gateway, stream).await;
        assert_eq!(
            keys(&depth),
            ["e", "E", "s", "U", "u", "b", "a"],
            "{stream}"
        );
        assert_eq!(depth["e"], "depthUpdate");
        assert_eq!(depth["s"], "SOLUSDT");
        assert_ints(&depth, &["E", "U", "u"]);
        assert_levels(&depth["b"]);
        assert_levels(&depth["a"]);
    }

    for levels in [5, 10, 20] {
        for speed in ["", "@100ms"] {
            let stream = format!("bnbusdt@depth{levels}{speed}");
            let book = first_of(&gateway, &stream).await;
            assert_eq!(keys(&book), ["lastUpdateId", "bids", "asks"], "{stream}");
            assert_ints(&book, &["lastUpdateId"]);
            assert_eq!(book["bids"].as_array().unwrap().len(), levels, "{stream}");
            assert_eq!(book["asks"].as_array().unwrap().len(), levels, "{stream}");
            assert_levels(&book["bids"]);
            assert_levels(&book["asks"]);
        }
    }

    let ticker = first_of(&gateway, "xrpusdt@bookTicker").await;
    assert_eq!(keys(&ticker), ["u", "s", "b", "B", "a", "A"]);
    assert_eq!(ticker["s"], "XRPUSDT");
    assert_ints(&ticker, &["u"]);
    assert_decimals(&ticker, &["b", "B", "a", "A"]);

    for interval in ["1s", "1m"] {
        let stream = format!("btcusdt@kline_{interval}");
        let kline = first_of(&gateway, &stream).await;
        assert_eq!(keys(&kline), ["e", "E", "s", "k"]);
        assert_eq!(kline["e"], "kline");
        assert_ints(&kline, &["E"]);
        let k = &kline["k"];
        assert_eq!(
            keys(k),
            ["t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"]
        );
        assert_eq!(k["i"], interval);
        assert_eq!(k["s"], "BTCUSDT");
        assert_ints(k, &["t", "T", "f", "L", "n"]);
        assert_decimals(k, &["o", "c", "h", "l", "v", "q", "V", "Q"]);
        assert!(k["x"].is_boolean());
        let span = k["T"].as_i64().unwrap() - k["t"].as_i64().unwrap() + 1;
        assert_eq!(span, if interval == "1s" { 1000 } else { 60_000 });
    }

    let mini = first_of(&gateway, "ethusdt@miniTicker").await;
    assert_eq!(keys(&mini), ["e", "E", "s", "c", "o", "h", "l", "v", "q"]);
    assert_eq!(mini["e"], "24hrMiniTicker");
    assert_decimals(&mini, &["c", "o", "h", "l", "v", "q"]);

    let full = first_of(&gateway, "ethusdt@ticker").await;
    assert_eq!(
        keys(&full),
        [
            "e", "E", "s", "p", "P", "w", "x", "c", "Q", "b", "B", "a", "A", "o", "h", "l", "v",
            "q", "O", "C", "F", "L", "n"
        ]
    );
    assert_eq!(full["e"], "24hrTicker");
    assert!(is_percent(&full["P"]), "P {}", full["P"]);
    assert!(full["p"].as_str().is_some(), "p is a string");
    assert_decimals(
        &full,
        &[
            "w", "x", "c", "Q", "b", "B", "a", "A", "o", "h", "l", "v", "q",
        ],
    );
    assert_ints(&full, &["E", "O", "C", "F", "L", "n"]);
    assert_eq!(
        full["C"].as_i64().unwrap() - full["O"].as_i64().unwrap(),
        24 * 3600 * 1000
    );
}

#[tokio::test]
async fn raw_streams_are_bare_and_combined_streams_are_wrapped() {
    let gateway = Gateway::start(&[]);
    let mut raw = gateway.connect("/ws/btcusdt@trade").await;
    let event = next_json(&mut raw, WAIT).await;
    assert_eq!(event["e"], "trade");

    let mut combined = gateway.connect("/stream?streams=btcusdt@trade").await;
    let wrapped = next_json(&mut combined, WAIT).await;
    assert_eq!(keys(&wrapped), ["stream", "data"]);
    assert_eq!(wrapped["stream"], "btcusdt@trade");
    assert_eq!(wrapped["data"]["e"], "trade");

    let reply = request(
        &mut raw,
        serde_json::json!({"method": "SET_PROPERTY", "params": ["combined", true], "id": 1}),
    )
    .await;
    assert_eq!(reply, serde_json::json!({"result": null, "id": 1}));
    loop {
        let next = next_json(&mut raw, WAIT).await;
        if next.get("stream").is_some() {
            assert_eq!(next["stream"], "btcusdt@trade");
            assert_eq!(next["data"]["e"], "trade");
            break;
        }
    }
}

#[tokio::test]
async fn time_unit_microsecond_scales_every_time_field() {
    let gateway = Gateway::start(&[]);
    let mut micro = gateway
        .connect("/ws/btcusdt@trade?timeUnit=MICROSECOND")
        .await;
    let mut milli = gateway.connect("/ws/btcusdt@trade").await;
    let us = next_json(&mut micro, WAIT).await;
    let ms = next_json(&mut milli, WAIT).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for field in ["E", "T"] {
        let us = us[field].as_i64().unwrap();
        let ms = ms[field].as_i64().unwrap();
        assert!((now_ms - us / 1000).abs() < 60_000, "{field} in µs: {us}");
        assert!((now_ms - ms).abs() < 60_000, "{field} in ms: {ms}");
    }

    let mut klines = gateway
        .connect("/stream?streams=btcusdt@kline_1s&timeUnit=microsecond")
        .await;
    let kline = collect_stream(&mut klines, "btcusdt@kline_1s", 1, WAIT)
        .await
        .remove(0);
    assert_eq!(
        kline["k"]["T"].as_i64().unwrap() - kline["k"]["t"].as_i64().unwrap(),
        999_000
    );
}

#[tokio::test]
async fn depth_stream_update_ids_are_contiguous() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway
        .connect("/stream?streams=btcusdt@depth@100ms/btcusdt@depth/btcusdt@depth20@100ms/btcusdt@bookTicker")
        .await;
    let mut last_u: std::collections::HashMap<String, i64> = Default::default();
    let mut ranges = Vec::new();
    let mut snapshots = Vec::new();
    let mut book_tickers = Vec::new();
    let mut slow_events = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < deadline {
        let message = next_json(&mut client, WAIT).await;
        let stream = message["stream"].as_str().unwrap().to_string();
        let data = &message["data"];
        match stream.as_str() {
            "btcusdt@depth@100ms" | "btcusdt@depth" => {
                let (first, last) = (data["U"].as_i64().unwrap(), data["u"].as_i64().unwrap());
                assert!(first <= last, "U {first} > u {last}");
                if let Some(previous) = last_u.insert(stream.clone(), last) {
                    assert_eq!(
                        first,
                        previous + 1,
                        "{stream}: U must follow the previous u"
                    );
                }
                if stream == "btcusdt@depth@100ms" {
                    ranges.push((first, last));
                } else {
                    slow_events += 1;
                }
            }
            "btcusdt@depth20@100ms" => snapshots.push(data["lastUpdateId"].as_i64().unwrap()),
            "btcusdt@bookTicker" => book_tickers.push(data["u"].as_i64().unwrap()),
            other => panic!("unexpected stream {other}"),
        }
    }
    assert!(
        ranges.len() >= 20,
        "only {} 100 ms diffs in 6 s",
        ranges.len()
    );
    assert!(slow_events >= 3, "only {slow_events} 1000 ms diffs in 6 s");

    // Partial depth and bookTicker ids come from the same update-id space as the diffs.
    let (first_id, last_id) = (ranges[0].0, ranges.last().unwrap().1);
    let window_ends: std::collections::HashSet<i64> = ranges.iter().map(|r| r.1).collect();
    let in_range: Vec<i64> = snapshots
        .into_iter()
        .filter(|id| *id > first_id && *id <= last_id)
        .collect();
    assert!(
        in_range.len() >= 10,
        "too few snapshots inside the observed diffs"
    );
    for id in in_range {
        assert!(
            window_ends.contains(&id),
            "snapshot lastUpdateId {id} is not the end of any diff window"
        );
    }
    let covered: Vec<i64> = book_tickers
        .into_iter()
        .filter(|u| *u >= first_id && *u <= last_id)
        .collect();
    assert!(
        !covered.is_empty(),
        "no bookTicker inside the observed diffs"
    );
    for u in covered {
        assert!(
            ranges.iter().any(|(first, last)| *first <= u && u <= *last),
            "bookTicker u {u} lies in no diff window"
        );
    }
}
