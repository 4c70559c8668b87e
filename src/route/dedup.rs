//! Drops redelivered upstream events before they are mapped again.
//!
//! Brokers redeliver what was not acknowledged: JetStream after a reconnect or its ack wait,
//! Redis Streams a consumer's pending entries. A route remembers the highest upstream position
//! it has mapped per partition of its source and skips anything at or below it, so a client never
//! gets the same event twice and per-stream order holds. Positions are compared in their
//! source's order: Kafka `partition:offset` per partition, Redis entry ids `ms-seq` per stream
//! key, JetStream stream sequences (and the demo's and core NATS' counters) per source.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::DatasourceKind;
use crate::source::UpstreamEvent;

/// An upstream position, in its partition's order.
pub type Order = (u64, u64);

/// A partition: its channel (or the whole source) and, for Kafka, its partition number.
pub type Partition = (Arc<str>, u32);

/// Where an event sits upstream, when its source's order understands its position.
pub type Place = Option<(Partition, Order)>;

/// The highest position mapped per partition.
pub struct Positions {
    kind: DatasourceKind,
    highest: HashMap<Partition, Order>,
    whole_source: Arc<str>,
}

impl Positions {
    /// No position seen yet, for a source of `kind`.
    pub fn new(kind: DatasourceKind) -> Self {
        Positions {
            kind,
            highest: HashMap::new(),
            whole_source: Arc::from(""),
        }
    }

    /// `Some` with the event's place when `event` is past everything seen in its partition (and
    /// records it); `None` for a redelivery. Events without a position the source's order
    /// understands always pass, with no place.
    pub fn admit(&mut self, event: &UpstreamEvent) -> Option<Place> {
        let Some((partition, order)) = self.order_of(event) else {
            return Some(None);
        };
        match self.highest.get_mut(&partition) {
            Some(highest) if order <= *highest => return None,
            Some(highest) => *highest = order,
            None => {
                self.highest.insert(partition.clone(), order);
            }
        }
        Some(Some((partition, order)))
    }

    /// The partition of `event` and its position there, if the source's order understands its
    /// position. No allocation: this runs for every event.
    fn order_of(&self, event: &UpstreamEvent) -> Option<(Partition, Order)> {
        let position = event.position.as_str();
        match self.kind {
            DatasourceKind::Kafka => {
                let (partition, offset) = position.split_once(':')?;
                let partition = (Arc::clone(&event.channel), partition.parse().ok()?);
                Some((partition, (offset.parse().ok()?, 0)))
            }
            DatasourceKind::RedisStream => {
                let (ms, seq) = position.split_once('-')?;
                let order = (ms.parse().ok()?, seq.parse().ok()?);
                Some(((Arc::clone(&event.channel), 0), order))
            }
            DatasourceKind::Nats | DatasourceKind::Demo => {
                let partition = (Arc::clone(&self.whole_source), 0);
                Some((partition, (position.parse().ok()?, 0)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn event(channel: &str, position: &str) -> UpstreamEvent {
        UpstreamEvent {
            channel: Arc::from(channel),
            key: None,
            headers: Vec::new(),
            payload: Bytes::new(),
            timestamp_us: 0,
            position: position.to_string(),
        }
    }

    #[test]
    fn redeliveries_are_refused_per_partition() {
        let mut jetstream = Positions::new(DatasourceKind::Nats);
        assert!(jetstream.admit(&event("trade.A", "1")).is_some());
        assert!(jetstream.admit(&event("trade.B", "2")).is_some());
        assert!(
            jetstream.admit(&event("trade.A", "1")).is_none(),
            "redelivered"
        );
        assert!(
            jetstream.admit(&event("trade.A", "2")).is_none(),
            "one sequence for the stream"
        );
        assert!(jetstream.admit(&event("trade.A", "3")).is_some());

        let mut redis = Positions::new(DatasourceKind::RedisStream);
        assert!(redis.admit(&event("a", "1700-0")).is_some());
        assert!(redis.admit(&event("a", "1700-1")).is_some());
        assert!(
            redis.admit(&event("b", "1000-0")).is_some(),
            "another stream key, its own order"
        );
        assert!(redis.admit(&event("a", "1700-1")).is_none());
        assert!(redis.admit(&event("a", "1699-9")).is_none());

        let mut kafka = Positions::new(DatasourceKind::Kafka);
        assert!(kafka.admit(&event("t", "0:10")).is_some());
        assert!(
            kafka.admit(&event("t", "1:3")).is_some(),
            "another partition"
        );
        assert!(kafka.admit(&event("t", "0:10")).is_none());
        assert!(kafka.admit(&event("t", "0:11")).is_some());
    }

    #[test]
    fn positions_it_cannot_read_always_pass() {
        let mut positions = Positions::new(DatasourceKind::RedisStream);
        assert!(positions.admit(&event("a", "")).is_some());
        assert!(positions.admit(&event("a", "")).is_some());
    }
}
