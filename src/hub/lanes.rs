//! Fan-out lanes: tasks on the runtime's workers that push each batch to subscribers and wake
//! them.
//!
//! Every lane owns a fixed subset of each topic's subscriber shards, so lanes work in parallel
//! without sharing a lock, each keeps its batches in order, and the connections it wakes land
//! in its worker's local run queue rather than in the runtime's shared injection queue.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Delivery, FanOut, Topic};
use crate::metrics::Metrics;

/// A batch for the lanes: each message with the topic it goes to.
pub type Batch = Arc<[(Arc<Topic>, Arc<Delivery>)]>;

/// Batches queued per lane before publishers wait.
const LANE_QUEUE: usize = 1024;

/// The senders of the running lanes.
pub struct Lanes {
    senders: Vec<mpsc::Sender<Batch>>,
}

impl Lanes {
    /// Starts `count` lanes on the current runtime.
    pub fn start(count: usize, metrics: Arc<Metrics>) -> Self {
        let count = count.max(1);
        let senders = (0..count)
            .map(|lane| {
                let (tx, rx) = mpsc::channel(LANE_QUEUE);
                tokio::spawn(run(lane, count, rx, Arc::clone(&metrics)));
                tx
            })
            .collect();
        Lanes { senders }
    }

    /// Gives `batch` to every lane, in order with earlier batches.
    pub async fn send(&self, batch: Batch) {
        for sender in &self.senders {
            // A lane only stops with the runtime; nothing is left to deliver to then.
            let _ = sender.send(Arc::clone(&batch)).await;
        }
    }
}

async fn run(lane: usize, lanes: usize, mut batches: mpsc::Receiver<Batch>, metrics: Arc<Metrics>) {
    let slow = metrics
        .messages_dropped
        .with_label_values(&["slow_consumer"]);
    while let Some(batch) = batches.recv().await {
        let mut touched: Vec<&Arc<Topic>> = Vec::with_capacity(batch.len());
        let mut counts = FanOut::default();
        for (topic, delivery) in batch.iter() {
            let fanned = topic.fan_out(delivery, lane, lanes);
            counts.overflowed += fanned.overflowed;
            counts.refused += fanned.refused;
            if !touched.iter().any(|t| Arc::ptr_eq(t, topic)) {
                touched.push(topic);
            }
        }
        for topic in touched.drain(..) {
            topic.wake(lane, lanes);
        }
        let dropped = counts.overflowed + counts.refused;
        if dropped > 0 {
            slow.inc_by(dropped as u64);
        }
    }
}
