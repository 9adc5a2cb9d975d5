//! The HTTP API: `/metrics`, `/healthz`, `/readyz`, JSON under `/api/v1/`, registry push hooks
//! under `/hooks/{source}`, and the web page ([`crate::web`]) on the same routes.
//!
//! [`router`] builds the routes over a [`Backend`] (the daemon implements it; tests use their own)
//! and [`serve`] runs them on a listener until a shutdown future resolves. Everything but
//! `/healthz` and `/api/v1/openapi.json` needs the bearer token (or a session of the page) when
//! one is configured, unless `[web] read_without_token` opens the reads; anything that changes
//! something always needs it, so without a token those endpoints are off. Tokens and hook
//! secrets are compared in constant time.
//!
//! Check, update and rollback answer when they are done, as they always did, or at once with
//! `202 Accepted` and a job (`GET /api/v1/jobs/{id}`) when the request says
//! `Prefer: respond-async` ([`jobs`]). `/api/v1/events` streams every typed event as
//! Server-Sent Events ([`events`]). The OpenAPI document ([`openapi`]) is generated from the
//! handlers' annotations and the types of [`model`].
//!
//! Nothing is read from a client before it is authenticated, except the body of a signed hook
//! (its signature covers the body) and the page's login form, and those only within
//! [`Limits`]: no API endpoint reads a body at all. The server ([`server`]) bounds header read
//! time, header size and the number of open connections; hooks ([`hooks`]) and the page bound
//! body size and body read time.

mod events;
mod hooks;
pub(crate) mod jobs;
pub(crate) mod model;
pub(crate) mod openapi;
pub(crate) mod payload;
mod server;
pub(crate) mod signature;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

pub use payload::{PushedRepository, Source};
pub use signature::sign_lookout;

use crate::config::WebSettings;
use crate::engine::ServiceOutcome;
use crate::secret::Secret;
use crate::telemetry::Event;
use jobs::Jobs;
use model::{
    CheckBody, ErrorBody, HistoryBody, HistoryView, JobBody, JobKind, PausedBody, RollbackView,
    ServiceDetails, ServiceStatus, ServiceView, ServicesBody, UnblockBody,
};

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
            Json(ErrorBody {
                error: self.to_string(),
                kind: kind.to_owned(),
            }),
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
    /// Every service: current and available versions, last result, status.
    fn services(&self) -> Vec<ServiceView>;
    fn service(&self, name: &str) -> Option<ServiceView>;
    /// What the page's service view adds: its history, its registry's rate limit, its image's
    /// source. May ask the registry (bounded in time), so it is async.
    async fn details(&self, name: &str) -> Option<ServiceDetails>;
    /// Updates and rollbacks, newest first.
    fn history(&self) -> Vec<HistoryView>;
    /// Updates of every service are paused.
    fn paused(&self) -> bool;
    /// Checks now (all services, or these); returns the per-service results. `actor` is who
    /// asked (`api`, `web`), recorded in history.
    async fn check(&self, only: Vec<String>, actor: &str) -> Result<CheckBody, ApiError>;
    async fn update(&self, service: &str, actor: &str) -> Result<ServiceOutcome, ApiError>;
    async fn rollback(&self, service: &str, actor: &str) -> Result<RollbackView, ApiError>;
    fn set_paused(&self, paused: bool) -> Result<(), ApiError>;
    /// Pauses or resumes the updates of one service.
    fn set_service_paused(&self, service: &str, paused: bool) -> Result<(), ApiError>;
    /// Forgets a service's failed candidate so it may be tried again; returns it.
    fn unblock(&self, service: &str) -> Result<Option<String>, ApiError>;
    /// Services whose image is in one of these repositories; a check of them is started.
    fn pushed(&self, repositories: &[PushedRepository]) -> Vec<String>;
    /// Every event from now on (the typed events that also feed logs, metrics and webhooks).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event>;
    /// The services whose view (`services`, `service`) changed, each time one did: after a pass
    /// has recorded its results, after a pause or an unblock. Empty: all of them.
    fn changes(&self) -> tokio::sync::broadcast::Receiver<Vec<String>>;
}

