//! Where a bus message came from upstream, so that a node drops what it has already delivered.
//!
//! A source that resumes from a committed position (Kafka, JetStream, Redis Streams) redelivers
//! what was not yet committed when its consumer restarts — after a crash, a broker restart, or a
//! handover of the source to another node. The route maps such events again and publishes the
//! same outputs; each carries its [`Origin`], and a node's hub drops a message whose origin is
//! not past the last one it delivered on that stream.

use std::sync::Arc;

use crate::position::{Order, Partition};

/// The upstream origin of one mapped output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The sequence the order is counted in: one mapping of one route over one upstream
    /// partition, written `datasource/channel/partition/route:ws-topic-template`. Orders along
    /// one feed only increase.
    pub feed: Arc<str>,
    /// Place along the feed: the upstream position and the output's index within its event.
    pub order: Order,
}

impl Origin {
    /// The feed of `mapping` (its route and ws topic template) over `partition` of
    /// `datasource` (a partition of the whole source has an empty channel).
    pub fn feed(datasource: &str, partition: &Partition, mapping: &str) -> Arc<str> {
        let channel = partition.channel.as_deref().unwrap_or("");
        Arc::from(format!(
            "{datasource}/{channel}/{}/{mapping}",
            partition.number
        ))
    }
}
