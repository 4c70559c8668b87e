//! The Binance Spot dialect: connect URLs, client formats (raw or combined, ms or µs) and the
//! gateway's own notices (`reference/binance-protocol.md` §1, §4).

use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::frame;
use crate::config::is_stream_name;
use crate::hub::Delivery;

/// What a client asked for in its connect URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectTarget {
    /// Wrap events as `{"stream":..,"data":..}` (`/stream` paths).
    pub combined: bool,
    /// Times in microseconds (`timeUnit=MICROSECOND`).
    pub micros: bool,
    /// Streams to subscribe at once.
    pub streams: Vec<String>,
}

/// Why a connect URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not a stream endpoint.
    #[error("not found")]
    NotFound,
    /// `timeUnit` has a value other than MILLISECOND or MICROSECOND.
    #[error("Invalid timeUnit")]
    BadTimeUnit,
}

/// Parses a request target: `/ws`, `/ws/`, `/ws/<stream>[/<stream>..]`, `/ws/0`, `/stream`,
/// `/stream?streams=a/b`, each optionally percent-encoded and with `timeUnit`.
///
/// A path segment after `/ws/` that is not a stream name (ccxt's `/ws/0`) means "no initial
/// stream", as Binance treats it.
pub fn parse_target(path: &str, query: Option<&str>) -> Result<ConnectTarget, TargetError> {
    let path = percent_decode_str(path).decode_utf8_lossy();
    let mut target = ConnectTarget::default();
    if let Some(rest) = path.strip_prefix("/ws") {
        let rest = match rest {
            "" => "",
            r if r.starts_with('/') => &r[1..],
            _ => return Err(TargetError::NotFound),
        };
        target.streams = rest
            .split('/')
            .filter(|s| looks_like_stream(s))
            .map(str::to_string)
            .collect();
    } else if path == "/stream" || path == "/stream/" {
        target.combined = true;
    } else {
        return Err(TargetError::NotFound);
    }
    for (key, value) in query_pairs(query.unwrap_or("")) {
        match key.as_str() {
            "streams" if target.combined => {
                target.streams = value
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "timeUnit" => {
                target.micros = match value.as_str() {
                    "MICROSECOND" | "microsecond" => true,
                    "MILLISECOND" | "millisecond" => false,
                    _ => return Err(TargetError::BadTimeUnit),
                }
            }
            _ => {}
        }
    }
    Ok(target)
}

/// True for text shaped like a stream name (`symbol@kind...` or `!name...`).
pub fn looks_like_stream(name: &str) -> bool {
    is_stream_name(name) && (name.contains('@') || name.starts_with('!'))
}

fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        (decode(k), decode(v))
    })
}

/// A client format: which of a delivery's cached frames a connection takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Combined wrapper.
    pub combined: bool,
    /// Microsecond times.
    pub micros: bool,
}

impl Format {
    /// Index of this format's frame in a [`Delivery`].
    pub fn index(self) -> usize {
        usize::from(self.combined) | (usize::from(self.micros) << 1)
    }

    /// The frame for `delivery` in this format, encoded once per delivery and format.
    pub fn frame(self, delivery: &Delivery) -> &Bytes {
        delivery.frame(self.index(), |d| {
            self.encode(&d.stream, &d.payload, d.event_time_us)
        })
    }

    /// Encodes `payload` of `stream` as a text frame in this format.
    pub fn encode(self, stream: &str, payload: &[u8], event_time_us: i64) -> Bytes {
        let micro_payload;
        let payload = if self.micros {
            micro_payload = to_microseconds(payload, event_time_us);
            &micro_payload[..]
        } else {
            payload
        };
        if self.combined {
            frame::text(&[
                b"{\"stream\":\"",
                stream.as_bytes(),
                b"\",\"data\":",
                payload,
                b"}",
            ])
        } else {
            frame::text(&[payload])
        }
    }

    /// The `serverShutdown` notice sent before a planned close.
    pub fn server_shutdown(self, now_us: i64) -> Bytes {
        let payload = format!("{{\"e\":\"serverShutdown\",\"E\":{}}}", now_us / 1000);
        self.encode("!serverShutdown", payload.as_bytes(), now_us)
    }
}

/// Millisecond time fields of Binance market payloads, top level and inside `k` (klines).
const TIME_FIELDS: [&str; 4] = ["E", "T", "O", "C"];
const KLINE_TIME_FIELDS: [&str; 2] = ["t", "T"];

/// Rewrites a payload's millisecond time fields to microseconds. The event time `E` takes the
/// upstream event's exact microseconds when they agree with its milliseconds; other fields are
/// scaled. Payloads that are not JSON objects or arrays pass unchanged.
pub fn to_microseconds(payload: &[u8], event_time_us: i64) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<Value>(payload) else {
        return payload.to_vec();
    };
    match &mut value {
        Value::Array(items) => items.iter_mut().for_each(|v| scale_times(v, event_time_us)),
        v => scale_times(v, event_time_us),
    }
    serde_json::to_vec(&value).unwrap_or_else(|_| payload.to_vec())
}

