//! The demo exchange as the trade backend: in process for an embedded node, and as the NATS
//! responder of a cluster (run by the node whose demo market is live, so requests take the same
//! request/reply path an exchange's real backend would).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Backend, TradeReply, TradeRequest};
use crate::source::demo::exchange::{self, DemoExchange};
use crate::util::now_ms;

/// The queue group the responders of a cluster share: each request is answered once.
const QUEUE_GROUP: &str = "wsgate-demo-exchange";

/// Carries out `method` for `user` on `exchange`.
fn answer(exchange: &DemoExchange, method: &str, user: &str, params: &str) -> TradeReply {
    let params: Value = serde_json::from_str(params).unwrap_or(Value::Null);
    match exchange.handle(method, user, &params, now_ms() as i64) {
        Ok(result) => TradeReply::ok(
            RawValue::from_string(result.to_string()).expect("a result serializes as JSON"),
        ),
        Err(exchange::Rejected(code, msg)) => TradeReply::error(400, code, msg),
    }
}

/// The demo exchange of this process, in process.
pub struct DemoBackend;

impl Backend for DemoBackend {
    fn call<'a>(&'a self, request: &'a TradeRequest<'a>, _: Duration) -> BoxFuture<'a, TradeReply> {
        let reply = match exchange::live_exchange() {
            Some(exchange) => answer(
                &exchange,
                request.method,
                request.user_id,
                request.params.get(),
            ),
            None => TradeReply::unavailable(),
        };
        Box::pin(std::future::ready(reply))
    }
}

/// A trade request as the responder reads it.
#[derive(Deserialize)]
struct Incoming<'a> {
    method: &'a str,
    user_id: &'a str,
    #[serde(borrow)]
    params: &'a RawValue,
}

/// Answers trade requests on `<prefix>.>` while this node's demo market is live, until `stop`.
pub async fn respond(client: async_nats::Client, prefix: String, stop: CancellationToken) {
    let subject = format!("{prefix}.>");
    while !stop.is_cancelled() {
        let Some(exchange) = exchange::live_exchange() else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                _ = stop.cancelled() => return,
            }
        };
        let mut requests = match client
            .queue_subscribe(subject.clone(), QUEUE_GROUP.into())
            .await
        {
            Ok(requests) => requests,
            Err(e) => {
                tracing::warn!(%subject, error = %e, "demo exchange cannot subscribe");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(%subject, "demo exchange answering trade requests");
        serve(&client, &mut requests, &exchange, &stop).await;
        let _ = requests.unsubscribe().await;
    }
}

/// Answers requests while `exchange` stays live.
async fn serve(
    client: &async_nats::Client,
    requests: &mut async_nats::Subscriber,
    exchange: &Arc<DemoExchange>,
    stop: &CancellationToken,
) {
    loop {
        let message = tokio::select! {
            message = requests.next() => message,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if exchange.is_live() { continue } else { return }
            }
            _ = stop.cancelled() => return,
        };
        let Some(message) = message else { return };
        let Some(reply_to) = message.reply else {
            continue;
        };
        let reply = match serde_json::from_slice::<Incoming<'_>>(&message.payload) {
            Ok(request) => answer(
                exchange,
                request.method,
                request.user_id,
                request.params.get(),
            ),
            Err(_) => TradeReply::error(400, -1102, "Malformed trade request."),
        };
        let body = serde_json::to_vec(&reply).expect("a reply serializes");
        if let Err(e) = client.publish(reply_to, body.into()).await {
            tracing::warn!(error = %e, "demo exchange cannot reply");
        }
    }
}
