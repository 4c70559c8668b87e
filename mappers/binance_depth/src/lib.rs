//! wsgate mapper component: demo `book_delta` events to Binance `depthUpdate` payloads.
//!
//! A thin shell over [`demo_events::map::depth`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::depth::map);
