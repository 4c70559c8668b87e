//! What operators do to a running cluster: validated config changes, diffs and rollbacks, the
//! mapper lifecycle (push, promote, rollback) and API keys (create, list, revoke). The admin API
//! and the nodes' automatic rollback call these; the stores below them only compare-and-set.

pub mod config_ops;
pub mod key_ops;
pub mod mapper_ops;

use crate::config::store::StoreError;
use crate::config::ConfigError;

/// Why an operation was refused or failed. Each maps to one HTTP status in the admin API.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The config failed validation; nothing was stored.
    #[error("invalid config: {0}")]
    Invalid(ConfigError),
    /// The mapper module was refused; nothing was stored.
    #[error("mapper refused: {0}")]
    BadMapper(String),
    /// The request itself is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Another change got there first, or the request conflicts with the current state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or an unexpected runtime failure.
    #[error("internal error: {0}")]
    Internal(String),
}
