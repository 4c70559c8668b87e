//! `match` → one Binance `trade` per fill. Topic vars: `symbol`.

use crate::binance::Trade;
use crate::events::Side;
use crate::output::Output;
use crate::MapError;

/// Maps a `match` payload to one `trade` payload per fill; other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    super::per_fill(payload, |event, fill, time, vars| {
        let trade = Trade {
            event_type: "trade",
            event_time: time,
            symbol: event.symbol,
            trade_id: fill.trade_id,
            price: fill.price,
            qty: fill.qty,
            trade_time: time,
            buyer_is_maker: event.taker_side == Side::Sell,
            ignore: true,
        };
        let capacity = 128 + event.symbol.len() + fill.price.len() + fill.qty.len();
        Output::json(vars, &trade, capacity)
    })
}
