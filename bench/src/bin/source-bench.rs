//! Throughput and end-to-end latency of one upstream source through a wsgate node, or, as the
//! same-run baseline, straight from the broker without wsgate. `bench/scripts/bench-sources.sh`
//! runs it against brokers and gateways of its own; `docs/benchmarks.md` has the figures.
//!
//! Every upstream event is a demo `match` event of BTCUSDT with one fill whose `trade_id` is
//! the message number `i` (padded to 200 bytes), so the `binance_trade` mapper turns it into a
//! `btcusdt@trade` message whose `t` is `i`. Producer and receiver share this process, so a
//! latency is the receive `Instant` of trade `i` minus the `Instant` just before trade `i` was
//! handed to the broker client.
//!
//! - `--gateway ws://HOST:PORT`: the receiver is one WebSocket client on `/ws/btcusdt@trade`.
//!   The gateway starts without a datasource (`bench/config/source-idle.json`); once the client
//!   is subscribed, this program adds the datasource and its route through the operator API
//!   (`--admin`, `--token`), so the source starts consuming only then.
//! - without `--gateway`: the receiver consumes the broker directly, the way the wsgate source
//!   does (Redis `XREADGROUP COUNT 500` + `XACK`; a NATS queue subscription; a JetStream durable
//!   pull consumer acknowledging every message; a librdkafka consumer committing every batch).
//!
//! Modes:
//! - `throughput`: `--messages N` are produced to the broker before anything consumes them
//!   (core NATS keeps nothing, so there they are published as fast as possible once the
//!   subscription is live), then the receiver's rate from the first to the last message is
//!   reported, with how many were lost, duplicated or out of order.
//! - `latency`: `--rate` messages per second (scheduled on tokio's 1 ms timer, so they leave in
//!   bursts of rate/1000) for `--warmup` then `--duration`; the latency percentiles cover the
//!   messages of the `--duration` window only.
//!
//! ```sh
//! cargo run --release --bin source-bench -- \
//!     --source redis --broker redis://127.0.0.1:16379 --mode latency \
//!     --gateway ws://127.0.0.1:9100 --admin http://127.0.0.1:9101 --token bench
//! ```
//!
//! The last line printed starts with `RESULT` and carries every figure as `key=value`: `lost`
//! counts ids never received, `dup` ids received again, `out_of_order` messages whose id is not
//! the previous one's plus one (so a gap left by a lost message counts too), `cpu_NAME` the CPU
//! used by each process of `--pids` (100% is one core) while messages flowed.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Redis stream key and Kafka topic.
const STREAM: &str = "trades";
/// NATS subject the producer publishes on, and the pattern read.
const SUBJECT: &str = "trade.BTCUSDT";
const SUBJECTS: &str = "trade.>";
/// JetStream stream.
const JS_STREAM: &str = "MD";
/// Size of every upstream payload.
const PAYLOAD_BYTES: usize = 200;
/// Entries per read, as the wsgate sources use by default.
const BATCH: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Source {
    /// Redis Streams (`redis_stream` datasource).
    Redis,
    /// Core NATS (`nats` datasource without `jetstream`).
    Nats,
    /// NATS JetStream (`nats` datasource with `jetstream`).
    Jetstream,
    /// Kafka protocol (`kafka` datasource).
    Kafka,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Throughput,
    Latency,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Throughput and end-to-end latency of a wsgate upstream source")]
struct Args {
    #[arg(long, value_enum)]
    source: Source,
    #[arg(long, value_enum)]
    mode: Mode,
    /// `redis://HOST:PORT`, `nats://HOST:PORT`, or `HOST:PORT` (Kafka bootstrap).
    #[arg(long)]
    broker: String,
    /// The gateway's client address (`ws://HOST:PORT`); without it, consume from the broker.
    #[arg(long)]
    gateway: Option<String>,
    /// The gateway's admin address.
    #[arg(long, default_value = "http://127.0.0.1:9101")]
    admin: String,
    /// Bearer token of the gateway's operator API.
    #[arg(long, default_value = "bench")]
    token: String,
    /// Throughput mode: messages produced.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Latency mode: messages per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Latency mode: time at `--rate` before measuring.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Latency mode: time measured.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Kafka consumer property `KEY=VALUE` (repeatable), set on the direct consumer and on the
    /// gateway's `kafka` datasource alike, e.g. `fetch.wait.max.ms=10`.
    #[arg(long = "kafka-set")]
    kafka_set: Vec<String>,
    /// Processes whose CPU time over the run is reported, as `name=pid,...`.
    #[arg(long, default_value = "")]
    pids: String,
}

/// The upstream payload of trade `id`: the demo `match` event (as `tests/common/trades.rs`
/// builds it) with a `pad` field the mapper ignores, 200 bytes in all.
fn payload(id: u64) -> Bytes {
    let head = format!(
        "{{\"type\":\"match\",\"symbol\":\"BTCUSDT\",\"ts_us\":{},\"taker_order_id\":{},\
         \"taker_side\":\"BUY\",\"fills\":[{{\"trade_id\":{id},\"agg_id\":{id},\
         \"price\":\"1.00000000\",\"qty\":\"1.00000000\",\"maker_order_id\":{}}}]",
        1_767_000_000_000_000u64 + id,
        90_000 + id,
        80_000 + id
    );
    let fixed = head.len() + ",\"pad\":\"\"}".len();
    let pad = "x".repeat(PAYLOAD_BYTES.saturating_sub(fixed));
    Bytes::from(format!("{head},\"pad\":\"{pad}\"}}"))
}

/// The number after `key` in a JSON text (`"t":` in a trade, `"trade_id":` in a payload).
fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let start = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = text[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&text[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

/// What the receiver saw: a trade id and when.
type Seen = (u64, Instant);

// ---------------------------------------------------------------------------------------------
// Producers

/// A broker client producing trades, with acknowledgements awaited off the send path.
enum Producer {
    Redis(redis::aio::MultiplexedConnection),
    Nats(async_nats::Client),
    Jetstream(
        async_nats::jetstream::Context,
        mpsc::UnboundedSender<async_nats::jetstream::context::PublishAckFuture>,
        tokio::task::JoinHandle<u64>,
    ),
    Kafka(
        FutureProducer,
        mpsc::UnboundedSender<DeliveryFuture>,
        tokio::task::JoinHandle<u64>,
    ),
}

impl Producer {
    async fn connect(source: Source, broker: &str, bulk: bool) -> Result<Producer> {
        Ok(match source {
            Source::Redis => {
                let client = redis::Client::open(broker)?;
                Producer::Redis(client.get_multiplexed_async_connection().await?)
            }
            Source::Nats => Producer::Nats(async_nats::connect(broker).await?),
            Source::Jetstream => {
                let client = async_nats::connect(broker).await?;
                let js = async_nats::jetstream::new(client);
                let _ = js.delete_stream(JS_STREAM).await;
                js.create_stream(async_nats::jetstream::stream::Config {
                    name: JS_STREAM.to_string(),
                    subjects: vec![SUBJECTS.to_string()],
                    storage: async_nats::jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .context("creating the JetStream stream")?;
                let (tx, mut rx) =
                    mpsc::unbounded_channel::<async_nats::jetstream::context::PublishAckFuture>();
                let drain = tokio::spawn(async move {
                    let mut failed = 0;
                    while let Some(ack) = rx.recv().await {
                        if ack.await.is_err() {
                            failed += 1;
                        }
                    }
                    failed
                });
                Producer::Jetstream(js, tx, drain)
            }
            Source::Kafka => {
                let producer: FutureProducer = ClientConfig::new()
                    .set("bootstrap.servers", broker)
                    .set("linger.ms", if bulk { "5" } else { "0" })
                    .set("queue.buffering.max.messages", "1000000")
                    .set("message.timeout.ms", "60000")
                    .create()
                    .context("kafka producer")?;
                let (tx, mut rx) = mpsc::unbounded_channel::<DeliveryFuture>();
                let drain = tokio::spawn(async move {
                    let mut failed = 0;
                    while let Some(delivery) = rx.recv().await {
                        if !matches!(delivery.await, Ok(Ok(_))) {
                            failed += 1;
                        }
                    }
                    failed
                });
                Producer::Kafka(producer, tx, drain)
            }
        })
    }

    /// Hands trade `id` to the broker client (Redis: and waits for the reply).
    async fn send(&mut self, id: u64) -> Result<()> {
        let body = payload(id);
        match self {
            Producer::Redis(conn) => {
                redis::cmd("XADD")
                    .arg(STREAM)
                    .arg("*")
                    .arg("key")
                    .arg("BTCUSDT")
                    .arg("payload")
                    .arg(body.as_ref())
                    .query_async::<()>(conn)
                    .await?
            }
            Producer::Nats(client) => client.publish(SUBJECT, body).await?,
            Producer::Jetstream(js, acks, _) => {
                let ack = js.publish(SUBJECT, body).await?;
                let _ = acks.send(ack);
            }
            Producer::Kafka(producer, deliveries, _) => {
                let mut record = FutureRecord::to(STREAM).key("BTCUSDT").payload(&body[..]);
                loop {
                    match producer.send_result(record) {
                        Ok(delivery) => {
                            let _ = deliveries.send(delivery);
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            record = r;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err((e, _)) => bail!("producing trade {id}: {e}"),
                    }
                }
            }
        }
        Ok(())
    }

    /// Trades `ids` as fast as the broker takes them (Redis: pipelines of 1,000).
    async fn send_all(&mut self, ids: std::ops::RangeInclusive<u64>) -> Result<()> {
        if let Producer::Redis(conn) = self {
            let (first, last) = (*ids.start(), *ids.end());
            let mut from = first;
            while from <= last {
                let to = (from + 999).min(last);
                let mut pipe = redis::pipe();
                for id in from..=to {
                    pipe.cmd("XADD")
                        .arg(STREAM)
                        .arg("*")
                        .arg("key")
                        .arg("BTCUSDT")
                        .arg("payload")
                        .arg(payload(id).as_ref())
                        .ignore();
                }
                pipe.query_async::<()>(conn).await?;
                from = to + 1;
            }
            return Ok(());
        }
        for id in ids {
            self.send(id).await?;
        }
        Ok(())
    }

    /// Waits until everything sent is acknowledged by the broker; returns the failures.
    async fn finish(self) -> Result<u64> {
        Ok(match self {
            Producer::Redis(_) => 0,
            Producer::Nats(client) => {
                client.flush().await?;
                0
            }
            Producer::Jetstream(_, acks, drain) => {
                drop(acks);
                drain.await?
            }
            Producer::Kafka(producer, deliveries, drain) => {
                drop(deliveries);
                let failed = drain.await?;
                drop(producer);
                failed
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Receivers

/// One WebSocket client on `/ws/btcusdt@trade`, connected (and so subscribed) on return.
async fn gateway_receiver(url: &str, seen: mpsc::UnboundedSender<Seen>) -> Result<()> {
    let url = format!("{}/ws/btcusdt@trade", url.trim_end_matches('/'));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        while let Some(message) = ws.next().await {
            let at = Instant::now();
            match message {
                Ok(Message::Text(text)) => {
                    if let Some(id) = number_after(text.as_bytes(), b"\"t\":") {
                        let _ = seen.send((id, at));
                    }
                }
                Ok(Message::Close(frame)) => {
                    eprintln!("gateway closed the connection: {frame:?}");
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("client error: {e}");
                    break;
                }
            }
        }
    });
    Ok(())
}

/// Consumes the broker directly, as the wsgate source of the same type does; consuming on
/// return (core NATS: subscribed).
async fn broker_receiver(args: &Args, seen: mpsc::UnboundedSender<Seen>) -> Result<()> {
    let broker = args.broker.as_str();
    match args.source {
        Source::Redis => {
            let client = redis::Client::open(broker)?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(STREAM)
                .arg("bench")
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            if let Err(e) = created {
                if e.code() != Some("BUSYGROUP") {
                    return Err(e.into());
                }
            }
            tokio::spawn(async move {
                loop {
                    let reply: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                        redis::cmd("XREADGROUP")
                            .arg("GROUP")
                            .arg("bench")
                            .arg("c1")
                            .arg("COUNT")
                            .arg(BATCH)
                            .arg("BLOCK")
                            .arg(1000)
                            .arg("STREAMS")
                            .arg(STREAM)
                            .arg(">")
                            .query_async(&mut conn)
                            .await;
                    let at = Instant::now();
                    let reply = match reply {
                        Ok(Some(reply)) => reply,
                        Ok(None) => continue,
                        Err(e) => {
                            eprintln!("XREADGROUP: {e}");
                            return;
                        }
                    };
                    let mut ids = Vec::new();
                    for key in reply.keys {
                        for entry in key.ids {
                            if let Some(redis::Value::BulkString(body)) = entry.map.get("payload") {
                                if let Some(id) = number_after(body, b"\"trade_id\":") {
                                    let _ = seen.send((id, at));
                                }
                            }
                            ids.push(entry.id);
                        }
                    }
                    if !ids.is_empty() {
                        let acked: redis::RedisResult<()> = redis::cmd("XACK")
                            .arg(STREAM)
                            .arg("bench")
                            .arg(&ids)
                            .query_async(&mut conn)
                            .await;
                        if let Err(e) = acked {
                            eprintln!("XACK: {e}");
                        }
                    }
                }
            });
        }
        Source::Nats => {
            let client = async_nats::connect(broker).await?;
            let mut subscriber = client.queue_subscribe(SUBJECTS, "bench".into()).await?;
            client.flush().await?;
            tokio::spawn(async move {
                let _client = client;
                while let Some(message) = subscriber.next().await {
                    let at = Instant::now();
                    if let Some(id) = number_after(&message.payload, b"\"trade_id\":") {
                        let _ = seen.send((id, at));
                    }
                }
            });
        }
        Source::Jetstream => {
            use async_nats::jetstream::consumer::{pull, AckPolicy};
            let client = async_nats::connect(broker).await?;
            let js = async_nats::jetstream::new(client);
            let stream = js.get_stream(JS_STREAM).await?;
            let consumer: async_nats::jetstream::consumer::PullConsumer = stream
                .get_or_create_consumer(
                    "bench",
                    pull::Config {
                        durable_name: Some("bench".to_string()),
                        ack_policy: AckPolicy::Explicit,
                        filter_subject: SUBJECTS.to_string(),
                        ..Default::default()
                    },
                )
                .await?;
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(BATCH)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await?;
            tokio::spawn(async move {
                while let Some(message) = messages.next().await {
                    let at = Instant::now();
                    let message = match message {
                        Ok(message) => message,
                        Err(e) => {
                            eprintln!("pulling: {e}");
                            continue;
                        }
                    };
                    if let Some(id) = number_after(&message.payload, b"\"trade_id\":") {
                        let _ = seen.send((id, at));
                    }
                    if let Err(e) = message.ack().await {
                        eprintln!("ack: {e}");
                    }
                }
            });
        }
        Source::Kafka => {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", &args.broker)
                .set("group.id", "bench")
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false");
            for (key, value) in kafka_properties(args)? {
                config.set(key, value);
            }
            let consumer: BaseConsumer = config.create().context("kafka consumer")?;
            consumer.subscribe(&[STREAM])?;
            std::thread::spawn(move || loop {
                let mut polled = 0;
                while polled < BATCH {
                    let timeout = if polled == 0 {
                        Duration::from_millis(100)
                    } else {
                        Duration::ZERO
                    };
                    match consumer.poll(timeout) {
                        Some(Ok(message)) => {
                            let at = Instant::now();
                            if let Some(id) = message
                                .payload()
                                .and_then(|p| number_after(p, b"\"trade_id\":"))
                            {
                                let _ = seen.send((id, at));
                            }
                            polled += 1;
                        }
                        Some(Err(e)) => {
                            eprintln!("kafka poll: {e}");
                            break;
                        }
                        None => break,
                    }
                }
                if polled > 0 {
                    if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
                        eprintln!("kafka commit: {e}");
                    }
                }
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The gateway's datasource, added through the operator API

/// The `--kafka-set` properties.
fn kafka_properties(args: &Args) -> Result<Vec<(String, String)>> {
    args.kafka_set
        .iter()
        .map(|item| {
            let (key, value) = item
                .split_once('=')
                .context("--kafka-set takes KEY=VALUE")?;
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

fn datasource(args: &Args) -> Result<(Value, &'static str)> {
    let broker = args.broker.as_str();
    Ok(match args.source {
        Source::Redis => (
            json!({"version": 1, "type": "redis_stream", "name": "md",
                   "properties": {"url": broker, "streams": [STREAM], "consumer": "bench-1"}}),
            STREAM,
        ),
        Source::Nats => (
            json!({"version": 1, "type": "nats", "name": "md",
                   "properties": {"servers": [broker], "subjects": [SUBJECTS]}}),
            SUBJECTS,
        ),
        Source::Jetstream => (
            json!({"version": 1, "type": "nats", "name": "md",
                   "properties": {"servers": [broker], "subjects": [SUBJECTS],
                                  "jetstream": {"stream": JS_STREAM, "durable": "wsgate"}}}),
            SUBJECTS,
        ),
        Source::Kafka => {
            let mut datasource = json!({"version": 1, "type": "kafka", "name": "md",
                   "properties": {"bootstrap.servers": broker, "group.id": "wsgate-bench",
                                  "topics": [STREAM], "auto.offset.reset": "earliest"}});
            for (key, value) in kafka_properties(args)? {
                datasource["properties"][key] = json!(value);
            }
            (datasource, STREAM)
        }
    })
}

/// Adds the datasource and a `binance_trade` route to the gateway's config.
fn apply_datasource(args: &Args) -> Result<()> {
    let url = format!("{}/api/v1/config", args.admin.trim_end_matches('/'));
    let auth = format!("Bearer {}", args.token);
    let current: Value = ureq::get(&url)
        .header("Authorization", &auth)
        .call()
        .context("GET /api/v1/config")?
        .body_mut()
        .read_json()?;
    let mut config = current["config"].clone();
    let (datasource, upstream) = datasource(args)?;
    config["datasource"] = json!([datasource]);
    config["routes"] = json!([{
        "id": "bench-trades", "version": 1, "data_source": "md", "upstream": [upstream],
        "mappings": [{"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade",
                      "ws_topic": "{symbol}@trade"}]
    }]);
    let body = json!({"config": config, "replaces": current["version"]});
    ureq::put(&url)
        .header("Authorization", &auth)
        .send_json(&body)
        .context("PUT /api/v1/config")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

/// User plus system CPU seconds of each named process so far.
fn cpu_seconds(pids: &[(String, u32)]) -> Vec<f64> {
    let tick = 100.0; // USER_HZ on Linux
    pids.iter()
        .map(|(_, pid)| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the parenthesised command name; utime and stime are 14th and 15th.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
            match (field(11), field(12)) {
                (Some(u), Some(s)) => (u + s) / tick,
                _ => f64::NAN,
            }
        })
        .collect()
}

fn parse_pids(spec: &str) -> Result<Vec<(String, u32)>> {
    let mut pids = vec![("bench".to_string(), std::process::id())];
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let (name, pid) = item.split_once('=').context("--pids takes name=pid,...")?;
        pids.push((name.to_string(), u32::from_str(pid)?));
    }
    Ok(pids)
}

fn cpu_report(pids: &[(String, u32)], before: &[f64], after: &[f64], secs: f64) -> String {
    pids.iter()
        .zip(before.iter().zip(after))
        .map(|((name, _), (b, a))| format!("cpu_{name}={:.0}%", 100.0 * (a - b) / secs))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------

async fn start_receiver(args: &Args, tx: mpsc::UnboundedSender<Seen>) -> Result<()> {
    match &args.gateway {
        Some(url) => {
            gateway_receiver(url, tx).await?;
            let args = args.clone();
            tokio::task::spawn_blocking(move || apply_datasource(&args)).await??;
        }
        None => broker_receiver(args, tx).await?,
    }
    Ok(())
}

impl Args {
    /// The `--kafka-set` properties, as they appear in the result line.
    fn label(&self) -> String {
        self.kafka_set.iter().map(|p| format!("[{p}]")).collect()
    }

    fn path(&self) -> &'static str {
        if self.gateway.is_some() {
            "wsgate"
        } else {
            "broker"
        }
    }
}

/// Publishes probe trade 0 until the receiver sees one: the path is live end to end.
async fn wait_live(producer: &mut Producer, rx: &mut mpsc::UnboundedReceiver<Seen>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        producer.send(0).await?;
        if let Producer::Nats(client) = producer {
            client.flush().await?;
        }
        let wait = tokio::time::timeout(Duration::from_millis(100), async {
            while let Some((id, _)) = rx.recv().await {
                if id == 0 {
                    return true;
                }
            }
            false
        });
        if wait.await == Ok(true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no probe message came through within 60 s");
        }
    }
}

async fn throughput(args: &Args, pids: &[(String, u32)]) -> Result<String> {
    let n = args.messages;
    let mut producer = Producer::connect(args.source, &args.broker, true).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Seen>();
    let produce;
    let started;
    if args.source != Source::Nats {
        // Everything is stored before anything consumes it.
        let start = Instant::now();
        producer.send_all(1..=n).await?;
        let failed = producer.finish().await?;
        let secs = start.elapsed().as_secs_f64();
        produce = format!(
            " produce_rate={:.0}/s produce_failed={failed}",
            n as f64 / secs
        );
        eprintln!("produced {n} messages in {secs:.2} s");
        started = Instant::now();
        start_receiver(args, tx).await?;
    } else {
        // Core NATS keeps nothing: publish as fast as possible once the path is live.
        start_receiver(args, tx).await?;
        wait_live(&mut producer, &mut rx).await?;
        started = Instant::now();
        producer.send_all(1..=n).await?;
        producer.finish().await?;
        let secs = started.elapsed().as_secs_f64();
        produce = format!(" produce_rate={:.0}/s", n as f64 / secs);
    }

    let mut got = vec![false; n as usize + 1];
    let (mut received, mut distinct, mut dups, mut reordered) = (0u64, 0u64, 0u64, 0u64);
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    let mut cpu_first = Vec::new();
    let mut previous = 0u64;
    loop {
        let idle = if first.is_some() {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(120)
        };
        let Ok(Some((id, at))) = tokio::time::timeout(idle, rx.recv()).await else {
            break;
        };
        if id == 0 || id > n {
            continue;
        }
        received += 1;
        if first.is_none() {
            first = Some(at);
            cpu_first = cpu_seconds(pids);
        }
        last = Some(at);
        if id != previous + 1 {
            reordered += 1;
        }
        previous = id;
        if std::mem::replace(&mut got[id as usize], true) {
            dups += 1;
        } else {
            distinct += 1;
        }
        if distinct == n {
            break;
        }
    }
    let cpu_after = cpu_seconds(pids);
    let (Some(first), Some(last)) = (first, last) else {
        bail!("nothing received");
    };
    let span = (last - first).as_secs_f64();
    let total = (last - started).as_secs_f64();
    // CPU while messages flowed (first to last receive).
    let cpu = cpu_report(pids, &cpu_first, &cpu_after, span);
    Ok(format!(
        "RESULT source={:?}{} path={} mode=throughput messages={n} received={received} \
         lost={} dup={dups} out_of_order={reordered} rate={:.0}/s first_to_last={span:.3}s \
         start_to_last={total:.3}s{produce} {cpu}",
        args.source,
        args.label(),
        args.path(),
        n - distinct,
        (received.saturating_sub(1)) as f64 / span,
    ))
}

async fn latency(args: &Args, pids: &[(String, u32)]) -> Result<String> {
    let rate = args.rate;
    let warm = (rate as f64 * args.warmup.as_secs_f64()) as u64;
    let total = warm + (rate as f64 * args.duration.as_secs_f64()) as u64;
    let mut producer = Producer::connect(args.source, &args.broker, false).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Seen>();
    start_receiver(args, tx).await?;
    wait_live(&mut producer, &mut rx).await?;

    // Send instants, ns after `base`, by trade id.
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..=total).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let base = Instant::now();
    let cpu_before = cpu_seconds(pids);
    let producing = {
        let sent = sent.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut late = 0u64;
            for id in 1..=total {
                let due = base + Duration::from_nanos((id - 1) * 1_000_000_000 / rate);
                let now = Instant::now();
                if now < due {
                    tokio::time::sleep_until(due.into()).await;
                } else if now - due > Duration::from_millis(10) {
                    late += 1;
                }
                sent[id as usize]
                    .store((Instant::now() - base).as_nanos() as u64, Ordering::Release);
                producer.send(id).await?;
            }
            let failed = producer.finish().await?;
            done.store(true, Ordering::Release);
            Ok::<_, anyhow::Error>((late, failed))
        })
    };

    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut got = vec![false; total as usize + 1];
    let (mut measured, mut dups, mut reordered, mut previous) = (0u64, 0u64, 0u64, 0u64);
    let mut seen_all = 0u64;
    loop {
        let limit = if done.load(Ordering::Acquire) {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(30)
        };
        let Ok(Some((id, at))) = tokio::time::timeout(limit, rx.recv()).await else {
            break;
        };
        if id == 0 || id > total {
            continue;
        }
        if id != previous + 1 {
            reordered += 1;
        }
        previous = id;
        if std::mem::replace(&mut got[id as usize], true) {
            dups += 1;
            continue;
        }
        seen_all += 1;
        if id > warm {
            let ns = sent[id as usize].load(Ordering::Acquire);
            let us = ((at - base).as_nanos() as u64).saturating_sub(ns) / 1_000;
            histogram.record(us.max(1))?;
            measured += 1;
        }
        if seen_all == total {
            break;
        }
    }
    let cpu_after = cpu_seconds(pids);
    let (late, failed) = producing.await??;
    let lost = (total - warm) - measured;
    let cpu = cpu_report(
        pids,
        &cpu_before,
        &cpu_after,
        (Instant::now() - base).as_secs_f64(),
    );
    let q = |p: f64| histogram.value_at_quantile(p) as f64 / 1000.0;
    Ok(format!(
        "RESULT source={:?}{} path={} mode=latency rate={rate}/s warmup={:?} measured_window={:?} \
         sent={} measured={measured} lost={lost} dup={dups} out_of_order={reordered} \
         p50={:.3}ms p90={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms \
         producer_late_10ms={late} produce_failed={failed} {cpu}",
        args.source,
        args.label(),
        args.path(),
        args.warmup,
        args.duration,
        total - warm,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        histogram.max() as f64 / 1000.0,
    ))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let pids = parse_pids(&args.pids)?;
    let line = match args.mode {
        Mode::Throughput => throughput(&args, &pids).await?,
        Mode::Latency => latency(&args, &pids).await?,
    };
    println!("{line}");
    // Receivers and broker clients run on; the result is out.
    std::process::exit(0);
}
