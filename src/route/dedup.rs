//! Drops redelivered upstream events before they are mapped again.
//!
//! Brokers redeliver what was not acknowledged: JetStream after a reconnect or its ack wait,
//! Redis Streams a consumer's pending entries. A route remembers the highest upstream position
//! it has mapped per partition of its source ([`Position::partition`]) and skips anything at or
//! below it, so a client never gets the same event twice and per-stream order holds. Positions
//! a source counts afresh (the demo market, core NATS) are never redelivered and pass as they
//! are.

use crate::position::{Order, Partition, Position, Watermarks};
use crate::source::UpstreamEvent;

/// Where an event sits upstream, when its position survives a restart of its consumer.
pub type Place = Option<(Partition, Order)>;

/// The highest position mapped per partition.
#[derive(Default)]
pub struct Mapped {
    highest: Watermarks<Partition>,
}

impl Mapped {
    /// `Some` with the event's place when `event` is past everything mapped in its partition
    /// (and records it), or with no place when its position is not durable; `None` for a
    /// redelivery.
    pub fn admit(&mut self, event: &UpstreamEvent) -> Option<Place> {
        let position: Position = event.position;
        if !position.is_durable() {
            return Some(None);
        }
        let partition = position.partition(&event.channel);
        let order = position.order();
        self.highest
            .admit(&partition, order)
            .then_some(Some((partition, order)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;

    fn event(channel: &str, position: Position) -> UpstreamEvent {
        UpstreamEvent {
            channel: Arc::from(channel),
            key: None,
            headers: Vec::new(),
            payload: Bytes::new(),
            timestamp_us: 0,
            position,
        }
    }

    #[test]
    fn redeliveries_are_refused_per_partition() {
        let js = |sequence| Position::JetStream { sequence };
        let mut jetstream = Mapped::default();
        assert!(jetstream.admit(&event("trade.A", js(1))).is_some());
        assert!(jetstream.admit(&event("trade.B", js(2))).is_some());
        assert!(
            jetstream.admit(&event("trade.A", js(1))).is_none(),
            "redelivered"
        );
        assert!(
            jetstream.admit(&event("trade.A", js(2))).is_none(),
            "one sequence for the stream"
        );
        assert!(jetstream.admit(&event("trade.A", js(3))).is_some());

        let entry = |ms, seq| Position::RedisEntry { ms, seq };
        let mut redis = Mapped::default();
        assert!(redis.admit(&event("a", entry(1700, 0))).is_some());
        assert!(redis.admit(&event("a", entry(1700, 1))).is_some());
        assert!(
            redis.admit(&event("b", entry(1000, 0))).is_some(),
            "another stream key, its own order"
        );
        assert!(redis.admit(&event("a", entry(1700, 1))).is_none());
        assert!(redis.admit(&event("a", entry(1699, 9))).is_none());

        let record = |partition, offset| Position::Kafka { partition, offset };
        let mut kafka = Mapped::default();
        assert!(kafka.admit(&event("t", record(0, 10))).is_some());
        assert!(
            kafka.admit(&event("t", record(1, 3))).is_some(),
            "another partition"
        );
        assert!(kafka.admit(&event("t", record(0, 10))).is_none());
        assert!(kafka.admit(&event("t", record(0, 11))).is_some());
    }

    #[test]
    fn counted_positions_always_pass() {
        let mut mapped = Mapped::default();
        assert_eq!(mapped.admit(&event("a", Position::Counted(1))), Some(None));
        assert_eq!(mapped.admit(&event("a", Position::Counted(1))), Some(None));
    }
}
