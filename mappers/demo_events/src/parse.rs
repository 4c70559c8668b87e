//! Parsing an event payload of one expected type, ignoring events of other types.

use std::borrow::Cow;

use serde::Deserialize;

use crate::MapError;

/// Parses `payload` as an event of type `expected` (the value of its `type` field).
///
/// Returns `Ok(None)` for a well-formed event of another type, so a mapper can ignore it. The
/// event structs reject a foreign `type` as soon as they read it, so the common case of a
/// mapper receiving its channel's other event type costs one short parse plus one skim.
pub(crate) fn parse_event<'a, T: Deserialize<'a>>(
    payload: &'a [u8],
    expected: &str,
) -> Result<Option<T>, MapError> {
    match serde_json::from_slice(payload) {
        Ok(event) => Ok(Some(event)),
        Err(error) => match event_type(payload) {
            Some(kind) if kind != expected => Ok(None),
            _ => Err(MapError::InvalidInput(format!(
                "invalid `{expected}` event: {error}"
            ))),
        },
    }
}

/// Just the `type` field of an event.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

/// The `type` of a payload that is a JSON object with a string `type` field.
fn event_type(payload: &[u8]) -> Option<Cow<'_, str>> {
    serde_json::from_slice::<Head<'_>>(payload)
        .ok()
        .map(|head| head.kind)
}
