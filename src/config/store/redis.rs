//! The cluster's config store: Redis, shared by every node.
//!
//! # Key layout
//!
//! Every key starts with the store's prefix `P` (the node uses `wsgate:`):
//!
//! | Key                   | Type   | Holds                                                        |
//! |-----------------------|--------|--------------------------------------------------------------|
//! | `Pconfig:version`     | string | the current config version; absent while the store is empty  |
//! | `Pconfig:versions`    | hash   | config version → that version's [`GatewayConfig`] JSON, for every version ever stored |
//! | `Paudit`              | list   | [`AuditEntry`] JSON, newest first (LPUSH), the newest [`MAX_AUDIT_ENTRIES`] |
//! | `Paudit:seq`          | string | the last audit sequence number (INCR)                        |
//! | `Pmodule:<sha256>`    | string | a mapper module's bytes, by lowercase hex SHA-256 (SET NX)   |
//! | `Pmappers`            | hash   | mapper name → [`MapperMeta`] JSON; its fields are the set of names |
//! | `Prevision`           | string | the store revision, INCR'd by every accepted change of config or mappers |
//! | `Papi_keys`           | hash   | API key → [`ApiKeyRecord`] JSON (no secret)                  |
//! | `Papi_key_secrets`    | hash   | API key → its HMAC secret (HSETNX when the key is created)   |
//! | `Prestore:lock`       | string | the node writing back a store that lost its state (SET NX PX) |
//!
//! Channel `Pconfig_update` carries the new revision after every accepted change.
//!
//! # Atomicity
//!
//! Every write that changes more than one key is one Lua script (EVALSHA, loaded again after a
//! Redis restart): it compares the version the writer says it replaces with the stored one, and
//! only if they match stores the new content, appends the audit entry (its `seq` from
//! `Paudit:seq`), bumps `Prevision` and publishes it. The audit entry's JSON is assembled by the
//! script from fragments serialized here, so stored content is never re-encoded by Lua.
//!
//! # Watching
//!
//! A background task subscribes to `Pconfig_update` and, since messages published while it is
//! disconnected are lost, also reads `Prevision` and `Pconfig:version` every second.
//! The revision read is what [`ConfigStore::watch`] receivers see (whatever is stored: lower
//! than before when the store lost changes); whether Redis answered and holds a config is what
//! [`ConfigStore::health`] receivers see. The task reconnects with capped exponential backoff,
//! keeps the last revision while Redis is away or empty, and stops when the store is dropped.
//! The store's own writes are also shown to local receivers at once, without waiting for the
//! round trip. Writing a lost state back is in `redis_restore`.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, RedisError, Script};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::redis_watch::{watch_revisions, Watched};
use super::{redis_keys, redis_restore};
use super::{
    ApiKeyRecord, AuditEntry, ConfigStore, MapperMeta, StoreError, StoreHealth, StoreImage,
    Versioned, MAX_AUDIT_ENTRIES,
};
use crate::config::GatewayConfig;
use crate::util::now_ms;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Seeds version 1 unless a config exists.
/// KEYS: version, versions, audit, audit seq, revision. ARGV: config, audit head, channel.
static SEED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&audited(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], '1', ARGV[1])
redis.call('SET', KEYS[1], '1')
local seq = redis.call('INCR', KEYS[4])
redis.call('LPUSH', KEYS[3], '{"seq":' .. seq .. ARGV[2] .. '0,"after_version":1,"before":null,"after":' .. ARGV[1] .. '}')
redis.call('LTRIM', KEYS[3], 0, AUDIT_LAST)
local rev = redis.call('INCR', KEYS[5])
redis.call('PUBLISH', ARGV[3], rev)
return rev
"#,
    ))
});

/// Stores a config version if the current one is the one it replaces.
/// KEYS: version, versions, audit, audit seq, revision.
/// ARGV: replaces, config, audit head, channel.
/// Returns `{1, version, revision}`, or `{0, actual}` when stale.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&audited(
        r#"
local actual = tonumber(redis.call('GET', KEYS[1]) or '0')
if actual == nil then return redis.error_reply('stored config version is not a number') end
if actual ~= tonumber(ARGV[1]) then return {0, actual} end
local before = 'null'
if actual > 0 then before = redis.call('HGET', KEYS[2], tostring(actual)) or 'null' end
local version = actual + 1
redis.call('HSET', KEYS[2], tostring(version), ARGV[2])
redis.call('SET', KEYS[1], tostring(version))
local seq = redis.call('INCR', KEYS[4])
redis.call('LPUSH', KEYS[3], '{"seq":' .. seq .. ARGV[3] .. tostring(actual) .. ',"after_version":' .. tostring(version) .. ',"before":' .. before .. ',"after":' .. ARGV[2] .. '}')
redis.call('LTRIM', KEYS[3], 0, AUDIT_LAST)
local rev = redis.call('INCR', KEYS[5])
redis.call('PUBLISH', ARGV[4], rev)
return {1, version, rev}
"#,
    ))
});

