//! One client connection: reads the client's frames, writes queued frames, keeps the
//! connection alive and closes it with the right code. It knows no client protocol: text and
//! binary messages go to the connection's [`Conversation`], which answers through a [`Link`],
//! and the dialect chose the heartbeat rule and the words of every close.
//!
//! While it has something to do, the session runs as a task that owns the socket and waits on
//! four things at once: the socket becoming readable, the socket becoming writable again (only
//! while a write is blocked), the connection's outbox receiving news, and its single timer
//! (heartbeat, end of life or a held message's release). Once it has lent its socket to the
//! lanes and nothing else is pending, it leaves its task and parks ([`park`]) until one of
//! those wakes it. Reads go through a stack buffer, so an idle connection holds no read buffer.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;

use tokio::time::{sleep_until, Instant, Sleep};
use tokio_util::task::TaskTracker;

mod ending;

use self::ending::{Ending, Served};
use super::admission::Ticket;
use super::close;
use super::dialect::{Cause, Closing, Connect, Conversation, Link};
use super::frame::{self, ClientFrame, FrameReader};
use super::keepalive::{Beat, Keepalive};
use super::park;
use super::rate::MessageRate;
use super::resume::Resumes;
use super::subscriptions::Streams;
use super::transport::Transport;
use super::writer::Writer;
use super::{Hangup, UserFeeds, WsContext};
use crate::hub::{FrameVariant, Outbox, REPLAY_BUFFER};

/// Bytes read from the socket per `read` call (on the stack, not kept per connection).
const READ_CHUNK: usize = 4096;

/// A connection accepted by its dialect, subscribed to its URL's streams before the handshake
/// answer goes out, so the client receives everything published after it was accepted.
pub struct Opening {
    outbox: Arc<Outbox>,
    streams: Streams,
    connect: Connect,
    ticket: Ticket,
    resumes: Option<Box<Resumes>>,
}

impl Opening {
    /// A new connection's outbox, subscribed to the streams `connect` planned.
    pub fn new(ctx: &WsContext, mut connect: Connect, ticket: Ticket) -> Self {
        let outbox = Outbox::new(ctx.next_connection_id(), ctx.settings.outbox_bytes);
        let mut streams = Streams::default();
        let resume = connect.streams.take_resume();
        streams.add(std::mem::take(&mut connect.streams), &outbox);
        // Subscribed first: what the replay does not hold reaches the connection live.
        let mut resumes = None;
        if let Some(resume) = resume {
            Resumes::start_all(&mut resumes, &ctx.hub, &ctx.metrics, resume);
        }
        if let Some(hangup) = &connect.hangup {
            hangup.attach(&outbox);
        }
        Opening {
            outbox,
            streams,
            connect,
            ticket,
            resumes,
        }
    }

    /// Undoes the subscriptions of a connection that never became a session.
    pub fn abandon(mut self) {
        self.streams.clear(&self.outbox);
        self.outbox.close();
    }
}

/// The state of one connection.
pub struct Session {
    ctx: Arc<WsContext>,
    socket: Transport,
    outbox: Arc<Outbox>,
    reader: FrameReader,
    writer: Writer,
    streams: Streams,
    conversation: Box<dyn Conversation>,
    variant: FrameVariant,
    rate: MessageRate,
    started: Instant,
    keepalive: Keepalive,
    expires: Instant,
    /// The next heartbeat, end of life or held message's release, whichever is first (boxed:
    /// it is registered with the runtime's timer, so it keeps its place while the session
    /// moves in and out of tasks).
    timer: Pin<Box<Sleep>>,
    hangup: Option<Arc<Hangup>>,
    feeds: Option<Arc<UserFeeds>>,
    /// Streams being resumed (boxed: most connections never resume).
    resumes: Option<Box<Resumes>>,
    /// The connection's place among the node's (and its address's) connections.
    _ticket: Ticket,
}

