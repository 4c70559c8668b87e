//! The node's running sources and route workers, and how a new desired state is applied to
//! them: only what changed is touched.
//!
//! - A datasource whose entry changed, or whose set of routes or their upstreams changed, is
//!   restarted with its routes (a source's dispatcher is built with its routes).
//! - A route whose mappings or resolved mapper versions changed gets new mapper instances,
//!   warmed up first and swapped in between two batches: no event is dropped or mapped twice.
//! - Every stream's sequence numbers continue across swaps and restarts.
//! - In a cluster, a source that loses its lease to another node, or whose datasource goes to
//!   another region, stops and is reported as a [`LostLease`]; [`Components::restart_lost`]
//!   starts it again, queued for the lease (and its region's turn).

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::anyhow;
use tokio::sync::mpsc as async_mpsc;
use tokio_util::sync::CancellationToken;

use super::backends::Membership;
use super::state::{Desired, ResolvedMapper};
use crate::book::Books;
use crate::bus::Bus;
use crate::config::{Auth, Datasource, Mapping, Route, StreamSpec};
use crate::hub::{Flow, Hub};
use crate::mapper::{MapperEngine, MapperInstance};
use crate::metrics::Metrics;
use crate::route::{MappingWorker, RouteUpdate, RouteWorker, Sequences, SourceIdentity};
use crate::source::{self, Consumption, Dispatcher, SourceHealth};
use crate::util::LogLimit;

/// What a route's mappings are: a swap happens when this changes.
type MappingsKey = Vec<(Mapping, (String, [u8; 32]))>;

struct RunningRoute {
    mappings: MappingsKey,
    updates: mpsc::Sender<RouteUpdate>,
    thread: JoinHandle<Sequences>,
}

struct RunningSource {
    datasource: Datasource,
    /// Route id → upstream patterns, as started.
    shape: BTreeMap<String, Vec<String>>,
    routes: BTreeMap<String, RunningRoute>,
    health: Arc<SourceHealth>,
    stop: CancellationToken,
    thread: JoinHandle<()>,
    /// Which start of this datasource this is, to tell a stale [`LostLease`] from a live one.
    generation: u64,
}

/// A source stopped because another node took its lease, or another region its datasource.
#[derive(Debug, Clone)]
pub struct LostLease {
    /// The datasource.
    pub datasource: String,
    /// The [`RunningSource::generation`] that stopped.
    generation: u64,
}

/// Sources and routes currently running.
pub struct Components {
    engine: Arc<MapperEngine>,
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
    metrics: Arc<Metrics>,
    sources: BTreeMap<String, RunningSource>,
    streams: Arc<BTreeMap<Arc<str>, StreamSpec>>,
    /// Next sequence numbers handed back by stopped routes.
    sequences: Sequences,
    /// Alone or in a cluster: how a source may consume.
    membership: Arc<dyn Membership>,
    /// Where sources report a lost lease, and the receiving end until someone takes it.
    lost_leases: async_mpsc::UnboundedSender<LostLease>,
    lost_receiver: Option<async_mpsc::UnboundedReceiver<LostLease>>,
    /// Sources started so far.
    starts: u64,
    /// The order books the routes' diff-depth outputs feed.
    books: Books,
}

impl Components {
    /// Nothing running yet.
    pub fn new(
        engine: Arc<MapperEngine>,
        hub: Arc<Hub>,
        bus: Arc<dyn Bus>,
        metrics: Arc<Metrics>,
        membership: Arc<dyn Membership>,
        books: Books,
    ) -> Self {
        let (lost_leases, lost_receiver) = async_mpsc::unbounded_channel();
        Components {
            books,
            membership,
            lost_leases,
            lost_receiver: Some(lost_receiver),
            starts: 0,
            engine,
            hub,
            bus,
            metrics,
            sources: BTreeMap::new(),
            streams: Arc::new(BTreeMap::new()),
            sequences: Sequences::new(),
        }
    }

