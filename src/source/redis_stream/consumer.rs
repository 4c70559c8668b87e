//! The group consumer: creates the group, reads own pending then new entries, claims abandoned
//! ones, acknowledges handed-off ones and measures the lag.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Value};

use super::entry::{as_list, as_string, event, field, parse_entries, stream_pairs, Entry};
use super::{RedisStreamConfig, BACKOFF_MIN};
use crate::source::UpstreamEvent;

/// Time allowed to establish a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping source waits for its in-flight entries to be handed off.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Time allowed for a reply beyond a read's own blocking time.
const RESPONSE_MARGIN: Duration = Duration::from_secs(5);

/// Ids of one handed-off batch, per stream index.
pub(super) type Acks = Vec<(usize, Vec<String>)>;

/// The consumer's state across reconnects.
pub(super) struct Consumer {
    pub(super) name: String,
    pub(super) config: RedisStreamConfig,
    pub(super) channels: Vec<Arc<str>>,
    /// Per stream: the id after which own pending entries are still to be re-read, or None once
    /// they all were (then reads use `>`).
    pub(super) pending_cursor: Vec<Option<String>>,
    /// Dispatched, not yet acknowledged: never dispatched twice by this process.
    pub(super) in_flight: HashSet<(usize, String)>,
    pub(super) acks_tx: std_mpsc::Sender<Acks>,
    pub(super) acks_rx: std_mpsc::Receiver<Acks>,
    pub(super) next_claim: Instant,
    pub(super) next_lag: Instant,
}

pub(super) enum Step {
    /// Entries to dispatch.
    Events(Vec<UpstreamEvent>, Acks),
    /// Nothing (read timed out or nothing new).
    Idle,
    /// Shutdown requested.
    Stop,
}

