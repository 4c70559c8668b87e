//! Sample events from `docs/demo-market.md` and helpers shared by the integration tests.
#![allow(dead_code)]

use demo_events::{MapError, Output};

/// A mapping function, as exported by every `demo_events::map` module.
pub type MapFn = fn(&[u8]) -> Result<Vec<Output>, MapError>;

pub const MATCH: &str = r#"{"type":"match","symbol":"BTCUSDT","ts_us":1767000000123456,"taker_order_id":90001,"taker_side":"BUY",
 "fills":[
   {"trade_id":5001,"agg_id":2001,"price":"67000.01000000","qty":"0.01200000","maker_order_id":88001},
   {"trade_id":5002,"agg_id":2001,"price":"67000.01000000","qty":"0.00300000","maker_order_id":88002},
   {"trade_id":5003,"agg_id":2002,"price":"67000.02000000","qty":"0.10000000","maker_order_id":88010}
 ]}"#;

pub const BOOK_DELTA: &str = r#"{"type":"book_delta","symbol":"BTCUSDT","ts_us":1767000000200000,"window_ms":100,
 "first_update_id":157,"last_update_id":160,
 "bids":[["67000.00000000","1.20000000"],["66999.99000000","0.00000000"]],
 "asks":[["67000.02000000","0.50000000"]]}"#;

pub const BOOK_SNAPSHOT: &str = r#"{"type":"book_snapshot","symbol":"BTCUSDT","ts_us":1767000000200000,"window_ms":1000,
 "last_update_id":160,
 "bids":[["67000.00000000","1.20000000"]],
 "asks":[["67000.02000000","0.50000000"]]}"#;

pub const BBO: &str = r#"{"type":"bbo","symbol":"BTCUSDT","ts_us":1767000000123456,"update_id":160,
 "bid_price":"67000.00000000","bid_qty":"1.20000000","ask_price":"67000.02000000","ask_qty":"0.50000000"}"#;

pub const KLINE: &str = r#"{"type":"kline","symbol":"BTCUSDT","ts_us":1767000000123456,"interval":"1m",
 "open_time_ms":1766999960000,"close_time_ms":1767000019999,
 "first_trade_id":4900,"last_trade_id":5003,
 "open":"66990.00000000","high":"67010.00000000","low":"66985.00000000","close":"67000.02000000",
 "volume":"3.20000000","quote_volume":"214390.12000000","trades":104,
 "taker_buy_volume":"1.70000000","taker_buy_quote_volume":"113890.05000000","closed":false}"#;

pub const TICKER: &str = r#"{"type":"ticker","symbol":"BTCUSDT","ts_us":1767000000123456,
 "open_time_ms":1766913600123,"close_time_ms":1767000000123,
 "open":"66100.00000000","high":"67500.00000000","low":"65800.00000000",
 "last":"67000.02000000","last_qty":"0.10000000","prev_close":"66099.50000000",
 "price_change":"900.02000000","price_change_percent":"1.362","weighted_avg_price":"66712.44000000",
 "volume":"18211.50000000","quote_volume":"1214911212.55000000",
 "bid_price":"67000.00000000","bid_qty":"1.20000000","ask_price":"67000.02000000","ask_qty":"0.50000000",
 "first_trade_id":1,"last_trade_id":9003,"trade_count":9003}"#;

pub const MARK_PRICE: &str = r#"{"type":"mark_price","symbol":"BTCUSDT","ts_us":1767000001000000,"time_ms":1767000001000,
 "mark_price":"67001.23000000","mark_price_avg":"67000.90000000","index_price":"67000.00000000",
 "estimated_settle_price":"67000.40000000","funding_rate":"0.00010000","next_funding_time_ms":1767024000000}"#;

pub const LIQUIDATION: &str = r#"{"type":"liquidation","symbol":"BTCUSDT","ts_us":1767000000500000,"side":"SELL",
 "price":"66950.00000000","qty":"0.01200000","avg_price":"66955.10000000"}"#;

/// Every sample event, with its `type`.
pub const ALL: [(&str, &str); 8] = [
    ("match", MATCH),
    ("book_delta", BOOK_DELTA),
    ("book_snapshot", BOOK_SNAPSHOT),
    ("bbo", BBO),
    ("kline", KLINE),
    ("ticker", TICKER),
    ("mark_price", MARK_PRICE),
    ("liquidation", LIQUIDATION),
];

/// Maps `payload`, panicking on error.
pub fn map_ok(map: MapFn, payload: &str) -> Vec<Output> {
    map(payload.as_bytes()).unwrap_or_else(|e| panic!("{e} for {payload}"))
}

/// The payloads of `outputs`.
pub fn payloads(outputs: &[Output]) -> Vec<&str> {
    outputs.iter().map(|o| o.payload.as_str()).collect()
}

/// Topic vars as `&str` pairs.
pub fn vars(output: &Output) -> Vec<(&str, &str)> {
    output
        .topic_vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// `payload` with its top-level fields changed by `edit`.
pub fn edited(
    payload: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> String {
    let mut value: serde_json::Value = serde_json::from_str(payload).unwrap();
    edit(value.as_object_mut().unwrap());
    value.to_string()
}

/// The message of an `invalid-input` error, panicking on anything else.
pub fn invalid_input(map: MapFn, payload: &str) -> String {
    match map(payload.as_bytes()) {
        Err(MapError::InvalidInput(message)) => message,
        other => panic!("expected invalid input for {payload}, got {other:?}"),
    }
}
