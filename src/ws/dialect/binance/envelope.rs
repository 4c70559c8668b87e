//! How Binance market-stream connections receive events: raw or combined
//! (`{"stream":..,"data":..}`), with times in milliseconds or microseconds, and the
//! `serverShutdown` notice (`docs/binance-protocol.md` §1, §4); and, for connections that
//! opted into resume (a gateway addition), combined with the stream's sequence number
//! (`{"stream":..,"data":..,"seq":..}`). A stream of another Binance market is named as its
//! clients name it, without the hub's namespace (`futures:btcusdt@markPrice` is
//! `btcusdt@markPrice`).

use bytes::Bytes;
use serde_json::Value;

use crate::config::strip_namespace;
use crate::hub::{Delivery, FrameVariant, FrameVariants};
use crate::ws::frame;

/// A client format: how a connection wants its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Combined wrapper.
    pub combined: bool,
    /// Microsecond times.
    pub micros: bool,
    /// The stream's sequence number in the combined wrapper (`"seq"`): a resuming connection.
    pub seq: bool,
}

/// The hub's frame variant of each format: a delivery is encoded once per format in use.
#[derive(Debug, Clone, Copy)]
pub struct Variants([FrameVariant; 6]);

impl Variants {
    /// Registers the six formats' variants (the four of Binance, and combined with sequence
    /// numbers in both time units).
    pub fn register(variants: &mut FrameVariants) -> Self {
        Variants([
            variants.register("binance/raw", |d| {
                Format::of(false, false).encode_delivery(d)
            }),
            variants.register("binance/combined", |d| {
                Format::of(true, false).encode_delivery(d)
            }),
            variants.register("binance/raw-us", |d| {
                Format::of(false, true).encode_delivery(d)
            }),
            variants.register("binance/combined-us", |d| {
                Format::of(true, true).encode_delivery(d)
            }),
            variants.register("binance/combined-seq", |d| {
                Format::of(true, false).with_seq(true).encode_delivery(d)
            }),
            variants.register("binance/combined-seq-us", |d| {
                Format::of(true, true).with_seq(true).encode_delivery(d)
            }),
        ])
    }

    /// The variant of `format` (sequence numbers only ever travel combined).
    pub fn of(&self, format: Format) -> FrameVariant {
        if format.seq && format.combined {
            return self.0[4 + usize::from(format.micros)];
        }
        self.0[usize::from(format.combined) | (usize::from(format.micros) << 1)]
    }
}

impl Format {
    /// The format with these wrapper and time unit choices, without sequence numbers.
    pub const fn of(combined: bool, micros: bool) -> Format {
        Format {
            combined,
            micros,
            seq: false,
        }
    }

    /// The same format, with or without sequence numbers in the combined wrapper.
    pub const fn with_seq(mut self, seq: bool) -> Format {
        self.seq = seq;
        self
    }

    /// Encodes a delivery as a text frame in this format.
    pub fn encode_delivery(self, delivery: &Delivery) -> Bytes {
        if self.seq && self.combined {
            return self.encode_numbered(delivery);
        }
        self.encode(&delivery.stream, &delivery.payload, delivery.event_time_us)
    }

    /// `{"stream":..,"data":..,"seq":..}`.
    fn encode_numbered(self, delivery: &Delivery) -> Bytes {
        let micro_payload;
        let payload = if self.micros {
            micro_payload = to_microseconds(&delivery.payload, delivery.event_time_us);
            &micro_payload[..]
        } else {
            &delivery.payload[..]
        };
        let seq = delivery.seq.to_string();
        frame::text(&[
            b"{\"stream\":\"",
            strip_namespace(&delivery.stream).as_bytes(),
            b"\",\"data\":",
            payload,
            b",\"seq\":",
            seq.as_bytes(),
            b"}",
        ])
    }

    /// The notice that a resuming connection missed events of `stream` that are no longer
    /// kept: `{"stream":"btcusdt@trade","resync":{"from":124,"next":1000}}`, where `from` is
    /// the first sequence number it asked for and `next` the one that follows the notice.
    pub fn resync_notice(stream: &str, from: u64, next: u64) -> Bytes {
        let stream = serde_json::to_string(strip_namespace(stream)).expect("strings serialize");
        let text =
            format!("{{\"stream\":{stream},\"resync\":{{\"from\":{from},\"next\":{next}}}}}");
        frame::text(&[text.as_bytes()])
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
                strip_namespace(stream).as_bytes(),
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

    #[test]
    fn formats_wrap_and_scale() {
        let payload = br#"{"e":"trade","E":1700000000123,"T":1700000000120,"p":"1.0"}"#;
        let raw = Format::of(false, false).encode("x@trade", payload, 0);
        assert_eq!(&raw[2..], payload);
        let combined = Format::of(true, false).encode("x@trade", payload, 0);
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
    fn a_resuming_connection_gets_the_sequence_in_the_wrapper() {
        let delivery = Delivery::new(
            std::sync::Arc::from("x@trade"),
            123,
            1_700_000_000_123_456,
            0,
            bytes::Bytes::from_static(br#"{"e":"trade","E":1700000000123,"t":7}"#),
            0,
        );
        let frame = Format::of(true, false)
            .with_seq(true)
            .encode_delivery(&delivery);
        assert_eq!(
            &frame[2..],
            br#"{"stream":"x@trade","data":{"e":"trade","E":1700000000123,"t":7},"seq":123}"#
        );
        let micros = Format::of(true, true)
            .with_seq(true)
            .encode_delivery(&delivery);
        assert_eq!(
            &micros[2..],
            br#"{"stream":"x@trade","data":{"e":"trade","E":1700000000123456,"t":7},"seq":123}"#
        );
        // A raw connection never carries a sequence number.
        let raw = Format::of(false, false)
            .with_seq(true)
            .encode_delivery(&delivery);
        assert_eq!(&raw[2..], br#"{"e":"trade","E":1700000000123,"t":7}"#);
        assert_eq!(
            &Format::resync_notice("x@trade", 124, 1000)[2..],
            br#"{"stream":"x@trade","resync":{"from":124,"next":1000}}"#
        );
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
        let raw = Format::of(false, false).server_shutdown(1_770_123_456_789_000);
        assert_eq!(&raw[2..], br#"{"e":"serverShutdown","E":1770123456789}"#);
        let combined = Format::of(true, false).server_shutdown(1_770_123_456_789_000);
        assert_eq!(
            &combined[2..],
            br#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}"#
        );
    }
}
