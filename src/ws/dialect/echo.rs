//! The echo dialect, for conformance tests only: a connection to its path gets every text
//! message back as a text frame and every binary message as a binary frame, through the same
//! session as every client (framing, fragments, UTF-8 checks, pings, the close handshake, the
//! message size limit). Autobahn|Testsuite's fuzzing client runs against it (`docs/autobahn.md`).
//!
//! No node serves it unless asked: `wsgate serve --test-echo-path /echo` (a hidden flag) adds it
//! after the standard dialects. It subscribes to nothing and is kept alive by server pings, as
//! Binance's market streams are.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::{
    Closing, Connect, Conversation, Dialect, Handshake, Heartbeat, Link, Refusal, Serving,
};
use crate::hub::{Delivery, FrameVariant, FrameVariants};
use crate::ws::frame;
use crate::ws::subscriptions::Planned;

/// Client messages an echo connection may send per second: far more than any conformance
/// suite sends (Autobahn's performance cases send thousands a second), so the budget never
/// closes one.
pub const MESSAGES_PER_SEC: usize = 1_000_000;

/// Echoes every message sent to connections on one path.
pub struct Echo {
    path: String,
    variant: FrameVariant,
}

impl Echo {
    /// The echo dialect on `path` (e.g. `/echo`), with its frame variant registered in
    /// `variants` (an echo connection subscribes to nothing, so it is never used for events).
    pub fn new(variants: &mut FrameVariants, path: impl Into<String>) -> Self {
        fn encode(delivery: &Delivery) -> Bytes {
            frame::text(&[&delivery.payload])
        }
        Echo {
            path: path.into(),
            variant: variants.register("echo", encode),
        }
    }
}

impl Dialect for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn route<'a>(
        &'a self,
        handshake: &'a Handshake<'a>,
        serving: &'a Serving<'a>,
    ) -> BoxFuture<'a, Option<Result<Connect, Refusal>>> {
        let answer = (handshake.path == self.path).then(|| {
            Ok(Connect {
                conversation: Box::new(EchoConversation),
                variant: self.variant,
                heartbeat: Heartbeat::websocket_pings(serving.settings),
                streams: Planned::default(),
                hangup: None,
                messages_per_sec: Some(MESSAGES_PER_SEC),
            })
        });
        std::future::ready(answer).boxed()
    }
}

/// One echo connection: no state.
struct EchoConversation;

impl Conversation for EchoConversation {
    fn on_text(&mut self, text: &str, link: &mut Link<'_>) -> Option<Closing> {
        link.send(frame::text(&[text.as_bytes()]));
        None
    }

    fn on_binary(&mut self, data: &[u8], link: &mut Link<'_>) -> Option<Closing> {
        link.send(frame::encode(OpCode::Data(Data::Binary), &[data]));
        None
    }
}
