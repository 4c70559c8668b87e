//! Parsing and validation of the demo datasource `properties` object.

use serde_json::{Map, Value};

use super::candles::KlineInterval;
use super::fixed::parse_decimal;

/// Highest accepted `trades_per_sec` / `book_updates_per_sec` / `liquidations_per_min`.
const MAX_RATE: f64 = 1_000_000.0;
/// Highest accepted `depth_levels`.
const MAX_DEPTH: u64 = 5_000;
/// Lowest accepted starting price, in ticks (keeps the book clear of zero).
const MIN_PRICE_TICKS: i64 = 1_000;
/// Highest accepted price or step, in 1e-8 units (1e9 as a decimal).
const MAX_DECIMAL_UNITS: i64 = 100_000_000_000_000_000;

/// A property that failed validation; the message names it, e.g.
/// `properties.trades_per_sec: must be a non-negative number`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("properties.{path}: {message}")]
pub struct ConfigError {
    path: String,
    message: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Path of the offending property below `properties`, e.g. `symbols[0].tick`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// How event timestamps (`ts_us`) are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stamp {
    /// `ts_us` is the `now_us` passed to the `advance` call that made the event.
    #[default]
    Wall,
    /// Activities run on a fixed open-loop schedule; `ts_us` is the scheduled time.
    Schedule,
}

/// One instrument: name, starting mid price and grid steps, all in 1e-8 units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolSpec {
    /// Instrument name, e.g. `BTCUSDT` (ASCII upper-case letters and digits).
    pub symbol: String,
    /// Starting mid price in 1e-8 units; a multiple of `tick`.
    pub price: i64,
    /// Price step in 1e-8 units.
    pub tick: i64,
    /// Quantity step in 1e-8 units.
    pub lot: i64,
}

/// Validated demo datasource properties.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketConfig {
    symbols: Vec<SymbolSpec>,
    trades_milli: u64,
    book_updates_milli: u64,
    depth_levels: usize,
    kline_intervals: Vec<KlineInterval>,
    perpetuals: bool,
    liquidations_milli: u64,
    seed: u64,
    stamp: Stamp,
}

const DEFAULT_SYMBOLS: [(&str, &str, &str, &str); 5] = [
    ("BTCUSDT", "67000.00", "0.01", "0.00001"),
    ("ETHUSDT", "3500.00", "0.01", "0.0001"),
    ("SOLUSDT", "150.00", "0.01", "0.001"),
    ("BNBUSDT", "600.00", "0.01", "0.001"),
    ("XRPUSDT", "0.5000", "0.0001", "0.1"),
];

/// Properties of the demo datasource; `accounts` belongs to its exchange (`demo::exchange`).
const KNOWN: [&str; 10] = [
    "accounts",
    "symbols",
    "trades_per_sec",
    "book_updates_per_sec",
    "depth_levels",
    "kline_intervals",
    "perpetuals",
    "liquidations_per_min",
    "seed",
    "stamp",
];

impl Default for MarketConfig {
    /// The documented defaults, with a random seed.
    fn default() -> Self {
        Self::from_properties(&Map::new()).expect("defaults are valid")
    }
}

impl MarketConfig {
    /// Parses and validates the datasource's `properties` object; absent properties take their
    /// documented defaults, unknown ones are rejected.
    pub fn from_properties(props: &Map<String, Value>) -> Result<Self, ConfigError> {
        if let Some(key) = props.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(ConfigError::new(key.as_str(), "unknown property"));
        }
        let trades_milli = rate(props, "trades_per_sec", 20)?;
        let book_updates_milli = rate(props, "book_updates_per_sec", 50)?;
        let depth_levels = match props.get("depth_levels") {
            None => 100,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=MAX_DEPTH).contains(&n) => n as usize,
                _ => {
                    return Err(ConfigError::new(
                        "depth_levels",
                        format!("must be an integer from 1 to {MAX_DEPTH}"),
                    ))
                }
            },
        };
        let symbols = match props.get("symbols") {
            None => DEFAULT_SYMBOLS
                .iter()
                .map(|&(s, p, t, l)| SymbolSpec {
                    symbol: s.to_owned(),
                    price: parse_decimal(p).expect("default price"),
                    tick: parse_decimal(t).expect("default tick"),
                    lot: parse_decimal(l).expect("default lot"),
                })
                .collect(),
            Some(v) => parse_symbols(v)?,
        };
        let kline_intervals = match props.get("kline_intervals") {
            None => KlineInterval::ALL.to_vec(),
            Some(v) => parse_intervals(v)?,
        };
        let perpetuals = match props.get("perpetuals") {
            None => true,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| ConfigError::new("perpetuals", "must be true or false"))?,
        };
        let liquidations_milli = rate(props, "liquidations_per_min", 2)?;
        let seed = match props.get("seed") {
            None => rand::random::<u64>(),
            Some(v) => v.as_u64().ok_or_else(|| {
                ConfigError::new("seed", "must be an integer from 0 to 18446744073709551615")
            })?,
        };
        let stamp = match props.get("stamp") {
            None => Stamp::Wall,
            Some(v) => match v.as_str() {
                Some("wall") => Stamp::Wall,
                Some("schedule") => Stamp::Schedule,
                _ => {
                    return Err(ConfigError::new(
                        "stamp",
                        "must be \"wall\" or \"schedule\"",
                    ))
                }
            },
        };
        Ok(Self {
            symbols,
            trades_milli,
            book_updates_milli,
            depth_levels,
            kline_intervals,
            perpetuals,
            liquidations_milli,
            seed,
            stamp,
        })
    }

    /// The instruments, in configuration order.
    pub fn symbols(&self) -> &[SymbolSpec] {
        &self.symbols
    }

    /// Taker orders per second per symbol.
    pub fn trades_per_sec(&self) -> f64 {
        self.trades_milli as f64 / 1000.0
    }

    /// Passive book changes per second per symbol.
    pub fn book_updates_per_sec(&self) -> f64 {
        self.book_updates_milli as f64 / 1000.0
    }

    /// Taker orders per 1000 seconds per symbol (the exact scheduling rate).
    pub(super) fn trades_milli(&self) -> u64 {
        self.trades_milli
    }

    /// Passive book changes per 1000 seconds per symbol.
    pub(super) fn book_updates_milli(&self) -> u64 {
        self.book_updates_milli
    }

    /// Price levels kept on each side of each book.
    pub fn depth_levels(&self) -> usize {
        self.depth_levels
    }

    /// Intervals published as `kline` events.
    pub fn kline_intervals(&self) -> &[KlineInterval] {
        &self.kline_intervals
    }

    /// Whether each symbol has a USD-M perpetual publishing `perp.<SYMBOL>` events.
    pub fn perpetuals(&self) -> bool {
        self.perpetuals
    }

    /// Forced orders (liquidations) per minute per symbol's perpetual.
    pub fn liquidations_per_min(&self) -> f64 {
        self.liquidations_milli as f64 / 1000.0
    }

    /// Liquidations per 1000 minutes per symbol (the exact scheduling rate).
    pub(super) fn liquidations_milli(&self) -> u64 {
        self.liquidations_milli
    }

    /// Seed of the random generator (the configured one, or the one drawn for this run).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Timestamp mode.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }
}

