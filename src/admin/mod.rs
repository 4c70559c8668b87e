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
    /// The running sources: the node is not ready while one of them is down.
    pub sources: arc_swap::ArcSwap<Vec<Arc<SourceHealth>>>,
    /// Why the bus does not work end to end, if it does not (cluster mode).
    pub bus_problem: parking_lot::Mutex<Option<String>>,
}

impl AdminState {
    /// State of a node that is not ready yet.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(AdminState {
            metrics,
            ready: AtomicBool::new(false),
            sources: arc_swap::ArcSwap::from_pointee(Vec::new()),
            bus_problem: parking_lot::Mutex::new(None),
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
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "admin listener failed");
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
}

/// 200 `ready` while serving with the bus and every source up; else 503 saying what is wrong, one line each.
async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if !state.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string());
    }
    let bus = state.bus_problem.lock().clone();
    let problems: String = bus
        .map(|why| format!("bus: {why}\n"))
        .into_iter()
        .chain(state.sources.load().iter().filter_map(|s| {
            s.problem()
                .map(|why| format!("source {}: {why}\n", s.name()))
        }))
        .collect();
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems)
    }
}
