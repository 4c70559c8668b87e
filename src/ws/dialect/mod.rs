//! Client dialects: what a connect URL means, what a client's text frames ask and how they are
//! answered, how events are wrapped, how a connection is kept alive and how it is told to go.
//!
//! The session (`ws::session`) is the dialect-free loop: it reads and writes frames, keeps the
//! timers and limits, and does the close handshake. Everything a client protocol decides sits
//! behind two traits: [`Dialect`], asked once per HTTP upgrade whether the URL is one of its
//! own, and [`Conversation`], the dialect's state for one connection, handed every text frame
//! with a [`Link`] to act on its connection. A dialect registers the frame variants its
//! connections receive events in with the hub ([`FrameVariants`]), which caches each variant
//! once per event.
//!
//! A new dialect is a folder here plus one line in [`standard`].

pub mod binance;
pub mod binance_api;
pub mod echo;
pub mod hashkey;
mod link;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Method, StatusCode};

use super::close;
use super::frame::{self, FrameError};
use super::subscriptions::{Catalog, Planned};
use super::{Hangup, WsSettings};
use crate::auth::Accounts;
use crate::book::Books;
use crate::hub::{FrameVariant, FrameVariants};
use crate::trade::Trading;

pub use link::{Link, Replier};

/// The dialects every node serves, in the order their URLs are tried, consulting the node's
/// account and trading services. Must be called inside a tokio runtime (listen keys held by
/// connections are checked by a task of their own).
pub fn standard(variants: &mut FrameVariants, services: &Services) -> Dialects {
    // Listen keys are the node's: one holder checks those of every dialect's connections.
    let user_data = binance::user_data::UserData::start(services.accounts.clone());
    let (spot, futures) = binance::MarketStreams::spot_and_futures(
        variants,
        &user_data,
        &services.accounts,
        &services.books,
    );
    Dialects::default()
        .with(spot)
        .with(futures)
        .with(hashkey::HashKey::new(
            variants,
            &user_data,
            &services.accounts,
        ))
        .with(binance_api::WsApi::new(
            variants,
            &services.accounts,
            &services.trading,
        ))
}

/// What a node offers its dialects besides the hub: accounts, the trade backend and the order
/// books.
#[derive(Clone)]
pub struct Services {
    /// API keys and listen keys.
    pub accounts: Accounts,
    /// Where trade actions go.
    pub trading: Trading,
    /// The order books kept from the node's diff-depth outputs (depth snapshots).
    pub books: Books,
}

/// A client protocol, as the listener sees it: which connect URLs are its own.
pub trait Dialect: Send + Sync + 'static {
    /// A short name, for logs.
    fn name(&self) -> &'static str;

    /// What an upgrade request for `handshake` asks for, if its URL belongs to this dialect:
    /// the connection's conversation and first streams, or why it is refused. `None` lets the
    /// next dialect look at it. It may look things up (a listen key, an API key) before it
    /// answers.
    fn route<'a>(
        &'a self,
        handshake: &'a Handshake<'a>,
        serving: &'a Serving<'a>,
    ) -> BoxFuture<'a, Option<Result<Connect, Refusal>>>;

    /// The answer to a plain HTTP request (no upgrade) on the client listener, if its URL is
    /// one of this dialect's (e.g. Binance's `/api/v3/userDataStream`); by default none.
    fn answer<'a>(&'a self, _request: &'a HttpRequest) -> Option<BoxFuture<'a, HttpAnswer>> {
        None
    }
}

/// A plain HTTP request on the client listener, body read.
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The URL path.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The headers.
    pub headers: HeaderMap,
    /// The body (bounded by the listener).
    pub body: Bytes,
    /// The client's address.
    pub peer: IpAddr,
}

/// A dialect's answer to a plain HTTP request: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: serde_json::Value,
}

impl HttpAnswer {
    /// 200 with `body`.
    pub fn ok(body: serde_json::Value) -> Self {
        HttpAnswer {
            status: StatusCode::OK,
            body,
        }
    }