/// Stores a mapper's metadata if its stored revision is the one it replaces.
/// KEYS: mappers, audit, audit seq, revision.
/// ARGV: name, replaces, metadata, audit head, promoted after, channel.
/// Returns `{1, record revision, store revision}`, or `{0, actual}` when stale.
static UPDATE_MAPPER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&audited(
        r#"
local stored = redis.call('HGET', KEYS[1], ARGV[1])
local actual, promoted, before = 0, 0, 'null'
if stored then
  local ok, meta = pcall(cjson.decode, stored)
  if not ok or type(meta) ~= 'table' or type(meta.revision) ~= 'number'
      or type(meta.promoted) ~= 'number' then
    return redis.error_reply('stored metadata of mapper ' .. ARGV[1] .. ' is not valid')
  end
  actual, promoted, before = meta.revision, meta.promoted, stored
end
if actual ~= tonumber(ARGV[2]) then return {0, actual} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local seq = redis.call('INCR', KEYS[3])
redis.call('LPUSH', KEYS[2], '{"seq":' .. seq .. ARGV[4] .. tostring(promoted) .. ',"after_version":' .. ARGV[5] .. ',"before":' .. before .. ',"after":' .. ARGV[3] .. '}')
redis.call('LTRIM', KEYS[2], 0, AUDIT_LAST)
local rev = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[6], rev)
return {1, actual + 1, rev}
"#,
    ))
});

/// The store's key names.
pub(super) struct Keys {
    pub(super) version: String,
    pub(super) versions: String,
    pub(super) audit: String,
    pub(super) audit_seq: String,
    pub(super) mappers: String,
    pub(super) revision: String,
    module_prefix: String,
    pub(super) channel: String,
    pub(super) api_keys: String,
    pub(super) api_key_secrets: String,
    pub(super) restore_lock: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Keys {
            version: format!("{prefix}config:version"),
            versions: format!("{prefix}config:versions"),
            audit: format!("{prefix}audit"),
            audit_seq: format!("{prefix}audit:seq"),
            mappers: format!("{prefix}mappers"),
            revision: format!("{prefix}revision"),
            module_prefix: format!("{prefix}module:"),
            channel: format!("{prefix}config_update"),
            api_keys: format!("{prefix}api_keys"),
            api_key_secrets: format!("{prefix}api_key_secrets"),
            restore_lock: format!("{prefix}restore:lock"),
        }
    }

    fn module(&self, hash: &str) -> String {
        format!("{}{hash}", self.module_prefix)
    }
}

/// A config store in Redis, shared by the nodes of a cluster. See the module docs for the keys.
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Arc<Keys>,
    announce: Arc<watch::Sender<u64>>,
    health: Arc<watch::Sender<StoreHealth>>,
    /// Stops the watcher task when the store is dropped.
    _watcher: DropGuard,
}

