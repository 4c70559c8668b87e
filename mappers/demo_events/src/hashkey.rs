//! HashKey Exchange public and private stream payloads.
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

/// A spot order update of the private stream (`"e": "executionReport"`).
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionReport<'a> {
    /// Always `executionReport`.
    #[serde(rename = "e")]
    pub event_type: &'static str,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time: u64,
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// Client order id.
    #[serde(rename = "c")]
    pub client_order_id: &'a str,
    /// `BUY` or `SELL`.
    #[serde(rename = "S")]
    pub side: &'a str,
    /// Order type (`LIMIT`, `MARKET`, ...).
    #[serde(rename = "o")]
    pub order_type: &'a str,
    /// Time in force (`GTC`, `IOC`, `FOK`).
    #[serde(rename = "f")]
    pub time_in_force: &'a str,
    /// Order quantity.
    #[serde(rename = "q")]
    pub qty: &'a str,
    /// Order price (`0` for a market order).
    #[serde(rename = "p")]
    pub price: &'a str,
    /// Order status (`NEW`, `PARTIALLY_FILLED`, `FILLED`, `CANCELED`, ...).
    #[serde(rename = "X")]
    pub status: &'a str,
    /// Order id.
    #[serde(rename = "i")]
    pub order_id: IdString,
    /// Quantity of the last fill.
    #[serde(rename = "l")]
    pub last_qty: &'a str,
    /// Cumulative filled quantity.
    #[serde(rename = "z")]
    pub filled_qty: &'a str,
    /// Price of the last fill.
    #[serde(rename = "L")]
    pub last_price: &'a str,
    /// Average fill price (`0` before any fill).
    #[serde(rename = "V")]
    pub average_price: &'a str,
    /// Cumulative quote quantity.
    #[serde(rename = "Z")]
    pub filled_quote_qty: &'a str,
    /// Fee.
    #[serde(rename = "n")]
    pub fee: &'a str,
    /// Fee asset, `null` when none was charged.
    #[serde(rename = "N")]
    pub fee_asset: Option<&'a str>,
    /// Whether the order is working (always `true`).
    #[serde(rename = "u")]
    pub is_working: bool,
    /// Whether the order is on the book (`NEW` or `PARTIALLY_FILLED`).
    #[serde(rename = "w")]
    pub is_open: bool,
    /// Whether the last fill was as maker.
    #[serde(rename = "m")]
    pub is_maker: bool,
    /// Order creation time, ms.
    #[serde(rename = "O")]
    pub created_time: u64,
    /// Remaining quantity: order quantity minus filled quantity.
    #[serde(rename = "r")]
    pub remaining_qty: &'a str,
}

/// One fill of the user's order on the private stream (`"e": "ticketInfo"`).
#[derive(Debug, Clone, Serialize)]
pub struct TicketInfo<'a> {
    /// Always `ticketInfo`.
    #[serde(rename = "e")]
    pub event_type: &'static str,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time: u64,
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// Fill quantity.
    #[serde(rename = "q")]
    pub qty: &'a str,
    /// Fill time, ms.
    #[serde(rename = "t")]
    pub time: u64,
    /// Fill price.
    #[serde(rename = "p")]
    pub price: &'a str,
    /// Trade id.
    #[serde(rename = "T")]
    pub trade_id: IdString,
    /// Order id.
    #[serde(rename = "o")]
    pub order_id: IdString,
    /// Client order id.
    #[serde(rename = "c")]
    pub client_order_id: &'a str,
    /// Account id (`null` when unknown).
    #[serde(rename = "a")]
    pub account_id: Option<&'a str>,
    /// Whether the fill was as maker.
    #[serde(rename = "m")]
    pub is_maker: bool,
    /// `BUY` or `SELL`.
    #[serde(rename = "S")]
    pub side: &'a str,
}

/// Spot balances that changed, on the private stream (`"e": "outboundAccountInfo"`).
#[derive(Debug, Clone, Serialize)]
pub struct AccountInfo<'a> {
    /// Always `outboundAccountInfo`.
    #[serde(rename = "e")]
    pub event_type: &'static str,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time: u64,
    /// Can trade.
    #[serde(rename = "T")]
    pub can_trade: bool,
    /// Can withdraw.
    #[serde(rename = "W")]
    pub can_withdraw: bool,
    /// Can deposit.
    #[serde(rename = "D")]
    pub can_deposit: bool,
    /// The balances.
    #[serde(rename = "B")]
    pub balances: &'a [AccountBalance<'a>],
}

/// One asset's balance in an [`AccountInfo`].
#[derive(Debug, Clone, Serialize)]
pub struct AccountBalance<'a> {
    /// Asset.
    #[serde(rename = "a")]
    pub asset: &'a str,
    /// Available.
    #[serde(rename = "f")]
    pub free: &'a str,
    /// Held by open orders.
    #[serde(rename = "l")]
    pub locked: &'a str,
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

/// The rolling 24-hour ticker of the `realtimes` topic.
#[derive(Debug, Clone, Serialize)]
pub struct Realtimes<'a> {
    /// Time of the statistics, ms.
    #[serde(rename = "t")]
    pub time: u64,
    /// Symbol.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// Symbol name.
    #[serde(rename = "sn")]
    pub symbol_name: &'a str,
    /// Last price.
    #[serde(rename = "c")]
    pub close: &'a str,
    /// Highest price.
    #[serde(rename = "h")]
    pub high: &'a str,
    /// Lowest price.
    #[serde(rename = "l")]
    pub low: &'a str,
    /// Price 24 hours ago.
    #[serde(rename = "o")]
    pub open: &'a str,
    /// Base volume.
    #[serde(rename = "v")]
    pub volume: &'a str,
    /// Quote volume.
    #[serde(rename = "qv")]
    pub quote_volume: &'a str,
    /// Price change as a ratio of the open price.
    #[serde(rename = "m")]
    pub change: &'a str,
    /// Exchange id (HashKey prints 301).
    #[serde(rename = "e")]
    pub exchange: u32,
}