impl Session {
    /// A session for an upgraded `socket`; `early` holds bytes the client sent right after the
    /// handshake. Boxed: a session moves between tasks (see [`park`](super::park)).
    pub fn new(
        ctx: Arc<WsContext>,
        socket: Transport,
        early: &[u8],
        opening: Opening,
    ) -> Box<Self> {
        let settings = &ctx.settings;
        let started = Instant::now();
        let mut reader = FrameReader::new(settings.max_message_bytes);
        reader.feed(early);
        let Opening {
            outbox,
            streams,
            connect,
            ticket,
            resumes,
        } = opening;
        let expires = started + settings.max_lifetime;
        let mut session = Box::new(Session {
            outbox,
            socket,
            reader,
            writer: Writer::default(),
            streams,
            conversation: connect.conversation,
            variant: connect.variant,
            rate: MessageRate::new(
                connect
                    .messages_per_sec
                    .unwrap_or(settings.messages_per_sec),
                1000,
            ),
            started,
            keepalive: Keepalive::new(connect.heartbeat, started),
            expires,
            timer: Box::pin(sleep_until(expires)),
            hangup: connect.hangup,
            feeds: None,
            resumes,
            _ticket: ticket,
            ctx,
        });
        let first = session.next_deadline();
        session.timer.as_mut().reset(first);
        session
    }

    /// Registers the connection, then serves it until it ends (parked whenever it is idle)
    /// and cleans up.
    pub fn run(self: Box<Self>) -> impl Future<Output = ()> + Send {
        self.ctx.connections.insert(&self.outbox);
        self.ctx.metrics.connections.inc();
        self.ctx.metrics.connections_opened.inc();
        self.drive()
    }

    /// Serves the connection in this task until it ends or parks.
    pub(super) async fn drive(mut self: Box<Self>) {
        let ending = loop {
            match self.serve().await {
                Served::Ended(ending) => break ending,
                Served::Idle => match park::park(self) {
                    Some(session) => self = session,
                    None => return,
                },
            }
        };
        self.end(ending).await;
    }

