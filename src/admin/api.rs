//! The operator API under `/api/v1`, JSON in and out, authenticated with a bearer token.
//!
//! | method and path                        | does                                             |
//! |----------------------------------------|--------------------------------------------------|
//! | `GET  /api/v1/status`                  | this node: config version, revision, routes      |
//! | `GET  /api/v1/cluster`                 | every live node's card ([`super::cluster`])      |
//! | `GET  /api/v1/metrics`                 | this node's metrics as JSON                      |
//! | `GET  /api/v1/config`                  | current config and its version                   |
//! | `GET  /api/v1/config/versions/{v}`     | a stored version                                 |
//! | `PUT  /api/v1/config`                  | validate and apply `{config, replaces?}`         |
//! | `POST /api/v1/config/diff`             | what applying `{config}` would change            |
//! | `GET  /api/v1/config/history?limit=N`  | the audit log, newest first                      |
//! | `POST /api/v1/config/rollback`         | restore `{version}` as a new version             |
//! | `GET  /api/v1/mappers`                 | every mapper: promoted version, version count    |
//! | `GET  /api/v1/mappers/{name}`          | one mapper's versions                            |
//! | `POST /api/v1/mappers/{name}`          | push `{module_base64, sample, ...}`              |
//! | `POST /api/v1/mappers/{name}/promote`  | point `name` at `{version}`                      |
//! | `POST /api/v1/mappers/{name}/rollback` | back to `{version}` or the one before            |
//! | `GET  /api/v1/keys`                    | every API key, without secrets                   |
//! | `POST /api/v1/keys`                    | create `{user_id, permissions, ed25519_public_key?, ip_allow?}`; an HMAC key's secret is in this answer only |
//! | `POST /api/v1/keys/{key}/revoke`       | disable a key for good                           |
//!
//! An apply or a rollback answers once this node runs the new version (or its reload failed, or
//! [`RUN_WAIT`] passed): `running_here` says which, and `node_error` why not.
//!
//! Errors are `{"error": "..."}` (plus `"field"` for an invalid config) with a status that says
//! what kind: 400 malformed request, 401 bad token, 404 unknown, 409 stale or conflicting,
//! 422 refused config or mapper, 503 store unavailable or API disabled.
//!
//! Secrets ([`crate::config::secrets`]) never leave through this API: configs (current, stored
//! versions, audit entries' `before`/`after`) show `***` for them, diffs say `secret` without
//! either value, and every error text and node error is scrubbed of the secrets of the stored
//! config and of the config in the request, and of URL credentials. A config sent back with
//! the `***` placeholders keeps the stored secrets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::config::secrets::{self, Scrubber};
use crate::config::store::{ConfigStore, MapperManifest, StoreError, Versioned};
use crate::config::GatewayConfig;
use crate::control::config_ops::Applied;
use crate::control::{config_ops, key_ops, mapper_ops, ControlError};
use crate::mapper::MapperEngine;
use crate::metrics::Metrics;

use super::cluster::{cluster_view, metrics_view, NodeDirectory};

/// Largest request body (a pushed module, base64-encoded, with its sample).
const MAX_BODY_BYTES: usize = 256 << 20;

/// Longest an apply or a rollback waits for this node to run the version it stored.
pub const RUN_WAIT: Duration = Duration::from_secs(10);

/// What the node reports about itself in `/api/v1/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeStatus {
    /// This node's id.
    pub node_id: String,
    /// Config version running.
    pub config_version: u64,
    /// Store revision running.
    pub revision: u64,
    /// Route id → `name@version` of each mapping's mapper, as running.
    pub routes: BTreeMap<String, Vec<String>>,
    /// The last reload error, if the newest revision could not be applied.
    pub last_error: Option<String>,
}

