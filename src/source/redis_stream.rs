//! The `redis_stream` datasource: reads Redis Streams as a member of a consumer group.
//!
//! Entries are read with `XREADGROUP` (first this consumer's own pending entries, so that a
//! restarted consumer re-delivers what it had not acknowledged, then new ones), entries left
//! pending by dead consumers are taken over with `XAUTOCLAIM`, and an entry is acknowledged
//! (`XACK`) only once every route has published what it mapped to: at-least-once delivery.
//!
//! Properties:
//! - `url` (required): `redis://host:port[/db]` or `redis+unix:///path/to.sock`.
//! - `streams` (required): the stream keys to read (a route's `upstream` names them).
//! - `group`: consumer group, default `wsgate` (created with `MKSTREAM` if missing).
//! - `consumer`: consumer name, default `wsgate`. A datasource has one consumer at a time (in a
//!   cluster, its owner), so one stable name lets a restarted or newly assigned consumer re-read
//!   what the last one left pending, in order, before new entries. Gateways that share a group
//!   to split a stream between them need names of their own.
//! - `block_ms`: how long one read blocks, default 1000 (also bounds shutdown latency).
//! - `batch`: entries per read (`COUNT`), default 500.
//! - `claim_idle_ms`: take over entries pending longer than this on other consumers, default
//!   30000; 0 disables claiming.
//! - `start`: where a newly created group starts: `0` (everything, the default) or `$` (new
//!   entries only).

use std::collections::{HashMap, HashSet};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Value};
use serde_json::{Map, Value as Json};
use tokio_util::sync::CancellationToken;

use super::{Backpressure, Dispatcher, Source, SourceError, UpstreamEvent};
use crate::config::Datasource;

const KNOWN: [&str; 8] = [
    "url",
    "streams",
    "group",
    "consumer",
    "block_ms",
    "batch",
    "claim_idle_ms",
    "start",
];

/// First reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Time allowed to establish a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping source waits for its in-flight entries to be handed off.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Time allowed for a reply beyond a read's own blocking time.
const RESPONSE_MARGIN: Duration = Duration::from_secs(5);

/// Validated `redis_stream` properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStreamConfig {
    /// Server URL.
    pub url: String,
    /// Stream keys read.
    pub streams: Vec<String>,
    /// Consumer group.
    pub group: String,
    /// This consumer's name in the group.
    pub consumer: String,
    /// How long one read blocks, in ms.
    pub block_ms: u64,
    /// Entries per read.
    pub batch: u64,
    /// Idle time after which other consumers' pending entries are claimed (0: never).
    pub claim_idle_ms: u64,
    /// Start id of a newly created group: `0` or `$`.
    pub start: String,
}

fn config_error(name: &str, property: &str, message: impl std::fmt::Display) -> SourceError {
    SourceError::Config {
        name: name.to_string(),
        message: format!("properties.{property}: {message}"),
    }
}

