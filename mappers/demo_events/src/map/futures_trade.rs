//! `match` → one Binance USD-M futures `trade` per fill. Topic vars: `symbol`.

use crate::binance_futures::Trade;
use crate::events::{Match, MatchType, Side};
use crate::output::{symbol_var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// Maps a `match` payload to one futures `trade` payload per fill; other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    match parse_event::<Match<'_>>(payload, MatchType::TYPE)? {
        Some(event) => from_event(&event),
        None => Ok(Vec::new()),
    }
}

/// Maps a parsed `match` event.
pub fn from_event(event: &Match<'_>) -> Result<Vec<Output>, MapError> {
    let time = super::ms(event.ts_us);
    let vars = vec![symbol_var(event.symbol)];
    event
        .fills
        .iter()
        .map(|fill| {
            let trade = Trade {
                event_type: "trade",
                event_time: time,
                trade_time: time,
                symbol: event.symbol,
                trade_id: fill.trade_id,
                price: fill.price,
                qty: fill.qty,
                order_type: "MARKET",
                buyer_is_maker: event.taker_side == Side::Sell,
            };
            let capacity = 128 + event.symbol.len() + fill.price.len() + fill.qty.len();
            Output::json(vars.clone(), &trade, capacity)
        })
        .collect()
}
