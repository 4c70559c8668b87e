//! API keys as the store keeps them. A key's record is public (listed by the admin API, written
//! to the audit log); an HMAC key's secret is kept apart from it, written once when the key is
//! created and read only to check signatures.

use serde::{Deserialize, Serialize};

/// What a key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Listen keys and user-data streams.
    UserStream,
    /// Placing, cancelling and querying orders; account queries.
    Trade,
}

impl Permission {
    /// The name used in the API and the CLI (`user-stream`, `trade`).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::UserStream => "user-stream",
            Permission::Trade => "trade",
        }
    }

    /// The permission named `name`.
    pub fn parse(name: &str) -> Option<Permission> {
        match name {
            "user-stream" => Some(Permission::UserStream),
            "trade" => Some(Permission::Trade),
            _ => None,
        }
    }
}

/// How a key's requests are signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyKind {
    /// HMAC-SHA256 with a secret the gateway generated (kept apart from this record).
    Hmac,
    /// Ed25519 with the client's public key (PEM); the gateway never sees the private key.
    Ed25519 {
        /// The public key, PEM.
        public_key: String,
    },
}

/// One API key: whose it is, what it may do, from where, and whether it still works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The key as clients send it (`X-MBX-APIKEY`, `apiKey`).
    pub key: String,
    /// The user the key acts for.
    pub user_id: String,
    /// What it may be used for.
    pub permissions: Vec<Permission>,
    /// How its requests are signed.
    pub kind: KeyKind,
    /// Addresses or networks (`10.0.0.0/8`) it may be used from; empty: anywhere.
    #[serde(default)]
    pub ip_allow: Vec<String>,
    /// A disabled (revoked) key authenticates nothing.
    #[serde(default)]
    pub disabled: bool,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Who created it.
    pub created_by: String,
    /// Compare-and-set revision of this record, from 1; bumped by every change.
    pub revision: u64,
}
