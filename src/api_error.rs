//! Binance error codes and texts that more than one part of the gateway answers with: the
//! WebSocket API, the listen-key endpoints, trade forwarding and the demo exchange.

/// `-1001`: the request could not be processed (the key store or the backend is away).
pub const INTERNAL: (i32, &str) = (
    -1001,
    "Internal error; unable to process your request. Please try again.",
);

/// `-1102`: parameter `name` was not sent, or is malformed.
pub fn missing_parameter(name: &str) -> (i32, String) {
    (
        -1102,
        format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
    )
}
