//! Shared counters and latency histograms of one process, and their serializable snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::gap::Verdict;
use crate::hist::{encode_hist, new_hist, HistPairs, HIST_LOW};

/// Measurement phase of a process.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Ramp and warmup: nothing goes into the window figures.
    Prepare = 0,
    /// Measurement window.
    Measure = 1,
    /// After the window.
    Done = 2,
}

/// Message-flow counters (plain values).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flow {
    /// Data messages delivered.
    pub msgs: u64,
    /// Ids missing in per-stream sequences.
    pub lost: u64,
    /// Number of places where ids were missing.
    pub gaps: u64,
    /// Duplicated or out-of-order events.
    pub dups: u64,
}

#[derive(Default)]
struct AtomicFlow {
    msgs: AtomicU64,
    lost: AtomicU64,
    gaps: AtomicU64,
    dups: AtomicU64,
}

impl AtomicFlow {
    fn add(&self, v: Verdict) {
        self.msgs.fetch_add(1, Relaxed);
        if v.lost > 0 {
            self.lost.fetch_add(v.lost, Relaxed);
            self.gaps.fetch_add(1, Relaxed);
        }
        if v.dup > 0 {
            self.dups.fetch_add(v.dup, Relaxed);
        }
    }

    fn load(&self) -> Flow {
        Flow {
            msgs: self.msgs.load(Relaxed),
            lost: self.lost.load(Relaxed),
            gaps: self.gaps.load(Relaxed),
            dups: self.dups.load(Relaxed),
        }
    }
}

/// Anomalies in received messages.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Anomalies {
    /// Frames that were not valid JSON events.
    pub bad_msgs: u64,
    /// Events whose `E` looks like milliseconds (server ignored `timeUnit=MICROSECOND`).
    pub ms_stamps: u64,
    /// Events without `E` (e.g. bookTicker, partial depth): counted, not timed.
    pub no_stamp: u64,
    /// Events stamped in the future (clock skew): recorded as 1 µs.
    pub future_stamps: u64,
    /// Events of a stream the connection did not subscribe to.
    pub unknown_stream: u64,
}

/// Live counters shared by all connection tasks of one process.
pub struct Stats {
    /// Connections this process should open.
    pub target: u64,
    /// Open WebSocket connections (handshake done, not closed).
    pub connected: AtomicU64,
    /// Open connections whose subscription is confirmed.
    pub subscribed: AtomicU64,
    /// Connections that reached a final ramp state (subscribed or given up).
    pub settled: AtomicU64,
    /// Connections that gave up after all retries.
    pub failed: AtomicU64,
    /// Failed connect attempts (including ones later retried successfully).
    pub connect_errors: AtomicU64,
    /// Connections closed by the peer or by an error before the end.
    pub closed_early: AtomicU64,
    /// Connections that received at least one data event in the measurement window.
    pub receiving: AtomicU64,
    phase: AtomicU8,
    total: AtomicFlow,
    window: AtomicFlow,
    bad_msgs: AtomicU64,
    ms_stamps: AtomicU64,
    no_stamp: AtomicU64,
    future_stamps: AtomicU64,
    unknown_stream: AtomicU64,
    reasons: Mutex<BTreeMap<String, u64>>,
    hists: Mutex<Hists>,
}

struct Hists {
    interval: Histogram<u64>,
    window: Histogram<u64>,
}

