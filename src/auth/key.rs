//! A key as authentication uses it: its record, checked against the permission a request needs
//! and the address it comes from, and its verifier.

use std::net::IpAddr;

use ipnet::IpNet;
use rand::Rng;

use super::signature::{BadPublicKey, Verifier};
use crate::config::store::{ApiKeyRecord, KeyKind, Permission};

/// Why a key was refused, with Binance's code and text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The key is malformed.
    #[error("API-key format invalid.")]
    Format,
    /// Unknown or disabled key, an address it may not be used from, or a permission it lacks.
    #[error("Invalid API-key, IP, or permissions for action.")]
    Refused,
}

impl AuthError {
    /// Binance's error code.
    pub fn code(&self) -> i32 {
        match self {
            AuthError::Format => -2014,
            AuthError::Refused => -2015,
        }
    }
}

/// Addresses and networks a key may be used from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAllowList(Vec<IpNet>);

impl IpAllowList {
    /// Parses `entries` (`203.0.113.7`, `10.0.0.0/8`, `2001:db8::/32`); the error names the
    /// entry that is neither an address nor a network.
    pub fn parse(entries: &[String]) -> Result<IpAllowList, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{entry}` is not an IP address or network"))
            })
            .collect::<Result<_, _>>()
            .map(IpAllowList)
    }

    /// True when the list is empty or one of its networks holds `address`.
    pub fn allows(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.0.is_empty() || self.0.iter().any(|net| net.contains(&address))
    }
}

/// An API key ready to authenticate requests.
#[derive(Debug, Clone)]
pub struct ApiKey {
    record: ApiKeyRecord,
    allowed: IpAllowList,
    verifier: Verifier,
}

impl ApiKey {
    /// The key of `record`, with `secret` for an HMAC key.
    pub fn new(record: ApiKeyRecord, secret: Option<&str>) -> Result<ApiKey, String> {
        let verifier = match &record.kind {
            KeyKind::Hmac => Verifier::Hmac(
                secret
                    .ok_or_else(|| format!("HMAC key `{}` has no stored secret", record.key))?
                    .as_bytes()
                    .to_vec(),
            ),
            KeyKind::Ed25519 { public_key } => {
                Verifier::ed25519(public_key).map_err(|e: BadPublicKey| e.to_string())?
            }
        };
        let allowed = IpAllowList::parse(&record.ip_allow)?;
        Ok(ApiKey {
            record,
            allowed,
            verifier,
        })
    }

    /// The user the key acts for.
    pub fn user_id(&self) -> &str {
        &self.record.user_id
    }

    /// The key's record.
    pub fn record(&self) -> &ApiKeyRecord {
        &self.record
    }

    /// How its signatures are checked.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Whether the key may be used for `permission` from `peer`.
    pub fn authorize(&self, permission: Permission, peer: IpAddr) -> Result<(), AuthError> {
        let allowed = !self.record.disabled
            && self.record.permissions.contains(&permission)
            && self.allowed.allows(peer);
        if allowed {
            Ok(())
        } else {
            Err(AuthError::Refused)
        }
    }
}

/// A new random token of 64 alphanumeric characters (about 381 bits), the shape of an exchange's
/// API keys and listen keys: an API key, an HMAC secret or a listen key. No `-` or `_`, so a token
/// never reads as a command-line flag and needs no quoting in a URL path.
pub fn generate_token() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(64)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: KeyKind, ip_allow: &[&str]) -> ApiKeyRecord {
        ApiKeyRecord {
            key: "k".into(),
            user_id: "alice".into(),
            permissions: vec![Permission::UserStream],
            kind,
            ip_allow: ip_allow.iter().map(|s| s.to_string()).collect(),
            disabled: false,
            created_at_ms: 0,
            created_by: "test".into(),
            revision: 1,
        }
    }

    #[test]
    fn tokens_are_64_alphanumeric_characters_and_differ() {
        let (a, b) = (generate_token(), generate_token());
        assert_eq!(a.len(), 64);
        // Many draws, so a leading `-` (which a CLI would read as a flag) would show up here.
        for token in std::iter::repeat_with(generate_token).take(2000) {
            assert!(token.bytes().all(|c| c.is_ascii_alphanumeric()), "{token}");
        }
        assert_ne!(a, b);
    }

    #[test]
    fn a_key_works_only_for_its_permissions_addresses_and_while_enabled() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let key = ApiKey::new(record(KeyKind::Hmac, &[]), Some("s")).unwrap();
        assert_eq!(key.authorize(Permission::UserStream, local), Ok(()));
        assert_eq!(
            key.authorize(Permission::Trade, local),
            Err(AuthError::Refused)
        );
        let bound = ApiKey::new(
            record(KeyKind::Hmac, &["10.0.0.0/8", "192.0.2.7"]),
            Some("s"),
        );
        let bound = bound.unwrap();
        assert_eq!(
            bound.authorize(Permission::UserStream, "10.1.2.3".parse().unwrap()),
            Ok(())
        );
        assert_eq!(
            bound.authorize(Permission::UserStream, "::ffff:192.0.2.7".parse().unwrap()),
            Ok(())
        );
        assert_eq!(
            bound.authorize(Permission::UserStream, local),
            Err(AuthError::Refused)
        );
        let mut disabled = record(KeyKind::Hmac, &[]);
        disabled.disabled = true;
        let disabled = ApiKey::new(disabled, Some("s")).unwrap();
        assert_eq!(
            disabled.authorize(Permission::UserStream, local),
            Err(AuthError::Refused)
        );
        assert_eq!(AuthError::Refused.code(), -2015);
    }

    #[test]
    fn bad_material_is_refused_with_a_reason() {
        assert!(ApiKey::new(record(KeyKind::Hmac, &[]), None).is_err());
        let bad_key = KeyKind::Ed25519 {
            public_key: "nope".into(),
        };
        assert!(ApiKey::new(record(bad_key, &[]), None).is_err());
        let message = IpAllowList::parse(&["10.0.0.0/33".to_string()]).unwrap_err();
        assert!(message.contains("10.0.0.0/33"), "{message}");
    }
}
