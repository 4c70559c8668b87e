//! Node cards in Redis: each node's latest report about itself (state, load, datasources),
//! which any node reads to show the whole cluster (the operator API's cluster view).
//!
//! | Key      | Type | Holds                                     |
//! |----------|------|-------------------------------------------|
//! | `Pnodes` | hash | node id → its latest card (JSON)          |
//!
//! Cards carry the time they were written; readers skip stale ones and remove those older than
//! [`FORGET_AFTER`], so the ids of nodes that are gone do not accumulate.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisResult};

/// Cards older than this are removed by whoever reads them.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// The cluster's node cards.
#[derive(Clone)]
pub struct Directory {
    conn: ConnectionManager,
    key: String,
}

impl Directory {
    /// The directory under `prefix` of the Redis at `url`.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Directory> {
        Ok(Directory {
            conn: super::connect(url).await?,
            key: format!("{prefix}nodes"),
        })
    }

    /// Stores `card` (JSON) as `node`'s latest.
    pub async fn put(&self, node: &str, card: &str) -> RedisResult<()> {
        self.conn.clone().hset(&self.key, node, card).await
    }

    /// Every stored card: node id and JSON.
    pub async fn all(&self) -> RedisResult<HashMap<String, String>> {
        self.conn.clone().hgetall(&self.key).await
    }

    /// Removes the cards of `nodes`.
    pub async fn remove(&self, nodes: &[&str]) -> RedisResult<()> {
        if nodes.is_empty() {
            return Ok(());
        }
        self.conn.clone().hdel(&self.key, nodes).await
    }
}
