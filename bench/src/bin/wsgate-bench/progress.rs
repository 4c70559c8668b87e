//! The once-per-second progress line on stderr.

use std::time::Instant;

use crate::hist::decode_hist;
use crate::stats::Snapshot;

/// Prints progress lines and remembers what it needs for per-second rates.
pub struct Progress {
    start: Instant,
    target: usize,
    last: Option<(Instant, u64)>,
    quiet: bool,
}

impl Progress {
    /// A progress printer for `target` connections; `quiet` suppresses output.
    pub fn new(target: usize, quiet: bool) -> Self {
        Progress {
            start: Instant::now(),
            target,
            last: None,
            quiet,
        }
    }

    /// Prints one line for `s` (whose interval histogram covers the last second).
    pub fn print(&mut self, phase: &str, s: &Snapshot) {
        let now = Instant::now();
        let rate = match self.last {
            Some((t, msgs)) => {
                let dt = now.duration_since(t).as_secs_f64().max(1e-3);
                s.total.msgs.saturating_sub(msgs) as f64 / dt
            }
            None => 0.0,
        };
        self.last = Some((now, s.total.msgs));
        if self.quiet {
            return;
        }
        let h = decode_hist(&s.interval_hist);
        let p99 = if h.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3}ms", h.value_at_quantile(0.99) as f64 / 1e3)
        };
        let a = &s.anomalies;
        eprintln!(
            "[{:>5.0}s {:<7}] conn {}/{} sub {} fail {} | {:>9.0} msg/s p99 {} | lost {} dup {} \
             | closed {} err {}",
            self.start.elapsed().as_secs_f64(),
            phase,
            s.connected,
            self.target,
            s.subscribed,
            s.failed,
            rate,
            p99,
            s.total.lost,
            s.total.dups,
            s.closed_early,
            s.connect_errors + a.bad_msgs + a.ms_stamps + a.unknown_stream,
        );
    }
}
