//! The per-store host state: the sandbox's (empty) WASI context, memory limits, and the
//! `wsgate:mapper/host` imports.

use std::time::Duration;

use crate::util::LogLimit;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::bindings::wsgate::mapper::host::{Host, Level};
use super::bindings::wsgate::mapper::types;

/// Log lines a mapper instance may write per second; the rest are counted and dropped.
const LOG_LINES_PER_SEC: u32 = 20;

/// What a mapper's sandbox is granted beyond computing: the capabilities its manifest asked for
/// that the node's operator also allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Real wall and monotonic clocks instead of frozen ones.
    pub clock: bool,
    /// Environment variables visible to the mapper.
    pub env: Vec<(String, String)>,
}

impl Grants {
    /// Grants every capability in `requested` (`clock`, `env:NAME`) that `allowed` also lists;
    /// returns the grants and the capabilities refused.
    pub fn resolve(requested: &[String], allowed: &[String]) -> (Grants, Vec<String>) {
        let mut grants = Grants::default();
        let mut refused = Vec::new();
        for capability in requested {
            if !allowed.contains(capability) {
                refused.push(capability.clone());
            } else if capability == "clock" {
                grants.clock = true;
            } else if let Some(name) = capability.strip_prefix("env:") {
                let value = std::env::var(name).unwrap_or_default();
                grants.env.push((name.to_string(), value));
            } else {
                refused.push(capability.clone());
            }
        }
        (grants, refused)
    }
}

/// Everything a mapper's store holds besides the instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory limits enforced by the store.
    pub limits: StoreLimits,
    label: String,
    log_limit: LogLimit,
}

impl HostState {
    /// A sandbox with no files, network or arguments, at most `max_memory` bytes of linear
    /// memory, and only what `grants` allows: without them the environment is empty and the
    /// clocks are frozen at the epoch.
    pub fn new(label: &str, max_memory: usize, grants: &Grants) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .envs(&grants.env);
        if !grants.clock {
            wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        let wasi = wasi.build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(max_memory)
                .trap_on_grow_failure(true)
                .build(),
            label: label.to_string(),
            log_limit: LogLimit::per_sec(LOG_LINES_PER_SEC),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        if !self.log_limit.allow() {
            return;
        }
        let mapper = self.label.as_str();
        match level {
            Level::Trace => tracing::trace!(mapper, "{message}"),
            Level::Debug => tracing::debug!(mapper, "{message}"),
            Level::Info => tracing::info!(mapper, "{message}"),
            Level::Warn => tracing::warn!(mapper, "{message}"),
            Level::Error => tracing::error!(mapper, "{message}"),
        }
    }
}

/// A clock that always reads zero: mappers get no time source unless the operator grants one.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}
