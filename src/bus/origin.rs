//! Where a bus message came from upstream, so that a node drops what it has already delivered.
//!
//! A source that resumes from a committed position (Kafka, JetStream, Redis Streams) redelivers
//! what was not yet committed when its consumer restarts — after a crash, a broker restart, or a
//! handover of the source to another node. The route maps such events again and publishes the
//! same outputs; each carries its [`Origin`], and a node's hub drops a message whose origin is
//! not past the last one it delivered on that stream.

use std::sync::Arc;

/// A message's place upstream: `(position major, position minor, output index)`.
///
/// The major and minor parts are the source's own position in its partition (Kafka offset and
/// 0; Redis entry id `ms` and `seq`; JetStream stream sequence and 0). The output index counts
/// the outputs one mapping made of that event, so the fills of one trade event stay distinct.
pub type Order = (u64, u64, u32);

/// The upstream origin of one mapped output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The sequence the order is counted in: one mapping of one route over one upstream
    /// partition, written `datasource/channel/partition/route:ws-topic-template`. Orders of
    /// one lane only increase.
    pub lane: Arc<str>,
    /// Place in the lane.
    pub order: Order,
}

impl Origin {
    /// The lane name of `mapping` (its route and ws topic template) over `partition` of
    /// `channel` of `datasource`.
    pub fn lane(datasource: &str, channel: &str, partition: u32, mapping: &str) -> Arc<str> {
        Arc::from(format!("{datasource}/{channel}/{partition}/{mapping}"))
    }
}