    /// The node's metrics.
    pub(super) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.ctx.metrics
    }

    /// The tracker of the node's connection tasks.
    pub(super) fn tracker(&self) -> TaskTracker {
        self.ctx.tracker.clone()
    }

    /// Registers `cx`'s waker with everything that can need a parked session (the socket's
    /// readability, the outbox's news, the timer); true if one of them already has.
    pub(super) fn poll_wake_sources(&mut self, cx: &mut Context<'_>) -> bool {
        let readable = self.socket.poll_read_ready(cx).is_ready();
        let news = self.outbox.poll_ready(cx).is_ready();
        let due = self.timer.as_mut().poll(cx).is_ready();
        readable || news || due
    }

    /// Ends the connection as `ending` says (its closing frames, then the client's close),
    /// and removes it from the node's books.
    async fn end(mut self: Box<Self>, ending: Ending) {
        let metrics = Arc::clone(&self.ctx.metrics);
        self.outbox.reclaim_wire();
        metrics.closes.with_label_values(&[&ending.label()]).inc();
        self.finish(&ending).await;
        self.streams.clear(&self.outbox);
        if let Some(feeds) = &self.feeds {
            feeds.close();
        }
        self.outbox.close();
        self.ctx.connections.remove(self.outbox.id());
        metrics.connections.dec();
    }

    /// The ending the conversation's dialect gives `cause`.
    fn close_for(&self, cause: Cause) -> Ending {
        let linger = cause != Cause::SlowConsumer;
        Ending::Close {
            closing: Box::new(self.conversation.closing(cause)),
            linger,
        }
    }

    async fn serve(&mut self) -> Served {
        // TLS may hold decrypted bytes the upgrade did not consume, with nothing left for the
        // socket to signal (a TLS session never lends its socket, so never parks, and comes
        // here once).
        if self.socket.is_tls() {
            if let Some(ending) = self.on_readable() {
                return Served::Ended(ending);
            }
        }
        loop {
            // Woken for any reason, the connection writes its socket itself until it is idle
            // again: no lane writes between its frames.
            self.outbox.reclaim_wire();
            if self.ctx.connections.closing(self.outbox.id()) {
                return Served::Ended(self.close_for(Cause::Shutdown));
            }
            if let Some(closing) = self.hangup.as_ref().and_then(|h| h.take()) {
                return Served::Ended(Ending::Close {
                    closing: Box::new(closing),
                    linger: true,
                });
            }
            if let Some(ending) = self.on_streams_removed() {
                return Served::Ended(ending);
            }
            if let Some(resumes) = &mut self.resumes {
                self.writer.data_queue().append(resumes.ready());
            }
            if self.writer.data_queue().is_empty() {
                let overflowed = self.outbox.take_all(self.writer.data_queue());
                if self.outbox.take_partial_front() {
                    self.writer.finish_front_first(self.variant);
                }
                if overflowed {
                    return Served::Ended(self.close_for(Cause::SlowConsumer));
                }
                if let Some(resumes) = &mut self.resumes {
                    resumes.take_live(self.writer.data_queue());
                    if resumes.is_idle() {
                        self.resumes = None;
                    }
                }
            }
            let reading = self.resumes.as_ref().is_some_and(|r| r.reading())
                && self.writer.data_queue().len() < REPLAY_BUFFER;
            let blocked = match self.flush_now() {
                Ok(blocked) => blocked,
                Err(_) => return Served::Ended(Ending::Dropped),
            };
            let mut lent = false;
            if !blocked && self.writer.is_empty() && self.resumes.is_none() {
                // Plain TCP only. Refused while something waits in the outbox: its signal
                // brings the loop back to write it.
                if let Some(wire) = self.socket.wire(self.variant) {
                    lent = self.outbox.lend_wire(wire);
                }
            }
            // A rate-limited stream's held message is due at its next token (taken above once
            // the writer is idle; while it is busy, its socket wakes the loop).
            if let Some(release) = self
                .outbox
                .release_at()
                .filter(|_| self.writer.data_queue().is_empty())
                .map(Instant::from_std)
            {
                if release < self.timer.deadline() {
                    self.timer.as_mut().reset(release);
                }
            }
            tokio::select! {
                biased;
                _ = &mut self.timer => {
                    if let Some(ending) = self.on_timer(Instant::now()) {
                        return Served::Ended(ending);
                    }
                    let deadline = self.next_deadline();
                    self.timer.as_mut().reset(deadline);
                }
                readable = poll_fn(|cx| self.socket.poll_read_ready(cx)) => {
                    if readable.is_err() {
                        return Served::Ended(Ending::Dropped);
                    }
                    if let Some(ending) = self.on_readable() {
                        return Served::Ended(ending);
                    }
                    if self.writer.own_bytes() > self.ctx.settings.reply_bytes {
                        // A client that asks and never reads: its replies are bounded too.
                        return Served::Ended(self.close_for(Cause::SlowConsumer));
                    }
                    let deadline = self.next_deadline();
                    if deadline != self.timer.deadline() {
                        self.timer.as_mut().reset(deadline);
                    }
                }
                writable = poll_fn(|cx| self.socket.poll_write_ready(cx)), if blocked => {
                    if writable.is_err() {
                        return Served::Ended(Ending::Dropped);
                    }
                }
                _ = self.outbox.ready() => {
                    // An overflow while the writer still holds data (a socket that takes
                    // nothing) is seen here; with the writer idle, the loop's next take of the
                    // outbox reports it without this extra lock.
                    if !self.writer.data_queue().is_empty() && self.outbox.overflowed() {
                        return Served::Ended(self.close_for(Cause::SlowConsumer));
                    }
                }
                (i, captured) = poll_fn(|cx| match self.resumes.as_mut() {
                    Some(resumes) => resumes.poll_archive(cx),
                    None => std::task::Poll::Pending,
                }), if reading => {
                    if let Some(resumes) = &mut self.resumes {
                        resumes.on_archive(i, captured);
                    }
                }
                // Polled last: nothing above is ready, and the lanes write what comes.
                _ = std::future::ready(()), if lent => return Served::Idle,
            }
        }
    }

    /// Writes what is queued; true if the socket is full.
    fn flush_now(&mut self) -> io::Result<bool> {
        if self.writer.is_empty() && !self.socket.has_pending() {
            return Ok(false);
        }
        let written = self.writer.write_now(&mut self.socket, self.variant)?;
        let metrics = &self.ctx.metrics;
        if written.syscalls > 0 {
            metrics.socket_writes.inc_by(written.syscalls as u64);
        }
        if written.data_frames > 0 {
            metrics.messages_out.inc_by(written.data_frames as u64);
        }
        if self.writer.is_empty() {
            self.writer.release_idle_buffers();
        }
        Ok(written.blocked)
    }

    fn next_deadline(&self) -> Instant {
        match self.keepalive.deadline() {
            Some(beat) => beat.min(self.expires),
            None => self.expires,
        }
    }

    fn on_timer(&mut self, now: Instant) -> Option<Ending> {
        if now >= self.expires {
            return Some(self.close_for(Cause::LifetimeReached));
        }
        match self.keepalive.on_timer(now) {
            Beat::Quiet => None,
            Beat::Ping(ping) => {
                self.writer.push_own(ping);
                None
            }
            Beat::Missed => Some(self.close_for(Cause::HeartbeatMissed)),
        }
    }

    /// Drops the streams whose topics a config change retired, and lets the dialect tell the
    /// client; the ending, if the dialect closes the connection.
    fn on_streams_removed(&mut self) -> Option<Ending> {
        let retired = self.outbox.take_removed();
        if retired.is_empty() {
            return None;
        }
        let removed = self.streams.forget(&retired);
        if let Some(resumes) = &mut self.resumes {
            resumes.forget(&removed);
        }
        if removed.is_empty() {
            // Unsubscribed meanwhile: nothing to tell.
            return None;
        }
        self.ctx
            .metrics
            .subscriptions_removed
            .inc_by(removed.len() as u64);
        let closing =
            self.converse(|conversation, link| conversation.on_streams_removed(&removed, link))?;
        Some(Ending::Close {
            closing: Box::new(closing),
            linger: true,
        })
    }

    fn on_readable(&mut self) -> Option<Ending> {
        // A request read now sees the streams as they are (a LIST_SUBSCRIPTIONS after a
        // removal does not list the removed stream).
        if let Some(ending) = self.on_streams_removed() {
            return Some(ending);
        }
        match self.read_available() {
            Ok(true) => return Some(Ending::Dropped),
            Ok(false) => {}
            Err(_) => return Some(Ending::Dropped),
        }
        loop {
            let frame = match self.reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Some(self.close_for(Cause::BadFrame(e))),
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
            return Some(self.close_for(Cause::TooManyMessages));
        }
        let closing = match frame {
            ClientFrame::Text(text) => {
                let text = std::str::from_utf8(&text).expect("the frame reader validated UTF-8");
                self.converse(|conversation, link| conversation.on_text(text, link))
            }
            ClientFrame::Binary(data) => {
                self.converse(|conversation, link| conversation.on_binary(&data, link))
            }
            ClientFrame::Ping(payload) => {
                self.writer.push_own(frame::pong(&payload));
                self.keepalive.on_client_ping(Instant::now());
                None
            }
            ClientFrame::Pong(payload) => {
                self.keepalive.on_pong(&payload);
                None
            }
            ClientFrame::Close(_) => unreachable!("handled above"),
        };
        closing.map(|closing| Ending::Close {
            closing: Box::new(closing),
            linger: true,
        })
    }

    /// Hands a client message to the conversation, with a link to this connection.
    fn converse(
        &mut self,
        handle: impl FnOnce(&mut dyn Conversation, &mut Link<'_>) -> Option<Closing>,
    ) -> Option<Closing> {
        let mut link = Link {
            ctx: &self.ctx,
            outbox: &self.outbox,
            streams: &mut self.streams,
            writer: &mut self.writer,
            variant: &mut self.variant,
            keepalive: &mut self.keepalive,
            feeds: &mut self.feeds,
            hangup: &mut self.hangup,
            resumes: &mut self.resumes,
        };
        handle(self.conversation.as_mut(), &mut link)
    }

    /// Sends the closing frames and waits (briefly) for the client's.
    async fn finish(&mut self, ending: &Ending) {
        let grace = self.ctx.settings.close_grace;
        match ending {
            Ending::Close { closing, linger } => {
                self.writer.discard_data();
                if let Some(notice) = &closing.notice {
                    self.writer.push_own(notice.clone());
                }
                self.writer
                    .push_own(frame::close(closing.code, closing.reason));
                if !linger {
                    let _ = self.flush_now();
                    return;
                }
                let deadline = Instant::now() + grace;
                // A client whose (malformed) close frame this answers sends no other: the
                // handshake is complete once this close is out (RFC 6455 §7.1.1).
                if self.flush_until(deadline).await && !self.reader.saw_close() {
                    self.await_client_close(deadline).await;
                }
            }
            Ending::ClientClosed(code) => {
                self.writer.discard_data();
                let echo = code.unwrap_or(close::NORMAL);
                self.writer.push_own(frame::close(echo, ""));
                self.flush_until(Instant::now() + grace).await;
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

impl Drop for Session {
    /// A session dropped anywhere (its task cancelled too) takes its socket back from the
    /// lanes before the socket closes.
    fn drop(&mut self) {
        self.outbox.reclaim_wire();
    }
}
