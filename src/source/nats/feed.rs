//! The feed: owns the dispatcher and hands batches to it on the blocking pool, and tracks the
//! connection's state for the source's health.

use tokio::sync::mpsc;

use crate::source::{Dispatcher, SourceHealth, UpstreamEvent};

/// Owns the dispatcher; dispatches on the blocking pool so that the connection keeps being
/// served (pings, acks) while a route applies backpressure.
pub(super) struct Feed {
    dispatcher: Option<Dispatcher>,
    /// Connection state changes reported by the client's event callback.
    pub(super) link: mpsc::UnboundedReceiver<Link>,
}

/// A change of the connection's state.
pub(super) enum Link {
    Up,
    Down(&'static str),
}

impl Feed {
    /// A feed of `dispatcher`, told of connection changes through `link`.
    pub(super) fn new(dispatcher: Dispatcher, link: mpsc::UnboundedReceiver<Link>) -> Self {
        Feed {
            dispatcher: Some(dispatcher),
            link,
        }
    }

    pub(super) fn health(&self) -> &SourceHealth {
        self.dispatcher
            .as_ref()
            .expect("dispatcher present")
            .health()
    }

    pub(super) fn note(&self, link: Link) {
        match link {
            Link::Up => self.health().set_up(),
            Link::Down(reason) => {
                self.health().set_down(reason);
                self.health().reconnecting();
            }
        }
    }

    pub(super) async fn dispatch(
        &mut self,
        events: Vec<UpstreamEvent>,
        handed_off: impl FnOnce() + Send + 'static,
    ) -> bool {
        let mut dispatcher = self.dispatcher.take().expect("dispatcher present");
        let (dispatcher, alive) = tokio::task::spawn_blocking(move || {
            let alive = dispatcher.dispatch_blocking_then(events, handed_off);
            (dispatcher, alive)
        })
        .await
        .expect("dispatch does not panic");
        self.dispatcher = Some(dispatcher);
        alive
    }
}
