//! A dialect defined here, outside the gateway's code, served by a real node next to the
//! Binance dialect: the dialect seam (`ws::dialect`) is the only place a client protocol
//! touches.
//!
//! The "pipe" dialect: connect to `/pipe`; `watch <stream>` subscribes (answered `watching
//! <stream>` or `no such stream <stream>`); events arrive as `<stream>|<payload>`; the client
//! must say `ping` (answered `pong`) at least every few seconds.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use wsgate::hub::{Delivery, FrameVariant, FrameVariants};
use wsgate::node::{self, NodeSettings, RunningNode};
use wsgate::ws::dialect::{
    self, Closing, Connect, Conversation, Dialect, Handshake, Heartbeat, Link, Refusal, Serving,
};
use wsgate::ws::frame;
use wsgate::ws::subscriptions::Planned;

/// How long a pipe client may stay silent.
const PIPE_SILENCE: Duration = Duration::from_secs(2);

struct Pipe {
    variant: FrameVariant,
}

impl Pipe {
    fn new(variants: &mut FrameVariants) -> Self {
        fn encode(d: &Delivery) -> Bytes {
            frame::text(&[d.stream.as_bytes(), b"|", &d.payload])
        }
        Pipe {
            variant: variants.register("pipe", encode),
        }
    }
}

impl Dialect for Pipe {
    fn name(&self) -> &'static str {
        "pipe"
    }

    fn route<'a>(
        &'a self,
        handshake: &'a Handshake<'a>,
        _: &'a Serving<'a>,
    ) -> BoxFuture<'a, Option<Result<Connect, Refusal>>> {
        let answer = (handshake.path == "/pipe").then(|| {
            Ok(Connect {
                conversation: Box::new(PipeConversation),
                variant: self.variant,
                heartbeat: Heartbeat::ClientPings {
                    within: PIPE_SILENCE,
                },
                streams: Planned::default(),
                hangup: None,
                messages_per_sec: None,
            })
        });
        std::future::ready(answer).boxed()
    }
}

struct PipeConversation;

impl Conversation for PipeConversation {
    fn on_text(&mut self, text: &str, link: &mut Link<'_>) -> Option<Closing> {
        let reply = if text == "ping" {
            link.heard_heartbeat();
            "pong".to_string()
        } else if let Some(stream) = text.strip_prefix("watch ") {
            match link.subscribe(vec![stream.to_string()]) {
                Ok(()) => format!("watching {stream}"),
                Err(_) => format!("no such stream {stream}"),
            }
        } else {
            return Some(Closing::new(4000, "pipe speaks watch and ping"));
        };
        link.send(frame::text(&[reply.as_bytes()]));
        None
    }
}

async fn start_node() -> RunningNode {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/gateway.json");
    let settings = NodeSettings::embedded(config, common::mappers_dir());
    node::start(settings, |variants, services| {
        let pipe = Pipe::new(variants);
        dialect::standard(variants, services).with(pipe)
    })
    .await
    .expect("the node starts")
}

async fn next_text(client: &mut common::Client) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("a message within 10 s")
            .expect("the connection is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialect_defined_outside_the_gateway_serves_a_demo_stream() {
    let node = start_node().await;
    let url = |path: &str| format!("ws://{}{path}", node.listen);
    let (mut pipe, _) = tokio_tungstenite::connect_async(url("/pipe"))
        .await
        .unwrap();
    pipe.send(Message::text("watch nosuch@trade"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut pipe).await, "no such stream nosuch@trade");
    pipe.send(Message::text("watch btcusdt@trade"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut pipe).await, "watching btcusdt@trade");
    for _ in 0..3 {
        let text = next_text(&mut pipe).await;
        let (stream, payload) = text.split_once('|').expect("the pipe envelope");
        assert_eq!(stream, "btcusdt@trade");
        let event: Value = serde_json::from_str(payload).expect("the mapper's JSON");
        assert_eq!(
            (event["e"].as_str(), event["s"].as_str()),
            (Some("trade"), Some("BTCUSDT"))
        );
    }
    pipe.send(Message::text("ping")).await.unwrap();
    loop {
        let text = next_text(&mut pipe).await;
        if text == "pong" {
            break;
        }
        assert!(text.starts_with("btcusdt@trade|"), "{text}");
    }

    // The Binance dialect on the same node, the same stream, its own envelope.
    let (mut binance, _) = tokio_tungstenite::connect_async(url("/stream?streams=btcusdt@trade"))
        .await
        .unwrap();
    let wrapped: Value = serde_json::from_str(&next_text(&mut binance).await).unwrap();
    assert_eq!(wrapped["stream"], "btcusdt@trade");
    assert_eq!(wrapped["data"]["e"], "trade");
    node.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dialect_decides_the_heartbeat_and_the_close() {
    let node = start_node().await;
    let url = format!("ws://{}/pipe", node.listen);
    let (mut silent, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let started = std::time::Instant::now();
    let (code, reason) = common::expect_close(&mut silent, Duration::from_secs(10)).await;
    assert_eq!((code, reason.as_str()), (1008, "Pong timeout"));
    assert!(started.elapsed() >= PIPE_SILENCE - Duration::from_millis(100));

    let (mut rude, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    rude.send(Message::text("SUBSCRIBE")).await.unwrap();
    let (code, reason) = common::expect_close(&mut rude, Duration::from_secs(10)).await;
    assert_eq!(
        (code, reason.as_str()),
        (4000, "pipe speaks watch and ping")
    );

    // A path no dialect owns is refused before the upgrade.
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/nowhere", node.listen)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::NOT_FOUND)
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    node.shut_down().await;
}
