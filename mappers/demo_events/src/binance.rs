//! Binance Spot market stream payloads (`docs/binance-protocol.md` §4).
//!
//! Field order is the serialization order and matches Binance's. Prices and quantities are
//! strings, ids and times integers. The one-letter JSON names are kept in `#[serde(rename)]`.

use serde::Serialize;

use crate::decimal::Fixed8;
use crate::events::Level;

/// `<symbol>@trade`.
#[derive(Debug, Clone, Serialize)]
pub struct Trade<'a> {
    /// Always `trade`.
    #[serde(rename = "e")]
    pub event_type: &'static str,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time: u64,
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
    /// Trade time, ms.
    #[serde(rename = "T")]
    pub trade_time: u64,
    /// Whether the buyer is the maker.
    #[serde(rename = "m")]
    pub buyer_is_maker: bool,
    /// Ignore; always `true`.
    #[serde(rename = "M")]
    pub ignore: bool,
}

/// `<symbol>@aggTrade`.
#[derive(Debug, Clone, Serialize)]
pub struct AggTrade<'a> {
    /// Always `aggTrade`.
    #[serde(rename = "e")]
    pub event_type: &'static str,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time: u64,
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// Aggregate trade id.
    #[serde(rename = "a")]
    pub agg_id: u64,
    /// Price.
    #[serde(rename = "p")]
    pub price: &'a str,
    /// Total quantity of the aggregated trades.
    #[serde(rename = "q")]
    pub qty: Fixed8,
    /// First trade id.
    #[serde(rename = "f")]
    pub first_trade_id: u64,
    /// Last trade id.
    #[serde(rename = "l")]
    pub last_trade_id: u64,
    /// Trade time, ms.
    #[serde(rename = "T")]
    pub trade_time: u64,
    /// Whether the buyer is the maker.
    #[serde(rename = "m")]
    pub buyer_is_maker: bool,
    /// Ignore; always `true`.
    #[serde(rename = "M")]
    pub ignore: bool,
}

/// `<symbol>@depth` and `<symbol>@depth@100ms`: a diff of absolute level quantities.
#[derive(Debug, Clone, Serialize)]
pub struct DepthUpdate<'a> {
    /// Always `depthUpdate`.
    #[serde(rename = "e")]
    pub event_type: &'static str,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time: u64,
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// First update id in the event.
    #[serde(rename = "U")]
    pub first_update_id: u64,
    /// Final update id in the event.
    #[serde(rename = "u")]
    pub final_update_id: u64,
    /// Changed bids.
    #[serde(rename = "b")]
    pub bids: &'a [Level<'a>],
    /// Changed asks.
    #[serde(rename = "a")]
    pub asks: &'a [Level<'a>],
}

/// `<symbol>@depth<5|10|20>` and `...@100ms`: the top levels (no event type, time or symbol).
#[derive(Debug, Clone, Serialize)]
pub struct PartialDepth<'a> {
    /// The update id the levels reflect.
    #[serde(rename = "lastUpdateId")]
    pub last_update_id: u64,
    /// Best bids.
    pub bids: &'a [Level<'a>],
    /// Best asks.
    pub asks: &'a [Level<'a>],
}

/// `<symbol>@bookTicker` (no event type or time).
#[derive(Debug, Clone, Serialize)]
pub struct BookTicker<'a> {
    /// Order book update id.
    #[serde(rename = "u")]
    pub update_id: u64,
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// Best bid price.
    #[serde(rename = "b")]
    pub bid_price: &'a str,
    /// Best bid quantity.
    #[serde(rename = "B")]
    pub bid_qty: &'a str,
    /// Best ask price.
    #[serde(rename = "a")]
    pub ask_price: &'a str,
    /// Best ask quantity.
    #[serde(rename = "A")]
    pub ask_qty: &'a str,
}

/// `<symbol>@kline_<interval>`.
#[derive(Debug, Clone, Serialize)]
pub struct Kline<'a> {
    /// Always `kline`.
    #[serde(rename = "e")]
    pub event_type: &'static str,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time: u64,
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// The candle.
    #[serde(rename = "k")]
    pub kline: KlineData<'a>,
}

