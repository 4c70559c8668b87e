//! Where a stream's numbering stopped, asked of the hubs that delivered it: the fallback of
//! [`super::Bus::last_captured`] for a cluster without a JetStream capture (a multi-region
//! deployment, whose NATS clusters cannot share one: `docs/multi-region.md`).
//!
//! Every cluster node answers requests on [`SUBJECT`] (the payload: a stream name) with the
//! last message of that stream its hub delivered, as headers without a payload, when it has
//! one. A node that starts publishing a stream asks once and continues from the highest
//! answer: the nodes that delivered the stream are exactly those whose clients hold its
//! numbers. Answers cross NATS gateways like any request, so the hubs of every region answer.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::nats::{decode, headers_of, NatsBus};
use super::BusMessage;

/// The subject every cluster node answers on.
pub const SUBJECT: &str = "_wsgate.last";

/// How long a question waits for a first answer: no hub has the stream after that.
const FIRST_ANSWER: Duration = Duration::from_millis(200);

/// How long a question waits for more answers after the first: hubs of other regions answer
/// one round trip later.
const MORE_ANSWERS: Duration = Duration::from_millis(100);

/// What a node's hub last delivered of a stream, by stream name.
pub type LastDelivered = Arc<dyn Fn(&str) -> Option<BusMessage> + Send + Sync>;

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
            let (Some(reply), Ok(stream)) =
                (question.reply, std::str::from_utf8(&question.payload))
            else {
                continue;
            };
            if let Some(last) = lookup(stream) {
                let answer =
                    self.client
                        .publish_with_headers(reply, headers_of(&last), bytes::Bytes::new());
                if let Err(e) = answer.await {
                    tracing::debug!(error = %e, stream, "cannot answer where a stream stopped");
                }
            }
        }
    }

    /// The last message of `stream` any node's hub delivered (the highest sequence number
    /// among the answers), or `None` when no hub answers within [`FIRST_ANSWER`].
    pub(super) async fn last_seen_by_hubs(&self, stream: &str) -> Option<BusMessage> {
        let inbox = self.client.new_inbox();
        let mut answers = match self.client.subscribe(inbox.clone()).await {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(error = %e, stream, "cannot ask the hubs where the stream stopped");
                return None;
            }
        };
        let asked = self
            .client
            .publish_with_reply(SUBJECT, inbox, bytes::Bytes::from(stream.to_string()))
            .await;
        if let Err(e) = asked {
            tracing::warn!(error = %e, stream, "cannot ask the hubs where the stream stopped");
            return None;
        }
        let mut best: Option<BusMessage> = None;
        let mut deadline = tokio::time::Instant::now() + FIRST_ANSWER;
        while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await {
            let Some(headers) = &answer.headers else {
                continue;
            };
            let Some(last) = decode(headers, &answer.payload) else {
                continue;
            };
            if &*last.stream != stream {
                continue;
            }
            if best.is_none() {
                deadline = tokio::time::Instant::now() + MORE_ANSWERS;
            }
            if best.as_ref().is_none_or(|b| last.seq > b.seq) {
                best = Some(last);
            }
        }
        best
    }
}
