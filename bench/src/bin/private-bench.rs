//! Benchmarks of wsgate's private side (numbers in docs/benchmarks.md, with their commands).
//!
//! `private-bench orders`: signed `order.place` requests over `/ws-api/v3` at a steady rate, each
//! connection subscribed to its user's data stream; reports the order round trip (request sent →
//! answer) and the fill's arrival (request sent → its `executionReport` TRADE on the user
//! stream). With `--responder NATS_URL` it also runs a stand-in exchange backend answering
//! `wsgate.trade.order.place` at once and publishing the fill upstream, so the whole NATS path is
//! measured; without, the node's own backend answers (the demo exchange in process).
//!
//! `private-bench users`: N users, one connection each, each subscribed to its own events (or,
//! with `--public`, all on one public stream), and events published upstream through NATS at a
//! total rate; reports delivery latency, and the gateway's memory per connection and CPU per
//! delivered event from /proc.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use hmac::Mac;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "wsgate private-side benchmarks")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Order round trip and fill latency over the WebSocket API.
    Orders {
        /// `ws://host:port/ws-api/v3`.
        #[arg(long)]
        url: String,
        /// API key (HMAC, with user-stream and trade).
        #[arg(long, default_value = "wsgate-demo-alice")]
        key: String,
        /// Its secret.
        #[arg(long, default_value = "wsgate-demo-alice-secret")]
        secret: String,
        /// Connections (each subscribed to the key's user data).
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Orders per second, over all connections.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// How long to send.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Run a stand-in backend on this NATS server (answers at once, publishes the fill to
        /// `--fill-subject` as `{"user_id","event"}`).
        #[arg(long)]
        responder: Option<String>,
        /// Where the stand-in backend publishes fills.
        #[arg(long, default_value = "account.events")]
        fill_subject: String,
    },
    /// Private routing cost: N users with one connection each.
    Users {
        /// The node's client address, `host:port`.
        #[arg(long)]
        addr: String,
        /// The node's admin address, `host:port` (keys are created through it).
        #[arg(long)]
        admin: String,
        /// The admin token.
        #[arg(long, default_value = "bench")]
        token: String,
        /// The NATS server the node's source reads.
        #[arg(long)]
        nats: String,
        /// Users (and connections).
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        /// Events per second published upstream, over all users.
        #[arg(long, default_value_t = 5_000.0)]
        rate: f64,
        /// How long to publish.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Everyone on the public stream `public@events` instead (the same deliveries per second:
        /// `rate / users` events per second, each to every connection).
        #[arg(long)]
        public: bool,
        /// Users connect with a listen key (`/ws/<listenKey>`) instead of a WebSocket API
        /// subscription (the node needs `--listen-key-requests-per-ip` above `users`).
        #[arg(long)]
        listen_keys: bool,
        /// The gateway's pid, for memory and CPU.
        #[arg(long)]
        gateway_pid: Option<u32>,
    },
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_micros() as i64
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn summary(h: &Histogram<u64>) -> Value {
    let ms = |q: f64| (h.value_at_quantile(q) as f64 / 1000.0 * 1000.0).round() / 1000.0;
    json!({"count": h.len(), "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99),
           "max_ms": (h.max() as f64 / 1000.0 * 1000.0).round() / 1000.0})
}

/// Signs `params` (HMAC-SHA256 over the sorted `k=v&..`) and adds `signature`.
fn sign(mut params: Value, secret: &str) -> Value {
    let mut pairs: Vec<(String, String)> = params
        .as_object()
        .expect("params are an object")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_string),
            )
        })
        .collect();
    pairs.sort();
    let payload: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(payload.join("&").as_bytes());
    params["signature"] = json!(hex::encode(mac.finalize().into_bytes()));
    params
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `url` and subscribes to `key`'s user data; fails on a refusal.
async fn subscribed(url: &str, key: &str, secret: &str) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .context("connecting")?;
    let params = sign(json!({"apiKey": key, "timestamp": now_us() / 1000}), secret);
    let request =
        json!({"id": "sub", "method": "userDataStream.subscribe.signature", "params": params});
    ws.send(Message::text(request.to_string())).await?;
    while let Some(message) = ws.next().await {
        if let Message::Text(text) = message? {
            let answer: Value = serde_json::from_str(&text)?;
            if answer["id"] == "sub" {
                if answer["status"] != 200 {
                    bail!("subscribe refused: {answer}");
                }
                return Ok(ws);
            }
        }
    }
    bail!("closed before the subscription was answered")
}

