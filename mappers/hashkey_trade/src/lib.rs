//! wsgate mapper component: demo `match` events to HashKey public trade payloads, one per fill.
//!
//! A thin shell over [`demo_events::map::hashkey_trade`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::hashkey_trade::map);
