//! What a HashKey public-stream client sends (`docs/binance-protocol.md` §7): `sub` and `cancel`
//! events in the v1 shape (`{"symbol":"BTCUSDT,ETHUSDT","topic":"trade","event":"sub",
//! "params":{"binary":false}}`) or the v2 shape (`{"topic":"kline","event":"sub",
//! "params":{"symbol":"ETHUSDT","klineType":"1m"}}`), and JSON heartbeats (`{"ping":<ms>}`,
//! `{"pong":<ms>}`); and the replies, which echo the request with HashKey's `code` and `msg`.
//!
//! A v1 request is answered only when it fails, and its error reply leaves out the topic: v1
//! clients (ccxt's `hashkey`) take any message carrying a `topic` for a push of that topic, so a
//! success reply would reach them as an empty trade list or an empty order book.

use serde_json::{Map, Value};

use super::Version;

/// HashKey's code and text for a request it cannot serve: an unknown topic or symbol, a missing
/// field, a malformed message.
pub const PARAMETER_ERROR: (&str, &str) = ("-100011", "Parameter error!");

/// Most symbols one v1 request may name (comma-separated).
pub const MAX_SYMBOLS: usize = 50;

/// One client message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `{"ping":<ms>}`: answered with a pong.
    Ping(Value),
    /// `{"pong":<ms>}`: the answer to a server ping.
    Pong,
    /// `sub` or `cancel`.
    Request(Request),
}

/// A `sub` or `cancel` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `true` for `sub`, `false` for `cancel`.
    pub subscribe: bool,
    /// The hub's names of the streams asked for (`hashkey:btcusdt@trade`), one per symbol.
    pub streams: Vec<String>,
    /// The request as received, echoed in the reply.
    echo: Map<String, Value>,
    /// Whether a success is answered (v2) or silent (v1).
    answered: bool,
}

/// A message that could not be served, with what of it is echoed in the error reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    echo: Map<String, Value>,
}

impl Request {
    /// The success reply, v2 only: the request echoed with `"code":"0","msg":"Success"`.
    pub fn success(&self) -> Option<String> {
        self.answered.then(|| reply(&self.echo, ("0", "Success")))
    }

    /// The error reply for a request that parsed but could not be served.
    pub fn refused(self) -> Refused {
        Refused { echo: self.echo }
    }
}

impl Refused {
    /// The error reply: what could be read of the request, with [`PARAMETER_ERROR`].
    pub fn reply(&self) -> String {
        reply(&self.echo, PARAMETER_ERROR)
    }
}

fn reply(echo: &Map<String, Value>, (code, msg): (&str, &str)) -> String {
    let mut reply = echo.clone();
    reply.insert("code".into(), code.into());
    reply.insert("msg".into(), msg.into());
    Value::Object(reply).to_string()
}

/// The fields of a request that its reply echoes, in the order HashKey's replies show them.
const ECHOED: [&str; 4] = ["symbol", "topic", "event", "params"];

/// Parses one text message of a `version` connection.
pub fn parse(text: &str, version: Version) -> Result<Message, Refused> {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
        return Err(Refused { echo: Map::new() });
    };
    if let Some(ping) = object.get("ping").filter(|_| object.len() == 1) {
        return Ok(Message::Ping(ping.clone()));
    }
    if object.contains_key("pong") {
        return Ok(Message::Pong);
    }
    let echo: Map<String, Value> = ECHOED
        .iter()
        .filter(|&&field| version == Version::V2 || field != "topic")
        .filter_map(|&field| Some((field.to_string(), object.get(field)?.clone())))
        .collect();
    let refused = || Refused { echo: echo.clone() };
    let subscribe = match object.get("event").and_then(Value::as_str) {
        Some("sub") => true,
        Some("cancel") => false,
        _ => return Err(refused()),
    };
    let params = match object.get("params") {
        None => Map::new(),
        Some(Value::Object(params)) => params.clone(),
        Some(_) => return Err(refused()),
    };
    if matches!(params.get("binary"), Some(Value::Bool(true)))
        || matches!(params.get("binary"), Some(Value::String(s)) if s == "true")
    {
        // Binary pushes are not served (HashKey: "Binary format is not yet available").
        return Err(refused());
    }
    let topic = object.get("topic").and_then(Value::as_str).unwrap_or("");
    let symbols = match version {
        Version::V1 => object.get("symbol"),
        Version::V2 => params.get("symbol"),
    }
    .and_then(Value::as_str)
    .unwrap_or("");
    let kind = stream_kind(topic, &params, version).ok_or_else(refused)?;
    let symbols: Vec<&str> = symbols.split(',').map(str::trim).collect();
    let valid =
        |s: &&str| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if symbols.len() > MAX_SYMBOLS || !symbols.iter().all(valid) {
        return Err(refused());
    }
    let streams = symbols
        .iter()
        .map(|symbol| stream_name(symbol, &kind))
        .collect();
    Ok(Message::Request(Request {
        subscribe,
        streams,
        echo,
        answered: version == Version::V2,
    }))
}

