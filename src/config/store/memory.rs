//! The embedded node's config store: one versioned config in memory.

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{StoreError, Versioned};
use crate::config::GatewayConfig;

/// An in-memory, versioned config store. Changes are announced on a watch channel.
pub struct MemoryStore {
    current: Mutex<Versioned>,
    announce: watch::Sender<u64>,
}

impl MemoryStore {
    /// A store holding `config` as version 1.
    pub fn new(config: GatewayConfig) -> Self {
        let (announce, _) = watch::channel(1);
        MemoryStore {
            current: Mutex::new(Versioned { version: 1, config }),
            announce,
        }
    }

    /// The current version and content.
    pub fn current(&self) -> Versioned {
        self.current.lock().clone()
    }

    /// Replaces the config if `replaces` is still the current version; returns the new version.
    pub fn apply(&self, replaces: u64, config: GatewayConfig) -> Result<u64, StoreError> {
        let mut current = self.current.lock();
        if current.version != replaces {
            return Err(StoreError::Stale {
                expected: replaces,
                actual: current.version,
            });
        }
        current.version += 1;
        current.config = config;
        let version = current.version;
        drop(current);
        self.announce.send_replace(version);
        Ok(version)
    }

    /// A receiver that sees every newly applied version.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.announce.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_writer_is_refused() {
        let store = MemoryStore::new(GatewayConfig::default());
        assert_eq!(store.apply(1, GatewayConfig::default()).unwrap(), 2);
        let err = store.apply(1, GatewayConfig::default()).unwrap_err();
        assert!(matches!(
            err,
            StoreError::Stale {
                expected: 1,
                actual: 2
            }
        ));
        assert_eq!(store.current().version, 2);
    }
}
