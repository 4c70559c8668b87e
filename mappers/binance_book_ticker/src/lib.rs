//! wsgate mapper component: demo `bbo` events to Binance `bookTicker` payloads.
//!
//! A thin shell over [`demo_events::map::book_ticker`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::book_ticker::map);
