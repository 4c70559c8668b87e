//! HashKey Exchange public stream payloads.
//!
//! Field order is the serialization order and matches HashKey's. Prices and quantities are
//! decimal strings without trailing zeros ([`trim_zeros`](crate::decimal::trim_zeros)); ids are
//! strings, times integers (ms).

use std::fmt;

use serde::{Serialize, Serializer};

use crate::events::Level;

/// One public trade: an item of the `trade` topic's `data` list.
#[derive(Debug, Clone, Serialize)]
pub struct Trade<'a> {
    /// Trade id.
    #[serde(rename = "v")]
    pub trade_id: IdString,
    /// Trade time, ms.
    #[serde(rename = "t")]
    pub time: u64,
    /// Price.
    #[serde(rename = "p")]
    pub price: &'a str,
    /// Quantity.
    #[serde(rename = "q")]
    pub qty: &'a str,
    /// Whether the buyer is the maker.
    #[serde(rename = "m")]
    pub buyer_is_maker: bool,
}

/// A full order-book snapshot of the `depth` topic.
#[derive(Debug, Clone, Serialize)]
pub struct Depth<'a> {
    /// Always `301`.
    #[serde(rename = "e")]
    pub event_type: u32,
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// Snapshot time, ms.
    #[serde(rename = "t")]
    pub time: u64,
    /// The update id the levels reflect.
    #[serde(rename = "v")]
    pub version: IdString,
    /// Bids, price descending.
    #[serde(rename = "b")]
    pub bids: &'a [Level<'a>],
    /// Asks, price ascending.
    #[serde(rename = "a")]
    pub asks: &'a [Level<'a>],
    /// Always `0`.
    #[serde(rename = "o")]
    pub ignore: u32,
}

/// An integer id written as a JSON string, e.g. `"5001"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdString(pub u64);

impl fmt::Display for IdString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for IdString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
