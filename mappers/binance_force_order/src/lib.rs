//! wsgate mapper component: demo `liquidation` events to Binance USD-M `forceOrder` payloads.
//!
//! A thin shell over [`demo_events::map::force_order`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::force_order::map);