/// Everything the API handlers need.
pub struct Api {
    /// The config store.
    pub store: Arc<dyn ConfigStore>,
    /// The mapper engine, for push validation.
    pub engine: Arc<MapperEngine>,
    /// The bearer token; `None` disables the API.
    pub token: Option<String>,
    /// This node's status, replaced after every reload (also failed ones).
    pub status: watch::Sender<NodeStatus>,
    /// The node's metrics, for `/api/v1/metrics`.
    pub metrics: Arc<Metrics>,
    /// Where every node's card is read, and how recent a card must be to count.
    pub directory: Arc<dyn NodeDirectory>,
    /// A node whose card is older than this is gone (a few heartbeats).
    pub card_fresh: Duration,
}

/// The `/api/v1` routes.
pub fn routes(api: Arc<Api>) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/metrics", get(metrics_json))
        .route("/api/v1/config", get(get_config).put(put_config))
        .route("/api/v1/config/versions/{version}", get(get_config_version))
        .route("/api/v1/config/diff", post(diff_config))
        .route("/api/v1/config/history", get(history))
        .route("/api/v1/config/rollback", post(rollback_config))
        .route("/api/v1/mappers", get(list_mappers))
        .route("/api/v1/mappers/{name}", get(show_mapper).post(push_mapper))
        .route("/api/v1/mappers/{name}/promote", post(promote_mapper))
        .route("/api/v1/mappers/{name}/rollback", post(rollback_mapper))
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/keys/{key}/revoke", post(revoke_key))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&api),
            authenticate,
        ))
        .with_state(api)
}

/// An API error: status and message.
struct ApiError(StatusCode, Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Whatever an error echoes, URL credentials never leave.
        let mut body = self.1;
        Scrubber::default().scrub_json(&mut body);
        (self.0, Json(body)).into_response()
    }
}

impl ApiError {
    /// The error without the secrets `scrubber` knows.
    fn scrubbed(mut self, scrubber: &Scrubber) -> Self {
        scrubber.scrub_json(&mut self.1);
        self
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        let status = match &error {
            ControlError::Invalid(_) | ControlError::BadMapper(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) | ControlError::Store(StoreError::Stale { .. }) => {
                StatusCode::CONFLICT
            }
            ControlError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut body = json!({ "error": error.to_string() });
        if let ControlError::Invalid(invalid) = &error {
            body["field"] = json!(invalid.field);
        }
        ApiError(status, body)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ControlError::Store(error).into()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn ok<T: Serialize>(value: T) -> ApiResult {
    Ok(Json(serde_json::to_value(value).expect("serializable")))
}

/// The answer, or the error, without the secrets `scrubber` knows.
fn scrubbed(result: ApiResult, scrubber: &Scrubber) -> ApiResult {
    match result {
        Ok(Json(mut value)) => {
            scrubber.scrub_json(&mut value);
            Ok(Json(value))
        }
        Err(error) => Err(error.scrubbed(scrubber)),
    }
}

/// The secrets of the stored config (none when the store cannot be read).
async fn stored_secrets(api: &Api) -> Scrubber {
    match api.store.current().await {
        Ok(current) => Scrubber::of_config(&current.config),
        Err(_) => Scrubber::default(),
    }
}

/// A stored config as shown: its secrets redacted.
fn shown(versioned: Versioned) -> Versioned {
    Versioned {
        version: versioned.version,
        config: secrets::redact_config(&versioned.config),
    }
}

async fn authenticate(
    State(api): State<Arc<Api>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = api.token.as_deref() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "the admin API is disabled: start the node with --admin-token or WSGATE_ADMIN_TOKEN"}),
        ));
    };
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or wrong bearer token"}),
        ));
    }
    Ok(next.run(request).await)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The operator's name for the audit log: `X-Wsgate-Operator`, else `operator`.
fn who(headers: &HeaderMap) -> String {
    headers
        .get("x-wsgate-operator")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 100)
        .unwrap_or("operator")
        .to_string()
}

async fn cluster(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    let cards = api.directory.list(api.card_fresh).await.map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": format!("cannot read the node directory: {e:#}")}),
        )
    })?;
    let node_id = api.status.borrow().node_id.clone();
    Ok(Json(cluster_view(&node_id, cards)))
}

