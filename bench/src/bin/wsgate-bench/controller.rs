//! Drives a run through its phases (ramp, warmup, measure, stop) over the local worker
//! or a set of child processes, printing progress and sampling the gateway's memory.

use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::args::Args;
use crate::child::ChildHandle;
use crate::progress::Progress;
use crate::stats::Snapshot;
use crate::sys;
use crate::worker::Worker;

/// The processes doing the work.
pub enum Fleet {
    /// Connections held by this process.
    Local(Worker),
    /// Connections held by child processes.
    Children(Vec<ChildHandle>),
}

impl Fleet {
    /// Merged progress snapshot of every member.
    pub fn snapshot(&self) -> Snapshot {
        match self {
            Fleet::Local(w) => w.snapshot(),
            Fleet::Children(cs) => {
                let mut sum = Snapshot::default();
                for c in cs {
                    sum.merge(&c.take());
                }
                sum
            }
        }
    }

    fn ramp_done(&self) -> bool {
        match self {
            Fleet::Local(w) => w.ramp_done(),
            Fleet::Children(cs) => cs.iter().all(|c| c.ramp_done()),
        }
    }

    fn all_exited(&self) -> bool {
        matches!(self, Fleet::Children(cs) if cs.iter().all(|c| c.exited()))
    }

    async fn start_measure(&mut self) {
        match self {
            Fleet::Local(w) => w.start_measure(),
            Fleet::Children(cs) => {
                for c in cs {
                    c.start_measure().await;
                }
            }
        }
    }

    async fn stop(self) -> Snapshot {
        match self {
            Fleet::Local(w) => w.stop(),
            Fleet::Children(cs) => {
                let finals = cs
                    .into_iter()
                    .map(|c| tokio::spawn(c.finish(Duration::from_secs(30))));
                let mut sum = Snapshot::default();
                for f in finals {
                    if let Ok(s) = f.await {
                        sum.merge(&s);
                    }
                }
                sum
            }
        }
    }
}

/// What a run produced, for the report.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Merged final snapshot (window histogram included).
    pub fin: Snapshot,
    /// Snapshot just before stopping (steady state).
    pub steady: Snapshot,
    /// Time from the first connection until every connection settled.
    pub ramp: Duration,
    /// Actual length of the measurement window.
    pub window: Duration,
    /// Gateway VmRSS sum before the first connection and at steady state.
    pub gateway_rss: Option<(u64, u64)>,
    /// Gateway CPU time (user + system, all `--gateway-pid`s) over the ramp and over the
    /// measurement window, µs.
    pub gateway_cpu: Option<GatewayCpu>,
    /// The run was cut short by SIGINT / SIGTERM, or every child died.
    pub interrupted: bool,
}

/// The gateway's CPU time in two phases of a run, µs.
#[derive(Debug, Default, Clone, Copy)]
pub struct GatewayCpu {
    /// From the start until every connection settled: what setting them up cost.
    pub ramp_us: u64,
    /// Over the measurement window.
    pub window_us: u64,
}

enum Until {
    Settled,
    At(Instant),
}

/// Runs the phases over `fleet`; `gateway_before` is the gateway RSS sampled before start.
pub async fn drive(args: &Args, mut fleet: Fleet, gateway_before: Option<u64>) -> Outcome {
    let mut progress = Progress::new(args.connections, args.quiet);
    let mut sigs = Signals::new();
    let started = Instant::now();
    let gateway_cpu = || {
        (!args.gateway_pids.is_empty())
            .then(|| sys::cpu_sum_us(&args.gateway_pids))
            .flatten()
    };
    let cpu_start = gateway_cpu();
    let mut out = Outcome::default();

    let ramp_deadline = started + args.ramp_timeout;
    out.interrupted = watch(
        &fleet,
        &mut progress,
        &mut sigs,
        "ramp",
        Until::Settled,
        ramp_deadline,
    )
    .await;
    out.ramp = started.elapsed();
    let cpu_ramp_end = gateway_cpu();
    if !out.interrupted && fleet.snapshot().subscribed == 0 {
        eprintln!("no connection is up after the ramp; skipping the measurement");
        out.interrupted = true;
    }
    if !out.interrupted && !args.warmup.is_zero() {
        let until = Until::At(Instant::now() + args.warmup);
        out.interrupted = watch(
            &fleet,
            &mut progress,
            &mut sigs,
            "warmup",
            until,
            ramp_deadline,
        )
        .await;
    }
    let measure_start = Instant::now();
    let cpu_measure_start = gateway_cpu();
    if !out.interrupted {
        fleet.start_measure().await;
        let end = measure_start + args.duration;
        out.interrupted = watch(
            &fleet,
            &mut progress,
            &mut sigs,
            "measure",
            Until::At(end),
            end,
        )
        .await;
    }
    out.steady = fleet.snapshot();
    if let (Some(a), Some(b), Some(c), Some(d)) =
        (cpu_start, cpu_ramp_end, cpu_measure_start, gateway_cpu())
    {
        out.gateway_cpu = Some(GatewayCpu {
            ramp_us: b.saturating_sub(a),
            window_us: d.saturating_sub(c),
        });
    }
    if let Some(before) = gateway_before {
        if let Some(steady) = sys::rss_sum(&args.gateway_pids) {
            out.gateway_rss = Some((before, steady));
        }
    }
    out.window = measure_start.elapsed();
    out.fin = fleet.stop().await;
    out
}

/// Prints progress every second until the condition holds; returns true if interrupted.
async fn watch(
    fleet: &Fleet,
    progress: &mut Progress,
    sigs: &mut Signals,
    label: &str,
    until: Until,
    hard_deadline: Instant,
) -> bool {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut ramp_check = tokio::time::interval(Duration::from_millis(50));
    let settle = matches!(until, Until::Settled);
    loop {
        let sleep = match until {
            Until::At(t) => tokio::time::sleep_until(t.into()),
            Until::Settled => tokio::time::sleep_until(hard_deadline.into()),
        };
        tokio::select! {
            _ = tick.tick() => {}
            _ = ramp_check.tick(), if settle => {
                if fleet.ramp_done() {
                    progress.print(label, &fleet.snapshot());
                    return false;
                }
                continue;
            }
            _ = sleep => {
                if matches!(until, Until::Settled) {
                    eprintln!("ramp did not settle within --ramp-timeout; measuring anyway");
                }
                return false;
            }
            _ = sigs.recv() => {
                eprintln!("interrupted: stopping and reporting what was measured");
                return true;
            }
        }
        let s = fleet.snapshot();
        progress.print(label, &s);
        if fleet.all_exited() {
            eprintln!("every child process exited");
            return true;
        }
    }
}

/// SIGINT and SIGTERM as one stream (absent if they cannot be registered).
pub struct Signals(Option<(Signal, Signal)>);

impl Signals {
    /// Registers the handlers; from now on these signals no longer kill the process.
    pub fn new() -> Self {
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        Signals(int.ok().zip(term.ok()))
    }

    /// Waits for either signal.
    pub async fn recv(&mut self) {
        match &mut self.0 {
            Some((i, t)) => {
                tokio::select! {
                    _ = i.recv() => {}
                    _ = t.recv() => {}
                }
            }
            None => std::future::pending().await,
        }
    }
}
