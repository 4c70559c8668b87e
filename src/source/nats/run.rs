//! The source's run loop: connecting, and retrying failed sessions with backoff.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::{ConnectOptions, Event};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::feed::{Feed, Link};
use super::jetstream::ack_ready;
use super::{Credentials, Ended, NatsSource, MAX_BACKOFF};
use crate::config::secrets::redact_text;
use crate::source::Dispatcher;

impl NatsSource {
    async fn connect(
        &self,
        link: mpsc::UnboundedSender<Link>,
    ) -> Result<async_nats::Client, String> {
        let name = self.name.clone();
        let base = self.reconnect_time_wait;
        let mut options = match &self.credentials {
            Credentials::None => ConnectOptions::new(),
            Credentials::UserPassword(user, password) => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Credentials::Token(token) => ConnectOptions::with_token(token.clone()),
            Credentials::CredsFile(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| format!("properties.creds_file: {e}"))?,
        };
        options = options
            .name(format!("wsgate/{}", self.name))
            .retry_on_initial_connect()
            .max_reconnects(self.max_reconnect_attempts)
            .reconnect_delay_callback(move |attempts| backoff(base, attempts))
            .event_callback(move |event| {
                match &event {
                    Event::Connected => drop(link.send(Link::Up)),
                    Event::Disconnected => drop(link.send(Link::Down("nats disconnected"))),
                    // Refused at login (a client error from the connector), or later.
                    Event::ServerError(async_nats::ServerError::AuthorizationViolation) => {
                        drop(link.send(Link::Down(REFUSED)))
                    }
                    Event::ClientError(async_nats::ClientError::Other(e))
                        if e.contains("authorization violation") =>
                    {
                        drop(link.send(Link::Down(REFUSED)))
                    }
                    _ => {}
                }
                let name = name.clone();
                async move { log_event(&name, event) }
            });
        options
            .connect(self.servers.clone())
            .await
            .map_err(|e| format!("connecting: {e}"))
    }

    pub(super) async fn serve(self, dispatcher: Dispatcher, shutdown: CancellationToken) {
        let (link_tx, link_rx) = mpsc::unbounded_channel();
        let mut feed = Feed::new(dispatcher, link_rx);
        // Ack handles of handed-off JetStream batches, in hand-off order.
        let (acks_tx, mut acks_rx) = mpsc::unbounded_channel::<Vec<jetstream::message::Acker>>();
        let mut failures: usize = 0;
        // Core NATS messages are counted across sessions: their order within this run.
        let mut counted: u64 = 0;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let ended = match self.connect(link_tx.clone()).await {
                Err(e) => Ended::Failed(e),
                Ok(client) => {
                    let ended = match &self.jetstream {
                        None => {
                            self.consume_core(&client, &mut feed, &shutdown, &mut counted)
                                .await
                        }
                        Some(settings) => {
                            self.consume_jetstream(
                                settings,
                                &client,
                                &mut feed,
                                &shutdown,
                                &acks_tx,
                                &mut acks_rx,
                                &mut failures,
                            )
                            .await
                        }
                    };
                    ack_ready(&mut acks_rx).await;
                    let _ = client.flush().await;
                    ended
                }
            };
            match ended {
                Ended::Stopped => break,
                Ended::Failed(reason) => {
                    failures += 1;
                    feed.health().set_down(&reason);
                    feed.health().reconnecting();
                    let pause = backoff(self.reconnect_time_wait, failures);
                    let reason = redact_text(&reason);
                    tracing::warn!(
                        datasource = %self.name,
                        %reason,
                        retry_in_ms = pause.as_millis() as u64,
                        "nats source session failed"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    // Link changes of the failed session's client no longer matter.
                    while feed.link.try_recv().is_ok() {}
                }
            }
        }
        ack_ready(&mut acks_rx).await;
        tracing::info!(datasource = %self.name, "nats source stopped");
    }
}

/// `base * 2^(attempt-1)`, capped, with ±25 % jitter.
pub(super) fn backoff(base: Duration, attempts: usize) -> Duration {
    let exponent = attempts.saturating_sub(1).min(16) as u32;
    let delay = base.saturating_mul(1u32 << exponent).min(MAX_BACKOFF);
    let jitter = rand::rng().random_range(0.75..1.25);
    delay.mul_f64(jitter).min(MAX_BACKOFF)
}

/// Why the source is down while the server refuses its credentials.
const REFUSED: &str = "nats refused the credentials";

fn log_event(name: &str, event: Event) {
    match event {
        Event::Connected => tracing::info!(datasource = %name, "nats connected"),
        Event::Disconnected => tracing::warn!(datasource = %name, "nats disconnected"),
        Event::Closed => tracing::warn!(datasource = %name, "nats connection closed"),
        other => {
            let event = other.to_string();
            let event = redact_text(&event);
            tracing::warn!(datasource = %name, %event, "nats connection event")
        }
    }
}
