//! Unit tests of the `redis_stream` datasource: property validation, and entries and replies
//! turned into events.

use super::*;
use crate::config::DatasourceKind;
use serde_json::json;

use std::sync::Arc;

use bytes::Bytes;
use redis::Value;
use serde_json::Value as Json;

use super::entry::{event, parse_entries, stream_pairs};
use crate::source::{Backpressure, Consumption, Source};

fn datasource(properties: Json) -> Datasource {
    crate::source::properties::datasource(DatasourceKind::RedisStream, "rs", properties)
}

fn error(properties: Json) -> String {
    match RedisStreamSource::from_datasource(&datasource(properties), &Consumption::default()) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_apply() {
    let source = RedisStreamSource::from_datasource(
        &datasource(json!({"url": "redis://127.0.0.1:6379", "streams": ["trades"]})),
        &Consumption::default(),
    )
    .unwrap();
    let c = source.config();
    assert_eq!(c.streams, vec!["trades".to_string()]);
    assert_eq!(c.group, "wsgate");
    assert_eq!(c.consumer, "wsgate");
    assert_eq!((c.block_ms, c.batch, c.claim_idle_ms), (1000, 500, 30_000));
    assert_eq!(c.start, "0");
    assert_eq!(source.backpressure(), Backpressure::Wait);
}

#[test]
fn streams_default_to_the_routes_upstream_keys() {
    let properties = json!({"url": "redis://127.0.0.1:6379"});
    let read_by = |upstream: &[&str]| Consumption {
        upstream: upstream.iter().map(|s| s.to_string()).collect(),
        ..Consumption::default()
    };
    let source =
        RedisStreamSource::from_datasource(&datasource(properties.clone()), &read_by(&["a", "b"]));
    assert_eq!(source.unwrap().config().streams, ["a", "b"]);
    let pattern = RedisStreamSource::from_datasource(&datasource(properties), &read_by(&["md.*"]));
    let message = pattern.err().expect("a pattern names no key").to_string();
    assert!(
        message.contains("properties.streams: not given"),
        "{message}"
    );
}

#[test]
fn every_property_is_read() {
    let source = RedisStreamSource::from_datasource(
        &datasource(json!({
            "url": "redis+unix:///tmp/r.sock", "streams": ["a", "b"], "group": "g",
            "consumer": "c1", "block_ms": 50, "batch": 7, "claim_idle_ms": 0, "start": "$"
        })),
        &Consumption::default(),
    )
    .unwrap();
    let c = source.config();
    assert_eq!(c.streams, vec!["a".to_string(), "b".to_string()]);
    assert_eq!((c.group.as_str(), c.consumer.as_str()), ("g", "c1"));
    assert_eq!((c.block_ms, c.batch, c.claim_idle_ms), (50, 7, 0));
    assert_eq!(c.start, "$");
}

#[test]
fn bad_properties_are_named() {
    let ok = json!({"url": "redis://localhost", "streams": ["s"]});
    let with = |key: &str, value: Json| {
        let mut p = ok.clone();
        p[key] = value;
        p
    };
    let cases = [
        (json!({"streams": ["s"]}), "properties.url"),
        (with("url", json!("http://nope")), "properties.url"),
        (with("url", json!("redis://")), "properties.url"),
        (with("url", json!(5)), "properties.url"),
        (json!({"url": "redis://localhost"}), "properties.streams"),
        (with("streams", json!([])), "properties.streams"),
        (with("streams", json!("s")), "properties.streams"),
        (with("streams", json!(["s", ""])), "properties.streams[1]"),
        (with("streams", json!(["s", "s"])), "properties.streams[1]"),
        (with("group", json!("")), "properties.group"),
        (with("consumer", json!(3)), "properties.consumer"),
        (with("block_ms", json!(0)), "properties.block_ms"),
        (with("block_ms", json!("1000")), "properties.block_ms"),
        (with("batch", json!(0)), "properties.batch"),
        (with("batch", json!(-1)), "properties.batch"),
        (
            with("claim_idle_ms", json!(1.5)),
            "properties.claim_idle_ms",
        ),
        (with("start", json!("1-0")), "properties.start"),
        (with("strams", json!(["s"])), "properties.strams"),
    ];
    for (props, expected) in cases {
        let message = error(props.clone());
        assert!(
            message.contains(&format!("{expected}:")),
            "{props}: `{message}` does not name {expected}"
        );
        assert!(message.starts_with("datasource `rs`"), "{message}");
    }
}

#[test]
fn entries_become_events() {
    let channel: Arc<str> = Arc::from("trades");
    let fields = vec![
        ("key".to_string(), Bytes::from_static(b"BTCUSDT")),
        ("payload".to_string(), Bytes::from_static(b"{\"a\":1}")),
        ("trace".to_string(), Bytes::from_static(b"x")),
    ];
    let e = event(&channel, "1767000000123-4", fields);
    assert_eq!(&*e.channel, "trades");
    assert_eq!(e.key.as_deref(), Some(&b"BTCUSDT"[..]));
    assert_eq!(&e.payload[..], b"{\"a\":1}");
    assert_eq!(
        e.headers,
        vec![("trace".to_string(), Bytes::from_static(b"x"))]
    );
    assert_eq!(e.position.to_string(), "1767000000123-4");
    assert!(
        e.position.is_durable(),
        "a restarted consumer re-reads it with this id"
    );
    assert_eq!(e.timestamp_us, 1_767_000_000_123_000);

    let fields = vec![
        ("symbol".to_string(), Bytes::from_static(b"BTCUSDT")),
        ("price".to_string(), Bytes::from_static(b"1.0")),
    ];
    let e = event(&channel, "5-0", fields);
    let whole: Json = serde_json::from_slice(&e.payload).unwrap();
    assert_eq!(whole, json!({"symbol": "BTCUSDT", "price": "1.0"}));
    assert_eq!(e.key, None);
    assert_eq!(e.headers.len(), 2);
    assert_eq!(e.timestamp_us, 5000);
}

#[test]
fn replies_are_parsed() {
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    let reply = Value::Array(vec![Value::Array(vec![
        bulk("trades"),
        Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("payload"), bulk("p")]),
            ]),
            Value::Array(vec![bulk("2-0"), Value::Nil]),
        ]),
    ])]);
    let pairs = stream_pairs(reply);
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].0, "trades");
    let entries = parse_entries(pairs[0].1.clone());
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].id, "1-0");
    assert_eq!(
        entries[0].fields.as_ref().unwrap()[0],
        ("payload".to_string(), Bytes::from_static(b"p"))
    );
    assert!(entries[1].fields.is_none());
}