    /// `status` with Binance's error body `{"code":..,"msg":..}`.
    pub fn error(status: StatusCode, code: i32, msg: &str) -> Self {
        HttpAnswer {
            status,
            body: serde_json::json!({ "code": code, "msg": msg }),
        }
    }
}

/// A dialect's side of one connection: the client's text and binary messages, and the words the
/// gateway ends the connection with.
pub trait Conversation: Send + 'static {
    /// A text message from the client; `Some` ends the connection.
    fn on_text(&mut self, text: &str, link: &mut Link<'_>) -> Option<Closing>;

    /// A binary message from the client; by default the connection is closed with 1003.
    fn on_binary(&mut self, _data: &[u8], _link: &mut Link<'_>) -> Option<Closing> {
        Some(Closing::new(
            close::UNSUPPORTED,
            "Binary frames are not supported",
        ))
    }

    /// How the gateway ends the connection for `cause`; by default the gateway's close codes
    /// ([`Cause::closing`]) and no notice.
    fn closing(&self, cause: Cause) -> Closing {
        cause.closing()
    }

    /// A config change removed streams the connection held: it no longer holds `removed` (in
    /// the order it held them), and gets none of their events, even if they are declared again.
    /// `Some` ends the connection. By default nothing is said, and a connection left with no
    /// stream at all is closed with [`close::STREAM_REMOVED`] ([`Link::holds_nothing`]).
    fn on_streams_removed(
        &mut self,
        _removed: &[Arc<str>],
        link: &mut Link<'_>,
    ) -> Option<Closing> {
        link.holds_nothing().then(Closing::streams_removed)
    }
}

/// The upgrade request a dialect routes.
pub struct Handshake<'a> {
    /// The URL path, as sent (still percent-encoded).
    pub path: &'a str,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub peer: IpAddr,
}

/// What a dialect may consult while routing a connection: what the node serves.
pub struct Serving<'a> {
    /// The streams the node serves.
    pub catalog: Catalog<'a>,
    /// The node's connection limits and timers.
    pub settings: &'a WsSettings,
}

/// An accepted connect URL: the connection's conversation, how it receives events, its
/// heartbeat rule, and the streams it starts with.
pub struct Connect {
    /// The dialect's state for this connection.
    pub conversation: Box<dyn Conversation>,
    /// The frame variant events are sent in (the conversation may change it later).
    pub variant: FrameVariant,
    /// How the connection is kept alive.
    pub heartbeat: Heartbeat,
    /// Streams subscribed before the handshake answer goes out, so the client gets everything
    /// published after its connection was accepted.
    pub streams: Planned,
    /// A handle the dialect keeps to end the connection from outside (expiry, revocation).
    pub hangup: Option<Arc<Hangup>>,
    /// Client messages allowed per second, when the dialect's differ from the node's
    /// (the WebSocket API allows bursts of pipelined requests).
    pub messages_per_sec: Option<usize>,
}

/// A refused upgrade: HTTP status and the `{"code":..,"msg":..}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: StatusCode,
    /// The error code in the body.
    pub code: i32,
    /// The message in the body.
    pub msg: String,
}

impl Refusal {
    /// A refusal with `status`, `code` and `msg`.
    pub fn new(status: StatusCode, code: i32, msg: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            msg: msg.into(),
        }
    }
}

/// How a connection proves it is alive.
#[derive(Debug, Clone, Copy)]
pub enum Heartbeat {
    /// The server pings every `every` with the frame `ping` builds (from the time in ms); a
    /// ping left unanswered for `answer_within` ends the connection. A WebSocket pong carrying
    /// the ping's payload answers (other pongs are ignored), as does any heartbeat the
    /// conversation reports ([`Link::heard_heartbeat`]).
    ServerPings {
        /// Interval between pings.
        every: Duration,
        /// How long a ping may stay unanswered.
        answer_within: Duration,
        /// Builds the ping frame.
        ping: fn(i64) -> Bytes,
        /// Whether a WebSocket ping from the client answers too (HashKey takes any heartbeat
        /// as a sign of life; Binance wants the pong).
        client_pings_answer: bool,
    },
    /// The client must send a heartbeat at least every `within`: a WebSocket ping, or whatever
    /// the conversation reports with [`Link::heard_heartbeat`] (JSON pings).
    ClientPings {
        /// Longest silence allowed.
        within: Duration,
    },
}

