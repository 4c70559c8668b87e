//! Where streams' numbering stopped, asked of the hubs that delivered them: the fallback of
//! [`super::Bus::last_captured`] for a cluster without a JetStream capture (a multi-region
//! deployment, whose NATS clusters cannot share one: `docs/multi-region.md`).
//!
//! Every cluster node answers questions on [`SUBJECT`] with the last message its hub delivered
//! of each stream it delivered (sequence number and upstream origin, no payload), in chunks. A
//! node that starts publishing streams asks once, waits [`ANSWER_WINDOW`] for the answers, and
//! continues each stream from the highest: the nodes that delivered a stream are exactly those
//! whose clients hold its numbers. Questions and answers cross NATS gateways, so the hubs of
//! every region answer. The merged answers serve every stream first published within
//! [`FRESH_FOR`], so a source starting on hundreds of streams asks once, and the node asks
//! before its source reads anything ([`NatsBus::ask_hubs_ahead`]), so no event waits for them.
//!
//! The old publisher has stopped before the new one asks (the lease, or the regions'
//! hand-over, orders them), and the hubs of its own region had its last messages well before:
//! a hub answers with what it has delivered by then.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::nats::{origin_text, parse_origin, NatsBus};
use super::BusMessage;

/// The subject every cluster node answers on.
pub const SUBJECT: &str = "_wsgate.last";

/// How long a question collects answers: long enough for the hubs of the farthest region.
const ANSWER_WINDOW: Duration = Duration::from_millis(250);

/// How long the merged answers serve streams first published after the question.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Streams per answer message (well under NATS's payload limit).
const ANSWER_CHUNK: usize = 1000;

/// What every stream's hub topic last delivered on this node.
pub type LastDelivered = Arc<dyn Fn() -> Vec<BusMessage> + Send + Sync>;

/// One stream in an answer.
#[derive(Debug, Serialize, Deserialize)]
struct Last {
    stream: String,
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
}

/// The last message of each stream, by stream.
type Lasts = HashMap<Arc<str>, BusMessage>;

/// The merged answers of the last question, and when it was asked.
#[derive(Default)]
pub(super) struct Answers(tokio::sync::Mutex<Option<(Instant, Lasts)>>);

impl NatsBus {
    /// Answers questions on [`SUBJECT`] with what `lookup` finds, until `stop`.
    pub async fn answer_last_seen(&self, lookup: LastDelivered, stop: CancellationToken) {
        let mut questions = match self.client.subscribe(SUBJECT).await {
            Ok(questions) => questions,
            Err(e) => {
                tracing::warn!(error = %e, "cannot answer where streams stopped; a new owner without a capture restarts their numbering");
                return;
            }
        };
        loop {
            let question = tokio::select! {
                question = questions.next() => question,
                _ = stop.cancelled() => return,
            };
            let Some(question) = question else { return };
            let Some(reply) = question.reply else {
                continue;
            };
            let lasts: Vec<Last> = lookup()
                .into_iter()
                .map(|m| Last {
                    stream: m.stream.to_string(),
                    seq: m.seq,
                    origin: m.origin.as_ref().map(origin_text),
                })
                .collect();
            for chunk in lasts.chunks(ANSWER_CHUNK) {
                let body = serde_json::to_vec(chunk).expect("answers serialize");
                if let Err(e) = self.client.publish(reply.clone(), body.into()).await {
                    tracing::debug!(error = %e, "cannot answer where streams stopped");
                }
            }
        }
    }

    /// The last message of `stream` any node's hub delivered (the highest sequence number
    /// among the answers), or `None` when no hub has it.
    pub(super) async fn last_seen_by_hubs(&self, stream: &str) -> Option<BusMessage> {
        let mut answers = self.last_seen.0.lock().await;
        let fresh = answers
            .as_ref()
            .is_some_and(|(asked, _)| asked.elapsed() < FRESH_FOR);
        if !fresh {
            *answers = Some((Instant::now(), self.ask_hubs().await));
        }
        answers
            .as_ref()
            .and_then(|(_, lasts)| lasts.get(stream).cloned())
    }

    /// Asks the hubs now, without a capture, so that the streams a source publishes in its
    /// first [`FRESH_FOR`] are numbered without waiting for the answers while events queue.
    /// A node calls it once it holds a datasource, before its source reads anything.
    pub async fn ask_hubs_ahead(&self) {
        if self.capture.get().is_none() {
            let asked = self.ask_hubs().await;
            *self.last_seen.0.lock().await = Some((Instant::now(), asked));
        }
    }

    /// Asks every node and merges the answers that come within [`ANSWER_WINDOW`].
    async fn ask_hubs(&self) -> Lasts {
        let mut merged = Lasts::new();
        let inbox = self.client.new_inbox();
        let mut answers = match self.client.subscribe(inbox.clone()).await {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the hubs where streams stopped");
                return merged;
            }
        };
        let asked = self
            .client
            .publish_with_reply(SUBJECT, inbox, bytes::Bytes::new())
            .await;
        if let Err(e) = asked {
            tracing::warn!(error = %e, "cannot ask the hubs where streams stopped");
            return merged;
        }
        let deadline = Instant::now() + ANSWER_WINDOW;
        while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await {
            let Ok(lasts) = serde_json::from_slice::<Vec<Last>>(&answer.payload) else {
                tracing::debug!("ignoring a malformed answer on where streams stopped");
                continue;
            };
            for last in lasts {
                let known = merged.get(last.stream.as_str());
                if known.is_some_and(|k| k.seq >= last.seq) {
                    continue;
                }
                let stream: Arc<str> = Arc::from(last.stream);
                let message = BusMessage {
                    stream: Arc::clone(&stream),
                    seq: last.seq,
                    event_time_us: 0,
                    published_us: 0,
                    payload: bytes::Bytes::new(),
                    user_id: None,
                    origin: last.origin.as_deref().and_then(parse_origin),
                };
                merged.insert(stream, message);
            }
        }
        merged
    }
}
