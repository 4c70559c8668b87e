//! API keys in the Redis store: records in `Papi_keys`, HMAC secrets apart in
//! `Papi_key_secrets` (see the key layout in `redis.rs`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use redis::Script;

use super::redis::{from_json, invoke, query, to_json, Keys};
use super::{ApiKeyRecord, StoreError};

/// Stores a key's record if its stored revision is the one it replaces, with its secret when
/// the key is new, and appends the audit entry.
/// KEYS: api keys, secrets, audit, audit seq.
/// ARGV: key, replaces, record, audit head, secret ('' for none).
/// Returns `{1, record revision}`, or `{0, actual}` when stale.
static PUT_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&super::redis::audited(
        r#"
local stored = redis.call('HGET', KEYS[1], ARGV[1])
local actual, before = 0, 'null'
if stored then
  local ok, record = pcall(cjson.decode, stored)
  if not ok or type(record) ~= 'table' or type(record.revision) ~= 'number' then
    return redis.error_reply('stored record of API key ' .. ARGV[1] .. ' is not valid')
  end
  actual, before = record.revision, stored
end
if actual ~= tonumber(ARGV[2]) then return {0, actual} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[5] ~= '' then redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[5]) end
local seq = redis.call('INCR', KEYS[4])
redis.call('LPUSH', KEYS[3], '{"seq":' .. seq .. ARGV[4] .. tostring(actual) .. ',"after_version":' .. tostring(actual + 1) .. ',"before":' .. before .. ',"after":' .. ARGV[3] .. '}')
redis.call('LTRIM', KEYS[3], 0, AUDIT_LAST)
return {1, actual + 1}
"#,
    ))
});

/// Every key's record.
pub(super) async fn all(
    conn: &ConnectionManager,
    keys: &Keys,
) -> Result<BTreeMap<String, ApiKeyRecord>, StoreError> {
    let cmd = redis::cmd("HGETALL").arg(&keys.api_keys).clone();
    let stored: BTreeMap<String, String> = query(conn, &cmd).await?;
    stored
        .into_iter()
        .map(|(key, json)| Ok((key, from_json(&json, "API key record")?)))
        .collect()
}

/// One key's record.
pub(super) async fn one(
    conn: &ConnectionManager,
    keys: &Keys,
    key: &str,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    let cmd = redis::cmd("HGET").arg(&keys.api_keys).arg(key).clone();
    let stored: Option<String> = query(conn, &cmd).await?;
    stored
        .map(|json| from_json(&json, "API key record"))
        .transpose()
}

/// Compare-and-sets a key's record (see [`super::ConfigStore::put_api_key`]); `audit_head` is
/// the audit entry's JSON from `at_ms` up to `"before_version":`.
pub(super) async fn put(
    conn: &ConnectionManager,
    keys: &Keys,
    replaces: u64,
    mut record: ApiKeyRecord,
    secret: Option<&str>,
    audit_head: String,
) -> Result<u64, StoreError> {
    record.revision = replaces + 1;
    let answer: Vec<u64> = invoke(
        conn,
        PUT_KEY
            .key(&keys.api_keys)
            .key(&keys.api_key_secrets)
            .key(&keys.audit)
            .key(&keys.audit_seq)
            .arg(&record.key)
            .arg(replaces)
            .arg(to_json(&record)?)
            .arg(audit_head)
            .arg(secret.unwrap_or("")),
    )
    .await?;
    match answer[..] {
        [1, revision] => Ok(revision),
        [0, actual] => Err(StoreError::Stale {
            expected: replaces,
            actual,
        }),
        _ => Err(StoreError::Unavailable(format!(
            "unexpected answer from Redis: {answer:?}"
        ))),
    }
}
