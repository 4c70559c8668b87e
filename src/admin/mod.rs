//! The admin listener: Prometheus metrics, liveness and readiness, the operator API
//! (`/api/v1`, bearer-token authenticated; see [`api`]) and the dashboard's files
//! (`/dashboard/`, built from `dashboard/`; its data comes from the API, so it shows nothing
//! without the token).

pub mod api;
pub mod cluster;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::source::SourceHealth;

/// What the admin endpoints report.
pub struct AdminState {
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// Starting, ready or draining ([`NodeState`]).
    state: AtomicU8,
    /// The running sources, listed by `/readyz` when one of them is down.
    pub sources: arc_swap::ArcSwap<Vec<Arc<SourceHealth>>>,
    /// Whether a source that is down makes the node unready ([`Readiness`]).
    pub readiness: Readiness,
    /// Why the bus does not work end to end, if it does not (cluster mode).
    pub bus_problem: parking_lot::Mutex<Option<String>>,
    /// Why the config store cannot be used, if it cannot (unreachable, empty, or behind what the
    /// node runs): the node keeps serving what it runs, listed as degraded.
    pub store_problem: parking_lot::Mutex<Option<String>>,
}

/// Where a node is in its life, as `/readyz`, the metrics and the dashboard tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum NodeState {
    /// Not serving yet.
    Starting = 0,
    /// Accepting and serving clients.
    Ready = 1,
    /// Shutting down: unready, closing its clients.
    Draining = 2,
}

impl NodeState {
    /// The state's name (`starting`, `ready`, `draining`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Starting => "starting",
            NodeState::Ready => "ready",
            NodeState::Draining => "draining",
        }
    }
}

/// What a source that is down means for the node's readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Unready (503): an embedded node delivers only what its own sources read, so a load
    /// balancer should prefer another node.
    SourcesRequired,
    /// Still ready (200, the problems listed): in a cluster every node delivers every stream over
    /// the bus, so an upstream outage is the same on all nodes, and taking the owner out of
    /// rotation would only refuse clients of the streams that still flow.
    BusRequired,
}

impl AdminState {
    /// State of a node that is not ready yet.
    pub fn new(metrics: Arc<Metrics>, readiness: Readiness) -> Arc<Self> {
        Arc::new(AdminState {
            metrics,
            state: AtomicU8::new(NodeState::Starting as u8),
            sources: arc_swap::ArcSwap::from_pointee(Vec::new()),
            readiness,
            bus_problem: parking_lot::Mutex::new(None),
            store_problem: parking_lot::Mutex::new(None),
        })
    }
}

impl AdminState {
    /// Moves the node to `state` (and its `wsgate_ready` / `wsgate_draining` gauges).
    pub fn set_state(&self, state: NodeState) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.metrics.ready.set(i64::from(state == NodeState::Ready));
        self.metrics
            .draining
            .set(i64::from(state == NodeState::Draining));
    }

    /// Where the node is in its life.
    pub fn state(&self) -> NodeState {
        match self.state.load(Ordering::Relaxed) {
            1 => NodeState::Ready,
            2 => NodeState::Draining,
            _ => NodeState::Starting,
        }
    }
}

/// The health and metrics routes.
pub fn health_routes(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// The dashboard: the files of `dir` (the build of `dashboard/`) under `/dashboard/`, and `/`
/// sending browsers there.
pub fn dashboard_routes(dir: &std::path::Path) -> Router {
    let missing = format!(
        "no dashboard in {} (build it with `make dashboard`, or point --dashboard-dir at it)\n",
        dir.display()
    );
    let files = tower_http::services::ServeDir::new(dir)
        .append_index_html_on_directories(true)
        .not_found_service(axum::routing::any(move || {
            let missing = missing.clone();
            async move { (StatusCode::NOT_FOUND, missing) }
        }));
    let to_dashboard = || async { axum::response::Redirect::temporary("/dashboard/") };
    Router::new()
        .route("/", get(to_dashboard))
        .nest_service("/dashboard", files)
}

/// Serves `router` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    if let Some(tls) = tls {
        return serve_tls(listener, router, shutdown, tls).await;
    }
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "admin listener failed");
    }
}

/// [`serve`] over TLS: each connection's handshake (bounded to 10 s), then HTTP/1.1. Stops
/// accepting at `shutdown`; requests already in flight finish.
async fn serve_tls(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    tls: tokio_rustls::TlsAcceptor,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let (tls, router) = (tls.clone(), router.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await;
            let Ok(Ok(stream)) = handshake else {
                return tracing::debug!(%peer, "admin TLS handshake failed");
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, %peer, "admin connection ended with an error");
            }
        });
    }
}

/// How long an admin client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
}

/// 503 `not ready` while starting and `draining` from SIGTERM on; else 200 `ready` while serving with the bus, the config store and every source up; else what is
/// wrong, one line each: 503 for the bus, 200 `degraded` for the config store (the node serves
/// what it runs), and for a source as [`AdminState::readiness`] says (200 `degraded` in a
/// cluster).
async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    match state.state() {
        NodeState::Starting => return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string()),
        NodeState::Draining => return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_string()),
        NodeState::Ready => {}
    }
    let bus = state.bus_problem.lock().clone();
    let store = state
        .store_problem
        .lock()
        .as_ref()
        .map(|why| format!("store: {why}\n"))
        .unwrap_or_default();
    let line = |s: &Arc<SourceHealth>| {
        s.problem()
            .map(|why| format!("source {}: {why}\n", s.name()))
    };
    let all = state.sources.load();
    let sources: String = all
        .iter()
        .filter(|s| !s.standby())
        .filter_map(line)
        .collect();
    // Sources another region consumes are listed, but nothing is wrong with them.
    let standby: String = all
        .iter()
        .filter(|s| s.standby())
        .filter_map(line)
        .collect();
    match (bus, state.readiness) {
        (Some(why), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("bus: {why}\n{store}{sources}{standby}"),
        ),
        _ if sources.is_empty() && store.is_empty() => {
            (StatusCode::OK, format!("ready\n{standby}"))
        }
        (None, Readiness::SourcesRequired) if !sources.is_empty() => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{store}{sources}{standby}"),
        ),
        (None, _) => (
            StatusCode::OK,
            format!("degraded\n{store}{sources}{standby}"),
        ),
    }
}
