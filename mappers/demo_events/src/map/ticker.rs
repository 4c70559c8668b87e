//! `ticker` → Binance `24hrTicker`. Topic vars: `symbol`.

use crate::binance;
use crate::events::{Ticker, TickerType};
use crate::output::{symbol_var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// Maps a `ticker` payload to one `24hrTicker` payload; other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    match parse_event::<Ticker<'_>>(payload, TickerType::TYPE)? {
        Some(event) => from_event(&event).map(|output| vec![output]),
        None => Ok(Vec::new()),
    }
}

/// Maps a parsed `ticker` event.
pub fn from_event(event: &Ticker<'_>) -> Result<Output, MapError> {
    let ticker = binance::Ticker {
        event_type: "24hrTicker",
        event_time: super::ms(event.ts_us),
        symbol: event.symbol,
        price_change: event.price_change,
        price_change_percent: event.price_change_percent,
        weighted_avg_price: event.weighted_avg_price,
        prev_close: event.prev_close,
        last: event.last,
        last_qty: event.last_qty,
        bid_price: event.bid_price,
        bid_qty: event.bid_qty,
        ask_price: event.ask_price,
        ask_qty: event.ask_qty,
        open: event.open,
        high: event.high,
        low: event.low,
        volume: event.volume,
        quote_volume: event.quote_volume,
        open_time: event.open_time_ms,
        close_time: event.close_time_ms,
        first_trade_id: event.first_trade_id,
        last_trade_id: event.last_trade_id,
        trade_count: event.trade_count,
    };
    Output::json(vec![symbol_var(event.symbol)], &ticker, 576)
}
