//! The page operators keep open: every service with what it runs, what is coming, its state
//! and the buttons to act, served by the daemon on the API's listener (`/`, or `[web]
//! base_path` behind a reverse proxy).
//!
//! Server-rendered HTML ([`render`]: MiniJinja templates, a stylesheet and a little plain
//! JavaScript, all embedded in the binary). Every form works without JavaScript; with it, rows
//! follow the live event stream (`/api/v1/events`), actions post in place and the page follows
//! the job they start, and the table sorts and filters without a reload.
//!
//! Who may do what ([`session`]): reading needs what the API's reads need (nothing without
//! `api_token`; else a session, unless `[web] read_without_token`); acting needs a session,
//! which the login form gives for the API token, and every form's CSRF token. Every answer
//! carries a strict Content-Security-Policy (no inline script or style), `nosniff`,
//! `frame-ancestors 'none'` and a same-origin referrer policy; pages are not cached.
//!
//! The page only reads [`crate::api::Backend`] and starts the API's jobs: it decides nothing.

pub(crate) mod links;
mod render;
pub(crate) mod session;
pub(crate) mod status;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};

use crate::api::model::{JobKind, ServiceStatus, ServiceView};
use crate::api::{ApiError, S, read_denied, same_secret, start_job, with_jobs};
use session::{CSRF_COOKIE, Refusal, SESSION_COOKIE, Session};

/// Largest form body read, in bytes.
const MAX_FORM: usize = 8 * 1024;
/// Failed logins allowed per minute, from everyone together; more are answered 429.
const LOGIN_FAILURES_PER_MINUTE: u32 = 10;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The page's routes, relative to the base path.
pub(crate) fn routes() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/services/{name}", get(service).post(service_action))
        .route("/services/{name}/row", get(row))
        .route("/actions", post(global_action))
        .route("/jobs/{id}", get(job))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers every answer of the page carries.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    // Not `no-referrer`: with it, browsers send `Origin: null` on the page's own form posts.
    set(h, "referrer-policy", "same-origin");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    );
    set(h, "cache-control", "no-store");
    response
}

/// Who is asking, and what they may do.
struct Viewer {
    session: Option<Session>,
    /// The CSRF token this viewer's forms carry: the session's, else the double-submit cookie's.
    csrf: String,
    /// A new double-submit cookie to set, when the request had none.
    new_csrf_cookie: bool,
    can_read: bool,
    can_act: bool,
    token_configured: bool,
}

fn viewer(s: &S, headers: &HeaderMap) -> Viewer {
    let session = s.sessions.find(headers);
    let token_configured = s.config.token.is_some();
    let (csrf, new_csrf_cookie) = match (&session, session::cookie(headers, CSRF_COOKIE)) {
        (Some(session), _) => (session.csrf.clone(), false),
        (None, Some(c)) if c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (c.to_owned(), false)
        }
        (None, _) => (session::random_token().unwrap_or_default(), true),
    };
    Viewer {
        can_read: read_denied(s, headers).is_none(),
        can_act: token_configured && session.is_some(),
        session,
        csrf,
        new_csrf_cookie,
        token_configured,
    }
}

/// The page's path prefix as a cookie path.
fn cookie_path(s: &S) -> String {
    format!("{}/", s.config.web.base_path)
}

fn peer(connect: Option<&ConnectInfo<SocketAddr>>) -> Option<SocketAddr> {
    connect.map(|c| c.0)
}

/// The values every page's layout uses.
fn page(s: &S, v: &Viewer) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("base".into(), json!(s.config.web.base_path));
    m.insert("host".into(), json!(host()));
    m.insert("asset_version".into(), json!(render::asset_version()));
    m.insert("live".into(), json!(v.can_read));
    m.insert("paused".into(), json!(v.can_read && s.backend.paused()));
    m.insert("logged_in".into(), json!(v.session.is_some()));
    m.insert(
        "can_log_in".into(),
        json!(v.token_configured && v.session.is_none()),
    );
    m.insert("can_act".into(), json!(v.can_act));
    // Buttons show wherever a token is configured; pressing them needs a session.
    m.insert("can_press".into(), json!(v.token_configured));
    m.insert("token_configured".into(), json!(v.token_configured));
    m.insert("csrf".into(), json!(v.csrf));
    m
}

fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(crate::telemetry::hostname)
}

/// An HTML answer, with the double-submit cookie when the viewer got a new one.
fn html(
    s: &S,
    v: &Viewer,
    status: StatusCode,
    name: &str,
    ctx: serde_json::Map<String, Value>,
) -> Response {
    let body = match render::render(name, &Value::Object(ctx)) {
        Ok(body) => body,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    if v.new_csrf_cookie && !v.csrf.is_empty() {
        let cookie = session::set_cookie(
            CSRF_COOKIE,
            &v.csrf,
            &cookie_path(s),
            s.sessions.ttl(),
            false,
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

fn message(
    s: &S,
    v: &Viewer,
    status: StatusCode,
    heading: &str,
    text: &str,
    link: Option<(&str, String)>,
) -> Response {
    let mut ctx = page(s, v);
    ctx.insert("heading".into(), json!(heading));
    ctx.insert("text".into(), json!(text));
    ctx.insert(
        "kind".into(),
        json!(if status.is_success() { "ok" } else { "error" }),
    );
    if let Some((text, href)) = link {
        ctx.insert("link".into(), json!({"text": text, "href": href}));
    }
    html(s, v, status, "message.html", ctx)
}

/// Where to log in, coming back to `uri` afterwards.
fn to_login(s: &S, uri: &axum::http::Uri) -> Response {
    let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let encoded: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    Redirect::to(&format!("{}/login?next={encoded}", s.config.web.base_path)).into_response()
}

/// A `next` that stays on this page: a path under the base path, never another host.
fn safe_next(s: &S, next: Option<&str>) -> String {
    let base = &s.config.web.base_path;
    let home = format!("{base}/");
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && (base.is_empty() || n == base || n.starts_with(&home)) =>
        {
            n.to_owned()
        }
        _ => home,
    }
}

/// One row's values for the templates: the API's view plus what the page shows of it.
fn row_view(view: &ServiceView) -> Value {
    let mut v = serde_json::to_value(view).unwrap_or(Value::Null);
    let order = ServiceStatus::ALL
        .iter()
        .position(|st| *st == view.status)
        .unwrap_or(0);
    if let Value::Object(m) = &mut v {
        m.insert("status_label".into(), json!(view.status.label()));
        m.insert("order".into(), json!(order));
        m.insert(
            "running_tag".into(),
            json!(view.running.clone().map(render::tag_of)),
        );
        m.insert(
            "running_digest_short".into(),
            json!(view.running_digest.as_deref().map(render::short_digest)),
        );
        m.insert(
            "available_tag".into(),
            json!(view.available.clone().map(render::tag_of)),
        );
        m.insert("policy_source_label".into(), json!(view.policy_source));
        m.insert(
            "last_result_label".into(),
            json!(
                view.last_result
                    .as_ref()
                    .map(|r| r.result.as_str().replace('_', " "))
            ),
        );
        m.insert(
            "last_reason".into(),
            json!(view.last_result.as_ref().and_then(|r| r.reason.clone())),
        );
    }
    v
}

/// Sorts as `key` says: `status` (most urgent first), `name`, `last_check` (newest first).
fn sort_views(views: &mut [ServiceView], key: &str) {
    let rank = |v: &ServiceView| ServiceStatus::ALL.iter().position(|s| *s == v.status);
    match key {
        "name" => views.sort_by(|a, b| a.name.cmp(&b.name)),
        "last_check" => {
            views.sort_by(|a, b| b.last_check.cmp(&a.last_check).then(a.name.cmp(&b.name)))
        }
        _ => views.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.name.cmp(&b.name))),
    }
}

const SORTS: &[(&str, &str)] = &[
    ("status", "state"),
    ("name", "name"),
    ("last_check", "last check"),
];

async fn index(
    State(s): State<S>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = viewer(&s, &headers);
    if !v.can_read {
        return to_login(&s, &uri);
    }
    let mut views = with_jobs(&s, s.backend.services());
    let total = views.len();
    let mut counts: Vec<Value> = Vec::new();
    for st in ServiceStatus::ALL {
        let n = views.iter().filter(|x| x.status == st).count();
        if n > 0 {
            counts.push(json!({"status": st.as_str(), "label": st.label(), "count": n}));
        }
    }
    let filter = q.get("status").and_then(|x| ServiceStatus::parse(x));
    let needle = q
        .get("q")
        .map(|x| x.trim().to_lowercase())
        .unwrap_or_default();
    views.retain(|x| {
        filter.is_none_or(|f| x.status == f)
            && (needle.is_empty() || x.name.to_lowercase().contains(&needle))
    });
    let sort = q
        .get("sort")
        .map(String::as_str)
        .filter(|k| SORTS.iter().any(|(key, _)| key == k))
        .unwrap_or("status");
    sort_views(&mut views, sort);
    let mut ctx = page(&s, &v);
    ctx.insert("total".into(), json!(total));
    ctx.insert("counts".into(), json!(counts));
    ctx.insert(
        "statuses".into(),
        json!(
            ServiceStatus::ALL
                .iter()
                .map(|st| json!({"status": st.as_str(), "label": st.label()}))
                .collect::<Vec<_>>()
        ),
    );
    ctx.insert(
        "sorts".into(),
        json!(
            SORTS
                .iter()
                .map(|(k, l)| json!({"key": k, "label": l}))
                .collect::<Vec<_>>()
        ),
    );
    ctx.insert("sort".into(), json!(sort));
    ctx.insert(
        "filter_status".into(),
        json!(filter.map(ServiceStatus::as_str)),
    );
    ctx.insert("q".into(), json!(q.get("q").cloned().unwrap_or_default()));
    ctx.insert(
        "services".into(),
        Value::Array(views.iter().map(row_view).collect()),
    );
    if let Some(notice) = notice(&s, &q) {
        ctx.insert("notice".into(), notice);
    }
    html(&s, &v, StatusCode::OK, "index.html", ctx)
}

/// The banner a redirect after an action asks for: `?job=ID` or `?done=WHAT` (fixed texts
/// only: nothing from the URL is shown as given).
fn notice(s: &S, q: &HashMap<String, String>) -> Option<Value> {
    if let Some(job) = q.get("job").and_then(|id| s.jobs.get(id)) {
        let what = match &job.service {
            Some(name) => format!("{:?} of {name}", job.kind).to_lowercase(),
            None => "check of every service".to_owned(),
        };
        return Some(json!({"kind": "", "text": format!("Started the {what}."), "job": job.id}));
    }
    let text = match q.get("done").map(String::as_str)? {
        "paused" => "Updates are paused.",
        "resumed" => "Updates are resumed.",
        "unblocked" => "The candidate is unblocked; the next check may try it again.",
        "logged_out" => "Logged out.",
        _ => return None,
    };
    Some(json!({"kind": "ok", "text": text}))
}

async fn service(
    State(s): State<S>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = viewer(&s, &headers);
    if !v.can_read {
        return to_login(&s, &uri);
    }
    let Some(view) = s.backend.service(&name) else {
        return not_found(
            &s,
            &v,
            "No such service",
            &format!("lookout knows no service {name:?}."),
        );
    };
    let view = with_jobs(&s, vec![view]).remove(0);
    let details = s.backend.details(&name).await.unwrap_or_default();
    let links = links::links(
        details.running_origin.as_ref(),
        details.candidate_origin.as_ref(),
    );
    let mut ctx = page(&s, &v);
    ctx.insert("s".into(), row_view(&view));
    ctx.insert("has_history".into(), json!(!details.history.is_empty()));
    ctx.insert("d".into(), json!(details));
    ctx.insert("links".into(), json!(links));
    if let Some(notice) = notice(&s, &q) {
        ctx.insert("notice".into(), notice);
    }
    html(&s, &v, StatusCode::OK, "service.html", ctx)
}

/// A 404 page with a link back to the table.
fn not_found(s: &S, v: &Viewer, title: &str, text: &str) -> Response {
    let back = format!("{}/", s.config.web.base_path);
    message(
        s,
        v,
        StatusCode::NOT_FOUND,
        title,
        text,
        Some(("All services", back)),
    )
}

/// One `<tr>`, for the script to replace a row with when an event says it changed.
async fn row(State(s): State<S>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let v = viewer(&s, &headers);
    if !v.can_read {
        return (StatusCode::UNAUTHORIZED, "log in first").into_response();
    }
    let Some(view) = s.backend.service(&name) else {
        return (StatusCode::NOT_FOUND, "no such service").into_response();
    };
    let view = with_jobs(&s, vec![view]).remove(0);
    let mut ctx = page(&s, &v);
    ctx.insert("s".into(), row_view(&view));
    html(&s, &v, StatusCode::OK, "row.html", ctx)
}

async fn job(
    State(s): State<S>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let v = viewer(&s, &headers);
    if !v.can_read {
        return to_login(&s, &uri);
    }
    let Some(job) = s.jobs.get(&id) else {
        return not_found(
            &s,
            &v,
            "No such job",
            "This job is not known (jobs are forgotten at a restart).",
        );
    };
    let mut ctx = page(&s, &v);
    ctx.insert("job".into(), json!(job));
    html(&s, &v, StatusCode::OK, "job.html", ctx)
}

/// A form's fields, read within [`MAX_FORM`] bytes and the body read timeout.
async fn read_form(
    s: &S,
    body: Body,
) -> Result<HashMap<String, String>, (StatusCode, &'static str)> {
    let read = Limited::new(body, MAX_FORM).collect();
    let bytes = match tokio::time::timeout(s.limits.body_read_timeout, read).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(_)) => return Err((StatusCode::PAYLOAD_TOO_LARGE, "the form is too large")),
        Err(_) => {
            return Err((
                StatusCode::REQUEST_TIMEOUT,
                "the form did not arrive in time",
            ));
        }
    };
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// A refused form post: JSON for the script, a page otherwise.
fn refuse(s: &S, v: &Viewer, headers: &HeaderMap, status: StatusCode, text: &str) -> Response {
    if wants_json(headers) {
        return crate::api::error(status, text);
    }
    let link = if status == StatusCode::UNAUTHORIZED && v.token_configured {
        Some(("Log in", format!("{}/login", s.config.web.base_path)))
    } else {
        Some(("All services", format!("{}/", s.config.web.base_path)))
    };
    message(s, v, status, "Refused", text, link)
}