impl Heartbeat {
    /// Server pings of [`websocket_ping`] at the node's `--ping-interval`, answered within its
    /// `--pong-timeout` (Binance's rule, and the default of any WebSocket client library).
    pub fn websocket_pings(settings: &WsSettings) -> Self {
        Heartbeat::ServerPings {
            every: settings.ping_interval,
            answer_within: settings.pong_timeout,
            ping: websocket_ping,
            client_pings_answer: false,
        }
    }
}

/// A WebSocket ping frame carrying the time in ms as text.
pub fn websocket_ping(now_ms: i64) -> Bytes {
    frame::ping(now_ms.to_string().as_bytes())
}

/// Why the gateway ends a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The node shuts down or drains.
    Shutdown,
    /// The connection reached its maximum lifetime.
    LifetimeReached,
    /// The client missed its heartbeat.
    HeartbeatMissed,
    /// The client sent more messages than its budget allows.
    TooManyMessages,
    /// The client broke the WebSocket framing.
    BadFrame(FrameError),
    /// The client did not read its queue fast enough.
    SlowConsumer,
}

impl Cause {
    /// The gateway's close code and reason for this cause, without a notice.
    pub fn closing(&self) -> Closing {
        match self {
            Cause::Shutdown => Closing::new(close::GOING_AWAY, "Server shutting down"),
            Cause::LifetimeReached => {
                Closing::new(close::GOING_AWAY, "Connection lifetime reached")
            }
            Cause::HeartbeatMissed => Closing::new(close::POLICY, "Pong timeout"),
            Cause::TooManyMessages => Closing::new(close::POLICY, "Too many requests"),
            Cause::BadFrame(e) => Closing::new(e.close_code(), "Invalid frame"),
            Cause::SlowConsumer => Closing::new(close::SLOW_CONSUMER, "Slow consumer"),
        }
    }
}

/// How a connection is ended: a notice sent first (if any), then a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    /// Close code.
    pub code: u16,
    /// Close reason.
    pub reason: &'static str,
    /// A frame sent before the close (e.g. Binance's `serverShutdown`).
    pub notice: Option<Bytes>,
}

impl Closing {
    /// A close with `code` and `reason`, without notice.
    pub fn new(code: u16, reason: &'static str) -> Self {
        Closing {
            code,
            reason,
            notice: None,
        }
    }

    /// [`close::STREAM_REMOVED`], "Stream removed", without notice.
    pub fn streams_removed() -> Self {
        Closing::new(close::STREAM_REMOVED, "Stream removed")
    }

    /// The same close, preceded by `notice`.
    pub fn with_notice(mut self, notice: Bytes) -> Self {
        self.notice = Some(notice);
        self
    }
}

/// The dialects a listener serves, tried in order.
#[derive(Default, Clone)]
pub struct Dialects {
    list: Vec<Arc<dyn Dialect>>,
}

impl Dialects {
    /// These dialects and then `dialect`.
    pub fn with(mut self, dialect: impl Dialect) -> Self {
        self.list.push(Arc::new(dialect));
        self
    }

    /// The first dialect's answer to `handshake`; `None` when no dialect owns its URL.
    pub async fn route(
        &self,
        handshake: &Handshake<'_>,
        serving: &Serving<'_>,
    ) -> Option<Result<Connect, Refusal>> {
        for dialect in &self.list {
            if let Some(answer) = dialect.route(handshake, serving).await {
                return Some(answer);
            }
        }
        None
    }

    /// The first dialect's answer to a plain HTTP request; `None` when no dialect owns its URL.
    pub async fn answer(&self, request: &HttpRequest) -> Option<HttpAnswer> {
        for dialect in &self.list {
            if let Some(answer) = dialect.answer(request) {
                return Some(answer.await);
            }
        }
        None
    }

    /// The dialects' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.list.iter().map(|d| d.name()).collect()
    }
}
