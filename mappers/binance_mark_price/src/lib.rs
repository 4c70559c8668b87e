//! wsgate mapper component: demo `mark_price` events to Binance USD-M `markPriceUpdate` payloads,
//! for the 1-second stream and, every third second, the 3-second one.
//!
//! A thin shell over [`demo_events::map::mark_price`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::mark_price::map);
