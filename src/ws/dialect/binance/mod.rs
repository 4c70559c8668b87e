//! The Binance Spot market-stream dialect (`docs/binance-protocol.md` §1–§4): `/ws` and
//! `/stream` URLs, live `SUBSCRIBE`/`UNSUBSCRIBE`/`LIST_SUBSCRIPTIONS`/`SET_PROPERTY`/
//! `GET_PROPERTY` with Binance's exact replies and error texts, raw or combined events in
//! milliseconds or microseconds, server pings, and `serverShutdown` before a planned close; and
//! the legacy user-data flow (§5.1): listen keys over `/api/v3/userDataStream`, opened in the
//! same connect URLs as streams ([`user_data`]); and the order book snapshot
//! `GET /api/v3/depth` from the gateway's own books ([`depth_api`]).

pub mod control;
mod conversation;
pub mod depth_api;
pub mod envelope;
mod listen_key_api;
pub mod url;
mod user_data;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::StatusCode;

use super::{Connect, Dialect, Handshake, Heartbeat, HttpAnswer, HttpRequest, Refusal, Serving};
use crate::auth::Accounts;
use crate::book::Books;
use crate::config::is_stream_name;
use crate::hub::FrameVariants;
use crate::ws::resume::ResumeFrom;
use crate::ws::subscriptions::{Planned, Streams, SubscribeError};
use crate::ws::Hangup;
use conversation::{MarketConversation, Shared};
use envelope::{Format, Variants};
use listen_key_api::ListenKeyApi;
use url::{ConnectTarget, TargetError};
use user_data::UserData;

/// Binance Spot market streams and listen-key user-data streams.
pub struct MarketStreams {
    /// Shared by every connection's conversation (one pointer each).
    shared: Arc<Shared>,
    listen_key_api: ListenKeyApi,
    /// Where `/api/v3/depth` snapshots come from.
    books: Books,
}

impl MarketStreams {
    /// The dialect, with its four event formats registered in `variants`, consulting
    /// `accounts` for listen keys and `books` for depth snapshots. Must be called inside a
    /// tokio runtime (listen keys held by connections are checked by a task of its own).
    pub fn new(variants: &mut FrameVariants, accounts: &Accounts, books: &Books) -> Self {
        MarketStreams {
            shared: Arc::new(Shared {
                variants: Variants::register(variants),
                user_data: UserData::start(accounts.clone()),
            }),
            listen_key_api: ListenKeyApi::new(&accounts.listen_key_settings),
            books: books.clone(),
        }
    }

    async fn connect(
        &self,
        target: ConnectTarget,
        handshake: &Handshake<'_>,
        serving: &Serving<'_>,
    ) -> Result<Connect, Refusal> {
        let invalid = |msg: &str| Refusal::new(StatusCode::BAD_REQUEST, 2, msg);
        if target.streams.len() + target.listen_keys.len() > serving.settings.max_streams {
            return Err(invalid("Invalid request: too many streams"));
        }
        if !target.streams.iter().all(|name| looks_like_stream(name)) {
            return Err(invalid(control::INVALID_STREAM));
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
            self.shared.user_data.hold(&key.key, &hangup, format);
        }
        Ok(Some(hangup))
    }
}

impl Dialect for MarketStreams {
    fn name(&self) -> &'static str {
        "binance"
    }

    fn route<'a>(
        &'a self,
        handshake: &'a Handshake<'a>,
        serving: &'a Serving<'a>,
    ) -> BoxFuture<'a, Option<Result<Connect, Refusal>>> {
        async move {
            match url::parse_target(handshake.path, handshake.query) {
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
        match request.path.as_str() {
            listen_key_api::PATH => Some(
                self.listen_key_api
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
