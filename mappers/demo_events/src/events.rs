//! The demo market's internal events (see `docs/demo-market.md`).
//!
//! Strings are borrowed from the payload: prices and quantities are decimal strings with exactly
//! 8 decimals, passed through to Binance payloads unchanged (HashKey payloads drop trailing
//! zeros). Strings must not contain JSON
//! escapes (the demo engine never writes any); an escaped string is rejected as invalid input.
//! Unknown fields are ignored.

use serde::Deserialize;

/// Declares a one-value enum that only deserializes from the given `type` string, so parsing an
/// event of another type fails as soon as its `type` field is read.
macro_rules! event_tag {
    ($(#[$doc:meta])* $name:ident = $value:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        pub enum $name {
            #[doc = concat!("`\"type\": \"", $value, "\"`")]
            #[serde(rename = $value)]
            Tag,
        }

        impl $name {
            /// The `type` string of this event.
            pub const TYPE: &'static str = $value;
        }
    };
}

event_tag!(
    /// The `type` of a [`Match`].
    MatchType = "match"
);
event_tag!(
    /// The `type` of a [`BookDelta`].
    BookDeltaType = "book_delta"
);
event_tag!(
    /// The `type` of a [`BookSnapshot`].
    BookSnapshotType = "book_snapshot"
);
event_tag!(
    /// The `type` of a [`Bbo`].
    BboType = "bbo"
);
event_tag!(
    /// The `type` of a [`Kline`].
    KlineType = "kline"
);
event_tag!(
    /// The `type` of a [`Ticker`].
    TickerType = "ticker"
);
event_tag!(
    /// The `type` of a [`MarkPrice`].
    MarkPriceType = "mark_price"
);
event_tag!(
    /// The `type` of a [`Liquidation`].
    LiquidationType = "liquidation"
);

/// The side of a taker order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Side {
    /// The taker bought: the seller was the maker.
    #[serde(rename = "BUY")]
    Buy,
    /// The taker sold: the buyer was the maker.
    #[serde(rename = "SELL")]
    Sell,
}

impl Side {
    /// `BUY` or `SELL`, as the demo market and Binance write it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Buy => "BUY",
            Self::Sell => "SELL",
        }
    }
}

/// A price level, `[price, quantity]`; a quantity of zero means the level is gone.
pub type Level<'a> = [&'a str; 2];

/// `trade.<SYMBOL>`: one taker order matched against one or more resting maker orders.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Match<'a> {
    /// Always `match`.
    #[serde(rename = "type")]
    pub kind: MatchType,
    /// Instrument, uppercase (`BTCUSDT`).
    pub symbol: &'a str,
    /// Event time, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// The taker order.
    pub taker_order_id: u64,
    /// The taker order's side.
    pub taker_side: Side,
    /// One fill per maker order, in execution order; each fill is one trade.
    #[serde(borrow)]
    pub fills: Vec<Fill<'a>>,
}

/// One fill of a [`Match`]: one trade.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Fill<'a> {
    /// Trade id, contiguous per symbol.
    pub trade_id: u64,
    /// Aggregate trade id: shared by the consecutive fills of one taker order at one price.
    pub agg_id: u64,
    /// Price.
    pub price: &'a str,
    /// Quantity.
    pub qty: &'a str,
    /// The maker order.
    pub maker_order_id: u64,
}

/// `book.<SYMBOL>`: the absolute quantity of every level that changed in one window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BookDelta<'a> {
    /// Always `book_delta`.
    #[serde(rename = "type")]
    pub kind: BookDeltaType,
    /// Instrument, uppercase.
    pub symbol: &'a str,
    /// Event time, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// Window length: 100 or 1000 ms.
    pub window_ms: u32,
    /// First update id in the window.
    pub first_update_id: u64,
    /// Last update id in the window.
    pub last_update_id: u64,
    /// Changed bid levels, price descending.
    #[serde(borrow)]
    pub bids: Vec<Level<'a>>,
    /// Changed ask levels, price ascending.
    #[serde(borrow)]
    pub asks: Vec<Level<'a>>,
}

/// `book.<SYMBOL>`: the best 20 levels of each side, every 100 or 1000 ms.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BookSnapshot<'a> {
    /// Always `book_snapshot`.
    #[serde(rename = "type")]
    pub kind: BookSnapshotType,
    /// Instrument, uppercase.
    pub symbol: &'a str,
    /// Event time, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// Publishing period: 100 or 1000 ms.
    pub window_ms: u32,
    /// The update id the snapshot reflects.
    pub last_update_id: u64,
    /// Best bids, price descending.
    #[serde(borrow)]
    pub bids: Vec<Level<'a>>,
    /// Best asks, price ascending.
    #[serde(borrow)]
    pub asks: Vec<Level<'a>>,
}

