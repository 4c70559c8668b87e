//! User-data streams through listen keys (`docs/binance-protocol.md` §5.1): a listen key in
//! a connect URL (`/ws/<listenKey>`, `/stream?streams=<listenKey>`, next to market streams or
//! alone) subscribes the connection to its owner's private events, unwrapped on `/ws` and as
//! `{"stream":<listenKey>,"data":..}` on `/stream`.
//!
//! The node checks the listen keys its connections hold every `check_every`, in one round trip
//! to the store: a key revoked on any node closes its connections here with 4002, and an
//! expired key sends `{"e":"listenKeyExpired",..}` and closes with 4001. A key the store no
//! longer has although its last known expiry is still ahead (a Redis restarted without its data)
//! is written back with its owner and that expiry, and its connections stay.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http::StatusCode;
use parking_lot::Mutex;

use super::envelope::Format;
use crate::api_error;
use crate::auth::listen_keys::{KeyState, ListenKey, UNKNOWN_LISTEN_KEY};
use crate::auth::Accounts;
use crate::hub::{Delivery, UserSubscription, Wrap};
use crate::util::now_us;
use crate::ws::close;
use crate::ws::dialect::{Closing, Refusal};
use crate::ws::Hangup;

/// Keys checked per store round trip.
const CHECK_BATCH: usize = 1000;

/// One connection holding a listen key, and the format of its `listenKeyExpired` notice (none:
/// the connection is closed without one, as HashKey's private streams are).
struct Holder {
    hangup: Weak<Hangup>,
    format: Option<Format>,
}

/// The node's listen-key connections and the task that checks their keys.
pub struct UserData {
    accounts: Accounts,
    held: Mutex<HashMap<Arc<str>, Vec<Holder>>>,
    /// What the node last knew of each held key (owner, expiry), to write back a key the store
    /// lost.
    known: Mutex<HashMap<Arc<str>, ListenKey>>,
}

impl UserData {
    /// Starts checking held keys (on the current runtime) until the returned value is dropped.
    pub fn start(accounts: Accounts) -> Arc<UserData> {
        let user_data = Arc::new(UserData {
            accounts,
            held: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        });
        tokio::spawn(check_keys(Arc::downgrade(&user_data)));
        user_data
    }

    /// The accounts this dialect consults.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The live listen key `key`, usable from `peer`; otherwise Binance's `-1125` refusal.
    pub async fn open(&self, key: &str, peer: IpAddr) -> Result<ListenKey, Refusal> {
        let unknown = || {
            let (code, msg) = UNKNOWN_LISTEN_KEY;
            Refusal::new(StatusCode::BAD_REQUEST, code, msg)
        };
        let found = self.accounts.listen_keys.get(key).await.map_err(|e| {
            tracing::warn!(error = %e, "listen key store unavailable");
            let (code, msg) = api_error::INTERNAL;
            Refusal::new(StatusCode::SERVICE_UNAVAILABLE, code, msg)
        })?;
        let listen_key = found.ok_or_else(unknown)?;
        if listen_key.owner.ip.is_some_and(|bound| bound != peer) {
            tracing::info!(user = %listen_key.owner.user_id, %peer, "listen key used from an address it is not bound to");
            return Err(unknown());
        }
        self.known
            .lock()
            .insert(Arc::clone(&listen_key.key), listen_key.clone());
        Ok(listen_key)
    }

    /// The private subscription a connection in `format` takes for `key`.
    pub fn subscription(key: &ListenKey, format: Format) -> UserSubscription {
        UserSubscription {
            user: Arc::from(key.owner.user_id.as_str()),
            name: Arc::clone(&key.key),
            stream: Arc::from(super::USER_DATA_STREAM),
            wrap: Arc::new(ListenKeyWrap {
                key: Arc::clone(&key.key),
                format,
            }),
        }
    }

    /// Watches `key` for the connection `hangup` ends; its expiry is announced in `format`, if
    /// any.
    pub fn hold(&self, key: &Arc<str>, hangup: &Arc<Hangup>, format: Option<Format>) {
        self.held
            .lock()
            .entry(Arc::clone(key))
            .or_default()
            .push(Holder {
                hangup: Arc::downgrade(hangup),
                format,
            });
    }

