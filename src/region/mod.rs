//! Regions: several clusters serving one domain, each with its own NATS cluster, Redis and
//! nodes, their NATS clusters joined by gateways (`docs/multi-region.md`).
//!
//! Within a region the cluster assigns each datasource to one node ([`crate::cluster`]); across
//! regions [`Regions`] lets one region at a time consume it: the first live region of the
//! datasource's `regions` list. Every node says on the bus which region it is in and what it
//! consumes, so each region knows which regions are live and what the others run.
//!
//! One region's config store is the leader; the nodes of the others copy its config, mapper
//! registry and API keys into their own store ([`ConfigFollower`]), so a promote or a rollback
//! reaches every region and a region keeps its last copy when the leader is lost.

mod follow;
mod gate;

use std::time::Duration;

pub use follow::ConfigFollower;
pub use gate::Regions;

/// How a node takes part in a multi-region deployment.
#[derive(Debug, Clone)]
pub struct RegionSettings {
    /// This node's region.
    pub name: String,
    /// How often the node says on the bus that it is alive and what it consumes.
    pub heartbeat: Duration,
    /// After how long without a word from any of its nodes a region counts as lost.
    pub ttl: Duration,
}
