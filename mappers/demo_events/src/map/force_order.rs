//! `liquidation` → Binance USD-M `forceOrder`. Topic vars: `symbol`.

use crate::binance_futures::{ForceOrder, ForceOrderData};
use crate::events::{Liquidation, LiquidationType};
use crate::output::{symbol_var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// Maps a `liquidation` payload to one `forceOrder` payload; other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    match parse_event::<Liquidation<'_>>(payload, LiquidationType::TYPE)? {
        Some(event) => from_event(&event),
        None => Ok(Vec::new()),
    }
}

/// Maps a parsed `liquidation` event: a `LIMIT` `IOC` order filled in full.
pub fn from_event(event: &Liquidation<'_>) -> Result<Vec<Output>, MapError> {
    let time = super::ms(event.ts_us);
    let order = ForceOrder {
        event_type: "forceOrder",
        event_time: time,
        order: ForceOrderData {
            symbol: event.symbol,
            side: event.side.as_str(),
            order_type: "LIMIT",
            time_in_force: "IOC",
            qty: event.qty,
            price: event.price,
            avg_price: event.avg_price,
            status: "FILLED",
            last_filled_qty: event.qty,
            filled_qty: event.qty,
            trade_time: time,
        },
    };
    let capacity =
        160 + event.symbol.len() + 3 * event.qty.len() + event.price.len() + event.avg_price.len();
    Ok(vec![Output::json(
        vec![symbol_var(event.symbol)],
        &order,
        capacity,
    )?])
}
