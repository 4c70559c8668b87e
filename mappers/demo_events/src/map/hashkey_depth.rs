//! `book_snapshot` of the 100 ms series → one HashKey depth snapshot (all levels of the event).
//! Topic vars: `symbol`.

use crate::decimal::trim_zeros;
use crate::events::{BookSnapshot, BookSnapshotType, Level};
use crate::hashkey::{Depth, IdString};
use crate::output::{symbol_var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// The snapshot series HashKey's depth topic follows; snapshots of other windows map to nothing.
pub const WINDOW_MS: u32 = 100;

/// Maps a `book_snapshot` payload of the 100 ms series to one depth payload; other windows and
/// other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    match parse_event::<BookSnapshot<'_>>(payload, BookSnapshotType::TYPE)? {
        Some(event) => from_event(&event),
        None => Ok(Vec::new()),
    }
}

/// Maps a parsed `book_snapshot` event, levels in the event's order.
pub fn from_event(event: &BookSnapshot<'_>) -> Result<Vec<Output>, MapError> {
    if event.window_ms != WINDOW_MS {
        return Ok(Vec::new());
    }
    let bids = trimmed(&event.bids);
    let asks = trimmed(&event.asks);
    let depth = Depth {
        event_type: 301,
        symbol: event.symbol,
        time: super::ms(event.ts_us),
        version: IdString(event.last_update_id),
        bids: &bids,
        asks: &asks,
        ignore: 0,
    };
    let capacity =
        96 + event.symbol.len() + super::levels_json_len(&bids) + super::levels_json_len(&asks);
    Ok(vec![Output::json(
        vec![symbol_var(event.symbol)],
        &depth,
        capacity,
    )?])
}

/// `levels` with trailing zeros trimmed from prices and quantities.
fn trimmed<'a>(levels: &[Level<'a>]) -> Vec<Level<'a>> {
    levels
        .iter()
        .map(|[price, qty]| [trim_zeros(price), trim_zeros(qty)])
        .collect()
}
