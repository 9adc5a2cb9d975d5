//! The HTTP API: `/metrics`, `/healthz`, `/readyz`, JSON under `/api/v1/`, and registry push hooks
//! under `/hooks/{source}`.
//!
//! [`router`] builds the routes over a [`Backend`] (the daemon implements it; tests use their own)
//! and [`serve`] runs them on a listener until a shutdown future resolves. Everything but
//! `/healthz` needs the bearer token when one is configured; anything that changes something
//! always needs it, so without a token those endpoints are off. Tokens and hook secrets are
//! compared in constant time.
//!
//! Nothing is read from a client before it is authenticated, except the body of a signed hook
//! (its signature covers the body), and that only within [`Limits`]: no API endpoint reads a
//! body at all. The server ([`server`]) bounds header read time, header size and the number of
//! open connections; hooks ([`hooks`]) bound body size and body read time.

mod hooks;
pub(crate) mod payload;
mod server;
pub(crate) mod signature;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub use payload::{PushedRepository, Source};
pub use signature::sign_lookout;

use crate::secret::Secret;

/// Why the backend did not do what a request asked; the API answers it with the status of its
/// kind and the body `{"error": message, "kind": kind}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiError {
    /// 404: no such service (or other named thing).
    #[error("{0}")]
    NotFound(String),
    /// 409: the request is valid but cannot be done in the current state (nothing to roll
    /// back, lookout is stopping).
    #[error("{0}")]
    Conflict(String),
    /// 422: the request names something that cannot be acted on as given.
    #[error("{0}")]
    Invalid(String),
    /// 503: a dependency (Docker, compose) does not answer; trying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// 500: lookout itself failed (the state file could not be written, …).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The `kind` field of the error body.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Invalid(_) => "invalid",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.kind();
        (
            self.status(),
            Json(json!({ "error": self.to_string(), "kind": kind })),
        )
            .into_response()
    }
}

/// What the API asks of the running lookout.
#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    /// Prometheus text for `/metrics`.
    fn metrics(&self) -> String;
    /// `Ok` when the configuration is loaded, Docker answers and the state is writable; else why not.
    async fn ready(&self) -> Result<(), String>;
    /// Every configured service: current and available versions, last result.
    fn services(&self) -> Vec<Value>;
    fn service(&self, name: &str) -> Option<Value>;
    /// Updates and rollbacks, newest first.
    fn history(&self) -> Vec<Value>;
    /// Checks now (all services, or these); returns the per-service results.
    async fn check(&self, only: Vec<String>) -> Result<Value, ApiError>;
    async fn update(&self, service: &str) -> Result<Value, ApiError>;
    async fn rollback(&self, service: &str) -> Result<Value, ApiError>;
    fn set_paused(&self, paused: bool) -> Result<(), ApiError>;
    /// Services whose image is in one of these repositories; a check of them is started.
    fn pushed(&self, repositories: &[PushedRepository]) -> Vec<String>;
}

/// The API's settings.
#[derive(Clone)]
pub struct ApiConfig {
    /// Bearer token for `/api/v1/` and `/metrics`; without one, changing endpoints are off.
    pub token: Option<Secret>,
    /// Key for `/hooks/{source}`: the HMAC key of signed deliveries, or the static secret
    /// (`X-Lookout-Hook-Secret`; in the URL from Docker Hub only).
    pub hook_secret: Option<Secret>,
}

/// What the HTTP server lets one client cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once (those that sent a request). At the cap a new one closes the
    /// oldest idle one; it is refused only when all are in the middle of a request.
    pub max_connections: usize,
    /// Connections accepted that have sent nothing yet, on top of `max_connections`; the oldest
    /// makes room for a new one. Both caps together stay 256 below the file descriptor limit.
    pub max_waiting: usize,
    /// The first byte, then the whole request head (request line and headers), must each arrive
    /// within this time; it also ends idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// A hook body must arrive whole within this time.
    pub body_read_timeout: Duration,
    /// Largest hook body, in bytes.
    pub max_body: usize,
    /// Signed hook bodies read at once before their signature can be checked.
    pub unverified_bodies: usize,
    /// At shutdown, requests in progress get this long to finish.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_waiting: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_body: 1024 * 1024,
            unverified_bodies: 16,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

struct Shared {
    backend: Arc<dyn Backend>,
    config: ApiConfig,
    limits: Limits,
    /// Permits to read a signed hook body before its signature is checked.
    unverified_bodies: Arc<tokio::sync::Semaphore>,
    /// Hook deliveries already accepted.
    replays: Mutex<signature::Replays>,
}

type S = Arc<Shared>;

/// The routes, over `backend`, with the default [`Limits`].
pub(crate) fn router(backend: Arc<dyn Backend>, config: ApiConfig) -> Router {
    router_with(backend, config, Limits::default())
}

