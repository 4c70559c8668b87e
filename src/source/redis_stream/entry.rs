//! Stream entries: parsed from Redis replies (RESP2 or RESP3), and turned into upstream events.

use std::sync::Arc;

use bytes::Bytes;
use redis::Value;
use serde_json::{Map, Value as Json};

use crate::source::{Position, UpstreamEvent};

/// The value after `name` in a flat field/value reply.
pub(super) fn field<'a>(fields: &'a [Value], name: &str) -> Option<&'a Value> {
    fields
        .chunks(2)
        .find(|pair| as_string(pair[0].clone()).as_deref() == Some(name))
        .and_then(|pair| pair.get(1))
}

/// One stream entry; `fields` is None for an entry deleted while pending.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) id: String,
    pub(super) fields: Option<Vec<(String, Bytes)>>,
}

/// The event for an entry: key and payload from the `key` and `payload` fields (the payload is
/// the whole entry as a JSON object when there is no `payload` field), the other fields as
/// headers.
pub(super) fn event(channel: &Arc<str>, id: &str, fields: Vec<(String, Bytes)>) -> UpstreamEvent {
    let position = EntryId::parse(id);
    let has_payload = fields.iter().any(|(f, _)| f == "payload");
    let payload = if has_payload {
        Bytes::new()
    } else {
        let object: Map<String, Json> = fields
            .iter()
            .map(|(f, v)| {
                (
                    f.clone(),
                    Json::String(String::from_utf8_lossy(v).into_owned()),
                )
            })
            .collect();
        Bytes::from(Json::Object(object).to_string())
    };
    let mut event = UpstreamEvent {
        channel: Arc::clone(channel),
        key: None,
        headers: Vec::new(),
        payload,
        timestamp_us: i64::try_from(position.ms).unwrap_or(0).saturating_mul(1000),
        position: Position::RedisEntry {
            ms: position.ms,
            seq: position.seq,
        },
    };
    for (field, value) in fields {
        match field.as_str() {
            "key" => event.key = Some(value),
            "payload" => event.payload = value,
            _ => event.headers.push((field, value)),
        }
    }
    event
}

pub(super) fn as_list(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        Value::Attribute { data, .. } => as_list(*data),
        _ => Vec::new(),
    }
}

pub(super) fn as_string(value: Value) -> Option<String> {
    as_bytes(value).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn as_bytes(value: Value) -> Option<Bytes> {
    match value {
        Value::BulkString(b) => Some(Bytes::from(b)),
        Value::SimpleString(s) => Some(Bytes::from(s)),
        Value::VerbatimString { text, .. } => Some(Bytes::from(text)),
        Value::Int(n) => Some(Bytes::from(n.to_string())),
        Value::Okay => Some(Bytes::from_static(b"OK")),
        _ => None,
    }
}

/// `(stream key, entries)` pairs of an `XREADGROUP` reply (RESP2 array or RESP3 map).
pub(super) fn stream_pairs(reply: Value) -> Vec<(String, Value)> {
    match reply {
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(k, v)| Some((as_string(k)?, v)))
            .collect(),
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| {
                let mut parts = as_list(item).into_iter();
                let key = as_string(parts.next()?)?;
                Some((key, parts.next()?))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Entries `[[id, [field, value, ...] | nil], ...]`.
pub(super) fn parse_entries(value: Value) -> Vec<Entry> {
    as_list(value)
        .into_iter()
        .filter_map(|item| {
            let mut parts = as_list(item).into_iter();
            let id = as_string(parts.next()?)?;
            let fields = match parts.next() {
                None | Some(Value::Nil) => None,
                Some(list) => {
                    let mut fields = Vec::new();
                    let mut flat = as_list(list).into_iter();
                    while let (Some(f), Some(v)) = (flat.next(), flat.next()) {
                        if let (Some(f), Some(v)) = (as_string(f), as_bytes(v)) {
                            fields.push((f, v));
                        }
                    }
                    Some(fields)
                }
            };
            Some(Entry { id, fields })
        })
        .collect()
}

/// A stream entry id, `<ms>-<seq>`.
struct EntryId {
    ms: u64,
    seq: u64,
}

impl EntryId {
    /// The parts of `id`; Redis never hands out another shape, which would read as `0-0`.
    fn parse(id: &str) -> EntryId {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        EntryId {
            ms: ms.parse().unwrap_or(0),
            seq: seq.parse().unwrap_or(0),
        }
    }
}
