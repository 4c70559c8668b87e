//! Where the dynamic state lives: in memory for one embedded node, in Redis for a cluster.
//!
//! The state is the gateway config (one document, versioned as a whole; each entry also carries
//! its own version), the mapper registry's metadata (per mapper name: ordered versions and the
//! promoted pointer), the mapper modules themselves, stored by SHA-256, and the API keys. Every
//! accepted change is compare-and-set against the version it replaces and is appended to the
//! audit log; a change of config or mappers also bumps the store's *revision* and is announced,
//! so every node reloads (a key change does not: nodes read keys when they check one).
//!
//! Stores check concurrency, nothing else: validation happens above them (`crate::control`),
//! before anything is written.

mod keys;
mod memory;
mod redis;
mod redis_keys;
mod redis_restore;
mod redis_watch;
mod restore;

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use self::redis::RedisStore;
pub use keys::{ApiKeyRecord, KeyKind, Permission};
pub use memory::MemoryStore;
pub use restore::{StoreHealth, StoreImage};

use super::GatewayConfig;

/// Audit entries a store keeps: the newest, the oldest dropped (numbering goes on).
pub const MAX_AUDIT_ENTRIES: usize = 10_000;

/// One stored version of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned {
    /// Monotonically increasing config version, starting at 1.
    pub version: u64,
    /// The config content.
    pub config: GatewayConfig,
}

/// One accepted change, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who (the operator's name from the admin API, or the node for automatic changes).
    pub who: String,
    /// What: `config.seed`, `config.apply`, `config.rollback`, `cluster.rebalance`,
    /// `mapper.push`, `mapper.promote`, `mapper.rollback`, `key.create`, `key.revoke`, or
    /// `store.restore` (a node wrote back a store that lost its state).
    pub action: String,
    /// What it changed: `config`, the mapper's name, or `key:<api key>`.
    pub subject: String,
    /// The version replaced (config version, or the mapper's promoted version before).
    pub before_version: u64,
    /// The resulting version.
    pub after_version: u64,
    /// The content before (the config, or the mapper's metadata); `null` when there was none.
    pub before: serde_json::Value,
    /// The content after.
    pub after: serde_json::Value,
}

/// What is kept about one version of a mapper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapperVersionMeta {
    /// Version number, from 1, in push order.
    pub version: u32,
    /// SHA-256 of the module, lowercase hex; the module is stored under it.
    pub hash: String,
    /// Module size in bytes.
    pub size: u64,
    /// Who pushed it.
    pub uploader: String,
    /// When, in milliseconds since the Unix epoch.
    pub uploaded_at_ms: u64,
    /// The WIT world it implements, e.g. `wsgate:mapper/event-mapper@0.1.0`.
    pub world: String,
    /// Free text from the pusher.
    #[serde(default)]
    pub notes: String,
    /// What the mapper asks for and its own limits.
    #[serde(default)]
    pub manifest: MapperManifest,
}

/// A mapper's manifest: the sandbox capabilities it asks for and its own limits. Capabilities are
/// granted only when the node's operator also allows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapperManifest {
    /// WASI capabilities asked for: `clock` (real wall and monotonic clocks) and `env:NAME` (one
    /// environment variable of the node). Filesystem and network are never granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// CPU time per call, in milliseconds, instead of the node's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Linear memory cap, in bytes, instead of the node's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

/// A mapper name's versions and the promoted pointer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapperMeta {
    /// Mapper name.
    pub name: String,
    /// Every version, oldest first (`versions[i].version == i + 1`).
    pub versions: Vec<MapperVersionMeta>,
    /// The version `name` (unpinned) resolves to.
    pub promoted: u32,
    /// Compare-and-set revision of this record, from 1; bumped by every change.
    pub revision: u64,
}

impl MapperMeta {
    /// The metadata of version `version`.
    pub fn version(&self, version: u32) -> Option<&MapperVersionMeta> {
        self.versions.get(version.checked_sub(1)? as usize)
    }
}

