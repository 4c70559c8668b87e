//! One client connection: bind, connect, handshake (TLS for `wss://`, then WebSocket),
//! subscribe (with retries), then read events until the peer closes, timing each one and
//! checking its sequence.
//!
//! A connection's code is generic over its byte stream ([`Dial`]): a `ws://` connection runs
//! on the bare `TcpStream`, with nothing between tungstenite and the socket.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::args::SubscribeMode;
use crate::event::{Event, Fields};
use crate::gap::{GapTracker, SeqKind};
use crate::hashkey::{self, Push};
use crate::plan::{ConnPlan, Target};
use crate::stats::{Phase, Stats};
use crate::sys::now_us;
use crate::tls::TlsDialer;

/// Event times below this are taken to be milliseconds, not microseconds (year 5138 in ms).
const MS_STAMP_LIMIT: u64 = 100_000_000_000_000;

/// Settings shared by every connection of a process.
pub struct ConnCtx {
    /// Gateway endpoints.
    pub targets: Vec<Target>,
    /// Subscription method.
    pub mode: SubscribeMode,
    /// Connect attempts before giving up.
    pub retries: u32,
    /// Timeout of one attempt (connect + handshake + subscribe).
    pub timeout: Duration,
    /// Turns to be connecting (`--max-connecting`), if limited.
    pub connecting: Option<Arc<Semaphore>>,
    /// Shared counters.
    pub stats: Arc<Stats>,
}

/// Makes a connection's byte stream from its TCP socket.
pub trait Dial: Send + Sync + 'static {
    /// The stream tungstenite reads and writes.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Starts the stream over a connected socket (TLS: runs the handshake).
    fn dial(&self, tcp: TcpStream) -> impl Future<Output = Result<Self::Io>> + Send;
}

/// `ws://`: the socket itself.
pub struct Plain;

impl Dial for Plain {
    type Io = TcpStream;

    async fn dial(&self, tcp: TcpStream) -> Result<TcpStream> {
        Ok(tcp)
    }
}

/// `wss://`: TLS over the socket.
impl Dial for TlsDialer {
    type Io = TlsStream<TcpStream>;

    async fn dial(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>> {
        self.connect(tcp).await
    }
}

/// Starts one connection's task on the current runtime, on its target's kind of stream.
pub fn spawn(plan: ConnPlan, ctx: &Arc<ConnCtx>) {
    match ctx.targets[plan.target].tls.clone() {
        None => tokio::spawn(run(plan, Arc::clone(ctx), Plain)),
        Some(tls) => tokio::spawn(run(plan, Arc::clone(ctx), tls)),
    };
}

/// Runs one connection to completion.
async fn run<D: Dial>(plan: ConnPlan, ctx: Arc<ConnCtx>, dial: D) {
    let stats = &ctx.stats;
    let mut attempt = 0;
    let ws = loop {
        attempt += 1;
        let turn = match &ctx.connecting {
            Some(turns) => Some(Arc::clone(turns).acquire_owned().await),
            None => None,
        };
        match tokio::time::timeout(ctx.timeout, establish(&plan, &ctx, &dial)).await {
            Ok(Ok(ws)) => break Some(ws),
            Ok(Err(e)) => stats.connect_error(classify(&e)),
            Err(_) => stats.connect_error("timeout".into()),
        }
        drop(turn);
        if attempt >= ctx.retries.max(1) {
            break None;
        }
        let backoff = 200u64 << (attempt - 1).min(5);
        let jitter = plan.id.wrapping_mul(7919) % 100;
        tokio::time::sleep(Duration::from_millis(backoff.min(5_000) + jitter)).await;
    };
    stats.settled.fetch_add(1, Relaxed);
    let Some(ws) = ws else {
        stats.failed.fetch_add(1, Relaxed);
        return;
    };
    let reason = read_loop(ws, &plan, &ctx).await;
    stats.subscribed.fetch_sub(1, Relaxed);
    stats.connected.fetch_sub(1, Relaxed);
    stats.closed(reason);
}

/// One attempt: on success the connection counts as connected and subscribed.
async fn establish<D: Dial>(
    plan: &ConnPlan,
    ctx: &ConnCtx,
    dial: &D,
) -> Result<WebSocketStream<D::Io>> {
    let target = &ctx.targets[plan.target];
    let tcp = tcp_connect(target.addr, plan.source).await?;
    let io = dial.dial(tcp).await?;
    let url = target.request_url(ctx.mode, &plan.streams);
    let config = WebSocketConfig::default().read_buffer_size(8192);
    let (mut ws, _resp) =
        tokio_tungstenite::client_async_with_config(url.as_str(), io, Some(config)).await?;
    // Counts as connected while subscribing; undone if subscribing fails or times out
    // (the timeout drops this future mid-await).
    let connected = Gauge::up(&ctx.stats.connected);
    match ctx.mode {
        SubscribeMode::Message => subscribe(&mut ws, plan).await?,
        SubscribeMode::Hashkey => hashkey::subscribe(&mut ws, &plan.streams).await?,
        SubscribeMode::Url | SubscribeMode::Raw => {}
    }
    connected.keep();
    ctx.stats.subscribed.fetch_add(1, Relaxed);
    Ok(ws)
}

/// Increments a counter now and decrements it on drop unless kept.
struct Gauge<'a>(Option<&'a AtomicU64>);

