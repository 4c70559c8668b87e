//! `kline` → Binance `kline`. Topic vars: `symbol`, `interval`.

use crate::binance::{Kline, KlineData};
use crate::events::{self, KlineType};
use crate::output::{symbol_var, var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// Maps a `kline` payload to one `kline` payload; other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    match parse_event::<events::Kline<'_>>(payload, KlineType::TYPE)? {
        Some(event) => from_event(&event).map(|output| vec![output]),
        None => Ok(Vec::new()),
    }
}

/// Maps a parsed `kline` event.
pub fn from_event(event: &events::Kline<'_>) -> Result<Output, MapError> {
    let kline = Kline {
        event_type: "kline",
        event_time: super::ms(event.ts_us),
        symbol: event.symbol,
        kline: KlineData {
            start_time: event.open_time_ms,
            close_time: event.close_time_ms,
            symbol: event.symbol,
            interval: event.interval,
            first_trade_id: event.first_trade_id,
            last_trade_id: event.last_trade_id,
            open: event.open,
            close: event.close,
            high: event.high,
            low: event.low,
            volume: event.volume,
            trades: event.trades,
            closed: event.closed,
            quote_volume: event.quote_volume,
            taker_buy_volume: event.taker_buy_volume,
            taker_buy_quote_volume: event.taker_buy_quote_volume,
            ignore: "0",
        },
    };
    let vars = vec![symbol_var(event.symbol), var("interval", event.interval)];
    Output::json(vars, &kline, 448)
}
