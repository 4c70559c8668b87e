//! The connections of one process: ramp scheduling, phase changes and snapshots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::conn::{self, ConnCtx};
use crate::plan::ConnPlan;
use crate::stats::{Phase, Snapshot, Stats};
use crate::sys;

/// Handle on the connections of this process.
pub struct Worker {
    stats: Arc<Stats>,
    cpu_at_measure: AtomicU64,
}

impl Worker {
    /// Starts ramping `plans` at `per_sec` connections per second on the current runtime.
    pub fn start(plans: Vec<ConnPlan>, ctx: ConnCtx, per_sec: f64) -> Worker {
        let stats = ctx.stats.clone();
        let ctx = Arc::new(ctx);
        tokio::spawn(ramp(plans, ctx, per_sec.max(0.001)));
        Worker {
            stats,
            cpu_at_measure: AtomicU64::new(0),
        }
    }

    /// Progress snapshot; drains the per-interval histogram.
    pub fn snapshot(&self) -> Snapshot {
        self.with_process_figures(self.stats.snapshot(false))
    }

    /// Whether every connection reached its final ramp state (subscribed or failed).
    pub fn ramp_done(&self) -> bool {
        self.stats.settled.load(Relaxed) >= self.stats.target
    }

    /// Opens the measurement window.
    pub fn start_measure(&self) {
        self.cpu_at_measure.store(sys::cpu_time_us(), Relaxed);
        self.stats.set_phase(Phase::Measure);
    }

    /// Closes the window and returns the final snapshot, including the window histogram.
    pub fn stop(&self) -> Snapshot {
        let was_measuring = self.stats.phase() == Phase::Measure;
        self.stats.set_phase(Phase::Done);
        let mut s = self.with_process_figures(self.stats.snapshot(true));
        if was_measuring {
            s.cpu_window_us = s.cpu_us.saturating_sub(self.cpu_at_measure.load(Relaxed));
        }
        s
    }

    fn with_process_figures(&self, mut s: Snapshot) -> Snapshot {
        s.cpu_us = sys::cpu_time_us();
        s.rss_bytes = sys::rss_bytes("self").unwrap_or(0);
        s.procs = 1;
        s
    }
}

/// Spawns one task per plan, spaced `1/per_sec` apart on an absolute schedule.
async fn ramp(plans: Vec<ConnPlan>, ctx: Arc<ConnCtx>, per_sec: f64) {
    let start = Instant::now();
    for (j, plan) in plans.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(j as f64 / per_sec);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        conn::spawn(plan, &ctx);
    }
}
