//! A source's connection state, for `/readyz` and the metrics: up, or down with the reason.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge};

/// The health of one running datasource. Sources report through it; the node reads it.
pub struct SourceHealth {
    name: String,
    up: AtomicBool,
    /// Down on purpose: another region consumes the datasource.
    standby: AtomicBool,
    reason: Mutex<String>,
    up_gauge: IntGauge,
    reconnects: IntCounter,
    lag: Option<IntGauge>,
    standby_gauge: Option<IntGauge>,
}

impl SourceHealth {
    /// A source that has not connected yet (down, "starting").
    pub fn new(name: &str, up_gauge: IntGauge, reconnects: IntCounter) -> Self {
        up_gauge.set(0);
        SourceHealth {
            name: name.to_string(),
            up: AtomicBool::new(false),
            standby: AtomicBool::new(false),
            reason: Mutex::new("starting".to_string()),
            up_gauge,
            reconnects,
            lag: None,
            standby_gauge: None,
        }
    }

    /// Reports the source's lag on `gauge`.
    pub fn with_lag_gauge(mut self, gauge: IntGauge) -> Self {
        self.lag = Some(gauge);
        self
    }

    /// Reports standing by ([`set_standby`](Self::set_standby)) on `gauge`.
    pub fn with_standby_gauge(mut self, gauge: IntGauge) -> Self {
        gauge.set(0);
        self.standby_gauge = Some(gauge);
        self
    }

    /// Events the upstream holds for this source that are not yet acknowledged: delivered but
    /// not handed off, plus not yet delivered (JetStream pending, Redis pending + lag).
    pub fn set_lag(&self, events: u64) {
        if let Some(gauge) = &self.lag {
            gauge.set(events as i64);
        }
    }

    /// A health record that reports to nothing (tests, tools).
    pub fn detached(name: &str) -> Self {
        let gauge = IntGauge::new("detached_up", "unregistered").expect("valid metric");
        let counter = IntCounter::new("detached_reconnects", "unregistered").expect("valid metric");
        SourceHealth::new(name, gauge, counter)
    }

    /// The datasource's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source is connected and consuming.
    pub fn set_up(&self) {
        self.mark_standby(false);
        if !self.up.swap(true, Ordering::SeqCst) {
            self.up_gauge.set(1);
            tracing::info!(datasource = %self.name, "source up");
        }
    }

    /// The source lost its upstream (or cannot reach it); `reason` says why (shown in `/readyz`
    /// and the log with any URL credentials redacted).
    pub fn set_down(&self, reason: &str) {
        self.mark_standby(false);
        self.down(reason);
    }

    /// The source waits on purpose while another region consumes the datasource; `reason`
    /// says which. Not consuming, but nothing is wrong: `/readyz` lists it without degrading.
    pub fn set_standby(&self, reason: &str) {
        self.mark_standby(true);
        self.down(reason);
    }

    fn mark_standby(&self, standby: bool) {
        if self.standby.swap(standby, Ordering::SeqCst) != standby {
            if let Some(gauge) = &self.standby_gauge {
                gauge.set(i64::from(standby));
            }
        }
    }

    /// Whether the source is down on purpose ([`set_standby`](Self::set_standby)).
    pub fn standby(&self) -> bool {
        self.standby.load(Ordering::SeqCst)
    }

    fn down(&self, reason: &str) {
        let reason = crate::config::secrets::redact_text(reason);
        *self.reason.lock() = reason.to_string();
        if self.up.swap(false, Ordering::SeqCst) {
            self.up_gauge.set(0);
            tracing::warn!(datasource = %self.name, %reason, "source down");
        }
    }

    /// Counts a lost connection or a failed reconnect attempt.
    pub fn reconnecting(&self) {
        self.reconnects.inc();
    }

    /// `None` when up, else why not.
    pub fn problem(&self) -> Option<String> {
        (!self.up.load(Ordering::SeqCst)).then(|| self.reason.lock().clone())
    }
}