    /// Brings the running components to `desired`, touching only what changed. Mapper instances
    /// are built and warmed up before anything stops, so a mapper that cannot even start leaves
    /// everything as it was.
    pub async fn apply(&mut self, desired: &Desired) -> anyhow::Result<()> {
        let config = &desired.snapshot.config;
        // A datasource no route reads has nothing to consume: it is not started.
        let wanted: BTreeMap<&str, &Datasource> = config
            .datasource
            .iter()
            .filter(|d| config.routes.iter().any(|r| r.data_source == d.name))
            .map(|d| (d.name.as_str(), d))
            .collect();
        let restart: Vec<String> = self
            .sources
            .iter()
            .filter(|(name, running)| {
                wanted.get(name.as_str()).is_none_or(|ds| {
                    **ds != running.datasource || shape(config, name) != running.shape
                })
            })
            .map(|(name, _)| name.clone())
            .collect();
        let mut plans = HashMap::new();
        for route in &config.routes {
            let key = mappings_key(desired, route);
            let running = self
                .sources
                .get(&route.data_source)
                .filter(|_| !restart.contains(&route.data_source))
                .and_then(|s| s.routes.get(&route.id));
            if running.is_none_or(|r| r.mappings != key) {
                let workers = self.prepare(desired, route).await?;
                plans.insert(route.id.clone(), (key, workers));
            }
        }

        let streams_changed = *self.streams != *desired.snapshot.streams;
        if streams_changed {
            let feed_of = |spec: &StreamSpec| {
                let topic = &config.topics[spec.topic_index].topic;
                desired.feeds.get(topic).map_or("none", String::as_str)
            };
            let public = desired
                .snapshot
                .streams
                .iter()
                .filter(|(_, spec)| spec.auth == Auth::Public)
                .map(|(name, spec)| {
                    let flow = Flow::new(spec.rate, spec.burst, spec.overflow);
                    (name, flow, feed_of(spec))
                });
            let dropped = self.hub.set_streams(public);
            let private = desired.snapshot.streams.values();
            if let Some(spec) = private.into_iter().find(|spec| spec.auth == Auth::Private) {
                self.hub.set_user_datasource(feed_of(spec));
            }
            if dropped > 0 {
                tracing::info!(dropped, "streams removed: their subscriptions dropped");
            }
            self.streams = Arc::clone(&desired.snapshot.streams);
            self.books.declare(self.streams.keys().map(|name| &**name));
        }
        for name in restart {
            let running = self.sources.remove(&name).expect("listed above");
            tracing::info!(datasource = %name, "stopping source and its routes");
            self.stop(running).await;
        }
        for (name, datasource) in wanted {
            let Some(running) = self.sources.get_mut(name) else {
                let running = self.start(datasource, desired, &mut plans)?;
                self.sources.insert(name.to_string(), running);
                continue;
            };
            for (id, route) in running.routes.iter_mut() {
                let plan = plans.remove(id);
                if plan.is_none() && !streams_changed {
                    continue;
                }
                let (key, mappings) = match plan {
                    Some((key, workers)) => (Some(key), Some(workers)),
                    None => (None, None),
                };
                let label = route_label(id, key.as_ref().unwrap_or(&route.mappings));
                let metrics = Arc::clone(&self.metrics);
                let swapped = mappings.is_some();
                let update = RouteUpdate {
                    mappings,
                    streams: Arc::clone(&self.streams),
                    applied: Box::new(move || {
                        if swapped {
                            metrics.mapper_swaps.inc();
                            tracing::info!(route = %label, "mappings swapped");
                        }
                    }),
                };
                if route.updates.send(update).is_ok() {
                    if let Some(key) = key {
                        route.mappings = key;
                    }
                }
            }
        }
        Ok(())
    }

    /// Where sources that lost their lease are reported; `None` after the first call.
    pub fn lost_leases(&mut self) -> Option<async_mpsc::UnboundedReceiver<LostLease>> {
        self.lost_receiver.take()
    }

    /// Starts again, queued for its lease, the source that `lost` reports stopped, unless it
    /// has been restarted or removed since. `desired` is what the node runs.
    pub async fn restart_lost(&mut self, lost: LostLease, desired: &Desired) -> anyhow::Result<()> {
        let current = self.sources.get(&lost.datasource);
        if current.is_none_or(|s| s.generation != lost.generation) {
            return Ok(());
        }
        let running = self.sources.remove(&lost.datasource).expect("checked");
        tracing::info!(datasource = %lost.datasource, "restarting the source; it waits for the lease");
        self.stop(running).await;
        self.apply(desired).await
    }

