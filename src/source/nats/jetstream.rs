//! JetStream: the durable pull consumer (rewound to its ack floor when a session starts) and
//! the acknowledgement of handed-off batches.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::feed::Feed;
use super::message::to_event;
use super::{Deliver, Ended, JetStreamSettings, NatsSource, MAX_BATCH};
use crate::source::Position;
use crate::util::now_us;

impl NatsSource {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn consume_jetstream(
        &self,
        settings: &JetStreamSettings,
        client: &async_nats::Client,
        feed: &mut Feed,
        shutdown: &CancellationToken,
        acks_tx: &mpsc::UnboundedSender<Vec<jetstream::message::Acker>>,
        acks_rx: &mut mpsc::UnboundedReceiver<Vec<jetstream::message::Acker>>,
        failures: &mut usize,
    ) -> Ended {
        let context = jetstream::new(client.clone());
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return Ended::Stopped,
            stream = context.get_stream(&settings.stream) => match stream {
                Ok(stream) => stream,
                Err(e) => return Ended::Failed(format!("stream `{}`: {e}", settings.stream)),
            },
        };
        let mut config = pull::Config {
            durable_name: Some(settings.durable.clone()),
            deliver_policy: match settings.deliver {
                Deliver::All => DeliverPolicy::All,
                Deliver::New => DeliverPolicy::New,
            },
            ack_policy: AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            ..Default::default()
        };
        // One subject goes in `filter_subject`, which every JetStream server understands;
        // several need `filter_subjects` (nats-server 2.10+).
        if let [one] = self.subjects.as_slice() {
            config.filter_subject = one.clone();
        } else {
            config.filter_subjects = self.subjects.clone();
        }
        let mut consumer: jetstream::consumer::PullConsumer = tokio::select! {
            _ = shutdown.cancelled() => return Ended::Stopped,
            consumer = stream.get_or_create_consumer(&settings.durable, config.clone()) => {
                match consumer {
                    Ok(consumer) => consumer,
                    Err(e) => {
                        return Ended::Failed(format!("consumer `{}`: {e}", settings.durable))
                    }
                }
            }
        };
        // Deliveries still awaiting an ack belong to a session that is gone (a crashed
        // gateway, a lost connection). JetStream would redeliver them only after `ack_wait`,
        // behind newer messages: rewind the consumer to its ack floor instead, so the stream
        // resumes in order from the first message not handed off.
        let info = match consumer.info().await {
            Ok(info) => info.clone(),
            Err(e) => return Ended::Failed(format!("consumer `{}` info: {e}", settings.durable)),
        };
        let floor = info.ack_floor.stream_sequence;
        if info.num_ack_pending > 0 && (floor > 0 || settings.deliver == Deliver::All) {
            tracing::info!(
                datasource = %self.name,
                durable = %settings.durable,
                unacked = info.num_ack_pending,
                resume_at = floor + 1,
                "rewinding durable consumer to its ack floor"
            );
            if let Err(e) = stream.delete_consumer(&settings.durable).await {
                return Ended::Failed(format!("rewinding `{}`: {e}", settings.durable));
            }
            config.deliver_policy = DeliverPolicy::ByStartSequence {
                start_sequence: floor + 1,
            };
            consumer = match stream.create_consumer(config).await {
                Ok(consumer) => consumer,
                Err(e) => return Ended::Failed(format!("recreating `{}`: {e}", settings.durable)),
            };
        }
        let messages = consumer
            .stream()
            .max_messages_per_batch(MAX_BATCH)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(e) => return Ended::Failed(format!("pulling from `{}`: {e}", settings.durable)),
        };
        tracing::info!(
            datasource = %self.name,
            stream = %settings.stream,
            durable = %settings.durable,
            subjects = ?self.subjects,
            "nats jetstream consumer open"
        );
        *failures = 0;
        feed.health().set_up();
        let mut lag_tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ended::Stopped,
                Some(ackers) = acks_rx.recv() => {
                    ack_all(ackers).await;
                    continue;
                }
                _ = lag_tick.tick() => {
                    // Not yet delivered plus delivered and not yet acknowledged.
                    if let Ok(info) = consumer.get_info().await {
                        feed.health().set_lag(info.num_pending + info.num_ack_pending as u64);
                    }
                    continue;
                }
                Some(link) = feed.link.recv() => {
                    feed.note(link);
                    continue;
                }
                message = messages.next() => message,
            };
            let first = match first {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Ended::Failed(format!("pulling: {e}")),
                None => return Ended::Failed("consumer stream ended".to_string()),
            };
            let mut batch = Vec::with_capacity(16);
            let mut ackers = Vec::with_capacity(16);
            let mut push = |message: jetstream::Message| {
                let (position, timestamp_us) = match message.info() {
                    Ok(info) => (
                        Position::JetStream {
                            sequence: info.stream_sequence,
                        },
                        (info.published.unix_timestamp_nanos() / 1_000) as i64,
                    ),
                    // Not a consumer's message (no stream sequence in its reply subject):
                    // delivered in arrival order, without a redelivery check.
                    Err(_) => (Position::Counted(0), now_us()),
                };
                let (message, acker) = message.split();
                ackers.push(acker);
                batch.push(to_event(message, position, timestamp_us));
            };
            push(first);
            for _ in 1..MAX_BATCH {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => push(message),
                    _ => break,
                }
            }
            let handed_off = acks_tx.clone();
            let alive = feed
                .dispatch(batch, move || {
                    // The loop acknowledges them; if it is gone, JetStream redelivers.
                    let _ = handed_off.send(ackers);
                })
                .await;
            if !alive {
                return Ended::Stopped;
            }
        }
    }
}

/// Acknowledges every batch already handed off.
pub(super) async fn ack_ready(acks: &mut mpsc::UnboundedReceiver<Vec<jetstream::message::Acker>>) {
    while let Ok(ackers) = acks.try_recv() {
        ack_all(ackers).await;
    }
}

async fn ack_all(ackers: Vec<jetstream::message::Acker>) {
    for acker in ackers {
        if let Err(e) = acker.ack().await {
            // Not acknowledged: JetStream redelivers it after `ack_wait`.
            tracing::debug!(error = %e, "jetstream ack failed");
        }
    }
}
