//! `ticker` → Binance `24hrMiniTicker`. Topic vars: `symbol`.

use crate::binance::MiniTicker;
use crate::events::{Ticker, TickerType};
use crate::output::{symbol_var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// Maps a `ticker` payload to one `24hrMiniTicker` payload; other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    match parse_event::<Ticker<'_>>(payload, TickerType::TYPE)? {
        Some(event) => from_event(&event).map(|output| vec![output]),
        None => Ok(Vec::new()),
    }
}

/// Maps a parsed `ticker` event.
pub fn from_event(event: &Ticker<'_>) -> Result<Output, MapError> {
    let ticker = MiniTicker {
        event_type: "24hrMiniTicker",
        event_time: super::ms(event.ts_us),
        symbol: event.symbol,
        close: event.last,
        open: event.open,
        high: event.high,
        low: event.low,
        volume: event.volume,
        quote_volume: event.quote_volume,
    };
    Output::json(vec![symbol_var(event.symbol)], &ticker, 256)
}