/// The API's settings.
#[derive(Clone, Default)]
pub struct ApiConfig {
    /// Bearer token for `/api/v1/` and `/metrics`; without one, changing endpoints are off.
    pub token: Option<Secret>,
    /// Key for `/hooks/{source}`: the HMAC key of signed deliveries, or the static secret
    /// (`X-Lookout-Hook-Secret`; in the URL from Docker Hub only).
    pub hook_secret: Option<Secret>,
    /// The web page, and who may read without a token.
    pub web: WebSettings,
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
    /// A hook body (or a form of the web page) must arrive whole within this time.
    pub body_read_timeout: Duration,
    /// Largest hook body, in bytes.
    pub max_body: usize,
    /// Signed hook bodies read at once before their signature can be checked.
    pub unverified_bodies: usize,
    /// At shutdown, requests in progress get this long to finish.
    pub drain_timeout: Duration,
    /// Live event streams (`/api/v1/events`) open at once; one more is answered 503.
    pub max_streams: usize,
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
            max_streams: 64,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) config: ApiConfig,
    pub(crate) limits: Limits,
    /// Permits to read a signed hook body (or a login form) before its sender is known.
    pub(crate) unverified_bodies: Arc<tokio::sync::Semaphore>,
    /// Hook deliveries already accepted.
    replays: Mutex<signature::Replays>,
    /// Jobs started with `Prefer: respond-async` or from the page.
    pub(crate) jobs: Arc<Jobs>,
    /// The page's logins.
    pub(crate) sessions: crate::web::session::Sessions,
    /// Permits for live event streams.
    streams: Arc<tokio::sync::Semaphore>,
    /// Set when the server stops: live streams end, so the drain does not wait for them.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Keeps `stopping` open when nobody else will set it.
    _never: Option<tokio::sync::watch::Sender<bool>>,
}

pub(crate) type S = Arc<Shared>;

/// The routes, over `backend`, with the default [`Limits`].
#[cfg(test)]
pub(crate) fn router(backend: Arc<dyn Backend>, config: ApiConfig) -> Router {
    router_with(backend, config, Limits::default())
}

/// The routes, over `backend`, with `limits` for hook bodies.
#[cfg(test)]
pub(crate) fn router_with(backend: Arc<dyn Backend>, config: ApiConfig, limits: Limits) -> Router {
    let (never, stopping) = tokio::sync::watch::channel(false);
    build(backend, config, limits, stopping, Some(never))
}

/// The routes, whose live streams end once `stopping` says `true` (the daemon sets it when the
/// server is about to stop).
pub(crate) fn router_until(
    backend: Arc<dyn Backend>,
    config: ApiConfig,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Router {
    build(backend, config, Limits::default(), stopping, None)
}

fn build(
    backend: Arc<dyn Backend>,
    config: ApiConfig,
    limits: Limits,
    stopping: tokio::sync::watch::Receiver<bool>,
    never: Option<tokio::sync::watch::Sender<bool>>,
) -> Router {
    let base = config.web.base_path.clone();
    let web_on = config.web.enabled;
    let shared = Arc::new(Shared {
        backend,
        sessions: crate::web::session::Sessions::new(config.web.session_ttl),
        config,
        unverified_bodies: Arc::new(tokio::sync::Semaphore::new(limits.unverified_bodies)),
        streams: Arc::new(tokio::sync::Semaphore::new(limits.max_streams)),
        limits,
        replays: Mutex::new(signature::Replays::default()),
        jobs: Arc::new(Jobs::default()),
        stopping,
        _never: never,
    });
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{name}", get(service))
        .route("/api/v1/history", get(history))
        .route("/api/v1/events", get(events::stream))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/check", post(check))
        .route("/api/v1/services/{name}/update", post(update))
        .route("/api/v1/services/{name}/rollback", post(rollback))
        .route("/api/v1/services/{name}/pause", post(pause_service))
        .route("/api/v1/services/{name}/resume", post(resume_service))
        .route("/api/v1/services/{name}/unblock", post(unblock))
        .route("/api/v1/pause", post(pause))
        .route("/api/v1/resume", post(resume))
        .route("/hooks/{source}", post(hooks::hook))
        .route("/hooks/{source}/{secret}", post(hooks::hook_with_secret));
    let site = if web_on {
        api.merge(crate::web::routes())
    } else {
        api
    };
    let site = site.with_state(shared);
    if base.is_empty() {
        site
    } else {
        // Under the proxy's sub-path, and at the root for a proxy that strips it (and for
        // Prometheus and hooks that reach lookout directly).
        Router::new().nest(&base, site.clone()).merge(site)
    }
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
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = if status == StatusCode::FORBIDDEN {
        "forbidden"
    } else {
        "unauthorized"
    };
    (
        status,
        Json(ErrorBody {
            error: message.into(),
            kind: kind.to_owned(),
        }),
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

/// Reads access: open without a token configured or when `[web] read_without_token` says
/// so; else the bearer token or a session of the page is needed.
pub(crate) fn read_denied(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let token = s.config.token.as_ref()?;
    if s.config.web.read_without_token || s.sessions.find(headers).is_some() {
        return None;
    }
    bearer_denied(token, headers)
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

/// The client asked for a job rather than an answer (`Prefer: respond-async`, RFC 7240).
fn wants_async(headers: &HeaderMap) -> bool {
    headers.get_all("prefer").iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split([',', ';'])
                .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
        })
    })
}

