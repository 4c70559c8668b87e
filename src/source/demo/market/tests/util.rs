//! Test helpers: an order-preserving JSON reader, event runners and decimal parsing.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::super::engine::Levels;
use super::super::{DemoEvent, DemoMarket, MarketConfig};

/// JSON that keeps the order of object keys (independent of serde_json's features).
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Obj(Vec<(String, J)>),
    Arr(Vec<J>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

impl J {
    pub fn keys(&self) -> Vec<&str> {
        match self {
            J::Obj(fields) => fields.iter().map(|(k, _)| k.as_str()).collect(),
            other => panic!("not an object: {other:?}"),
        }
    }

    pub fn get(&self, key: &str) -> &J {
        match self {
            J::Obj(fields) => fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no field {key}")),
            other => panic!("not an object: {other:?}"),
        }
    }

    pub fn int(&self, key: &str) -> i64 {
        match self.get(key) {
            J::Int(i) => *i,
            other => panic!("{key} is not an integer: {other:?}"),
        }
    }

    pub fn str(&self, key: &str) -> &str {
        match self.get(key) {
            J::Str(s) => s,
            other => panic!("{key} is not a string: {other:?}"),
        }
    }

    pub fn bool(&self, key: &str) -> bool {
        match self.get(key) {
            J::Bool(b) => *b,
            other => panic!("{key} is not a bool: {other:?}"),
        }
    }

    pub fn arr(&self, key: &str) -> &[J] {
        match self.get(key) {
            J::Arr(a) => a,
            other => panic!("{key} is not an array: {other:?}"),
        }
    }

    /// A decimal string field in 1e-8 units.
    pub fn dec(&self, key: &str) -> i64 {
        dec(self.str(key))
    }

    /// Levels `[["price","qty"],...]` in 1e-8 units.
    pub fn levels(&self, key: &str) -> Vec<(i64, i64)> {
        self.arr(key)
            .iter()
            .map(|l| match l {
                J::Arr(pq) if pq.len() == 2 => match (&pq[0], &pq[1]) {
                    (J::Str(p), J::Str(q)) => (dec(p), dec(q)),
                    other => panic!("bad level {other:?}"),
                },
                other => panic!("bad level {other:?}"),
            })
            .collect()
    }
}

/// Parses a decimal with exactly 8 decimals (panics otherwise) into 1e-8 units.
pub fn dec(s: &str) -> i64 {
    i64::try_from(dec_wide(s)).expect("fits i64")
}

/// Parses a decimal with exactly 8 decimals (panics otherwise) into 1e-8 units, any size.
pub fn dec_wide(s: &str) -> i128 {
    let (int, frac) = s
        .split_once('.')
        .unwrap_or_else(|| panic!("no point in {s:?}"));
    assert_eq!(frac.len(), 8, "not 8 decimals: {s:?}");
    let neg = int.starts_with('-');
    let int = int.trim_start_matches('-');
    assert!(!int.is_empty() && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()));
    let v = int.parse::<i128>().unwrap() * 100_000_000 + frac.parse::<i128>().unwrap();
    if neg {
        -v
    } else {
        v
    }
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, v: bool) -> Result<J, E> {
                Ok(J::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<J, E> {
                Ok(J::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<J, E> {
                Ok(J::Int(i64::try_from(v).expect("fits i64")))
            }
            fn visit_f64<E>(self, v: f64) -> Result<J, E> {
                Ok(J::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<J, E> {
                Ok(J::Str(v.to_owned()))
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(J::Arr(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = a.next_entry::<String, J>()? {
                    v.push((k, x));
                }
                Ok(J::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses an event payload.
pub fn parse(e: &DemoEvent) -> J {
    serde_json::from_slice(&e.payload)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&e.payload)))
}

/// 2025-12-29T09:20:00.123456Z, a Monday morning, mid-second.
pub const START: i64 = 1_767_000_000_123_456;

/// A config from JSON properties.
pub fn config(props: serde_json::Value) -> MarketConfig {
    MarketConfig::from_properties(props.as_object().expect("object")).expect("valid config")
}

/// Two symbols, schedule mode, the given extra properties merged in.
pub fn props(extra: serde_json::Value) -> serde_json::Value {
    let mut p = serde_json::json!({
        "symbols": [
            {"symbol": "BTCUSDT", "price": "67000.00", "tick": "0.01", "lot": "0.00001"},
            {"symbol": "XRPUSDT", "price": "0.5000", "tick": "0.0001", "lot": "0.1"}
        ],
        "trades_per_sec": 200,
        "book_updates_per_sec": 300,
        "depth_levels": 100,
        "kline_intervals": ["1s", "1m"],
        "seed": 7,
        "stamp": "schedule"
    });
    for (k, v) in extra.as_object().expect("object") {
        p[k] = v.clone();
    }
    p
}

/// Runs a fresh market from `start` for `secs` seconds in 10 ms steps; returns it and its events.
pub fn run(props: serde_json::Value, start: i64, secs: i64) -> (DemoMarket, Vec<DemoEvent>) {
    let mut m = DemoMarket::new(config(props), start);
    let mut out = Vec::new();
    let mut t = start;
    while t < start + secs * 1_000_000 {
        t += 10_000;
        m.advance(t, &mut out);
    }
    (m, out)
}

/// The parsed events of one symbol whose payload `type` is `ty`.
pub fn of_type(events: &[DemoEvent], symbol: &str, ty: &str) -> Vec<J> {
    events
        .iter()
        .filter(|e| e.symbol == symbol)
        .map(parse)
        .filter(|j| j.str("type") == ty)
        .collect()
}

/// A local order book fed by `book_delta` events, keyed by price in 1e-8 units.
#[derive(Debug, Default, Clone)]
pub struct LocalBook {
    pub bids: BTreeMap<i64, i64>,
    pub asks: BTreeMap<i64, i64>,
    pub update_id: i64,
}

impl LocalBook {
    pub fn apply(&mut self, delta: &J) {
        assert_eq!(delta.int("first_update_id"), self.update_id + 1, "gap");
        for (side, key) in [(&mut self.bids, "bids"), (&mut self.asks, "asks")] {
            for (p, q) in delta.levels(key) {
                if q == 0 {
                    side.remove(&p);
                } else {
                    side.insert(p, q);
                }
            }
        }
        self.update_id = delta.int("last_update_id");
    }

    pub fn top(&self, n: usize) -> (Levels, Levels) {
        let bids = self
            .bids
            .iter()
            .rev()
            .take(n)
            .map(|(p, q)| (*p, *q))
            .collect();
        let asks = self.asks.iter().take(n).map(|(p, q)| (*p, *q)).collect();
        (bids, asks)
    }
}
