//! One client connection: a single task that reads control messages, writes queued frames,
//! keeps the connection alive and closes it with the right code.
//!
//! The task owns the socket and waits on four things at once: the socket becoming readable, the
//! socket becoming writable again (only while a write is blocked), the connection's outbox
//! receiving news, and its single timer (next ping, pong deadline or end of life). Reads go
//! through a stack buffer, so an idle connection holds no read buffer.

use std::collections::HashSet;
use std::future::poll_fn;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

use super::binance::{looks_like_stream, Format};
use super::frame::{self, ClientFrame, FrameReader};
use super::protocol::{self, close, Request, RequestError, RequestId};
use super::rate::MessageRate;
use super::writer::Writer;
use super::WsContext;
use crate::hub::{Outbox, Topic};
use crate::util::now_us;

/// Bytes read from the socket per `read` call (on the stack, not kept per connection).
const READ_CHUNK: usize = 4096;

/// How a session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// The gateway closes with `code`, after a `serverShutdown` notice if `notice`.
    Close {
        code: u16,
        reason: &'static str,
        notice: bool,
    },
    /// The client sent a close frame (with this code, if any).
    ClientClosed(Option<u16>),
    /// The client's queue overflowed.
    SlowConsumer,
    /// The socket ended without a close handshake.
    Dropped,
}

impl Ending {
    /// The close code this ending is counted under (1005: no code given, 1006: no close frame).
    fn code(&self) -> u16 {
        match *self {
            Ending::Close { code, .. } => code,
            Ending::ClientClosed(code) => code.unwrap_or(1005),
            Ending::SlowConsumer => close::SLOW_CONSUMER,
            Ending::Dropped => 1006,
        }
    }
}

/// A stream the connection is subscribed to.
/// A connection's outbox and URL streams, subscribed before the handshake answer goes out, so
/// a client receives everything published after its connection was accepted.
pub struct Subscriptions {
    outbox: Arc<Outbox>,
    subscribed: Vec<Subscribed>,
}

impl Subscriptions {
    /// A new connection's outbox, subscribed to `streams`.
    pub fn new(ctx: &WsContext, streams: Vec<Arc<Topic>>) -> Self {
        let outbox = Outbox::new(ctx.next_connection_id(), ctx.settings.outbox_bytes);
        let subscribed = streams
            .into_iter()
            .filter(|topic| topic.subscribe(&outbox))
            .map(Subscribed::Live)
            .collect();
        Subscriptions { outbox, subscribed }
    }

    /// Undoes the subscriptions of a connection that never became a session.
    pub fn abandon(self) {
        for subscribed in self.subscribed {
            if let Subscribed::Live(topic) = subscribed {
                topic.unsubscribe(self.outbox.id());
            }
        }
        self.outbox.close();
    }
}

enum Subscribed {
    /// A stream the gateway serves.
    Live(Arc<Topic>),
    /// A well-formed stream no topic serves, accepted silently in compatibility mode.
    Silent(Box<str>),
}

impl Subscribed {
    fn name(&self) -> &str {
        match self {
            Subscribed::Live(topic) => topic.name(),
            Subscribed::Silent(name) => name,
        }
    }
}

/// The state of one connection.
pub struct Session {
    ctx: Arc<WsContext>,
    socket: TcpStream,
    outbox: Arc<Outbox>,
    reader: FrameReader,
    writer: Writer,
    subscribed: Vec<Subscribed>,
    format: Format,
    rate: MessageRate,
    started: Instant,
    next_ping: Instant,
    pong_due: Option<Instant>,
    expires: Instant,
}

impl Session {
    /// A session for an upgraded `socket`; `early` holds bytes the client sent right after the
    /// handshake, `streams` the streams already resolved from the URL.
    pub fn new(
        ctx: Arc<WsContext>,
        socket: TcpStream,
        early: &[u8],
        format: Format,
        subscriptions: Subscriptions,
    ) -> Self {
        let settings = &ctx.settings;
        let started = Instant::now();
        let mut reader = FrameReader::new(settings.max_message_bytes);
        reader.feed(early);
        Session {
            outbox: subscriptions.outbox,
            socket,
            reader,
            writer: Writer::default(),
            subscribed: subscriptions.subscribed,
            format,
            rate: MessageRate::new(settings.messages_per_sec, 1000),
            started,
            next_ping: started + settings.ping_interval,
            pong_due: None,
            expires: started + settings.max_lifetime,
            ctx,
        }
    }