/// The hub's name of `symbol`'s stream of `kind` (`hashkey:btcusdt@trade`).
pub fn stream_name(symbol: &str, kind: &str) -> String {
    format!("{}{}@{kind}", super::NAMESPACE, symbol.to_ascii_lowercase())
}

/// The stream kind a topic names: `trade`, `depth`, `kline_1m` (v1's `kline_1m`, or v2's
/// `kline` with `klineType` `1m`); `None` when the topic is not a word.
fn stream_kind(topic: &str, params: &Map<String, Value>, version: Version) -> Option<String> {
    let word = |s: &str| {
        !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    };
    if !word(topic) {
        return None;
    }
    match (version, params.get("klineType").and_then(Value::as_str)) {
        (Version::V2, interval) if topic == "kline" => interval
            .filter(|interval| word(interval))
            .map(|interval| format!("kline_{interval}")),
        _ => Some(topic.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str, version: Version) -> Request {
        match parse(text, version) {
            Ok(Message::Request(request)) => request,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn v1_names_symbols_beside_the_topic_and_v2_in_params() {
        let v1 = request(
            r#"{"symbol":"BTCUSDT,ETHUSDT","topic":"trade","event":"sub","params":{"binary":false}}"#,
            Version::V1,
        );
        assert!(v1.subscribe);
        assert_eq!(
            v1.streams,
            ["hashkey:btcusdt@trade", "hashkey:ethusdt@trade"]
        );
        assert_eq!(v1.success(), None);
        assert_eq!(
            v1.refused().reply(),
            r#"{"symbol":"BTCUSDT,ETHUSDT","event":"sub","params":{"binary":false},"code":"-100011","msg":"Parameter error!"}"#
        );
        let v2 = request(
            r#"{"topic":"kline","event":"cancel","params":{"symbol":"ETHUSDT","klineType":"1m"}}"#,
            Version::V2,
        );
        assert!(!v2.subscribe);
        assert_eq!(v2.streams, ["hashkey:ethusdt@kline_1m"]);
        assert_eq!(
            v2.success().as_deref(),
            Some(
                r#"{"topic":"kline","event":"cancel","params":{"symbol":"ETHUSDT","klineType":"1m"},"code":"0","msg":"Success"}"#
            )
        );
    }

    #[test]
    fn heartbeats_are_told_from_requests() {
        assert_eq!(
            parse(r#"{"ping":1691473241907}"#, Version::V1),
            Ok(Message::Ping(Value::from(1691473241907_i64)))
        );
        assert_eq!(parse(r#"{"pong":1}"#, Version::V2), Ok(Message::Pong));
    }

    #[test]
    fn what_cannot_be_served_is_a_parameter_error_echoing_the_request() {
        for (text, version) in [
            ("not json", Version::V1),
            ("[1]", Version::V1),
            (
                r#"{"symbol":"BTCUSDT","topic":"trade","event":"subscribe"}"#,
                Version::V1,
            ),
            (
                r#"{"symbol":"BTC USDT","topic":"trade","event":"sub"}"#,
                Version::V1,
            ),
            (
                r#"{"symbol":"","topic":"trade","event":"sub"}"#,
                Version::V1,
            ),
            (
                r#"{"symbol":"BTCUSDT","topic":"tr ade","event":"sub"}"#,
                Version::V1,
            ),
            (
                r#"{"symbol":"BTCUSDT","topic":"trade","event":"sub","params":{"binary":true}}"#,
                Version::V1,
            ),
            (
                r#"{"topic":"trade","event":"sub","params":{}}"#,
                Version::V2,
            ),
            (
                r#"{"topic":"kline","event":"sub","params":{"symbol":"BTCUSDT"}}"#,
                Version::V2,
            ),
            (
                r#"{"topic":"kline","event":"sub","params":{"symbol":"BTCUSDT","klineType":"1 m"}}"#,
                Version::V2,
            ),
        ] {
            let refused = parse(text, version).expect_err(text);
            let reply: Value = serde_json::from_str(&refused.reply()).unwrap();
            assert_eq!(reply["code"], "-100011", "{text}");
            assert_eq!(reply["msg"], "Parameter error!", "{text}");
        }
        let refused = parse(
            r#"{"topic":"kline","event":"sub","params":{"symbol":"BTCUSDT","klineType":"122m"}}"#,
            Version::V2,
        );
        // Shaped right: refused later, when no stream serves it.
        assert!(refused.is_ok());
    }
}
