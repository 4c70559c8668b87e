//! A running node: opens the config store, resolves the desired state, runs sources and route
//! workers, serves clients and the admin listener, reloads what changed whenever the store
//! announces a new revision, and shuts down in order.

mod components;
mod interest;
mod rollback;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::api::{self, Api, NodeStatus};
use crate::admin::{self, AdminState, Readiness};
use crate::bus::{Bus, BusSink, MemoryBus, NatsBus};
use crate::cluster::{Cluster, ClusterSettings};
use crate::config::store::{ConfigStore, MemoryStore, RedisStore};
use crate::config::GatewayConfig;
use crate::control::mapper_ops;
use crate::hub::Hub;
use crate::mapper::{MapperEngine, MapperLimits};
use crate::metrics::Metrics;
use crate::ws::{self, WsContext, WsSettings};

use components::Components;
use interest::{FanoutRule, Interest};
pub use rollback::AutoRollback;
use state::{Desired, Resolver};

/// Static settings of a node (flags and `WSGATE_*` variables, never the dynamic store).
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// This node's id (audit entries of automatic changes, status).
    pub node_id: String,
    /// Client listener address.
    pub listen: SocketAddr,
    /// Admin listener address (metrics, health, operator API).
    pub admin_listen: SocketAddr,
    /// Bearer token of the operator API; `None` disables it.
    pub admin_token: Option<String>,
    /// Share the client port with other processes (`SO_REUSEPORT`).
    pub reuse_port: bool,
    /// Redis URL of the cluster's config store; `None` keeps the store in memory.
    pub redis: Option<String>,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// NATS URL of the cluster's bus; `None` keeps the bus in the process (embedded node).
    pub nats: Option<String>,
    /// How often a cluster node heartbeats.
    pub heartbeat: Duration,
    /// After how long without a heartbeat a cluster node counts as gone.
    pub peer_ttl: Duration,
    /// How often a cluster node probes its bus end to end.
    pub bus_probe_every: Duration,
    /// How long JetStream keeps the fanout subjects for replay (zero: no capture).
    pub replay_retention: Duration,
    /// The config an empty store is seeded with.
    pub config_path: PathBuf,
    /// Directory of mapper modules (`<name>.wasm`) an empty registry is seeded with.
    pub mappers_dir: PathBuf,
    /// Where compiled mappers are cached on disk; `None` disables the disk cache.
    pub mapper_cache_dir: Option<PathBuf>,
    /// Capabilities mappers may be granted when their manifest asks (`clock`, `env:NAME`).
    pub mapper_allow: Vec<String>,
    /// Roll back a promoted mapper version that keeps failing.
    pub auto_rollback: Option<AutoRollback>,
    /// Client connection limits.
    pub ws: WsSettings,
    /// Mapper call limits.
    pub mapper_limits: MapperLimits,
    /// Longest a shutdown may take before the process exits anyway.
    pub shutdown_timeout: Duration,
}

/// Opens the store: Redis when configured, else memory. An empty store is seeded with the
/// config file and the modules of the mappers directory.
async fn open_store(settings: &NodeSettings) -> anyhow::Result<Arc<dyn ConfigStore>> {
    let read_config = || -> anyhow::Result<GatewayConfig> {
        let path = &settings.config_path;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        GatewayConfig::from_json(&text).with_context(|| format!("parsing {}", path.display()))
    };
    let seeder = format!("seed:{}", settings.node_id);
    let store: Arc<dyn ConfigStore> = match &settings.redis {
        None => Arc::new(MemoryStore::new(read_config()?)),
        Some(url) => {
            let store = RedisStore::connect(url, &settings.redis_prefix)
                .await
                .with_context(|| format!("connecting to the config store at {url}"))?;
            // Seeds only an empty store, atomically: of several nodes starting at once, one does.
            if store.seed_if_empty(read_config()?, &seeder).await? {
                tracing::info!(config = %settings.config_path.display(), "seeded the empty config store");
            }
            store
        }
    };
    if settings.mappers_dir.is_dir() {
        for (name, bytes) in crate::mapper::modules_in_dir(&settings.mappers_dir)? {
            if mapper_ops::seed(&*store, &name, bytes.into(), &seeder).await? {
                tracing::info!(mapper = %name, "seeded mapper version 1");
            }
        }
    }
    Ok(store)
}