    /// Serves the connection until it ends, then cleans up.
    pub async fn run(mut self) {
        let metrics = Arc::clone(&self.ctx.metrics);
        self.ctx.connections.insert(&self.outbox);
        metrics.connections.inc();
        metrics.connections_opened.inc();
        let ending = self.serve().await;
        metrics
            .closes
            .with_label_values(&[&ending.code().to_string()])
            .inc();
        self.finish(&ending).await;
        for subscribed in self.subscribed.drain(..) {
            if let Subscribed::Live(topic) = subscribed {
                topic.unsubscribe(self.outbox.id());
            }
        }
        self.outbox.close();
        self.ctx.connections.remove(self.outbox.id());
        metrics.connections.dec();
    }

    async fn serve(&mut self) -> Ending {
        let timer = sleep_until(self.next_deadline());
        tokio::pin!(timer);
        loop {
            if self.ctx.connections.shutting_down() {
                return Ending::Close {
                    code: close::GOING_AWAY,
                    reason: "Server shutting down",
                    notice: true,
                };
            }
            if self.writer.data_queue().is_empty() && self.outbox.take_all(self.writer.data_queue())
            {
                return Ending::SlowConsumer;
            }
            let blocked = match self.flush_now() {
                Ok(blocked) => blocked,
                Err(_) => return Ending::Dropped,
            };
            tokio::select! {
                biased;
                _ = &mut timer => {
                    if let Some(ending) = self.on_timer(Instant::now()) {
                        return ending;
                    }
                    timer.as_mut().reset(self.next_deadline());
                }
                readable = poll_fn(|cx| self.socket.poll_read_ready(cx)) => {
                    if readable.is_err() {
                        return Ending::Dropped;
                    }
                    if let Some(ending) = self.on_readable() {
                        return ending;
                    }
                    let deadline = self.next_deadline();
                    if deadline != timer.deadline() {
                        timer.as_mut().reset(deadline);
                    }
                }
                writable = poll_fn(|cx| self.socket.poll_write_ready(cx)), if blocked => {
                    if writable.is_err() {
                        return Ending::Dropped;
                    }
                }
                _ = self.outbox.ready() => {}
            }
        }
    }

    /// Writes what is queued; true if the socket is full.
    fn flush_now(&mut self) -> io::Result<bool> {
        if self.writer.is_empty() {
            return Ok(false);
        }
        let written = self.writer.write_now(&self.socket, self.format)?;
        let metrics = &self.ctx.metrics;
        if written.syscalls > 0 {
            metrics.socket_writes.inc_by(written.syscalls as u64);
        }
        if written.data_frames > 0 {
            metrics.messages_out.inc_by(written.data_frames as u64);
        }
        if let Some(published) = written.oldest_published_us.filter(|_| written.syscalls > 0) {
            let seconds = (now_us() - published).max(0) as f64 / 1e6;
            metrics.delivery_latency.observe(seconds);
        }
        if self.writer.is_empty() {
            self.writer.release_idle_buffers();
        }
        Ok(written.blocked)
    }

    fn next_deadline(&self) -> Instant {
        let mut deadline = self.next_ping.min(self.expires);
        if let Some(due) = self.pong_due {
            deadline = deadline.min(due);
        }
        deadline
    }

    fn on_timer(&mut self, now: Instant) -> Option<Ending> {
        if now >= self.expires {
            return Some(Ending::Close {
                code: close::GOING_AWAY,
                reason: "Connection lifetime reached",
                notice: true,
            });
        }
        if self.pong_due.is_some_and(|due| now >= due) {
            return Some(Ending::Close {
                code: close::POLICY,
                reason: "Pong timeout",
                notice: false,
            });
        }
        if now >= self.next_ping {
            let stamp = (now_us() / 1000).to_string();
            self.writer.push_own(frame::ping(stamp.as_bytes()));
            self.pong_due
                .get_or_insert(now + self.ctx.settings.pong_timeout);
            self.next_ping = now + self.ctx.settings.ping_interval;
        }
        None
    }

