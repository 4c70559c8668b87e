//! Listen keys of a cluster, in Redis, so every node sees every key.
//!
//! | Key                              | Holds                                               |
//! |----------------------------------|-----------------------------------------------------|
//! | `Plisten_key:<key>`              | the owner (JSON), expiring with the key (PEXPIRE)   |
//! | `Plisten_key_scope:<user>\|<ip>` | the scope's active key, expiring with it            |
//! | `Plisten_key_revoked:<key>`      | present for a minute after a revocation             |
//!
//! Every change is one Lua script, so two nodes creating a key for one user at once agree on it.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use serde::{Deserialize, Serialize};

use super::{KeyState, ListenKey, ListenKeyStore, Owner};
use crate::config::store::StoreError;
use crate::util::now_ms;

/// How long a revocation is remembered, in ms.
const REMEMBER_REVOKED_MS: u64 = 60_000;

/// KEYS: scope. ARGV: record prefix, new key, record, validity ms.
static OPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('GET', KEYS[1])
if current and redis.call('PEXPIRE', ARGV[1] .. current, ARGV[4]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return current
end
redis.call('SET', ARGV[1] .. ARGV[2], ARGV[3], 'PX', ARGV[4])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
return ARGV[2]
"#,
    )
});

/// KEYS: record. ARGV: user, validity ms, scope prefix, key.
static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local stored = redis.call('GET', KEYS[1])
if not stored then return 0 end
local record = cjson.decode(stored)
if record.user_id ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local scope = ARGV[3] .. record.scope
if redis.call('GET', scope) == ARGV[4] then redis.call('PEXPIRE', scope, ARGV[2]) end
return 1
"#,
    )
});

/// KEYS: record, revoked marker. ARGV: user, scope prefix, key, remember ms.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local stored = redis.call('GET', KEYS[1])
if not stored then return 0 end
local record = cjson.decode(stored)
if record.user_id ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local scope = ARGV[2] .. record.scope
if redis.call('GET', scope) == ARGV[3] then redis.call('DEL', scope) end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
return 1
"#,
    )
});

/// KEYS: record, revoked marker, scope. ARGV: record, validity ms, key.
static RESTORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[2], 'NX')
return 1
"#,
    )
});

/// A key's stored record: its owner and the scope it is the active key of.
#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    owner: Owner,
    scope: String,
}

/// Listen keys in Redis.
pub struct RedisListenKeys {
    conn: ConnectionManager,
    record_prefix: String,
    scope_prefix: String,
    revoked_prefix: String,
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {error}"))
}

impl RedisListenKeys {
    /// Connects to Redis at `url`; every key starts with `prefix` (the node uses `wsgate:`).
    pub async fn connect(url: &str, prefix: &str) -> Result<Arc<Self>, StoreError> {
        let client = Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(Arc::new(RedisListenKeys {
            conn,
            record_prefix: format!("{prefix}listen_key:"),
            scope_prefix: format!("{prefix}listen_key_scope:"),
            revoked_prefix: format!("{prefix}listen_key_revoked:"),
        }))
    }

    fn record(&self, key: &str) -> String {
        format!("{}{key}", self.record_prefix)
    }

    fn revoked(&self, key: &str) -> String {
        format!("{}{key}", self.revoked_prefix)
    }
}

impl ListenKeyStore for RedisListenKeys {
    fn open<'a>(
        &'a self,
        owner: &'a Owner,
        new_key: &'a str,
        validity: Duration,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        async move {
            let scope = owner.scope();
            let record = serde_json::to_string(&Record {
                owner: owner.clone(),
                scope: scope.clone(),
            })
            .expect("a record serializes");
            OPEN.key(format!("{}{scope}", self.scope_prefix))
                .arg(&self.record_prefix)
                .arg(new_key)
                .arg(record)
                .arg(validity.as_millis() as u64)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)
        }
        .boxed()
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        user_id: &'a str,
        validity: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let done: i64 = EXTEND
                .key(self.record(key))
                .arg(user_id)
                .arg(validity.as_millis() as u64)
                .arg(&self.scope_prefix)
                .arg(key)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            Ok(done == 1)
        }
        .boxed()
    }

    fn revoke<'a>(
        &'a self,
        key: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let done: i64 = REVOKE
                .key(self.record(key))
                .key(self.revoked(key))
                .arg(user_id)
                .arg(&self.scope_prefix)
                .arg(key)
                .arg(REMEMBER_REVOKED_MS)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            Ok(done == 1)
        }
        .boxed()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ListenKey>, StoreError>> {
        async move {
            let record = self.record(key);
            let (stored, ttl): (Option<String>, i64) = redis::pipe()
                .cmd("GET")
                .arg(&record)
                .cmd("PTTL")
                .arg(&record)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            let Some(stored) = stored.filter(|_| ttl > 0) else {
                return Ok(None);
            };
            let record: Record = serde_json::from_str(&stored).map_err(|e| {
                StoreError::Unavailable(format!("stored listen key is not valid: {e}"))
            })?;
            Ok(Some(ListenKey {
                key: Arc::from(key),
                owner: record.owner,
                expires_at_ms: now_ms() + ttl as u64,
            }))
        }
        .boxed()
    }

    fn states<'a>(
        &'a self,
        keys: &'a [Arc<str>],
    ) -> BoxFuture<'a, Result<Vec<KeyState>, StoreError>> {
        async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            for key in keys {
                pipe.cmd("PTTL").arg(self.record(key));
                pipe.cmd("EXISTS").arg(self.revoked(key));
            }
            let answers: Vec<i64> = pipe
                .query_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            let now = now_ms();
            Ok(answers
                .chunks(2)
                .map(|pair| match pair {
                    [ttl, _] if *ttl > 0 => KeyState::Active(now + *ttl as u64),
                    [_, 1] => KeyState::Revoked,
                    _ => KeyState::Gone,
                })
                .collect())
        }
        .boxed()
    }

    fn restore<'a>(&'a self, key: &'a ListenKey) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let left = key.expires_at_ms.saturating_sub(now_ms());
            if left == 0 {
                return Ok(false);
            }
            let scope = key.owner.scope();
            let record = serde_json::to_string(&Record {
                owner: key.owner.clone(),
                scope: scope.clone(),
            })
            .expect("a record serializes");
            let written: u32 = RESTORE
                .key(self.record(&key.key))
                .key(self.revoked(&key.key))
                .key(format!("{}{scope}", self.scope_prefix))
                .arg(record)
                .arg(left)
                .arg(&*key.key)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            Ok(written == 1)
        }
        .boxed()
    }
}