impl RedisStreamConfig {
    /// Parses and validates a datasource's properties.
    pub fn from_datasource(datasource: &Datasource) -> Result<Self, SourceError> {
        let name = datasource.name.as_str();
        let props = &datasource.properties;
        if let Some(key) = props.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(config_error(name, key, "unknown property"));
        }
        let url = match props.get("url") {
            None => return Err(config_error(name, "url", "required")),
            Some(Json::String(url)) => url.clone(),
            Some(_) => return Err(config_error(name, "url", "must be a string")),
        };
        if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
            return Err(config_error(
                name,
                "url",
                format!("`{url}` must start with redis:// or redis+unix://"),
            ));
        }
        if let Err(e) = Client::open(url.as_str()) {
            return Err(config_error(name, "url", format!("`{url}`: {e}")));
        }
        let streams = match props.get("streams") {
            None => {
                return Err(config_error(
                    name,
                    "streams",
                    "required (the stream keys to read)",
                ))
            }
            Some(Json::Array(items)) if !items.is_empty() => {
                let mut streams = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(key) if !key.is_empty() => {
                            if streams.iter().any(|s| s == key) {
                                return Err(config_error(
                                    name,
                                    &format!("streams[{i}]"),
                                    format!("`{key}` is listed twice"),
                                ));
                            }
                            streams.push(key.to_string());
                        }
                        _ => {
                            return Err(config_error(
                                name,
                                &format!("streams[{i}]"),
                                "must be a non-empty string",
                            ))
                        }
                    }
                }
                streams
            }
            Some(_) => {
                return Err(config_error(
                    name,
                    "streams",
                    "must be a non-empty array of stream keys",
                ))
            }
        };
        let text = |property: &str, default: String| -> Result<String, SourceError> {
            match props.get(property) {
                None => Ok(default),
                Some(Json::String(s)) if !s.is_empty() && !s.chars().any(char::is_whitespace) => {
                    Ok(s.clone())
                }
                Some(_) => Err(config_error(
                    name,
                    property,
                    "must be a non-empty string without spaces",
                )),
            }
        };
        let integer = |property: &str, default: u64, min: u64, max: u64| match props.get(property) {
            None => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(config_error(
                    name,
                    property,
                    format!("must be an integer from {min} to {max}"),
                )),
            },
        };
        let group = text("group", "wsgate".to_string())?;
        let consumer = text("consumer", "wsgate".to_string())?;
        let block_ms = integer("block_ms", 1000, 1, 60_000)?;
        let batch = integer("batch", 500, 1, 100_000)?;
        let claim_idle_ms = integer("claim_idle_ms", 30_000, 0, 86_400_000)?;
        let start = match props.get("start") {
            None => "0".to_string(),
            Some(Json::String(s)) if s == "0" || s == "$" => s.clone(),
            Some(_) => return Err(config_error(name, "start", "must be \"0\" or \"$\"")),
        };
        Ok(RedisStreamConfig {
            url,
            streams,
            group,
            consumer,
            block_ms,
            batch,
            claim_idle_ms,
            start,
        })
    }
}

/// A consumer of one group on a set of Redis streams.
pub struct RedisStreamSource {
    name: String,
    config: RedisStreamConfig,
}

impl RedisStreamSource {
    /// Validates the datasource's properties.
    pub fn from_datasource(datasource: &Datasource) -> Result<Self, SourceError> {
        Ok(RedisStreamSource {
            name: datasource.name.clone(),
            config: RedisStreamConfig::from_datasource(datasource)?,
        })
    }

    /// The validated properties.
    pub fn config(&self) -> &RedisStreamConfig {
        &self.config
    }
}

/// Ids of one handed-off batch, per stream index.
type Acks = Vec<(usize, Vec<String>)>;

/// The consumer's state across reconnects.
struct Consumer {
    name: String,
    config: RedisStreamConfig,
    channels: Vec<Arc<str>>,
    /// Per stream: the id after which own pending entries are still to be re-read, or None once
    /// they all were (then reads use `>`).
    pending_cursor: Vec<Option<String>>,
    /// Dispatched, not yet acknowledged: never dispatched twice by this process.
    in_flight: HashSet<(usize, String)>,
    acks_tx: std_mpsc::Sender<Acks>,
    acks_rx: std_mpsc::Receiver<Acks>,
    next_claim: Instant,
    next_lag: Instant,
}

enum Step {
    /// Entries to dispatch.
    Events(Vec<UpstreamEvent>, Acks),
    /// Nothing (read timed out or nothing new).
    Idle,
    /// Shutdown requested.
    Stop,
}

impl Source for RedisStreamSource {
    /// A broker keeps what is not read: a slow route slows the source instead of losing events.
    fn backpressure(&self) -> Backpressure {
        Backpressure::Wait
    }

    fn durable_positions(&self) -> bool {
        true
    }

