//! The consumer's librdkafka context (statistics, client errors, rebalances, commit results)
//! and the state it and the hand-off callbacks share with the run loop.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::secrets::redact_text;

/// Offsets handed off and not yet committed: the highest per (topic, partition).
pub(super) type Offsets = HashMap<(Arc<str>, i32), i64>;

/// What librdkafka's callbacks (run on the consumer thread, inside `poll`) and the hand-off
/// callbacks (run on route threads) share with the consumer loop.
#[derive(Default)]
pub(super) struct Shared {
    /// Handed off, not yet committed.
    pub(super) handed_off: Mutex<Offsets>,
    /// Batches dispatched and not yet handed off.
    pub(super) in_flight: AtomicUsize,
    /// Broker errors since the loop last looked.
    pub(super) errors: Mutex<Vec<String>>,
    /// Whether the last statistics showed the consumer able to consume, or why not.
    pub(super) readiness: Mutex<Option<Result<(), String>>>,
    /// Uncommitted records of the assigned partitions, from the last statistics.
    pub(super) lag: Mutex<Option<u64>>,
}

impl Shared {
    pub(super) fn take_offsets(&self) -> Offsets {
        std::mem::take(&mut *self.handed_off.lock())
    }
}

pub(super) struct Context {
    pub(super) name: String,
    pub(super) shared: Arc<Shared>,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        *self.shared.readiness.lock() = Some(readiness(&statistics));
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.desired && p.consumer_lag > 0)
            .map(|p| p.consumer_lag)
            .sum();
        *self.shared.lag.lock() = Some(lag.max(0) as u64);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let text = error.to_string();
        let (shown, reason) = (redact_text(&text), redact_text(reason));
        tracing::warn!(datasource = %self.name, error = %shown, %reason, "kafka client error");
        let serious = match &error {
            KafkaError::Global(code) => matches!(
                code,
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::Resolve
                    | RDKafkaErrorCode::Fatal
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::SSL
            ),
            _ => false,
        };
        if serious {
            self.shared.errors.lock().push(format!("{shown}: {reason}"));
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            // Partitions may move to another member: commit what was handed off while this
            // member still owns them.
            commit(
                &self.name,
                consumer,
                self.shared.take_offsets(),
                CommitMode::Sync,
            );
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(
                    datasource = %self.name,
                    partitions = tpl.count(),
                    "kafka partitions assigned"
                );
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(
                    datasource = %self.name,
                    partitions = tpl.count(),
                    "kafka partitions revoked"
                );
            }
            Rebalance::Error(e) => {
                tracing::warn!(datasource = %self.name, error = %e, "kafka rebalance failed");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(
                datasource = %self.name,
                error = %e,
                offsets = ?offsets.to_topic_map(),
                "kafka offset commit failed"
            );
        }
    }
}

/// Whether `statistics` show a consumer that can consume: a broker connection up and, in a
/// group, a member whose assignment has settled. Until then a restarted broker is not enough:
/// the member must rejoin the group before it fetches anything.
pub(super) fn readiness(statistics: &Statistics) -> Result<(), String> {
    let broker_up = statistics
        .brokers
        .values()
        .any(|b| b.nodeid >= 0 && b.state == "UP");
    if !broker_up {
        return Err("no broker connection is up".into());
    }
    match &statistics.cgrp {
        Some(group) if group.state != "up" || group.join_state != "steady" => Err(format!(
            "joining the consumer group (state {}, join state {})",
            group.state, group.join_state
        )),
        _ => Ok(()),
    }
}

/// Commits `offset + 1` for every handed-off (topic, partition).
pub(super) fn commit(
    name: &str,
    consumer: &BaseConsumer<Context>,
    offsets: Offsets,
    mode: CommitMode,
) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, partition), offset) in &offsets {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(offset + 1)) {
            tracing::warn!(datasource = %name, error = %e, "invalid offset to commit");
        }
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            tracing::debug!(datasource = %name, offsets = ?tpl.to_topic_map(), "kafka offsets committed")
        }
        Err(e) => tracing::warn!(datasource = %name, error = %e, "kafka offset commit failed"),
    }
}