/// `bbo.<SYMBOL>`: the best bid and offer after a change of either.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Bbo<'a> {
    /// Always `bbo`.
    #[serde(rename = "type")]
    pub kind: BboType,
    /// Instrument, uppercase.
    pub symbol: &'a str,
    /// Event time, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// Update id of the book change that caused this event.
    pub update_id: u64,
    /// Best bid price.
    pub bid_price: &'a str,
    /// Best bid quantity.
    pub bid_qty: &'a str,
    /// Best ask price.
    pub ask_price: &'a str,
    /// Best ask quantity.
    pub ask_qty: &'a str,
}

/// `kline.<SYMBOL>`: the current candle of one interval.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Kline<'a> {
    /// Always `kline`.
    #[serde(rename = "type")]
    pub kind: KlineType,
    /// Instrument, uppercase.
    pub symbol: &'a str,
    /// Event time, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// Interval in Binance notation (`1s`, `1m`, ..., `1M`).
    pub interval: &'a str,
    /// Candle open time, milliseconds since the Unix epoch.
    pub open_time_ms: u64,
    /// Candle close time (inclusive), milliseconds since the Unix epoch.
    pub close_time_ms: u64,
    /// First trade id in the candle, -1 without trades.
    pub first_trade_id: i64,
    /// Last trade id in the candle, -1 without trades.
    pub last_trade_id: i64,
    /// Open price.
    pub open: &'a str,
    /// High price.
    pub high: &'a str,
    /// Low price.
    pub low: &'a str,
    /// Close (last) price.
    pub close: &'a str,
    /// Base asset volume.
    pub volume: &'a str,
    /// Quote asset volume.
    pub quote_volume: &'a str,
    /// Number of trades.
    pub trades: u64,
    /// Taker buy base asset volume.
    pub taker_buy_volume: &'a str,
    /// Taker buy quote asset volume.
    pub taker_buy_quote_volume: &'a str,
    /// Whether the candle is closed (its final update).
    pub closed: bool,
}

/// `ticker.<SYMBOL>`: rolling 24-hour statistics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Ticker<'a> {
    /// Always `ticker`.
    #[serde(rename = "type")]
    pub kind: TickerType,
    /// Instrument, uppercase.
    pub symbol: &'a str,
    /// Event time, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// Statistics window open time, milliseconds since the Unix epoch.
    pub open_time_ms: u64,
    /// Statistics window close time, milliseconds since the Unix epoch.
    pub close_time_ms: u64,
    /// Open price.
    pub open: &'a str,
    /// High price.
    pub high: &'a str,
    /// Low price.
    pub low: &'a str,
    /// Last price.
    pub last: &'a str,
    /// Last quantity.
    pub last_qty: &'a str,
    /// Price of the last trade before the window.
    pub prev_close: &'a str,
    /// Price change over the window.
    pub price_change: &'a str,
    /// Price change percent, three decimals.
    pub price_change_percent: &'a str,
    /// Weighted average price.
    pub weighted_avg_price: &'a str,
    /// Base asset volume.
    pub volume: &'a str,
    /// Quote asset volume.
    pub quote_volume: &'a str,
    /// Best bid price.
    pub bid_price: &'a str,
    /// Best bid quantity.
    pub bid_qty: &'a str,
    /// Best ask price.
    pub ask_price: &'a str,
    /// Best ask quantity.
    pub ask_qty: &'a str,
    /// First trade id in the window.
    pub first_trade_id: i64,
    /// Last trade id in the window.
    pub last_trade_id: i64,
    /// Number of trades in the window.
    pub trade_count: u64,
}

/// `perp.<SYMBOL>`: the mark price and funding of a perpetual contract.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MarkPrice<'a> {
    /// Always `mark_price`.
    #[serde(rename = "type")]
    pub kind: MarkPriceType,
    /// Instrument, uppercase.
    pub symbol: &'a str,
    /// Event time, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Mark price.
    pub mark_price: &'a str,
    /// Moving average of the mark price.
    pub mark_price_avg: &'a str,
    /// Index price.
    pub index_price: &'a str,
    /// Estimated settle price.
    pub estimated_settle_price: &'a str,
    /// Current funding rate.
    pub funding_rate: &'a str,
    /// Next funding time, milliseconds since the Unix epoch.
    pub next_funding_time_ms: u64,
}

/// `perp.<SYMBOL>`: a liquidation order, filled.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Liquidation<'a> {
    /// Always `liquidation`.
    #[serde(rename = "type")]
    pub kind: LiquidationType,
    /// Instrument, uppercase.
    pub symbol: &'a str,
    /// Event time, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// The liquidation order's side.
    pub side: Side,
    /// The liquidation order's price.
    pub price: &'a str,
    /// The liquidation order's quantity, filled in full.
    pub qty: &'a str,
    /// Average fill price.
    pub avg_price: &'a str,
}
