//! Binance's legacy listen-key REST endpoints on the client listener
//! (`docs/binance-protocol.md` §5.1): `POST /api/v3/userDataStream` creates (or returns
//! and extends the caller's active key), `PUT ..?listenKey=` extends, `DELETE ..?listenKey=`
//! revokes. The API key comes in `X-MBX-APIKEY` and needs the `user-stream` permission; the
//! listen key may come in the query or a form body (python-binance sends it in the body).
//!
//! Requests are limited per client address, and creations per API key, answering Binance's 429
//! with `-1003` past the limit.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{Method, StatusCode};
use serde_json::json;

use super::user_data::UserData;
use crate::api_error;
use crate::auth::listen_keys::{ListenKeySettings, Owner, UNKNOWN_LISTEN_KEY};
use crate::auth::{generate_token, AuthError};
use crate::config::store::Permission;
use crate::ws::dialect::{HttpAnswer, HttpRequest};

/// The endpoint's path.
pub const PATH: &str = "/api/v3/userDataStream";

/// The endpoint and its limits.
pub struct ListenKeyApi {
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
    /// The endpoint with the limits of `settings`.
    pub fn new(settings: &ListenKeySettings) -> Self {
        ListenKeyApi {
            per_ip: RateLimiter::keyed(per_minute(settings.requests_per_ip_per_minute)),
            creates_per_key: RateLimiter::keyed(per_minute(settings.creates_per_key_per_minute)),
            ip_limit: settings.requests_per_ip_per_minute,
            create_limit: settings.creates_per_key_per_minute,
            requests: AtomicU64::new(0),
        }
    }

    /// Answers one request to [`PATH`].
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
            .get("x-mbx-apikey")
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
