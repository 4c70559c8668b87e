//! Where the dynamic config lives: in memory for one embedded node, in Redis for a cluster.

mod memory;

pub use memory::MemoryStore;

use super::GatewayConfig;

/// One stored version of the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// Monotonically increasing config version, starting at 1.
    pub version: u64,
    /// The config content.
    pub config: GatewayConfig,
}

/// Why a store refused a change.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed the config since `expected` was read.
    #[error("stale update: it replaces version {expected} but the store holds version {actual}")]
    Stale {
        /// The version the update said it replaces.
        expected: u64,
        /// The version actually stored.
        actual: u64,
    },
}
