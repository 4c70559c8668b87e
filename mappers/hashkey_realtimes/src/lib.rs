//! wsgate mapper component: demo `ticker` events to HashKey `realtimes` (24-hour ticker) payloads.
//!
//! A thin shell over [`demo_events::map::hashkey_realtimes`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::hashkey_realtimes::map);
