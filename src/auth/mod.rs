//! Who a request acts for: API keys kept in the config store (their user, permissions, allowed
//! addresses, and whether they still work), and the signatures that prove a request was made with
//! one (`signature`).

mod accounts;
mod delegated;
mod key;
pub mod listen_keys;
pub mod signature;

pub use accounts::{Accounts, KeyLookup, StoreKeys};
pub use delegated::{DelegatedKeys, DelegatedSettings};
pub use key::{generate_token, ApiKey, AuthError, IpAllowList};