impl<'a> Gauge<'a> {
    fn up(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Relaxed);
        Gauge(Some(counter))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.fetch_sub(1, Relaxed);
        }
    }
}

/// Opens a TCP connection, bound to `source` if given. The port is chosen at connect time
/// (`IP_BIND_ADDRESS_NO_PORT`), so each (source, destination) pair has its own port range.
async fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a socket we own with a pointer to a live c_int.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error()).context("IP_BIND_ADDRESS_NO_PORT");
        }
        sock.bind(&SocketAddr::new(ip, 0).into())
            .with_context(|| format!("bind {ip}"))?;
    }
    let std_stream: std::net::TcpStream = sock.into();
    Ok(TcpSocket::from_std_stream(std_stream).connect(addr).await?)
}

/// Sends `SUBSCRIBE` and waits for `{"result":null,"id":<id>}`.
async fn subscribe<S>(ws: &mut WebSocketStream<S>, plan: &ConnPlan) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let req = serde_json::json!({
        "method": "SUBSCRIBE",
        "params": plan.streams.iter().map(|s| &**s).collect::<Vec<_>>(),
        "id": plan.id,
    });
    ws.send(Message::text(req.to_string())).await?;
    while let Some(msg) = ws.next().await {
        let text = match msg? {
            Message::Text(t) => t,
            Message::Ping(_) => {
                ws.flush().await?;
                continue;
            }
            Message::Close(f) => bail!("closed {}", close_code(f.as_ref())),
            _ => continue,
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
            continue;
        };
        if v.get("id").and_then(|i| i.as_u64()) != Some(plan.id) {
            continue; // an event that raced ahead of the reply
        }
        if v.get("result").is_some_and(|r| r.is_null()) {
            return Ok(());
        }
        bail!("subscribe rejected: {text}");
    }
    Err(anyhow!("closed before SUBSCRIBE reply"))
}

