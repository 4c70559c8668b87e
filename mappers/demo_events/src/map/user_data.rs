//! `binance_user_data`: an account event addressed to one user,
//! `{"user_id":"alice","event":{"e":"executionReport",..}}`, becomes that user's private
//! payload, the event's JSON text kept byte for byte (Binance's field order included).
//!
//! An envelope without `user_id` still yields its event, with no user: the gateway counts such
//! an output of a private stream as a mapper error and delivers it to nobody.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{MapError, Output};

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    user_id: Option<&'a str>,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// Maps one account-event envelope.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    let envelope: Envelope<'_> = serde_json::from_slice(payload)
        .map_err(|e| MapError::invalid_input(format!("not a user-data envelope: {e}")))?;
    Ok(vec![Output {
        topic_vars: Vec::new(),
        user_id: envelope.user_id.map(str::to_owned),
        payload: envelope.event.get().to_owned(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_goes_to_its_user_verbatim() {
        let out = map(
            br#"{"user_id":"alice","event":{"e":"balanceUpdate","E":1,"a":"BTC","d":"1.5","T":2}}"#,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].user_id.as_deref(), Some("alice"));
        assert_eq!(
            out[0].payload,
            r#"{"e":"balanceUpdate","E":1,"a":"BTC","d":"1.5","T":2}"#
        );
    }

    #[test]
    fn a_missing_user_is_passed_on_and_garbage_refused() {
        let out = map(br#"{"event":{"e":"balanceUpdate"}}"#).unwrap();
        assert_eq!(out[0].user_id, None);
        assert!(map(b"{\"user_id\":\"a\"}").is_err());
        assert!(map(b"nope").is_err());
    }
}