impl Stats {
    /// Fresh counters for `target` connections.
    pub fn new(target: u64) -> Self {
        Stats {
            target,
            connected: AtomicU64::new(0),
            subscribed: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            closed_early: AtomicU64::new(0),
            receiving: AtomicU64::new(0),
            phase: AtomicU8::new(Phase::Prepare as u8),
            total: AtomicFlow::default(),
            window: AtomicFlow::default(),
            bad_msgs: AtomicU64::new(0),
            ms_stamps: AtomicU64::new(0),
            no_stamp: AtomicU64::new(0),
            future_stamps: AtomicU64::new(0),
            unknown_stream: AtomicU64::new(0),
            reasons: Mutex::new(BTreeMap::new()),
            hists: Mutex::new(Hists {
                interval: new_hist(),
                window: new_hist(),
            }),
        }
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Relaxed) {
            0 => Phase::Prepare,
            1 => Phase::Measure,
            _ => Phase::Done,
        }
    }

    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Relaxed);
    }

    /// Records one delivered data event: its latency (µs) if it carried a stamp, and the
    /// verdict of its sequence check.
    pub fn record_event(&self, latency_us: Option<u64>, verdict: Verdict) {
        let in_window = self.phase() == Phase::Measure;
        self.total.add(verdict);
        if in_window {
            self.window.add(verdict);
        }
        if let Some(lat) = latency_us {
            let mut h = self.hists.lock().unwrap_or_else(|e| e.into_inner());
            h.interval.saturating_record(lat.max(HIST_LOW));
            if in_window {
                h.window.saturating_record(lat.max(HIST_LOW));
            }
        }
    }

    /// Counts a frame that could not be parsed as an event.
    pub fn bad_msg(&self) {
        self.bad_msgs.fetch_add(1, Relaxed);
    }

    /// Counts an event whose `E` looks like milliseconds.
    pub fn ms_stamp(&self) {
        self.ms_stamps.fetch_add(1, Relaxed);
    }

    /// Counts an event without `E`.
    pub fn no_stamp(&self) {
        self.no_stamp.fetch_add(1, Relaxed);
    }

    /// Counts an event stamped in the future.
    pub fn future_stamp(&self) {
        self.future_stamps.fetch_add(1, Relaxed);
    }

    /// Counts an event of an unexpected stream.
    pub fn unknown_stream(&self) {
        self.unknown_stream.fetch_add(1, Relaxed);
    }

    /// Counts an early close under `code` (a close code or a short reason).
    pub fn closed(&self, code: String) {
        if self.phase() == Phase::Done {
            return;
        }
        self.closed_early.fetch_add(1, Relaxed);
        self.reason(format!("close:{code}"));
    }

    /// Counts a failed connect attempt under `kind`.
    pub fn connect_error(&self, kind: String) {
        self.connect_errors.fetch_add(1, Relaxed);
        self.reason(format!("connect:{kind}"));
    }

    fn reason(&self, key: String) {
        let mut m = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(key).or_default() += 1;
    }

    /// Takes a snapshot; the interval histogram is drained, the window histogram is
    /// included only when `with_window` is set.
    pub fn snapshot(&self, with_window: bool) -> Snapshot {
        let (interval_hist, window_hist) = {
            let mut h = self.hists.lock().unwrap_or_else(|e| e.into_inner());
            let interval = encode_hist(&h.interval);
            h.interval.reset();
            (interval, with_window.then(|| encode_hist(&h.window)))
        };
        Snapshot {
            target: self.target,
            connected: self.connected.load(Relaxed),
            subscribed: self.subscribed.load(Relaxed),
            settled: self.settled.load(Relaxed),
            failed: self.failed.load(Relaxed),
            connect_errors: self.connect_errors.load(Relaxed),
            closed_early: self.closed_early.load(Relaxed),
            receiving: self.receiving.load(Relaxed),
            total: self.total.load(),
            window: self.window.load(),
            anomalies: Anomalies {
                bad_msgs: self.bad_msgs.load(Relaxed),
                ms_stamps: self.ms_stamps.load(Relaxed),
                no_stamp: self.no_stamp.load(Relaxed),
                future_stamps: self.future_stamps.load(Relaxed),
                unknown_stream: self.unknown_stream.load(Relaxed),
            },
            reasons: self
                .reasons
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            interval_hist,
            window_hist,
            ..Snapshot::default()
        }
    }
}

