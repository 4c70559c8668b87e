//! `mark_price` → Binance USD-M `markPriceUpdate`, for the 1-second stream and, every third
//! second, the 3-second one. Topic vars: `symbol`, `mark_speed` (`@1s` or empty).

use crate::binance_futures::MarkPriceUpdate;
use crate::events::{MarkPrice, MarkPriceType};
use crate::output::{symbol_var, var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// Maps a `mark_price` payload to one `markPriceUpdate` with `mark_speed` = `@1s`, plus the same
/// payload with `mark_speed` empty when the event's second (`time_ms / 1000`) is a multiple of 3;
/// other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    match parse_event::<MarkPrice<'_>>(payload, MarkPriceType::TYPE)? {
        Some(event) => from_event(&event),
        None => Ok(Vec::new()),
    }
}

/// Whether the 3-second stream gets the update of the event at `time_ms`.
#[must_use]
pub fn on_3s_stream(time_ms: u64) -> bool {
    (time_ms / 1000) % 3 == 0
}

/// Maps a parsed `mark_price` event.
pub fn from_event(event: &MarkPrice<'_>) -> Result<Vec<Output>, MapError> {
    let update = MarkPriceUpdate {
        event_type: "markPriceUpdate",
        event_time: event.time_ms,
        symbol: event.symbol,
        mark_price: event.mark_price,
        mark_price_avg: event.mark_price_avg,
        estimated_settle_price: event.estimated_settle_price,
        index_price: event.index_price,
        funding_rate: event.funding_rate,
        next_funding_time: event.next_funding_time_ms,
    };
    let capacity = 160
        + event.symbol.len()
        + event.mark_price.len()
        + event.mark_price_avg.len()
        + event.estimated_settle_price.len()
        + event.index_price.len()
        + event.funding_rate.len();
    let symbol = symbol_var(event.symbol);
    let one_second = Output::json(
        vec![symbol.clone(), var("mark_speed", "@1s")],
        &update,
        capacity,
    )?;
    if !on_3s_stream(event.time_ms) {
        return Ok(vec![one_second]);
    }
    let three_seconds = Output {
        topic_vars: vec![symbol, var("mark_speed", "")],
        user_id: None,
        payload: one_second.payload.clone(),
    };
    Ok(vec![one_second, three_seconds])
}
