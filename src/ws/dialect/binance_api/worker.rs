//! The requests of one WebSocket API connection, handled in order: authentication (a signed
//! request, or the session's `session.logon`), user-data subscriptions, the legacy listen-key
//! methods, and trade actions sent to the backend (concurrently: each answers when its backend
//! does).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::reply::{answer, error_body, SubscriptionWrap, Weight};
use super::request::Request;
use super::Core;
use crate::api_error;
use crate::auth::listen_keys::{Owner, UNKNOWN_LISTEN_KEY};
use crate::auth::signature::{self, SignatureError};
use crate::auth::{generate_token, ApiKey, AuthError};
use crate::config::store::{KeyKind, Permission};
use crate::hub::UserSubscription;
use crate::trade::TradeRequest;
use crate::util::now_ms;
use crate::ws::dialect::binance::USER_DATA_STREAM;
use crate::ws::dialect::Replier;
use crate::ws::UserFeeds;

/// How often a connection checks that the keys it acts with were not revoked.
const KEY_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Subscriptions a connection may hold at once, and make in its life (Binance's limits).
const MAX_ACTIVE_SUBSCRIPTIONS: usize = 1000;
const MAX_LIFETIME_SUBSCRIPTIONS: u32 = 65_535;

/// A refused request: status, code, message.
struct Refused(u16, i32, String);

impl Refused {
    fn new(status: u16, code: i32, msg: impl Into<String>) -> Self {
        Refused(status, code, msg.into())
    }

    fn missing(name: &str) -> Self {
        let (code, msg) = api_error::missing_parameter(name);
        Refused::new(400, code, msg)
    }

    fn auth(error: AuthError) -> Self {
        Refused::new(401, error.code(), error.to_string())
    }

    fn signature(error: SignatureError) -> Self {
        Refused::new(400, error.code(), error.to_string())
    }

    fn store() -> Self {
        let (code, msg) = api_error::INTERNAL;
        Refused::new(503, code, msg)
    }
}

/// What a handled request answers.
type Outcome = Result<Value, Refused>;

/// The key a `session.logon` authorized.
struct Session {
    key: ApiKey,
    since_ms: i64,
}

/// One user-data subscription of the connection.
struct Subscription {
    id: u32,
    user: Arc<str>,
    /// The API key it was made with.
    key: String,
    /// Made by `userDataStream.subscribe` (ends with `session.logout`).
    via_logon: bool,
}

/// The state of one connection's requests.
pub struct Worker {
    core: Arc<Core>,
    peer: IpAddr,
    connected_ms: i64,
    return_rate_limits: bool,
    replier: Replier,
    feeds: Arc<UserFeeds>,
    weight: Weight,
    session: Option<Session>,
    subscriptions: Vec<Subscription>,
    made: u32,
}

impl Worker {
    /// The worker of a connection from `peer`, answering through `replier`.
    pub fn new(
        core: Arc<Core>,
        peer: IpAddr,
        connected_ms: i64,
        return_rate_limits: bool,
        replier: Replier,
        feeds: Arc<UserFeeds>,
    ) -> Self {
        Worker {
            core,
            peer,
            connected_ms,
            return_rate_limits,
            replier,
            feeds,
            weight: Weight::default(),
            session: None,
            subscriptions: Vec::new(),
            made: 0,
        }
    }

    /// Handles requests until the connection's conversation drops its sender; meanwhile checks
    /// that the keys it acts with still work.
    pub async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Request>) {
        let mut checks = tokio::time::interval(KEY_CHECK_EVERY);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                request = inbox.recv() => match request {
                    Some(request) => self.handle(request).await,
                    None => return,
                },
                _ = checks.tick() => self.check_keys().await,
            }
        }
    }

    /// Ends what a revoked (disabled or deleted) key authorized: the session, with Binance's
    /// unsolicited 401, and the key's subscriptions, with `eventStreamTerminated`.
    async fn check_keys(&mut self) {
        let mut keys: Vec<String> = self.subscriptions.iter().map(|s| s.key.clone()).collect();
        keys.extend(self.session.as_ref().map(|s| s.key.record().key.clone()));
        keys.sort();
        keys.dedup();
        for key in keys {
            let revoked = match self.core.accounts.keys.lookup(&key).await {
                Ok(Some(found)) => found.record().disabled,
                Ok(None) => true,
                // The store is away: keep going, check again later.
                Err(_) => false,
            };
            if !revoked {
                continue;
            }
            if self
                .session
                .as_ref()
                .is_some_and(|s| s.key.record().key == key)
            {
                self.session = None;
                let refused = Refused::auth(AuthError::Refused);
                self.replier.send(answer(
                    "null",
                    refused.0,
                    ("error", &error_body(refused.1, &refused.2)),
                    None,
                ));
            }
            let ended: Vec<u32> = self
                .subscriptions
                .iter()
                .filter(|s| s.key == key)
                .map(|s| s.id)
                .collect();
            for id in ended {
                self.end_subscription(id);
            }
        }
    }

    fn rate_limits(&self) -> Option<String> {
        self.return_rate_limits
            .then(|| self.weight.rate_limits().to_string())
    }

    fn reply(&self, id: &str, outcome: Outcome) {
        let limits = self.rate_limits();
        let frame = match outcome {
            Ok(result) => answer(id, 200, ("result", &result.to_string()), limits.as_deref()),
            Err(Refused(status, code, msg)) => answer(
                id,
                status,
                ("error", &error_body(code, &msg)),
                limits.as_deref(),
            ),
        };
        self.replier.send(frame);
    }

    async fn handle(&mut self, request: Request) {
        let now = now_ms() as i64;
        if !self.weight.admit(now) {
            let body = json!({
                "code": -1003,
                "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                "data": {"serverTime": now, "retryAfter": now + self.weight.retry_after_ms(now)},
            });
            let limits = self.rate_limits();
            let frame = answer(
                &request.id,
                429,
                ("error", &body.to_string()),
                limits.as_deref(),
            );
            self.replier.send(frame);
            return;
        }
        let outcome = match request.method.as_str() {
            "ping" => Ok(json!({})),
            "time" => Ok(json!({ "serverTime": now })),
            "session.logon" => self.logon(&request).await,
            "session.status" => Ok(self.status()),
            "session.logout" => Ok(self.logout()),
            "session.subscriptions" => Ok(self.list()),
            "userDataStream.subscribe" => self.subscribe_with_session(&request),
            "userDataStream.subscribe.signature" => self.subscribe_signed(&request).await,
            "userDataStream.unsubscribe" => self.unsubscribe(&request),
            "userDataStream.start" | "userDataStream.ping" | "userDataStream.stop" => {
                self.listen_key(&request).await
            }
            method if self.core.trading.forwards(method) => {
                match self.authenticate(&request, Permission::Trade, false).await {
                    Ok(key) => return self.forward(request, key),
                    Err(refused) => Err(refused),
                }
            }
            _ => Err(Refused::new(400, -1020, "This operation is not supported.")),
        };
        self.reply(&request.id, outcome);
    }

    /// The key a request acts with: the session's, or the one it names and signs for.
    async fn authenticate(
        &self,
        request: &Request,
        permission: Permission,
        ed25519_only: bool,
    ) -> Result<ApiKey, Refused> {
        let timestamp = request
            .field("timestamp")
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| Refused::missing("timestamp"))?;
        let recv_window = match request.field("recvWindow") {
            None => None,
            Some(w) => Some(
                w.parse::<u64>()
                    .map_err(|_| Refused::missing("recvWindow"))?,
            ),
        };
        signature::check_timestamp(timestamp, recv_window, now_ms()).map_err(Refused::signature)?;
        let named = request.field("apiKey");
        if let Some(session) = &self.session {
            if named.is_none() || named == Some(session.key.record().key.as_str()) {
                session
                    .key
                    .authorize(permission, self.peer)
                    .map_err(Refused::auth)?;
                return Ok(session.key.clone());
            }
        }
        let named = named.ok_or_else(|| Refused::missing("apiKey"))?;
        let signed = request
            .field("signature")
            .ok_or_else(|| Refused::missing("signature"))?;
        let key = match self.core.accounts.keys.lookup(named).await {
            Ok(Some(key)) => key,
            Ok(None) => return Err(Refused::auth(AuthError::Refused)),
            Err(e) => {
                tracing::warn!(error = %e, "API key lookup failed");
                return Err(Refused::store());
            }
        };
        if ed25519_only && matches!(key.record().kind, KeyKind::Hmac) {
            return Err(Refused::new(
                400,
                -4056,
                "HMAC_SHA256 API key is not supported.",
            ));
        }
        key.authorize(permission, self.peer)
            .map_err(Refused::auth)?;
        let verifier = key.verifier();
        let checked = verifier.verify(&request.signed_payload(), signed);
        let checked = match (checked, request.encoded_payload()) {
            (Err(_), Some(encoded)) => verifier.verify(&encoded, signed),
            (checked, _) => checked,
        };
        checked.map_err(Refused::signature)?;
        Ok(key)
    }

    async fn logon(&mut self, request: &Request) -> Outcome {
        let key = self
            .authenticate(request, Permission::UserStream, true)
            .await?;
        self.session = Some(Session {
            key,
            since_ms: now_ms() as i64,
        });
        Ok(self.status())
    }

    fn status(&self) -> Value {
        json!({
            "apiKey": self.session.as_ref().map(|s| s.key.record().key.clone()),
            "authorizedSince": self.session.as_ref().map(|s| s.since_ms),
            "connectedSince": self.connected_ms,
            "returnRateLimits": self.return_rate_limits,
            "serverTime": now_ms(),
            "userDataStream": !self.subscriptions.is_empty(),
        })
    }

    fn logout(&mut self) -> Value {
        self.session = None;
        let ended: Vec<u32> = self
            .subscriptions
            .iter()
            .filter(|s| s.via_logon)
            .map(|s| s.id)
            .collect();
        for id in ended {
            self.end_subscription(id);
        }
        self.status()
    }

    fn list(&self) -> Value {
        Value::Array(
            self.subscriptions
                .iter()
                .map(|s| json!({ "subscriptionId": s.id }))
                .collect(),
        )
    }

    fn subscribe_with_session(&mut self, _request: &Request) -> Outcome {
        let Some(session) = &self.session else {
            return Err(Refused::new(
                401,
                -1002,
                "You are not authorized to execute this request.",
            ));
        };
        let key = session.key.clone();
        key.authorize(Permission::UserStream, self.peer)
            .map_err(Refused::auth)?;
        self.add_subscription(&key, true)
    }

    async fn subscribe_signed(&mut self, request: &Request) -> Outcome {
        let key = self
            .authenticate(request, Permission::UserStream, false)
            .await?;
        self.add_subscription(&key, false)
    }

    fn add_subscription(&mut self, key: &ApiKey, via_logon: bool) -> Outcome {
        let user: Arc<str> = Arc::from(key.user_id());
        if self.subscriptions.iter().any(|s| s.user == user) {
            return Err(Refused::new(
                400,
                -1020,
                "This account already has a user data stream subscription on this connection.",
            ));
        }
        if self.subscriptions.len() >= MAX_ACTIVE_SUBSCRIPTIONS
            || self.made >= MAX_LIFETIME_SUBSCRIPTIONS
        {
            return Err(Refused::new(
                400,
                -1020,
                "Too many user data stream subscriptions.",
            ));
        }
        let id = self.made;
        let added = self.feeds.add(UserSubscription {
            user: Arc::clone(&user),
            name: Arc::from(id.to_string()),
            stream: Arc::from(USER_DATA_STREAM),
            wrap: Arc::new(SubscriptionWrap(id)),
        });
        if !added {
            return Err(Refused::store());
        }
        self.made += 1;
        self.subscriptions.push(Subscription {
            id,
            user,
            key: key.record().key.clone(),
            via_logon,
        });
        Ok(json!({ "subscriptionId": id }))
    }

    /// Ends subscription `id` and tells the client with `eventStreamTerminated`.
    fn end_subscription(&mut self, id: u32) {
        self.subscriptions.retain(|s| s.id != id);
        if self.feeds.remove(&id.to_string()).is_some() {
            self.replier.send(SubscriptionWrap(id).terminated());
        }
    }

    fn unsubscribe(&mut self, request: &Request) -> Outcome {
        let ids: Vec<u32> = match request.field("subscriptionId") {
            None => self.subscriptions.iter().map(|s| s.id).collect(),
            Some(text) => {
                let id = text
                    .parse::<u32>()
                    .map_err(|_| Refused::missing("subscriptionId"))?;
                if !self.subscriptions.iter().any(|s| s.id == id) {
                    return Err(Refused::new(400, -1020, "No such subscription."));
                }
                vec![id]
            }
        };
        for id in ids {
            self.end_subscription(id);
        }
        Ok(json!({}))
    }

    /// `userDataStream.start|ping|stop`: the listen keys of the REST flow, keyed by `apiKey`
    /// alone (Binance's USER_STREAM security).
    async fn listen_key(&self, request: &Request) -> Outcome {
        let named = request
            .field("apiKey")
            .or(self.session.as_ref().map(|s| s.key.record().key.as_str()))
            .ok_or_else(|| Refused::missing("apiKey"))?;
        let key = match self.core.accounts.keys.lookup(named).await {
            Ok(Some(key)) => key,
            Ok(None) => return Err(Refused::auth(AuthError::Refused)),
            Err(_) => return Err(Refused::store()),
        };
        key.authorize(Permission::UserStream, self.peer)
            .map_err(Refused::auth)?;
        let accounts = &self.core.accounts;
        let settings = &accounts.listen_key_settings;
        let unknown = || {
            let (code, msg) = UNKNOWN_LISTEN_KEY;
            Refused::new(400, code, msg)
        };
        match request.method.as_str() {
            "userDataStream.start" => {
                let owner = Owner {
                    user_id: key.user_id().to_string(),
                    api_key: named.to_string(),
                    ip: settings.bind_ip.then_some(self.peer),
                };
                let listen_key = accounts
                    .listen_keys
                    .open(&owner, &generate_token(), settings.validity)
                    .await
                    .map_err(|_| Refused::store())?;
                Ok(json!({ "listenKey": listen_key }))
            }
            method => {
                let listen_key = request
                    .field("listenKey")
                    .ok_or_else(|| Refused::missing("listenKey"))?;
                let store = &accounts.listen_keys;
                let done = if method == "userDataStream.ping" {
                    store
                        .extend(listen_key, key.user_id(), settings.validity)
                        .await
                } else {
                    store.revoke(listen_key, key.user_id()).await
                };
                match done {
                    Ok(true) => Ok(json!({})),
                    Ok(false) => Err(unknown()),
                    Err(_) => Err(Refused::store()),
                }
            }
        }
    }

    /// Sends a trade action to the backend; its answer goes out when the backend replies.
    fn forward(&self, request: Request, key: ApiKey) {
        let trading = self.core.trading.clone();
        let replier = self.replier.clone();
        let limits = self.rate_limits();
        tokio::spawn(async move {
            let trade = TradeRequest {
                method: &request.method,
                user_id: key.user_id(),
                api_key: &key.record().key,
                params: &request.params,
            };
            let reply = trading.call(&trade).await;
            let body = match (&reply.result, &reply.error) {
                (Some(result), _) if reply.status == 200 => ("result", result.get().to_string()),
                (_, Some(error)) => ("error", error_body(error.code, &error.msg)),
                _ => (
                    "error",
                    error_body(api_error::INTERNAL.0, api_error::INTERNAL.1),
                ),
            };
            replier.send(answer(
                &request.id,
                reply.status,
                (body.0, &body.1),
                limits.as_deref(),
            ));
        });
    }
}
