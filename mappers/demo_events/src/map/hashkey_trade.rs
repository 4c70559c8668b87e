//! `match` → one HashKey public trade per fill. Topic vars: `symbol`.

use crate::decimal::trim_zeros;
use crate::events::Side;
use crate::hashkey::{IdString, Trade};
use crate::output::Output;
use crate::MapError;

/// Maps a `match` payload to one HashKey trade payload per fill; other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    super::per_fill(payload, |event, fill, time, vars| {
        let trade = Trade {
            trade_id: IdString(fill.trade_id),
            time,
            price: trim_zeros(fill.price),
            qty: trim_zeros(fill.qty),
            buyer_is_maker: event.taker_side == Side::Sell,
        };
        Output::json(vars, &trade, 80 + fill.price.len() + fill.qty.len())
    })
}
