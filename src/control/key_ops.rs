//! The API key lifecycle: create (the gateway generates the key and, for HMAC, the secret, which
//! is shown this once and never again), list, revoke. Every change is audited by the store.

use serde::{Deserialize, Serialize};

use super::ControlError;
use crate::auth::signature::Verifier;
use crate::auth::{generate_token, IpAllowList};
use crate::bus::{is_user_id, MAX_USER_ID};
use crate::config::store::{ApiKeyRecord, ConfigStore, KeyKind, Permission};
use crate::util::now_ms;

/// What an operator asks for when creating a key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// The user the key acts for.
    pub user_id: String,
    /// `user-stream`, `trade`.
    pub permissions: Vec<String>,
    /// An Ed25519 public key (PEM, or 32 bytes in base64); without it the key is HMAC and the
    /// gateway generates its secret.
    #[serde(default)]
    pub ed25519_public_key: Option<String>,
    /// Addresses or networks the key may be used from; empty: anywhere.
    #[serde(default)]
    pub ip_allow: Vec<String>,
}

/// A created key: its record and, for HMAC, the secret (returned this once).
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    /// The stored record.
    #[serde(flatten)]
    pub record: ApiKeyRecord,
    /// The HMAC secret; `None` for Ed25519.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Validates `request`, generates the key (and secret) and stores it.
pub async fn create(
    store: &dyn ConfigStore,
    request: NewKey,
    who: &str,
) -> Result<Created, ControlError> {
    let user_id = request.user_id.trim();
    if !is_user_id(user_id) {
        return Err(ControlError::BadRequest(format!(
            "user_id: must be 1 to {MAX_USER_ID} characters without spaces"
        )));
    }
    let mut permissions = Vec::new();
    for name in &request.permissions {
        let permission = Permission::parse(name).ok_or_else(|| {
            ControlError::BadRequest(format!(
                "permissions: unknown permission `{name}` (known: user-stream, trade)"
            ))
        })?;
        if !permissions.contains(&permission) {
            permissions.push(permission);
        }
    }
    if permissions.is_empty() {
        return Err(ControlError::BadRequest(
            "permissions: name at least one of user-stream, trade".into(),
        ));
    }
    IpAllowList::parse(&request.ip_allow)
        .map_err(|why| ControlError::BadRequest(format!("ip_allow: {why}")))?;
    let (kind, secret) = match request.ed25519_public_key {
        Some(public_key) => {
            Verifier::ed25519(&public_key)
                .map_err(|e| ControlError::BadRequest(format!("ed25519_public_key: {e}")))?;
            let public_key = public_key.trim().to_string();
            (KeyKind::Ed25519 { public_key }, None)
        }
        None => (KeyKind::Hmac, Some(generate_token())),
    };
    let record = ApiKeyRecord {
        key: generate_token(),
        user_id: user_id.to_string(),
        permissions,
        kind,
        ip_allow: request
            .ip_allow
            .iter()
            .map(|s| s.trim().to_string())
            .collect(),
        disabled: false,
        created_at_ms: now_ms(),
        created_by: who.to_string(),
        revision: 0,
    };
    let revision = store
        .put_api_key(0, record.clone(), secret.as_deref(), who, "key.create")
        .await?;
    Ok(Created {
        record: ApiKeyRecord { revision, ..record },
        secret,
    })
}

/// Every key, without secrets, oldest first.
pub async fn list(store: &dyn ConfigStore) -> Result<Vec<ApiKeyRecord>, ControlError> {
    let mut keys: Vec<ApiKeyRecord> = store.api_keys().await?.into_values().collect();
    keys.sort_by(|a, b| (a.created_at_ms, &a.key).cmp(&(b.created_at_ms, &b.key)));
    Ok(keys)
}

/// Disables `key` for good (it stays listed, and in the audit log). Revoking a revoked key
/// changes nothing.
pub async fn revoke(
    store: &dyn ConfigStore,
    key: &str,
    who: &str,
) -> Result<ApiKeyRecord, ControlError> {
    let record = store
        .api_key(key)
        .await?
        .ok_or_else(|| ControlError::NotFound(format!("API key `{key}`")))?;
    if record.disabled {
        return Ok(record);
    }
    let replaces = record.revision;
    let revoked = ApiKeyRecord {
        disabled: true,
        ..record
    };
    let revision = store
        .put_api_key(replaces, revoked.clone(), None, who, "key.revoke")
        .await?;
    Ok(ApiKeyRecord {
        revision,
        ..revoked
    })
}
