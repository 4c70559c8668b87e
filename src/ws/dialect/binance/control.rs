//! Control messages on a Binance market-stream connection: parsing, validation and replies,
//! with Binance's exact JSON and error texts (`docs/binance-protocol.md` §2).
//!
//! Binance's texts are serde_json's own error messages, so requests are parsed with serde into a
//! struct of the same shape, which reproduces them byte for byte.
//!
//! The gateway's resume additions: the `resume` property (`SET_PROPERTY ["resume",true]`,
//! `GET_PROPERTY ["resume"]`), and `"resumeFrom":{"<stream>":<seq>,…}` beside a SUBSCRIBE's
//! params (replay each of those streams after the last sequence number the client received).

use serde::Deserialize;

use crate::util::clip_error_text;
use serde_json::value::RawValue;
use serde_json::Value;

/// The request id as the client sent it: a 64-bit integer, a string, or null.
pub type RequestId = Box<RawValue>;

/// A valid control request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Add streams.
    Subscribe(Vec<String>),
    /// Add streams, replaying some of them after the sequence numbers given (each one of the
    /// streams added).
    SubscribeResuming(Vec<String>, Vec<(String, u64)>),
    /// Remove streams.
    Unsubscribe(Vec<String>),
    /// List current streams.
    ListSubscriptions,
    /// Set the `combined` property.
    SetCombined(bool),
    /// Read the `combined` property.
    GetCombined,
    /// Set the `resume` property (sequence numbers in the combined wrapper).
    SetResume(bool),
    /// Read the `resume` property.
    GetResume,
}

/// A request that failed, with the reply that says why.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestError {
    /// The id to echo, when it could be parsed.
    pub id: Option<String>,
    /// Binance error code: 0 unknown property, 1 bad value type, 2 invalid request, 3 invalid JSON.
    pub code: i32,
    /// The message text.
    pub msg: String,
}

impl RequestError {
    /// True for errors after which the connection is closed (invalid JSON).
    pub fn closes_connection(&self) -> bool {
        self.code == 3
    }

    /// Code 2 with `text` as it is (already `Invalid request: …`).
    pub fn invalid_text(id: &RequestId, text: &str) -> Self {
        RequestError {
            id: Some(id.get().to_string()),
            code: 2,
            msg: text.to_string(),
        }
    }

    fn invalid(id: &RequestId, msg: impl Into<String>) -> Self {
        RequestError {
            id: Some(id.get().to_string()),
            code: 2,
            msg: format!("Invalid request: {}", msg.into()),
        }
    }
}

#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
#[derive(Debug, Deserialize)]
enum Method {
    SUBSCRIBE,
    UNSUBSCRIBE,
    LIST_SUBSCRIPTIONS,
    SET_PROPERTY,
    GET_PROPERTY,
}

#[derive(Deserialize)]
struct Envelope {
    method: Method,
    #[serde(default)]
    params: Option<Vec<Value>>,
    #[serde(default, rename = "resumeFrom")]
    resume_from: Option<Value>,
}

/// The error for a `resumeFrom` that is not an object of streams of the request to unsigned
/// sequence numbers, or beside another method than SUBSCRIBE.
pub const INVALID_RESUME_FROM: &str =
    "Invalid request: resumeFrom must map streams of params to sequence numbers";

