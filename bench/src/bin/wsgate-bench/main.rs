//! `wsgate-bench`: load generator and latency meter for Binance-compatible WebSocket
//! stream servers (wsgate or any other).
//!
//! One process holds up to ~19K connections; larger runs re-execute this binary as child
//! processes (`--child i/K`) that report JSON lines to the parent, which merges them.

mod args;
mod child;
mod conn;
mod controller;
mod event;
mod gap;
mod hashkey;
mod hist;
mod plan;
mod progress;
mod report;
mod stats;
mod sys;
mod tls;
mod worker;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use crate::args::Args;
use crate::child::ChildHandle;
use crate::conn::ConnCtx;
use crate::controller::{Fleet, Signals};
use crate::plan::Target;
use crate::report::Report;
use crate::stats::Stats;
use crate::worker::Worker;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    sys::raise_nofile();
    let mut builder = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<ExitCode> {
    let procs = args
        .child
        .map(|(_, k)| k)
        .unwrap_or_else(|| args.effective_procs());
    let tls = match &args.ca_cert {
        Some(path) => Some(tls::connector(path, &args.tls_groups)?),
        None => None,
    };
    let mut targets = Vec::new();
    for url in &args.urls {
        targets.push(Target::resolve(url, tls.as_ref()).await?);
    }
    let sources = plan::source_ips(&args, &targets)?;
    let addrs: Vec<_> = targets.iter().map(|t| t.addr).collect();
    plan::check_ports(&args, &addrs, &sources, procs)?;

    if let Some((index, _)) = args.child {
        let _ignore_sigint = Signals::new(); // the parent decides when to stop
        let worker = start_worker(&args, targets, &sources, index, procs)?;
        child::serve(worker).await?;
        return Ok(ExitCode::SUCCESS);
    }

    let gateway_before = if args.gateway_pids.is_empty() {
        None
    } else {
        let rss = sys::rss_sum(&args.gateway_pids)
            .with_context(|| format!("cannot read VmRSS of {:?}", args.gateway_pids))?;
        Some(rss)
    };
    let fleet = if procs == 1 {
        Fleet::Local(start_worker(&args, targets, &sources, 0, 1)?)
    } else {
        let children = (0..procs)
            .map(|i| ChildHandle::spawn(i, procs))
            .collect::<Result<Vec<_>>>()?;
        Fleet::Children(children)
    };

    let mut out = controller::drive(&args, fleet, gateway_before).await;
    if procs > 1 {
        // The coordinating parent's own share.
        out.fin.cpu_us += sys::cpu_time_us();
        out.fin.rss_bytes += sys::rss_bytes("self").unwrap_or(0);
    }
    let report = Report::build(&args, procs, sources.len(), &out);
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Builds this process's connection plans and starts ramping them.
fn start_worker(
    args: &Args,
    targets: Vec<Target>,
    sources: &[std::net::IpAddr],
    index: usize,
    procs: usize,
) -> Result<Worker> {
    let plans = plan::build_plans(args, targets.len(), sources, index, procs);
    let stats = Arc::new(Stats::new(plans.len() as u64));
    let ctx = ConnCtx {
        targets,
        mode: args.subscribe,
        retries: args.retries,
        timeout: args.connect_timeout,
        connecting: (args.max_connecting > 0).then(|| {
            Arc::new(tokio::sync::Semaphore::new(
                args.max_connecting.div_ceil(procs),
            ))
        }),
        stats,
    };
    Ok(Worker::start(
        plans,
        ctx,
        args.ramp_per_sec as f64 / procs as f64,
    ))
}
