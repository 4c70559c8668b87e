//! A warm mapper instance: reused across batches, replaced after any failure, with every
//! failure contained to the event that caused it.

use std::sync::Arc;
use std::time::Instant;

use prometheus::{Histogram, IntCounter};
use wasmtime::{Store, Trap};

use super::bindings::{Event, EventMapper, MapError, Output};
use super::engine::{CompiledMapper, MapperEngine};
use super::host::{Grants, HostState};
use super::ticker::EPOCH_TICK;
use super::MapperLimits;
use crate::metrics::Metrics;

/// What became of one event.
#[derive(Debug, Clone)]
pub enum EventOutcome {
    /// The mapper's outputs for the event (possibly none).
    Mapped(Vec<Output>),
    /// The event was dropped.
    Failed(Failure),
}

/// Why an event was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The mapper returned an error for it.
    Rejected(String),
    /// The mapper trapped (panic, unreachable, out-of-bounds access).
    Trap(String),
    /// The call exceeded its CPU deadline.
    Timeout,
    /// The instance exceeded its memory cap.
    Memory,
    /// The mapper's answer broke the contract (wrong result count, too many or oversized outputs,
    /// payload that is not JSON).
    BadOutput(String),
}

impl Failure {
    /// Every kind [`kind`](Self::kind) names, plus `no_user_id` (a private output without a
    /// valid user), so a running version's error series exist from its start.
    pub const KINDS: [&'static str; 6] = [
        "error",
        "trap",
        "timeout",
        "memory",
        "bad_output",
        "no_user_id",
    ];

    /// The metric label of this kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Rejected(_) => "error",
            Failure::Trap(_) => "trap",
            Failure::Timeout => "timeout",
            Failure::Memory => "memory",
            Failure::BadOutput(_) => "bad_output",
        }
    }
}

/// A mapper version's own sandbox: its grants and the limits its manifest sets.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// Capabilities granted.
    pub grants: Grants,
    /// CPU time per call instead of the engine's default.
    pub call_timeout: Option<std::time::Duration>,
    /// Memory cap instead of the engine's default (never above it: the engine's cap sizes the
    /// instance pool).
    pub memory_bytes: Option<usize>,
}

struct Live {
    store: Store<HostState>,
    bindings: EventMapper,
}

/// One mapper version's warm instance, owned by one route worker.
pub struct MapperInstance {
    engine: Arc<MapperEngine>,
    compiled: Arc<CompiledMapper>,
    label: Arc<str>,
    params: Vec<(String, String)>,
    sandbox: Sandbox,
    live: Option<Live>,
    metrics: Arc<Metrics>,
    calls: IntCounter,
    events: IntCounter,
    duration: Histogram,
}

impl MapperInstance {
    /// An instance of `compiled`, labelled `label` (`name@version`) in logs and metrics, given
    /// `params` at `init`. It is instantiated on first use.
    pub fn new(
        engine: Arc<MapperEngine>,
        compiled: Arc<CompiledMapper>,
        label: &str,
        params: Vec<(String, String)>,
        metrics: Arc<Metrics>,
    ) -> Self {
        for kind in Failure::KINDS {
            // Created at zero: a rate over them works from the version's first event.
            metrics.mapper_errors.with_label_values(&[label, kind]);
        }
        MapperInstance {
            calls: metrics.mapper_calls.with_label_values(&[label]),
            events: metrics.mapper_events.with_label_values(&[label]),
            duration: metrics.mapper_duration.with_label_values(&[label]),
            engine,
            compiled,
            label: Arc::from(label),
            params,
            sandbox: Sandbox::default(),
            live: None,
            metrics,
        }
    }

