//! A running node: opens its backends, resolves the desired state, runs sources and route
//! workers, serves clients and the admin listener, reloads what changed whenever the store
//! announces a new revision, and shuts down in order.
//!
//! Whether the node is embedded or a cluster member is decided once, in [`backends`]; the
//! client protocols it speaks are the [`Dialects`] it is started with.

mod archive;
mod backends;
mod cards;
mod components;
mod interest;
mod reload;
mod restore;
mod rollback;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::api::{self, Api, NodeStatus};
use crate::admin::{self, AdminState, NodeState};
use crate::auth::listen_keys::ListenKeySettings;
use crate::auth::DelegatedSettings;
use crate::hub::{FrameVariants, Hub, RingLimits};
use crate::mapper::{MapperEngine, MapperLimits};
use crate::metrics::Metrics;
use crate::tls::{CertStore, Reload, TlsFiles};
use crate::trade::TradeSettings;
use crate::ws::dialect::{self, Dialects, Services};
use crate::ws::{self, WsContext, WsSettings};

use backends::Membership;
use components::Components;
use reload::Reporting;
pub use rollback::AutoRollback;
use state::Resolver;

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
    /// The region of a node in a multi-region deployment (`docs/multi-region.md`).
    pub region: Option<crate::region::RegionSettings>,
    /// Redis URL of the leader region's config store, which this region's store follows.
    pub config_leader: Option<String>,
    /// How much of each stream the node keeps in memory for clients that resume.
    pub replay_ring: RingLimits,
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
    /// The client listener's certificate and key: with them it speaks TLS (wss) only.
    pub tls: Option<TlsFiles>,
    /// The admin listener's certificate and key: with them it speaks HTTPS only.
    pub admin_tls: Option<TlsFiles>,
    /// How listen keys behave.
    pub listen_keys: ListenKeySettings,
    /// Which WebSocket API methods are forwarded to the trade backend, where, how long to wait.
    pub trade: TradeSettings,
    /// The NATS server the trade backend answers on; without it, the cluster's bus (`nats`).
    pub trade_nats: Option<String>,
    /// API keys looked up by an external auth service over NATS (on `trade_nats`, else `nats`)
    /// instead of the config store.
    pub delegated_keys: Option<DelegatedSettings>,
    /// Mapper call limits.
    pub mapper_limits: MapperLimits,
    /// How the node leaves when told to stop: unready, then its clients closed over a window.
    pub drain: Drain,
    /// Longest the last step of a shutdown (clients closing, after the drain window) may take
    /// before the process exits anyway.
    pub shutdown_timeout: Duration,
    /// The dashboard's files, served on the admin listener at `/dashboard/`; `None`: no
    /// dashboard.
    pub dashboard_dir: Option<PathBuf>,
}

/// A lame-duck drain: how a node leaves without a reconnect storm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drain {
    /// How long the node stays up but unready (`/readyz` 503), so load balancers stop sending
    /// it new clients, before it closes any.
    pub grace: Duration,
    /// The time over which its clients are closed (`serverShutdown`, 1001), evenly; zero
    /// closes them all at once.
    pub window: Duration,
}

impl NodeSettings {
    /// An embedded node seeded from `config_path` and the modules in `mappers_dir`, listening
    /// on free ports of 127.0.0.1, with the default limits and no mapper disk cache (for
    /// programs that run a node in their own process, such as tests).
    pub fn embedded(config_path: PathBuf, mappers_dir: PathBuf) -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        NodeSettings {
            node_id: format!("embedded-{}", std::process::id()),
            listen: any_port,
            admin_listen: any_port,
            admin_token: None,
            reuse_port: false,
            redis: None,
            redis_prefix: "wsgate:".to_string(),
            nats: None,
            heartbeat: Duration::from_secs(1),
            peer_ttl: Duration::from_secs(3),
            bus_probe_every: Duration::from_secs(1),
            replay_retention: Duration::ZERO,
            region: None,
            config_leader: None,
            replay_ring: RingLimits::default(),
            config_path,
            mappers_dir,
            mapper_cache_dir: None,
            mapper_allow: Vec::new(),
            auto_rollback: None,
            ws: WsSettings::default(),
            tls: None,
            admin_tls: None,
            listen_keys: ListenKeySettings::default(),
            trade: TradeSettings::default(),
            trade_nats: None,
            delegated_keys: None,
            mapper_limits: MapperLimits::default(),
            drain: Drain::default(),
            shutdown_timeout: Duration::from_secs(10),
            dashboard_dir: None,
        }
    }
}

