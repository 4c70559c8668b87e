//! Listen keys: the bearer tokens of Binance's legacy user-data flow. A key is created for a
//! user through `POST /api/v3/userDataStream` (with an API key), opens that user's private
//! events at `/ws/<listenKey>`, lives for a validity period that each keepalive restarts, and
//! dies when it expires or is revoked.
//!
//! Keys are 64 URL-safe characters (384 random bits). While a user's key is active, creating
//! again returns the same key, extended, as Binance does; with address binding on (the default)
//! "the same" means for the same address, and the key works only from that address.
//!
//! The state lives in the config store's backend: in memory for an embedded node, in Redis for a
//! cluster, so a key created through one node works on every node. Nodes learn of revocations
//! and expiries by checking the keys their connections hold ([`ListenKeyStore::states`]), in
//! one round trip per check.

mod memory;
mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use self::redis::RedisListenKeys;
use crate::config::store::StoreError;
pub use memory::MemoryListenKeys;

/// Binance's error for an unknown, expired or foreign listen key.
pub const UNKNOWN_LISTEN_KEY: (i32, &str) = (-1125, "This listenKey does not exist.");

/// How listen keys behave on this node.
#[derive(Debug, Clone)]
pub struct ListenKeySettings {
    /// How long a key lives after its creation or last keepalive (Binance: 60 minutes).
    pub validity: Duration,
    /// Bind each key to the address that created it.
    pub bind_ip: bool,
    /// How often a node checks the keys its connections hold (revocation and expiry are seen
    /// within this interval, on every node).
    pub check_every: Duration,
    /// `userDataStream` requests allowed per client address per minute.
    pub requests_per_ip_per_minute: u32,
    /// Key creations allowed per API key per minute.
    pub creates_per_key_per_minute: u32,
}

impl Default for ListenKeySettings {
    fn default() -> Self {
        ListenKeySettings {
            validity: Duration::from_secs(60 * 60),
            bind_ip: true,
            check_every: Duration::from_millis(500),
            requests_per_ip_per_minute: 60,
            creates_per_key_per_minute: 10,
        }
    }
}

/// Whom a key belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The user whose events the key opens.
    pub user_id: String,
    /// The API key that created it.
    pub api_key: String,
    /// The address it is bound to; `None` when binding is off.
    pub ip: Option<IpAddr>,
}

impl Owner {
    /// What "the user's active key" is looked up by: the user, and the address when bound.
    pub fn scope(&self) -> String {
        match self.ip {
            Some(ip) => format!("{}|{ip}", self.user_id),
            None => format!("{}|*", self.user_id),
        }
    }
}

/// A live key as a connection needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenKey {
    /// The key.
    pub key: Arc<str>,
    /// Its owner.
    pub owner: Owner,
    /// When it expires unless kept alive, ms since the epoch.
    pub expires_at_ms: u64,
}

/// What a node finds when it checks a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Alive until then (ms since the epoch).
    Active(u64),
    /// Revoked (recently: the store remembers revocations for a minute).
    Revoked,
    /// Expired, or never existed.
    Gone,
}

/// Where listen keys live.
pub trait ListenKeyStore: Send + Sync + 'static {
    /// The active key of `owner`'s scope, extended by `validity`, or `new_key` created for it.
    fn open<'a>(
        &'a self,
        owner: &'a Owner,
        new_key: &'a str,
        validity: Duration,
    ) -> BoxFuture<'a, Result<String, StoreError>>;

    /// Extends `key` by `validity` if it is alive and belongs to `user_id`; false otherwise.
    fn extend<'a>(
        &'a self,
        key: &'a str,
        user_id: &'a str,
        validity: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Revokes `key` if it is alive and belongs to `user_id`; false otherwise.
    fn revoke<'a>(
        &'a self,
        key: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// The key, if alive.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ListenKey>, StoreError>>;

    /// The state of each of `keys`, in order.
    fn states<'a>(
        &'a self,
        keys: &'a [Arc<str>],
    ) -> BoxFuture<'a, Result<Vec<KeyState>, StoreError>>;

    /// Writes back `key`, which the store lost (a Redis restarted without its data) while a
    /// connection held it, with its owner and expiry, and as its scope's active key unless the
    /// scope has another; nothing when the store holds the key (another node wrote it back),
    /// remembers it revoked, or it has expired. True when the key is alive afterwards.
    fn restore<'a>(&'a self, key: &'a ListenKey) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// True for text shaped like a listen key: 64 URL-safe characters.
