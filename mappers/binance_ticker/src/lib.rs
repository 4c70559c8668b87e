//! wsgate mapper component: demo `ticker` events to Binance `24hrTicker` payloads.
//!
//! A thin shell over [`demo_events::map::ticker`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::ticker::map);