async fn metrics_json(State(api): State<Arc<Api>>) -> Json<Value> {
    let node_id = api.status.borrow().node_id.clone();
    Json(metrics_view(&node_id, &api.metrics))
}

async fn status(State(api): State<Arc<Api>>) -> ApiResult {
    // The last reload error may quote what a source or a broker said.
    let status = api.status.borrow().clone();
    scrubbed(ok(status), &stored_secrets(&api).await)
}

async fn get_config(State(api): State<Arc<Api>>) -> ApiResult {
    ok(shown(api.store.current().await?))
}

async fn get_config_version(State(api): State<Arc<Api>>, Path(version): Path<u64>) -> ApiResult {
    match api.store.config_version(version).await? {
        Some(versioned) => ok(shown(versioned)),
        None => Err(ControlError::NotFound(format!("config version {version}")).into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    config: Value,
    #[serde(default)]
    replaces: Option<u64>,
}

fn parse_config(value: Value) -> Result<GatewayConfig, ApiError> {
    serde_json::from_value(value).map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": format!("invalid config: {e}")}),
        )
    })
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("bad request body: {e}")}),
        )
    })
}

async fn put_config(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: ApplyBody = parse_body(&body)?;
    let mut secrets = Scrubber::of_config_json(&body.config);
    secrets.extend(stored_secrets(&api).await);
    let result = async {
        let config = parse_config(body.config)?;
        let who = who(&headers);
        let reloads = api.status.subscribe();
        let applied =
            config_ops::apply(&*api.store, body.replaces, config, &who, "config.apply").await?;
        ok(run_here(applied, reloads).await)
    }
    .await;
    scrubbed(result, &secrets)
}

async fn diff_config(State(api): State<Arc<Api>>, body: axum::body::Bytes) -> ApiResult {
    let body: ApplyBody = parse_body(&body)?;
    let mut secrets = Scrubber::of_config_json(&body.config);
    secrets.extend(stored_secrets(&api).await);
    let result = async {
        let config = parse_config(body.config)?;
        let (from_version, diff) = config_ops::preview(&*api.store, config).await?;
        ok(json!({"from_version": from_version, "diff": diff}))
    }
    .await;
    scrubbed(result, &secrets)
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn history(State(api): State<Arc<Api>>, Query(query): Query<HistoryQuery>) -> ApiResult {
    let mut entries = api.store.audit(query.limit.unwrap_or(50).min(1000)).await?;
    for entry in &mut entries {
        // Configs are redacted; mapper and key entries hold no config secrets.
        secrets::redact_config_json(&mut entry.before);
        secrets::redact_config_json(&mut entry.after);
    }
    ok(entries)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionBody {
    #[serde(default)]
    version: Option<u64>,
}

/// The `version` of a `{"version": N}` body; an empty body names none.
fn version_in(body: &[u8]) -> Result<Option<u64>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    Ok(parse_body::<VersionBody>(body)?.version)
}

/// The `version` a body must name.
fn required_version(body: &[u8]) -> Result<u64, ApiError> {
    version_in(body)?.ok_or_else(|| ControlError::BadRequest("`version` is required".into()).into())
}

/// A mapper version number.
fn mapper_version(version: u64) -> Result<u32, ApiError> {
    u32::try_from(version)
        .map_err(|_| ControlError::BadRequest("`version` is out of range".into()).into())
}

async fn rollback_config(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let version = required_version(&body)?;
    let mut secrets = stored_secrets(&api).await;
    if let Ok(Some(old)) = api.store.config_version(version).await {
        secrets.extend(Scrubber::of_config(&old.config));
    }
    let result = async {
        let reloads = api.status.subscribe();
        let applied = config_ops::rollback(&*api.store, version, &who(&headers)).await?;
        ok(run_here(applied, reloads).await)
    }
    .await;
    scrubbed(result, &secrets)
}

/// An apply's answer: what was stored, and whether this node runs it.
#[derive(Serialize)]
struct AppliedHere {
    #[serde(flatten)]
    applied: Applied,
    /// This node runs the stored version.
    running_here: bool,
    /// Why it does not: its reload error, or that it is still loading.
    #[serde(skip_serializing_if = "Option::is_none")]
    node_error: Option<String>,
}

/// Waits until this node runs `applied.version`, a reload after the apply fails, or [`RUN_WAIT`]
/// passes. `reloads` was subscribed before the apply, so no reload after it is missed.
async fn run_here(applied: Applied, mut reloads: watch::Receiver<NodeStatus>) -> AppliedHere {
    let version = applied.version;
    let outcome = tokio::time::timeout(RUN_WAIT, async {
        let mut reloaded = false;
        loop {
            {
                let status = reloads.borrow_and_update();
                if status.config_version >= version {
                    return Ok(());
                }
                if let (true, Some(error)) = (reloaded, &status.last_error) {
                    return Err(error.clone());
                }
            }
            if reloads.changed().await.is_err() {
                return Err("the node is stopping".to_string());
            }
            reloaded = true;
        }
    })
    .await;
    let node_error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error),
        Err(_) => Some(format!(
            "still loading version {version} after {}s",
            RUN_WAIT.as_secs()
        )),
    };
    AppliedHere {
        applied,
        running_here: node_error.is_none(),
        node_error,
    }
}

