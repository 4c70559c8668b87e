//! Core NATS: queue-group subscriptions to the subjects (at-most-once), positions counted by
//! the process.

use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use super::feed::Feed;
use super::message::to_event;
use super::{Ended, NatsSource, MAX_BATCH};
use crate::source::Position;
use crate::util::now_us;

impl NatsSource {
    pub(super) async fn consume_core(
        &self,
        client: &async_nats::Client,
        feed: &mut Feed,
        shutdown: &CancellationToken,
        counted: &mut u64,
    ) -> Ended {
        let mut subscriptions = Vec::with_capacity(self.subjects.len());
        for subject in &self.subjects {
            match client
                .queue_subscribe(subject.clone(), self.queue_group.clone())
                .await
            {
                Ok(subscriber) => subscriptions.push(subscriber),
                Err(e) => return Ended::Failed(format!("subscribing to `{subject}`: {e}")),
            }
        }
        tracing::info!(
            datasource = %self.name,
            subjects = ?self.subjects,
            queue_group = %self.queue_group,
            "nats core subscriptions open"
        );
        // Subscribing needs no answer from the server, so it succeeds before the client has
        // connected (or while its login is refused): up only once connected; the connection's
        // events say when.
        if client.connection_state() == async_nats::connection::State::Connected {
            feed.health().set_up();
        } else {
            feed.health().set_down("connecting to nats");
        }
        let mut messages = futures_util::stream::select_all(subscriptions);
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ended::Stopped,
                Some(link) = feed.link.recv() => {
                    feed.note(link);
                    continue;
                }
                message = messages.next() => message,
            };
            let Some(first) = first else {
                return Ended::Failed("connection closed".to_string());
            };
            let mut batch = Vec::with_capacity(16);
            let now = now_us();
            let mut push = |message: async_nats::Message| {
                *counted += 1;
                batch.push(to_event(message, Position::Counted(*counted), now));
            };
            push(first);
            for _ in 1..MAX_BATCH {
                match messages.next().now_or_never() {
                    Some(Some(message)) => push(message),
                    _ => break,
                }
            }
            if !feed.dispatch(batch, || {}).await {
                return Ended::Stopped;
            }
        }
    }
}
