//! What the client dialects consult about accounts: API keys and listen keys.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::listen_keys::{ListenKeySettings, ListenKeyStore, MemoryListenKeys};
use super::ApiKey;
use crate::config::store::{ConfigStore, StoreError};

/// Finds the API key a request names.
pub trait KeyLookup: Send + Sync + 'static {
    /// The key, ready to authorize and verify; `None` when no such key exists (a disabled key
    /// is returned: [`ApiKey::authorize`] refuses it).
    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ApiKey>, StoreError>>;
}

/// API keys read from the config store, at every use (a revoked key stops working at once).
pub struct StoreKeys(pub Arc<dyn ConfigStore>);

impl KeyLookup for StoreKeys {
    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ApiKey>, StoreError>> {
        async move {
            let Some(record) = self.0.api_key(key).await? else {
                return Ok(None);
            };
            let secret = self.0.api_key_secret(key).await?;
            match ApiKey::new(record, secret.as_deref()) {
                Ok(key) => Ok(Some(key)),
                Err(why) => {
                    tracing::warn!(%why, "stored API key is unusable; refusing it");
                    Ok(None)
                }
            }
        }
        .boxed()
    }
}

/// The account services a node's dialects share.
#[derive(Clone)]
pub struct Accounts {
    /// API keys.
    pub keys: Arc<dyn KeyLookup>,
    /// Listen keys.
    pub listen_keys: Arc<dyn ListenKeyStore>,
    /// How listen keys behave.
    pub listen_key_settings: ListenKeySettings,
}

impl Accounts {
    /// Accounts over `store`'s API keys and listen keys kept in memory (an embedded node, or a
    /// test).
    pub fn in_memory(store: Arc<dyn ConfigStore>) -> Accounts {
        Accounts {
            keys: Arc::new(StoreKeys(store)),
            listen_keys: Arc::new(MemoryListenKeys::new()),
            listen_key_settings: ListenKeySettings::default(),
        }
    }
}
