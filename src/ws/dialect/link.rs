//! What a conversation may do to its connection while it handles a client message.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::hub::{Delivery, FrameVariant, Outbox};
use crate::util::now_us;
use crate::ws::keepalive::Keepalive;
use crate::ws::resume::{ResumeFrom, Resumes};
use crate::ws::subscriptions::{Planned, Streams, SubscribeError};
use crate::ws::user_feeds::UserFeeds;
use crate::ws::writer::Writer;
use crate::ws::Hangup;
use crate::ws::WsContext;

/// A conversation's handle on its connection: send replies, change what the connection is
/// subscribed to and how events are wrapped, report heartbeats. Everything it queues goes out
/// before further events, in order.
pub struct Link<'a> {
    pub(crate) ctx: &'a WsContext,
    pub(crate) outbox: &'a Arc<Outbox>,
    pub(crate) streams: &'a mut Streams,
    pub(crate) writer: &'a mut Writer,
    pub(crate) variant: &'a mut FrameVariant,
    pub(crate) keepalive: &'a mut Keepalive,
    pub(crate) feeds: &'a mut Option<Arc<UserFeeds>>,
    pub(crate) hangup: &'a mut Option<Arc<Hangup>>,
    pub(crate) resumes: &'a mut Option<Box<Resumes>>,
}

/// Sends a connection's own frames from anywhere, later (e.g. the answer to a request that
/// waited for a backend). Frames go out in the order they are sent, among the connection's
/// events; a connection that ended drops them.
#[derive(Clone)]
pub struct Replier {
    outbox: Arc<Outbox>,
    variants: usize,
}

impl Replier {
    /// Queues `frame` (one complete WebSocket frame) and wakes the connection; false when the
    /// connection ended or fell too far behind.
    pub fn send(&self, frame: Bytes) -> bool {
        let delivery = Arc::new(Delivery::framed(frame, now_us(), self.variants));
        let pushed = self.outbox.push(&delivery);
        self.outbox.wake_if_due();
        pushed == crate::hub::Pushed::Queued
    }
}

impl Link<'_> {
    /// Queues one complete frame of the connection's own (a reply, a pong, a notice).
    pub fn send(&mut self, frame: Bytes) {
        self.writer.push_own(frame);
    }

    /// Queues one complete frame of the connection's own behind the events already queued for
    /// it (a notice that must not overtake them); dropped if the connection fell too far behind.
    pub fn send_behind_events(&mut self, frame: Bytes) {
        self.replier().send(frame);
    }

    /// Subscribes the connection to `names` (already checked for the dialect's stream syntax):
    /// all of them, or none when one is unknown or the connection would hold too many.
    pub fn subscribe(&mut self, names: Vec<String>) -> Result<(), SubscribeError> {
        let planned = self.plan(names)?;
        self.streams.add(planned, self.outbox);
        Ok(())
    }

    /// Like [`subscribe`](Self::subscribe), then resumes the streams of `resume` it added
    /// after the positions given (see [`crate::ws::resume`]): what the client missed is
    /// replayed before their live events, or announced with the dialect's notice.
    pub fn subscribe_resuming(
        &mut self,
        names: Vec<String>,
        resume: ResumeFrom,
    ) -> Result<(), SubscribeError> {
        let mut planned = self.plan(names)?;
        planned.resume_from(resume);
        let resume = planned.take_resume();
        self.streams.add(planned, self.outbox);
        if let Some(resume) = resume {
            let ctx = self.ctx;
            Resumes::start_all(self.resumes, &ctx.hub, &ctx.metrics, resume);
        }
        Ok(())
    }

    /// Whether the node serves the stream `name` (whatever `--accept-unknown-streams` says).
    pub fn serves(&self, name: &str) -> bool {
        self.ctx.hub.topic(name).is_some()
    }

    /// Checks what [`subscribe`](Self::subscribe) would add, without subscribing.
    pub fn plan(&self, names: Vec<String>) -> Result<Planned, SubscribeError> {
        self.ctx.catalog().plan(self.streams, names)
    }

    /// Unsubscribes the connection from each of `names` it holds (ending their resumes).
    pub fn unsubscribe(&mut self, names: &[String]) {
        self.streams.remove(names, self.outbox);
        if let Some(resumes) = self.resumes.as_mut() {
            let names: Vec<Arc<str>> = names.iter().map(|n| Arc::from(n.as_str())).collect();
            resumes.forget(&names);
        }
    }

    /// The connection's streams, in the order they were subscribed.
    pub fn streams(&self) -> impl Iterator<Item = &str> {
        self.streams.names()
    }

    /// True when the connection holds no stream at all, public or private.
    pub fn holds_nothing(&self) -> bool {
        self.streams.is_empty() && self.private_names().is_empty()
    }

    /// The frame variant events are sent in.
    pub fn variant(&self) -> FrameVariant {
        *self.variant
    }

    /// Sends events in `variant` from now on (events already queued included).
    pub fn set_variant(&mut self, variant: FrameVariant) {
        *self.variant = variant;
    }

    /// The client sent a heartbeat of the dialect's own (e.g. a JSON ping or pong).
    pub fn heard_heartbeat(&mut self) {
        self.keepalive.on_heartbeat(Instant::now());
    }

    /// A handle to send this connection's frames later, from any task.
    pub fn replier(&self) -> Replier {
        Replier {
            outbox: Arc::clone(self.outbox),
            variants: self.ctx.hub.variants().len(),
        }
    }

    /// The connection's private subscriptions that may be changed from any task (created on
    /// first use; they end with the connection).
    pub fn user_feeds(&mut self) -> Arc<UserFeeds> {
        let feeds = self.feeds.get_or_insert_with(|| {
            UserFeeds::new(Arc::clone(&self.ctx.hub), Arc::clone(self.outbox))
        });
        Arc::clone(feeds)
    }

    /// The names of the private subscriptions made through [`user_feeds`](Self::user_feeds).
    pub fn private_names(&self) -> Vec<Arc<str>> {
        self.feeds.as_ref().map(|f| f.names()).unwrap_or_default()
    }

    /// The handle that ends this connection from outside (created on first use).
    pub fn hangup(&mut self) -> Arc<Hangup> {
        let outbox = self.outbox;
        let hangup = self.hangup.get_or_insert_with(|| {
            let hangup = Hangup::new();
            hangup.attach(outbox);
            hangup
        });
        Arc::clone(hangup)
    }

    /// Counts a request refused with the dialect's error `code` (`wsgate_client_errors_total`).
    pub fn count_error(&self, code: &str) {
        self.ctx
            .metrics
            .client_errors
            .with_label_values(&[code])
            .inc();
    }
}
