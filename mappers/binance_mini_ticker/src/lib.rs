//! wsgate mapper component: demo `ticker` events to Binance `24hrMiniTicker` payloads.
//!
//! A thin shell over [`demo_events::map::mini_ticker`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::mini_ticker::map);
