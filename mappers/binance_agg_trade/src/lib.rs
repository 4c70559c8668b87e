//! wsgate mapper component: demo `match` events to Binance `aggTrade` payloads, one per aggregate.
//!
//! A thin shell over [`demo_events::map::agg_trade`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::agg_trade::map);
