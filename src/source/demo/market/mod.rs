//! The demo market: wsgate's built-in synthetic exchange (see `docs/demo-market.md`).
//!
//! A deterministic, synchronous matching-engine simulation for any number of symbols. The driver
//! calls [`DemoMarket::advance`] with the current time and publishes the returned
//! [`DemoEvent`]s; [`DemoMarket::next_due_us`] tells it when to call again.
//!
//! All prices and quantities are integers (ticks and lots internally, 1e-8 units in payloads).

mod book;
mod candles;
mod config;
mod engine;
mod fixed;
mod noise;
mod perp;
mod publish;
mod symbol;
mod ticker;

#[cfg(test)]
mod tests;

pub use candles::KlineInterval;
pub use config::{ConfigError, MarketConfig, Stamp, SymbolSpec};
pub use engine::{DemoEvent, DemoMarket};
