//! wsgate mapper component: demo `book_snapshot` events of the 100 ms series to HashKey depth
//! snapshots.
//!
//! A thin shell over [`demo_events::map::hashkey_depth`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::hashkey_depth::map);
