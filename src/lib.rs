//! wsgate: a WebSocket gateway that streams an exchange's market data and account events to
//! clients in the Binance Spot protocol.
//!
//! Upstream events flow `source → route (WASM mapper) → bus → hub → ws`; see `DESIGN.md` for the
//! architecture. [`node`] wires the parts together.

pub mod admin;
pub mod api_error;
pub mod auth;
pub mod book;
pub mod bus;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod hub;
pub mod mapper;
pub mod metrics;
pub mod node;
pub mod position;
pub mod region;
pub mod route;
pub mod source;
pub mod subject;
pub mod tls;
pub mod trade;
pub mod util;
pub mod ws;
