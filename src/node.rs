//! A running node: loads the config and mappers, starts sources, route workers, the bus
//! consumer, the client and admin listeners, and shuts them down in order.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::bus::{Bus, BusSink, MemoryBus};
use crate::config::{self, Auth, GatewayConfig, MapperRef, Snapshot};
use crate::hub::Hub;
use crate::mapper::{MapperEngine, MapperInstance, MapperLimits, MapperRegistry};
use crate::metrics::Metrics;
use crate::route::{MappingWorker, RouteWorker, SourceIdentity};
use crate::source::{self, Dispatcher};
use crate::ws::{self, WsContext, WsSettings};

/// Static settings of a node (flags and `WSGATE_*` variables, never the dynamic store).
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Client listener address.
    pub listen: SocketAddr,
    /// Admin listener address (metrics, health).
    pub admin_listen: SocketAddr,
    /// Share the client port with other processes (`SO_REUSEPORT`).
    pub reuse_port: bool,
    /// The embedded config file.
    pub config_path: PathBuf,
    /// Directory of mapper modules (`<name>.wasm`).
    pub mappers_dir: PathBuf,
    /// Client connection limits.
    pub ws: WsSettings,
    /// Mapper call limits.
    pub mapper_limits: MapperLimits,
    /// Longest a shutdown may take before the process exits anyway.
    pub shutdown_timeout: Duration,
}

/// Loads config and mappers and validates them together.
pub fn load(
    settings: &NodeSettings,
    engine: &MapperEngine,
) -> anyhow::Result<(Snapshot, MapperRegistry)> {
    let text = std::fs::read_to_string(&settings.config_path)
        .with_context(|| format!("reading {}", settings.config_path.display()))?;
    let config = GatewayConfig::from_json(&text)
        .with_context(|| format!("parsing {}", settings.config_path.display()))?;
    let registry = MapperRegistry::load_dir(engine, &settings.mappers_dir)
        .with_context(|| format!("loading mappers from {}", settings.mappers_dir.display()))?;
    let snapshot = config::validate(config, &|r: &MapperRef| registry.resolve(r).is_some())
        .map_err(|e| anyhow!("invalid config {}: {e}", settings.config_path.display()))?;
    Ok((snapshot, registry))
}

/// Runs a node until `stop` is cancelled (or SIGTERM/SIGINT when `stop` is the signal token),
/// then drains it.
pub async fn run(settings: NodeSettings, stop: CancellationToken) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let engine = MapperEngine::new(settings.mapper_limits.clone(), 1000)?;
    let (snapshot, registry) = load(&settings, &engine)?;
    let sources: Vec<_> = snapshot
        .config
        .datasource
        .iter()
        .map(|ds| source::build(ds).map(|s| (ds.clone(), s)))
        .collect::<Result<_, _>>()?;

    let lanes = tokio::runtime::Handle::current().metrics().num_workers();
    let hub = Arc::new(Hub::new(Arc::clone(&metrics), lanes));
    let public = snapshot
        .streams
        .iter()
        .filter(|(_, spec)| spec.auth == Auth::Public);
    hub.set_streams(public.map(|(name, _)| name));
    let bus: Arc<dyn Bus> = MemoryBus::new();
    bus.subscribe(">", Arc::clone(&hub) as Arc<dyn BusSink>)
        .await?;

    let sources_stop = CancellationToken::new();
    let mut threads = Vec::new();
    for (datasource, source) in sources {
        let counter = metrics.source_events.with_label_values(&[&datasource.name]);
        let mut dispatcher = Dispatcher::new(source.backpressure()).count_with(counter);
        for route in snapshot
            .config
            .routes
            .iter()
            .filter(|r| r.data_source == datasource.name)
        {
            let mut mappings = Vec::new();
            for mapping in &route.mappings {
                let reference = MapperRef::parse(&mapping.mapper).map_err(|e| anyhow!(e))?;
                let version = registry.resolve(&reference).expect("validated");
                let params = mapping.params.clone().into_iter().collect();
                let instance = MapperInstance::new(
                    Arc::clone(&engine),
                    Arc::clone(&version.compiled),
                    &version.label(),
                    params,
                    Arc::clone(&metrics),
                );
                mappings.push(MappingWorker::new(mapping, instance).map_err(|e| anyhow!(e))?);
            }
            let worker = RouteWorker {
                route_id: route.id.clone(),
                source: SourceIdentity {
                    name: datasource.name.clone(),
                    kind: datasource.kind,
                },
                mappings,
                streams: Arc::clone(&snapshot.streams),
                bus: Arc::clone(&bus),
                metrics: Arc::clone(&metrics),
            };
            let dropped = metrics
                .messages_dropped
                .with_label_values(&["route_backlog"]);
            let inbox = dispatcher.add_route(route.upstream.clone(), Some(dropped));
            threads.push(worker.spawn(inbox, tokio::runtime::Handle::current()));
        }
        let token = sources_stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("source-{}", datasource.name))
                .spawn(move || source.run(dispatcher, token))?,
        );
    }

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
    let admin_state = AdminState::new(Arc::clone(&metrics));
    let admin_stop = CancellationToken::new();
    // The bound addresses, so port 0 (any free port) reports the port it got.
    let listen = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    tokio::spawn(admin::serve(
        admin_listener,
        Arc::clone(&admin_state),
        admin_stop.clone(),
    ));
    let accept = tokio::spawn(ws::serve(listener, Arc::clone(&ws_ctx)));
    admin_state.ready.store(true, Ordering::Relaxed);
    tracing::info!(
        listen = %listen,
        admin = %admin_addr,
        streams = hub.stream_count(),
        mappers = registry.names().count(),
        "wsgate node ready"
    );

    stop.cancelled().await;
    tracing::info!("shutting down: not ready, closing clients with 1001");
    admin_state.ready.store(false, Ordering::Relaxed);
    ws_ctx.shut_down();
    let _ = accept.await;
    ws_ctx.tracker.close();
    if tokio::time::timeout(settings.shutdown_timeout, ws_ctx.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?settings.shutdown_timeout, "clients still open at the shutdown deadline");
    }
    sources_stop.cancel();
    admin_stop.cancel();
    drop(threads);
    tracing::info!("wsgate node stopped");
    Ok(())
}