    /// Runs this instance under `sandbox` instead of the engine's defaults.
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = sandbox;
        self.live = None;
        self
    }

    /// Instantiates and initialises the instance now rather than on the first batch, so a swap
    /// costs the route nothing and a mapper whose `init` fails is found before it is used.
    pub fn warm_up(&mut self) -> Result<(), Failure> {
        self.live().map(|_| ())
    }

    /// The module this instance runs.
    pub fn compiled(&self) -> &Arc<CompiledMapper> {
        &self.compiled
    }

    /// The `name@version` label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Maps a batch: one outcome per event, in order. A failing call is retried one event at a
    /// time on fresh instances so only the guilty events are dropped.
    pub fn map_batch(&mut self, events: &[Event]) -> Vec<EventOutcome> {
        if events.is_empty() {
            return Vec::new();
        }
        self.events.inc_by(events.len() as u64);
        let outcomes = match self.call(events) {
            Ok(results) if results.len() == events.len() => {
                results.into_iter().map(|r| self.check(r)).collect()
            }
            Ok(results) => {
                self.live = None;
                let why = format!(
                    "returned {} results for {} events",
                    results.len(),
                    events.len()
                );
                vec![EventOutcome::Failed(Failure::BadOutput(why)); events.len()]
            }
            Err(failure) if events.len() == 1 => vec![EventOutcome::Failed(failure)],
            Err(_) => events
                .iter()
                .map(|event| match self.call(std::slice::from_ref(event)) {
                    Ok(mut results) if results.len() == 1 => self.check(results.remove(0)),
                    Ok(_) => {
                        self.live = None;
                        EventOutcome::Failed(Failure::BadOutput("wrong result count".into()))
                    }
                    Err(failure) => EventOutcome::Failed(failure),
                })
                .collect(),
        };
        for outcome in &outcomes {
            if let EventOutcome::Failed(failure) = outcome {
                self.record_failure(failure);
            }
        }
        outcomes
    }

    fn record_failure(&self, failure: &Failure) {
        self.metrics
            .mapper_errors
            .with_label_values(&[&*self.label, failure.kind()])
            .inc();
        tracing::debug!(
            mapper = &*self.label,
            ?failure,
            "event dropped by its mapper"
        );
    }

    /// One guest call; any failure discards the instance.
    fn call(&mut self, events: &[Event]) -> Result<Vec<Result<Vec<Output>, MapError>>, Failure> {
        let limits = self.engine.limits();
        let call_timeout = self.sandbox.call_timeout.unwrap_or(limits.call_timeout);
        let budget = call_timeout + limits.per_event_timeout * events.len() as u32;
        let live = self.live()?;
        live.store.set_epoch_deadline(ticks(budget));
        self.calls.inc();
        let started = Instant::now();
        let live = self.live.as_mut().expect("instantiated above");
        let running = self.engine.ticker().call();
        let result = live
            .bindings
            .wsgate_mapper_mapper()
            .call_map_batch(&mut live.store, events);
        drop(running);
        self.duration.observe(started.elapsed().as_secs_f64());
        result.map_err(|error| {
            self.live = None;
            classify(&error)
        })
    }

    /// The warm instance, instantiating and initialising one if needed.
    fn live(&mut self) -> Result<&mut Live, Failure> {
        if self.live.is_none() {
            let limits = self.engine.limits();
            let memory = self
                .sandbox
                .memory_bytes
                .unwrap_or(limits.max_memory_bytes)
                .min(limits.max_memory_bytes);
            let host = HostState::new(&self.label, memory, &self.sandbox.grants);
            let mut store = Store::new(self.engine.engine(), host);
            store.limiter(|state| &mut state.limits);
            store.epoch_deadline_trap();
            // Instantiation and `init` run once; big runtimes (Python, JS) need longer than a call.
            let init_budget = (limits.call_timeout * 5).max(std::time::Duration::from_secs(2));
            store.set_epoch_deadline(ticks(init_budget));
            let _running = self.engine.ticker().call();
            let bindings = self
                .compiled
                .pre
                .instantiate(&mut store)
                .map_err(|e| classify(&e))?;
            bindings
                .wsgate_mapper_mapper()
                .call_init(&mut store, &self.params)
                .map_err(|e| classify(&e))?
                .map_err(|e| Failure::Rejected(format!("init: {}", describe(&e))))?;
            self.live = Some(Live { store, bindings });
        }
        Ok(self.live.as_mut().expect("set above"))
    }

    /// Checks one event's outputs against the contract.
    fn check(&self, result: Result<Vec<Output>, MapError>) -> EventOutcome {
        check_outputs(result, self.engine.limits())
    }
}

/// Checks one event's outputs against the contract and `limits`: at most so many outputs, each
/// payload bounded and one JSON value.
#[doc(hidden)]
pub fn check_outputs(result: Result<Vec<Output>, MapError>, limits: &MapperLimits) -> EventOutcome {
    let outputs = match result {
        Ok(outputs) => outputs,
        Err(e) => return EventOutcome::Failed(Failure::Rejected(describe(&e))),
    };
    if outputs.len() > limits.max_outputs_per_event {
        let why = format!("{} outputs for one event", outputs.len());
        return EventOutcome::Failed(Failure::BadOutput(why));
    }
    for output in &outputs {
        if output.payload.len() > limits.max_output_bytes {
            let why = format!("payload of {} bytes", output.payload.len());
            return EventOutcome::Failed(Failure::BadOutput(why));
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&output.payload) {
            return EventOutcome::Failed(Failure::BadOutput(format!("payload is not JSON: {e}")));
        }
    }
    EventOutcome::Mapped(outputs)
}

fn ticks(budget: std::time::Duration) -> u64 {
    (budget.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
}

fn describe(error: &MapError) -> String {
    match error {
        MapError::InvalidInput(why) => format!("invalid input: {why}"),
        MapError::Internal(why) => format!("internal: {why}"),
    }
}

fn classify(error: &wasmtime::Error) -> Failure {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return Failure::Timeout;
    }
    let text = format!("{error:#}");
    if text.contains("growing memory") || text.contains("memory growth failure") {
        Failure::Memory
    } else {
        Failure::Trap(text)
    }
}
