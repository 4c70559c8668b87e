//! Binance's legacy listen-key REST endpoints on the client listener
//! (`docs/binance-protocol.md` §5.1): `POST /api/v3/userDataStream` creates (or returns
//! and extends the caller's active key), `PUT ..?listenKey=` extends, `DELETE ..?listenKey=`
//! revokes. The API key comes in `X-MBX-APIKEY` and needs the `user-stream` permission; the
//! listen key may come in the query or a form body (python-binance sends it in the body).
//!
//! Requests are limited per client address, and creations per API key, answering Binance's 429
//! with `-1003` past the limit.
//!
//! HashKey's endpoint (`/api/v1/userDataStream`, [`Flavor::HASHKEY`]) works the same way with the
//! API key in `X-HK-APIKEY`, and every request is signed: `timestamp` (and `recvWindow`) among its
//! parameters, `signature` the key's HMAC-SHA256 in hex over the parameters as sent (the query
//! string, then the form body, without the `signature` pair), as ccxt's `hashkey` signs them.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{Method, StatusCode};
use serde_json::json;

use super::user_data::UserData;
use crate::api_error;
use crate::auth::listen_keys::{ListenKeySettings, Owner, UNKNOWN_LISTEN_KEY};
use crate::auth::signature::{check_timestamp, SignatureError};
use crate::auth::{generate_token, ApiKey, AuthError};
use crate::config::store::Permission;
use crate::util::now_ms;
use crate::ws::dialect::{HttpAnswer, HttpRequest};

/// Which exchange's listen-key endpoint: its path, the header carrying the API key, and whether
/// requests are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavor {
    /// The endpoint's path.
    pub path: &'static str,
    /// The header with the API key (lower case).
    pub api_key_header: &'static str,
    /// Whether each request carries `timestamp` and `signature`.
    pub signed: bool,
}

impl Flavor {
    /// Binance's legacy endpoint: API key in `X-MBX-APIKEY`, not signed.
    pub const BINANCE: Flavor = Flavor {
        path: "/api/v3/userDataStream",
        api_key_header: "x-mbx-apikey",
        signed: false,
    };

    /// HashKey's endpoint: API key in `X-HK-APIKEY`, signed.
    pub const HASHKEY: Flavor = Flavor {
        path: "/api/v1/userDataStream",
        api_key_header: "x-hk-apikey",
        signed: true,
    };
}

/// The endpoint and its limits.
pub struct ListenKeyApi {
    flavor: Flavor,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    creates_per_key: DefaultKeyedRateLimiter<String>,
    ip_limit: u32,
    create_limit: u32,
    /// Requests answered, to pace the limiters' sweeps.
    requests: AtomicU64,
}

/// Requests between two sweeps of the limiters' tables.
const SWEEP_EVERY: u64 = 1024;

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least 1"))
}

fn internal_error() -> HttpAnswer {
    let (code, msg) = api_error::INTERNAL;
    HttpAnswer::error(StatusCode::SERVICE_UNAVAILABLE, code, msg)
}

fn too_many(limit: u32) -> HttpAnswer {
    HttpAnswer::error(
        StatusCode::TOO_MANY_REQUESTS,
        -1003,
        &format!(
            "Too many requests; current limit is {limit} requests per minute. Please use WebSocket Streams for live updates to avoid polling the API."
        ),
    )
}

fn refused(error: AuthError) -> HttpAnswer {
    HttpAnswer::error(StatusCode::UNAUTHORIZED, error.code(), &error.to_string())
}

fn unknown_key() -> HttpAnswer {
    let (code, msg) = UNKNOWN_LISTEN_KEY;
    HttpAnswer::error(StatusCode::BAD_REQUEST, code, msg)
}

/// The `listenKey` parameter, from the query or a form body.
fn listen_key_param(request: &HttpRequest) -> Option<String> {
    let from = |text: &[u8]| {
        form_urlencoded::parse(text)
            .find(|(name, _)| name == "listenKey")
            .map(|(_, value)| value.into_owned())
    };
    request
        .query
        .as_deref()
        .and_then(|q| from(q.as_bytes()))
        .or_else(|| from(&request.body))
        .filter(|key| !key.is_empty())
}

impl ListenKeyApi {
    /// The endpoint of `flavor` with the limits of `settings`.
    pub fn new(settings: &ListenKeySettings, flavor: Flavor) -> Self {
        ListenKeyApi {
            flavor,
            per_ip: RateLimiter::keyed(per_minute(settings.requests_per_ip_per_minute)),
            creates_per_key: RateLimiter::keyed(per_minute(settings.creates_per_key_per_minute)),
            ip_limit: settings.requests_per_ip_per_minute,
            create_limit: settings.creates_per_key_per_minute,
            requests: AtomicU64::new(0),
        }
    }