/// The routes, over `backend`, with `limits` for hook bodies.
pub(crate) fn router_with(backend: Arc<dyn Backend>, config: ApiConfig, limits: Limits) -> Router {
    let shared = Arc::new(Shared {
        backend,
        config,
        unverified_bodies: Arc::new(tokio::sync::Semaphore::new(limits.unverified_bodies)),
        limits,
        replays: Mutex::new(signature::Replays::default()),
    });
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{name}", get(service))
        .route("/api/v1/history", get(history))
        .route("/api/v1/check", post(check))
        .route("/api/v1/services/{name}/update", post(update))
        .route("/api/v1/services/{name}/rollback", post(rollback))
        .route("/api/v1/pause", post(pause))
        .route("/api/v1/resume", post(resume))
        .route("/hooks/{source}", post(hooks::hook))
        .route("/hooks/{source}/{secret}", post(hooks::hook_with_secret))
        .with_state(shared)
}

/// Serves `router` on `listener` with the default [`Limits`] until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, Limits::default(), shutdown).await
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then requests in
/// progress get `limits.drain_timeout` to finish.
pub(crate) async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::run(listener, router, limits, shutdown).await
}

/// An authentication error: `{"error": message, "kind": "unauthorized" | "forbidden"}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = if status == StatusCode::FORBIDDEN {
        "forbidden"
    } else {
        "unauthorized"
    };
    (
        status,
        Json(json!({ "error": message.into(), "kind": kind })),
    )
        .into_response()
}

fn no_service(name: &str) -> Response {
    ApiError::NotFound(format!("no service {name:?}")).into_response()
}

/// Constant-time comparison, so response times reveal neither how much of a token matched nor
/// its length: both sides are hashed, and the hashes compared with `subtle`.
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (g, e) = (Sha256::digest(given), Sha256::digest(expected));
    bool::from(g.as_slice().ct_eq(e.as_slice()))
}

/// True at most once a minute per `last`, for warnings a flood would otherwise repeat.
pub(crate) fn every_minute(last: &Mutex<Option<Instant>>) -> bool {
    let mut last = last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let due = last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
    if due {
        *last = Some(Instant::now());
    }
    due
}

/// Reads access: open without a token configured, else the token is needed.
fn read_denied(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    s.config
        .token
        .as_ref()
        .and_then(|token| bearer_denied(token, headers))
}

/// Changes always need the token; without one configured they are off.
fn change_denied(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    match &s.config.token {
        None => Some(error(
            StatusCode::FORBIDDEN,
            "changing endpoints are off: set api_token in the configuration to enable them",
        )),
        Some(token) => bearer_denied(token, headers),
    }
}

fn bearer_denied(token: &Secret, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if same_secret(g.trim().as_bytes(), token.expose().as_bytes()) => None,
        Some(_) => Some(error(StatusCode::UNAUTHORIZED, "wrong bearer token")),
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send `Authorization: Bearer <api_token>`",
        )),
    }
}

async fn readyz(State(s): State<S>) -> Response {
    match s.backend.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<S>, headers: HeaderMap) -> Response {
    if let Some(r) = read_denied(&s, &headers) {
        return r;
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.backend.metrics(),
    )
        .into_response()
}

async fn services(State(s): State<S>, headers: HeaderMap) -> Response {
    if let Some(r) = read_denied(&s, &headers) {
        return r;
    }
    Json(json!({ "services": s.backend.services() })).into_response()
}

async fn service(State(s): State<S>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Some(r) = read_denied(&s, &headers) {
        return r;
    }
    match s.backend.service(&name) {
        Some(v) => Json(v).into_response(),
        None => no_service(&name),
    }
}

async fn history(State(s): State<S>, headers: HeaderMap) -> Response {
    if let Some(r) = read_denied(&s, &headers) {
        return r;
    }
    Json(json!({ "history": s.backend.history() })).into_response()
}

async fn check(State(s): State<S>, headers: HeaderMap) -> Response {
    if let Some(r) = change_denied(&s, &headers) {
        return r;
    }
    answer(s.backend.check(Vec::new()).await)
}

async fn update(State(s): State<S>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Some(r) = change_denied(&s, &headers) {
        return r;
    }
    if s.backend.service(&name).is_none() {
        return no_service(&name);
    }
    answer(s.backend.update(&name).await)
}

async fn rollback(State(s): State<S>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Some(r) = change_denied(&s, &headers) {
        return r;
    }
    if s.backend.service(&name).is_none() {
        return no_service(&name);
    }
    answer(s.backend.rollback(&name).await)
}

async fn pause(State(s): State<S>, headers: HeaderMap) -> Response {
    set_paused(s, headers, true)
}

async fn resume(State(s): State<S>, headers: HeaderMap) -> Response {
    set_paused(s, headers, false)
}

fn set_paused(s: S, headers: HeaderMap, paused: bool) -> Response {
    if let Some(r) = change_denied(&s, &headers) {
        return r;
    }
    match s.backend.set_paused(paused) {
        Ok(()) => Json(json!({ "paused": paused })).into_response(),
        Err(e) => e.into_response(),
    }
}

fn answer(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests;