    /// Builds and warms up a route's mapper instances.
    async fn prepare(
        &self,
        desired: &Desired,
        route: &Route,
    ) -> anyhow::Result<Vec<MappingWorker>> {
        let resolved: Vec<(Mapping, ResolvedMapper)> = desired
            .route_mappers(&route.id, &route.mappings)
            .map(|(m, r)| (m.clone(), r.clone()))
            .collect();
        let engine = Arc::clone(&self.engine);
        let metrics = Arc::clone(&self.metrics);
        let route_id = route.id.clone();
        let workers = tokio::task::spawn_blocking(move || {
            resolved
                .into_iter()
                .map(|(mapping, mapper)| {
                    let params = mapping.params.clone().into_iter().collect();
                    let mut instance = MapperInstance::new(
                        Arc::clone(&engine),
                        Arc::clone(&mapper.compiled),
                        &mapper.label,
                        params,
                        Arc::clone(&metrics),
                    )
                    .with_sandbox(mapper.sandbox.clone());
                    instance.warm_up().map_err(|failure| {
                        anyhow!(
                            "route `{route_id}`: mapper `{}` fails to start: {} ({failure:?})",
                            mapper.label,
                            failure.kind()
                        )
                    })?;
                    MappingWorker::new(&mapping, instance).map_err(|e| anyhow!(e))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await??;
        Ok(workers)
    }

    fn start(
        &mut self,
        datasource: &Datasource,
        desired: &Desired,
        plans: &mut HashMap<String, (MappingsKey, Vec<MappingWorker>)>,
    ) -> anyhow::Result<RunningSource> {
        let config = &desired.snapshot.config;
        let consumption = Consumption::of(config, &datasource.name, self.membership.consumers());
        let source = source::build(datasource, &consumption)?;
        let counter = self
            .metrics
            .source_events
            .with_label_values(&[&datasource.name]);
        let name = [datasource.name.as_str()];
        let health = Arc::new(
            SourceHealth::new(
                &datasource.name,
                self.metrics.source_up.with_label_values(&name),
                self.metrics.source_reconnects.with_label_values(&name),
            )
            .with_lag_gauge(self.metrics.source_lag.with_label_values(&name))
            .with_standby_gauge(self.metrics.source_standby.with_label_values(&name)),
        );
        let mut dispatcher = Dispatcher::new(source.backpressure())
            .count_with(counter)
            .with_health(Arc::clone(&health));
        let mut routes = BTreeMap::new();
        for route in config
            .routes
            .iter()
            .filter(|r| r.data_source == datasource.name)
        {
            let (key, mappings) = plans.remove(&route.id).expect("planned");
            let worker = RouteWorker {
                route_id: route.id.clone(),
                source: SourceIdentity {
                    name: datasource.name.clone(),
                    kind: datasource.kind,
                },
                mappings,
                streams: Arc::clone(&self.streams),
                bus: self.books.observe(Arc::clone(&self.bus), &datasource.name),
                metrics: Arc::clone(&self.metrics),
                sequences: self.sequences.clone(),
                poison_log: LogLimit::per_sec(10),
            };
            let dropped = self
                .metrics
                .messages_dropped
                .with_label_values(&["route_backlog"]);
            let inbox = dispatcher.add_route(route.upstream.clone(), Some(dropped));
            let (updates, receiver) = mpsc::channel();
            let thread = worker.spawn(inbox, receiver, tokio::runtime::Handle::current());
            routes.insert(
                route.id.clone(),
                RunningRoute {
                    mappings: key,
                    updates,
                    thread,
                },
            );
        }
        let stop = CancellationToken::new();
        let token = stop.clone();
        let membership = Arc::clone(&self.membership);
        self.starts += 1;
        let lost = LostLease {
            datasource: datasource.name.clone(),
            generation: self.starts,
        };
        let lost_leases = self.lost_leases.clone();
        let source_health = Arc::clone(&health);
        let thread = std::thread::Builder::new()
            .name(format!("source-{}", datasource.name))
            .spawn(move || {
                let consume = Box::new(|| source.run(dispatcher, token.clone()));
                let tenure = membership.consume(&lost.datasource, &token, &source_health, consume);
                if tenure.restarts() {
                    let _ = lost_leases.send(lost);
                }
            })?;
        tracing::info!(datasource = %datasource.name, routes = routes.len(), "source started");
        Ok(RunningSource {
            datasource: datasource.clone(),
            shape: shape(config, &datasource.name),
            routes,
            health,
            stop,
            thread,
            generation: self.starts,
        })
    }

    /// Stops a source, then its routes once they have mapped what was queued; keeps their
    /// sequence numbers for whatever continues the streams.
    async fn stop(&mut self, running: RunningSource) {
        running.stop.cancel();
        let health = Arc::clone(&running.health);
        let threads: Vec<_> = running.routes.into_values().map(|r| r.thread).collect();
        let source_thread = running.thread;
        let joined = tokio::task::spawn_blocking(move || {
            let _ = source_thread.join();
            threads
                .into_iter()
                .filter_map(|t| t.join().ok())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for sequences in joined {
            self.sequences.extend(sequences);
        }
        // Whoever runs the source next starts its books afresh, from its first update id.
        self.books.source_stopped(&running.datasource.name);
        health.set_down("stopped");
    }

    /// Each running source's health.
    pub fn health(&self) -> Vec<Arc<SourceHealth>> {
        self.sources
            .values()
            .map(|s| Arc::clone(&s.health))
            .collect()
    }

    /// Stops everything (node shutdown).
    pub async fn stop_all(&mut self) {
        let names: Vec<String> = self.sources.keys().cloned().collect();
        for name in names {
            let running = self.sources.remove(&name).expect("listed");
            self.stop(running).await;
        }
    }
}

/// A route's mappings with their resolved mapper versions.
fn mappings_key(desired: &Desired, route: &Route) -> MappingsKey {
    desired
        .route_mappers(&route.id, &route.mappings)
        .map(|(m, r)| (m.clone(), r.identity()))
        .collect()
}

/// Route id → upstream patterns of a datasource's routes.
fn shape(config: &crate::config::GatewayConfig, datasource: &str) -> BTreeMap<String, Vec<String>> {
    config
        .routes
        .iter()
        .filter(|r| r.data_source == datasource)
        .map(|r| (r.id.clone(), r.upstream.clone()))
        .collect()
}

fn route_label(id: &str, key: &MappingsKey) -> String {
    let mappers: Vec<&str> = key.iter().map(|(_, (label, _))| label.as_str()).collect();
    format!("{id} [{}]", mappers.join(", "))
}
