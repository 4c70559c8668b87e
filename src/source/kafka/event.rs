//! Conversion of Kafka records to upstream events.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::source::{Position, UpstreamEvent};

/// The event for a record.
pub(super) fn event(
    channels: &HashMap<String, Arc<str>>,
    message: &BorrowedMessage<'_>,
) -> UpstreamEvent {
    let topic = message.topic();
    let channel = channels
        .get(topic)
        .cloned()
        .unwrap_or_else(|| Arc::from(topic));
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    UpstreamEvent {
        channel,
        key: message.key().map(Bytes::copy_from_slice),
        headers,
        payload: message
            .payload()
            .map(Bytes::copy_from_slice)
            .unwrap_or_default(),
        timestamp_us: message
            .timestamp()
            .to_millis()
            .map_or(0, |ms| ms.saturating_mul(1000)),
        position: position(message.partition(), message.offset()),
    }
}

/// The position of the record at `offset` of `partition` (both never negative for a record
/// read from a broker).
pub(super) fn position(partition: i32, offset: i64) -> Position {
    Position::Kafka {
        partition: u32::try_from(partition).unwrap_or(0),
        offset: u64::try_from(offset).unwrap_or(0),
    }
}
