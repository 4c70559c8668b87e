//! The backend behind NATS request/reply: one request per trade action on
//! `<prefix>.<method>`, answered by whichever responder the exchange runs.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::{encode, Backend, TradeReply, TradeRequest};

/// Trade actions as NATS requests.
pub struct NatsBackend {
    client: async_nats::Client,
    prefix: String,
}

impl NatsBackend {
    /// Requests on `<prefix>.<method>` through `client`.
    pub fn new(client: async_nats::Client, prefix: impl Into<String>) -> Self {
        NatsBackend {
            client,
            prefix: prefix.into(),
        }
    }
}

impl Backend for NatsBackend {
    fn call<'a>(
        &'a self,
        request: &'a TradeRequest<'a>,
        timeout: Duration,
    ) -> BoxFuture<'a, TradeReply> {
        async move {
            let subject = format!("{}.{}", self.prefix, request.method);
            let sent = self.client.request(subject.clone(), encode(request));
            match tokio::time::timeout(timeout, sent).await {
                Err(_) => TradeReply::timed_out(),
                Ok(Err(e)) => {
                    // No responder, or the connection is down: nothing was executed for sure
                    // only when nobody listened; say "unknown" either way.
                    tracing::warn!(%subject, error = %e, "trade request failed");
                    if matches!(e.kind(), async_nats::RequestErrorKind::TimedOut) {
                        TradeReply::timed_out()
                    } else {
                        TradeReply::unavailable()
                    }
                }
                Ok(Ok(message)) => match serde_json::from_slice::<TradeReply>(&message.payload) {
                    Ok(reply) if reply.result.is_some() || reply.error.is_some() => reply,
                    _ => {
                        tracing::warn!(%subject, "the trade backend answered something that is not a reply");
                        TradeReply::unavailable()
                    }
                },
            }
        }
        .boxed()
    }
}
