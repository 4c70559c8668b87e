//! `match` → one HashKey public trade per fill. Topic vars: `symbol`.

use crate::decimal::trim_zeros;
use crate::events::{Match, MatchType, Side};
use crate::hashkey::{IdString, Trade};
use crate::output::{symbol_var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// Maps a `match` payload to one HashKey trade payload per fill; other events map to nothing.
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
                trade_id: IdString(fill.trade_id),
                time,
                price: trim_zeros(fill.price),
                qty: trim_zeros(fill.qty),
                buyer_is_maker: event.taker_side == Side::Sell,
            };
            let capacity = 80 + fill.price.len() + fill.qty.len();
            Output::json(vars.clone(), &trade, capacity)
        })
        .collect()
}
