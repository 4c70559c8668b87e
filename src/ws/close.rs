//! Close codes the gateway sends: RFC 6455's and the gateway's own bands (4000–4099 terminal,
//! 4100–4199 reconnect with backoff, 4200–4299 reconnect now).

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// Server going away (shutdown, drain, lifetime reached): reconnect.
pub const GOING_AWAY: u16 = 1001;
/// Protocol error.
pub const PROTOCOL: u16 = 1002;
/// Unsupported data (binary frame on a JSON connection).
pub const UNSUPPORTED: u16 = 1003;
/// Invalid payload data (text that is not UTF-8).
pub const INVALID_DATA: u16 = 1007;
/// Policy violation (rate limit, invalid JSON, missed pongs).
pub const POLICY: u16 = 1008;
/// Message too big.
pub const TOO_BIG: u16 = 1009;
/// Internal error.
pub const INTERNAL: u16 = 1011;
/// The listen key the connection was opened with expired (terminal: create a new one).
pub const LISTEN_KEY_EXPIRED: u16 = 4001;
/// The listen key the connection was opened with was revoked (terminal).
pub const LISTEN_KEY_REVOKED: u16 = 4002;
/// A config change removed every stream the connection held (terminal: the same URL or
/// subscription is refused until the operator declares the streams again).
pub const STREAM_REMOVED: u16 = 4003;
/// Slow consumer: the client did not read fast enough; reconnect with backoff.
pub const SLOW_CONSUMER: u16 = 4100;
