//! How HashKey connections receive events (`docs/binance-protocol.md` §7). The mappers produce
//! HashKey's data items (a trade `{"v","t","p","q","m"}`, a depth snapshot
//! `{"e","s","t","v","b","a","o"}`); the dialect wraps them once per event and version:
//!
//! - v1: `{"symbol":"BTCUSDT","symbolName":"BTCUSDT","topic":"trade","params":{"realtimeInterval":
//!   "24h","binary":"false"},"data":[<item>],"f":false,"sendTime":<ms>,"shared":false}`, where `f`
//!   is true for depth (every push is a full snapshot);
//! - v2: `{"topic":"trade","params":{"symbol":"BTCUSDT"},"data":<item>}`.
//!
//! A stream's symbol and topic come from its hub name (`hashkey:btcusdt@kline_1m` is symbol
//! `BTCUSDT`, topic `kline`, `klineType` `1m`).

use bytes::Bytes;

use super::Version;
use crate::config::strip_namespace;
use crate::hub::{Delivery, FrameVariant, FrameVariants};
use crate::util::now_ms;
use crate::ws::frame;

/// The hub's frame variants of the two versions' pushes.
#[derive(Debug, Clone, Copy)]
pub struct Variants {
    v1: FrameVariant,
    v2: FrameVariant,
}

impl Variants {
    /// Registers the pushes of both versions.
    pub fn register(variants: &mut FrameVariants) -> Self {
        Variants {
            v1: variants.register("hashkey/v1", |d| encode_v1(d, now_ms())),
            v2: variants.register("hashkey/v2", encode_v2),
        }
    }

    /// The variant of `version`.
    pub fn of(&self, version: Version) -> FrameVariant {
        match version {
            Version::V1 => self.v1,
            Version::V2 => self.v2,
        }
    }
}

/// A stream's symbol (upper case), topic and kline interval, from its hub name.
struct Named {
    symbol: String,
    topic: String,
    kline_type: Option<String>,
}

impl Named {
    /// `,"klineType":"<interval>"` for a kline stream, to close its `params`; empty otherwise.
    fn kline_param(&self) -> String {
        self.kline_type
            .as_ref()
            .map(|interval| format!(",\"klineType\":\"{interval}\""))
            .unwrap_or_default()
    }
}

fn named(stream: &str) -> Named {
    let (symbol, kind) = strip_namespace(stream)
        .split_once('@')
        .unwrap_or((stream, ""));
    let (topic, kline_type) = match kind.split_once('_') {
        Some(("kline", interval)) => ("kline", Some(interval.to_string())),
        _ => (kind, None),
    };
    Named {
        symbol: symbol.to_ascii_uppercase(),
        topic: topic.to_string(),
        kline_type,
    }
}

/// The v1 push of `delivery`, sent at `send_time_ms`.
pub fn encode_v1(delivery: &Delivery, send_time_ms: u64) -> Bytes {
    let named = named(&delivery.stream);
    let (symbol, topic, kline) = (&named.symbol, &named.topic, named.kline_param());
    let full = if topic == "depth" { "true" } else { "false" };
    let head = format!(
        "{{\"symbol\":\"{symbol}\",\"symbolName\":\"{symbol}\",\"topic\":\"{topic}\",\
         \"params\":{{\"realtimeInterval\":\"24h\",\"binary\":\"false\"{kline}}},\"data\":["
    );
    let tail = format!("],\"f\":{full},\"sendTime\":{send_time_ms},\"shared\":false}}");
    frame::text(&[head.as_bytes(), &delivery.payload, tail.as_bytes()])
}

/// The v2 push of `delivery`.
pub fn encode_v2(delivery: &Delivery) -> Bytes {
    let named = named(&delivery.stream);
    let (symbol, topic, kline) = (&named.symbol, &named.topic, named.kline_param());
    let head =
        format!("{{\"topic\":\"{topic}\",\"params\":{{\"symbol\":\"{symbol}\"{kline}}},\"data\":");
    frame::text(&[head.as_bytes(), &delivery.payload, b"}"])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn delivery(stream: &str, payload: &str) -> Delivery {
        Delivery::new(
            Arc::from(stream),
            1,
            0,
            0,
            Bytes::from(payload.to_string()),
            2,
        )
    }

    /// The text of an unmasked server frame.
    fn text(frame: &Bytes) -> &str {
        let header = match frame[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        std::str::from_utf8(&frame[header..]).unwrap()
    }

    const TRADE: &str = r#"{"v":"5001","t":1767000000123,"p":"67000.01","q":"0.012","m":true}"#;

    #[test]
    fn v1_wraps_the_item_in_a_data_array_with_the_stream_named() {
        let frame = encode_v1(&delivery("hashkey:btcusdt@trade", TRADE), 1767000000200);
        assert_eq!(
            text(&frame),
            format!(
                r#"{{"symbol":"BTCUSDT","symbolName":"BTCUSDT","topic":"trade","params":{{"realtimeInterval":"24h","binary":"false"}},"data":[{TRADE}],"f":false,"sendTime":1767000000200,"shared":false}}"#
            )
        );
        let depth = encode_v1(&delivery("hashkey:ethusdt@depth", "{}"), 1);
        assert!(text(&depth).contains(r#""topic":"depth""#));
        assert!(text(&depth).contains(r#""f":true"#));
    }

    #[test]
    fn v2_names_the_symbol_in_params_and_sends_the_item_alone() {
        let frame = encode_v2(&delivery("hashkey:btcusdt@trade", TRADE));
        assert_eq!(
            text(&frame),
            format!(r#"{{"topic":"trade","params":{{"symbol":"BTCUSDT"}},"data":{TRADE}}}"#)
        );
        let kline = encode_v2(&delivery("hashkey:btcusdt@kline_1m", "{}"));
        assert_eq!(
            text(&kline),
            r#"{"topic":"kline","params":{"symbol":"BTCUSDT","klineType":"1m"},"data":{}}"#
        );
    }
}
