//! The peer registry in Redis: heartbeats with a TTL, join announcements, and the detection of
//! peers whose heartbeat lapsed, of which exactly one live peer announces the departure.
//!
//! | Key                     | Type   | Holds                                                    |
//! |-------------------------|--------|----------------------------------------------------------|
//! | `Ppeers`                | zset   | peer id → when its heartbeat lapses (ms, Redis clock)    |
//! | `Ppeer_update_queue`    | stream | `event` = `peer_join:<id>` or `peer_left:<id>`           |
//! | `Ppeer-left:<id>`       | string | the lock of whoever announces `<id>`'s departure (NX PX) |
//!
//! Times come from the Redis server's clock (`TIME`), so peers' clocks need not agree.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The registry zset.
    pub fn peers(&self) -> String {
        format!("{}peers", self.prefix)
    }

    /// The stream of join and leave events.
    pub fn queue(&self) -> String {
        format!("{}peer_update_queue", self.prefix)
    }

    /// The lock on announcing `peer`'s departure.
    pub fn left_lock(&self, peer: &str) -> String {
        format!("{}peer-left:{peer}", self.prefix)
    }

    /// The consumption lease of `datasource`.
    pub fn lease(&self, datasource: &str) -> String {
        format!("{}lease:{datasource}", self.prefix)
    }
}

/// Refreshes one peer's heartbeat; returns the live peers and the lapsed ones.
/// KEYS: peers. ARGV: peer id, ttl ms.
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
return {live, lapsed}
"#,
    )
});

/// The live peers. KEYS: peers.
static LIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
"#,
    )
});

/// One peer's handle on the registry.
#[derive(Clone)]
pub struct PeerRegistry {
    conn: ConnectionManager,
    keys: Keys,
    peer_id: String,
    ttl: Duration,
}

impl PeerRegistry {
    /// The registry of peer `peer_id`, whose heartbeat lapses after `ttl` without a refresh.
    pub fn new(conn: ConnectionManager, keys: Keys, peer_id: &str, ttl: Duration) -> Self {
        PeerRegistry {
            conn,
            keys,
            peer_id: peer_id.to_string(),
            ttl,
        }
    }

    /// Heartbeats and announces this peer's arrival on the queue.
    pub async fn join(&mut self) -> RedisResult<()> {
        self.heartbeat().await?;
        let event = format!("peer_join:{}", self.peer_id);
        self.publish(&event).await
    }

    /// Refreshes this peer's heartbeat. Of the peers whose heartbeat lapsed, announces the
    /// departure of those whose `peer-left` lock this peer wins (and takes them off the
    /// registry). Returns the live peers.
    pub async fn heartbeat(&mut self) -> RedisResult<Vec<String>> {
        let (live, lapsed): (Vec<String>, Vec<String>) = HEARTBEAT
            .key(self.keys.peers())
            .arg(&self.peer_id)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut self.conn)
            .await?;
        for peer in lapsed {
            self.announce_left(&peer).await?;
        }
        Ok(live)
    }

    /// Takes the `peer-left` lock of `peer`; the winner alone publishes `peer_left:<peer>`.
    async fn announce_left(&mut self, peer: &str) -> RedisResult<()> {
        let won: Option<String> = redis::cmd("SET")
            .arg(self.keys.left_lock(peer))
            .arg(&self.peer_id)
            .arg("NX")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut self.conn)
            .await?;
        if won.is_none() {
            return Ok(());
        }
        tracing::warn!(peer, "peer heartbeat lapsed; announcing its departure");
        let _: () = redis::cmd("ZREM")
            .arg(self.keys.peers())
            .arg(peer)
            .query_async(&mut self.conn)
            .await?;
        self.publish(&format!("peer_left:{peer}")).await
    }

    /// Leaves the registry at once (graceful shutdown) and announces it.
    pub async fn leave(&mut self) -> RedisResult<()> {
        let _: () = redis::cmd("ZREM")
            .arg(self.keys.peers())
            .arg(&self.peer_id)
            .query_async(&mut self.conn)
            .await?;
        self.publish(&format!("peer_left:{}", self.peer_id)).await
    }

    /// The peers whose heartbeat is current.
    pub async fn live(&mut self) -> RedisResult<Vec<String>> {
        LIVE.key(self.keys.peers())
            .invoke_async(&mut self.conn)
            .await
    }

    async fn publish(&mut self, event: &str) -> RedisResult<()> {
        let _: String = redis::cmd("XADD")
            .arg(self.keys.queue())
            .arg("MAXLEN")
            .arg("~")
            .arg(10_000)
            .arg("*")
            .arg("event")
            .arg(event)
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }
}
