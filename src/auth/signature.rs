//! Signed requests as Binance's WebSocket API checks them (`docs/binance-protocol.md` §6):
//! the signature covers every parameter but `signature`, sorted by name, written `k=v` and joined
//! by `&`; it is HMAC-SHA256 in hex for a secret key, Ed25519 in base64 for a public key; and
//! `timestamp` must fall within `recvWindow` (default 5,000 ms, at most 60,000) of the node's
//! clock, and no more than one second ahead of it.

use base64::Engine;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `recvWindow` when a request names none, in ms.
pub const DEFAULT_RECV_WINDOW_MS: u64 = 5_000;
/// The largest `recvWindow` accepted, in ms.
pub const MAX_RECV_WINDOW_MS: u64 = 60_000;
/// How far ahead of the node's clock a `timestamp` may be, in ms.
pub const MAX_AHEAD_MS: u64 = 1_000;

/// How a key's requests are signed.
#[derive(Clone)]
pub enum Verifier {
    /// HMAC-SHA256 with this secret; signatures in lowercase or uppercase hex.
    Hmac(Vec<u8>),
    /// Ed25519 with this public key; signatures in standard base64.
    Ed25519(VerifyingKey),
}

impl std::fmt::Debug for Verifier {
    /// Never shows the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verifier::Hmac(_) => f.write_str("Verifier::Hmac(..)"),
            Verifier::Ed25519(key) => write!(f, "Verifier::Ed25519({key:?})"),
        }
    }
}

/// Why a signed request was refused, with Binance's code and text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature does not match (or is not hex / base64 at all).
    #[error("Signature for this request is not valid.")]
    Invalid,
    /// `timestamp` is more than one second ahead of the node's clock.
    #[error("Timestamp for this request was 1000ms ahead of the server's time.")]
    Ahead,
    /// `timestamp` is older than `recvWindow`.
    #[error("Timestamp for this request is outside of the recvWindow.")]
    Outside,
    /// `recvWindow` is above the maximum.
    #[error("recvWindow must be less than 60000")]
    RecvWindowTooLarge,
}

impl SignatureError {
    /// Binance's error code.
    pub fn code(&self) -> i32 {
        match self {
            SignatureError::Invalid => -1022,
            SignatureError::Ahead | SignatureError::Outside => -1021,
            SignatureError::RecvWindowTooLarge => -1131,
        }
    }
}

/// Why a public key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an Ed25519 public key: expected PEM (\"-----BEGIN PUBLIC KEY-----\") or 32 bytes in base64")]
pub struct BadPublicKey;

impl Verifier {
    /// The Ed25519 verifier of a public key given as PEM (SubjectPublicKeyInfo, as Binance
    /// takes them) or as its 32 raw bytes in base64.
    pub fn ed25519(public_key: &str) -> Result<Verifier, BadPublicKey> {
        let text = public_key.trim();
        if text.starts_with("-----BEGIN") {
            return VerifyingKey::from_public_key_pem(text)
                .map(Verifier::Ed25519)
                .map_err(|_| BadPublicKey);
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| BadPublicKey)?;
        let bytes: [u8; 32] = raw.try_into().map_err(|_| BadPublicKey)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Verifier::Ed25519)
            .map_err(|_| BadPublicKey)
    }

    /// Checks `signature` over `payload` (see [`payload`]).
    pub fn verify(&self, payload: &str, signature: &str) -> Result<(), SignatureError> {
        match self {
            Verifier::Hmac(secret) => {
                let expected = hex::decode(signature).map_err(|_| SignatureError::Invalid)?;
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
                mac.update(payload.as_bytes());
                mac.verify_slice(&expected)
                    .map_err(|_| SignatureError::Invalid)
            }
            Verifier::Ed25519(key) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(signature)
                    .map_err(|_| SignatureError::Invalid)?;
                let signature =
                    Signature::from_slice(&bytes).map_err(|_| SignatureError::Invalid)?;
                key.verify_strict(payload.as_bytes(), &signature)
                    .map_err(|_| SignatureError::Invalid)
            }
        }
    }
}