/// Reads until the connection ends; returns the close code or failure reason. A HashKey
/// connection also sends a JSON ping every [`hashkey::PING_EVERY`].
async fn read_loop<S>(mut ws: WebSocketStream<S>, plan: &ConnPlan, ctx: &ConnCtx) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut table = StreamTable::new(&plan.streams);
    let mode = ctx.mode;
    let pings = mode == SubscribeMode::Hashkey;
    let start = tokio::time::Instant::now() + hashkey::PING_EVERY;
    let mut ping = tokio::time::interval_at(start, hashkey::PING_EVERY);
    let mut counted_receiving = false;
    loop {
        let next = if pings {
            tokio::select! {
                next = ws.next() => next,
                _ = ping.tick() => {
                    let text = format!("{{\"ping\":{}}}", now_us() / 1000);
                    if let Err(e) = ws.send(Message::text(text)).await {
                        return classify(&e.into());
                    }
                    continue;
                }
            }
        } else {
            ws.next().await
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return classify(&e.into()),
            None => return "eof".into(),
        };
        let data = match msg {
            Message::Text(t) => on_event(t.as_bytes(), mode, &mut table, &ctx.stats),
            Message::Binary(b) => on_event(&b, mode, &mut table, &ctx.stats),
            Message::Ping(_) => {
                // tungstenite queued the pong; push it out now.
                if let Err(e) = ws.flush().await {
                    return classify(&e.into());
                }
                false
            }
            Message::Close(f) => {
                let _ = ws.flush().await; // send the close reply
                return close_code(f.as_ref());
            }
            Message::Pong(_) | Message::Frame(_) => false,
        };
        if data && !counted_receiving && ctx.stats.phase() == Phase::Measure {
            counted_receiving = true;
            ctx.stats.receiving.fetch_add(1, Relaxed);
        }
    }
}

/// Times and sequence-checks one frame; true when it was a data event of a stream.
fn on_event(bytes: &[u8], mode: SubscribeMode, table: &mut StreamTable, stats: &Stats) -> bool {
    let now = now_us();
    if mode == SubscribeMode::Hashkey {
        return on_push(bytes, now, table, stats);
    }
    let Ok(ev) = Event::parse(bytes) else {
        stats.bad_msg();
        return false;
    };
    let f = ev.fields;
    let raw = mode == SubscribeMode::Raw;
    let tracker = match (&ev.stream, raw) {
        (Some(name), _) => match table.get(name) {
            Some(t) => t,
            None => {
                stats.unknown_stream();
                return false;
            }
        },
        (None, true) => table.first(),
        // Control replies (`{"result":..,"id":..}`) and other frames without a stream.
        (None, false) if f.event_time.is_none() => return false,
        (None, false) => {
            stats.unknown_stream();
            return false;
        }
    };
    record(tracker, f, now, stats);
    true
}

/// [`on_event`] for a HashKey frame: pushes name their stream by `params.symbol` and `topic`;
/// replies and pongs carry no `data`.
fn on_push(bytes: &[u8], now: u64, table: &mut StreamTable, stats: &Stats) -> bool {
    let Ok(push) = Push::parse(bytes) else {
        stats.bad_msg();
        return false;
    };
    if !push.data {
        return false;
    }
    let mut buf = [0; hashkey::MAX_NAME];
    let name = match (&push.symbol, &push.topic) {
        (Some(symbol), Some(topic)) => hashkey::stream_name(symbol, topic, &mut buf),
        _ => None,
    };
    match name.and_then(|n| table.get(n)) {
        Some(tracker) => record(tracker, push.fields, now, stats),
        None => {
            stats.unknown_stream();
            return false;
        }
    }
    true
}

/// Checks an event's id against its stream's tracker and records its latency at `now` (µs).
fn record(tracker: &mut GapTracker, f: Fields, now: u64, stats: &Stats) {
    let verdict = match tracker.kind() {
        SeqKind::Trade => f.trade_id.map(|t| tracker.observe_id(t)),
        SeqKind::AggTrade => f.agg_id.map(|a| tracker.observe_id(a)),
        SeqKind::DiffDepth => match (f.first_update, f.last_update) {
            (Some(first), Some(last)) => Some(tracker.observe_range(first, last)),
            _ => None,
        },
        SeqKind::Unchecked => None,
    }
    .unwrap_or_default();
    let latency = match f.event_time {
        None => {
            stats.no_stamp();
            None
        }
        Some(e) if e < MS_STAMP_LIMIT => {
            stats.ms_stamp();
            None
        }
        Some(e) if e > now => {
            stats.future_stamp();
            Some(1)
        }
        Some(e) => Some(now - e),
    };
    stats.record_event(latency, verdict);
}

