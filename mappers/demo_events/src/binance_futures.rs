//! Binance USD-M futures market stream payloads.
//!
//! Field order is the serialization order and matches Binance's. Prices, quantities and rates are
//! strings, ids and times integers. The one-letter JSON names are kept in `#[serde(rename)]`.

use serde::Serialize;

/// `<symbol>@trade`.
#[derive(Debug, Clone, Serialize)]
pub struct Trade<'a> {
    /// Always `trade`.
    #[serde(rename = "e")]
    pub event_type: &'static str,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time: u64,
    /// Trade time, ms.
    #[serde(rename = "T")]
    pub trade_time: u64,
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// Trade id.
    #[serde(rename = "t")]
    pub trade_id: u64,
    /// Price.
    #[serde(rename = "p")]
    pub price: &'a str,
    /// Quantity.
    #[serde(rename = "q")]
    pub qty: &'a str,
    /// Order type; always `MARKET`.
    #[serde(rename = "X")]
    pub order_type: &'static str,
    /// Whether the buyer is the maker.
    #[serde(rename = "m")]
    pub buyer_is_maker: bool,
}

/// `<symbol>@markPrice` and `<symbol>@markPrice@1s`.
#[derive(Debug, Clone, Serialize)]
pub struct MarkPriceUpdate<'a> {
    /// Always `markPriceUpdate`.
    #[serde(rename = "e")]
    pub event_type: &'static str,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time: u64,
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// Mark price.
    #[serde(rename = "p")]
    pub mark_price: &'a str,
    /// Moving average of the mark price.
    #[serde(rename = "ap")]
    pub mark_price_avg: &'a str,
    /// Estimated settle price.
    #[serde(rename = "P")]
    pub estimated_settle_price: &'a str,
    /// Index price.
    #[serde(rename = "i")]
    pub index_price: &'a str,
    /// Funding rate.
    #[serde(rename = "r")]
    pub funding_rate: &'a str,
    /// Next funding time, ms.
    #[serde(rename = "T")]
    pub next_funding_time: u64,
}

/// `<symbol>@forceOrder`: a liquidation order.
#[derive(Debug, Clone, Serialize)]
pub struct ForceOrder<'a> {
    /// Always `forceOrder`.
    #[serde(rename = "e")]
    pub event_type: &'static str,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time: u64,
    /// The order.
    #[serde(rename = "o")]
    pub order: ForceOrderData<'a>,
}

/// The order of a [`ForceOrder`] payload.
#[derive(Debug, Clone, Serialize)]
pub struct ForceOrderData<'a> {
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// Side, `BUY` or `SELL`.
    #[serde(rename = "S")]
    pub side: &'static str,
    /// Order type; always `LIMIT`.
    #[serde(rename = "o")]
    pub order_type: &'static str,
    /// Time in force; always `IOC`.
    #[serde(rename = "f")]
    pub time_in_force: &'static str,
    /// Original quantity.
    #[serde(rename = "q")]
    pub qty: &'a str,
    /// Price.
    #[serde(rename = "p")]
    pub price: &'a str,
    /// Average price.
    #[serde(rename = "ap")]
    pub avg_price: &'a str,
    /// Order status; always `FILLED`.
    #[serde(rename = "X")]
    pub status: &'static str,
    /// Last filled quantity.
    #[serde(rename = "l")]
    pub last_filled_qty: &'a str,
    /// Accumulated filled quantity.
    #[serde(rename = "z")]
    pub filled_qty: &'a str,
    /// Trade time, ms.
    #[serde(rename = "T")]
    pub trade_time: u64,
}