    /// The endpoint's path.
    pub fn path(&self) -> &'static str {
        self.flavor.path
    }

    /// Answers one request to [`path`](Self::path).
    pub async fn answer(&self, user_data: &UserData, request: &HttpRequest) -> HttpAnswer {
        if self.per_ip.check_key(&request.peer).is_err() {
            return too_many(self.ip_limit);
        }
        // The limiters forget idle addresses and keys now and then, not on every request (a
        // sweep walks the whole table).
        if self
            .requests
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            self.per_ip.retain_recent();
            self.creates_per_key.retain_recent();
        }
        let Some(api_key) = request
            .headers
            .get(self.flavor.api_key_header)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 256)
        else {
            return refused(AuthError::Format);
        };
        let accounts = user_data.accounts();
        let key = match accounts.keys.lookup(api_key).await {
            Ok(Some(key)) => key,
            Ok(None) => return refused(AuthError::Refused),
            Err(e) => {
                tracing::warn!(error = %e, "API key lookup failed");
                return internal_error();
            }
        };
        if let Err(e) = key.authorize(Permission::UserStream, request.peer) {
            return refused(e);
        }
        if self.flavor.signed {
            if let Err(answer) = check_signature(request, &key) {
                return answer;
            }
        }
        let settings = &accounts.listen_key_settings;
        let store = &accounts.listen_keys;
        let user = key.user_id();
        let result = match request.method {
            Method::POST => {
                if self
                    .creates_per_key
                    .check_key(&api_key.to_string())
                    .is_err()
                {
                    return too_many(self.create_limit);
                }
                let owner = Owner {
                    user_id: user.to_string(),
                    api_key: api_key.to_string(),
                    ip: settings.bind_ip.then_some(request.peer),
                };
                store
                    .open(&owner, &generate_token(), settings.validity)
                    .await
                    .map(|key| Some(json!({ "listenKey": key })))
            }
            Method::PUT | Method::DELETE => {
                let Some(listen_key) = listen_key_param(request) else {
                    let (code, msg) = api_error::missing_parameter("listenKey");
                    return HttpAnswer::error(StatusCode::BAD_REQUEST, code, &msg);
                };
                let done = if request.method == Method::PUT {
                    store.extend(&listen_key, user, settings.validity).await
                } else {
                    store.revoke(&listen_key, user).await
                };
                done.map(|done| done.then(|| json!({})))
            }
            _ => {
                return HttpAnswer::error(StatusCode::METHOD_NOT_ALLOWED, -1, "Method not allowed")
            }
        };
        match result {
            Ok(Some(body)) => HttpAnswer::ok(body),
            Ok(None) => unknown_key(),
            Err(e) => {
                tracing::warn!(error = %e, "listen key store unavailable");
                internal_error()
            }
        }
    }
}

/// The parameters of a request as sent: the query string's pairs, then the form body's.
fn sent_pairs(request: &HttpRequest) -> impl Iterator<Item = &str> {
    let query = request.query.as_deref().unwrap_or("");
    let body = std::str::from_utf8(&request.body).unwrap_or("");
    query
        .split('&')
        .chain(body.split('&'))
        .filter(|pair| !pair.is_empty())
}

/// Checks a signed request: `timestamp` within `recvWindow` of the node's clock, and
/// `signature` over the other parameters as sent.
fn check_signature(request: &HttpRequest, key: &ApiKey) -> Result<(), HttpAnswer> {
    let value = |name: &str| {
        sent_pairs(request)
            .flat_map(|pair| form_urlencoded::parse(pair.as_bytes()))
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty())
    };
    let missing = |name: &str| {
        let (code, msg) = api_error::missing_parameter(name);
        HttpAnswer::error(StatusCode::BAD_REQUEST, code, &msg)
    };
    let bad =
        |e: SignatureError| HttpAnswer::error(StatusCode::BAD_REQUEST, e.code(), &e.to_string());
    let signature = value("signature").ok_or_else(|| missing("signature"))?;
    let timestamp = value("timestamp")
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| missing("timestamp"))?;
    let recv_window = match value("recvWindow") {
        Some(w) => Some(w.parse::<u64>().map_err(|_| missing("recvWindow"))?),
        None => None,
    };
    check_timestamp(timestamp, recv_window, now_ms()).map_err(bad)?;
    let signed: Vec<&str> = sent_pairs(request)
        .filter(|pair| !pair.starts_with("signature="))
        .collect();
    key.verifier()
        .verify(&signed.join("&"), &signature)
        .map_err(bad)
}