/// Why a store refused or failed a change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed the record since `expected` was read.
    #[error("stale update: it replaces version {expected} but the store holds version {actual}")]
    Stale {
        /// The version the update said it replaces.
        expected: u64,
        /// The version actually stored.
        actual: u64,
    },
    /// The store cannot be reached or answered nonsense.
    #[error("config store unavailable: {0}")]
    Unavailable(String),
}

/// A config store. Every method is atomic; writers compare-and-set.
pub trait ConfigStore: Send + Sync + 'static {
    /// The current config.
    fn current(&self) -> BoxFuture<'_, Result<Versioned, StoreError>>;

    /// A stored version of the config, current or earlier.
    fn config_version(&self, version: u64) -> BoxFuture<'_, Result<Option<Versioned>, StoreError>>;

    /// Stores `config` as version `replaces + 1` if `replaces` is still current, appends an audit
    /// entry (`action`, by `who`) and announces the change. Returns the new version.
    fn apply<'a>(
        &'a self,
        replaces: u64,
        config: GatewayConfig,
        who: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// The newest `limit` audit entries, newest first.
    fn audit(&self, limit: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>>;

    /// Stores a module under its SHA-256 (hex); storing the same content twice keeps one copy.
    fn put_module<'a>(
        &'a self,
        hash: &'a str,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// A stored module.
    fn module<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;

    /// Every mapper's metadata, by name.
    fn mappers(&self) -> BoxFuture<'_, Result<BTreeMap<String, MapperMeta>, StoreError>>;

    /// Replaces a mapper's metadata if its stored revision is still `replaces` (0: the name is
    /// new), appends an audit entry and announces the change. `meta.revision` is ignored; the
    /// stored record gets `replaces + 1`, which is returned.
    fn update_mapper<'a>(
        &'a self,
        replaces: u64,
        meta: MapperMeta,
        who: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Every API key's record, by key.
    fn api_keys(&self) -> BoxFuture<'_, Result<BTreeMap<String, ApiKeyRecord>, StoreError>>;

    /// One API key's record.
    fn api_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, StoreError>>;

    /// An HMAC key's secret.
    fn api_key_secret<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>>;

    /// Replaces a key's record if its stored revision is still `replaces` (0: the key is new)
    /// and appends an audit entry; a new key's `secret` (HMAC) is stored apart from the record,
    /// and never in the audit log. `record.revision` is ignored; the stored record gets
    /// `replaces + 1`, which is returned. The store's revision is not bumped.
    fn put_api_key<'a>(
        &'a self,
        replaces: u64,
        record: ApiKeyRecord,
        secret: Option<&'a str>,
        who: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// The store's revision: bumped by every accepted change of config or mappers.
    fn revision(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Announcements of new revisions, from this node or any other. The receiver's value is the
    /// newest revision seen; a node reloads when it changes.
    fn watch(&self) -> watch::Receiver<u64>;

    /// Whether the store answers and holds a config, as last seen. A store in process memory is
    /// always [`StoreHealth::Serving`].
    fn health(&self) -> watch::Receiver<StoreHealth> {
        watch::channel(StoreHealth::Serving).1
    }

    /// How many API keys the store holds.
    fn api_key_count(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        async move { Ok(self.api_keys().await?.len()) }.boxed()
    }

    /// Tries to become the one node that restores an emptied store: true when `who` holds the
    /// restore lock now (for `ttl`, or until released by a successful restore). A store that
    /// cannot be emptied never elects anyone.
    fn lead_restore<'a>(
        &'a self,
        _who: &'a str,
        _ttl: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async { Ok(false) }.boxed()
    }

    /// Writes `image` back into a store that lost it, atomically and only while the store holds
    /// no config or is at a lower revision than the image (a replica that was behind): every
    /// config version of the image, its mapper registry and a revision above the image's, with
    /// one `store.restore` audit entry by `who` whose `after` is `summary` (modules are stored
    /// first). Returns the new revision, or `None` when the store was not behind (another node
    /// restored it).
    fn restore<'a>(
        &'a self,
        _image: &'a StoreImage,
        _who: &'a str,
        _summary: serde_json::Value,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        async { Ok(None) }.boxed()
    }
}
