//! How a session ends, and why its serving loop returns.

use super::super::dialect::Closing;

/// How a session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ending {
    /// The gateway closes; with `linger`, it waits (briefly) for its last frames to go out and
    /// for the client's close. Boxed: a session's state carries room for its ending all its
    /// life, and a close is rare.
    Close { closing: Box<Closing>, linger: bool },
    /// The client sent a close frame (with this code, if any).
    ClientClosed(Option<u16>),
    /// The socket ended without a close handshake.
    Dropped,
}

/// Why the session's serving loop returned.
pub(super) enum Served {
    /// The connection ends.
    Ended(Ending),
    /// Nothing to do, the socket lent to the lanes: the session may park.
    Idle,
}

impl Ending {
    /// The close code this ending is counted under (1005: no code given, 1006: no close frame).
    pub(super) fn code(&self) -> u16 {
        match self {
            Ending::Close { closing, .. } => closing.code,
            Ending::ClientClosed(code) => code.unwrap_or(1005),
            Ending::Dropped => 1006,
        }
    }

    /// The `code` label of `wsgate_closes_total`: the gateway's own codes and the standard ones
    /// as themselves; the codes a client may choose freely (3000–4999) as one value each range,
    /// so clients cannot create series.
    pub(super) fn label(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Ending::ClientClosed(Some(3000..=3999)) => "3xxx".into(),
            Ending::ClientClosed(Some(4000..=4999)) => "4xxx".into(),
            other => other.code().to_string().into(),
        }
    }
}
