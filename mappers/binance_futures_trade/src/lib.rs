//! wsgate mapper component: demo `match` events to Binance USD-M futures `trade` payloads, one per
//! fill.
//!
//! A thin shell over [`demo_events::map::futures_trade`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::futures_trade::map);
