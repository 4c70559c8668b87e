//! The embedded node's config store: everything in process memory, gone when the node stops.
//!
//! The config history and the audit log are bounded: the newest `MAX_CONFIG_VERSIONS`
//! versions and `MAX_AUDIT_ENTRIES` entries are kept, the oldest dropped. Version numbers and
//! audit sequence numbers keep counting; a dropped version is not found, like an unknown one.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{
    ApiKeyRecord, AuditEntry, ConfigStore, MapperMeta, StoreError, Versioned, MAX_AUDIT_ENTRIES,
};
use crate::config::GatewayConfig;
use crate::util::now_ms;

/// Config versions kept (the current one and those before it).
pub const MAX_CONFIG_VERSIONS: usize = 1_000;

struct State {
    /// The newest config versions, oldest first; never empty.
    configs: VecDeque<GatewayConfig>,
    /// The version of `configs[0]`.
    first_version: u64,
    max_versions: usize,
    /// The newest audit entries, oldest first.
    audit: VecDeque<AuditEntry>,
    /// The last audit entry's `seq` (dropped ones included).
    audit_seq: u64,
    max_audit: usize,
    modules: HashMap<String, Bytes>,
    mappers: BTreeMap<String, MapperMeta>,
    api_keys: BTreeMap<String, ApiKeyRecord>,
    api_key_secrets: HashMap<String, String>,
    revision: u64,
}

impl State {
    /// The current config's version.
    fn current_version(&self) -> u64 {
        self.first_version + self.configs.len() as u64 - 1
    }

    /// The stored config of `version`, unless unknown or dropped.
    fn config(&self, version: u64) -> Option<&GatewayConfig> {
        let index = version.checked_sub(self.first_version)?;
        self.configs.get(usize::try_from(index).ok()?)
    }

    /// Appends `config` as the next version, dropping the oldest beyond the bound.
    fn push_config(&mut self, config: GatewayConfig) {
        self.configs.push_back(config);
        while self.configs.len() > self.max_versions.max(1) {
            self.configs.pop_front();
            self.first_version += 1;
        }
    }

    /// Appends `entry` to the audit log and bumps the revision.
    fn record(&mut self, entry: AuditEntry) {
        self.audit_only(entry);
        self.revision += 1;
    }

    /// Appends `entry` to the audit log.
    fn audit_only(&mut self, mut entry: AuditEntry) {
        self.audit_seq += 1;
        entry.seq = self.audit_seq;
        self.audit.push_back(entry);
        while self.audit.len() > self.max_audit {
            self.audit.pop_front();
        }
    }
}

/// An in-memory store holding `config` as version 1.
pub struct MemoryStore {
    state: Mutex<State>,
    announce: watch::Sender<u64>,
}

impl MemoryStore {
    /// A store holding `config` as version 1 (revision 1, no audit entry), keeping the newest
    /// 1,000 config versions and 10,000 audit entries.
    pub fn new(config: GatewayConfig) -> Self {
        Self::with_bounds(config, MAX_CONFIG_VERSIONS, MAX_AUDIT_ENTRIES)
    }

    /// Like [`new`](Self::new), keeping the newest `versions` config versions (at least the
    /// current one) and `audit` audit entries.
    pub fn with_bounds(config: GatewayConfig, versions: usize, audit: usize) -> Self {
        let (announce, _) = watch::channel(1);
        MemoryStore {
            state: Mutex::new(State {
                configs: VecDeque::from([config]),
                first_version: 1,
                max_versions: versions,
                audit: VecDeque::new(),
                audit_seq: 0,
                max_audit: audit,
                modules: HashMap::new(),
                mappers: BTreeMap::new(),
                api_keys: BTreeMap::new(),
                api_key_secrets: HashMap::new(),
                revision: 1,
            }),
            announce,
        }
    }

    fn announce(&self, revision: u64) {
        self.announce.send_replace(revision);
    }
}

fn versioned(state: &State, version: u64) -> Option<Versioned> {
    Some(Versioned {
        version,
        config: state.config(version)?.clone(),
    })
}

