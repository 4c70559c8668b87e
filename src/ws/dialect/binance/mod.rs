//! The Binance Spot market-stream dialect (`docs/binance-protocol.md` §1–§4): `/ws` and
//! `/stream` URLs, live `SUBSCRIBE`/`UNSUBSCRIBE`/`LIST_SUBSCRIPTIONS`/`SET_PROPERTY`/
//! `GET_PROPERTY` with Binance's exact replies and error texts, raw or combined events in
//! milliseconds or microseconds, server pings, and `serverShutdown` before a planned close; and
//! the legacy user-data flow (§5.1): listen keys over `/api/v3/userDataStream`, opened in the
//! same connect URLs as streams ([`user_data`]); and the order book snapshot
//! `GET /api/v3/depth` from the gateway's own books ([`depth_api`]).
//!
//! The same dialect serves Binance USD-M futures market streams (`<symbol>@markPrice[@1s]`,
//! `<symbol>@forceOrder`, `!forceOrder@arr`, …) under a path prefix, as Binance's `fstream` host
//! serves them ([`Market::USD_FUTURES`]): its streams live in the hub's `futures:` namespace.

pub mod control;
mod conversation;
pub mod depth_api;
pub mod envelope;
pub mod listen_key_api;
pub mod url;
pub mod user_data;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::StatusCode;

use super::{Connect, Dialect, Handshake, Heartbeat, HttpAnswer, HttpRequest, Refusal, Serving};
use crate::auth::Accounts;
use crate::book::Books;
use crate::config::{is_stream_name, split_namespace};
use crate::hub::FrameVariants;
use crate::ws::resume::ResumeFrom;
use crate::ws::subscriptions::{Planned, Streams, SubscribeError};
use crate::ws::Hangup;
use conversation::{MarketConversation, Shared};
use envelope::{Format, Variants};
use listen_key_api::{Flavor, ListenKeyApi};
use url::{ConnectTarget, TargetError};
use user_data::UserData;

/// The private stream of Binance-format user events (the `ws_topic` of their mapping).
pub const USER_DATA_STREAM: &str = "userData";

/// Which Binance market a [`MarketStreams`] serves: where its URLs start and what its streams
/// are called in the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Market {
    /// A short name, for logs.
    pub name: &'static str,
    /// What the connect URLs start with before `/ws` or `/stream` (empty for spot).
    pub path_prefix: &'static str,
    /// Path segments that may follow the prefix and mean nothing more (`/public`, `/market`:
    /// the USD-M futures host's split endpoints, which ccxt connects to).
    pub categories: &'static [&'static str],
    /// The hub namespace of its streams, with its colon (see [`crate::config::split_namespace`]);
    /// empty for spot.
    pub namespace: &'static str,
    /// Whether listen keys (user data) and the REST endpoints are served.
    pub accounts: bool,
}

impl Market {
    /// Binance Spot: `/ws`, `/stream`, listen keys, `/api/v3/userDataStream`, `/api/v3/depth`.
    pub const SPOT: Market = Market {
        name: "binance",
        path_prefix: "",
        categories: &[],
        namespace: "",
        accounts: true,
    };

    /// Binance USD-M futures market streams: `/futures/ws`, `/futures/stream`, and
    /// `/futures/public/ws`, `/futures/market/ws` (the `fstream` host's split endpoints); streams
    /// `futures:<name>` in the hub; no user data.
    pub const USD_FUTURES: Market = Market {
        name: "binance-futures",
        path_prefix: "/futures",
        categories: &["/public", "/market"],
        namespace: "futures:",
        accounts: false,
    };

    /// The rest of a connect path after this market's prefix and category, if it is one of
    /// this market's.
    fn strip<'p>(&self, path: &'p str) -> Option<&'p str> {
        let rest = path.strip_prefix(self.path_prefix)?;
        if self.path_prefix.is_empty() {
            return Some(rest);
        }
        Some(
            self.categories
                .iter()
                .find_map(|c| rest.strip_prefix(c).filter(|r| r.starts_with('/')))
                .unwrap_or(rest),
        )
    }

    /// The hub's name of a client's stream name.
    pub fn hub_name(&self, stream: &str) -> String {
        format!("{}{stream}", self.namespace)
    }

    /// Whether a client's name is a stream of this market: shaped like one, and without a
    /// namespace of its own (`hashkey:btcusdt@trade` is no Binance stream).
    pub fn is_stream(&self, name: &str) -> bool {
        looks_like_stream(name) && split_namespace(name).0.is_none()
    }
}

/// Binance Spot market streams and listen-key user-data streams.
pub struct MarketStreams {
    /// Shared by every connection's conversation (one pointer each), with the market it serves.
    shared: Arc<Shared>,
    /// `/api/v3/userDataStream`, where the market serves accounts.
    listen_key_api: Option<ListenKeyApi>,
    /// Where `/api/v3/depth` snapshots come from.
    books: Books,
}

