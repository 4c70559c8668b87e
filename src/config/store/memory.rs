//! The embedded node's config store: everything in process memory, gone when the node stops.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{ApiKeyRecord, AuditEntry, ConfigStore, MapperMeta, StoreError, Versioned};
use crate::config::GatewayConfig;
use crate::util::now_ms;

#[derive(Default)]
struct State {
    configs: Vec<GatewayConfig>,
    audit: Vec<AuditEntry>,
    modules: HashMap<String, Bytes>,
    mappers: BTreeMap<String, MapperMeta>,
    api_keys: BTreeMap<String, ApiKeyRecord>,
    api_key_secrets: HashMap<String, String>,
    revision: u64,
}

impl State {
    /// Appends `entry` to the audit log and bumps the revision.
    fn record(&mut self, entry: AuditEntry) {
        self.audit_only(entry);
        self.revision += 1;
    }

    /// Appends `entry` to the audit log.
    fn audit_only(&mut self, mut entry: AuditEntry) {
        entry.seq = self.audit.len() as u64 + 1;
        self.audit.push(entry);
    }
}

/// An in-memory store holding `config` as version 1.
pub struct MemoryStore {
    state: Mutex<State>,
    announce: watch::Sender<u64>,
}

impl MemoryStore {
    /// A store holding `config` as version 1 (revision 1, no audit entry).
    pub fn new(config: GatewayConfig) -> Self {
        let (announce, _) = watch::channel(1);
        MemoryStore {
            state: Mutex::new(State {
                configs: vec![config],
                revision: 1,
                ..State::default()
            }),
            announce,
        }
    }

    fn announce(&self, revision: u64) {
        self.announce.send_replace(revision);
    }
}

fn versioned(state: &State, version: u64) -> Option<Versioned> {
    let config = state.configs.get(version.checked_sub(1)? as usize)?;
    Some(Versioned {
        version,
        config: config.clone(),
    })
}

impl ConfigStore for MemoryStore {
    fn current(&self) -> BoxFuture<'_, Result<Versioned, StoreError>> {
        let state = self.state.lock();
        let current = versioned(&state, state.configs.len() as u64).expect("never empty");
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
            let actual = state.configs.len() as u64;
            if actual != replaces {
                return Err(StoreError::Stale {
                    expected: replaces,
                    actual,
                });
            }
            let before = serde_json::to_value(&state.configs[actual as usize - 1]).unwrap();
            let after = serde_json::to_value(&config).unwrap();
            state.configs.push(config);
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
}