fn scale_times(value: &mut Value, event_time_us: i64) {
    let Value::Object(map) = value else { return };
    for field in TIME_FIELDS {
        if let Some(slot) = map.get_mut(field) {
            let exact = (field == "E").then_some(event_time_us);
            scale(slot, exact);
        }
    }
    if let Some(Value::Object(kline)) = map.get_mut("k") {
        for field in KLINE_TIME_FIELDS {
            if let Some(slot) = kline.get_mut(field) {
                scale(slot, None);
            }
        }
    }
}

fn scale(slot: &mut Value, exact_us: Option<i64>) {
    let Some(ms) = slot.as_i64() else { return };
    let us = match exact_us {
        Some(exact) if exact.div_euclid(1000) == ms => exact,
        _ => ms.saturating_mul(1000),
    };
    *slot = Value::from(us);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str, query: Option<&str>) -> ConnectTarget {
        parse_target(path, query).unwrap()
    }

    #[test]
    fn accepts_every_url_form_clients_use() {
        assert_eq!(target("/ws", None), ConnectTarget::default());
        assert_eq!(target("/ws/", None), ConnectTarget::default());
        assert_eq!(target("/ws/0", None), ConnectTarget::default());
        assert_eq!(target("/ws/btcusdt@trade", None).streams, ["btcusdt@trade"]);
        assert_eq!(
            target("/ws/btcusdt%40trade", None).streams,
            ["btcusdt@trade"]
        );
        assert_eq!(
            target("/ws/a@trade/b@depth", None).streams,
            ["a@trade", "b@depth"]
        );
        let stream = target("/stream", None);
        assert!(stream.combined && stream.streams.is_empty());
        assert!(target("/stream", Some("streams=")).streams.is_empty());
        assert_eq!(
            target("/stream", Some("streams=a@trade/b@depth")).streams,
            ["a@trade", "b@depth"]
        );
        assert_eq!(
            target(
                "/stream",
                Some("streams=a%40trade%2Fb%40depth&timeUnit=MICROSECOND")
            ),
            ConnectTarget {
                combined: true,
                micros: true,
                streams: vec!["a@trade".into(), "b@depth".into()]
            }
        );
        assert!(target("/ws/x@trade", Some("timeUnit=microsecond")).micros);
        assert!(!target("/ws", Some("timeUnit=MILLISECOND")).micros);
    }

    #[test]
    fn refuses_other_paths_and_time_units() {
        assert_eq!(parse_target("/wsx", None), Err(TargetError::NotFound));
        assert_eq!(
            parse_target("/stream/nonsense", None),
            Err(TargetError::NotFound)
        );
        assert_eq!(parse_target("/", None), Err(TargetError::NotFound));
        assert_eq!(
            parse_target("/ws", Some("timeUnit=NANOSECOND")),
            Err(TargetError::BadTimeUnit)
        );
    }

    #[test]
    fn formats_wrap_and_scale() {
        let payload = br#"{"e":"trade","E":1700000000123,"T":1700000000120,"p":"1.0"}"#;
        let raw = Format {
            combined: false,
            micros: false,
        }
        .encode("x@trade", payload, 0);
        assert_eq!(&raw[2..], payload);
        let combined = Format {
            combined: true,
            micros: false,
        }
        .encode("x@trade", payload, 0);
        assert_eq!(
            &combined[2..],
            br#"{"stream":"x@trade","data":{"e":"trade","E":1700000000123,"T":1700000000120,"p":"1.0"}}"#
        );
        let micros = to_microseconds(payload, 1_700_000_000_123_456);
        assert_eq!(
            micros,
            br#"{"e":"trade","E":1700000000123456,"T":1700000000120000,"p":"1.0"}"#
        );
        let stale = to_microseconds(payload, 5);
        assert!(stale.starts_with(br#"{"e":"trade","E":1700000000123000,"#));
    }

    #[test]
    fn kline_times_are_scaled() {
        let payload = br#"{"e":"kline","E":2,"k":{"t":1000,"T":1999,"i":"1s"}}"#;
        assert_eq!(
            to_microseconds(payload, 2_500),
            br#"{"e":"kline","E":2500,"k":{"t":1000000,"T":1999000,"i":"1s"}}"#
        );
    }

    #[test]
    fn server_shutdown_in_both_formats() {
        let raw = Format {
            combined: false,
            micros: false,
        }
        .server_shutdown(1_770_123_456_789_000);
        assert_eq!(&raw[2..], br#"{"e":"serverShutdown","E":1770123456789}"#);
        let combined = Format {
            combined: true,
            micros: false,
        }
        .server_shutdown(1_770_123_456_789_000);
        assert_eq!(
            &combined[2..],
            br#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}"#
        );
    }
}
