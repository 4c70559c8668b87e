//! The final report: built from a run's outcome, printed as a table, saved as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::args::{Args, SubscribeMode};
use crate::controller::Outcome;
use crate::hist::decode_hist;
use crate::stats::Anomalies;

/// Share of one core above which the generator is suspected of measuring itself.
const CPU_WARN_SHARE: f64 = 0.70;

/// Everything a run reports (the `--json` document).
#[derive(Serialize, Debug)]
pub struct Report {
    /// Options the run used.
    pub config: Config,
    /// Connection outcomes.
    pub connections: Connections,
    /// Delivered data over the measurement window.
    pub messages: Messages,
    /// Latency over the window in µs (absent when nothing carried a stamp).
    pub latency_us: Option<Latency>,
    /// The generator's own resource use.
    pub bench: Bench,
    /// The gateway's memory (with `--gateway-pid`).
    pub gateway: Option<Gateway>,
    /// Whether the run was cut short.
    pub interrupted: bool,
    /// Reasons for a non-zero exit code (empty when fine).
    pub problems: Vec<String>,
    /// Notes that do not fail the run.
    pub warnings: Vec<String>,
}

/// Echo of the run's options.
#[derive(Serialize, Debug)]
pub struct Config {
    /// Gateway base URLs.
    pub urls: Vec<String>,
    /// Connections requested.
    pub connections: usize,
    /// Stream list connections rotate through.
    pub streams: Vec<String>,
    /// Streams per connection (after clamping).
    pub streams_per_conn: usize,
    /// Subscription method.
    pub subscribe: SubscribeMode,
    /// Requested window length.
    pub duration_s: f64,
    /// Requested warmup.
    pub warmup_s: f64,
    /// Ramp rate over all processes.
    pub ramp_per_sec: u32,
    /// Worker processes.
    pub procs: usize,
    /// Number of source addresses bound (0 = kernel's choice).
    pub source_ips: usize,
    /// Idle mode.
    pub idle: bool,
}

/// Connection outcomes.
#[derive(Serialize, Debug)]
pub struct Connections {
    /// Connections requested.
    pub target: u64,
    /// Open at steady state (end of the window).
    pub connected: u64,
    /// Open and subscribed at steady state.
    pub subscribed: u64,
    /// Received at least one data event in the measurement window.
    pub receiving: u64,
    /// Gave up after all retries.
    pub failed: u64,
    /// Failed attempts, including retried ones.
    pub connect_errors: u64,
    /// Failed attempts by kind (`refused`, `http 503`, `timeout`, ...).
    pub connect_errors_by_kind: BTreeMap<String, u64>,
    /// Closed by the peer or by an error before the end.
    pub closed_early: u64,
    /// Early closes by close code (`1005` = no code, `eof`, `reset`, ...).
    pub close_codes: BTreeMap<String, u64>,
    /// Seconds from start until every connection settled.
    pub ramp_s: f64,
}

/// Message counts.
#[derive(Serialize, Debug)]
pub struct Messages {
    /// Actual window length.
    pub window_s: f64,
    /// Events delivered in the window.
    pub delivered: u64,
    /// Delivered events per second over the window.
    pub per_sec: f64,
    /// Missing ids in the window.
    pub lost: u64,
    /// Places where ids were missing.
    pub gaps: u64,
    /// Duplicated or reordered events in the window.
    pub duplicates: u64,
    /// Whole run, ramp and warmup included.
    pub delivered_total: u64,
    /// Missing ids over the whole run.
    pub lost_total: u64,
    /// Duplicated or reordered events over the whole run.
    pub duplicates_total: u64,
    /// Frames that were unparsable, oddly stamped or of unknown streams.
    pub anomalies: Anomalies,
}

