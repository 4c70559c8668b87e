//! Trade actions over the WebSocket API, forwarded to the exchange's backend.
//!
//! The gateway never trades: it checks who is asking (the WebSocket API dialect verifies the
//! signature or session), then hands the method, the *verified* user id and the client's params,
//! verbatim, to a [`Backend`], and relays its answer. A backend silent for the timeout gets the
//! client Binance's `-1007` ("execution status unknown"), never a guess.
//!
//! The backend of a cluster is whatever answers NATS requests on `<prefix>.<method>`
//! ([`NatsBackend`]); see `docs/private.md` (Trading) for the message shapes.

pub mod demo;
mod nats;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use nats::NatsBackend;

/// What the gateway sends the backend for one request.
#[derive(Debug, Clone, Serialize)]
pub struct TradeRequest<'a> {
    /// The method, without a `v3/` prefix: `order.place`, `account.status`, ...
    pub method: &'a str,
    /// The user the verified API key (or session) acts for.
    pub user_id: &'a str,
    /// That API key.
    pub api_key: &'a str,
    /// The client's params, verbatim.
    pub params: &'a RawValue,
}

/// The backend's answer: a status and a result or an error, as the client will see them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TradeReply {
    /// HTTP-like status: 200, 400, ...
    pub status: u16,
    /// The result on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<RawValue>>,
    /// The error otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TradeError>,
}

/// A Binance error: code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeError {
    /// Binance's error code, e.g. `-2010`.
    pub code: i32,
    /// Its text.
    pub msg: String,
}

impl TradeReply {
    /// An error answer.
    pub fn error(status: u16, code: i32, msg: impl Into<String>) -> TradeReply {
        TradeReply {
            status,
            result: None,
            error: Some(TradeError {
                code,
                msg: msg.into(),
            }),
        }
    }

    /// A success with `result` (JSON text).
    pub fn ok(result: Box<RawValue>) -> TradeReply {
        TradeReply {
            status: 200,
            result: Some(result),
            error: None,
        }
    }

    /// The backend did not answer in time: Binance's `-1007`.
    pub fn timed_out() -> TradeReply {
        TradeReply::error(
            503,
            -1007,
            "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
        )
    }

    /// The backend could not be reached, or answered nonsense.
    pub fn unavailable() -> TradeReply {
        let (code, msg) = crate::api_error::INTERNAL;
        TradeReply::error(503, code, msg)
    }
}

/// Where trade actions go.
pub trait Backend: Send + Sync + 'static {
    /// Sends `request` and waits for the answer (at most `timeout`).
    fn call<'a>(
        &'a self,
        request: &'a TradeRequest<'a>,
        timeout: Duration,
    ) -> BoxFuture<'a, TradeReply>;
}

/// Trade forwarding settings.
#[derive(Debug, Clone)]
pub struct TradeSettings {
    /// Methods forwarded (besides them, only the WebSocket API's own methods are known).
    pub methods: Vec<String>,
    /// Subjects are `<prefix>.<method>`.
    pub subject_prefix: String,
    /// How long the backend may take.
    pub timeout: Duration,
}

impl Default for TradeSettings {
    fn default() -> Self {
        TradeSettings {
            methods: [
                "order.place",
                "order.cancel",
                "order.status",
                "openOrders.status",
                "account.status",
            ]
            .map(String::from)
            .to_vec(),
            subject_prefix: "wsgate.trade".into(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The backend and its settings, as the WebSocket API uses them.
#[derive(Clone)]
pub struct Trading {
    /// Where requests go.
    pub backend: Arc<dyn Backend>,
    /// Which methods, and how long to wait.
    pub settings: TradeSettings,
}

impl Trading {
    /// True when `method` is forwarded.
    pub fn forwards(&self, method: &str) -> bool {
        self.settings.methods.iter().any(|m| m == method)
    }

    /// Forwards one request.
    pub async fn call(&self, request: &TradeRequest<'_>) -> TradeReply {
        self.backend.call(request, self.settings.timeout).await
    }
}

/// Encodes a request body for the backend.
pub fn encode(request: &TradeRequest<'_>) -> Bytes {
    Bytes::from(serde_json::to_vec(request).expect("a trade request serializes"))
}