/// `202 Accepted` for a job, with its `Location` under the path the request came in on.
pub(crate) fn accepted(job: model::JobView, uri: &axum::http::Uri, base: &str) -> Response {
    let prefix = if !base.is_empty() && uri.path().starts_with(&format!("{base}/")) {
        base
    } else {
        ""
    };
    let location = format!("{prefix}/api/v1/jobs/{}", job.id);
    let mut response = (StatusCode::ACCEPTED, Json(JobBody { job })).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response.headers_mut().insert(
        "preference-applied",
        HeaderValue::from_static("respond-async"),
    );
    response
}

/// Starts a check, update or rollback as a job: what the page and `Prefer: respond-async` do.
pub(crate) fn start_job(
    s: &S,
    kind: JobKind,
    service: Option<String>,
    actor: &'static str,
) -> model::JobView {
    let backend = s.backend.clone();
    let name = service.clone().unwrap_or_default();
    match kind {
        JobKind::Check => s.jobs.start(kind, service, actor, async move {
            let only = if name.is_empty() {
                Vec::new()
            } else {
                vec![name]
            };
            Ok(json!(backend.check(only, actor).await?))
        }),
        JobKind::Update => s.jobs.start(kind, service, actor, async move {
            Ok(json!(backend.update(&name, actor).await?))
        }),
        JobKind::Rollback => s.jobs.start(kind, service, actor, async move {
            Ok(json!(backend.rollback(&name, actor).await?))
        }),
    }
}

/// The service views with `updating` for the services a job changes now.
pub(crate) fn with_jobs(s: &Shared, mut views: Vec<ServiceView>) -> Vec<ServiceView> {
    for v in &mut views {
        if s.jobs.busy(&v.name) {
            v.status = ServiceStatus::Updating;
        }
    }
    views
}

/// Answers while the process runs; needs no token.
#[utoipa::path(get, path = "/healthz", tag = "lookout", security(()),
    responses((status = 200, description = "The process runs", content_type = "text/plain", body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", tag = "lookout", security(()),
    responses(
        (status = 200, description = "Ready", content_type = "text/plain", body = String),
        (status = 503, description = "Not ready, and why", content_type = "text/plain", body = String),
    ))]
pub(crate) async fn readyz(State(s): State<S>) -> Response {
    match s.backend.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "lookout",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
    ))]
pub(crate) async fn metrics(State(s): State<S>, headers: HeaderMap) -> Response {
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

/// Every service, with what runs, what is available and its status.
#[utoipa::path(get, path = "/api/v1/services", tag = "lookout",
    responses(
        (status = 200, body = ServicesBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
    ))]
pub(crate) async fn services(State(s): State<S>, headers: HeaderMap) -> Response {
    if let Some(r) = read_denied(&s, &headers) {
        return r;
    }
    Json(ServicesBody {
        services: with_jobs(&s, s.backend.services()),
        paused: s.backend.paused(),
    })
    .into_response()
}

