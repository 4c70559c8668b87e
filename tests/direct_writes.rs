//! The fan-out lanes write a connection's socket themselves while the connection lends it to
//! them, and hand it back when the socket fills, often in the middle of a frame. Readers whose
//! sockets fill again and again, while the gateway also pings them and answers their requests
//! (frames of the connection's own, written by its task), must still receive every frame whole
//! and in order: the rest of a frame a lane began goes out before anything else.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// What a reader saw: trade ids per stream, request ids answered, pings.
#[derive(Default)]
struct Seen {
    trades: Vec<(String, u64)>,
    answered: Vec<u64>,
    pings: usize,
}

impl Seen {
    /// Takes one message; panics on anything that is not a whole, valid frame.
    fn take(&mut self, message: Message) {
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
                if let Some(id) = value.get("id").and_then(Value::as_u64) {
                    self.answered.push(id);
                } else {
                    let stream = value["stream"].as_str().expect("a stream event").to_owned();
                    let id = value["data"]["t"].as_u64().expect("a trade id");
                    self.trades.push((stream, id));
                }
            }
            Message::Ping(_) => self.pings += 1,
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Connects to `path` with a 4 KiB receive buffer and reads in small sips with pauses for 6 s,
/// asking for its subscriptions every 500 ms (with its pongs, within Binance's 5 client
/// messages a second), then drains what waits.
async fn read_slowly(gateway: Arc<Gateway>, path: String) -> (Seen, u64) {
    let mut slow = gateway.connect_small(&path, 4096).await;
    let mut seen = Seen::default();
    let mut next_request = Instant::now();
    let mut request_id = 0;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        if Instant::now() >= next_request {
            request_id += 1;
            let list = json!({"method": "LIST_SUBSCRIPTIONS", "id": request_id});
            slow.send(Message::text(list.to_string())).await.unwrap();
            next_request += Duration::from_millis(500);
        }
        for _ in 0..5 {
            match tokio::time::timeout(Duration::from_secs(5), slow.next()).await {
                Ok(Some(Ok(message))) => seen.take(message),
                other => panic!("the stream broke: {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), slow.next()).await
    {
        seen.take(message.expect("a whole frame"));
    }
    (seen, request_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_whose_sockets_fill_mid_frame_get_every_frame_whole_with_pings_and_replies_between()
{
    let mut config = shipped_config();
    config["datasource"][0]["properties"]["trades_per_sec"] = json!(200);
    // No per-connection rate limit on trades: a lane writes a single-stream turn straight
    // from its messages (a two-stream reader takes the queued path).
    for topic in config["topics"].as_array_mut().unwrap() {
        if topic["topic"] == "{symbol}@trade" {
            let topic = topic.as_object_mut().unwrap();
            topic.remove("rate");
            topic.remove("burst");
        }
    }
    // Small kernel buffers on both ends: the lanes' sends end in the middle of frames.
    let gateway = Arc::new(Gateway::start_with(
        config,
        &["--socket-send-buffer", "4096", "--ping-interval", "1s"],
    ));
    let one = "btcusdt@trade";
    let two = ["btcusdt@trade", "ethusdt@trade"];
    let readers: Vec<_> = (0..32)
        .map(|i| {
            let streams = if i % 2 == 0 {
                one.to_owned()
            } else {
                two.join("/")
            };
            let path = format!("/stream?streams={streams}");
            tokio::spawn(read_slowly(Arc::clone(&gateway), path))
        })
        .collect();

    for (i, reader) in readers.into_iter().enumerate() {
        let (seen, requests) = reader.await.unwrap();
        let streams: &[&str] = if i % 2 == 0 { &[one] } else { &two };
        for stream in streams {
            let ids: Vec<u64> = seen
                .trades
                .iter()
                .filter(|(s, _)| s == stream)
                .map(|(_, id)| *id)
                .collect();
            assert!(
                ids.len() > 100,
                "reader {i}, {stream}: {} trades",
                ids.len()
            );
            for pair in ids.windows(2) {
                assert_eq!(
                    pair[1],
                    pair[0] + 1,
                    "reader {i}, {stream}: a gap or repeat in {pair:?}"
                );
            }
        }
        assert_eq!(
            seen.answered,
            (1..=requests).collect::<Vec<_>>(),
            "reader {i}: every request answered once, in order"
        );
        assert!(seen.pings >= 4, "reader {i}: {} pings", seen.pings);
    }
}
