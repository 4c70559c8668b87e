//! HashKey public streams, v2 (`--subscribe hashkey`): the `sub` requests and their replies,
//! and an allocation-free parser of pushes.
//!
//! A connection to `<url>/quote/ws/v2` sends one `{"topic":"trade","event":"sub","params":
//! {"symbol":"BTCUSDT"}}` per stream (streams are given by their Binance names, `btcusdt@trade`)
//! and waits for each reply `{..,"code":"0","msg":"Success"}`. A push
//! `{"topic":"trade","params":{"symbol":"BTCUSDT"},"data":{"v":"5001","t":1767000000123,..}}`
//! carries the trade id as the digit string `v` and the event time `t` in milliseconds, so its
//! latency has millisecond resolution: the time is taken as `t × 1000` µs, which reads up to
//! 1 ms high when the server truncates a microsecond stamp.

use std::borrow::Cow;
use std::fmt;

use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::conn::close_code;
use crate::event::{ignore_other_types, Fields, Num, Str};

/// The request path of the v2 public streams.
pub const PATH: &str = "/quote/ws/v2";

/// Longest stream name a push can be matched to (`symbol@topic`).
pub const MAX_NAME: usize = 64;

/// Interval of the JSON pings a connection sends (HashKey asks for one every 10 s).
pub const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The HashKey symbol (upper case) and topic of a Binance-style stream name, `btcusdt@trade`.
pub fn split_stream(stream: &str) -> Option<(String, &str)> {
    let (symbol, topic) = stream.split_once('@')?;
    if symbol.is_empty() || topic.is_empty() || topic.contains('@') {
        return None;
    }
    Some((symbol.to_ascii_uppercase(), topic))
}

/// The v2 `sub` request of one stream.
pub fn sub_request(stream: &str) -> Result<String> {
    let (symbol, topic) =
        split_stream(stream).ok_or_else(|| anyhow!("not a symbol@topic stream: {stream}"))?;
    let req = serde_json::json!({"topic": topic, "event": "sub", "params": {"symbol": symbol}});
    Ok(req.to_string())
}

/// The Binance-style name of a push's stream, `btcusdt@trade`, written into `buf`; `None` when
/// it does not fit.
pub fn stream_name<'b>(symbol: &str, topic: &str, buf: &'b mut [u8; MAX_NAME]) -> Option<&'b str> {
    let len = symbol.len() + 1 + topic.len();
    if len > MAX_NAME {
        return None;
    }
    let (s, rest) = buf.split_at_mut(symbol.len());
    s.copy_from_slice(symbol.as_bytes());
    s.make_ascii_lowercase();
    rest[0] = b'@';
    rest[1..len - symbol.len()].copy_from_slice(topic.as_bytes());
    std::str::from_utf8(&buf[..len]).ok()
}

/// Sends one `sub` per stream, then waits until each is answered `"code":"0"`. Pushes of the
/// streams already subscribed may arrive in between; they are skipped.
pub async fn subscribe<S>(
    ws: &mut WebSocketStream<S>,
    streams: &[std::sync::Arc<str>],
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut pending = Vec::with_capacity(streams.len());
    for stream in streams {
        ws.feed(Message::text(sub_request(stream)?)).await?;
        pending.push(stream.to_string());
    }
    ws.flush().await?;
    while !pending.is_empty() {
        let text = match ws.next().await {
            Some(msg) => match msg? {
                Message::Text(t) => t,
                Message::Ping(_) => {
                    ws.flush().await?;
                    continue;
                }
                Message::Close(f) => bail!("closed {}", close_code(f.as_ref())),
                _ => continue,
            },
            None => bail!("closed before the sub replies"),
        };
        let Ok(push) = Push::parse(text.as_bytes()) else {
            continue;
        };
        let Some(code) = push.code else {
            continue; // a push that raced ahead of a reply, or a pong
        };
        if code != "0" {
            bail!("sub rejected: {text}");
        }
        let mut buf = [0; MAX_NAME];
        let name = match (&push.symbol, &push.topic) {
            (Some(symbol), Some(topic)) => stream_name(symbol, topic, &mut buf),
            _ => None,
        };
        match name.and_then(|n| pending.iter().position(|p| p == n)) {
            Some(i) => drop(pending.swap_remove(i)),
            None => bail!("unexpected sub reply: {text}"),
        }
    }
    Ok(())
}

/// The parts of a v2 frame the bench reads.
#[derive(Debug, Default)]
pub struct Push<'a> {
    /// `topic`.
    pub topic: Option<Cow<'a, str>>,
    /// `params.symbol`.
    pub symbol: Option<Cow<'a, str>>,
    /// `code` of a reply (pushes have none).
    pub code: Option<Cow<'a, str>>,
    /// Whether the frame had an object `data` (a push).
    pub data: bool,
    /// From `data`: the trade id `v` (a digit string) and the event time `t` (ms) in µs.
    pub fields: Fields,
}

impl<'a> Push<'a> {
    /// Parses one text frame.
    pub fn parse(bytes: &'a [u8]) -> serde_json::Result<Push<'a>> {
        serde_json::from_slice(bytes)
    }
}

#[derive(serde::Deserialize)]
#[serde(field_identifier)]
enum Key {
    #[serde(rename = "topic")]
    Topic,
    #[serde(rename = "params")]
    Params,
    #[serde(rename = "code")]
    Code,
    #[serde(rename = "data")]
    Data,
    #[serde(rename = "symbol")]
    Symbol,
    #[serde(rename = "v")]
    Id,
    #[serde(rename = "t")]
    Time,
    #[serde(other)]
    Other,
}

/// An object's `symbol`, `v` and `t` (the object of `params` or `data`); `None` if the value
/// is not an object.
#[derive(Default)]
struct Inner<'a> {
    symbol: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    time: Option<u64>,
}