#[utoipa::path(get, path = "/api/v1/services/{name}", tag = "lookout",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, body = ServiceView),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
    ))]
pub(crate) async fn service(
    State(s): State<S>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = read_denied(&s, &headers) {
        return r;
    }
    match s.backend.service(&name) {
        Some(v) => Json(with_jobs(&s, vec![v]).remove(0)).into_response(),
        None => no_service(&name),
    }
}

/// Updates and rollbacks, newest first.
#[utoipa::path(get, path = "/api/v1/history", tag = "lookout",
    responses(
        (status = 200, body = HistoryBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
    ))]
pub(crate) async fn history(State(s): State<S>, headers: HeaderMap) -> Response {
    if let Some(r) = read_denied(&s, &headers) {
        return r;
    }
    Json(HistoryBody {
        history: s.backend.history(),
    })
    .into_response()
}

/// A job started with `Prefer: respond-async` (or from the page).
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "lookout",
    params(("id" = String, Path, description = "The id a 202 answer gave")),
    responses(
        (status = 200, body = model::JobView),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such job (or forgotten: the newest 1,000 are kept, until a restart)", body = ErrorBody),
    ))]
pub(crate) async fn job(
    State(s): State<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = read_denied(&s, &headers) {
        return r;
    }
    match s.jobs.get(&id) {
        Some(job) => Json(job).into_response(),
        None => ApiError::NotFound(format!("no job {id:?}")).into_response(),
    }
}

/// Checks every service now. Answers when the check is over, or at once with a job
/// (`202`) when the request says `Prefer: respond-async`.
#[utoipa::path(post, path = "/api/v1/check", tag = "lookout",
    params(("Prefer" = Option<String>, Header, description = "`respond-async`: answer 202 with a job at once", example = "respond-async")),
    responses(
        (status = 200, description = "The check is over", body = CheckBody),
        (status = 202, description = "The check runs as a job", body = JobBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 403, description = "Changes are off: no api_token is configured", body = ErrorBody),
        (status = 409, description = "lookout is stopping", body = ErrorBody),
        (status = 500, description = "lookout failed", body = ErrorBody),
        (status = 503, description = "A dependency does not answer", body = ErrorBody),
    ))]
pub(crate) async fn check(
    State(s): State<S>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = change_denied(&s, &headers) {
        return r;
    }
    if wants_async(&headers) {
        let job = start_job(&s, JobKind::Check, None, "api");
        return accepted(job, &uri, &s.config.web.base_path);
    }
    answer(s.backend.check(Vec::new(), "api").await)
}

/// Updates one service now, whatever its windows and the pause say.
#[utoipa::path(post, path = "/api/v1/services/{name}/update", tag = "lookout",
    params(
        ("name" = String, Path, description = "The service's name"),
        ("Prefer" = Option<String>, Header, description = "`respond-async`: answer 202 with a job at once", example = "respond-async"),
    ),
    responses(
        (status = 200, description = "The update is over (whatever its result)", body = ServiceOutcome),
        (status = 202, description = "The update runs as a job", body = JobBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 403, description = "Changes are off: no api_token is configured", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 409, description = "lookout is stopping", body = ErrorBody),
        (status = 500, description = "lookout failed", body = ErrorBody),
        (status = 503, description = "A dependency does not answer", body = ErrorBody),
    ))]
pub(crate) async fn update(
    State(s): State<S>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let now = async |s: S, name: String| answer(s.backend.update(&name, "api").await);
    service_change(s, &uri, &headers, name, JobKind::Update, now).await
}

/// Rolls one service back to the image it ran before its last update.
#[utoipa::path(post, path = "/api/v1/services/{name}/rollback", tag = "lookout",
    params(
        ("name" = String, Path, description = "The service's name"),
        ("Prefer" = Option<String>, Header, description = "`respond-async`: answer 202 with a job at once", example = "respond-async"),
    ),
    responses(
        (status = 200, description = "The rollback is over", body = RollbackView),
        (status = 202, description = "The rollback runs as a job", body = JobBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 403, description = "Changes are off: no api_token is configured", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 409, description = "Nothing to roll back, or lookout is stopping", body = ErrorBody),
        (status = 422, description = "The recorded image cannot be used", body = ErrorBody),
        (status = 500, description = "lookout failed", body = ErrorBody),
        (status = 503, description = "A dependency does not answer", body = ErrorBody),
    ))]