/// The candle of a [`Kline`] payload.
#[derive(Debug, Clone, Serialize)]
pub struct KlineData<'a> {
    /// Start time, ms.
    #[serde(rename = "t")]
    pub start_time: u64,
    /// Close time, ms.
    #[serde(rename = "T")]
    pub close_time: u64,
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// Interval.
    #[serde(rename = "i")]
    pub interval: &'a str,
    /// First trade id, -1 without trades.
    #[serde(rename = "f")]
    pub first_trade_id: i64,
    /// Last trade id, -1 without trades.
    #[serde(rename = "L")]
    pub last_trade_id: i64,
    /// Open price.
    #[serde(rename = "o")]
    pub open: &'a str,
    /// Close price.
    #[serde(rename = "c")]
    pub close: &'a str,
    /// High price.
    #[serde(rename = "h")]
    pub high: &'a str,
    /// Low price.
    #[serde(rename = "l")]
    pub low: &'a str,
    /// Base asset volume.
    #[serde(rename = "v")]
    pub volume: &'a str,
    /// Number of trades.
    #[serde(rename = "n")]
    pub trades: u64,
    /// Whether the candle is closed.
    #[serde(rename = "x")]
    pub closed: bool,
    /// Quote asset volume.
    #[serde(rename = "q")]
    pub quote_volume: &'a str,
    /// Taker buy base asset volume.
    #[serde(rename = "V")]
    pub taker_buy_volume: &'a str,
    /// Taker buy quote asset volume.
    #[serde(rename = "Q")]
    pub taker_buy_quote_volume: &'a str,
    /// Ignore; always `"0"`.
    #[serde(rename = "B")]
    pub ignore: &'static str,
}

/// `<symbol>@miniTicker`.
#[derive(Debug, Clone, Serialize)]
pub struct MiniTicker<'a> {
    /// Always `24hrMiniTicker`.
    #[serde(rename = "e")]
    pub event_type: &'static str,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time: u64,
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// Close (last) price.
    #[serde(rename = "c")]
    pub close: &'a str,
    /// Open price.
    #[serde(rename = "o")]
    pub open: &'a str,
    /// High price.
    #[serde(rename = "h")]
    pub high: &'a str,
    /// Low price.
    #[serde(rename = "l")]
    pub low: &'a str,
    /// Base asset volume.
    #[serde(rename = "v")]
    pub volume: &'a str,
    /// Quote asset volume.
    #[serde(rename = "q")]
    pub quote_volume: &'a str,
}

/// `<symbol>@ticker`: rolling 24-hour statistics.
#[derive(Debug, Clone, Serialize)]
pub struct Ticker<'a> {
    /// Always `24hrTicker`.
    #[serde(rename = "e")]
    pub event_type: &'static str,
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time: u64,
    /// Symbol, uppercase.
    #[serde(rename = "s")]
    pub symbol: &'a str,
    /// Price change.
    #[serde(rename = "p")]
    pub price_change: &'a str,
    /// Price change percent.
    #[serde(rename = "P")]
    pub price_change_percent: &'a str,
    /// Weighted average price.
    #[serde(rename = "w")]
    pub weighted_avg_price: &'a str,
    /// Price of the last trade before the window.
    #[serde(rename = "x")]
    pub prev_close: &'a str,
    /// Last price.
    #[serde(rename = "c")]
    pub last: &'a str,
    /// Last quantity.
    #[serde(rename = "Q")]
    pub last_qty: &'a str,
    /// Best bid price.
    #[serde(rename = "b")]
    pub bid_price: &'a str,
    /// Best bid quantity.
    #[serde(rename = "B")]
    pub bid_qty: &'a str,
    /// Best ask price.
    #[serde(rename = "a")]
    pub ask_price: &'a str,
    /// Best ask quantity.
    #[serde(rename = "A")]
    pub ask_qty: &'a str,
    /// Open price.
    #[serde(rename = "o")]
    pub open: &'a str,
    /// High price.
    #[serde(rename = "h")]
    pub high: &'a str,
    /// Low price.
    #[serde(rename = "l")]
    pub low: &'a str,
    /// Base asset volume.
    #[serde(rename = "v")]
    pub volume: &'a str,
    /// Quote asset volume.
    #[serde(rename = "q")]
    pub quote_volume: &'a str,
    /// Statistics open time, ms.
    #[serde(rename = "O")]
    pub open_time: u64,
    /// Statistics close time, ms.
    #[serde(rename = "C")]
    pub close_time: u64,
    /// First trade id.
    #[serde(rename = "F")]
    pub first_trade_id: i64,
    /// Last trade id.
    #[serde(rename = "L")]
    pub last_trade_id: i64,
    /// Number of trades.
    #[serde(rename = "n")]
    pub trade_count: u64,
}
