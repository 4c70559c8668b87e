//! Binance's WebSocket API, `/ws-api/v3` (`docs/binance-protocol.md` §5.2, §6): signed
//! requests and `session.logon`, user-data subscriptions wrapped `{"subscriptionId":N,..}`,
//! the legacy `userDataStream.start|ping|stop` over the listen keys, and trade actions
//! forwarded to the exchange's backend ([`crate::trade`]) with the verified user id.
//!
//! A connection's requests are handled in order by a task of its own ([`worker`]), which may
//! look keys up in the store; trade actions are then sent off concurrently, so several can be in
//! flight, and each answer goes out when its backend replies, matched by the request's id.

mod conversation;
mod reply;
#[doc(hidden)]
pub mod request;
mod worker;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::{Connect, Dialect, Handshake, Heartbeat, Refusal, Serving};
use crate::auth::Accounts;
use crate::hub::{FrameVariant, FrameVariants};
use crate::trade::Trading;
use crate::util::now_ms;
use crate::ws::frame;
use crate::ws::subscriptions::Planned;
use conversation::ApiConversation;

/// The endpoint's path.
pub const PATH: &str = "/ws-api/v3";

/// What every WebSocket API connection of a node shares.
pub struct Core {
    /// API keys and listen keys.
    pub accounts: Accounts,
    /// Where trade actions go.
    pub trading: Trading,
}

/// The WebSocket API dialect.
pub struct WsApi {
    core: Arc<Core>,
    /// The variant the hub would frame topic events in; API connections subscribe to no
    /// topic, and their user-data events and answers come framed already.
    variant: FrameVariant,
}

impl WsApi {
    /// The dialect, consulting `accounts` and forwarding trade actions through `trading`.
    pub fn new(variants: &mut FrameVariants, accounts: &Accounts, trading: &Trading) -> Self {
        WsApi {
            core: Arc::new(Core {
                accounts: accounts.clone(),
                trading: trading.clone(),
            }),
            variant: variants.register("binance-api/raw", |d| frame::text(&[&d.payload])),
        }
    }
}

impl Dialect for WsApi {
    fn name(&self) -> &'static str {
        "binance-ws-api"
    }

    fn route<'a>(
        &'a self,
        handshake: &'a Handshake<'a>,
        serving: &'a Serving<'a>,
    ) -> BoxFuture<'a, Option<Result<Connect, Refusal>>> {
        let ours = handshake.path == PATH || handshake.path == "/ws-api/v3/";
        let answer = ours.then(|| {
            let return_rate_limits = !handshake
                .query
                .unwrap_or("")
                .split('&')
                .any(|pair| pair.eq_ignore_ascii_case("returnRateLimits=false"));
            Ok(Connect {
                conversation: Box::new(ApiConversation::new(
                    Arc::clone(&self.core),
                    handshake.peer,
                    now_ms() as i64,
                    return_rate_limits,
                )),
                variant: self.variant,
                heartbeat: Heartbeat::websocket_pings(serving.settings),
                streams: Planned::default(),
                hangup: None,
                messages_per_sec: Some(serving.settings.api_messages_per_sec),
            })
        });
        std::future::ready(answer).boxed()
    }
}