impl RedisStore {
    /// Connects to Redis at `url` (`redis://host:port/db`, `redis+unix:///path/redis.sock`, ...)
    /// and starts watching for changes. Every key starts with `prefix` (the node uses `wsgate:`).
    /// An empty store must be seeded with [`seed_if_empty`](Self::seed_if_empty) before use.
    pub async fn connect(url: &str, prefix: &str) -> Result<Arc<RedisStore>, StoreError> {
        let client = Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unavailable)?;
        let keys = Arc::new(Keys::new(prefix));
        let revision: Option<u64> = query(&conn, redis::cmd("GET").arg(&keys.revision)).await?;
        let announce = Arc::new(watch::channel(revision.unwrap_or(0)).0);
        let health = Arc::new(watch::channel(StoreHealth::Serving).0);
        let watched = Watched {
            conn: conn.clone(),
            keys: keys.clone(),
            announce: announce.clone(),
            health: health.clone(),
        };
        watched.refresh().await;
        let stop = CancellationToken::new();
        tokio::spawn(watch_revisions(client, watched, stop.clone()));
        Ok(Arc::new(RedisStore {
            conn,
            keys,
            announce,
            health,
            _watcher: stop.drop_guard(),
        }))
    }

    /// Stores `config` as version 1 (audited as `config.seed` by `who`) if the store holds no
    /// config; atomic, so of several nodes starting at once exactly one seeds. Returns whether
    /// this call seeded.
    pub async fn seed_if_empty(
        &self,
        config: GatewayConfig,
        who: &str,
    ) -> Result<bool, StoreError> {
        let config = to_json(&config)?;
        let keys = &self.keys;
        let revision: u64 = invoke(
            &self.conn,
            SEED.key(&keys.version)
                .key(&keys.versions)
                .key(&keys.audit)
                .key(&keys.audit_seq)
                .key(&keys.revision)
                .arg(config)
                .arg(audit_head(who, "config.seed", "config"))
                .arg(&keys.channel),
        )
        .await?;
        if revision == 0 {
            return Ok(false);
        }
        self.announce(revision);
        self.health.send_replace(StoreHealth::Serving);
        Ok(true)
    }

    /// Lets local receivers see a revision this store wrote without waiting for the watcher.
    fn announce(&self, revision: u64) {
        self.announce.send_if_modified(|seen| {
            let newer = revision > *seen;
            if newer {
                *seen = revision;
            }
            newer
        });
    }

    async fn stored_config(&self, version: u64) -> Result<Option<Versioned>, StoreError> {
        if version == 0 {
            return Ok(None);
        }
        let cmd = redis::cmd("HGET")
            .arg(&self.keys.versions)
            .arg(version)
            .clone();
        let json: Option<String> = query(&self.conn, &cmd).await?;
        json.map(|json| {
            Ok(Versioned {
                version,
                config: from_json(&json, "config version")?,
            })
        })
        .transpose()
    }

    /// Interprets a compare-and-set script's answer: `{1, new, revision}` or `{0, actual}`.
    fn settle(&self, replaces: u64, answer: Vec<u64>) -> Result<u64, StoreError> {
        match answer[..] {
            [1, new, revision] => {
                self.announce(revision);
                Ok(new)
            }
            [0, actual] => Err(StoreError::Stale {
                expected: replaces,
                actual,
            }),
            _ => Err(StoreError::Unavailable(format!(
                "unexpected answer from Redis: {answer:?}"
            ))),
        }
    }
}

