//! The HTTP API: `/metrics`, `/healthz`, `/readyz`, JSON under `/api/v1/`, and registry push hooks
//! under `/hooks/{source}`.
//!
//! [`router`] builds the routes over a [`Backend`] (the daemon implements it; tests use their own)
//! and [`serve`] runs them on a listener until a shutdown future resolves. Everything but
//! `/healthz` needs the bearer token when one is configured; anything that changes something
//! always needs it, so without a token those endpoints are off. Tokens and hook secrets are
//! compared in constant time.

mod hooks;

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub use hooks::{PushedRepository, parse_push};

use crate::config::Secret;

/// What the API asks of the running lookout.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
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
    async fn check(&self, only: Vec<String>) -> Result<Value, String>;
    async fn update(&self, service: &str) -> Result<Value, String>;
    async fn rollback(&self, service: &str) -> Result<Value, String>;
    fn set_paused(&self, paused: bool) -> Result<(), String>;
    /// Services whose image is in one of these repositories; a check of them is started.
    fn pushed(&self, repositories: &[PushedRepository]) -> Vec<String>;
}

/// The API's settings.
#[derive(Clone)]
pub struct ApiConfig {
    /// Bearer token for `/api/v1/` and `/metrics`; without one, changing endpoints are off.
    pub token: Option<Secret>,
    /// Secret for `/hooks/{source}` (path segment, `?secret=`, or `X-Lookout-Hook-Secret`).
    pub hook_secret: Option<Secret>,
}

struct Shared {
    backend: Arc<dyn Backend>,
    config: ApiConfig,
}

type S = Arc<Shared>;

/// The routes, over `backend`.
pub fn router(backend: Arc<dyn Backend>, config: ApiConfig) -> Router {
    let shared = Arc::new(Shared { backend, config });
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

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Constant-time comparison, so response times do not reveal how much of a token matched.
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, b) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ b);
    }
    diff == 0
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
        None => error(StatusCode::NOT_FOUND, format!("no service {name:?}")),
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
        return error(StatusCode::NOT_FOUND, format!("no service {name:?}"));
    }
    answer(s.backend.update(&name).await)
}

async fn rollback(State(s): State<S>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Some(r) = change_denied(&s, &headers) {
        return r;
    }
    if s.backend.service(&name).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no service {name:?}"));
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
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn answer(result: Result<Value, String>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

#[cfg(test)]
mod tests;
