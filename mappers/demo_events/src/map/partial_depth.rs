//! `book_snapshot` → three Binance partial depth payloads, of 5, 10 and 20 levels.
//! Topic vars: `symbol`, `levels` (`5`, `10`, `20`), `speed` (`@100ms` or empty).

use crate::binance::PartialDepth;
use crate::events::{BookSnapshot, BookSnapshotType};
use crate::output::{symbol_var, var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// The partial depth sizes Binance serves, with their `levels` topic variable.
pub const LEVELS: [(usize, &str); 3] = [(5, "5"), (10, "10"), (20, "20")];

/// Maps a `book_snapshot` payload to one partial depth payload per size in [`LEVELS`]; other
/// events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    match parse_event::<BookSnapshot<'_>>(payload, BookSnapshotType::TYPE)? {
        Some(event) => from_event(&event),
        None => Ok(Vec::new()),
    }
}

/// Maps a parsed `book_snapshot` event; each side is truncated to the size (or kept whole when
/// shorter).
pub fn from_event(event: &BookSnapshot<'_>) -> Result<Vec<Output>, MapError> {
    let symbol = symbol_var(event.symbol);
    let speed = super::speed_var(event.window_ms)?;
    LEVELS
        .iter()
        .map(|&(levels, name)| {
            let bids = &event.bids[..levels.min(event.bids.len())];
            let asks = &event.asks[..levels.min(event.asks.len())];
            let depth = PartialDepth {
                last_update_id: event.last_update_id,
                bids,
                asks,
            };
            let vars = vec![symbol.clone(), var("levels", name), speed.clone()];
            let capacity = 64 + super::levels_json_len(bids) + super::levels_json_len(asks);
            Output::json(vars, &depth, capacity)
        })
        .collect()
}
