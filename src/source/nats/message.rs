//! Conversion of NATS messages (core or JetStream) to upstream events.

use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::source::{Position, UpstreamEvent};

pub(super) fn to_event(
    message: async_nats::Message,
    position: Position,
    timestamp_us: i64,
) -> UpstreamEvent {
    let (key, headers) = match &message.headers {
        Some(map) => (key_of(map), headers_of(map)),
        None => (None, Vec::new()),
    };
    UpstreamEvent {
        channel: Arc::from(message.subject.as_str()),
        key,
        headers,
        payload: message.payload,
        timestamp_us,
        position,
    }
}

fn key_of(headers: &HeaderMap) -> Option<Bytes> {
    headers
        .get("key")
        .or_else(|| headers.get("Nats-Msg-Id"))
        .map(|value| Bytes::copy_from_slice(value.as_str().as_bytes()))
}

fn headers_of(headers: &HeaderMap) -> Vec<(String, Bytes)> {
    let mut out: Vec<(String, Bytes)> = headers
        .iter()
        .flat_map(|(name, values)| {
            values.iter().map(move |value| {
                (
                    name.to_string(),
                    Bytes::copy_from_slice(value.as_str().as_bytes()),
                )
            })
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
