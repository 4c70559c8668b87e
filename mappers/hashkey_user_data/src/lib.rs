//! wsgate mapper component: account events addressed to one user
//! (`{"user_id":..,"event":{..}}`, the event in Binance's user-data format) become that user's
//! HashKey private events (`executionReport`, `ticketInfo`, `outboundAccountInfo`), for a topic
//! with `"auth": "private"`.
//!
//! A thin shell over [`demo_events::map::hashkey_user_data`], where the mapping and its tests live.

demo_events::binance_mapper!(demo_events::map::hashkey_user_data::map);
