//! wsgate mapper component: demo `kline` events to Binance `kline` payloads.
//!
//! A thin shell over [`demo_events::map::kline`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::kline::map);