impl ConfigStore for RedisStore {
    fn current(&self) -> BoxFuture<'_, Result<Versioned, StoreError>> {
        async move {
            let cmd = redis::cmd("GET").arg(&self.keys.version).clone();
            let version: Option<u64> = query(&self.conn, &cmd).await?;
            let version = version.ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "no config under `{}`: the store was not seeded",
                    self.keys.version
                ))
            })?;
            self.stored_config(version).await?.ok_or_else(|| {
                StoreError::Unavailable(format!("config version {version} is missing"))
            })
        }
        .boxed()
    }

    fn config_version(&self, version: u64) -> BoxFuture<'_, Result<Option<Versioned>, StoreError>> {
        self.stored_config(version).boxed()
    }

    fn apply<'a>(
        &'a self,
        replaces: u64,
        config: GatewayConfig,
        who: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        async move {
            let keys = &self.keys;
            let answer = invoke(
                &self.conn,
                APPLY
                    .key(&keys.version)
                    .key(&keys.versions)
                    .key(&keys.audit)
                    .key(&keys.audit_seq)
                    .key(&keys.revision)
                    .arg(replaces)
                    .arg(to_json(&config)?)
                    .arg(audit_head(who, action, "config"))
                    .arg(&keys.channel),
            )
            .await?;
            self.settle(replaces, answer)
        }
        .boxed()
    }

    fn audit(&self, limit: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>> {
        async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let last = isize::try_from(limit - 1).unwrap_or(isize::MAX);
            let cmd = redis::cmd("LRANGE")
                .arg(&self.keys.audit)
                .arg(0)
                .arg(last)
                .clone();
            let entries: Vec<String> = query(&self.conn, &cmd).await?;
            entries
                .iter()
                .map(|json| from_json(json, "audit entry"))
                .collect()
        }
        .boxed()
    }

    fn put_module<'a>(
        &'a self,
        hash: &'a str,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let cmd = redis::cmd("SET")
                .arg(self.keys.module(hash))
                .arg(bytes.as_ref())
                .arg("NX")
                .clone();
            query::<()>(&self.conn, &cmd).await
        }
        .boxed()
    }

    fn module<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        async move {
            let cmd = redis::cmd("GET").arg(self.keys.module(hash)).clone();
            query(&self.conn, &cmd).await
        }
        .boxed()
    }

    fn mappers(&self) -> BoxFuture<'_, Result<BTreeMap<String, MapperMeta>, StoreError>> {
        async move {
            let cmd = redis::cmd("HGETALL").arg(&self.keys.mappers).clone();
            let stored: Vec<(String, String)> = query(&self.conn, &cmd).await?;
            stored
                .into_iter()
                .map(|(name, json)| Ok((name, from_json(&json, "mapper metadata")?)))
                .collect()
        }
        .boxed()
    }

    fn update_mapper<'a>(
        &'a self,
        replaces: u64,
        mut meta: MapperMeta,
        who: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        async move {
            meta.revision = replaces + 1;
            let keys = &self.keys;
            let answer = invoke(
                &self.conn,
                UPDATE_MAPPER
                    .key(&keys.mappers)
                    .key(&keys.audit)
                    .key(&keys.audit_seq)
                    .key(&keys.revision)
                    .arg(&meta.name)
                    .arg(replaces)
                    .arg(to_json(&meta)?)
                    .arg(audit_head(who, action, &meta.name))
                    .arg(meta.promoted)
                    .arg(&keys.channel),
            )
            .await?;
            self.settle(replaces, answer)
        }
        .boxed()
    }

    fn api_keys(&self) -> BoxFuture<'_, Result<BTreeMap<String, ApiKeyRecord>, StoreError>> {
        redis_keys::all(&self.conn, &self.keys).boxed()
    }

    fn api_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, StoreError>> {
        redis_keys::one(&self.conn, &self.keys, key).boxed()
    }

    fn api_key_secret<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        async move {
            let cmd = redis::cmd("HGET")
                .arg(&self.keys.api_key_secrets)
                .arg(key)
                .clone();
            query(&self.conn, &cmd).await
        }
        .boxed()
    }

    fn put_api_key<'a>(
        &'a self,
        replaces: u64,
        record: ApiKeyRecord,
        secret: Option<&'a str>,
        who: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        async move {
            let subject = format!("key:{}", record.key);
            let head = audit_head(who, action, &subject);
            redis_keys::put(&self.conn, &self.keys, replaces, record, secret, head).await
        }
        .boxed()
    }

    fn revision(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let cmd = redis::cmd("GET").arg(&self.keys.revision).clone();
            let revision: Option<u64> = query(&self.conn, &cmd).await?;
            Ok(revision.unwrap_or(0))
        }
        .boxed()
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.announce.subscribe()
    }

    fn health(&self) -> watch::Receiver<StoreHealth> {
        self.health.subscribe()
    }

    fn api_key_count(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        async move {
            let cmd = redis::cmd("HLEN").arg(&self.keys.api_keys).clone();
            query(&self.conn, &cmd).await
        }
        .boxed()
    }

    fn lead_restore<'a>(
        &'a self,
        who: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        redis_restore::lead(&self.conn, &self.keys, who, ttl).boxed()
    }

    fn restore<'a>(
        &'a self,
        image: &'a StoreImage,
        who: &'a str,
        summary: serde_json::Value,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        async move {
            for (hash, bytes) in &image.modules {
                self.put_module(hash, bytes.clone()).await?;
            }
            let head = audit_head(who, "store.restore", "store");
            let restored =
                redis_restore::restore(&self.conn, &self.keys, image, &head, &summary).await?;
            if let Some(revision) = restored {
                self.announce(revision);
                self.health.send_replace(StoreHealth::Serving);
            }
            Ok(restored)
        }
        .boxed()
    }
}

/// `lua` with `AUDIT_LAST` replaced by the index of the last audit entry kept: every script that
/// appends to the audit log trims it to [`MAX_AUDIT_ENTRIES`].
pub(super) fn audited(lua: &str) -> String {
    lua.replace("AUDIT_LAST", &(MAX_AUDIT_ENTRIES - 1).to_string())
}

/// The audit entry's JSON from `at_ms` up to `"before_version":`; the scripts complete it.
pub(super) fn audit_head(who: &str, action: &str, subject: &str) -> String {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        r#","at_ms":{},"who":{},"action":{},"subject":{},"before_version":"#,
        now_ms(),
        text(who),
        text(action),
        text(subject)
    )
}

fn unavailable(error: RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {error}"))
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode for Redis: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(json: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Unavailable(format!("stored {what} is not valid: {e}")))
}

pub(super) async fn query<T: FromRedisValue>(
    conn: &ConnectionManager,
    cmd: &redis::Cmd,
) -> Result<T, StoreError> {
    cmd.query_async(&mut conn.clone())
        .await
        .map_err(unavailable)
}

pub(super) async fn invoke<T: FromRedisValue>(
    conn: &ConnectionManager,
    script: &redis::ScriptInvocation<'_>,
) -> Result<T, StoreError> {
    script
        .invoke_async(&mut conn.clone())
        .await
        .map_err(unavailable)
}
