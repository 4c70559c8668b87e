//! Fan-out lanes: one thread per core that pushes each batch to its subscribers and writes
//! their sockets (docs/fan-out.md).
//!
//! A lane writes the connections it fed itself, once per turn, when they lent it their socket
//! (see [`super::wire`]); it wakes the others. A lane behind takes every batch waiting (up to
//! [`BATCHES_PER_TURN`]) in one turn, so a subscriber gets them all in one write.
//!
//! Every lane owns a fixed subset of each topic's subscriber shards, so lanes work in parallel
//! without sharing a lock, and each keeps its batches in order. Lanes are threads of their own,
//! not runtime tasks: the kernel runs them on separate cores, and a turn that writes thousands
//! of sockets never holds up a runtime worker's other tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Delivery, FanOut, Flushed, Topic};
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
    /// Starts `count` lanes, each on a thread of its own; a lane ends when its [`Lanes`] is
    /// dropped.
    pub fn start(count: usize, metrics: Arc<Metrics>) -> Self {
        let count = count.max(1);
        let senders = (0..count)
            .map(|lane| {
                let (tx, rx) = mpsc::channel(LANE_QUEUE);
                let metrics = Arc::clone(&metrics);
                std::thread::Builder::new()
                    .name(format!("wsgate-lane-{lane}"))
                    .spawn(move || run(lane, count, rx, metrics))
                    .expect("the lane's thread starts");
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

/// The topic of every message of `messages`, if they all have the same.
fn one_topic<'a>(
    mut messages: impl Iterator<Item = &'a (Arc<Topic>, Arc<Delivery>)>,
) -> Option<&'a Arc<Topic>> {
    let (first, _) = messages.next()?;
    messages
        .all(|(topic, _)| Arc::ptr_eq(topic, first))
        .then_some(first)
}

/// Batches a lane takes together at most when several wait: their messages reach each
/// subscriber in one write.
const BATCHES_PER_TURN: usize = 64;

fn run(lane: usize, lanes: usize, mut batches: mpsc::Receiver<Batch>, metrics: Arc<Metrics>) {
    let slow = metrics
        .messages_dropped
        .with_label_values(&["slow_consumer"]);
    let mut taken = Vec::with_capacity(BATCHES_PER_TURN);
    let mut deliveries = Vec::new();
    while batches.blocking_recv_many(&mut taken, BATCHES_PER_TURN) > 0 {
        let turn = Instant::now();
        let mut messages = taken.iter().flat_map(|batch| batch.iter());
        let (counts, flushed) = match one_topic(messages.clone()) {
            // The whole turn is one stream's: each subscriber is fed and written in one visit.
            Some(topic) => {
                deliveries.extend(messages.map(|(_, delivery)| Arc::clone(delivery)));
                let done = topic.deliver(&deliveries, lane, lanes);
                deliveries.clear();
                done
            }
            // Several streams: every message is queued first, so a subscriber of several gets
            // them all in one write.
            None => {
                let mut counts = FanOut::default();
                let mut touched: Vec<&Arc<Topic>> = Vec::new();
                for (topic, delivery) in messages.by_ref() {
                    counts += topic.fan_out(delivery, lane, lanes);
                    if !touched.iter().any(|t| Arc::ptr_eq(t, topic)) {
                        touched.push(topic);
                    }
                }
                let mut flushed = Flushed::default();
                for topic in &touched {
                    flushed += topic.wake(lane, lanes);
                }
                (counts, flushed)
            }
        };
        if flushed.sends > 0 {
            metrics.socket_writes.inc_by(flushed.sends as u64);
            metrics.messages_out.inc_by(flushed.frames as u64);
        }
        let dropped = counts.overflowed + counts.refused;
        if dropped > 0 {
            slow.inc_by(dropped as u64);
        }
        taken.clear();
        let took = turn.elapsed();
        if took >= PACE_FROM {
            std::thread::sleep(took.mul_f64(PACE));
        }
    }
}

/// A turn that took this long is followed by a pause...
const PACE_FROM: Duration = Duration::from_millis(2);
/// ... of this share of its length.
const PACE: f64 = 1.0;