async fn list_mappers(State(api): State<Arc<Api>>) -> ApiResult {
    let mappers = api.store.mappers().await?;
    let list: Vec<Value> = mappers
        .values()
        .map(|m| {
            let promoted = m.version(m.promoted);
            json!({
                "name": m.name,
                "promoted": m.promoted,
                "versions": m.versions.len(),
                "hash": promoted.map(|v| v.hash.as_str()),
                "uploader": promoted.map(|v| v.uploader.as_str()),
                "uploaded_at_ms": promoted.map(|v| v.uploaded_at_ms),
            })
        })
        .collect();
    ok(list)
}

async fn show_mapper(State(api): State<Arc<Api>>, Path(name): Path<String>) -> ApiResult {
    match api.store.mappers().await?.remove(&name) {
        Some(meta) => ok(meta),
        None => Err(ControlError::NotFound(format!("mapper `{name}`")).into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    module_base64: String,
    sample: Value,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    manifest: MapperManifest,
    #[serde(default)]
    promote: bool,
}

async fn push_mapper(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: PushBody = parse_body(&body)?;
    // The smoke call's params may carry secrets a mapper's error could echo.
    let secrets = Scrubber::of_tree(&json!(body.params));
    scrubbed(push(&api, name, headers, body).await, &secrets)
}

async fn push(api: &Api, name: String, headers: HeaderMap, body: PushBody) -> ApiResult {
    let module = base64::engine::general_purpose::STANDARD
        .decode(body.module_base64.as_bytes())
        .map_err(|e| ControlError::BadRequest(format!("module_base64: {e}")))?;
    let push = mapper_ops::Push {
        name,
        module: module.into(),
        sample: body.sample.to_string(),
        params: body.params.into_iter().collect(),
        notes: body.notes,
        manifest: body.manifest,
        promote: body.promote,
    };
    ok(mapper_ops::push(&*api.store, &api.engine, push, &who(&headers)).await?)
}

async fn promote_mapper(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let version = mapper_version(required_version(&body)?)?;
    let who = who(&headers);
    ok(mapper_ops::promote(&*api.store, &name, version, &who, "mapper.promote").await?)
}

async fn rollback_mapper(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let version = version_in(&body)?.map(mapper_version).transpose()?;
    ok(mapper_ops::rollback(&*api.store, &name, version, &who(&headers)).await?)
}

async fn list_keys(State(api): State<Arc<Api>>) -> ApiResult {
    ok(json!({ "keys": key_ops::list(&*api.store).await? }))
}

async fn create_key(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let request: key_ops::NewKey = parse_body(&body)?;
    ok(key_ops::create(&*api.store, request, &who(&headers)).await?)
}

async fn revoke_key(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> ApiResult {
    ok(key_ops::revoke(&*api.store, &key, &who(&headers)).await?)
}
