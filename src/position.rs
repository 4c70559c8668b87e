//! Where an event sits upstream, as its source hands it over ([`Position`]), and the one
//! redelivery check every layer uses ([`Watermarks`]). Read by sources, routes, the bus and the
//! hub; depends on nothing else.
//!
//! A source that resumes from a committed position (Kafka, JetStream, Redis Streams) redelivers
//! what was not yet committed when its consumer restarts. A route skips events at or below the
//! highest position it mapped per partition; the hubs skip outputs at or below the last one
//! they delivered per feed (one mapping over one partition), so a redelivery reaches no client
//! twice, whichever node mapped it.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

/// An upstream position, typed by the source that handed it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// A Kafka record: its partition of the topic (the event's channel) and its offset there.
    Kafka {
        /// Partition number.
        partition: u32,
        /// Offset within the partition.
        offset: u64,
    },
    /// A Redis Streams entry id (`ms-seq`) within its stream key (the event's channel).
    RedisEntry {
        /// Milliseconds part.
        ms: u64,
        /// Sequence part.
        seq: u64,
    },
    /// A JetStream stream sequence: one order across every subject of the stream.
    JetStream {
        /// Stream sequence.
        sequence: u64,
    },
    /// Counted by the source from 1 at each start, in arrival order (the demo market, core
    /// NATS): an order within one run, lost with it.
    Counted(u64),
}

impl Position {
    /// Whether a restarted consumer hands the same event over with the same position, so a
    /// redelivery can be recognised by it across restarts and nodes.
    pub fn is_durable(&self) -> bool {
        !matches!(self, Position::Counted(_))
    }

    /// The partition this position orders events in, for an event on `channel`: Kafka's is
    /// the topic's partition, Redis's the stream key; a JetStream stream or a counting source
    /// orders every channel together.
    pub fn partition(&self, channel: &Arc<str>) -> Partition {
        match *self {
            Position::Kafka { partition, .. } => Partition {
                channel: Some(Arc::clone(channel)),
                number: partition,
            },
            Position::RedisEntry { .. } => Partition {
                channel: Some(Arc::clone(channel)),
                number: 0,
            },
            Position::JetStream { .. } | Position::Counted(_) => Partition::WHOLE_SOURCE,
        }
    }

    /// The order of this position within its partition (of `output` index 0).
    pub fn order(&self) -> Order {
        let (major, minor) = match *self {
            Position::Kafka { offset, .. } => (offset, 0),
            Position::RedisEntry { ms, seq } => (ms, seq),
            Position::JetStream { sequence } => (sequence, 0),
            Position::Counted(n) => (n, 0),
        };
        Order {
            major,
            minor,
            output: 0,
        }
    }
}

/// As the mapper contract shows it (`wit/mapper.wit`): `partition:offset`, `ms-seq`, or the
/// sequence number.
impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Kafka { partition, offset } => write!(f, "{partition}:{offset}"),
            Position::RedisEntry { ms, seq } => write!(f, "{ms}-{seq}"),
            Position::JetStream { sequence } => write!(f, "{sequence}"),
            Position::Counted(n) => write!(f, "{n}"),
        }
    }
}

/// The part of a source whose positions are in one order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Partition {
    /// The channel, where each channel has its own order; `None` where the whole source has one.
    pub channel: Option<Arc<str>>,
    /// The partition number within the channel (Kafka), else 0.
    pub number: u32,
}

impl Partition {
    /// The one partition of a source ordered as a whole.
    pub const WHOLE_SOURCE: Partition = Partition {
        channel: None,
        number: 0,
    };
}

/// A place in a partition's order: the position's own parts, then the index of the output a
/// mapping made of the event (so the fills of one trade stay distinct).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Order {
    /// Offset, entry id milliseconds, or sequence.
    pub major: u64,
    /// Entry id sequence, else 0.
    pub minor: u64,
    /// Index of the output within its event's outputs.
    pub output: u32,
}

impl Order {
    /// The same place, for the output at `index`.
    pub fn output(self, index: u32) -> Order {
        Order {
            output: index,
            ..self
        }
    }
}

/// The last order admitted per key: admits only what is past it. The one redelivery check,
/// used by routes (keyed by partition) and hubs (keyed by feed).
#[derive(Debug)]
pub struct Watermarks<K> {
    last: HashMap<K, Order>,
}

impl<K: Eq + Hash + Clone> Watermarks<K> {
    /// Nothing admitted yet.
    pub fn new() -> Self {
        Watermarks {
            last: HashMap::new(),
        }
    }

    /// True when `order` is past the last one admitted under `key` (and records it); false
    /// for a redelivery. `key` is cloned only the first time it is seen.
    pub fn admit(&mut self, key: &K, order: Order) -> bool {
        match self.last.get_mut(key) {
            Some(last) if order <= *last => false,
            Some(last) => {
                *last = order;
                true
            }
            None => {
                self.last.insert(key.clone(), order);
                true
            }
        }
    }
}

impl<K: Eq + Hash + Clone> Default for Watermarks<K> {
    fn default() -> Self {
        Watermarks::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn positions_read_as_the_mapper_contract_says() {
        let kafka = Position::Kafka {
            partition: 2,
            offset: 1234,
        };
        assert_eq!(kafka.to_string(), "2:1234");
        let entry = Position::RedisEntry {
            ms: 1767000000123,
            seq: 4,
        };
        assert_eq!(entry.to_string(), "1767000000123-4");
        assert_eq!(Position::JetStream { sequence: 9 }.to_string(), "9");
        assert_eq!(Position::Counted(42).to_string(), "42");
        assert!(kafka.is_durable() && entry.is_durable());
        assert!(!Position::Counted(1).is_durable());
    }

    #[test]
    fn kafka_and_redis_order_per_channel_jetstream_per_source() {
        let (a, b) = (channel("a"), channel("b"));
        let k = |partition| Position::Kafka {
            partition,
            offset: 1,
        };
        assert_ne!(k(0).partition(&a), k(1).partition(&a));
        assert_ne!(k(0).partition(&a), k(0).partition(&b));
        let r = Position::RedisEntry { ms: 1, seq: 0 };
        assert_ne!(r.partition(&a), r.partition(&b));
        let j = Position::JetStream { sequence: 1 };
        assert_eq!(j.partition(&a), j.partition(&b));
        assert!(
            Position::RedisEntry { ms: 1700, seq: 1 }.order()
                > Position::RedisEntry { ms: 1699, seq: 9 }.order()
        );
    }

    #[test]
    fn watermarks_admit_only_what_is_past_the_last_per_key() {
        let mut marks: Watermarks<Arc<str>> = Watermarks::new();
        let at = |major, output| Order {
            major,
            minor: 0,
            output,
        };
        let (feed, other) = (channel("x"), channel("y"));
        assert!(marks.admit(&feed, at(10, 0)));
        assert!(
            marks.admit(&feed, at(10, 1)),
            "a second output of one event"
        );
        assert!(marks.admit(&feed, at(11, 0)));
        assert!(!marks.admit(&feed, at(10, 1)), "a redelivery");
        assert!(!marks.admit(&feed, at(11, 0)), "the last one again");
        assert!(marks.admit(&other, at(3, 0)), "keys are independent");
        assert!(marks.admit(&feed, at(12, 0)));
    }
}