pub(crate) async fn rollback(
    State(s): State<S>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let now = async |s: S, name: String| answer(s.backend.rollback(&name, "api").await);
    service_change(s, &uri, &headers, name, JobKind::Rollback, now).await
}

/// A change to one service, as the API runs each: authorised, the service known, then a job
/// answered at once with `202` when the request says `Prefer: respond-async`, else `now`'s
/// answer when the change is over.
async fn service_change(
    s: S,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    name: String,
    kind: JobKind,
    now: impl AsyncFnOnce(S, String) -> Response,
) -> Response {
    if let Some(r) = change_denied(&s, headers) {
        return r;
    }
    if s.backend.service(&name).is_none() {
        return no_service(&name);
    }
    if wants_async(headers) {
        let job = start_job(&s, kind, Some(name), "api");
        return accepted(job, uri, &s.config.web.base_path);
    }
    now(s, name).await
}

/// Pauses the updates of every service (checks go on).
#[utoipa::path(post, path = "/api/v1/pause", tag = "lookout",
    responses(
        (status = 200, body = PausedBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 403, description = "Changes are off: no api_token is configured", body = ErrorBody),
        (status = 500, description = "The pause could not be recorded", body = ErrorBody),
    ))]
pub(crate) async fn pause(State(s): State<S>, headers: HeaderMap) -> Response {
    set_paused(s, headers, true)
}

#[utoipa::path(post, path = "/api/v1/resume", tag = "lookout",
    responses(
        (status = 200, body = PausedBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 403, description = "Changes are off: no api_token is configured", body = ErrorBody),
        (status = 500, description = "The pause could not be recorded", body = ErrorBody),
    ))]
pub(crate) async fn resume(State(s): State<S>, headers: HeaderMap) -> Response {
    set_paused(s, headers, false)
}

fn set_paused(s: S, headers: HeaderMap, paused: bool) -> Response {
    if let Some(r) = change_denied(&s, &headers) {
        return r;
    }
    match s.backend.set_paused(paused) {
        Ok(()) => Json(PausedBody {
            paused,
            service: None,
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Pauses the updates of one service (its checks go on).
#[utoipa::path(post, path = "/api/v1/services/{name}/pause", tag = "lookout",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, body = PausedBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 403, description = "Changes are off: no api_token is configured", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 500, description = "The pause could not be recorded", body = ErrorBody),
    ))]
pub(crate) async fn pause_service(
    State(s): State<S>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    set_service_paused(s, headers, name, true)
}

#[utoipa::path(post, path = "/api/v1/services/{name}/resume", tag = "lookout",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, body = PausedBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 403, description = "Changes are off: no api_token is configured", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 500, description = "The pause could not be recorded", body = ErrorBody),
    ))]
pub(crate) async fn resume_service(
    State(s): State<S>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    set_service_paused(s, headers, name, false)
}

fn set_service_paused(s: S, headers: HeaderMap, name: String, paused: bool) -> Response {
    if let Some(r) = change_denied(&s, &headers) {
        return r;
    }
    if s.backend.service(&name).is_none() {
        return no_service(&name);
    }
    match s.backend.set_service_paused(&name, paused) {
        Ok(()) => Json(PausedBody {
            paused,
            service: Some(name),
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Forgets the service's failed candidate, so the next check may try it again.
#[utoipa::path(post, path = "/api/v1/services/{name}/unblock", tag = "lookout",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, body = UnblockBody),
        (status = 401, description = "No or a wrong bearer token", body = ErrorBody),
        (status = 403, description = "Changes are off: no api_token is configured", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 500, description = "The change could not be recorded", body = ErrorBody),
    ))]
pub(crate) async fn unblock(
    State(s): State<S>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = change_denied(&s, &headers) {
        return r;
    }
    if s.backend.service(&name).is_none() {
        return no_service(&name);
    }
    match s.backend.unblock(&name) {
        Ok(unblocked) => Json(UnblockBody {
            service: name,
            unblocked,
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

fn answer<T: serde::Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
