//! The HashKey dialect (`docs/binance-protocol.md` §7) on the same listener as Binance's: the
//! public streams `/quote/ws/v1` and `/quote/ws/v2`, and the private stream
//! `/api/v1/ws/<listenKey>` with its signed listen-key endpoint `/api/v1/userDataStream`
//! ([`private`]).
//!
//! On the public streams, a client subscribes with `sub` and `cancel` events ([`request`]) and
//! keeps the connection alive with JSON pings (`{"ping":<ms>}` is answered
//! `{"pong":<server ms>}`) or WebSocket pings; pushes are wrapped per version ([`envelope`]).
//! Their streams live in the hub's `hashkey:` namespace (`hashkey:btcusdt@trade`), fed by HashKey
//! mappers from the same upstream events as the Binance streams. A public connection that sends
//! no heartbeat at all for the node's `--pong-timeout` is closed: HashKey asks clients to ping
//! every 10 seconds, so that is several missed pings.

pub mod envelope;
pub mod private;
pub mod request;

pub use private::USER_DATA_STREAM;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::binance::listen_key_api::{Flavor, ListenKeyApi};
use super::binance::user_data::UserData;
use super::{
    Closing, Connect, Conversation, Dialect, Handshake, Heartbeat, HttpAnswer, HttpRequest, Link,
    Refusal, Serving,
};
use crate::auth::Accounts;
use crate::hub::FrameVariants;
use crate::util::now_ms;
use crate::ws::frame;
use crate::ws::subscriptions::Planned;
use envelope::Variants;
use request::{Message, Refused, Request, PARAMETER_ERROR};

/// The hub namespace of HashKey's streams, with its colon.
pub const NAMESPACE: &str = "hashkey:";

/// Client messages a connection may send per second. HashKey publishes no such limit; its
/// clients send one `sub` per topic and symbol right after connecting (ccxt does), so the
/// budget is well above Binance's five.
pub const MESSAGES_PER_SEC: usize = 50;

/// A public-stream protocol version: its URL, request shape and push envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `/quote/ws/v1`.
    V1,
    /// `/quote/ws/v2`.
    V2,
}

impl Version {
    /// The version whose URL `path` is, if any.
    fn of_path(path: &str) -> Option<Version> {
        match path.trim_end_matches('/') {
            "/quote/ws/v1" => Some(Version::V1),
            "/quote/ws/v2" => Some(Version::V2),
            _ => None,
        }
    }
}

/// HashKey's public and private streams.
pub struct HashKey {
    variants: Variants,
    /// The node's listen-key connections (shared with the Binance dialect).
    user_data: Arc<UserData>,
    listen_key_api: ListenKeyApi,
}

impl HashKey {
    /// The dialect, its two push envelopes registered in `variants`, its private streams held
    /// by `user_data` and its listen keys created in `accounts`.
    pub fn new(
        variants: &mut FrameVariants,
        user_data: &Arc<UserData>,
        accounts: &Accounts,
    ) -> Self {
        HashKey {
            variants: Variants::register(variants),
            user_data: Arc::clone(user_data),
            listen_key_api: ListenKeyApi::new(&accounts.listen_key_settings, Flavor::HASHKEY),
        }
    }

    async fn connect_private(
        &self,
        key: &str,
        handshake: &Handshake<'_>,
        serving: &Serving<'_>,
    ) -> Result<Connect, Refusal> {
        let opened = private::open(&self.user_data, key, handshake.peer, serving).await?;
        Ok(Connect {
            conversation: Box::new(private::PrivateConversation),
            variant: self.variants.of(Version::V1),
            heartbeat: opened.heartbeat,
            streams: opened.streams,
            hangup: Some(opened.hangup),
            messages_per_sec: Some(MESSAGES_PER_SEC),
        })
    }
}

impl Dialect for HashKey {
    fn name(&self) -> &'static str {
        "hashkey"
    }

    fn route<'a>(
        &'a self,
        handshake: &'a Handshake<'a>,
        serving: &'a Serving<'a>,
    ) -> BoxFuture<'a, Option<Result<Connect, Refusal>>> {
        if let Some(key) = private::listen_key_of(handshake.path) {
            return async move { Some(self.connect_private(key, handshake, serving).await) }
                .boxed();
        }
        let answer = Version::of_path(handshake.path).map(|version| {
            Ok(Connect {
                conversation: Box::new(PublicConversation { version }),
                variant: self.variants.of(version),
                heartbeat: Heartbeat::ClientPings {
                    within: serving.settings.pong_timeout,
                },
                streams: Planned::default(),
                hangup: None,
                messages_per_sec: Some(MESSAGES_PER_SEC),
            })
        });
        std::future::ready(answer).boxed()
    }

    fn answer<'a>(&'a self, request: &'a HttpRequest) -> Option<BoxFuture<'a, HttpAnswer>> {
        (request.path == self.listen_key_api.path())
            .then(|| self.listen_key_api.answer(&self.user_data, request).boxed())
    }
}

/// One public-stream connection: its version.
struct PublicConversation {
    version: Version,
}

impl PublicConversation {
    /// Subscribes or cancels; the reply to send, if any.
    fn carry_out(&self, request: Request, link: &mut Link<'_>) -> Result<Option<String>, Refused> {
        if !request.subscribe {
            link.unsubscribe(&request.streams);
            return Ok(request.success());
        }
        // Unlike Binance, HashKey refuses a topic or symbol it does not serve.
        if !request.streams.iter().all(|name| link.serves(name)) {
            return Err(request.refused());
        }
        match link.subscribe(request.streams.clone()) {
            Ok(()) => Ok(request.success()),
            Err(_) => Err(request.refused()),
        }
    }
}

impl Conversation for PublicConversation {
    fn on_text(&mut self, text: &str, link: &mut Link<'_>) -> Option<Closing> {
        let reply = match request::parse(text, self.version) {
            Ok(Message::Ping(_)) => {
                link.heard_heartbeat();
                Ok(Some(format!("{{\"pong\":{}}}", now_ms())))
            }
            Ok(Message::Pong) => {
                link.heard_heartbeat();
                return None;
            }
            Ok(Message::Request(request)) => self.carry_out(request, link),
            Err(refused) => Err(refused),
        };
        let reply = reply.unwrap_or_else(|refused| {
            link.count_error(PARAMETER_ERROR.0);
            Some(refused.reply())
        });
        if let Some(reply) = reply {
            link.send(frame::text(&[reply.as_bytes()]));
        }
        None
    }
}
