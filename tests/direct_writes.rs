//! The fan-out lanes write a connection's socket themselves while the connection lends it to
//! them, and hand it back when the socket fills, often in the middle of a frame. A reader
//! whose socket fills again and again, while the gateway also pings it and answers its
//! requests (frames of the connection's own, written by its task), must still receive every
//! frame whole and in order: the rest of a frame a lane began goes out before anything else.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// A client whose socket takes at most about `receive_buffer` bytes before the gateway has to
/// wait for it to read.
async fn connect_small(gateway: &Gateway, path: &str, receive_buffer: usize) -> Client {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(receive_buffer).unwrap();
    socket.connect(&gateway.addr.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(socket.into()).unwrap();
    let (client, _) =
        tokio_tungstenite::client_async(gateway.url(path), MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    client
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_whose_socket_fills_mid_frame_gets_every_frame_whole_with_pings_and_replies_between(
) {
    let mut config = shipped_config();
    config["datasource"][0]["properties"]["trades_per_sec"] = json!(200);
    // Small kernel buffers on both ends: the lanes' sends end in the middle of frames.
    let gateway = Gateway::start_with(
        config,
        &["--socket-send-buffer", "4096", "--ping-interval", "300ms"],
    );
    let streams = ["btcusdt@trade", "ethusdt@trade"];
    let path = format!("/stream?streams={}", streams.join("/"));
    let mut slow = connect_small(&gateway, &path, 4096).await;
    let mut seen = Seen::default();

    // Reads in small sips with pauses, asking for its subscriptions every 200 ms, for 6 s.
    let mut next_request = Instant::now();
    let mut request_id = 0;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        if Instant::now() >= next_request {
            request_id += 1;
            let list = json!({"method": "LIST_SUBSCRIPTIONS", "id": request_id});
            slow.send(Message::text(list.to_string())).await.unwrap();
            next_request += Duration::from_millis(200);
        }
        for _ in 0..5 {
            match tokio::time::timeout(Duration::from_secs(5), slow.next()).await {
                Ok(Some(Ok(message))) => seen.take(message),
                other => panic!("the stream broke: {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Then drains what waits, until quiet.
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), slow.next()).await
    {
        seen.take(message.expect("a whole frame"));
    }

    for stream in streams {
        let ids: Vec<u64> = seen
            .trades
            .iter()
            .filter(|(s, _)| s == stream)
            .map(|(_, id)| *id)
            .collect();
        assert!(ids.len() > 100, "{stream}: only {} trades", ids.len());
        for pair in ids.windows(2) {
            assert_eq!(
                pair[1],
                pair[0] + 1,
                "{stream}: a gap or repeat in {pair:?}"
            );
        }
    }
    assert_eq!(
        seen.answered,
        (1..=request_id).collect::<Vec<_>>(),
        "every request answered once, in order"
    );
    assert!(seen.pings >= 5, "pings between the trades: {}", seen.pings);
}
