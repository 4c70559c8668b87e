//! `match` → one Binance `aggTrade` per run of consecutive fills sharing an `agg_id`.
//! Topic vars: `symbol`.

use crate::binance::AggTrade;
use crate::decimal::Fixed8;
use crate::events::{Fill, Match, MatchType, Side};
use crate::output::{symbol_var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// Maps a `match` payload to one `aggTrade` payload per aggregate; other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    match parse_event::<Match<'_>>(payload, MatchType::TYPE)? {
        Some(event) => from_event(&event),
        None => Ok(Vec::new()),
    }
}

/// Maps a parsed `match` event.
///
/// Consecutive fills with the same `agg_id` form one aggregate: its quantity is the exact sum of
/// theirs, `f`/`l` are the first and last trade ids. Fills of one aggregate must share a price.
pub fn from_event(event: &Match<'_>) -> Result<Vec<Output>, MapError> {
    let time = super::ms(event.ts_us);
    let vars = vec![symbol_var(event.symbol)];
    let mut outputs = Vec::new();
    let mut fills = event.fills.iter().peekable();
    while let Some(first) = fills.next() {
        let mut qty = parse_qty(first)?;
        let mut last = first;
        while let Some(fill) = fills.next_if(|fill| fill.agg_id == first.agg_id) {
            if fill.price != first.price {
                return Err(MapError::invalid_input(format!(
                    "agg_id {} has fills at prices {} and {}",
                    first.agg_id, first.price, fill.price
                )));
            }
            qty = qty.checked_add(parse_qty(fill)?).ok_or_else(|| {
                MapError::invalid_input(format!("agg_id {}: quantity overflow", first.agg_id))
            })?;
            last = fill;
        }
        let agg = AggTrade {
            event_type: "aggTrade",
            event_time: time,
            symbol: event.symbol,
            agg_id: first.agg_id,
            price: first.price,
            qty,
            first_trade_id: first.trade_id,
            last_trade_id: last.trade_id,
            trade_time: time,
            buyer_is_maker: event.taker_side == Side::Sell,
            ignore: true,
        };
        let capacity = 192 + event.symbol.len() + first.price.len();
        outputs.push(Output::json(vars.clone(), &agg, capacity)?);
    }
    Ok(outputs)
}

/// The quantity of a fill.
fn parse_qty(fill: &Fill<'_>) -> Result<Fixed8, MapError> {
    fill.qty
        .parse()
        .map_err(|e| MapError::invalid_input(format!("trade {}: qty: {e}", fill.trade_id)))
}
