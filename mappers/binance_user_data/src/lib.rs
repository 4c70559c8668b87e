//! wsgate mapper component: account events addressed to one user
//! (`{"user_id":..,"event":{..}}`) become that user's private payloads
//! (`executionReport`, `outboundAccountPosition`, `balanceUpdate`, ...), for a topic with
//! `"auth": "private"`.

demo_events::binance_mapper!(demo_events::map::user_data::map);
