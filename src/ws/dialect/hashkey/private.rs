//! HashKey's private stream (`docs/binance-protocol.md` §7): `/api/v1/ws/<listenKey>` with a
//! listen key from the signed `POST /api/v1/userDataStream` (the node's listen keys, shared with
//! Binance's endpoint). The connection takes its owner's events of the `hashkey:userData` stream
//! (HashKey's formats, mapped from the same account events as Binance's `userData`), each sent as
//! a JSON array, as HashKey sends them.
//!
//! The server pings with `{"ping":<ms>}` every `--ping-interval`; a connection that answers
//! neither with `{"pong":..}` nor any other heartbeat (a JSON ping, a WebSocket ping) for two
//! pings in a row is closed, HashKey's rule. A client's `{"ping":<ms>}` is answered
//! `{"pong":<ms>}` with its own time stamp. A revoked key closes the connection with 4002, an
//! expired one with 4001.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use super::request::PARAMETER_ERROR;
use crate::auth::listen_keys::ListenKey;
use crate::hub::{Delivery, UserSubscription, Wrap};
use crate::ws::dialect::binance::user_data::UserData;
use crate::ws::dialect::{Closing, Conversation, Heartbeat, Link, Refusal, Serving};
use crate::ws::frame;
use crate::ws::subscriptions::{Planned, Streams};
use crate::ws::Hangup;

/// The private stream of HashKey-format user events (the `ws_topic` of their mapping).
pub const USER_DATA_STREAM: &str = "hashkey:userData";

/// The connect path's prefix; the listen key follows.
const PATH_PREFIX: &str = "/api/v1/ws/";

/// Unanswered server pings after which the connection is closed.
const MISSED_PINGS: u32 = 2;

/// The listen key of a private-stream connect path, if `path` is one.
pub fn listen_key_of(path: &str) -> Option<&str> {
    path.strip_prefix(PATH_PREFIX)
        .map(|key| key.trim_end_matches('/'))
        .filter(|key| !key.is_empty() && !key.contains('/'))
}

/// What a private connection starts with: its subscription, hang-up handle and heartbeat.
pub struct Opened {
    /// The owner's private events, planned.
    pub streams: Planned,
    /// Ends the connection when the key is revoked or expires.
    pub hangup: Arc<Hangup>,
    /// Server JSON pings, answered by any heartbeat.
    pub heartbeat: Heartbeat,
}

/// Opens the private stream of `key` for a client at `peer`.
pub async fn open(
    user_data: &UserData,
    key: &str,
    peer: IpAddr,
    serving: &Serving<'_>,
) -> Result<Opened, Refusal> {
    let listen_key = user_data.open(key, peer).await?;
    let mut streams = Planned::default();
    serving
        .catalog
        .plan_user(&Streams::default(), &mut streams, subscription(&listen_key))
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, -100011, PARAMETER_ERROR.1))?;
    let hangup = Hangup::new();
    user_data.hold(&listen_key.key, &hangup, None);
    let every = serving.settings.ping_interval;
    Ok(Opened {
        streams,
        hangup,
        heartbeat: Heartbeat::ServerPings {
            every,
            answer_within: every * MISSED_PINGS,
            ping: json_ping,
            client_pings_answer: true,
        },
    })
}

/// `{"ping":<ms>}` as a text frame.
fn json_ping(now_ms: i64) -> Bytes {
    frame::text(&[format!("{{\"ping\":{now_ms}}}").as_bytes()])
}

fn subscription(key: &ListenKey) -> UserSubscription {
    UserSubscription {
        user: Arc::from(key.owner.user_id.as_str()),
        name: Arc::clone(&key.key),
        stream: Arc::from(USER_DATA_STREAM),
        wrap: Arc::new(ArrayWrap),
    }
}

/// Sends a private event as a JSON array of it.
struct ArrayWrap;

impl Wrap for ArrayWrap {
    fn frame(&self, delivery: &Delivery) -> Bytes {
        frame::text(&[b"[", &delivery.payload, b"]"])
    }
}

/// One private-stream connection: it only keeps the heartbeat.
pub struct PrivateConversation;

impl Conversation for PrivateConversation {
    fn on_text(&mut self, text: &str, link: &mut Link<'_>) -> Option<Closing> {
        let message: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        if let Some(ping) = message.get("ping").filter(|p| p.is_u64() || p.is_i64()) {
            link.heard_heartbeat();
            link.send(frame::text(&[format!("{{\"pong\":{ping}}}").as_bytes()]));
        } else if message.get("pong").is_some() {
            link.heard_heartbeat();
        } else {
            let (code, msg) = PARAMETER_ERROR;
            link.count_error(code);
            let reply = format!("{{\"code\":\"{code}\",\"msg\":\"{msg}\"}}");
            link.send(frame::text(&[reply.as_bytes()]));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_key_is_the_last_path_segment() {
        assert_eq!(listen_key_of("/api/v1/ws/abc123"), Some("abc123"));
        assert_eq!(listen_key_of("/api/v1/ws/abc123/"), Some("abc123"));
        assert_eq!(listen_key_of("/api/v1/ws/"), None);
        assert_eq!(listen_key_of("/api/v1/ws/a/b"), None);
        assert_eq!(listen_key_of("/api/v1/wss/abc"), None);
    }
}