impl MarketStreams {
    /// The spot dialect and the USD-M futures one, their event formats registered once in
    /// `variants`, their listen-key connections held by `user_data`, consulting `accounts` for
    /// listen keys and `books` for depth snapshots.
    pub fn spot_and_futures(
        variants: &mut FrameVariants,
        user_data: &Arc<UserData>,
        accounts: &Accounts,
        books: &Books,
    ) -> (Self, Self) {
        let variants = Variants::register(variants);
        let market = |market: Market| MarketStreams {
            shared: Arc::new(Shared {
                variants,
                user_data: Arc::clone(user_data),
                market,
            }),
            listen_key_api: market
                .accounts
                .then(|| ListenKeyApi::new(&accounts.listen_key_settings, Flavor::BINANCE)),
            books: books.clone(),
        };
        (market(Market::SPOT), market(Market::USD_FUTURES))
    }

    async fn connect(
        &self,
        target: ConnectTarget,
        handshake: &Handshake<'_>,
        serving: &Serving<'_>,
    ) -> Result<Connect, Refusal> {
        let invalid = |msg: &str| Refusal::new(StatusCode::BAD_REQUEST, 2, msg);
        let mut target = target;
        if !self.shared.market.accounts {
            // A key-shaped segment is then no stream at all, like ccxt's `/ws/0`.
            target.listen_keys.clear();
        }
        if target.streams.len() + target.listen_keys.len() > serving.settings.max_streams {
            return Err(invalid("Invalid request: too many streams"));
        }
        if !target
            .streams
            .iter()
            .all(|name| self.shared.market.is_stream(name))
        {
            return Err(invalid(control::INVALID_STREAM));
        }
        let market = self.shared.market;
        target.streams = target.streams.iter().map(|s| market.hub_name(s)).collect();
        for (stream, _) in &mut target.resume_from {
            *stream = market.hub_name(stream);
        }
        let format = Format::of(target.combined, target.micros).with_seq(target.resume);
        let mut listen_keys = Vec::with_capacity(target.listen_keys.len());
        for key in &target.listen_keys {
            listen_keys.push(self.shared.user_data.open(key, handshake.peer).await?);
        }
        let mut streams = serving
            .catalog
            .plan(&Streams::default(), target.streams)
            .map_err(|e| invalid(subscribe_error(&e)))?;
        if !target.resume_from.is_empty() {
            streams.resume_from(ResumeFrom {
                positions: target.resume_from,
                notice: Format::resync_notice,
            });
        }
        let hangup = self.hold(&listen_keys, format, serving, &mut streams)?;
        Ok(Connect {
            conversation: Box::new(MarketConversation::new(
                format,
                Arc::clone(&self.shared),
                handshake.peer,
            )),
            variant: self.shared.variants.of(format),
            heartbeat: Heartbeat::websocket_pings(serving.settings),
            streams,
            hangup,
            messages_per_sec: None,
        })
    }

    /// Plans the private subscriptions of `listen_keys` and watches the keys for the
    /// connection; its hang-up handle when it holds any.
    fn hold(
        &self,
        listen_keys: &[crate::auth::listen_keys::ListenKey],
        format: Format,
        serving: &Serving<'_>,
        streams: &mut Planned,
    ) -> Result<Option<Arc<Hangup>>, Refusal> {
        if listen_keys.is_empty() {
            return Ok(None);
        }
        for key in listen_keys {
            serving
                .catalog
                .plan_user(
                    &Streams::default(),
                    streams,
                    UserData::subscription(key, format),
                )
                .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, 2, subscribe_error(&e)))?;
        }
        let hangup = Hangup::new();
        for key in listen_keys {
            self.shared.user_data.hold(&key.key, &hangup, Some(format));
        }
        Ok(Some(hangup))
    }
}

impl Dialect for MarketStreams {
    fn name(&self) -> &'static str {
        self.shared.market.name
    }

    fn route<'a>(
        &'a self,
        handshake: &'a Handshake<'a>,
        serving: &'a Serving<'a>,
    ) -> BoxFuture<'a, Option<Result<Connect, Refusal>>> {
        async move {
            let path = self.shared.market.strip(handshake.path)?;
            match url::parse_target(path, handshake.query) {
                Err(TargetError::NotFound) => None,
                Err(
                    e @ (TargetError::BadTimeUnit
                    | TargetError::BadResume
                    | TargetError::BadResumeFrom),
                ) => Some(Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    -1100,
                    e.to_string(),
                ))),
                Ok(target) => Some(self.connect(target, handshake, serving).await),
            }
        }
        .boxed()
    }

    fn answer<'a>(&'a self, request: &'a HttpRequest) -> Option<BoxFuture<'a, HttpAnswer>> {
        // A market without accounts answers no plain HTTP request.
        let listen_key_api = self.listen_key_api.as_ref()?;
        match request.path.as_str() {
            path if path == listen_key_api.path() => Some(
                listen_key_api
                    .answer(&self.shared.user_data, request)
                    .boxed(),
            ),
            depth_api::PATH => Some(depth_api::answer(&self.books, request).boxed()),
            _ => None,
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
        SubscribeError::Unknown(_) => control::INVALID_STREAM,
        SubscribeError::TooMany => "Invalid request: too many streams",
    }
}