impl Consumer {
    /// Connects, makes sure the group exists on every stream, and restarts from this
    /// consumer's own pending entries.
    pub(super) async fn connect(
        &mut self,
        client: &Client,
    ) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(
                Duration::from_millis(self.config.block_ms) + RESPONSE_MARGIN,
            ));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        for stream in &self.config.streams {
            let created: Result<Value, RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(&self.config.group)
                .arg(&self.config.start)
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Ok(_) => tracing::info!(
                    datasource = %self.name,
                    stream = %stream,
                    group = %self.config.group,
                    "created consumer group"
                ),
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        self.pending_cursor = vec![Some("0".to_string()); self.config.streams.len()];
        self.next_claim = Instant::now();
        Ok(conn)
    }

    /// On shutdown: waits a little for the routes to hand off what is in flight and acknowledges
    /// it on a new connection (the old one may be stuck behind a blocking read), so that a
    /// restart or reload does not deliver it again. Whatever is left stays pending and is
    /// re-read by this consumer when it comes back.
    pub(super) async fn finish(&mut self, client: &Client) {
        if self.in_flight.is_empty() {
            return;
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(STOP_GRACE))
            .set_response_timeout(Some(STOP_GRACE));
        let finished = tokio::time::timeout_at(deadline, async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            loop {
                self.ack(&mut conn).await?;
                if self.in_flight.is_empty() {
                    return Ok::<_, RedisError>(());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if !matches!(finished, Ok(Ok(()))) {
            tracing::warn!(
                datasource = %self.name,
                unacknowledged = self.in_flight.len(),
                "stopping with entries not acknowledged; they will be delivered again"
            );
        }
    }

    /// Acknowledges every handed-off batch received so far.
    async fn ack(&mut self, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
        let mut by_stream: HashMap<usize, Vec<String>> = HashMap::new();
        while let Ok(acks) = self.acks_rx.try_recv() {
            for (stream, ids) in acks {
                by_stream.entry(stream).or_default().extend(ids);
            }
        }
        for (stream, ids) in by_stream {
            let _: Value = redis::cmd("XACK")
                .arg(&self.config.streams[stream])
                .arg(&self.config.group)
                .arg(&ids)
                .query_async(conn)
                .await?;
            for id in ids {
                self.in_flight.remove(&(stream, id));
            }
        }
        Ok(())
    }

    /// Acknowledges, claims abandoned entries when due, else reads the next batch.
    pub(super) async fn step(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Step, RedisError> {
        self.ack(conn).await?;
        let mut entries = Vec::new();
        if self.config.claim_idle_ms > 0 && Instant::now() >= self.next_claim {
            self.claim(conn, &mut entries).await?;
            // Check twice per idle period, so nothing stays abandoned much longer than it.
            self.next_claim = Instant::now()
                + Duration::from_millis(self.config.claim_idle_ms / 2).max(BACKOFF_MIN);
        }
        if entries.is_empty() {
            self.read(conn, &mut entries).await?;
        }
        if entries.is_empty() {
            return Ok(Step::Idle);
        }
        Ok(self.events(entries))
    }

    /// Once a second: entries of the group not yet acknowledged, over every stream (`pending`
    /// plus `lag` of `XINFO GROUPS`). None between two readings or when Redis cannot say.
    pub(super) async fn lag(&mut self, conn: &mut MultiplexedConnection) -> Option<u64> {
        if Instant::now() < self.next_lag {
            return None;
        }
        self.next_lag = Instant::now() + Duration::from_secs(1);
        let mut total = 0;
        for stream in &self.config.streams {
            let reply: Value = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(stream)
                .query_async(conn)
                .await
                .ok()?;
            let group = as_list(reply).into_iter().map(as_list).find(|fields| {
                field(fields, "name")
                    .and_then(|v| as_string(v.clone()))
                    .as_deref()
                    == Some(self.config.group.as_str())
            })?;
            let count = |name: &str| match field(&group, name) {
                Some(Value::Int(n)) => u64::try_from(*n).ok(),
                _ => None,
            };
            total += count("pending")? + count("lag").unwrap_or(0);
        }
        Some(total)
    }

    /// `XAUTOCLAIM`s entries idle longer than `claim_idle_ms` on every stream.
    async fn claim(
        &mut self,
        conn: &mut MultiplexedConnection,
        entries: &mut Vec<(usize, Entry)>,
    ) -> Result<(), RedisError> {
        for (index, stream) in self.config.streams.iter().enumerate() {
            let mut cursor = "0-0".to_string();
            loop {
                let reply: Value = redis::cmd("XAUTOCLAIM")
                    .arg(stream)
                    .arg(&self.config.group)
                    .arg(&self.config.consumer)
                    .arg(self.config.claim_idle_ms)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(self.config.batch)
                    .query_async(conn)
                    .await?;
                let items = as_list(reply);
                let mut items = items.into_iter();
                let next = items.next().and_then(as_string).unwrap_or_default();
                let claimed = items.next().map(parse_entries).unwrap_or_default();
                if !claimed.is_empty() {
                    tracing::info!(
                        datasource = %self.name,
                        stream = %stream,
                        count = claimed.len(),
                        "claimed entries abandoned by other consumers"
                    );
                }
                entries.extend(claimed.into_iter().map(|e| (index, e)));
                if next.is_empty() || next == "0-0" || entries.len() as u64 >= self.config.batch {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// One `XREADGROUP`: own pending entries for streams still being recovered, `>` for the
    /// others (blocking only when no stream is recovering).
    async fn read(
        &mut self,
        conn: &mut MultiplexedConnection,
        entries: &mut Vec<(usize, Entry)>,
    ) -> Result<(), RedisError> {
        let recovering = self.pending_cursor.iter().any(Option::is_some);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg("COUNT")
            .arg(self.config.batch);
        if !recovering {
            cmd.arg("BLOCK").arg(self.config.block_ms);
        }
        cmd.arg("STREAMS").arg(&self.config.streams);
        for cursor in &self.pending_cursor {
            cmd.arg(cursor.as_deref().unwrap_or(">"));
        }
        let reply: Value = cmd.query_async(conn).await?;
        let mut seen = vec![false; self.config.streams.len()];
        for (key, value) in stream_pairs(reply) {
            let Some(index) = self.config.streams.iter().position(|s| *s == key) else {
                continue;
            };
            let read = parse_entries(value);
            if let (Some(cursor), Some(last)) = (&mut self.pending_cursor[index], read.last()) {
                seen[index] = true;
                *cursor = last.id.clone();
            }
            entries.extend(read.into_iter().map(|e| (index, e)));
        }
        for (index, cursor) in self.pending_cursor.iter_mut().enumerate() {
            if cursor.is_some() && !seen[index] {
                // No own pending entries left after the cursor: read new ones from now on.
                *cursor = None;
            }
        }
        Ok(())
    }

    /// Turns entries into events, skipping those already in flight and deleted ones (which are
    /// acknowledged right away).
    fn events(&mut self, entries: Vec<(usize, Entry)>) -> Step {
        let mut events = Vec::with_capacity(entries.len());
        let mut acks: Acks = Vec::new();
        let mut deleted: Acks = Vec::new();
        for (index, entry) in entries {
            let Some(fields) = entry.fields else {
                push_ack(&mut deleted, index, entry.id);
                continue;
            };
            if !self.in_flight.insert((index, entry.id.clone())) {
                continue;
            }
            events.push(event(&self.channels[index], &entry.id, fields));
            push_ack(&mut acks, index, entry.id);
        }
        if !deleted.is_empty() {
            let _ = self.acks_tx.send(deleted);
        }
        if events.is_empty() {
            Step::Idle
        } else {
            Step::Events(events, acks)
        }
    }
}

fn push_ack(acks: &mut Acks, index: usize, id: String) {
    match acks.iter_mut().find(|(i, _)| *i == index) {
        Some((_, ids)) => ids.push(id),
        None => acks.push((index, vec![id])),
    }
}
