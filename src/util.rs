//! Small helpers shared across modules.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// At most `per_sec` log lines per second; callers count the rest in metrics.
pub struct LogLimit {
    per_sec: u32,
    window: Option<std::time::Instant>,
    lines: u32,
}

impl LogLimit {
    /// A limit of `per_sec` lines per second.
    pub fn per_sec(per_sec: u32) -> Self {
        LogLimit {
            per_sec,
            window: None,
            lines: 0,
        }
    }

    /// True when one more line may be logged now.
    pub fn allow(&mut self) -> bool {
        let now = std::time::Instant::now();
        match self.window {
            Some(start) if now.duration_since(start) < std::time::Duration::from_secs(1) => {}
            _ => {
                self.window = Some(now);
                self.lines = 0;
            }
        }
        self.lines += 1;
        self.lines <= self.per_sec
    }
}
