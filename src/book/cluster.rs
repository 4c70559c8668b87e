//! A book kept on another node, reached over NATS request/reply.
//!
//! The node that keeps a symbol's book subscribes `_wsgate.book.<symbol>` while it keeps it and
//! answers each request with the book's snapshot (the best [`MAX_LIMIT`] levels a side, the
//! REST JSON shape), or Binance's `-1001` error body while the book is incomplete. A node asked
//! for a snapshot it does not keep sends the request there and waits [`REQUEST_TIMEOUT`]: no
//! responder, no answer in time or an error body all mean the book is unavailable.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Kept, Snapshot, SnapshotError, MAX_LIMIT};
use crate::api_error;

/// Subjects of book requests: `_wsgate.book.<symbol>`.
pub const SUBJECT_PREFIX: &str = "_wsgate.book";

/// How long a node waits for the book's keeper.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The subject on which `symbol`'s book answers.
pub fn subject(symbol: &str) -> String {
    format!(
        "{SUBJECT_PREFIX}.{}",
        symbol.replace(['.', '*', '>', ' ', '\t', '\r', '\n'], "_")
    )
}

/// A cluster member's NATS connection, for book requests both ways.
#[derive(Clone)]
pub struct Link {
    client: async_nats::Client,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

/// Answers requests for one book until dropped.
pub struct Responder {
    stop: CancellationToken,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Link {
    /// Book requests over `client`. Must be called inside a tokio runtime (responders run on
    /// it, wherever the book is created).
    pub fn new(client: async_nats::Client) -> Self {
        Link {
            client,
            runtime: tokio::runtime::Handle::current(),
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// Starts answering requests for `symbol` from `kept`, until the responder is dropped.
    pub(super) fn respond(&self, symbol: &str, kept: Weak<Kept>) -> Responder {
        let stop = CancellationToken::new();
        let (client, subject, token) = (self.client.clone(), subject(symbol), stop.clone());
        self.runtime.spawn(async move {
            let mut requests = match client.subscribe(subject.clone()).await {
                Ok(requests) => requests,
                Err(e) => {
                    return tracing::warn!(%subject, error = %e, "cannot answer book requests")
                }
            };
            loop {
                let request = tokio::select! {
                    request = requests.next() => request,
                    _ = token.cancelled() => break,
                };
                let Some(request) = request else { break };
                let Some(reply_to) = request.reply else {
                    continue;
                };
                let Some(kept) = kept.upgrade() else { break };
                let snapshot = kept.book.lock().snapshot(MAX_LIMIT);
                drop(kept);
                let body = match snapshot {
                    Some(snapshot) => serde_json::to_vec(&snapshot),
                    None => {
                        let (code, msg) = api_error::INTERNAL;
                        serde_json::to_vec(&serde_json::json!({ "code": code, "msg": msg }))
                    }
                }
                .expect("a snapshot serializes");
                if let Err(e) = client.publish(reply_to, body.into()).await {
                    tracing::debug!(%subject, error = %e, "cannot answer a book request");
                }
            }
            let _ = requests.unsubscribe().await;
        });
        Responder { stop }
    }

    /// The snapshot of `symbol` from the node that keeps its book.
    pub(super) async fn request(&self, symbol: &str) -> Result<Snapshot, SnapshotError> {
        let subject = subject(symbol);
        let asked = self.client.request(subject.clone(), Vec::new().into());
        match tokio::time::timeout(self.timeout, asked).await {
            Ok(Ok(reply)) => serde_json::from_slice(&reply.payload).map_err(|_| {
                tracing::debug!(%subject, "the book's keeper says it is unavailable");
                SnapshotError::Unavailable
            }),
            Ok(Err(e)) => {
                tracing::debug!(%subject, error = %e, "no book answered");
                Err(SnapshotError::Unavailable)
            }
            Err(_) => {
                tracing::debug!(%subject, "book request timed out");
                Err(SnapshotError::Unavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbol_is_one_subject_token() {
        assert_eq!(subject("btcusdt"), "_wsgate.book.btcusdt");
        assert_eq!(subject("a.b*c>"), "_wsgate.book.a_b_c_");
    }
}
