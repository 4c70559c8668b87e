//! The Binance Spot market-stream dialect (`reference/binance-protocol.md` §1–§4): `/ws` and
//! `/stream` URLs, live `SUBSCRIBE`/`UNSUBSCRIBE`/`LIST_SUBSCRIPTIONS`/`SET_PROPERTY`/
//! `GET_PROPERTY` with Binance's exact replies and error texts, raw or combined events in
//! milliseconds or microseconds, server pings, and `serverShutdown` before a planned close.

pub mod control;
mod conversation;
pub mod envelope;
pub mod url;

use std::sync::Arc;

use http::StatusCode;

use super::{websocket_ping, Connect, Dialect, Handshake, Heartbeat, Refusal, Serving};
use crate::config::is_stream_name;
use crate::hub::FrameVariants;
use crate::ws::subscriptions::{Streams, SubscribeError};
use conversation::MarketConversation;
use envelope::{Format, Variants};
use url::{ConnectTarget, TargetError};

/// Binance Spot market streams.
pub struct MarketStreams {
    /// Shared by every connection's conversation (one pointer each).
    variants: Arc<Variants>,
}

impl MarketStreams {
    /// The dialect, with its four event formats registered in `variants`.
    pub fn new(variants: &mut FrameVariants) -> Self {
        MarketStreams {
            variants: Arc::new(Variants::register(variants)),
        }
    }

    fn connect(&self, target: ConnectTarget, serving: &Serving<'_>) -> Result<Connect, Refusal> {
        let invalid = |msg: &str| Refusal::new(StatusCode::BAD_REQUEST, 2, msg);
        if target.streams.len() > serving.settings.max_streams {
            return Err(invalid("Invalid request: too many streams"));
        }
        if !target.streams.iter().all(|name| looks_like_stream(name)) {
            return Err(invalid("Invalid request: invalid stream"));
        }
        let streams = serving
            .catalog
            .plan(&Streams::default(), target.streams)
            .map_err(|e| invalid(subscribe_error(&e)))?;
        let format = Format {
            combined: target.combined,
            micros: target.micros,
        };
        Ok(Connect {
            conversation: Box::new(MarketConversation::new(format, Arc::clone(&self.variants))),
            variant: self.variants.of(format),
            heartbeat: Heartbeat::ServerPings {
                every: serving.settings.ping_interval,
                answer_within: serving.settings.pong_timeout,
                ping: websocket_ping,
            },
            streams,
        })
    }
}

impl Dialect for MarketStreams {
    fn name(&self) -> &'static str {
        "binance"
    }

    fn route(
        &self,
        handshake: &Handshake<'_>,
        serving: &Serving<'_>,
    ) -> Option<Result<Connect, Refusal>> {
        match url::parse_target(handshake.path, handshake.query) {
            Err(TargetError::NotFound) => None,
            Err(e @ TargetError::BadTimeUnit) => Some(Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                -1100,
                e.to_string(),
            ))),
            Ok(target) => Some(self.connect(target, serving)),
        }
    }
}

/// True for text shaped like a stream name (`symbol@kind...` or `!name...`).
pub fn looks_like_stream(name: &str) -> bool {
    is_stream_name(name) && (name.contains('@') || name.starts_with('!'))
}

/// Binance's words for a refused subscription.
fn subscribe_error(error: &SubscribeError) -> &'static str {
    match error {
        SubscribeError::Unknown(_) => "Invalid request: invalid stream",
        SubscribeError::TooMany => "Invalid request: too many streams",
    }
}
