//! One WebSocket API request (`docs/binance-protocol.md` §6): `{"id":..,"method":..,
//! "params":{..}}`. The gateway reads `id` and `method`, and of `params` only what
//! authentication needs; the params themselves travel to the backend verbatim.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::auth::signature;

/// Binance's text for an id that breaks the grammar; the connection is then closed.
pub const BAD_ID: &str = "Invalid 'id' in JSON request; expected an integer, a string matching '^[a-zA-Z0-9-_]{1,36}$', or null.";

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    /// The id as sent (JSON text), echoed in the answer.
    pub id: String,
    /// The method, without a `v3/` prefix.
    pub method: String,
    /// The params object as sent (`{}` when absent).
    pub params: Box<RawValue>,
    /// The params' values as text: strings as they are, numbers and booleans as written.
    pub fields: BTreeMap<String, String>,
}

/// Why a text frame is not a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Malformed {
    /// The id breaks Binance's grammar: answer `-1135` with id null, then close 1008.
    BadId,
    /// Not a JSON object, no method, or params not an object: answer 400 with the id if known.
    Invalid { id: String, msg: String },
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

/// True for an id Binance accepts: a 64-bit integer, `[a-zA-Z0-9-_]{1,36}`, or null.
fn valid_id(id: &RawValue) -> bool {
    match serde_json::from_str::<Value>(id.get()) {
        Ok(Value::Null) => true,
        Ok(Value::Number(n)) => n.is_i64() || n.is_u64(),
        Ok(Value::String(s)) => {
            (1..=36).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }
        _ => false,
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Request, Malformed> {
    let invalid = |id: &str, msg: &str| Malformed::Invalid {
        id: id.to_string(),
        msg: msg.to_string(),
    };
    let raw: Raw<'_> = serde_json::from_str(text)
        .map_err(|_| invalid("null", "Malformed request: not a JSON object."))?;
    let id = match raw.id {
        Some(id) if !valid_id(id) => return Err(Malformed::BadId),
        Some(id) => id.get().to_string(),
        None => "null".to_string(),
    };
    let method = raw
        .method
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid(&id, &crate::api_error::missing_parameter("method").1))?;
    let method = method.strip_prefix("v3/").unwrap_or(&method).to_string();
    let params = match raw.params {
        Some(params) => params.to_owned(),
        None => RawValue::from_string("{}".into()).expect("valid JSON"),
    };
    let fields = match serde_json::from_str::<Value>(params.get()) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect(),
        _ => {
            return Err(invalid(
                &id,
                "Malformed request: 'params' must be an object.",
            ))
        }
    };
    Ok(Request {
        id,
        method,
        params,
        fields,
    })
}

impl Request {
    /// A param's text.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// What the signature covers: every param but `signature`, sorted, `k=v&..`.
    pub fn signed_payload(&self) -> String {
        signature::payload(self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The same payload with names and values form-encoded, as some clients (python-binance)
    /// sign it; `None` when encoding changes nothing.
    pub fn encoded_payload(&self) -> Option<String> {
        let encode =
            |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
        let encoded: Vec<(String, String)> = self
            .fields
            .iter()
            .map(|(k, v)| (encode(k), encode(v)))
            .collect();
        let changed = encoded
            .iter()
            .zip(&self.fields)
            .any(|((k, v), (rk, rv))| k != rk || v != rv);
        changed.then(|| signature::payload(encoded.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_binances_grammar() {
        for ok in [
            "1",
            "-7",
            "null",
            "\"abc-DEF_123\"",
            &format!("\"{}\"", "a".repeat(36)),
        ] {
            let text = format!("{{\"id\":{ok},\"method\":\"ping\"}}");
            assert_eq!(parse(&text).unwrap().id, ok, "{ok}");
        }
        for bad in [
            format!("\"{}\"", "a".repeat(37)),
            "\"a b\"".to_string(),
            "\"\"".to_string(),
            "1.5".to_string(),
            "[1]".to_string(),
            "{}".to_string(),
            "true".to_string(),
        ] {
            let text = format!("{{\"id\":{bad},\"method\":\"ping\"}}");
            assert_eq!(parse(&text).unwrap_err(), Malformed::BadId, "{bad}");
        }
    }

    #[test]
    fn params_are_kept_verbatim_and_read_as_text() {
        let request = parse(
            r#"{"id":"x","method":"v3/order.place","params":{"symbol":"BTCUSDT","quantity":"0.1","timestamp":1700000000000,"newOrderRespType":"ACK","test":true}}"#,
        )
        .unwrap();
        assert_eq!(request.method, "order.place");
        assert!(request.params.get().starts_with(r#"{"symbol":"BTCUSDT""#));
        assert_eq!(request.field("timestamp"), Some("1700000000000"));
        assert_eq!(request.field("test"), Some("true"));
        assert_eq!(
            request.signed_payload(),
            "newOrderRespType=ACK&quantity=0.1&symbol=BTCUSDT&test=true&timestamp=1700000000000"
        );
        assert_eq!(request.encoded_payload(), None, "nothing to encode");
        let spaced = parse(r#"{"id":1,"method":"x","params":{"note":"a b/c","timestamp":1}}"#);
        assert_eq!(
            spaced.unwrap().encoded_payload().as_deref(),
            Some("note=a+b%2Fc&timestamp=1")
        );
    }

    #[test]
    fn malformed_requests_are_told_apart() {
        assert!(matches!(parse("nope"), Err(Malformed::Invalid { .. })));
        assert!(matches!(
            parse(r#"{"id":3,"params":{}}"#),
            Err(Malformed::Invalid { id, .. }) if id == "3"
        ));
        assert!(matches!(
            parse(r#"{"id":3,"method":"ping","params":[1]}"#),
            Err(Malformed::Invalid { .. })
        ));
        assert_eq!(parse(r#"{"method":"ping"}"#).unwrap().id, "null");
    }
}