/// Runs a node speaking the standard dialects until `stop` is cancelled, then drains it.
pub async fn run(settings: NodeSettings, stop: CancellationToken) -> anyhow::Result<()> {
    let node = start(settings, dialect::standard).await?;
    stop.cancelled().await;
    node.shut_down().await;
    Ok(())
}

/// A node that serves clients, until [`shut_down`](Self::shut_down).
pub struct RunningNode {
    /// The client listener's address (the port it got when port 0 was asked for).
    pub listen: SocketAddr,
    /// The admin listener's address.
    pub admin: SocketAddr,
    drain: Drain,
    shutdown_timeout: Duration,
    membership: Arc<dyn Membership>,
    admin_state: Arc<AdminState>,
    ws: Arc<WsContext>,
    accept: JoinHandle<()>,
    reloads: JoinHandle<Components>,
    reload_stop: CancellationToken,
    admin_stop: CancellationToken,
    trade_stop: CancellationToken,
}

/// Starts a node speaking the dialects `dialects` lists (e.g. [`dialect::standard`]), each
/// registering its frame variants with the hub and given the node's account services.
pub async fn start(
    settings: NodeSettings,
    dialects: impl FnOnce(&mut FrameVariants, &Services) -> Dialects,
) -> anyhow::Result<RunningNode> {
    let metrics = Arc::new(Metrics::new());
    let engine = MapperEngine::with_cache(
        settings.mapper_limits.clone(),
        1000,
        settings.mapper_cache_dir.clone(),
        crate::mapper::CacheMetrics::of(&metrics),
    )?;
    let store = backends::open_store(&settings).await?;
    let trade_stop = CancellationToken::new();
    let services = Services {
        accounts: backends::open_accounts(&settings, &store).await?,
        trading: backends::open_trading(&settings, &trade_stop).await?,
        books: backends::open_books(&settings, &metrics).await?,
    };
    let mut variants = FrameVariants::new();
    let dialects = dialects(&mut variants, &services);
    let lanes = tokio::runtime::Handle::current().metrics().num_workers();
    let hub = Arc::new(
        Hub::new(Arc::clone(&metrics), lanes, variants).with_replay_ring(settings.replay_ring),
    );
    let backends = backends::open(&settings, store, &hub, &metrics).await?;
    let membership = backends.membership;
    let resolver = Resolver {
        store: Arc::clone(&backends.store),
        engine: Arc::clone(&engine),
        allowed_capabilities: settings.mapper_allow.clone(),
        membership: Arc::clone(&membership),
        kept: Default::default(),
    };
    let desired = resolver
        .load()
        .await
        .map_err(|e| anyhow!("cannot start: {e:#}"))?;
    membership.fanout_rules_changed(&desired.fanout);
    let mut components = Components::new(
        Arc::clone(&engine),
        Arc::clone(&hub),
        Arc::clone(&backends.bus),
        Arc::clone(&metrics),
        Arc::clone(&membership),
        services.books.clone(),
    );
    components.apply(&desired).await?;

    let api = Arc::new(Api {
        store: Arc::clone(&backends.store),
        engine: Arc::clone(&engine),
        token: settings.admin_token.clone(),
        status: tokio::sync::watch::channel(NodeStatus::default()).0,
        metrics: Arc::clone(&metrics),
        directory: Arc::clone(&backends.directory),
        card_fresh: (settings.heartbeat * 3).max(settings.peer_ttl),
    });
    let admin_state = AdminState::new(Arc::clone(&metrics), membership.readiness());
    admin_state.sources.store(Arc::new(components.health()));
    membership.watch_bus(&admin_state, &metrics);
    let reporting = Reporting {
        node_id: settings.node_id.clone(),
        metrics: Arc::clone(&metrics),
        api: Arc::clone(&api),
        admin: Arc::clone(&admin_state),
        image: Default::default(),
    };
    reporting.applied(&desired, None);
    metrics.config_store_up.set(1);
    let restorer = restore::Restorer {
        node_id: settings.node_id.clone(),
        store: Arc::clone(&backends.store),
        image: Arc::clone(&reporting.image),
        metrics: Arc::clone(&metrics),
        admin: Arc::clone(&admin_state),
        reseed_keys: backends::reseed_keys(&backends.store, &settings.node_id),
    };

    let admin_stop = CancellationToken::new();
    let ws = WsContext::new(
        Arc::clone(&hub),
        dialects,
        settings.ws.clone(),
        Arc::clone(&metrics),
        CancellationToken::new(),
        tls_acceptor(settings.tls.as_ref(), &metrics, &admin_stop)?,
    );
    let listener = ws::bind(settings.listen, settings.reuse_port)
        .with_context(|| format!("binding {}", settings.listen))?;
    let admin_listener = TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("binding {}", settings.admin_listen))?;
    // The bound addresses, so port 0 (any free port) reports the port it got.
    let listen = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let mut router =
        admin::health_routes(Arc::clone(&admin_state)).merge(api::routes(Arc::clone(&api)));
    if let Some(dir) = &settings.dashboard_dir {
        router = router.merge(admin::dashboard_routes(dir));
    }
    let admin_tls = tls_acceptor(settings.admin_tls.as_ref(), &metrics, &admin_stop)?;
    tokio::spawn(admin::serve(
        admin_listener,
        router,
        admin_stop.clone(),
        admin_tls,
    ));
    let accept = tokio::spawn(ws::serve(listener, Arc::clone(&ws)));
    admin_state.set_state(NodeState::Ready);
    tokio::spawn(cards::publish(
        Arc::clone(&backends.directory),
        Arc::clone(&admin_state),
        api.status.subscribe(),
        settings.heartbeat,
        admin_stop.clone(),
    ));
    tracing::info!(
        listen = %listen,
        admin = %admin_addr,
        streams = hub.stream_count(),
        dialects = ?ws.dialects.names(),
        frame_variants = ?hub.variants().names(),
        config_version = desired.version,
        "wsgate node ready"
    );

    let reload_stop = CancellationToken::new();
    tokio::spawn(restorer.run(reload_stop.clone()));
    let reloads = tokio::spawn(reload::run(
        reporting,
        resolver,
        components,
        Arc::clone(&membership),
        desired,
        reload_stop.clone(),
    ));
    if let Some(auto) = settings.auto_rollback.clone() {
        tokio::spawn(rollback::watch(
            auto,
            Arc::clone(&backends.store),
            Arc::clone(&metrics),
            Arc::clone(&api),
            settings.node_id.clone(),
            reload_stop.clone(),
        ));
    }
    Ok(RunningNode {
        listen,
        admin: admin_addr,
        drain: settings.drain,
        shutdown_timeout: settings.shutdown_timeout,
        membership,
        admin_state,
        ws,
        accept,
        reloads,
        reload_stop,
        admin_stop,
        trade_stop,
    })
}

