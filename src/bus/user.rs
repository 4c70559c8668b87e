//! How a user's private events are addressed on the bus: each goes to its stream's fanout
//! subject followed by one token naming the user, so a node subscribes to exactly the users
//! connected to it and never receives anyone else's events.

use sha2::{Digest, Sha256};

/// Longest user id the gateway accepts (the same bound the key store puts on key owners).
pub const MAX_USER_ID: usize = 128;

/// True for a user id the gateway routes: 1 to [`MAX_USER_ID`] bytes, no whitespace or control
/// characters.
pub fn is_user_id(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_USER_ID
        && !user.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The subject a private event of `user` is published on: `base.<token>`. The token is the user
/// id itself when it is a plain NATS token (letters, digits, `-`, `_`, at most 64), else `h`
/// and the first 32 hex digits of its SHA-256 (two users sharing a subject would still only see
/// their own events: the hub matches the user id carried by each message).
pub fn user_subject(base: &str, user: &str) -> String {
    let plain = user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        format!("{base}.{user}")
    } else {
        let digest = Sha256::digest(user.as_bytes());
        format!("{base}.h{}", hex::encode(&digest[..16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_are_their_own_token_and_others_are_hashed() {
        assert_eq!(user_subject("user.data", "alice"), "user.data.alice");
        assert_eq!(user_subject("user.data", "u-42_x"), "user.data.u-42_x");
        let hashed = user_subject("user.data", "alice@example.com");
        assert!(hashed.starts_with("user.data.h"), "{hashed}");
        assert_eq!(hashed.len(), "user.data.h".len() + 32);
        assert_ne!(hashed, user_subject("user.data", "bob@example.com"));
        assert!(crate::config::is_subject(&hashed));
    }

    #[test]
    fn user_ids_are_bounded_and_printable() {
        assert!(is_user_id("alice"));
        assert!(is_user_id("alice@example.com"));
        assert!(!is_user_id(""));
        assert!(!is_user_id("two words"));
        assert!(!is_user_id(&"x".repeat(MAX_USER_ID + 1)));
    }
}