impl ConfigStore for MemoryStore {
    fn current(&self) -> BoxFuture<'_, Result<Versioned, StoreError>> {
        let state = self.state.lock();
        let current = versioned(&state, state.current_version()).expect("never empty");
        async move { Ok(current) }.boxed()
    }

    fn config_version(&self, version: u64) -> BoxFuture<'_, Result<Option<Versioned>, StoreError>> {
        let found = versioned(&self.state.lock(), version);
        async move { Ok(found) }.boxed()
    }

    fn apply<'a>(
        &'a self,
        replaces: u64,
        config: GatewayConfig,
        who: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let result = (|| {
            let mut state = self.state.lock();
            let actual = state.current_version();
            if actual != replaces {
                return Err(StoreError::Stale {
                    expected: replaces,
                    actual,
                });
            }
            let before = serde_json::to_value(state.config(actual).expect("current")).unwrap();
            let after = serde_json::to_value(&config).unwrap();
            state.push_config(config);
            state.record(AuditEntry {
                seq: 0,
                at_ms: now_ms(),
                who: who.to_string(),
                action: action.to_string(),
                subject: "config".to_string(),
                before_version: actual,
                after_version: actual + 1,
                before,
                after,
            });
            Ok((actual + 1, state.revision))
        })();
        async move {
            let (version, revision) = result?;
            self.announce(revision);
            Ok(version)
        }
        .boxed()
    }

    fn audit(&self, limit: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>> {
        let entries = self
            .state
            .lock()
            .audit
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect();
        async move { Ok(entries) }.boxed()
    }

    fn put_module<'a>(
        &'a self,
        hash: &'a str,
        bytes: Bytes,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.state
            .lock()
            .modules
            .entry(hash.to_string())
            .or_insert(bytes);
        async move { Ok(()) }.boxed()
    }

    fn module<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        let found = self.state.lock().modules.get(hash).cloned();
        async move { Ok(found) }.boxed()
    }

    fn mappers(&self) -> BoxFuture<'_, Result<BTreeMap<String, MapperMeta>, StoreError>> {
        let mappers = self.state.lock().mappers.clone();
        async move { Ok(mappers) }.boxed()
    }

    fn update_mapper<'a>(
        &'a self,
        replaces: u64,
        mut meta: MapperMeta,
        who: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let result = (|| {
            let mut state = self.state.lock();
            let stored = state.mappers.get(&meta.name);
            let actual = stored.map_or(0, |m| m.revision);
            if actual != replaces {
                return Err(StoreError::Stale {
                    expected: replaces,
                    actual,
                });
            }
            let before_version = stored.map_or(0, |m| u64::from(m.promoted));
            let before = stored.map_or(serde_json::Value::Null, |m| {
                serde_json::to_value(m).unwrap()
            });
            meta.revision = replaces + 1;
            let entry = AuditEntry {
                seq: 0,
                at_ms: now_ms(),
                who: who.to_string(),
                action: action.to_string(),
                subject: meta.name.clone(),
                before_version,
                after_version: u64::from(meta.promoted),
                before,
                after: serde_json::to_value(&meta).unwrap(),
            };
            state.mappers.insert(meta.name.clone(), meta);
            state.record(entry);
            Ok((replaces + 1, state.revision))
        })();
        async move {
            let (revision, store_revision) = result?;
            self.announce(store_revision);
            Ok(revision)
        }
        .boxed()
    }

    fn api_keys(&self) -> BoxFuture<'_, Result<BTreeMap<String, ApiKeyRecord>, StoreError>> {
        let keys = self.state.lock().api_keys.clone();
        async move { Ok(keys) }.boxed()
    }

    fn api_key_count(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        let count = self.state.lock().api_keys.len();
        async move { Ok(count) }.boxed()
    }

    fn api_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, StoreError>> {
        let record = self.state.lock().api_keys.get(key).cloned();
        async move { Ok(record) }.boxed()
    }

    fn api_key_secret<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let secret = self.state.lock().api_key_secrets.get(key).cloned();
        async move { Ok(secret) }.boxed()
    }

    fn put_api_key<'a>(
        &'a self,
        replaces: u64,
        mut record: ApiKeyRecord,
        secret: Option<&'a str>,
        who: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let result = (|| {
            let mut state = self.state.lock();
            let stored = state.api_keys.get(&record.key);
            let actual = stored.map_or(0, |r| r.revision);
            if actual != replaces {
                return Err(StoreError::Stale {
                    expected: replaces,
                    actual,
                });
            }
            let before = stored.map_or(serde_json::Value::Null, |r| {
                serde_json::to_value(r).unwrap()
            });
            record.revision = replaces + 1;
            let entry = AuditEntry {
                seq: 0,
                at_ms: now_ms(),
                who: who.to_string(),
                action: action.to_string(),
                subject: format!("key:{}", record.key),
                before_version: replaces,
                after_version: record.revision,
                before,
                after: serde_json::to_value(&record).unwrap(),
            };
            if let Some(secret) = secret {
                state
                    .api_key_secrets
                    .insert(record.key.clone(), secret.to_string());
            }
            state.api_keys.insert(record.key.clone(), record);
            state.audit_only(entry);
            Ok(replaces + 1)
        })();
        async move { result }.boxed()
    }

    fn revision(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        let revision = self.state.lock().revision;
        async move { Ok(revision) }.boxed()
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.announce.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_writer_is_refused() {
        let store = MemoryStore::new(GatewayConfig::default());
        let watch = store.watch();
        assert_eq!(
            store
                .apply(1, GatewayConfig::default(), "ops", "config.apply")
                .await
                .unwrap(),
            2
        );
        assert!(watch.has_changed().unwrap());
        let err = store
            .apply(1, GatewayConfig::default(), "ops", "config.apply")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::Stale {
                expected: 1,
                actual: 2
            }
        );
        assert_eq!(store.current().await.unwrap().version, 2);
        assert_eq!(store.audit(10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn old_versions_and_audit_entries_are_dropped_while_numbering_continues() {
        let store = MemoryStore::with_bounds(GatewayConfig::default(), 3, 4);
        for replaces in 1..=9 {
            let version = store
                .apply(replaces, GatewayConfig::default(), "ops", "config.apply")
                .await
                .unwrap();
            assert_eq!(version, replaces + 1);
        }
        assert_eq!(store.current().await.unwrap().version, 10);
        // Versions 8, 9 and 10 are kept; earlier ones are answered like unknown ones.
        for version in [0, 1, 7, 11] {
            assert_eq!(store.config_version(version).await.unwrap(), None);
        }
        for version in 8..=10 {
            let found = store.config_version(version).await.unwrap().unwrap();
            assert_eq!(found.version, version);
        }
        // The four newest audit entries, their sequence numbers counting on.
        let seqs: Vec<u64> = store
            .audit(100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [9, 8, 7, 6]);
        let err = store
            .apply(9, GatewayConfig::default(), "ops", "config.apply")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::Stale {
                expected: 9,
                actual: 10
            }
        );
        // Key changes are audited too, and numbered after the config changes.
        let key = ApiKeyRecord {
            key: "k".into(),
            user_id: "u".into(),
            permissions: Vec::new(),
            kind: super::super::KeyKind::Hmac,
            ip_allow: Vec::new(),
            disabled: false,
            created_at_ms: 0,
            created_by: "ops".into(),
            revision: 0,
        };
        store
            .put_api_key(0, key, None, "ops", "key.create")
            .await
            .unwrap();
        assert_eq!(store.audit(1).await.unwrap()[0].seq, 10);
        assert_eq!(store.audit(100).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn the_current_version_is_kept_whatever_the_bound() {
        let store = MemoryStore::with_bounds(GatewayConfig::default(), 0, 0);
        store
            .apply(1, GatewayConfig::default(), "ops", "config.apply")
            .await
            .unwrap();
        assert_eq!(store.current().await.unwrap().version, 2);
        assert!(store.config_version(2).await.unwrap().is_some());
        assert!(store.config_version(1).await.unwrap().is_none());
        assert!(store.audit(10).await.unwrap().is_empty());
    }
}
