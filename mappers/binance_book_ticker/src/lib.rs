//! wsgate mapper component: demo `bbo` events to Binance `bookTicker` payloads.
//!
//! A thin shell over [`demo_events::map::book_ticker`], where the mapping and its tests live.

wit_bindgen::generate!({
    path: "../../wit",
    world: "event-mapper",
});

use demo_events::map::book_ticker;
use exports::wsgate::mapper::mapper::{Event, Guest, MapError, Output};
use wsgate::mapper::host::{log, Level};

/// The exported mapper.
struct Mapper;

impl Guest for Mapper {
    /// Takes no parameters: logs a warning for each one and ignores it.
    fn init(params: Vec<(String, String)>) -> Result<(), MapError> {
        for (name, _) in &params {
            log(Level::Warn, &format!("ignoring unknown param `{name}`"));
        }
        Ok(())
    }

    fn map_batch(events: Vec<Event>) -> Vec<Result<Vec<Output>, MapError>> {
        events
            .iter()
            .map(|event| to_wit(book_ticker::map(&event.payload)))
            .collect()
    }
}

/// Converts a mapping result to the WIT types.
fn to_wit(
    result: Result<Vec<demo_events::Output>, demo_events::MapError>,
) -> Result<Vec<Output>, MapError> {
    match result {
        Ok(outputs) => Ok(outputs
            .into_iter()
            .map(|output| Output {
                topic_vars: output.topic_vars,
                user_id: None,
                payload: output.payload,
            })
            .collect()),
        Err(demo_events::MapError::InvalidInput(message)) => Err(MapError::InvalidInput(message)),
        Err(demo_events::MapError::Internal(message)) => Err(MapError::Internal(message)),
    }
}

export!(Mapper);