    fn run(self: Box<Self>, mut dispatcher: Dispatcher, shutdown: CancellationToken) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(datasource = %self.name, error = %e, "cannot start a runtime");
                return;
            }
        };
        let (acks_tx, acks_rx) = std_mpsc::channel();
        let mut consumer = Consumer {
            channels: self
                .config
                .streams
                .iter()
                .map(|s| Arc::from(s.as_str()))
                .collect(),
            pending_cursor: Vec::new(),
            in_flight: HashSet::new(),
            acks_tx,
            acks_rx,
            next_claim: Instant::now(),
            next_lag: Instant::now(),
            name: self.name,
            config: self.config,
        };
        let client = match Client::open(consumer.config.url.as_str()) {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(datasource = %consumer.name, error = %e, "invalid redis url");
                return;
            }
        };
        let mut backoff = BACKOFF_MIN;
        while !shutdown.is_cancelled() {
            let connected = runtime.block_on(async {
                tokio::select! {
                    _ = shutdown.cancelled() => None,
                    c = consumer.connect(&client) => Some(c),
                }
            });
            let mut conn = match connected {
                None => return,
                Some(Ok(conn)) => {
                    dispatcher.health().set_up();
                    tracing::info!(
                        datasource = %consumer.name,
                        group = %consumer.config.group,
                        consumer = %consumer.config.consumer,
                        streams = ?consumer.config.streams,
                        "connected to redis"
                    );
                    conn
                }
                Some(Err(e)) => {
                    tracing::warn!(datasource = %consumer.name, error = %e, "redis connect failed");
                    dispatcher
                        .health()
                        .set_down(&format!("cannot connect: {e}"));
                    dispatcher.health().reconnecting();
                    if !sleep_backoff(&runtime, &shutdown, &mut backoff) {
                        return;
                    }
                    continue;
                }
            };
            // A read in progress when shutdown comes is let finish (it blocks at most
            // block_ms): entries the server handed out are dispatched, not stranded.
            let grace = Duration::from_millis(consumer.config.block_ms) + Duration::from_secs(1);
            loop {
                let step = runtime.block_on(async {
                    tokio::select! {
                        step = consumer.step(&mut conn) => step,
                        _ = async {
                            shutdown.cancelled().await;
                            tokio::time::sleep(grace).await;
                        } => Ok(Step::Stop),
                    }
                });
                let stopping = shutdown.is_cancelled();
                match step {
                    Ok(Step::Stop) => {}
                    Ok(Step::Idle) => backoff = BACKOFF_MIN,
                    Ok(Step::Events(events, acks)) => {
                        backoff = BACKOFF_MIN;
                        let tx = consumer.acks_tx.clone();
                        if !dispatcher.dispatch_blocking_then(events, move || {
                            let _ = tx.send(acks);
                        }) {
                            tracing::info!(datasource = %consumer.name, "no routes left; stopping");
                            return;
                        }
                    }
                    Err(e) if !stopping => {
                        tracing::warn!(datasource = %consumer.name, error = %e, "redis error; reconnecting");
                        dispatcher.health().set_down(&format!("redis error: {e}"));
                        dispatcher.health().reconnecting();
                        break;
                    }
                    Err(_) => {}
                }
                if stopping {
                    drop(conn);
                    runtime.block_on(consumer.finish(&client));
                    return;
                }
                if let Some(lag) = runtime.block_on(consumer.lag(&mut conn)) {
                    dispatcher.health().set_lag(lag);
                }
            }
            if !sleep_backoff(&runtime, &shutdown, &mut backoff) {
                return;
            }
        }
    }
}

/// Sleeps a jittered `backoff` (between half and all of it), then doubles it up to the cap.
/// False if shutdown came first.
fn sleep_backoff(
    runtime: &tokio::runtime::Runtime,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
) -> bool {
    let half = backoff.as_millis() as u64 / 2;
    let wait = Duration::from_millis(half + rand::rng().random_range(0..=half));
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    runtime.block_on(async {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    })
}