/// The gap trackers of one connection, looked up by stream name.
struct StreamTable {
    entries: Vec<(Arc<str>, GapTracker)>,
    index: Option<HashMap<Arc<str>, usize>>,
}

impl StreamTable {
    fn new(streams: &[Arc<str>]) -> Self {
        let entries: Vec<_> = streams
            .iter()
            .map(|s| (s.clone(), GapTracker::new(SeqKind::of(s))))
            .collect();
        let index = (entries.len() > 8).then(|| {
            entries
                .iter()
                .enumerate()
                .map(|(i, (s, _))| (s.clone(), i))
                .collect()
        });
        StreamTable { entries, index }
    }

    fn get(&mut self, name: &str) -> Option<&mut GapTracker> {
        let i = match &self.index {
            Some(map) => *map.get(name)?,
            None => self.entries.iter().position(|(s, _)| &**s == name)?,
        };
        Some(&mut self.entries[i].1)
    }

    fn first(&mut self) -> &mut GapTracker {
        &mut self.entries[0].1
    }
}

/// Close code of a close frame (`1005` when the frame had none).
pub(crate) fn close_code(
    f: Option<&tokio_tungstenite::tungstenite::protocol::CloseFrame>,
) -> String {
    f.map(|f| u16::from(f.code).to_string())
        .unwrap_or_else(|| "1005".into())
}

/// Short, aggregatable reason for a failure.
fn classify(e: &anyhow::Error) -> String {
    if let Some(ws) = e.downcast_ref::<WsError>() {
        return match ws {
            WsError::Io(io) => io_kind(io),
            WsError::Http(resp) => format!("http {}", resp.status().as_u16()),
            WsError::ConnectionClosed | WsError::AlreadyClosed => "closed".into(),
            WsError::Protocol(p) => format!("protocol: {p}"),
            other => format!("ws: {other}"),
        };
    }
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return io_kind(io);
    }
    let s = e.to_string();
    s.chars().take(60).collect()
}