#[derive(Deserialize)]
struct IdOnly {
    /// `Some` whenever the field is present, including an explicit `null`.
    #[serde(default, deserialize_with = "present")]
    id: Option<RequestId>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<RequestId>, D::Error> {
    RequestId::deserialize(d).map(Some)
}

/// Parses one text message into a request and the id to echo.
pub fn parse(text: &str) -> Result<(Request, RequestId), RequestError> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Err(RequestError {
            id: None,
            code: 3,
            msg: format!("Invalid JSON: {e}"),
        });
    }
    let id = serde_json::from_str::<IdOnly>(text)
        .ok()
        .and_then(|parsed| parsed.id)
        .filter(is_valid_id);
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| RequestError {
        id: id.as_ref().map(|id| id.get().to_string()),
        code: 2,
        msg: format!("Invalid request: {e}"),
    })?;
    let Some(id) = id else {
        return Err(RequestError {
            id: Some("null".into()),
            code: 2,
            msg: "Invalid request: request ID must be an unsigned integer".into(),
        });
    };
    let params = envelope.params.unwrap_or_default();
    if envelope.resume_from.is_some() && !matches!(envelope.method, Method::SUBSCRIBE) {
        return Err(RequestError::invalid_text(&id, INVALID_RESUME_FROM));
    }
    let request = match envelope.method {
        Method::SUBSCRIBE => {
            let streams = stream_params(&id, params)?;
            match envelope.resume_from {
                None => Request::Subscribe(streams),
                Some(value) => {
                    let positions = positions(&value, &streams)
                        .ok_or_else(|| RequestError::invalid_text(&id, INVALID_RESUME_FROM))?;
                    Request::SubscribeResuming(streams, positions)
                }
            }
        }
        Method::UNSUBSCRIBE => Request::Unsubscribe(stream_params(&id, params)?),
        Method::LIST_SUBSCRIPTIONS => {
            if !params.is_empty() {
                return Err(RequestError::invalid(&id, "too many parameters"));
            }
            Request::ListSubscriptions
        }
        Method::SET_PROPERTY => {
            let property = property_name(&id, &params, 2)?;
            match params.get(1) {
                Some(Value::Bool(value)) if property == Property::Resume => {
                    Request::SetResume(*value)
                }
                Some(Value::Bool(value)) => Request::SetCombined(*value),
                _ => {
                    return Err(RequestError {
                        id: Some(id.get().to_string()),
                        code: 1,
                        msg: "Invalid value type: expected Boolean".into(),
                    })
                }
            }
        }
        Method::GET_PROPERTY => match property_name(&id, &params, 1)? {
            Property::Combined => Request::GetCombined,
            Property::Resume => Request::GetResume,
        },
    };
    Ok((request, id))
}

fn is_valid_id(id: &RequestId) -> bool {
    match serde_json::from_str::<Value>(id.get()) {
        Ok(Value::Null) => true,
        Ok(Value::Number(n)) => n.is_i64(),
        Ok(Value::String(s)) => {
            (1..=36).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }
        _ => false,
    }
}

fn stream_params(id: &RequestId, params: Vec<Value>) -> Result<Vec<String>, RequestError> {
    params
        .into_iter()
        .map(|p| match p {
            Value::String(s) => Ok(s),
            _ => Err(RequestError::invalid(id, "invalid stream")),
        })
        .collect()
}

/// `{"<stream>":<seq>,…}` over streams of `streams`, as pairs in the object's order.
fn positions(value: &Value, streams: &[String]) -> Option<Vec<(String, u64)>> {
    let Value::Object(map) = value else {
        return None;
    };
    map.iter()
        .map(|(stream, seq)| {
            let seq = seq.as_u64()?;
            streams.contains(stream).then(|| (stream.clone(), seq))
        })
        .collect()
}

/// The connection properties a client may set and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Property {
    /// Binance's `combined`.
    Combined,
    /// The gateway's `resume`.
    Resume,
}

fn property_name(
    id: &RequestId,
    params: &[Value],
    expected: usize,
) -> Result<Property, RequestError> {
    let Some(Value::String(name)) = params.first() else {
        return Err(RequestError::invalid(id, "property name must be a string"));
    };
    if params.len() > expected {
        return Err(RequestError::invalid(id, "too many parameters"));
    }
    match name.as_str() {
        "combined" => Ok(Property::Combined),
        "resume" => Ok(Property::Resume),
        _ => Err(RequestError {
            id: Some(id.get().to_string()),
            code: 0,
            msg: "Unknown property".into(),
        }),
    }
}

/// `{"result":<result>,"id":<id>}`; `result` is JSON text.
pub fn result_json(result: &str, id: &RequestId) -> String {
    format!("{{\"result\":{result},\"id\":{}}}", id.get())
}

/// `{"error":{"code":..,"msg":..},"id":..}`, without `id` when it could not be parsed; the
/// text is clipped ([`clip_error_text`]), so no request is echoed back at length.
pub fn error_json(error: &RequestError) -> String {
    let msg = serde_json::to_string(&clip_error_text(&error.msg)).expect("strings serialize");
    match &error.id {
        Some(id) => format!(
            "{{\"error\":{{\"code\":{},\"msg\":{msg}}},\"id\":{id}}}",
            error.code
        ),
        None => format!("{{\"error\":{{\"code\":{},\"msg\":{msg}}}}}", error.code),
    }
}