/// Counters of one process (or the sum over processes) at one moment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Connections to open.
    pub target: u64,
    /// Open WebSocket connections.
    pub connected: u64,
    /// Open, subscribed connections.
    pub subscribed: u64,
    /// Connections that finished ramping (subscribed or failed).
    pub settled: u64,
    /// Connections that gave up.
    pub failed: u64,
    /// Failed connect attempts.
    pub connect_errors: u64,
    /// Connections closed before the end.
    pub closed_early: u64,
    /// Connections that received data in the measurement window.
    #[serde(default)]
    pub receiving: u64,
    /// Flow since start.
    pub total: Flow,
    /// Flow in the measurement window.
    pub window: Flow,
    /// Message anomalies since start.
    pub anomalies: Anomalies,
    /// Early closes (`close:<code>`) and failed connect attempts (`connect:<kind>`).
    pub reasons: BTreeMap<String, u64>,
    /// Latencies since the previous snapshot.
    pub interval_hist: HistPairs,
    /// Latencies of the measurement window (final snapshot only).
    pub window_hist: Option<HistPairs>,
    /// CPU time (user + system) of the process(es), µs.
    pub cpu_us: u64,
    /// CPU time spent during the measurement window, µs.
    pub cpu_window_us: u64,
    /// Resident set size of the process(es), bytes.
    pub rss_bytes: u64,
    /// Number of processes summed in this snapshot.
    pub procs: u64,
}

impl Snapshot {
    /// Whether every connection reached its final ramp state.
    pub fn ramp_done(&self) -> bool {
        self.settled >= self.target
    }

    /// Adds `o` into `self` (counters summed, histograms and close codes merged).
    pub fn merge(&mut self, o: &Snapshot) {
        self.target += o.target;
        self.connected += o.connected;
        self.subscribed += o.subscribed;
        self.settled += o.settled;
        self.failed += o.failed;
        self.connect_errors += o.connect_errors;
        self.closed_early += o.closed_early;
        self.receiving += o.receiving;
        for (a, b) in [(&mut self.total, o.total), (&mut self.window, o.window)] {
            a.msgs += b.msgs;
            a.lost += b.lost;
            a.gaps += b.gaps;
            a.dups += b.dups;
        }
        let (a, b) = (&mut self.anomalies, o.anomalies);
        a.bad_msgs += b.bad_msgs;
        a.ms_stamps += b.ms_stamps;
        a.no_stamp += b.no_stamp;
        a.future_stamps += b.future_stamps;
        a.unknown_stream += b.unknown_stream;
        for (k, v) in &o.reasons {
            *self.reasons.entry(k.clone()).or_default() += v;
        }
        self.interval_hist.extend_from_slice(&o.interval_hist);
        if let Some(w) = &o.window_hist {
            self.window_hist
                .get_or_insert_with(Vec::new)
                .extend_from_slice(w);
        }
        self.cpu_us += o.cpu_us;
        self.cpu_window_us += o.cpu_window_us;
        self.rss_bytes += o.rss_bytes;
        self.procs += o.procs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::decode_hist;

    #[test]
    fn snapshots_merge() {
        let s = Stats::new(10);
        s.record_event(Some(100), Verdict::default());
        s.set_phase(Phase::Measure);
        s.record_event(Some(200), Verdict { lost: 3, dup: 0 });
        s.record_event(None, Verdict { lost: 0, dup: 1 });
        s.closed("1008".into());
        let one = s.snapshot(true);
        assert_eq!(one.total.msgs, 3);
        assert_eq!(one.window.msgs, 2);
        assert_eq!(one.window.lost, 3);
        assert_eq!(one.window.gaps, 1);
        assert_eq!(one.window.dups, 1);
        assert_eq!(one.interval_hist.iter().map(|p| p[1]).sum::<u64>(), 2);
        assert_eq!(decode_hist(one.window_hist.as_ref().unwrap()).len(), 1);
        // Interval histogram drains.
        assert!(s.snapshot(false).interval_hist.is_empty());
        let mut sum = Snapshot::default();
        sum.merge(&one);
        sum.merge(&one);
        assert_eq!(sum.target, 20);
        assert_eq!(sum.window.lost, 6);
        assert_eq!(sum.reasons["close:1008"], 2);
        assert_eq!(decode_hist(sum.window_hist.as_ref().unwrap()).len(), 2);
        assert_eq!(decode_hist(&sum.interval_hist).len(), 4);
    }
}
