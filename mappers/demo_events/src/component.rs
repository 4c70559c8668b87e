//! The component shell every example mapper shares.

/// Makes the calling crate a mapper component whose `map-batch` applies `$map` (a
/// `fn(&[u8]) -> Result<Vec<Output>, MapError>` from [`map`](crate::map)) to each event's
/// payload. The calling crate must depend on `wit-bindgen` and sit in `mappers/<name>/`, so that
/// `../../wit` is the contract.
///
/// ```ignore
/// demo_events::binance_mapper!(demo_events::map::trade::map);
/// ```
#[macro_export]
macro_rules! binance_mapper {
    ($map:path) => {
        ::wit_bindgen::generate!({
            path: "../../wit",
            world: "event-mapper",
        });

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
                    .map(|event| match $map(&event.payload) {
                        Ok(outputs) => Ok(outputs
                            .into_iter()
                            .map(|output| Output {
                                topic_vars: output.topic_vars,
                                user_id: output.user_id,
                                payload: output.payload,
                            })
                            .collect()),
                        Err($crate::MapError::InvalidInput(message)) => {
                            Err(MapError::InvalidInput(message))
                        }
                        Err($crate::MapError::Internal(message)) => Err(MapError::Internal(message)),
                    })
                    .collect()
            }
        }

        export!(Mapper);
    };
}
