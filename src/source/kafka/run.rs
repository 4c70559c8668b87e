//! The consumer run loop: polls records in batches, dispatches them in poll order and commits
//! the offsets of what was handed off.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

use super::context::{commit, Context, Offsets, Shared};
use super::event::event;
use super::KafkaSource;
use crate::source::{Backpressure, Dispatcher, Source};

/// Records dispatched as one batch at most.
const BATCH: usize = 500;
/// How long one poll waits for a first record (bounds shutdown latency).
const POLL: Duration = Duration::from_millis(100);
/// How long a stopping source waits for its in-flight batches to be handed off.
const STOP_GRACE: Duration = Duration::from_secs(2);

impl Source for KafkaSource {
    /// A broker keeps what is not read: a slow route slows the source instead of losing events.
    fn backpressure(&self) -> Backpressure {
        Backpressure::Wait
    }

    fn run(self: Box<Self>, mut dispatcher: Dispatcher, shutdown: CancellationToken) {
        let name = self.name;
        let shared = Arc::new(Shared::default());
        let context = Context {
            name: name.clone(),
            shared: Arc::clone(&shared),
        };
        let consumer: BaseConsumer<Context> = match self
            .config
            .client_config()
            .create_with_context(context)
        {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::error!(datasource = %name, error = %e, "cannot create the kafka consumer");
                dispatcher
                    .health()
                    .set_down(&format!("cannot create the consumer: {e}"));
                return;
            }
        };
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        if let Err(e) = consumer.subscribe(&topics) {
            tracing::error!(datasource = %name, error = %e, "cannot subscribe");
            dispatcher
                .health()
                .set_down(&format!("cannot subscribe: {e}"));
            return;
        }
        tracing::info!(
            datasource = %name,
            group = %self.config.group_id,
            topics = ?self.config.topics,
            "kafka consumer started"
        );
        let channels: HashMap<String, Arc<str>> = self
            .config
            .topics
            .iter()
            .map(|t| (t.clone(), Arc::from(t.as_str())))
            .collect();
        let mut up = false;
        let mut stopped_by_routes = false;
        while !shutdown.is_cancelled() {
            commit(&name, &consumer, shared.take_offsets(), CommitMode::Async);
            let mut events = Vec::new();
            let mut batch: Offsets = HashMap::new();
            let mut error = None;
            let mut wait = POLL;
            while events.len() < BATCH {
                match consumer.poll(wait) {
                    None => break,
                    Some(Ok(message)) => {
                        let event = event(&channels, &message);
                        let offset = batch
                            .entry((Arc::clone(&event.channel), message.partition()))
                            .or_insert(message.offset());
                        *offset = (*offset).max(message.offset());
                        events.push(event);
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => {
                        error = Some(e);
                        break;
                    }
                }
                wait = Duration::ZERO;
            }
            // Health: broker errors take the source down (and count a reconnect, which
            // librdkafka performs itself); records, or statistics showing a settled group
            // member, bring it back.
            let mut problems = std::mem::take(&mut *shared.errors.lock());
            if let Some(e) = error {
                tracing::warn!(datasource = %name, error = %e, "kafka consume error");
                problems.push(e.to_string());
            }
            let readiness = match problems.pop() {
                Some(problem) => Some(Err(problem)),
                None if !events.is_empty() => Some(Ok(())),
                None => shared.readiness.lock().take(),
            };
            match readiness {
                Some(Ok(())) if !up => {
                    dispatcher.health().set_up();
                    up = true;
                }
                Some(Err(why)) => {
                    if up {
                        dispatcher.health().reconnecting();
                    }
                    dispatcher.health().set_down(&format!("kafka: {why}"));
                    up = false;
                }
                _ => {}
            }
            if let Some(lag) = shared.lag.lock().take() {
                dispatcher.health().set_lag(lag);
            }
            if events.is_empty() {
                continue;
            }
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
            let handed = Arc::clone(&shared);
            let alive = dispatcher.dispatch_blocking_then(events, move || {
                let mut offsets = handed.handed_off.lock();
                for (key, offset) in batch {
                    let entry = offsets.entry(key).or_insert(offset);
                    *entry = (*entry).max(offset);
                }
                drop(offsets);
                handed.in_flight.fetch_sub(1, Ordering::SeqCst);
            });
            if !alive {
                tracing::info!(datasource = %name, "no routes left; stopping");
                stopped_by_routes = true;
                break;
            }
        }
        // Commit what was handed off, giving in-flight batches a moment to be.
        let deadline = Instant::now() + STOP_GRACE;
        while !stopped_by_routes
            && shared.in_flight.load(Ordering::SeqCst) > 0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let offsets = shared.take_offsets();
        if !offsets.is_empty() {
            tracing::info!(datasource = %name, partitions = offsets.len(), "committing kafka offsets on stop");
            commit(&name, &consumer, offsets, CommitMode::Sync);
        }
        consumer.unsubscribe();
        drop(consumer);
        tracing::info!(datasource = %name, "kafka consumer stopped");
    }
}