fn io_kind(e: &io::Error) -> String {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "refused".into(),
        ConnectionReset => "reset".into(),
        ConnectionAborted => "aborted".into(),
        TimedOut => "timeout".into(),
        AddrInUse => "addr in use".into(),
        AddrNotAvailable => "addr not available".into(),
        UnexpectedEof | BrokenPipe => "eof".into(),
        _ => match e.raw_os_error() {
            Some(code) => format!("os error {code}"),
            None => format!("{:?}", e.kind()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_timed_and_checked() {
        let stats = Stats::new(1);
        let names: Vec<Arc<str>> = vec!["x@trade".into(), "x@depth@100ms".into()];
        let mut table = StreamTable::new(&names);
        let e = now_us() - 1500;
        let frame = |s: &str, d: &str| format!(r#"{{"stream":"{s}","data":{d}}}"#);
        for t in [1, 2, 4] {
            let f = frame("x@trade", &format!(r#"{{"E":{e},"t":{t}}}"#));
            on_event(f.as_bytes(), SubscribeMode::Url, &mut table, &stats);
        }
        let f = frame("x@depth@100ms", r#"{"E":1700000000000,"U":1,"u":3}"#);
        on_event(f.as_bytes(), SubscribeMode::Url, &mut table, &stats);
        on_event(
            frame("y@trade", "{}").as_bytes(),
            SubscribeMode::Url,
            &mut table,
            &stats,
        );
        on_event(b"garbage", SubscribeMode::Url, &mut table, &stats);
        on_event(
            br#"{"result":null,"id":3}"#,
            SubscribeMode::Url,
            &mut table,
            &stats,
        );
        let s = stats.snapshot(false);
        assert_eq!(s.total.msgs, 4);
        assert_eq!((s.total.lost, s.total.gaps), (1, 1));
        assert_eq!(s.anomalies.ms_stamps, 1);
        assert_eq!(s.anomalies.unknown_stream, 1);
        assert_eq!(s.anomalies.bad_msgs, 1);
        let h = crate::hist::decode_hist(&s.interval_hist);
        assert_eq!(h.len(), 3);
        assert!(h.min() >= 1400, "{}", h.min());
    }

    #[test]
    fn binance_t_is_a_trade_id_outside_hashkey_mode() {
        let names: Vec<Arc<str>> = vec!["btcusdt@trade".into()];
        let e = now_us() - 1500;
        for mode in [
            SubscribeMode::Url,
            SubscribeMode::Message,
            SubscribeMode::Raw,
        ] {
            let stats = Stats::new(1);
            let mut table = StreamTable::new(&names);
            for t in [5001, 5002, 5005] {
                let data = format!(r#"{{"e":"trade","E":{e},"t":{t},"p":"1","q":"1"}}"#);
                let f = match mode {
                    SubscribeMode::Raw => data,
                    _ => format!(r#"{{"stream":"btcusdt@trade","data":{data}}}"#),
                };
                assert!(on_event(f.as_bytes(), mode, &mut table, &stats));
            }
            let s = stats.snapshot(false);
            assert_eq!((s.total.msgs, s.total.lost), (3, 2), "{mode:?}");
            assert_eq!(s.anomalies.ms_stamps, 0, "{mode:?}");
        }
    }

    #[test]
    fn hashkey_pushes_are_timed_and_checked() {
        let stats = Stats::new(1);
        let names: Vec<Arc<str>> = vec!["btcusdt@trade".into(), "ethusdt@trade".into()];
        let mut table = StreamTable::new(&names);
        let t = now_us() / 1000 - 2;
        let push = |symbol: &str, v: u64| {
            format!(
                r#"{{"topic":"trade","params":{{"symbol":"{symbol}"}},"data":{{"v":"{v}","t":{t},"p":"1","q":"1","m":true}}}}"#
            )
        };
        let mode = SubscribeMode::Hashkey;
        for v in [7, 8, 10] {
            assert!(on_event(
                push("BTCUSDT", v).as_bytes(),
                mode,
                &mut table,
                &stats
            ));
        }
        assert!(on_event(
            push("ETHUSDT", 3).as_bytes(),
            mode,
            &mut table,
            &stats
        ));
        assert!(!on_event(
            push("SOLUSDT", 1).as_bytes(),
            mode,
            &mut table,
            &stats
        ));
        let reply = br#"{"topic":"trade","event":"sub","params":{"symbol":"BTCUSDT"},"code":"0","msg":"Success"}"#;
        assert!(!on_event(reply, mode, &mut table, &stats));
        assert!(!on_event(
            br#"{"pong":1767000000123}"#,
            mode,
            &mut table,
            &stats
        ));
        assert!(!on_event(b"garbage", mode, &mut table, &stats));
        // A Binance frame has no `params.symbol`: an unknown stream here.
        let binance = br#"{"stream":"btcusdt@trade","data":{"E":1,"t":11}}"#;
        assert!(!on_event(binance, mode, &mut table, &stats));
        let s = stats.snapshot(false);
        assert_eq!(s.total.msgs, 4);
        assert_eq!((s.total.lost, s.total.gaps), (1, 1));
        assert_eq!((s.anomalies.unknown_stream, s.anomalies.bad_msgs), (2, 1));
        assert_eq!(s.anomalies.ms_stamps, 0);
        let h = crate::hist::decode_hist(&s.interval_hist);
        assert_eq!(h.len(), 4);
        assert!(h.min() >= 2000, "{}", h.min());
    }
}