/// Parses a rate property into events per 1000 of its time units.
fn rate(props: &Map<String, Value>, key: &str, default: u64) -> Result<u64, ConfigError> {
    let Some(v) = props.get(key) else {
        return Ok(default * 1000);
    };
    match v.as_f64() {
        Some(r) if r.is_finite() && r >= 0.0 => {
            if r > MAX_RATE {
                return Err(ConfigError::new(key, "must be at most 1000000"));
            }
            Ok((r * 1000.0).round() as u64)
        }
        _ => Err(ConfigError::new(key, "must be a non-negative number")),
    }
}

fn parse_intervals(v: &Value) -> Result<Vec<KlineInterval>, ConfigError> {
    let arr = v
        .as_array()
        .ok_or_else(|| ConfigError::new("kline_intervals", "must be an array of interval names"))?;
    let mut out = Vec::with_capacity(arr.len());
    for (i, item) in arr.iter().enumerate() {
        let path = format!("kline_intervals[{i}]");
        let iv = item
            .as_str()
            .and_then(KlineInterval::parse)
            .ok_or_else(|| {
                ConfigError::new(
                    path.as_str(),
                    "must be one of 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M",
                )
            })?;
        if out.contains(&iv) {
            return Err(ConfigError::new(path, "duplicate interval"));
        }
        out.push(iv);
    }
    Ok(out)
}

fn parse_symbols(v: &Value) -> Result<Vec<SymbolSpec>, ConfigError> {
    let arr = match v.as_array() {
        Some(a) if !a.is_empty() => a,
        _ => {
            return Err(ConfigError::new(
                "symbols",
                "must be a non-empty array of symbol objects",
            ))
        }
    };
    let mut out: Vec<SymbolSpec> = Vec::with_capacity(arr.len());
    for (i, item) in arr.iter().enumerate() {
        let base = format!("symbols[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| ConfigError::new(base.as_str(), "must be an object"))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["symbol", "price", "tick", "lot"].contains(&k.as_str()))
        {
            return Err(ConfigError::new(format!("{base}.{k}"), "unknown property"));
        }
        let name = match obj.get("symbol").and_then(Value::as_str) {
            Some(s)
                if !s.is_empty()
                    && s.len() <= 32
                    && s.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) =>
            {
                s.to_owned()
            }
            _ => {
                return Err(ConfigError::new(
                    format!("{base}.symbol"),
                    "must be 1 to 32 upper-case ASCII letters or digits",
                ))
            }
        };
        if out.iter().any(|s| s.symbol == name) {
            return Err(ConfigError::new(
                format!("{base}.symbol"),
                "duplicate symbol",
            ));
        }
        let dec = |key: &str| -> Result<i64, ConfigError> {
            let path = format!("{base}.{key}");
            let s = obj
                .get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| ConfigError::new(path.as_str(), "must be a decimal string"))?;
            match parse_decimal(s) {
                Some(u) if u > 0 && u <= MAX_DECIMAL_UNITS => Ok(u),
                _ => Err(ConfigError::new(
                    path,
                    "must be a positive decimal string with at most 8 decimals, at most 1000000000",
                )),
            }
        };
        let price = dec("price")?;
        let tick = dec("tick")?;
        let lot = dec("lot")?;
        if price % tick != 0 {
            return Err(ConfigError::new(
                format!("{base}.price"),
                "must be a multiple of tick",
            ));
        }
        if price / tick < MIN_PRICE_TICKS {
            return Err(ConfigError::new(
                format!("{base}.price"),
                format!("must be at least {MIN_PRICE_TICKS} ticks"),
            ));
        }
        out.push(SymbolSpec {
            symbol: name,
            price,
            tick,
            lot,
        });
    }
    Ok(out)
}