/// Runs a node until `stop` is cancelled, then drains it.
pub async fn run(settings: NodeSettings, stop: CancellationToken) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let engine = match &settings.mapper_cache_dir {
        Some(dir) => {
            MapperEngine::with_disk_cache(settings.mapper_limits.clone(), 1000, dir.clone())?
        }
        None => MapperEngine::new(settings.mapper_limits.clone(), 1000)?,
    };
    let store = open_store(&settings).await?;
    let resolver = Resolver {
        store: Arc::clone(&store),
        engine: Arc::clone(&engine),
        allowed_capabilities: settings.mapper_allow.clone(),
        owner: settings.nats.is_some().then(|| settings.node_id.clone()),
    };
    let desired = resolver
        .load()
        .await
        .map_err(|e| anyhow!("cannot start: {e:#}"))?;

    let cluster = match (&settings.nats, &settings.redis) {
        (Some(_), Some(redis)) => {
            let cluster_settings = ClusterSettings {
                peer_id: settings.node_id.clone(),
                redis: redis.clone(),
                prefix: settings.redis_prefix.clone(),
                heartbeat: settings.heartbeat,
                ttl: settings.peer_ttl,
            };
            Some(Cluster::join(&cluster_settings, Arc::clone(&store)).await?)
        }
        _ => None,
    };

    let lanes = tokio::runtime::Handle::current().metrics().num_workers();
    let hub = Arc::new(Hub::new(Arc::clone(&metrics), lanes));
    let (bus, cluster_bus) = open_bus(&settings, &hub, &desired, &metrics).await?;
    let mut components = Components::new(
        Arc::clone(&engine),
        Arc::clone(&hub),
        Arc::clone(&bus),
        Arc::clone(&metrics),
        cluster.as_ref().map(Cluster::leases),
    );
    components.apply(&desired).await?;

    let api = Arc::new(Api {
        store: Arc::clone(&store),
        engine: Arc::clone(&engine),
        token: settings.admin_token.clone(),
        status: tokio::sync::watch::channel(NodeStatus::default()).0,
    });
    let readiness = match cluster {
        Some(_) => Readiness::BusRequired,
        None => Readiness::SourcesRequired,
    };
    let admin_state = AdminState::new(Arc::clone(&metrics), readiness);
    admin_state.sources.store(Arc::new(components.health()));
    let reporting = Reporting {
        node_id: settings.node_id.clone(),
        metrics: Arc::clone(&metrics),
        api: Arc::clone(&api),
        admin: Arc::clone(&admin_state),
    };
    reporting.applied(&desired, None);
    let probe_stop = CancellationToken::new();
    let fanout = cluster_bus.map(|(interest, nats)| {
        start_probe(&settings, &nats, &admin_state, &metrics, probe_stop.clone());
        let fanout = ClusterFanout {
            interest,
            nats,
            retention: settings.replay_retention,
        };
        fanout.rules_changed(&desired.fanout);
        fanout
    });

    let shutdown = CancellationToken::new();
    let ws_ctx = WsContext::new(
        Arc::clone(&hub),
        settings.ws.clone(),
        Arc::clone(&metrics),
        shutdown.clone(),
    );
    let listener = ws::bind(settings.listen, settings.reuse_port)
        .with_context(|| format!("binding {}", settings.listen))?;
    let admin_listener = TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("binding {}", settings.admin_listen))?;
    let admin_stop = CancellationToken::new();
    // The bound addresses, so port 0 (any free port) reports the port it got.
    let listen = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let router =
        admin::health_routes(Arc::clone(&admin_state)).merge(api::routes(Arc::clone(&api)));
    tokio::spawn(admin::serve(admin_listener, router, admin_stop.clone()));
    let accept = tokio::spawn(ws::serve(listener, Arc::clone(&ws_ctx)));
    admin_state.ready.store(true, Ordering::Relaxed);
    tracing::info!(
        listen = %listen,
        admin = %admin_addr,
        streams = hub.stream_count(),
        config_version = desired.version,
        "wsgate node ready"
    );

    let reload_stop = CancellationToken::new();
    let reloads = tokio::spawn(reload_loop(
        reporting,
        resolver,
        components,
        fanout,
        desired,
        reload_stop.clone(),
    ));
    if let Some(auto) = settings.auto_rollback.clone() {
        tokio::spawn(rollback::watch(
            auto,
            Arc::clone(&store),
            Arc::clone(&metrics),
            Arc::clone(&api),
            settings.node_id.clone(),
            reload_stop.clone(),
        ));
    }

    stop.cancelled().await;
    tracing::info!("shutting down: not ready, closing clients with 1001");
    admin_state.ready.store(false, Ordering::Relaxed);
    if let Some(cluster) = cluster {
        // The others move this node's datasources now; their new owners take over as soon as
        // the sources below have stopped and released their leases.
        cluster.leave().await;
    }
    ws_ctx.shut_down();
    let _ = accept.await;
    ws_ctx.tracker.close();
    if tokio::time::timeout(settings.shutdown_timeout, ws_ctx.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?settings.shutdown_timeout, "clients still open at the shutdown deadline");
    }
    reload_stop.cancel();
    if let Ok(mut components) = reloads.await {
        let _ = tokio::time::timeout(Duration::from_secs(2), components.stop_all()).await;
    }
    probe_stop.cancel();
    admin_stop.cancel();
    tracing::info!("wsgate node stopped");
    Ok(())
}