impl Consumer {
    /// Connects, makes sure the group exists on every stream, and restarts from this
    /// consumer's own pending entries.
    async fn connect(&mut self, client: &Client) -> Result<MultiplexedConnection, RedisError> {
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
    async fn finish(&mut self, client: &Client) {
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
    async fn step(&mut self, conn: &mut MultiplexedConnection) -> Result<Step, RedisError> {
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
    async fn lag(&mut self, conn: &mut MultiplexedConnection) -> Option<u64> {
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

/// The value after `name` in a flat field/value reply.
fn field<'a>(fields: &'a [Value], name: &str) -> Option<&'a Value> {
    fields
        .chunks(2)
        .find(|pair| as_string(pair[0].clone()).as_deref() == Some(name))
        .and_then(|pair| pair.get(1))
}

/// One stream entry; `fields` is None for an entry deleted while pending.
#[derive(Debug)]
struct Entry {
    id: String,
    fields: Option<Vec<(String, Bytes)>>,
}

/// The event for an entry: key and payload from the `key` and `payload` fields (the payload is
/// the whole entry as a JSON object when there is no `payload` field), the other fields as
/// headers.
fn event(channel: &Arc<str>, id: &str, fields: Vec<(String, Bytes)>) -> UpstreamEvent {
    let has_payload = fields.iter().any(|(f, _)| f == "payload");
    let payload = if has_payload {
        Bytes::new()
    } else {
        let object: Map<String, Json> = fields
            .iter()
            .map(|(f, v)| {
                (
                    f.clone(),
                    Json::String(String::from_utf8_lossy(v).into_owned()),
                )
            })
            .collect();
        Bytes::from(Json::Object(object).to_string())
    };
    let mut event = UpstreamEvent {
        channel: Arc::clone(channel),
        key: None,
        headers: Vec::new(),
        payload,
        timestamp_us: id
            .split('-')
            .next()
            .and_then(|ms| ms.parse::<i64>().ok())
            .map_or(0, |ms| ms.saturating_mul(1000)),
        position: id.to_string(),
    };
    for (field, value) in fields {
        match field.as_str() {
            "key" => event.key = Some(value),
            "payload" => event.payload = value,
            _ => event.headers.push((field, value)),
        }
    }
    event
}

fn as_list(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        Value::Attribute { data, .. } => as_list(*data),
        _ => Vec::new(),
    }
}

fn as_string(value: Value) -> Option<String> {
    as_bytes(value).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn as_bytes(value: Value) -> Option<Bytes> {
    match value {
        Value::BulkString(b) => Some(Bytes::from(b)),
        Value::SimpleString(s) => Some(Bytes::from(s)),
        Value::VerbatimString { text, .. } => Some(Bytes::from(text)),
        Value::Int(n) => Some(Bytes::from(n.to_string())),
        Value::Okay => Some(Bytes::from_static(b"OK")),
        _ => None,
    }
}

/// `(stream key, entries)` pairs of an `XREADGROUP` reply (RESP2 array or RESP3 map).
fn stream_pairs(reply: Value) -> Vec<(String, Value)> {
    match reply {
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(k, v)| Some((as_string(k)?, v)))
            .collect(),
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| {
                let mut parts = as_list(item).into_iter();
                let key = as_string(parts.next()?)?;
                Some((key, parts.next()?))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Entries `[[id, [field, value, ...] | nil], ...]`.
fn parse_entries(value: Value) -> Vec<Entry> {
    as_list(value)
        .into_iter()
        .filter_map(|item| {
            let mut parts = as_list(item).into_iter();
            let id = as_string(parts.next()?)?;
            let fields = match parts.next() {
                None | Some(Value::Nil) => None,
                Some(list) => {
                    let mut fields = Vec::new();
                    let mut flat = as_list(list).into_iter();
                    while let (Some(f), Some(v)) = (flat.next(), flat.next()) {
                        if let (Some(f), Some(v)) = (as_string(f), as_bytes(v)) {
                            fields.push((f, v));
                        }
                    }
                    Some(fields)
                }
            };
            Some(Entry { id, fields })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatasourceKind;
    use serde_json::json;

    fn datasource(properties: Json) -> Datasource {
        Datasource {
            version: 1,
            kind: DatasourceKind::RedisStream,
            name: "rs".to_string(),
            properties: properties.as_object().unwrap().clone(),
        }
    }

    fn error(properties: Json) -> String {
        match RedisStreamSource::from_datasource(&datasource(properties)) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_apply() {
        let source = RedisStreamSource::from_datasource(&datasource(
            json!({"url": "redis://127.0.0.1:6379", "streams": ["trades"]}),
        ))
        .unwrap();
        let c = source.config();
        assert_eq!(c.streams, vec!["trades".to_string()]);
        assert_eq!(c.group, "wsgate");
        assert_eq!(c.consumer, "wsgate");
        assert_eq!((c.block_ms, c.batch, c.claim_idle_ms), (1000, 500, 30_000));
        assert_eq!(c.start, "0");
        assert_eq!(source.backpressure(), Backpressure::Wait);
        assert!(source.durable_positions());
    }

    #[test]
    fn every_property_is_read() {
        let source = RedisStreamSource::from_datasource(&datasource(json!({
            "url": "redis+unix:///tmp/r.sock", "streams": ["a", "b"], "group": "g",
            "consumer": "c1", "block_ms": 50, "batch": 7, "claim_idle_ms": 0, "start": "$"
        })))
        .unwrap();
        let c = source.config();
        assert_eq!(c.streams, vec!["a".to_string(), "b".to_string()]);
        assert_eq!((c.group.as_str(), c.consumer.as_str()), ("g", "c1"));
        assert_eq!((c.block_ms, c.batch, c.claim_idle_ms), (50, 7, 0));
        assert_eq!(c.start, "$");
    }

    #[test]
    fn bad_properties_are_named() {
        let ok = json!({"url": "redis://localhost", "streams": ["s"]});
        let with = |key: &str, value: Json| {
            let mut p = ok.clone();
            p[key] = value;
            p
        };
        let cases = [
            (json!({"streams": ["s"]}), "properties.url"),
            (with("url", json!("http://nope")), "properties.url"),
            (with("url", json!("redis://")), "properties.url"),
            (with("url", json!(5)), "properties.url"),
            (json!({"url": "redis://localhost"}), "properties.streams"),
            (with("streams", json!([])), "properties.streams"),
            (with("streams", json!("s")), "properties.streams"),
            (with("streams", json!(["s", ""])), "properties.streams[1]"),
            (with("streams", json!(["s", "s"])), "properties.streams[1]"),
            (with("group", json!("")), "properties.group"),
            (with("consumer", json!(3)), "properties.consumer"),
            (with("block_ms", json!(0)), "properties.block_ms"),
            (with("block_ms", json!("1000")), "properties.block_ms"),
            (with("batch", json!(0)), "properties.batch"),
            (with("batch", json!(-1)), "properties.batch"),
            (
                with("claim_idle_ms", json!(1.5)),
                "properties.claim_idle_ms",
            ),
            (with("start", json!("1-0")), "properties.start"),
            (with("strams", json!(["s"])), "properties.strams"),
        ];
        for (props, expected) in cases {
            let message = error(props.clone());
            assert!(
                message.contains(&format!("{expected}:")),
                "{props}: `{message}` does not name {expected}"
            );
            assert!(message.starts_with("datasource `rs`"), "{message}");
        }
    }

    #[test]
    fn entries_become_events() {
        let channel: Arc<str> = Arc::from("trades");
        let fields = vec![
            ("key".to_string(), Bytes::from_static(b"BTCUSDT")),
            ("payload".to_string(), Bytes::from_static(b"{\"a\":1}")),
            ("trace".to_string(), Bytes::from_static(b"x")),
        ];
        let e = event(&channel, "1767000000123-4", fields);
        assert_eq!(&*e.channel, "trades");
        assert_eq!(e.key.as_deref(), Some(&b"BTCUSDT"[..]));
        assert_eq!(&e.payload[..], b"{\"a\":1}");
        assert_eq!(
            e.headers,
            vec![("trace".to_string(), Bytes::from_static(b"x"))]
        );
        assert_eq!(e.position, "1767000000123-4");
        assert_eq!(e.timestamp_us, 1_767_000_000_123_000);

        let fields = vec![
            ("symbol".to_string(), Bytes::from_static(b"BTCUSDT")),
            ("price".to_string(), Bytes::from_static(b"1.0")),
        ];
        let e = event(&channel, "5-0", fields);
        let whole: Json = serde_json::from_slice(&e.payload).unwrap();
        assert_eq!(whole, json!({"symbol": "BTCUSDT", "price": "1.0"}));
        assert_eq!(e.key, None);
        assert_eq!(e.headers.len(), 2);
        assert_eq!(e.timestamp_us, 5000);
    }

    #[test]
    fn replies_are_parsed() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("trades"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("payload"), bulk("p")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let pairs = stream_pairs(reply);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].0, "trades");
        let entries = parse_entries(pairs[0].1.clone());
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].id, "1-0");
        assert_eq!(
            entries[0].fields.as_ref().unwrap()[0],
            ("payload".to_string(), Bytes::from_static(b"p"))
        );
        assert!(entries[1].fields.is_none());
    }
}
