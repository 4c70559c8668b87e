//! Writing an emptied Redis store back from a node's [`StoreImage`]: the election of the one
//! node that does it, and the write itself, atomic and only into a store without a config.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use super::redis::{invoke, query, to_json, Keys};
use super::{StoreError, StoreImage};

/// Writes an image back if the store holds no config or is behind the image's revision.
/// KEYS: version, versions, audit, audit seq, revision, mappers, restore lock.
/// ARGV: current version, audit head, summary, image revision + 1, channel, number of configs,
/// then (version, config) pairs, then (mapper name, metadata) pairs.
/// Returns the new revision, or 0 when the store held a config at least as new as the image.
static RESTORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&super::redis::audited(
        r#"
local behind = (tonumber(redis.call('GET', KEYS[5]) or '0') or 0) < tonumber(ARGV[4]) - 1
if redis.call('EXISTS', KEYS[1]) == 1 and not behind then return 0 end
local i = 7
for _ = 1, tonumber(ARGV[6]) do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('SET', KEYS[1], ARGV[1])
local seq = redis.call('INCR', KEYS[4])
redis.call('LPUSH', KEYS[3], '{"seq":' .. seq .. ARGV[2] .. '0,"after_version":' .. ARGV[1] .. ',"before":null,"after":' .. ARGV[3] .. '}')
redis.call('LTRIM', KEYS[3], 0, AUDIT_LAST)
local rev = tonumber(ARGV[4])
local stored = tonumber(redis.call('GET', KEYS[5]) or '0') or 0
if stored >= rev then rev = stored + 1 end
redis.call('SET', KEYS[5], tostring(rev))
redis.call('DEL', KEYS[7])
redis.call('PUBLISH', ARGV[5], rev)
return rev
"#,
    ))
});

/// Takes the restore lock for `who` unless another node holds it.
pub(super) async fn lead(
    conn: &ConnectionManager,
    keys: &Keys,
    who: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let cmd = redis::cmd("SET")
        .arg(&keys.restore_lock)
        .arg(who)
        .arg("NX")
        .arg("PX")
        .arg(ttl.as_millis().max(1) as u64)
        .clone();
    let taken: Option<String> = query(conn, &cmd).await?;
    Ok(taken.is_some())
}

/// Stores the image's configs, registry and a revision above the image's, with the audit entry
/// `head` + `summary`, if the store still holds no config or an older revision than the image
/// (what the image holds replaces what the store holds under the same names). The image's
/// modules must be stored first.
pub(super) async fn restore(
    conn: &ConnectionManager,
    keys: &Keys,
    image: &StoreImage,
    head: &str,
    summary: &serde_json::Value,
) -> Result<Option<u64>, StoreError> {
    let current = image
        .current()
        .ok_or_else(|| StoreError::Unavailable("nothing to restore: no config".into()))?;
    let mut script = RESTORE.prepare_invoke();
    script
        .key(&keys.version)
        .key(&keys.versions)
        .key(&keys.audit)
        .key(&keys.audit_seq)
        .key(&keys.revision)
        .key(&keys.mappers)
        .key(&keys.restore_lock)
        .arg(current.version)
        .arg(head)
        .arg(to_json(summary)?)
        .arg(image.revision + 1)
        .arg(&keys.channel)
        .arg(image.configs.len());
    for versioned in &image.configs {
        script
            .arg(versioned.version)
            .arg(to_json(&versioned.config)?);
    }
    for (name, meta) in &image.mappers {
        script.arg(name).arg(to_json(meta)?);
    }
    let revision: u64 = invoke(conn, &script).await?;
    Ok((revision > 0).then_some(revision))
}