/// A digit string as an integer.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Implements the visit methods of every non-object value, each giving `$none`.
macro_rules! only_objects {
    ($none:expr) => {
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($none)
        }
        ignore_other_types!($none);
    };
}

struct InnerVisitor;

impl<'de> Visitor<'de> for InnerVisitor {
    type Value = Option<Inner<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut inner = Inner::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Symbol => inner.symbol = map.next_value::<Str>()?.0,
                Key::Id => inner.id = map.next_value::<Str>()?.0,
                Key::Time => inner.time = map.next_value::<Num>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(inner))
    }
    only_objects!(None);
}

impl<'de> Deserialize<'de> for Inner<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(d.deserialize_any(InnerVisitor)?.unwrap_or_default())
    }
}

/// `Some` for an object, with the inner fields.
struct Object<'a>(Option<Inner<'a>>);

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(InnerVisitor).map(Object)
    }
}

struct PushVisitor;

impl<'de> Visitor<'de> for PushVisitor {
    type Value = Push<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Push<'de>, A::Error> {
        let mut push = Push::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Topic => push.topic = map.next_value::<Str>()?.0,
                Key::Code => push.code = map.next_value::<Str>()?.0,
                Key::Params => push.symbol = map.next_value::<Inner>()?.symbol,
                Key::Data => {
                    if let Some(data) = map.next_value::<Object>()?.0 {
                        push.data = true;
                        push.fields.trade_id = data.id.as_deref().and_then(digits);
                        push.fields.event_time = data.time.and_then(|t| t.checked_mul(1000));
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(push)
    }
    only_objects!(Push::default());
}

impl<'de> Deserialize<'de> for Push<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PushVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trade_push() {
        let s = br#"{"topic":"trade","params":{"symbol":"BTCUSDT"},"data":{"v":"5001","t":1767000000123,"p":"67000.01","q":"0.012","m":true}}"#;
        let p = Push::parse(s).unwrap();
        assert!(matches!(p.topic, Some(Cow::Borrowed("trade"))));
        assert!(matches!(p.symbol, Some(Cow::Borrowed("BTCUSDT"))));
        assert!(p.data && p.code.is_none());
        assert_eq!(p.fields.trade_id, Some(5001));
        assert_eq!(p.fields.event_time, Some(1767000000123000));
        assert_eq!((p.fields.agg_id, p.fields.last_update), (None, None));
        // Key order does not matter.
        let s = br#"{"data":{"t":7,"v":"9"},"params":{"symbol":"ETHUSDT"},"topic":"trade"}"#;
        let p = Push::parse(s).unwrap();
        assert_eq!(p.symbol.as_deref(), Some("ETHUSDT"));
        assert_eq!(
            (p.fields.trade_id, p.fields.event_time),
            (Some(9), Some(7000))
        );
    }

    #[test]
    fn replies_and_odd_values() {
        let s = br#"{"topic":"trade","event":"sub","params":{"symbol":"BTCUSDT"},"code":"0","msg":"Success"}"#;
        let p = Push::parse(s).unwrap();
        assert_eq!(p.code.as_deref(), Some("0"));
        assert!(!p.data);
        assert_eq!(p.fields, Fields::default());
        let p = Push::parse(br#"{"pong":1767000000123}"#).unwrap();
        assert!(p.code.is_none() && !p.data && p.topic.is_none());
        // A trade id that is a number or not all digits, a time that is a string.
        let s = br#"{"topic":"trade","params":[1],"data":{"v":5001,"t":"1"}}"#;
        let p = Push::parse(s).unwrap();
        assert!(p.data && p.symbol.is_none());
        assert_eq!(p.fields, Fields::default());
        let p = Push::parse(br#"{"data":{"v":"-1","t":-5}}"#).unwrap();
        assert_eq!(p.fields, Fields::default());
        let p = Push::parse(br#"{"data":[{"v":"1"}],"topic":7}"#).unwrap();
        assert!(!p.data && p.topic.is_none());
        assert!(Push::parse(b"[1]").unwrap().topic.is_none());
        assert!(Push::parse(b"{nope").is_err());
    }

    #[test]
    fn a_binance_frame_has_no_hashkey_fields() {
        // Binance's `t` is a trade id, HashKey's a time: read under HashKey's rules, the
        // combined frame's `t` is the time and there is no `v`.
        let s = br#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1767000000123456,"t":5001}}"#;
        let p = Push::parse(s).unwrap();
        assert_eq!(p.fields.trade_id, None);
        assert_eq!(p.fields.event_time, Some(5_001_000));
    }

    #[test]
    fn names() {
        assert_eq!(
            split_stream("btcusdt@trade"),
            Some(("BTCUSDT".into(), "trade"))
        );
        assert_eq!(split_stream("btcusdt@depth@100ms"), None);
        assert_eq!(split_stream("btcusdt"), None);
        assert_eq!(split_stream("@trade"), None);
        let req: serde_json::Value =
            serde_json::from_str(&sub_request("btcusdt@trade").unwrap()).unwrap();
        assert_eq!(
            req,
            serde_json::json!({"topic":"trade","event":"sub","params":{"symbol":"BTCUSDT"}})
        );
        let mut buf = [0; MAX_NAME];
        assert_eq!(
            stream_name("BTCUSDT", "trade", &mut buf),
            Some("btcusdt@trade")
        );
        let long = "X".repeat(MAX_NAME);
        assert_eq!(stream_name(&long, "trade", &mut buf), None);
        assert_eq!(
            stream_name(&long[..58], "trade", &mut buf).map(str::len),
            Some(64)
        );
    }
}
