//! `book_delta` → Binance `depthUpdate`. Topic vars: `symbol`, `speed` (`@100ms` or empty).

use crate::binance::DepthUpdate;
use crate::events::{BookDelta, BookDeltaType};
use crate::output::{symbol_var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// Maps a `book_delta` payload to one `depthUpdate` payload; other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    match parse_event::<BookDelta<'_>>(payload, BookDeltaType::TYPE)? {
        Some(event) => from_event(&event).map(|output| vec![output]),
        None => Ok(Vec::new()),
    }
}

/// Maps a parsed `book_delta` event.
pub fn from_event(event: &BookDelta<'_>) -> Result<Output, MapError> {
    let vars = vec![symbol_var(event.symbol), super::speed_var(event.window_ms)?];
    let update = DepthUpdate {
        event_type: "depthUpdate",
        event_time: super::ms(event.ts_us),
        symbol: event.symbol,
        first_update_id: event.first_update_id,
        final_update_id: event.last_update_id,
        bids: &event.bids,
        asks: &event.asks,
    };
    let capacity = 112
        + event.symbol.len()
        + super::levels_json_len(&event.bids)
        + super::levels_json_len(&event.asks);
    Output::json(vars, &update, capacity)
}