    /// Stops watching `key` for the connection `hangup` ends (it unsubscribed the key).
    pub fn release(&self, key: &str, hangup: &Arc<Hangup>) {
        let mut held = self.held.lock();
        if let Some(holders) = held.get_mut(key) {
            holders.retain(|h| !std::ptr::eq(h.hangup.as_ptr(), Arc::as_ptr(hangup)));
            if holders.is_empty() {
                held.remove(key);
            }
        }
    }

    /// Checks every held key once; ends the connections of keys revoked or expired.
    async fn check(&self) {
        let keys: Vec<Arc<str>> = {
            let mut held = self.held.lock();
            held.retain(|_, holders| {
                holders.retain(|h| h.hangup.strong_count() > 0);
                !holders.is_empty()
            });
            self.known.lock().retain(|key, _| held.contains_key(key));
            held.keys().cloned().collect()
        };
        let mut restored = 0;
        for batch in keys.chunks(CHECK_BATCH) {
            let states = match self.accounts.listen_keys.states(batch).await {
                Ok(states) => states,
                Err(e) => {
                    // Connections stay while the store is away; they are checked again next time.
                    tracing::warn!(error = %e, "cannot check listen keys");
                    return;
                }
            };
            for (key, state) in batch.iter().zip(states) {
                match state {
                    KeyState::Active(expires_at_ms) => self.seen_active(key, expires_at_ms),
                    KeyState::Gone if self.restore(key).await => restored += 1,
                    _ => self.end(key, state),
                }
            }
        }
        if restored > 0 {
            tracing::warn!(restored, "the listen key store lost keys this node's connections hold; written back with their owners and expiries");
        }
    }

    fn seen_active(&self, key: &Arc<str>, expires_at_ms: u64) {
        if let Some(known) = self.known.lock().get_mut(key) {
            known.expires_at_ms = expires_at_ms;
        }
    }

    /// Writes `key` back if its last known expiry is still ahead: the store lost it rather than
    /// let it expire. True when it is alive again.
    async fn restore(&self, key: &Arc<str>) -> bool {
        let Some(known) = self.known.lock().get(key).cloned() else {
            return false;
        };
        if known.expires_at_ms <= crate::util::now_ms() {
            return false;
        }
        match self.accounts.listen_keys.restore(&known).await {
            Ok(written) => written,
            Err(e) => {
                tracing::warn!(error = %e, "cannot write back a lost listen key");
                // Checked again next time; the connections stay meanwhile.
                true
            }
        }
    }

    fn end(&self, key: &Arc<str>, state: KeyState) {
        let Some(holders) = self.held.lock().remove(key) else {
            return;
        };
        for holder in holders {
            let Some(hangup) = holder.hangup.upgrade() else {
                continue;
            };
            let closing = match state {
                KeyState::Revoked => Closing::new(close::LISTEN_KEY_REVOKED, "listenKey revoked"),
                _ => {
                    let closing = Closing::new(close::LISTEN_KEY_EXPIRED, "listenKey expired");
                    match holder.format {
                        Some(format) => closing.with_notice(expired_notice(key, format)),
                        None => closing,
                    }
                }
            };
            hangup.request(closing);
        }
    }
}

/// `{"e":"listenKeyExpired","E":..,"listenKey":..}` in the connection's format.
fn expired_notice(key: &str, format: Format) -> Bytes {
    let now = now_us();
    let payload = format!(
        "{{\"e\":\"listenKeyExpired\",\"E\":{},\"listenKey\":\"{key}\"}}",
        now / 1000
    );
    format.encode(key, payload.as_bytes(), now)
}

async fn check_keys(user_data: Weak<UserData>) {
    let every = match user_data.upgrade() {
        Some(u) => u.accounts.listen_key_settings.check_every,
        None => return,
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(user_data) = user_data.upgrade() else {
            return;
        };
        user_data.check().await;
    }
}

/// Frames a user's event for one listen-key subscription.
struct ListenKeyWrap {
    key: Arc<str>,
    format: Format,
}

impl Wrap for ListenKeyWrap {
    fn frame(&self, delivery: &Delivery) -> Bytes {
        self.format
            .encode(&self.key, &delivery.payload, delivery.event_time_us)
    }
}