impl RunningNode {
    /// Drains the node: unready and out of the cluster at once; after the drain's grace, no
    /// new clients and the open ones closed with 1001 spread over its window (waiting at most
    /// the shutdown timeout for the last ones); then sources, routes and listeners stopped.
    pub async fn shut_down(self) {
        let Drain { grace, window } = self.drain;
        tracing::info!(
            ?grace,
            ?window,
            "draining: unready, then closing clients with 1001"
        );
        self.admin_state.set_state(NodeState::Draining);
        // The others move this node's datasources now; their new owners take over as soon as
        // the sources below have stopped and released their leases.
        self.membership.leave().await;
        // Still serving and accepting while load balancers see the node unready and stop
        // sending it clients.
        tokio::time::sleep(grace).await;
        self.ws.drain(window).await;
        let _ = self.accept.await;
        self.ws.tracker.close();
        if tokio::time::timeout(self.shutdown_timeout, self.ws.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?self.shutdown_timeout, "clients still open at the shutdown deadline");
        }
        self.reload_stop.cancel();
        if let Ok(mut components) = self.reloads.await {
            let _ = tokio::time::timeout(Duration::from_secs(2), components.stop_all()).await;
        }
        self.membership.stop();
        self.trade_stop.cancel();
        self.admin_stop.cancel();
        tracing::info!("wsgate node stopped");
    }
}

/// A listener's TLS, when it has a certificate: served from a [`CertStore`] that reloads the
/// files when they change (polled every 2 s) or on SIGHUP, until `stop`.
fn tls_acceptor(
    files: Option<&TlsFiles>,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let Some(files) = files else {
        return Ok(None);
    };
    let store = CertStore::load(files.clone())?;
    let reloads = metrics.tls_reloads.clone();
    store.watch(Duration::from_secs(2), stop.clone(), move |outcome| {
        let result = if outcome == Reload::Swapped {
            "swapped"
        } else {
            "failed"
        };
        reloads.with_label_values(&[result]).inc();
    });
    Ok(Some(tokio_rustls::TlsAcceptor::from(store.server_config())))
}
