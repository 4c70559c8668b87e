//! API keys kept by the exchange's own auth service, asked over NATS request/reply.
//!
//! The gateway sends `{"api_key":"…"}` on the configured subject; the service answers
//! `{"key":{"user_id":"alice","permissions":["user-stream","trade"],"secret":"…"}}` (an HMAC
//! key; an Ed25519 key has `"ed25519_public_key"` instead of `"secret"`; optional `"ip_allow"`
//! and `"disabled"`), or `{"key":null}` for an unknown key. Answers are cached, a bounded number of keys for a bounded time, so a revoked
//! key stops working within the cache's time to live. A service that does not answer within the
//! timeout, or answers nonsense, fails closed: the request is refused as the store being
//! unavailable, never let through.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use quick_cache::sync::Cache;
use serde::Deserialize;
use serde_json::json;

use super::{ApiKey, KeyLookup};
use crate::config::store::{ApiKeyRecord, KeyKind, Permission, StoreError};

/// How delegated lookups behave.
#[derive(Debug, Clone)]
pub struct DelegatedSettings {
    /// The subject requests go to.
    pub subject: String,
    /// How long the service may take.
    pub timeout: Duration,
    /// Keys kept in the cache at most.
    pub cache_keys: usize,
    /// How long an answer is trusted.
    pub cache_ttl: Duration,
}

/// A key as the auth service describes it.
#[derive(Deserialize)]
struct DescribedKey {
    user_id: String,
    permissions: Vec<Permission>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    ed25519_public_key: Option<String>,
    #[serde(default)]
    ip_allow: Vec<String>,
    #[serde(default)]
    disabled: bool,
}

#[derive(Deserialize)]
struct Answer {
    key: Option<DescribedKey>,
}

/// API keys looked up through an external service.
pub struct DelegatedKeys {
    client: async_nats::Client,
    settings: DelegatedSettings,
    /// Key → its answer (`None`: unknown) and when it was fetched.
    cache: Cache<String, (Option<Arc<ApiKey>>, Instant)>,
}

fn unavailable(why: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("auth service: {why}"))
}

impl DelegatedKeys {
    /// Lookups through `client` with `settings`.
    pub fn new(client: async_nats::Client, settings: DelegatedSettings) -> Self {
        DelegatedKeys {
            client,
            cache: Cache::new(settings.cache_keys.max(1)),
            settings,
        }
    }

    async fn ask(&self, key: &str) -> Result<Option<Arc<ApiKey>>, StoreError> {
        let body = json!({ "api_key": key }).to_string();
        let request = self
            .client
            .request(self.settings.subject.clone(), body.into());
        let message = tokio::time::timeout(self.settings.timeout, request)
            .await
            .map_err(|_| unavailable("no answer in time"))?
            .map_err(unavailable)?;
        let answer: Answer = serde_json::from_slice(&message.payload).map_err(unavailable)?;
        let Some(described) = answer.key else {
            return Ok(None);
        };
        let record = ApiKeyRecord {
            key: key.to_string(),
            user_id: described.user_id,
            permissions: described.permissions,
            kind: match described.ed25519_public_key {
                Some(public_key) => KeyKind::Ed25519 { public_key },
                None => KeyKind::Hmac,
            },
            ip_allow: described.ip_allow,
            disabled: described.disabled,
            created_at_ms: 0,
            created_by: "auth service".into(),
            revision: 1,
        };
        ApiKey::new(record, described.secret.as_deref())
            .map(|key| Some(Arc::new(key)))
            .map_err(unavailable)
    }
}

impl KeyLookup for DelegatedKeys {
    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ApiKey>, StoreError>> {
        async move {
            if let Some((cached, fetched)) = self.cache.get(key) {
                if fetched.elapsed() < self.settings.cache_ttl {
                    return Ok(cached.map(|k| (*k).clone()));
                }
            }
            let answer = self.ask(key).await?;
            self.cache
                .insert(key.to_string(), (answer.clone(), Instant::now()));
            Ok(answer.map(|k| (*k).clone()))
        }
        .boxed()
    }
}
