//! Consumption leases: at most one node consumes a datasource at any moment.
//!
//! Ownership moves through the config, and nodes apply a new config at slightly different
//! times; without a lease the new owner could start reading before the old one has stopped and
//! committed, and the two would interleave. So a node holds `Please:<datasource>` (its id, with
//! a TTL) while its source runs: it takes it before the first read (waiting while another node
//! holds it), renews it, and deletes it once the source has stopped and committed. A node that
//! dies without releasing holds it at most one TTL longer.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::peers::Keys;

/// Takes or renews the lease: held already by this node, or free. KEYS: lease. ARGV: holder, ttl ms.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#,
    )
});

/// Deletes the lease if this node holds it. KEYS: lease. ARGV: holder.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// How a [`Leases::hold_while`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenure {
    /// Stopped while waiting: the source never ran.
    NeverTaken,
    /// The source ran and stopped, and the lease was released.
    Released,
    /// Another node took the lease while the source ran, which stopped it.
    Lost,
    /// The datasource went to another region while the source ran, which stopped it
    /// ([`crate::region::Regions`]); the lease was released.
    Yielded,
}

impl Tenure {
    /// Whether the source must start again, waiting for its turn: it stopped for another node
    /// or region, not for the node.
    pub fn restarts(self) -> bool {
        matches!(self, Tenure::Lost | Tenure::Yielded)
    }
}

/// One node's leases.
#[derive(Clone)]
pub struct Leases {
    conn: ConnectionManager,
    keys: Keys,
    holder: String,
    ttl: Duration,
}

impl Leases {
    /// Leases held as `holder`, lapsing `ttl` after the last renewal.
    pub fn new(conn: ConnectionManager, keys: Keys, holder: &str, ttl: Duration) -> Self {
        Leases {
            conn,
            keys,
            holder: holder.to_string(),
            ttl,
        }
    }

    async fn take(&self, datasource: &str) -> RedisResult<bool> {
        let mut conn = self.conn.clone();
        TAKE.key(self.keys.lease(datasource))
            .arg(&self.holder)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
    }

    async fn release(&self, datasource: &str) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = RELEASE
            .key(self.keys.lease(datasource))
            .arg(&self.holder)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Runs `consume` on this thread once this node holds `datasource`'s lease, renewing it
    /// until `consume` returns, then releases it. Returns without running `consume` if `stop`
    /// is cancelled first. Losing the lease to another node (after a stall longer than the
    /// TTL) cancels `stop`, so the source stops, and says so: the caller decides whether to
    /// queue for the lease again. While Redis is unreachable the lease is kept.
    pub fn hold_while(
        &self,
        datasource: &str,
        stop: &CancellationToken,
        runtime: &Handle,
        consume: impl FnOnce(),
    ) -> Tenure {
        let acquired = runtime.block_on(async {
            let mut waited = false;
            loop {
                match self.take(datasource).await {
                    Ok(true) => return true,
                    Ok(false) if !waited => {
                        tracing::info!(
                            datasource,
                            "waiting for the previous owner to release the source"
                        );
                        waited = true;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(datasource, error = %e, "cannot take the lease yet"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.cancelled() => return false,
                }
            }
        });
        if !acquired {
            return Tenure::NeverTaken;
        }
        let renewing = CancellationToken::new();
        let renewer = {
            let leases = self.clone();
            let datasource = datasource.to_string();
            let (stop, renewing) = (stop.clone(), renewing.clone());
            runtime.spawn(async move {
                let every = leases.ttl / 3;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = renewing.cancelled() => return Tenure::Released,
                    }
                    match leases.take(&datasource).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!(%datasource, "lease lost to another node; stopping the source");
                            stop.cancel();
                            return Tenure::Lost;
                        }
                        Err(e) => tracing::warn!(%datasource, error = %e, "lease renewal failed"),
                    }
                }
            })
        };
        consume();
        renewing.cancel();
        runtime.block_on(async {
            let tenure = renewer.await.unwrap_or(Tenure::Released);
            if tenure == Tenure::Released {
                if let Err(e) = self.release(datasource).await {
                    tracing::warn!(datasource, error = %e, "lease release failed; it lapses on its own");
                }
            }
            tenure
        })
    }
}
