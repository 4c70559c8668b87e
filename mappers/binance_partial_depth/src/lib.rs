//! wsgate mapper component: demo `book_snapshot` events to Binance partial depth payloads (5, 10, 20 levels).
//!
//! A thin shell over [`demo_events::map::partial_depth`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::partial_depth::map);