    fn on_readable(&mut self) -> Option<Ending> {
        match self.read_available() {
            Ok(true) => return Some(Ending::Dropped),
            Ok(false) => {}
            Err(_) => return Some(Ending::Dropped),
        }
        loop {
            let frame = match self.reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    return Some(Ending::Close {
                        code: e.close_code(),
                        reason: "Invalid frame",
                        notice: false,
                    })
                }
            };
            if let Some(ending) = self.on_frame(frame) {
                return Some(ending);
            }
        }
        self.reader.release_idle_buffers();
        None
    }

    /// Reads what the socket has; true at end of stream.
    fn read_available(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; READ_CHUNK];
        // A few chunks per wake-up: enough for any burst the message budget allows.
        for _ in 0..16 {
            match self.socket.try_read(&mut chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    self.reader.feed(&chunk[..n]);
                    if n < READ_CHUNK {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    fn on_frame(&mut self, frame: ClientFrame) -> Option<Ending> {
        if let ClientFrame::Close(close) = frame {
            return Some(Ending::ClientClosed(close.map(|(code, _)| code)));
        }
        self.ctx.metrics.client_messages.inc();
        let elapsed_ms = self.started.elapsed().as_millis().min(u32::MAX as u128) as u32;
        if !self.rate.admit(elapsed_ms) {
            return Some(Ending::Close {
                code: close::POLICY,
                reason: "Too many requests",
                notice: false,
            });
        }
        match frame {
            ClientFrame::Text(text) => self.on_text(&text),
            ClientFrame::Binary(_) => Some(Ending::Close {
                code: close::UNSUPPORTED,
                reason: "Binary frames are not supported",
                notice: false,
            }),
            ClientFrame::Ping(payload) => {
                self.writer.push_own(frame::pong(&payload));
                None
            }
            ClientFrame::Pong(_) => {
                self.pong_due = None;
                None
            }
            ClientFrame::Close(_) => unreachable!("handled above"),
        }
    }

    fn on_text(&mut self, text: &Bytes) -> Option<Ending> {
        let text = std::str::from_utf8(text).expect("the frame reader validated UTF-8");
        let reply = protocol::parse(text).and_then(|(request, id)| {
            let result = self.execute(request, &id)?;
            Ok(protocol::result_json(&result, &id))
        });
        match reply {
            Ok(json) => {
                self.writer.push_own(frame::text(&[json.as_bytes()]));
                None
            }
            Err(error) => {
                self.ctx
                    .metrics
                    .client_errors
                    .with_label_values(&[&error.code.to_string()])
                    .inc();
                self.writer
                    .push_own(frame::text(&[protocol::error_json(&error).as_bytes()]));
                error.closes_connection().then_some(Ending::Close {
                    code: close::POLICY,
                    reason: "Invalid JSON",
                    notice: false,
                })
            }
        }
    }

    /// Carries out a request; returns the `result` JSON.
    fn execute(&mut self, request: Request, id: &RequestId) -> Result<String, RequestError> {
        match request {
            Request::Subscribe(streams) => self.subscribe(streams, id).map(|_| "null".into()),
            Request::Unsubscribe(streams) => {
                self.unsubscribe(&streams, id)?;
                Ok("null".into())
            }
            Request::ListSubscriptions => {
                let names: Vec<&str> = self.subscribed.iter().map(Subscribed::name).collect();
                Ok(serde_json::to_string(&names).expect("strings serialize"))
            }
            Request::SetCombined(combined) => {
                self.format.combined = combined;
                Ok("null".into())
            }
            Request::GetCombined => Ok(self.format.combined.to_string()),
        }
    }

    fn subscribe(&mut self, streams: Vec<String>, id: &RequestId) -> Result<(), RequestError> {
        let invalid = |msg: &str| RequestError {
            id: Some(id.get().to_string()),
            code: 2,
            msg: format!("Invalid request: {msg}"),
        };
        let current: HashSet<&str> = self.subscribed.iter().map(Subscribed::name).collect();
        let mut seen = HashSet::new();
        let mut added = Vec::new();
        for name in streams {
            if !looks_like_stream(&name) {
                return Err(invalid("invalid stream"));
            }
            if current.contains(name.as_str()) || !seen.insert(name.clone()) {
                continue;
            }
            match self.ctx.hub.topic(&name) {
                Some(topic) => added.push(Subscribed::Live(topic)),
                None if self.ctx.settings.accept_unknown_streams => {
                    added.push(Subscribed::Silent(name.into_boxed_str()))
                }
                None => return Err(invalid("invalid stream")),
            }
        }
        if self.subscribed.len() + added.len() > self.ctx.settings.max_streams {
            return Err(invalid("too many streams"));
        }
        for subscribed in added {
            if let Subscribed::Live(topic) = &subscribed {
                topic.subscribe(&self.outbox);
            }
            self.subscribed.push(subscribed);
        }
        Ok(())
    }

    fn unsubscribe(&mut self, streams: &[String], id: &RequestId) -> Result<(), RequestError> {
        if streams.iter().any(|name| !looks_like_stream(name)) {
            return Err(RequestError {
                id: Some(id.get().to_string()),
                code: 2,
                msg: "Invalid request: invalid stream".into(),
            });
        }
        let remove: HashSet<&str> = streams.iter().map(String::as_str).collect();
        let outbox_id = self.outbox.id();
        self.subscribed.retain(|subscribed| {
            let keep = !remove.contains(subscribed.name());
            if let (false, Subscribed::Live(topic)) = (keep, subscribed) {
                topic.unsubscribe(outbox_id);
            }
            keep
        });
        Ok(())
    }

    /// Sends the closing frames and waits (briefly) for the client's.
    async fn finish(&mut self, ending: &Ending) {
        let grace = self.ctx.settings.close_grace;
        match *ending {
            Ending::Close {
                code,
                reason,
                notice,
            } => {
                self.writer.discard_data();
                if notice {
                    self.writer.push_own(self.format.server_shutdown(now_us()));
                }
                self.writer.push_own(frame::close(code, reason));
                let deadline = Instant::now() + grace;
                if self.flush_until(deadline).await {
                    self.await_client_close(deadline).await;
                }
            }
            Ending::ClientClosed(code) => {
                self.writer.discard_data();
                let echo = code.unwrap_or(close::NORMAL);
                self.writer.push_own(frame::close(echo, ""));
                self.flush_until(Instant::now() + grace).await;
            }
            Ending::SlowConsumer => {
                self.writer.discard_data();
                self.writer
                    .push_own(frame::close(close::SLOW_CONSUMER, "Slow consumer"));
                let _ = self.flush_now();
            }
            Ending::Dropped => {}
        }
    }

    /// Writes everything queued, waiting at most until `deadline`; true if all went out.
    async fn flush_until(&mut self, deadline: Instant) -> bool {
        loop {
            match self.flush_now() {
                Ok(false) => return true,
                Ok(true) => {}
                Err(_) => return false,
            }
            tokio::select! {
                writable = poll_fn(|cx| self.socket.poll_write_ready(cx)) => if writable.is_err() { return false },
                _ = sleep_until(deadline) => return false,
            }
        }
    }

    /// Waits for the client's close frame or end of stream, at most until `deadline`.
    async fn await_client_close(&mut self, deadline: Instant) {
        loop {
            tokio::select! {
                readable = poll_fn(|cx| self.socket.poll_read_ready(cx)) => {
                    if readable.is_err() || !matches!(self.read_available(), Ok(false)) {
                        return;
                    }
                    loop {
                        match self.reader.next_frame() {
                            Ok(Some(ClientFrame::Close(_))) | Err(_) => return,
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                        }
                    }
                }
                _ = sleep_until(deadline) => return,
            }
        }
    }
}