/// Checks that a post may act: a session, this site, its CSRF token. `Err` is the answer.
fn authorise_post(
    s: &S,
    v: &Viewer,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(), Box<Response>> {
    if !v.token_configured {
        return Err(Box::new(refuse(
            s,
            v,
            headers,
            StatusCode::FORBIDDEN,
            "Actions are off: set api_token in the configuration to enable them.",
        )));
    }
    let Some(session) = &v.session else {
        return Err(Box::new(refuse(
            s,
            v,
            headers,
            StatusCode::UNAUTHORIZED,
            "Log in with the API token first.",
        )));
    };
    match session::check_post(
        headers,
        form.get("csrf").map(String::as_str),
        Some(&session.csrf),
    ) {
        Ok(()) => Ok(()),
        Err(Refusal::CrossSite) => Err(Box::new(refuse(
            s,
            v,
            headers,
            StatusCode::FORBIDDEN,
            "Refused: the form was sent from another site.",
        ))),
        Err(Refusal::Csrf) => Err(Box::new(refuse(
            s,
            v,
            headers,
            StatusCode::FORBIDDEN,
            "Refused: the form's CSRF token is missing or wrong. Reload the page and try again.",
        ))),
    }
}

/// What an action answers: JSON for the script, else a redirect to `to`.
fn acted(headers: &HeaderMap, body: Value, to: String) -> Response {
    if wants_json(headers) {
        let status = if body.get("job").is_some() {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        return (status, axum::Json(body)).into_response();
    }
    Redirect::to(&to).into_response()
}

/// `POST /services/{name}` with `do` = `check`, `update`, `rollback`, `pause`, `resume` or
/// `unblock`.
async fn service_action(
    State(s): State<S>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let v = viewer(&s, &headers);
    let form = match read_form(&s, body).await {
        Ok(f) => f,
        Err((status, why)) => return refuse(&s, &v, &headers, status, why),
    };
    if let Err(r) = authorise_post(&s, &v, &headers, &form) {
        return *r;
    }
    if s.backend.service(&name).is_none() {
        return refuse(
            &s,
            &v,
            &headers,
            StatusCode::NOT_FOUND,
            &format!("lookout knows no service {name:?}."),
        );
    }
    let action = form.get("do").cloned().unwrap_or_default();
    let here = format!(
        "{}/services/{}",
        s.config.web.base_path,
        render::segment(&name)
    );
    let kind = match action.as_str() {
        "check" => Some(JobKind::Check),
        "update" => Some(JobKind::Update),
        "rollback" => Some(JobKind::Rollback),
        _ => None,
    };
    if let Some(kind) = kind {
        let job = start_job(&s, kind, Some(name), "web");
        let to = format!("{here}?job={}", job.id);
        return acted(&headers, json!({ "job": job }), to);
    }
    let done: Result<&str, ApiError> = match action.as_str() {
        "pause" => s.backend.set_service_paused(&name, true).map(|()| "paused"),
        "resume" => s
            .backend
            .set_service_paused(&name, false)
            .map(|()| "resumed"),
        "unblock" => s.backend.unblock(&name).map(|_| "unblocked"),
        _ => {
            return refuse(&s, &v, &headers, StatusCode::NOT_FOUND, "No such action.");
        }
    };
    match done {
        Ok(done) => acted(
            &headers,
            json!({ "service": name, "done": done }),
            format!("{here}?done={done}"),
        ),
        Err(e) => refuse(&s, &v, &headers, e.status(), &e.to_string()),
    }
}

/// `POST /actions` with `do` = `check` (every service), `pause` or `resume` (all updates).
async fn global_action(State(s): State<S>, headers: HeaderMap, body: Body) -> Response {
    let v = viewer(&s, &headers);
    let form = match read_form(&s, body).await {
        Ok(f) => f,
        Err((status, why)) => return refuse(&s, &v, &headers, status, why),
    };
    if let Err(r) = authorise_post(&s, &v, &headers, &form) {
        return *r;
    }
    let home = format!("{}/", s.config.web.base_path);
    let done = match form.get("do").map(String::as_str).unwrap_or_default() {
        "check" => {
            let job = start_job(&s, JobKind::Check, None, "web");
            let to = format!("{home}?job={}", job.id);
            return acted(&headers, json!({ "job": job }), to);
        }
        "pause" => s.backend.set_paused(true).map(|()| "paused"),
        "resume" => s.backend.set_paused(false).map(|()| "resumed"),
        _ => return refuse(&s, &v, &headers, StatusCode::NOT_FOUND, "No such action."),
    };
    match done {
        Ok(done) => acted(
            &headers,
            json!({ "done": done, "reload": true }),
            format!("{home}?done={done}"),
        ),
        Err(e) => refuse(&s, &v, &headers, e.status(), &e.to_string()),
    }
}

async fn login_form(
    State(s): State<S>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let v = viewer(&s, &headers);
    if !v.token_configured {
        return message(
            &s,
            &v,
            StatusCode::NOT_FOUND,
            "Nothing to log in to",
            "No api_token is configured: the page is read-only and actions are off. Set api_token to enable them.",
            Some(("All services", format!("{}/", s.config.web.base_path))),
        );
    }
    login_page(
        &s,
        &v,
        StatusCode::OK,
        &safe_next(&s, q.get("next").map(String::as_str)),
        None,
    )
}

fn login_page(s: &S, v: &Viewer, status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let mut ctx = page(s, v);
    ctx.insert("next".into(), json!(next));
    ctx.insert("error".into(), json!(error));
    html(s, v, status, "login.html", ctx)
}

/// Failed logins in the current minute.
fn failures() -> &'static Mutex<(Option<Instant>, u32)> {
    static F: Mutex<(Option<Instant>, u32)> = Mutex::new((None, 0));
    &F
}

fn too_many_failures() -> bool {
    let f = failures().lock().unwrap_or_else(|p| p.into_inner());
    matches!(f.0, Some(at) if at.elapsed().as_secs() < 60) && f.1 >= LOGIN_FAILURES_PER_MINUTE
}

fn count_failure() {
    let mut f = failures().lock().unwrap_or_else(|p| p.into_inner());
    match f.0 {
        Some(at) if at.elapsed().as_secs() < 60 => f.1 = f.1.saturating_add(1),
        _ => *f = (Some(Instant::now()), 1),
    }
}

async fn login(
    State(s): State<S>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let v = viewer(&s, &headers);
    let Some(token) = s.config.token.clone() else {
        return refuse(
            &s,
            &v,
            &headers,
            StatusCode::NOT_FOUND,
            "No api_token is configured.",
        );
    };
    if too_many_failures() {
        return refuse(
            &s,
            &v,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed logins this minute; wait a minute and try again.",
        );
    }
    // The body is read before anyone is known: it takes one of the few permits hooks use.
    let Ok(_permit) = s.unverified_bodies.clone().try_acquire_owned() else {
        return refuse(
            &s,
            &v,
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy; try again.",
        );
    };
    let form = match read_form(&s, body).await {
        Ok(f) => f,
        Err((status, why)) => return refuse(&s, &v, &headers, status, why),
    };
    let expected = session::cookie(&headers, CSRF_COOKIE);
    if session::check_post(&headers, form.get("csrf").map(String::as_str), expected).is_err() {
        return refuse(
            &s,
            &v,
            &headers,
            StatusCode::FORBIDDEN,
            "Refused: the login form's CSRF token is missing or wrong. Reload the page and try again.",
        );
    }
    let next = safe_next(&s, form.get("next").map(String::as_str));
    let given = form.get("token").map(|t| t.trim()).unwrap_or_default();
    if !same_secret(given.as_bytes(), token.expose().as_bytes()) {
        count_failure();
        tracing::warn!("a login to the web page failed: wrong token");
        return login_page(
            &s,
            &v,
            StatusCode::UNAUTHORIZED,
            &next,
            Some("Wrong token."),
        );
    }
    let Some((id, _)) = s.sessions.create() else {
        return refuse(
            &s,
            &v,
            &headers,
            StatusCode::INTERNAL_SERVER_ERROR,
            "No randomness for a session.",
        );
    };
    let secure = session::over_tls(&headers, peer(connect.as_deref()), &s.config.web);
    let cookie = session::set_cookie(
        SESSION_COOKIE,
        &id,
        &cookie_path(&s),
        s.sessions.ttl(),
        secure,
    );
    tracing::info!("logged in to the web page");
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn logout(
    State(s): State<S>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let v = viewer(&s, &headers);
    let form = match read_form(&s, body).await {
        Ok(f) => f,
        Err((status, why)) => return refuse(&s, &v, &headers, status, why),
    };
    if let Some(session) = &v.session
        && session::check_post(
            &headers,
            form.get("csrf").map(String::as_str),
            Some(&session.csrf),
        )
        .is_err()
    {
        return refuse(
            &s,
            &v,
            &headers,
            StatusCode::FORBIDDEN,
            "Refused: the form's CSRF token is missing or wrong.",
        );
    }
    s.sessions.remove(&headers);
    let secure = session::over_tls(&headers, peer(connect.as_deref()), &s.config.web);
    let mut response =
        Redirect::to(&format!("{}/?done=logged_out", s.config.web.base_path)).into_response();
    if let Ok(value) = HeaderValue::from_str(&session::clear_cookie(
        SESSION_COOKIE,
        &cookie_path(&s),
        secure,
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", render::CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", render::JS)
}

#[cfg(test)]
mod tests;