pub fn looks_like_listen_key(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What every listen key store must do; the store tests run it against each of them.
#[doc(hidden)]
pub mod conformance {

    use super::*;
    use crate::auth::generate_token;

    fn owner(user: &str, ip: Option<&str>) -> Owner {
        Owner {
            user_id: user.into(),
            api_key: format!("{user}-key"),
            ip: ip.map(|ip| ip.parse().unwrap()),
        }
    }

    /// The lifecycle: create, same key again while active, extend, revoke, expiry.
    pub async fn lifecycle(store: &dyn ListenKeyStore) {
        let hour = Duration::from_secs(3600);
        let alice = owner("alice", Some("127.0.0.1"));
        let first = store.open(&alice, &generate_token(), hour).await.unwrap();
        let again = store.open(&alice, &generate_token(), hour).await.unwrap();
        assert_eq!(first, again, "an active key is returned again");
        let elsewhere = owner("alice", Some("127.0.0.2"));
        let other = store
            .open(&elsewhere, &generate_token(), hour)
            .await
            .unwrap();
        assert_ne!(first, other, "a bound key is per address");
        let got = store.get(&first).await.unwrap().expect("alive");
        assert_eq!(got.owner, alice);
        let now = crate::util::now_ms();
        assert!(got.expires_at_ms > now + 3500 * 1000 && got.expires_at_ms <= now + 3600 * 1000);

        assert!(
            !store.extend(&first, "bob", hour).await.unwrap(),
            "not bob's"
        );
        assert!(store.extend(&first, "alice", hour).await.unwrap());
        assert!(!store.extend("nope", "alice", hour).await.unwrap());
        assert!(!store.revoke(&first, "bob",).await.unwrap());

        let keys: Vec<Arc<str>> = vec![Arc::from(first.as_str()), Arc::from("missing")];
        assert!(matches!(
            store.states(&keys).await.unwrap()[..],
            [KeyState::Active(_), KeyState::Gone]
        ));
        assert!(store.revoke(&first, "alice").await.unwrap());
        assert_eq!(store.get(&first).await.unwrap(), None);
        assert_eq!(
            store.states(&keys).await.unwrap(),
            [KeyState::Revoked, KeyState::Gone]
        );
        assert!(!store.extend(&first, "alice", hour).await.unwrap());
        let fresh = store.open(&alice, &generate_token(), hour).await.unwrap();
        assert_ne!(fresh, first, "a revoked key is never handed out again");

        let short = owner("carol", None);
        let brief = store
            .open(&short, &generate_token(), Duration::from_millis(300))
            .await
            .unwrap();
        assert!(store.get(&brief).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(store.get(&brief).await.unwrap(), None, "expired");
        let brief: Vec<Arc<str>> = vec![Arc::from(brief.as_str())];
        assert_eq!(store.states(&brief).await.unwrap(), [KeyState::Gone]);

        // Written back after a loss: a key still due to live comes back as it was; a revoked or
        // expired one does not, and one the store holds is left alone.
        let dave = owner("dave", Some("127.0.0.3"));
        let expires_at_ms = crate::util::now_ms() + 600_000;
        let lost = ListenKey {
            key: Arc::from(generate_token().as_str()),
            owner: dave.clone(),
            expires_at_ms,
        };
        assert!(store.restore(&lost).await.unwrap());
        let back = store.get(&lost.key).await.unwrap().expect("written back");
        assert_eq!(back.owner, dave);
        assert!(back.expires_at_ms.abs_diff(expires_at_ms) < 5_000);
        let again = store.open(&dave, &generate_token(), hour).await.unwrap();
        assert_eq!(*again, *lost.key, "the scope's active key again");
        assert!(store.restore(&lost).await.unwrap(), "alive already");
        let revoked = ListenKey {
            key: Arc::from(first.as_str()),
            owner: alice.clone(),
            expires_at_ms,
        };
        assert!(!store.restore(&revoked).await.unwrap(), "revoked");
        let expired = ListenKey {
            expires_at_ms: crate::util::now_ms() - 1,
            key: Arc::from(generate_token().as_str()),
            owner: dave,
        };
        assert!(!store.restore(&expired).await.unwrap(), "expired");
        assert_eq!(store.get(&expired.key).await.unwrap(), None);
    }
}
