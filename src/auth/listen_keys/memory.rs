//! Listen keys of an embedded node, in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::Mutex;

use super::{KeyState, ListenKey, ListenKeyStore, Owner};
use crate::config::store::StoreError;
use crate::util::now_ms;

/// How long a revocation is remembered (so a node checking late still says "revoked").
const REMEMBER_REVOKED_MS: u64 = 60_000;

#[derive(Default)]
struct State {
    keys: HashMap<String, (Owner, u64)>,
    /// Scope → its active key.
    active: HashMap<String, String>,
    /// Revoked key → when the memory of it ends.
    revoked: HashMap<String, u64>,
}

impl State {
    /// The key's owner and expiry if it is alive at `now` (an expired key is forgotten).
    fn alive(&mut self, key: &str, now: u64) -> Option<&mut (Owner, u64)> {
        if self
            .keys
            .get(key)
            .is_some_and(|(_, expires)| *expires <= now)
        {
            let (owner, _) = self.keys.remove(key).expect("checked");
            if self.active.get(&owner.scope()).map(String::as_str) == Some(key) {
                self.active.remove(&owner.scope());
            }
        }
        self.keys.get_mut(key)
    }
}

/// Listen keys in this process.
#[derive(Default)]
pub struct MemoryListenKeys {
    state: Mutex<State>,
}

impl MemoryListenKeys {
    /// No keys yet.
    pub fn new() -> Self {
        MemoryListenKeys::default()
    }
}

fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

impl ListenKeyStore for MemoryListenKeys {
    fn open<'a>(
        &'a self,
        owner: &'a Owner,
        new_key: &'a str,
        validity: Duration,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        let now = now_ms();
        let mut state = self.state.lock();
        let scope = owner.scope();
        if let Some(key) = state.active.get(&scope).cloned() {
            if let Some((_, expires)) = state.alive(&key, now) {
                *expires = now + ms(validity);
                return futures_util::future::ready(Ok(key)).boxed();
            }
        }
        state
            .keys
            .insert(new_key.to_string(), (owner.clone(), now + ms(validity)));
        state.active.insert(scope, new_key.to_string());
        futures_util::future::ready(Ok(new_key.to_string())).boxed()
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        user_id: &'a str,
        validity: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = now_ms();
        let mut state = self.state.lock();
        let extended = match state.alive(key, now) {
            Some((owner, expires)) if owner.user_id == user_id => {
                *expires = now + ms(validity);
                true
            }
            _ => false,
        };
        futures_util::future::ready(Ok(extended)).boxed()
    }

    fn revoke<'a>(
        &'a self,
        key: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = now_ms();
        let mut state = self.state.lock();
        let owned = state
            .alive(key, now)
            .is_some_and(|(owner, _)| owner.user_id == user_id);
        if owned {
            let (owner, _) = state.keys.remove(key).expect("alive");
            if state.active.get(&owner.scope()).map(String::as_str) == Some(key) {
                state.active.remove(&owner.scope());
            }
            state.revoked.retain(|_, until| *until > now);
            state
                .revoked
                .insert(key.to_string(), now + REMEMBER_REVOKED_MS);
        }
        futures_util::future::ready(Ok(owned)).boxed()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ListenKey>, StoreError>> {
        let now = now_ms();
        let found = self
            .state
            .lock()
            .alive(key, now)
            .map(|(owner, expires)| ListenKey {
                key: Arc::from(key),
                owner: owner.clone(),
                expires_at_ms: *expires,
            });
        futures_util::future::ready(Ok(found)).boxed()
    }

    fn states<'a>(
        &'a self,
        keys: &'a [Arc<str>],
    ) -> BoxFuture<'a, Result<Vec<KeyState>, StoreError>> {
        let now = now_ms();
        let mut state = self.state.lock();
        let states = keys
            .iter()
            .map(|key| {
                if let Some((_, expires)) = state.alive(key, now) {
                    KeyState::Active(*expires)
                } else if state.revoked.get(&**key).is_some_and(|until| *until > now) {
                    KeyState::Revoked
                } else {
                    KeyState::Gone
                }
            })
            .collect();
        futures_util::future::ready(Ok(states)).boxed()
    }

    fn restore<'a>(&'a self, key: &'a ListenKey) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = now_ms();
        let alive = {
            let mut state = self.state.lock();
            let held = state.alive(&key.key, now).is_some();
            let revoked = state
                .revoked
                .get(&*key.key)
                .is_some_and(|until| *until > now);
            if !held && !revoked && key.expires_at_ms > now {
                let scope = key.owner.scope();
                state
                    .keys
                    .insert(key.key.to_string(), (key.owner.clone(), key.expires_at_ms));
                state
                    .active
                    .entry(scope)
                    .or_insert_with(|| key.key.to_string());
                true
            } else {
                held
            }
        };
        async move { Ok(alive) }.boxed()
    }
}
