//! The demo market's internal events, the Binance Spot, Binance USD-M futures and HashKey
//! payloads built from them, and the pure functions that map one to the other.
//!
//! This crate has no WebAssembly code of its own: each mapper component in this workspace is one
//! [`binance_mapper!`] line over a [`map`] function, so all mapping logic is testable natively
//! with `cargo test`.
//!
//! Every mapping function has the shape `fn(payload: &[u8]) -> Result<Vec<Output>, MapError>`:
//! it parses the event payload (borrowing strings from it), returns an empty list for an event of
//! another type, and [`MapError::InvalidInput`] for malformed JSON or a missing field.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binance;
pub mod binance_futures;
mod component;
pub mod decimal;
mod error;
pub mod events;
pub mod hashkey;
pub mod map;
mod output;
mod parse;

pub use error::MapError;
pub use output::Output;