/// Latency distribution in µs.
#[derive(Serialize, Debug)]
#[allow(missing_docs)]
pub struct Latency {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// The generator's resources (all worker processes).
#[derive(Serialize, Debug)]
pub struct Bench {
    /// Worker processes that reported.
    pub procs: u64,
    /// CPU time (user + system) of the whole run, seconds.
    pub cpu_s: f64,
    /// CPU time inside the window, seconds.
    pub cpu_window_s: f64,
    /// CPU in the window as a share of one core, averaged per process.
    pub cpu_per_proc_core_share: f64,
    /// Resident memory of all bench processes at the end, bytes.
    pub rss_bytes: u64,
}

/// Gateway memory.
#[derive(Serialize, Debug)]
pub struct Gateway {
    /// Process ids summed.
    pub pids: Vec<u32>,
    /// VmRSS sum before the first connection, bytes.
    pub rss_before: u64,
    /// VmRSS sum at steady state (end of the window), bytes.
    pub rss_steady: u64,
    /// `(rss_steady - rss_before) / subscribed connections`.
    pub bytes_per_conn: Option<f64>,
    /// CPU time (user + system) from the start until every connection settled, seconds.
    pub cpu_ramp_s: Option<f64>,
    /// CPU time over the measurement window, seconds.
    pub cpu_window_s: Option<f64>,
}

impl Report {
    /// Builds the report from a run's outcome.
    pub fn build(args: &Args, procs: usize, sources: usize, out: &Outcome) -> Report {
        let (f, steady) = (&out.fin, &out.steady);
        let window_s = out.window.as_secs_f64().max(1e-9);
        let split = |prefix: &str| -> BTreeMap<String, u64> {
            f.reasons
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), *v)))
                .collect()
        };
        let hist = decode_hist(f.window_hist.as_deref().unwrap_or(&[]));
        let latency = (!hist.is_empty()).then(|| Latency {
            count: hist.len(),
            min: hist.min(),
            mean: hist.mean(),
            p50: hist.value_at_quantile(0.50),
            p90: hist.value_at_quantile(0.90),
            p95: hist.value_at_quantile(0.95),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
        });
        let cpu_window_s = f.cpu_window_us as f64 / 1e6;
        let bench = Bench {
            procs: f.procs,
            cpu_s: f.cpu_us as f64 / 1e6,
            cpu_window_s,
            cpu_per_proc_core_share: cpu_window_s / window_s / f.procs.max(1) as f64,
            rss_bytes: f.rss_bytes,
        };
        let gateway = out.gateway_rss.map(|(before, steady_rss)| Gateway {
            pids: args.gateway_pids.clone(),
            rss_before: before,
            rss_steady: steady_rss,
            bytes_per_conn: (steady.subscribed > 0)
                .then(|| (steady_rss as f64 - before as f64) / steady.subscribed as f64),
            cpu_ramp_s: out.gateway_cpu.map(|c| c.ramp_us as f64 / 1e6),
            cpu_window_s: out.gateway_cpu.map(|c| c.window_us as f64 / 1e6),
        });
        let mut problems = Vec::new();
        let allowed = (args.fail_tolerance * f.target as f64).floor() as u64;
        if f.failed > allowed {
            problems.push(format!(
                "{} of {} connections failed (tolerance {allowed})",
                f.failed, f.target
            ));
        }
        if !args.idle && f.window.msgs == 0 {
            problems.push("no message delivered in the measurement window".into());
        }
        let mut warnings = Vec::new();
        if bench.cpu_per_proc_core_share > CPU_WARN_SHARE {
            warnings.push(format!(
                "generator used {:.0}% of a core per process: it may be measuring itself \
                 (add --procs or lower the load)",
                bench.cpu_per_proc_core_share * 100.0
            ));
        }
        if args.subscribe == SubscribeMode::Hashkey && !args.idle {
            warnings.push(
                "HashKey event times are milliseconds: latency has 1 ms resolution \
                 (now − t × 1000, up to 1 ms high)"
                    .into(),
            );
        }
        if f.anomalies.ms_stamps > 0 {
            warnings.push("some events carried millisecond stamps (timeUnit ignored?)".into());
        }
        Report {
            config: Config {
                urls: args.urls.clone(),
                connections: args.connections,
                streams: args.streams.clone(),
                streams_per_conn: args.effective_streams_per_conn(),
                subscribe: args.subscribe,
                duration_s: args.duration.as_secs_f64(),
                warmup_s: args.warmup.as_secs_f64(),
                ramp_per_sec: args.ramp_per_sec,
                procs,
                source_ips: sources,
                idle: args.idle,
            },
            connections: Connections {
                target: f.target,
                connected: steady.connected,
                subscribed: steady.subscribed,
                receiving: f.receiving,
                failed: f.failed,
                connect_errors: f.connect_errors,
                connect_errors_by_kind: split("connect:"),
                closed_early: f.closed_early,
                close_codes: split("close:"),
                ramp_s: out.ramp.as_secs_f64(),
            },
            messages: Messages {
                window_s,
                delivered: f.window.msgs,
                per_sec: f.window.msgs as f64 / window_s,
                lost: f.window.lost,
                gaps: f.window.gaps,
                duplicates: f.window.dups,
                delivered_total: f.total.msgs,
                lost_total: f.total.lost,
                duplicates_total: f.total.dups,
                anomalies: f.anomalies,
            },
            latency_us: latency,
            bench,
            gateway,
            interrupted: out.interrupted,
            problems,
            warnings,
        }
    }

    /// Human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let c = &self.connections;
        let m = &self.messages;
        let ms = |us: u64| format!("{:.3} ms", us as f64 / 1e3);
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
        let map = |m: &BTreeMap<String, u64>| {
            let v: Vec<String> = m.iter().map(|(k, n)| format!("{k}×{n}")).collect();
            if v.is_empty() {
                String::new()
            } else {
                format!("  ({})", v.join(", "))
            }
        };
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "  {k:<22} {v}");
        };
        let cfg = &self.config;
        row(
            "mode",
            format!(
                "{} conns × {} streams/conn via {:?}, {} URL(s), {} proc(s){}",
                cfg.connections,
                cfg.streams_per_conn,
                cfg.subscribe,
                cfg.urls.len(),
                cfg.procs,
                if cfg.idle { ", idle" } else { "" }
            ),
        );
        row(
            "connections",
            format!(
                "target {}  connected {}  subscribed {}  receiving {}  failed {}",
                c.target, c.connected, c.subscribed, c.receiving, c.failed
            ),
        );
        row(
            "connect errors",
            format!("{}{}", c.connect_errors, map(&c.connect_errors_by_kind)),
        );
        row(
            "closed early",
            format!("{}{}", c.closed_early, map(&c.close_codes)),
        );
        row(
            "ramp",
            format!(
                "{:.2} s  ({:.0} connections/s)",
                c.ramp_s,
                c.target.saturating_sub(c.failed) as f64 / c.ramp_s.max(1e-9)
            ),
        );
        row("window", format!("{:.1} s", m.window_s));
        row(
            "delivered",
            format!("{} msgs  ({:.0} msg/s)", m.delivered, m.per_sec),
        );
        row("lost", format!("{} ids in {} gaps", m.lost, m.gaps));
        row("duplicates/reordered", m.duplicates.to_string());
        let a = &m.anomalies;
        if a.bad_msgs + a.ms_stamps + a.no_stamp + a.future_stamps + a.unknown_stream > 0 {
            row(
                "anomalies",
                format!(
                    "bad {}  ms-stamps {}  unstamped {}  future {}  unknown-stream {}",
                    a.bad_msgs, a.ms_stamps, a.no_stamp, a.future_stamps, a.unknown_stream
                ),
            );
        }
        match &self.latency_us {
            Some(l) => {
                row("latency count", l.count.to_string());
                row(
                    "latency p50/p95",
                    format!("{}  /  {}", ms(l.p50), ms(l.p95)),
                );
                row(
                    "latency p99/p99.9",
                    format!("{}  /  {}", ms(l.p99), ms(l.p999)),
                );
                row("latency max", ms(l.max));
            }
            None => row("latency", "no stamped events in the window".into()),
        }
        let b = &self.bench;
        row(
            "bench cpu",
            format!(
                "{:.2} s total, {:.2} s in window ({:.0}% of a core per proc)",
                b.cpu_s,
                b.cpu_window_s,
                b.cpu_per_proc_core_share * 100.0
            ),
        );
        row("bench rss", mib(b.rss_bytes));
        if let Some(g) = &self.gateway {
            let per = g
                .bytes_per_conn
                .map(|b| format!("{:.0} B/conn", b))
                .unwrap_or_default();
            row(
                "gateway rss",
                format!(
                    "before {}  steady {}  {per}",
                    mib(g.rss_before),
                    mib(g.rss_steady)
                ),
            );
            if let (Some(ramp), Some(window)) = (g.cpu_ramp_s, g.cpu_window_s) {
                let per_msg = if m.delivered > 0 {
                    format!(", {:.2} µs/msg", window * 1e6 / m.delivered as f64)
                } else {
                    String::new()
                };
                row(
                    "gateway cpu",
                    format!(
                        "ramp {ramp:.2} s ({:.0}% of a core), window {window:.2} s \
                         ({:.0}% of a core{per_msg})",
                        ramp / c.ramp_s.max(1e-9) * 100.0,
                        window / m.window_s * 100.0
                    ),
                );
            }
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        for p in &self.problems {
            let _ = writeln!(s, "  FAILED: {p}");
        }
        if self.interrupted {
            let _ = writeln!(s, "  (interrupted before the end of the window)");
        }
        format!("wsgate-bench report\n{s}")
    }
}
