//! wsgate mapper component: demo `match` events to Binance `trade` payloads, one per fill.
//!
//! A thin shell over [`demo_events::map::trade`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::trade::map);
