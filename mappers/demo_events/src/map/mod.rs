//! The pure mappings from demo-market events to client payloads (Binance Spot, Binance USD-M
//! futures, HashKey), one module per mapper.
//!
//! Each module has `pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError>`, which parses
//! one event payload, returns an empty list for an event of another type, and returns
//! [`MapError::InvalidInput`] for malformed input.

pub mod agg_trade;
pub mod book_ticker;
pub mod depth;
pub mod force_order;
pub mod futures_trade;
pub mod hashkey_depth;
pub mod hashkey_realtimes;
pub mod hashkey_trade;
pub mod hashkey_user_data;
pub mod kline;
pub mod mark_price;
pub mod mini_ticker;
pub mod partial_depth;
pub mod ticker;
pub mod trade;
pub mod user_data;

use crate::events::{Fill, Level, Match, MatchType};
use crate::output::{symbol_var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// One output per fill of a `match` payload: `payload` builds each from the event, the fill, the
/// event time in ms and the topic vars (`symbol`). Other events map to nothing.
fn per_fill(
    payload: &[u8],
    build: impl Fn(&Match<'_>, &Fill<'_>, u64, Vec<(String, String)>) -> Result<Output, MapError>,
) -> Result<Vec<Output>, MapError> {
    let Some(event) = parse_event::<Match<'_>>(payload, MatchType::TYPE)? else {
        return Ok(Vec::new());
    };
    let time = ms(event.ts_us);
    let vars = vec![symbol_var(event.symbol)];
    event
        .fills
        .iter()
        .map(|fill| build(&event, fill, time, vars.clone()))
        .collect()
}

/// Microseconds to whole milliseconds, as Binance's `E` and `T`.
fn ms(ts_us: u64) -> u64 {
    ts_us / 1000
}

/// The `speed` topic variable of a depth stream: `@100ms` or empty for the 1000 ms stream.
fn speed_var(window_ms: u32) -> Result<(String, String), MapError> {
    let speed = match window_ms {
        100 => "@100ms",
        1000 => "",
        other => {
            return Err(MapError::invalid_input(format!(
                "window_ms is {other}, expected 100 or 1000"
            )))
        }
    };
    Ok(crate::output::var("speed", speed))
}

/// An upper bound of the JSON length of `levels` (`["p","q"],` per level).
fn levels_json_len(levels: &[Level<'_>]) -> usize {
    levels.iter().map(|[p, q]| p.len() + q.len() + 8).sum()
}