/// The node's bus: NATS in a cluster, with subscriptions following the clients' interest;
/// else the in-process bus, all of whose messages go to the hub.
async fn open_bus(
    settings: &NodeSettings,
    hub: &Arc<Hub>,
    desired: &Desired,
    metrics: &Metrics,
) -> anyhow::Result<(Arc<dyn Bus>, Option<(Interest, Arc<NatsBus>)>)> {
    let Some(url) = &settings.nats else {
        let bus: Arc<dyn Bus> = MemoryBus::new();
        bus.subscribe(">", Arc::clone(hub) as Arc<dyn BusSink>)
            .await?;
        return Ok((bus, None));
    };
    let client = async_nats::ConnectOptions::new()
        .name(format!("wsgate {}", settings.node_id))
        .retry_on_initial_connect()
        .connect(url.as_str())
        .await
        .with_context(|| format!("connecting to the bus at {url}"))?;
    let nats = NatsBus::new(client);
    let bus: Arc<dyn Bus> = Arc::clone(&nats) as Arc<dyn Bus>;
    let interest = Interest::start(
        Arc::clone(hub),
        Arc::clone(&bus),
        desired.fanout.clone(),
        metrics.bus_subscriptions.clone(),
    );
    Ok((bus, Some((interest, nats))))
}

/// Probes the bus end to end in the background until `stop`, reporting to `/readyz` and
/// `wsgate_bus_up`.
fn start_probe(
    settings: &NodeSettings,
    nats: &Arc<NatsBus>,
    admin: &Arc<AdminState>,
    metrics: &Metrics,
    stop: CancellationToken,
) {
    let subject = format!(
        "_wsgate.probe.{}",
        settings.node_id.replace(['.', ' ', '*', '>'], "_")
    );
    let (admin, gauge) = (Arc::clone(admin), metrics.bus_up.clone());
    let report = move |problem: Option<String>| {
        gauge.set(i64::from(problem.is_none()));
        *admin.bus_problem.lock() = problem;
    };
    let (nats, every) = (Arc::clone(nats), settings.bus_probe_every);
    tokio::spawn(async move { nats.probe(subject, every, report, stop).await });
}

/// What follows the mappings' fanout rules in a cluster: the node's bus subscriptions, and the
/// JetStream stream that keeps the fanout subjects for replay.
struct ClusterFanout {
    interest: Interest,
    nats: Arc<NatsBus>,
    retention: Duration,
}