/// The notice that a config change removed `stream` from the connection (Binance has none):
/// the error Binance sends for an invalid stream, `id` null as no request caused it, and the
/// stream named in a `stream` field as the combined envelope names it, e.g.
/// `{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":null,"stream":"btcusdt@trade"}`.
pub fn stream_removed_json(stream: &str) -> String {
    let stream = crate::config::strip_namespace(stream);
    let stream = serde_json::to_string(stream).expect("strings serialize");
    format!(
        "{{\"error\":{{\"code\":2,\"msg\":\"{INVALID_STREAM}\"}},\"id\":null,\"stream\":{stream}}}"
    )
}

/// The error for `resume` (or `resumeFrom`) on a connection without the combined wrapper, and
/// for turning the wrapper off while resume is on: the sequence number rides in the wrapper.
pub const RESUME_NEEDS_COMBINED: &str =
    "Invalid request: resume needs the combined format (SET_PROPERTY combined true first)";

/// Binance's text for a stream it does not serve.
pub const INVALID_STREAM: &str = "Invalid request: invalid stream";

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        error_json(&parse(text).unwrap_err())
    }

    #[test]
    fn an_unknown_method_is_not_echoed_at_length() {
        let text = format!(r#"{{"method":"{}","id":1}}"#, "X".repeat(60_000));
        let reply = err(&text);
        assert!(reply.len() < 400, "reply of {} bytes", reply.len());
        assert!(
            reply.starts_with(r#"{"error":{"code":2,"msg":"Invalid request: unknown variant `XXX"#)
        );
    }

    #[test]
    fn parses_every_method() {
        let (r, id) =
            parse(r#"{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","btcusdt@depth"],"id":1}"#)
                .unwrap();
        assert_eq!(
            r,
            Request::Subscribe(vec!["btcusdt@aggTrade".into(), "btcusdt@depth".into()])
        );
        assert_eq!(result_json("null", &id), r#"{"result":null,"id":1}"#);
        let (r, _) =
            parse(r#"{"method":"UNSUBSCRIBE","params":["btcusdt@depth"],"id":312}"#).unwrap();
        assert_eq!(r, Request::Unsubscribe(vec!["btcusdt@depth".into()]));
        let (r, _) = parse(r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#).unwrap();
        assert_eq!(r, Request::ListSubscriptions);
        let (r, _) =
            parse(r#"{"method":"SET_PROPERTY","params":["combined",true],"id":5}"#).unwrap();
        assert_eq!(r, Request::SetCombined(true));
        let (r, _) = parse(r#"{"method":"GET_PROPERTY","params":["combined"],"id":2}"#).unwrap();
        assert_eq!(r, Request::GetCombined);
    }

    #[test]
    fn accepts_negative_string_and_null_ids() {
        for id in [
            "-7",
            "\"e2a8b3c4-1f0d-4c5e-9a7b-3d2c1b0a9f8e\"",
            "null",
            "\"a_b-C\"",
        ] {
            let text = format!(r#"{{"method":"LIST_SUBSCRIPTIONS","id":{id}}}"#);
            let (_, parsed) = parse(&text).unwrap();
            assert_eq!(parsed.get(), id);
        }
    }

    #[test]
    fn refuses_bad_ids() {
        let expected = r#"{"error":{"code":2,"msg":"Invalid request: request ID must be an unsigned integer"},"id":null}"#;
        for id in [
            "1.5",
            "\"has space\"",
            "\"0123456789012345678901234567890123456\"",
            "[1]",
            "18446744073709551615",
        ] {
            let text = format!(r#"{{"method":"LIST_SUBSCRIPTIONS","id":{id}}}"#);
            assert_eq!(err(&text), expected, "id {id}");
        }
        assert_eq!(err(r#"{"method":"LIST_SUBSCRIPTIONS"}"#), expected);
    }

    #[test]
    fn unknown_method_lists_the_variants() {
        assert_eq!(
            err(r#"{"method":"SUBSCRIBEX","params":[],"id":7}"#),
            r#"{"error":{"code":2,"msg":"Invalid request: unknown variant `SUBSCRIBEX`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` at line 1 column 22"},"id":7}"#
        );
    }

    #[test]
    fn missing_method_is_named() {
        assert_eq!(
            err(r#"{"params":["btcusdt@trade"],"id":9}"#),
            r#"{"error":{"code":2,"msg":"Invalid request: missing field `method` at line 1 column 35"},"id":9}"#
        );
    }

    #[test]
    fn invalid_json_has_code_3_and_no_id() {
        let e = parse("{\"method\":").unwrap_err();
        assert!(e.closes_connection());
        assert_eq!(
            error_json(&e),
            r#"{"error":{"code":3,"msg":"Invalid JSON: EOF while parsing a value at line 1 column 10"}}"#
        );
        assert_eq!(
            err("hello"),
            r#"{"error":{"code":3,"msg":"Invalid JSON: expected value at line 1 column 1"}}"#
        );
    }

    #[test]
    fn property_errors_use_binance_texts() {
        assert_eq!(
            err(r#"{"method":"SET_PROPERTY","params":["combined","yes"],"id":1}"#),
            r#"{"error":{"code":1,"msg":"Invalid value type: expected Boolean"},"id":1}"#
        );
        assert_eq!(
            err(r#"{"method":"GET_PROPERTY","params":["compressed"],"id":2}"#),
            r#"{"error":{"code":0,"msg":"Unknown property"},"id":2}"#
        );
        assert_eq!(
            err(r#"{"method":"GET_PROPERTY","params":[5],"id":3}"#),
            r#"{"error":{"code":2,"msg":"Invalid request: property name must be a string"},"id":3}"#
        );
        assert_eq!(
            err(r#"{"method":"GET_PROPERTY","params":["combined",1],"id":4}"#),
            r#"{"error":{"code":2,"msg":"Invalid request: too many parameters"},"id":4}"#
        );
        assert_eq!(
            err(r#"{"method":"LIST_SUBSCRIPTIONS","params":["x"],"id":5}"#),
            r#"{"error":{"code":2,"msg":"Invalid request: too many parameters"},"id":5}"#
        );
    }

    #[test]
    fn resume_is_a_property_and_resume_from_rides_on_subscribe() {
        let (r, _) = parse(r#"{"method":"SET_PROPERTY","params":["resume",true],"id":1}"#).unwrap();
        assert_eq!(r, Request::SetResume(true));
        let (r, _) = parse(r#"{"method":"GET_PROPERTY","params":["resume"],"id":2}"#).unwrap();
        assert_eq!(r, Request::GetResume);
        let (r, _) = parse(
            r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"resumeFrom":{"btcusdt@trade":123},"id":3}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::SubscribeResuming(
                vec!["btcusdt@trade".into(), "ethusdt@trade".into()],
                vec![("btcusdt@trade".into(), 123)]
            )
        );
        assert_eq!(
            err(r#"{"method":"SET_PROPERTY","params":["resume","yes"],"id":4}"#),
            r#"{"error":{"code":1,"msg":"Invalid value type: expected Boolean"},"id":4}"#
        );
        let refused = r#"{"error":{"code":2,"msg":"Invalid request: resumeFrom must map streams of params to sequence numbers"},"id":5}"#;
        for bad in [
            r#"{"method":"SUBSCRIBE","params":["a@trade"],"resumeFrom":{"b@trade":1},"id":5}"#,
            r#"{"method":"SUBSCRIBE","params":["a@trade"],"resumeFrom":{"a@trade":-1},"id":5}"#,
            r#"{"method":"SUBSCRIBE","params":["a@trade"],"resumeFrom":{"a@trade":"1"},"id":5}"#,
            r#"{"method":"SUBSCRIBE","params":["a@trade"],"resumeFrom":["a@trade",1],"id":5}"#,
            r#"{"method":"UNSUBSCRIBE","params":["a@trade"],"resumeFrom":{"a@trade":1},"id":5}"#,
        ] {
            assert_eq!(err(bad), refused, "{bad}");
        }
    }

    #[test]
    fn a_removed_stream_is_told_as_an_invalid_stream_naming_it() {
        let notice = stream_removed_json("btcusdt@trade");
        assert_eq!(
            notice,
            r#"{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":null,"stream":"btcusdt@trade"}"#
        );
        let parsed: Value = serde_json::from_str(&notice).unwrap();
        assert_eq!(parsed["stream"], "btcusdt@trade");
    }

    #[test]
    fn non_string_stream_is_an_invalid_stream() {
        assert_eq!(
            err(r#"{"method":"SUBSCRIBE","params":[42],"id":"x1"}"#),
            r#"{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":"x1"}"#
        );
    }
}
