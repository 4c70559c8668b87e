//! The client side: the listener and its HTTP upgrade, one dialect-free session per
//! connection (I/O, timers, limits, close handshake), WebSocket framing, and the client
//! protocols behind one seam ([`dialect`]).

mod admission;
pub mod close;
mod connections;
pub mod dialect;
pub mod frame;
mod hangup;
mod keepalive;
mod park;
mod proxy_protocol;
mod rate;
pub mod resume;
mod server;
mod session;
pub mod subscriptions;
mod transport;
mod user_feeds;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::{ConnId, Hub};
use crate::metrics::Metrics;
use dialect::Dialects;
use subscriptions::Catalog;

pub use admission::{AdmissionSettings, Refused};
pub use hangup::Hangup;
pub use server::{bind, serve};
pub use user_feeds::UserFeeds;

/// Limits and timers of client connections.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// Interval between server pings.
    pub ping_interval: Duration,
    /// Close the connection when a ping stays unanswered this long.
    pub pong_timeout: Duration,
    /// Connection lifetime; close 1001 (after the dialect's notice) when reached.
    pub max_lifetime: Duration,
    /// Largest client message accepted (close 1009 above).
    pub max_message_bytes: usize,
    /// Streams per connection.
    pub max_streams: usize,
    /// Client messages (text, ping, pong, binary) allowed in any one-second window.
    pub messages_per_sec: usize,
    /// Outbound bytes queued per connection before it counts as a slow consumer.
    pub outbox_bytes: usize,
    /// The kernel's send buffer per client socket (`SO_SNDBUF`); `None` leaves the kernel's
    /// autotuning, which on a slow reader can grow to megabytes of stale data that flow control
    /// never sees.
    pub socket_send_buffer: Option<usize>,
    /// Bytes of replies (answers, pongs, notices) queued per connection before it counts as a
    /// slow consumer: a client that sends requests and never reads is closed at this bound.
    pub reply_bytes: usize,
    /// Accept well-formed streams that no topic serves (as Binance does) instead of refusing them.
    pub accept_unknown_streams: bool,
    /// Client messages allowed per second on a WebSocket API connection (pipelined requests).
    pub api_messages_per_sec: usize,
    /// Open connections per node; further upgrades get HTTP 503.
    pub max_connections: usize,
    /// How long a closing connection waits for its last frames and the client's close.
    pub close_grace: Duration,
    /// Limits applied before the upgrade (per-address caps and rates, handshakes, sizes).
    pub admission: AdmissionSettings,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(24 * 3600),
            max_message_bytes: 64 * 1024,
            max_streams: 1024,
            messages_per_sec: 5,
            outbox_bytes: 4 * 1024 * 1024,
            socket_send_buffer: None,
            reply_bytes: 256 * 1024,
            accept_unknown_streams: false,
            api_messages_per_sec: 200,
            max_connections: 200_000,
            close_grace: Duration::from_secs(2),
            admission: AdmissionSettings::default(),
        }
    }
}

/// What every connection of a node shares.
pub struct WsContext {
    /// The subscription index.
    pub hub: Arc<Hub>,
    /// The client protocols the listener speaks.
    pub dialects: Dialects,
    /// Connection limits and timers.
    pub settings: WsSettings,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the node shuts down: the listener stops accepting.
    pub shutdown: CancellationToken,
    /// Live connections; [`WsContext::shut_down`] tells each to close with 1001 (after its
    /// dialect's notice).
    pub connections: connections::Connections,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Who may connect: limits applied before the upgrade.
    pub admission: Arc<admission::Admission>,
    /// TLS for the listener, if it speaks wss.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    next_id: AtomicU64,
}

impl WsContext {
    /// A context for a node's client listener, speaking `dialects`, over TLS with `tls`.
    pub fn new(
        hub: Arc<Hub>,
        dialects: Dialects,
        settings: WsSettings,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Arc<Self> {
        Arc::new(WsContext {
            admission: admission::Admission::new(
                settings.admission.clone(),
                settings.max_connections,
            ),
            tls,
            hub,
            dialects,
            settings,
            metrics,
            shutdown,
            connections: connections::Connections::new(),
            tracker: TaskTracker::new(),
            next_id: AtomicU64::new(1),
        })
    }

    /// Stops accepting and tells every connection to close with 1001.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
        self.connections.shut_down();
    }

    /// Stops accepting, then closes every connection with 1001 spread evenly over `window`
    /// (all at once when it is zero); returns when the last one was told.
    pub async fn drain(&self, window: Duration) {
        self.shutdown.cancel();
        self.connections.drain(window).await;
    }

    /// The streams a connection may subscribe to, under the node's limits.
    pub fn catalog(&self) -> Catalog<'_> {
        Catalog::new(
            &self.hub,
            self.settings.max_streams,
            self.settings.accept_unknown_streams,
        )
    }

    fn next_connection_id(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}