/// What a request's signature covers: its parameters but `signature`, sorted by name, `k=v`
/// joined by `&`.
pub fn payload<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(name, _)| *name != "signature")
        .collect();
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Checks that a request made at `timestamp_ms` with `recv_window_ms` (if it named one) is
/// within its window of `now_ms`.
pub fn check_timestamp(
    timestamp_ms: u64,
    recv_window_ms: Option<u64>,
    now_ms: u64,
) -> Result<(), SignatureError> {
    let window = recv_window_ms.unwrap_or(DEFAULT_RECV_WINDOW_MS);
    if window > MAX_RECV_WINDOW_MS {
        return Err(SignatureError::RecvWindowTooLarge);
    }
    if timestamp_ms >= now_ms + MAX_AHEAD_MS {
        return Err(SignatureError::Ahead);
    }
    if now_ms.saturating_sub(timestamp_ms) > window {
        return Err(SignatureError::Outside);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binance's documented HMAC example (WebSocket API, "SIGNED request example (HMAC)").
    const HMAC_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    const HMAC_PARAMS: [(&str, &str); 10] = [
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.01000000"),
        ("price", "52000.00"),
        ("newOrderRespType", "ACK"),
        ("recvWindow", "100"),
        ("timestamp", "1645423376532"),
        (
            "apiKey",
            "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
        ),
    ];
    const HMAC_SIGNATURE: &str = "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a";

    /// An Ed25519 key (private seed 00 01 .. 1f) and its signature over `ED_PAYLOAD`, made with
    /// Python's `cryptography`.
    const ED_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n-----END PUBLIC KEY-----\n";
    const ED_PUBLIC_RAW: &str = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
    const ED_PAYLOAD: &str = "apiKey=demo-ed25519&timestamp=1767000000000";
    const ED_SIGNATURE: &str =
        "AGSTp7dJIL0O+HYmUJOSMvkjNV4JpS1fJ1NZQrJEePGTSSXPyzxaZuYoLYQia8n1K9bElpDMtxSEhN6GEC8vCA==";

    #[test]
    fn the_payload_is_every_parameter_but_the_signature_sorted_by_name() {
        let mut params = HMAC_PARAMS.to_vec();
        params.push(("signature", "ignored"));
        assert_eq!(
            payload(params),
            "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&\
             newOrderRespType=ACK&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&\
             symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
        );
    }

    #[test]
    fn binances_hmac_example_verifies_and_a_changed_byte_does_not() {
        let verifier = Verifier::Hmac(HMAC_SECRET.as_bytes().to_vec());
        let signed = payload(HMAC_PARAMS);
        assert_eq!(verifier.verify(&signed, HMAC_SIGNATURE), Ok(()));
        assert_eq!(
            verifier.verify(&signed, &HMAC_SIGNATURE.to_uppercase()),
            Ok(())
        );
        let tampered = signed.replace("SELL", "BUY");
        assert_eq!(
            verifier.verify(&tampered, HMAC_SIGNATURE),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verifier.verify(&signed, "not hex"),
            Err(SignatureError::Invalid)
        );
        let wrong_secret = Verifier::Hmac(b"another secret".to_vec());
        assert_eq!(
            wrong_secret.verify(&signed, HMAC_SIGNATURE),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn ed25519_keys_read_from_pem_or_raw_base64_and_verify() {
        for key in [ED_PUBLIC_PEM, ED_PUBLIC_RAW] {
            let verifier = Verifier::ed25519(key).unwrap();
            assert_eq!(verifier.verify(ED_PAYLOAD, ED_SIGNATURE), Ok(()));
            assert_eq!(
                verifier.verify("apiKey=demo-ed25519&timestamp=1767000000001", ED_SIGNATURE),
                Err(SignatureError::Invalid)
            );
            assert_eq!(
                verifier.verify(ED_PAYLOAD, "@@@"),
                Err(SignatureError::Invalid)
            );
        }
        assert_eq!(Verifier::ed25519("not a key").unwrap_err(), BadPublicKey);
        assert_eq!(Verifier::ed25519("AAAA").unwrap_err(), BadPublicKey);
    }

    #[test]
    fn timestamps_must_fall_within_the_window() {
        let now = 1_767_000_000_000;
        assert_eq!(check_timestamp(now, None, now), Ok(()));
        assert_eq!(check_timestamp(now - 5_000, None, now), Ok(()));
        assert_eq!(
            check_timestamp(now - 5_001, None, now),
            Err(SignatureError::Outside)
        );
        assert_eq!(check_timestamp(now - 59_000, Some(60_000), now), Ok(()));
        assert_eq!(
            check_timestamp(now - 100, Some(60_001), now),
            Err(SignatureError::RecvWindowTooLarge)
        );
        assert_eq!(check_timestamp(now + 999, None, now), Ok(()));
        assert_eq!(
            check_timestamp(now + 1_000, None, now),
            Err(SignatureError::Ahead)
        );
        assert_eq!(SignatureError::Ahead.code(), -1021);
        assert_eq!(SignatureError::Invalid.code(), -1022);
    }
}
