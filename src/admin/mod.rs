//! The admin listener: Prometheus metrics, liveness and readiness, and the operator API
//! (`/api/v1`, bearer-token authenticated; see [`api`]).

pub mod api;

use std::sync::atomic::{AtomicBool, Ordering};
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
    /// True while the node accepts and serves clients; false while starting and draining.
    pub ready: AtomicBool,
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
            ready: AtomicBool::new(false),
            sources: arc_swap::ArcSwap::from_pointee(Vec::new()),
            readiness,
            bus_problem: parking_lot::Mutex::new(None),
            store_problem: parking_lot::Mutex::new(None),
        })
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

/// 200 `ready` while serving with the bus, the config store and every source up; else what is
/// wrong, one line each: 503 for the bus, 200 `degraded` for the config store (the node serves
/// what it runs), and for a source as [`AdminState::readiness`] says (200 `degraded` in a
/// cluster).
async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if !state.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string());
    }
    let bus = state.bus_problem.lock().clone();
    let store = state
        .store_problem
        .lock()
        .as_ref()
        .map(|why| format!("store: {why}\n"))
        .unwrap_or_default();
    let sources: String = state
        .sources
        .load()
        .iter()
        .filter_map(|s| {
            s.problem()
                .map(|why| format!("source {}: {why}\n", s.name()))
        })
        .collect();
    match (bus, state.readiness) {
        (Some(why), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("bus: {why}\n{store}{sources}"),
        ),
        _ if sources.is_empty() && store.is_empty() => (StatusCode::OK, "ready\n".to_string()),
        (None, Readiness::SourcesRequired) if !sources.is_empty() => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{store}{sources}"))
        }
        (None, _) => (StatusCode::OK, format!("degraded\n{store}{sources}")),
    }
}