/// A stand-in exchange backend: answers every order at once and publishes its fill.
async fn responder(nats: &str, fill_subject: String) -> anyhow::Result<()> {
    let client = async_nats::connect(nats).await?;
    let mut requests = client.subscribe("wsgate.trade.order.place").await?;
    tokio::spawn(async move {
        let mut id = 0u64;
        while let Some(message) = requests.next().await {
            let Ok(request) = serde_json::from_slice::<Value>(&message.payload) else {
                continue;
            };
            id += 1;
            let params = &request["params"];
            let result = json!({"symbol": params["symbol"], "orderId": id,
                                "clientOrderId": params["newClientOrderId"], "status": "FILLED"});
            if let Some(reply) = message.reply {
                let answer = json!({"status": 200, "result": result});
                let _ = client.publish(reply, answer.to_string().into()).await;
            }
            let fill = json!({"user_id": request["user_id"], "event": {
                "e": "executionReport", "E": now_us() / 1000, "s": params["symbol"],
                "c": params["newClientOrderId"], "i": id, "x": "TRADE", "X": "FILLED"}});
            let _ = client
                .publish(fill_subject.clone(), fill.to_string().into())
                .await;
        }
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn orders(
    url: String,
    key: String,
    secret: String,
    connections: usize,
    rate: f64,
    duration: Duration,
    responder_url: Option<String>,
    fill_subject: String,
) -> anyhow::Result<()> {
    if let Some(nats) = &responder_url {
        responder(nats, fill_subject).await?;
    }
    let rtt = Arc::new(Mutex::new(hist()));
    let fill = Arc::new(Mutex::new(hist()));
    let errors = Arc::new(Mutex::new(HashMap::<String, u64>::new()));
    let per_connection = rate / connections as f64;
    let sent_total = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let ws = subscribed(&url, &key, &secret).await?;
        let (mut sink, mut stream) = ws.split();
        let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let (rtt, fill, errors, sent_reader) =
            (rtt.clone(), fill.clone(), errors.clone(), sent.clone());
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(m) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = m["id"].as_str() {
                    let started = sent_reader.lock().get(id).copied();
                    if let Some(started) = started {
                        if m["status"] == 200 {
                            rtt.lock().record(started.elapsed().as_micros() as u64).ok();
                        } else {
                            *errors
                                .lock()
                                .entry(m["error"]["code"].to_string())
                                .or_default() += 1;
                        }
                    }
                } else if m["event"]["x"] == "TRADE" {
                    let id = m["event"]["c"].as_str().unwrap_or_default().to_string();
                    let started = sent_reader.lock().get(&id).copied();
                    if let Some(started) = started {
                        fill.lock()
                            .record(started.elapsed().as_micros() as u64)
                            .ok();
                    }
                }
            }
        });
        let (key, secret, sent_total) = (key.clone(), secret.clone(), sent_total.clone());
        let writer = tokio::spawn(async move {
            let every = Duration::from_secs_f64(1.0 / per_connection);
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let end = Instant::now() + duration;
            let mut n = 0u64;
            while Instant::now() < end {
                ticks.tick().await;
                n += 1;
                let id = format!("o{c}-{n}");
                let params = sign(
                    json!({"apiKey": key, "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                           "quantity": "0.00001", "newClientOrderId": id, "timestamp": now_us() / 1000}),
                    &secret,
                );
                let request = json!({"id": id, "method": "order.place", "params": params});
                sent.lock().insert(id, Instant::now());
                if sink.send(Message::text(request.to_string())).await.is_err() {
                    break;
                }
                sent_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = sink.close().await;
        });
        tasks.push((reader, writer));
    }
    for (reader, writer) in tasks {
        writer.await?;
        reader.abort();
    }
    let report = json!({"orders_per_sec": rate, "connections": connections,
                        "sent": sent_total.load(std::sync::atomic::Ordering::Relaxed),
                        "round_trip": summary(&rtt.lock()), "fill_on_user_stream": summary(&fill.lock()),
                        "errors": *errors.lock()});
    println!("{report}");
    Ok(())
}

/// RSS in bytes and CPU ticks (user + system) of `pid`.
fn proc_stats(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
    (rss_kb * 1024, ticks)
}

/// Creates one HMAC key per user through the admin API: (key, secret) per user.
fn create_keys(admin: &str, token: &str, users: usize) -> anyhow::Result<Vec<(String, String)>> {
    let agent = ureq::Agent::new_with_defaults();
    (0..users)
        .map(|n| {
            let body = json!({"user_id": format!("u{n}"), "permissions": ["user-stream"]});
            let created: Value = agent
                .post(&format!("http://{admin}/api/v1/keys"))
                .header("Authorization", &format!("Bearer {token}"))
                .send_json(&body)?
                .body_mut()
                .read_json()?;
            Ok((
                created["key"].as_str().context("a key")?.to_string(),
                created["secret"].as_str().context("a secret")?.to_string(),
            ))
        })
        .collect()
}

/// How each user's connection takes its events.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Connect {
    /// A WebSocket API `userDataStream.subscribe.signature`.
    WsApi,
    /// `/ws/<listenKey>`.
    ListenKey,
    /// Everyone on one public stream.
    Public,
}

/// A listen key of `api_key`, from the node's REST endpoint.
fn new_listen_key(addr: &str, api_key: &str) -> anyhow::Result<String> {
    let created: Value = ureq::post(&format!("http://{addr}/api/v3/userDataStream"))
        .header("X-MBX-APIKEY", api_key)
        .send_empty()?
        .body_mut()
        .read_json()?;
    Ok(created["listenKey"]
        .as_str()
        .context("a listenKey")?
        .to_string())
}

#[allow(clippy::too_many_arguments)]
async fn users(
    addr: String,
    admin: String,
    token: String,
    nats: String,
    users: usize,
    rate: f64,
    duration: Duration,
    how: Connect,
    gateway_pid: Option<u32>,
) -> anyhow::Result<()> {
    let public = how == Connect::Public;
    let latency = Arc::new(Mutex::new(hist()));
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let keys = if public {
        Vec::new()
    } else {
        create_keys(&admin, &token, users)?
    };
    let listen_keys: Vec<String> = if how == Connect::ListenKey {
        keys.iter()
            .map(|(key, _)| new_listen_key(&addr, key))
            .collect::<anyhow::Result<_>>()?
    } else {
        Vec::new()
    };
    // Measured once the keys exist: what remains is the connections' own memory.
    let before = gateway_pid.map(proc_stats);
    let mut readers = Vec::with_capacity(users);
    for n in 0..users {
        let ws = match (how, keys.get(n), listen_keys.get(n)) {
            (Connect::WsApi, Some((key, secret)), _) => {
                subscribed(&format!("ws://{addr}/ws-api/v3"), key, secret).await?
            }
            (Connect::ListenKey, _, Some(listen_key)) => {
                let url = format!("ws://{addr}/ws/{listen_key}");
                tokio_tungstenite::connect_async_with_config(url, None, true)
                    .await
                    .context("connecting")?
                    .0
            }
            _ => {
                let url = format!("ws://{addr}/ws/public@events");
                tokio_tungstenite::connect_async_with_config(url, None, true)
                    .await
                    .context("connecting")?
                    .0
            }
        };
        let (latency, received) = (latency.clone(), received.clone());
        readers.push(tokio::spawn(async move {
            let (_sink, mut stream) = ws.split();
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(m) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let event = if m.get("event").is_some() {
                    &m["event"]
                } else {
                    &m
                };
                if let Some(sent) = event["T"].as_i64() {
                    latency.lock().record((now_us() - sent).max(1) as u64).ok();
                    received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = gateway_pid.map(proc_stats);
    let client = async_nats::connect(&nats).await?;
    let (subject, per_sec) = if public {
        ("public.events", rate / users as f64)
    } else {
        ("account.events", rate)
    };
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    let per_tick = per_sec / 100.0;
    let (mut owed, mut n) = (0.0, 0usize);
    let end = Instant::now() + duration;
    latency.lock().reset();
    received.store(0, std::sync::atomic::Ordering::Relaxed);
    let cpu_start = gateway_pid.map(proc_stats);
    while Instant::now() < end {
        ticks.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            n += 1;
            let event = json!({"e": "balanceUpdate", "E": now_us() / 1000, "a": "USDT", "d": "1", "T": now_us()});
            let envelope = if public {
                json!({"event": event})
            } else {
                json!({"user_id": format!("u{}", n % users), "event": event})
            };
            client.publish(subject, envelope.to_string().into()).await?;
        }
    }
    client.flush().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_end = gateway_pid.map(proc_stats);
    let delivered = received.load(std::sync::atomic::Ordering::Relaxed);
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let memory = match (before, connected) {
        (Some((b, _)), Some((c, _))) => json!((c as f64 - b as f64) / users as f64),
        _ => Value::Null,
    };
    let cpu = match (cpu_start, cpu_end) {
        (Some((_, s)), Some((_, e))) => {
            let seconds = (e - s) as f64 / ticks_per_sec;
            json!({"cpu_seconds": seconds, "cpu_share": seconds / (duration.as_secs_f64() + 1.0),
                   "cpu_us_per_delivery": seconds * 1e6 / delivered.max(1) as f64})
        }
        _ => Value::Null,
    };
    let report = json!({"mode": format!("{how:?}"), "users": users,
                        "published": n, "delivered": delivered, "latency": summary(&latency.lock()),
                        "rss_bytes_per_connection": memory, "cpu": cpu});
    println!("{report}");
    for reader in readers {
        reader.abort();
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Orders {
            url,
            key,
            secret,
            connections,
            rate,
            duration,
            responder,
            fill_subject,
        } => {
            orders(
                url,
                key,
                secret,
                connections,
                rate,
                duration,
                responder,
                fill_subject,
            )
            .await
        }
        Command::Users {
            addr,
            admin,
            token,
            nats,
            users: n,
            rate,
            duration,
            public,
            listen_keys,
            gateway_pid,
        } => {
            let how = match (public, listen_keys) {
                (true, _) => Connect::Public,
                (false, true) => Connect::ListenKey,
                (false, false) => Connect::WsApi,
            };
            users(
                addr,
                admin,
                token,
                nats,
                n,
                rate,
                duration,
                how,
                gateway_pid,
            )
            .await
        }
    }
}
