//! Minimal, allocation-free parsing of stream events: only `stream`, `E`, `t`, `a`, `U`, `u`.
//!
//! Accepts the combined wrapper `{"stream":..,"data":{..}}` and bare payloads. Fields of
//! an unexpected type (e.g. `"a"` is the ask *price string* in bookTicker) and non-object
//! payloads (`!miniTicker@arr`) are ignored instead of failing the parse.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The ids and time of one event; absent or non-integer fields are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// Event time `E`.
    pub event_time: Option<u64>,
    /// Trade id `t`.
    pub trade_id: Option<u64>,
    /// Aggregate trade id `a`.
    pub agg_id: Option<u64>,
    /// First update id `U`.
    pub first_update: Option<u64>,
    /// Final update id `u`.
    pub last_update: Option<u64>,
}

/// A parsed frame: the stream name (combined streams only) and the payload fields.
#[derive(Debug, Default)]
pub struct Event<'a> {
    /// `stream` of the combined wrapper, borrowed from the frame when possible.
    pub stream: Option<Cow<'a, str>>,
    /// Fields of `data` (combined) or of the top level (raw).
    pub fields: Fields,
}

impl<'a> Event<'a> {
    /// Parses one text frame.
    pub fn parse(bytes: &'a [u8]) -> serde_json::Result<Event<'a>> {
        serde_json::from_slice(bytes)
    }
}

#[derive(serde::Deserialize)]
#[serde(field_identifier)]
enum Key {
    #[serde(rename = "stream")]
    Stream,
    #[serde(rename = "data")]
    Data,
    #[serde(rename = "E")]
    EventTime,
    #[serde(rename = "t")]
    TradeId,
    #[serde(rename = "a")]
    AggId,
    #[serde(rename = "U")]
    FirstUpdate,
    #[serde(rename = "u")]
    LastUpdate,
    #[serde(other)]
    Other,
}

/// An integer if the value is a non-negative integer, otherwise `None` (value skipped).
pub(crate) struct Num(pub(crate) Option<u64>);

/// A string, borrowed when the input allows it; `None` for other value types.
pub(crate) struct Str<'a>(pub(crate) Option<Cow<'a, str>>);

/// Implements the visitor methods shared by the tolerant visitors: every value type they
/// do not care about is consumed and mapped to `$none`.
macro_rules! ignore_other_types {
    ($none:expr) => {
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($none)
        }
    };
}
pub(crate) use ignore_other_types;

struct NumVisitor;

impl<'de> Visitor<'de> for NumVisitor {
    type Value = Num;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Num, E> {
        Ok(Num(Some(v)))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Num, E> {
        Ok(Num(u64::try_from(v).ok()))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Num, E> {
        Ok(Num(None))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Num, E> {
        Ok(Num(None))
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Num, E> {
        Ok(Num(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Num, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Num(None))
    }
    ignore_other_types!(Num(None));
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Str<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
        Ok(Str(Some(Cow::Borrowed(v))))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Str<'de>, E> {
        Ok(Str(Some(Cow::Owned(v.to_owned()))))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Str<'de>, E> {
        Ok(Str(None))
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Str<'de>, E> {
        Ok(Str(None))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Str<'de>, E> {
        Ok(Str(None))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Str<'de>, E> {
        Ok(Str(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Str<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Str(None))
    }
    ignore_other_types!(Str(None));
}

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor)
    }
}

/// Visits an object, filling `stream` (top level only) and the fields; `data` recurses.
struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event<'de>, A::Error> {
        let mut ev = Event::default();
        let mut data: Option<Fields> = None;
        while let Some(key) = map.next_key::<Key>()? {
            let f = &mut ev.fields;
            match key {
                Key::Stream => ev.stream = map.next_value::<Str>()?.0,
                Key::Data => data = Some(map.next_value::<Event>()?.fields),
                Key::EventTime => f.event_time = map.next_value::<Num>()?.0,
                Key::TradeId => f.trade_id = map.next_value::<Num>()?.0,
                Key::AggId => f.agg_id = map.next_value::<Num>()?.0,
                Key::FirstUpdate => f.first_update = map.next_value::<Num>()?.0,
                Key::LastUpdate => f.last_update = map.next_value::<Num>()?.0,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if let Some(d) = data {
            ev.fields = d;
        }
        Ok(ev)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Event<'de>, E> {
        Ok(Event::default())
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Event<'de>, E> {
        Ok(Event::default())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Event<'de>, E> {
        Ok(Event::default())
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Event<'de>, E> {
        Ok(Event::default())
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Event<'de>, E> {
        Ok(Event::default())
    }
    ignore_other_types!(Event::default());
}

impl<'de> Deserialize<'de> for Event<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EventVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_trade() {
        let s = br#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1767000000123456,"s":"BTCUSDT","t":5001,"p":"67000.01","q":"0.1","T":1767000000123,"m":true,"M":true}}"#;
        let ev = Event::parse(s).unwrap();
        assert!(matches!(ev.stream, Some(Cow::Borrowed("btcusdt@trade"))));
        assert_eq!(ev.fields.event_time, Some(1767000000123456));
        assert_eq!(ev.fields.trade_id, Some(5001));
        assert_eq!(ev.fields.agg_id, None);
    }

    #[test]
    fn depth_and_tolerant_fields() {
        let s = br#"{"data":{"e":"depthUpdate","E":5,"s":"X","U":157,"u":160,"b":[["1","2"]],"a":[]},"stream":"x@depth"}"#;
        let ev = Event::parse(s).unwrap();
        assert_eq!(ev.stream.as_deref(), Some("x@depth"));
        assert_eq!(
            (ev.fields.first_update, ev.fields.last_update),
            (Some(157), Some(160))
        );
        assert_eq!(ev.fields.agg_id, None);
        let s = br#"{"stream":"x@bookTicker","data":{"u":400900217,"s":"BNBUSDT","b":"25.35","B":"31.21","a":"25.36","A":"40.66"}}"#;
        let ev = Event::parse(s).unwrap();
        assert_eq!(ev.fields.last_update, Some(400900217));
        assert_eq!(ev.fields.event_time, None);
        let s = br#"{"stream":"!miniTicker@arr","data":[{"e":"24hrMiniTicker","E":1}]}"#;
        assert_eq!(Event::parse(s).unwrap().fields, Fields::default());
    }

    #[test]
    fn raw_payload_and_replies() {
        let ev = Event::parse(br#"{"e":"aggTrade","E":7,"a":12345,"f":1,"l":2,"m":true}"#).unwrap();
        assert!(ev.stream.is_none());
        assert_eq!(
            (ev.fields.event_time, ev.fields.agg_id),
            (Some(7), Some(12345))
        );
        let ev = Event::parse(br#"{"result":null,"id":1}"#).unwrap();
        assert_eq!(ev.fields, Fields::default());
        let ev = Event::parse(br#"{"stream":"a\/b@trade","data":{"E":-1,"t":1.5}}"#).unwrap();
        assert_eq!(ev.stream.as_deref(), Some("a/b@trade"));
        assert_eq!(ev.fields, Fields::default());
        assert!(Event::parse(b"{not json").is_err());
    }
}
