//! The mapper output, mirroring the WIT `output` record, and JSON encoding helpers.

use serde::Serialize;

use crate::MapError;

/// One message for clients, mirroring the WIT `output` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Values for the placeholders of the mapping's topic templates, e.g. `("symbol", "btcusdt")`.
    pub topic_vars: Vec<(String, String)>,
    /// The user a private event is for; `None` for public streams.
    pub user_id: Option<String>,
    /// The client payload: one JSON value in the Binance Spot format.
    pub payload: String,
}

impl Output {
    /// Encodes `payload` as JSON into a buffer pre-sized to `capacity` bytes.
    pub(crate) fn json<T: Serialize>(
        topic_vars: Vec<(String, String)>,
        payload: &T,
        capacity: usize,
    ) -> Result<Self, MapError> {
        let mut buf = Vec::with_capacity(capacity);
        serde_json::to_writer(&mut buf, payload)
            .map_err(|e| MapError::Internal(format!("cannot encode payload: {e}")))?;
        let payload = String::from_utf8(buf)
            .map_err(|e| MapError::Internal(format!("payload is not UTF-8: {e}")))?;
        Ok(Self {
            topic_vars,
            user_id: None,
            payload,
        })
    }
}

/// The `symbol` topic variable: the symbol in lowercase, as in Binance stream names.
pub(crate) fn symbol_var(symbol: &str) -> (String, String) {
    ("symbol".to_owned(), symbol.to_ascii_lowercase())
}

/// A topic variable with a static name.
pub(crate) fn var(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}