/// The JetStream stream capturing every fanout subject.
const REPLAY_STREAM: &str = "wsgate_fanout";

impl ClusterFanout {
    fn rules_changed(&self, rules: &[FanoutRule]) {
        self.interest.set_rules(rules.to_vec());
        if self.retention.is_zero() {
            return;
        }
        let subjects: Vec<String> = rules.iter().map(FanoutRule::all_subjects).collect();
        let (nats, retention) = (Arc::clone(&self.nats), self.retention);
        tokio::spawn(async move {
            if let Err(e) = nats.capture(REPLAY_STREAM, &subjects, retention).await {
                tracing::warn!(error = %format!("{e:#}"), ?subjects, "cannot capture the fanout subjects in JetStream");
            }
        });
    }
}

/// Applies every new store revision until `stop`; returns the components for shutdown.
async fn reload_loop(
    reporting: Reporting,
    resolver: Resolver,
    mut components: Components,
    fanout: Option<ClusterFanout>,
    mut current: Desired,
    stop: CancellationToken,
) -> Components {
    let mut announcements = resolver.store.watch();
    // Sources report a lost lease only in a cluster; elsewhere this never yields.
    let mut lost_leases = components
        .lost_leases()
        .expect("the reload loop is the only reader");
    loop {
        // A revision announced before this loop first ran counts too.
        let mut announced = *announcements.borrow_and_update();
        if announced == current.revision {
            tokio::select! {
                changed = announcements.changed() => if changed.is_err() { break },
                Some(lost) = lost_leases.recv() => {
                    if let Err(e) = components.restart_lost(lost, &current).await {
                        tracing::error!(error = %format!("{e:#}"), "cannot restart a source that lost its lease");
                    }
                    reporting.admin.sources.store(Arc::new(components.health()));
                    continue;
                }
                _ = stop.cancelled() => break,
            }
            announced = *announcements.borrow_and_update();
            if announced == current.revision {
                continue;
            }
        }
        let started = Instant::now();
        let result = match resolver.load().await {
            Ok(desired) => components.apply(&desired).await.map(|()| desired),
            Err(e) => Err(e),
        };
        if let (Some(fanout), Ok(desired)) = (&fanout, &result) {
            if desired.fanout != current.fanout {
                fanout.rules_changed(&desired.fanout);
            }
        }
        reporting.admin.sources.store(Arc::new(components.health()));
        match result {
            Ok(desired) => {
                reporting
                    .metrics
                    .config_reloads
                    .with_label_values(&["applied"])
                    .inc();
                tracing::info!(
                    revision = desired.revision,
                    config_version = desired.version,
                    took = ?started.elapsed(),
                    "store revision applied"
                );
                reporting.applied(&desired, None);
                current = desired;
            }
            Err(e) => {
                reporting
                    .metrics
                    .config_reloads
                    .with_label_values(&["failed"])
                    .inc();
                tracing::error!(revision = announced, error = %format!("{e:#}"), "store revision not applied; the node keeps running its last state");
                reporting.applied(&current, Some(format!("{e:#}")));
                // Do not retry the same revision in a loop; the next announcement tries again.
                current.revision = announced;
            }
        }
    }
    components
}

/// Where a node reports what it runs: metrics, the status API, readiness.
struct Reporting {
    node_id: String,
    metrics: Arc<Metrics>,
    api: Arc<Api>,
    admin: Arc<AdminState>,
}

impl Reporting {
    /// Records that `desired` runs (with the error of a newer revision that did not apply).
    fn applied(&self, desired: &Desired, error: Option<String>) {
        self.metrics.config_version.set(desired.version as i64);
        self.metrics.store_revision.set(desired.revision as i64);
        let routes = desired
            .mappers
            .iter()
            .map(|(id, mappers)| {
                (
                    id.clone(),
                    mappers.iter().map(|m| m.label.clone()).collect(),
                )
            })
            .collect();
        self.api.status.send_replace(NodeStatus {
            node_id: self.node_id.clone(),
            config_version: desired.version,
            revision: desired.revision,
            routes,
            last_error: error,
        });
    }
}
