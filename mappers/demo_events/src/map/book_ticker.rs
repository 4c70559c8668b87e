//! `bbo` → Binance `bookTicker` (no event type or time). Topic vars: `symbol`.

use crate::binance::BookTicker;
use crate::events::{Bbo, BboType};
use crate::output::{symbol_var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// Maps a `bbo` payload to one `bookTicker` payload; other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    match parse_event::<Bbo<'_>>(payload, BboType::TYPE)? {
        Some(event) => from_event(&event).map(|output| vec![output]),
        None => Ok(Vec::new()),
    }
}

/// Maps a parsed `bbo` event.
pub fn from_event(event: &Bbo<'_>) -> Result<Output, MapError> {
    let ticker = BookTicker {
        update_id: event.update_id,
        symbol: event.symbol,
        bid_price: event.bid_price,
        bid_qty: event.bid_qty,
        ask_price: event.ask_price,
        ask_qty: event.ask_qty,
    };
    let capacity = 80
        + event.symbol.len()
        + event.bid_price.len()
        + event.bid_qty.len()
        + event.ask_price.len()
        + event.ask_qty.len();
    Output::json(vec![symbol_var(event.symbol)], &ticker, capacity)
}
