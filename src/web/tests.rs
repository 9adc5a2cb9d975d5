//! The page's handlers without a browser: what is served to whom, logins, CSRF, actions, the
//! headers, the base path. The browser tests are in `tests/web.rs`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::api::tests::{Recorder, TOKEN, web_view};
use crate::api::{ApiConfig, Backend, router};
use crate::config::WebSettings;
use crate::secret::Secret;

/// An answer: status, headers, body.
struct Answer {
    status: u16,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `name=value` of each `Set-Cookie`.
    fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies().iter().find_map(|c| {
            c.split(';')
                .next()?
                .strip_prefix(&format!("{name}="))
                .map(str::to_owned)
        })
    }
}

fn app_with(token: bool, web: WebSettings, backend: Arc<dyn Backend>) -> axum::Router {
    let config = ApiConfig {
        token: token.then(|| Secret::new(TOKEN)),
        hook_secret: None,
        web,
    };
    router(backend, config)
}

fn app(token: bool) -> (axum::Router, Arc<Recorder>) {
    let backend = Arc::new(Recorder::default());
    (
        app_with(token, WebSettings::default(), backend.clone()),
        backend,
    )
}

async fn send(app: &axum::Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &axum::Router, uri: &str, cookie: &str) -> Answer {
    let mut req = Request::get(uri);
    if !cookie.is_empty() {
        req = req.header("cookie", cookie);
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

async fn post(app: &axum::Router, uri: &str, cookie: &str, form: &str, json: bool) -> Answer {
    let mut req = Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "lookout.test")
        .header("origin", "http://lookout.test");
    if !cookie.is_empty() {
        req = req.header("cookie", cookie);
    }
    if json {
        req = req.header("accept", "application/json");
    }
    send(app, req.body(Body::from(form.to_owned())).unwrap()).await
}

/// The value of the hidden `csrf` field of a page.
fn csrf_field(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the page has a CSRF field");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Logs in: (the session cookie header, the session's CSRF token).
async fn log_in(app: &axum::Router) -> (String, String) {
    let form = get(app, "/login", "").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let pre = form.cookie("lookout_csrf").expect("a double-submit cookie");
    let csrf = csrf_field(&form.body);
    assert_eq!(pre, csrf);
    let done = post(
        app,
        "/login",
        &format!("lookout_csrf={pre}"),
        &format!("csrf={csrf}&next=%2F&token={TOKEN}"),
        false,
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let id = done.cookie("lookout_session").expect("a session cookie");
    let cookie = format!("lookout_session={id}");
    let page = get(app, "/", &cookie).await;
    assert_eq!(page.status, 200);
    (cookie, csrf_field(&page.body))
}

#[tokio::test]
async fn the_page_shows_every_service_with_strict_headers() {
    let (app, _) = app(false);
    let page = get(&app, "/", "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert!(page.body.contains("data-name=\"web\""), "{}", page.body);
    assert!(page.body.contains("b-unchecked"), "{}", page.body);
    let csp = page.header("content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("referrer-policy"), "same-origin");
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(!page.body.contains(" style=\""), "no inline style (CSP)");
    assert!(!page.body.contains("<script>"), "no inline script (CSP)");
    // Without a token there are no actions and nothing to log in to.
    assert!(page.body.contains("Actions are off"), "{}", page.body);
    assert!(!page.body.contains("value=\"update\""), "{}", page.body);
    let css = get(&app, "/assets/app.css", "").await;
    assert_eq!(css.header("content-type"), "text/css; charset=utf-8");
    assert!(css.body.contains("prefers-color-scheme: dark"));
    let js = get(&app, "/assets/app.js", "").await;
    assert_eq!(js.header("content-type"), "text/javascript; charset=utf-8");
    assert!(js.body.contains("EventSource"));
}

#[tokio::test]
async fn with_a_token_the_page_needs_a_login_unless_reads_are_opened() {
    let (app, _) = app(true);
    let page = get(&app, "/services/web", "").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/login?next=%2Fservices%2Fweb");
    assert_eq!(get(&app, "/services/web/row", "").await.status, 401);
    assert_eq!(get(&app, "/api/v1/events", "").await.status, 401);

    let open = app_with(
        true,
        WebSettings {
            read_without_token: true,
            ..WebSettings::default()
        },
        Arc::new(Recorder::default()),
    );
    let page = get(&open, "/", "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Log in</a> to act"), "{}", page.body);
    assert_eq!(get(&open, "/api/v1/services", "").await.status, 200);
}

#[tokio::test]
async fn logging_in_gives_a_strict_session_cookie_and_logging_out_ends_it() {
    let (app, _) = app(true);
    let form = get(&app, "/login", "").await;
    let pre = form.cookie("lookout_csrf").unwrap();
    let csrf = csrf_field(&form.body);
    // A wrong token, and a right token without the form's CSRF token, are refused.
    let wrong = post(
        &app,
        "/login",
        &format!("lookout_csrf={pre}"),
        &format!("csrf={csrf}&token=nope"),
        false,
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong token"), "{}", wrong.body);
    assert!(wrong.cookie("lookout_session").is_none());
    let no_csrf = post(&app, "/login", "", &format!("token={TOKEN}"), false).await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    assert!(no_csrf.cookie("lookout_session").is_none());

    let done = post(
        &app,
        "/login",
        &format!("lookout_csrf={pre}"),
        &format!("csrf={csrf}&next=%2Fservices%2Fweb&token={TOKEN}"),
        false,
    )
    .await;
    assert_eq!(done.status, 303);
    assert_eq!(done.header("location"), "/services/web");
    let set = done
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("lookout_session="))
        .unwrap();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/;"), "{set}");
    assert!(!set.contains("Secure"), "plain HTTP from no proxy: {set}");
    let id = done.cookie("lookout_session").unwrap();
    assert!(!id.contains(TOKEN) && id.len() == 64);
    let cookie = format!("lookout_session={id}");
    // The session reads the API too (the page's script does).
    assert_eq!(get(&app, "/api/v1/services", &cookie).await.status, 200);
    let page = get(&app, "/", &cookie).await;
    assert!(page.body.contains("Log out"), "{}", page.body);
    let session_csrf = csrf_field(&page.body);
    assert_ne!(session_csrf, csrf, "a session has its own CSRF token");

    let out = post(
        &app,
        "/logout",
        &cookie,
        &format!("csrf={session_csrf}"),
        false,
    )
    .await;
    assert_eq!(out.status, 303);
    assert!(
        out.cookies()
            .iter()
            .any(|c| c.starts_with("lookout_session=;") && c.contains("Max-Age=0"))
    );
    assert_eq!(get(&app, "/", &cookie).await.status, 303, "logged out");
    assert_eq!(get(&app, "/api/v1/services", &cookie).await.status, 401);
}

#[tokio::test]
async fn the_cookie_is_secure_behind_a_trusted_tls_proxy() {
    let (app, _) = app(true);
    let form = get(&app, "/login", "").await;
    let pre = form.cookie("lookout_csrf").unwrap();
    let csrf = csrf_field(&form.body);
    let mut req = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("lookout_csrf={pre}"))
        .header("x-forwarded-proto", "https")
        .body(Body::from(format!("csrf={csrf}&token={TOKEN}")))
        .unwrap();
    let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let done = send(&app, req).await;
    assert_eq!(done.status, 303);
    assert!(
        done.cookies()
            .iter()
            .any(|c| c.starts_with("lookout_session=") && c.ends_with("; Secure")),
        "{:?}",
        done.cookies()
    );
}

#[tokio::test]
async fn actions_need_a_session_and_the_csrf_token() {
    let (app, backend) = app(true);
    // Not logged in: refused, nothing done.
    let anonymous = post(&app, "/services/web", "", "do=update&csrf=x", false).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert!(anonymous.body.contains("Log in"), "{}", anonymous.body);
    let (cookie, csrf) = log_in(&app).await;
    // Logged in but without the token, with a wrong one, or from another site: refused.
    let none = post(&app, "/services/web", &cookie, "do=update", false).await;
    assert_eq!(none.status, 403, "{}", none.body);
    assert!(none.body.contains("CSRF"), "{}", none.body);
    let wrong = post(&app, "/services/web", &cookie, "do=update&csrf=0000", true).await;
    assert_eq!(wrong.status, 403);
    let req = Request::post("/services/web")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .header("host", "lookout.test")
        .header("origin", "https://evil.example")
        .body(Body::from(format!("do=pause&csrf={csrf}")))
        .unwrap();
    let cross = send(&app, req).await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    assert!(backend.calls.lock().unwrap().is_empty(), "nothing was done");

    // With both: the update starts as a job the page follows.
    let started = post(
        &app,
        "/services/web",
        &cookie,
        &format!("do=update&csrf={csrf}"),
        true,
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let job: serde_json::Value = serde_json::from_str(&started.body).unwrap();
    let id = job["job"]["id"].as_str().unwrap().to_owned();
    assert_eq!(job["job"]["kind"], "update");
    let mut state = String::new();
    for _ in 0..100 {
        let j = get(&app, &format!("/api/v1/jobs/{id}"), &cookie).await;
        let j: serde_json::Value = serde_json::from_str(&j.body).unwrap();
        state = j["state"].as_str().unwrap().to_owned();
        if state != "running" {
            assert_eq!(j["result"]["result"], "updated");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(state, "succeeded");
    // Without JavaScript: a redirect to the service page, which names the job.
    let redirected = post(
        &app,
        "/services/web",
        &cookie,
        &format!("do=pause&csrf={csrf}"),
        false,
    )
    .await;
    assert_eq!(redirected.status, 303);
    assert_eq!(redirected.header("location"), "/services/web?done=paused");
    let all = post(
        &app,
        "/actions",
        &cookie,
        &format!("do=resume&csrf={csrf}"),
        false,
    )
    .await;
    assert_eq!(all.header("location"), "/?done=resumed");
    let unblock = post(
        &app,
        "/services/web",
        &cookie,
        &format!("do=unblock&csrf={csrf}"),
        true,
    )
    .await;
    assert_eq!(unblock.status, 200);
    assert_eq!(
        *backend.calls.lock().unwrap(),
        [
            "update web by web",
            "paused web true",
            "paused false",
            "unblock web"
        ]
    );
    assert_eq!(
        post(
            &app,
            "/services/nope",
            &cookie,
            &format!("do=update&csrf={csrf}"),
            false
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn the_api_starts_a_job_when_asked_to_answer_at_once() {
    let (app, backend) = app(true);
    let req = Request::post("/api/v1/services/web/update")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("prefer", "respond-async, wait=5")
        .body(Body::empty())
        .unwrap();
    let a = send(&app, req).await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.header("preference-applied"), "respond-async");
    let job: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let id = job["job"]["id"].as_str().unwrap();
    assert_eq!(a.header("location"), format!("/api/v1/jobs/{id}"));
    // Without the preference, the answer waits, as it always did.
    let req = Request::post("/api/v1/check")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let sync = send(&app, req).await;
    assert_eq!(
        (sync.status, sync.body.as_str()),
        (200, "{\"services\":[]}")
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut calls = backend.calls.lock().unwrap().clone();
    calls.sort();
    assert_eq!(calls, ["check [] by api", "update web by api"]);
    let unknown = get(&app, "/api/v1/jobs/nope", "").await;
    assert_eq!(
        unknown.status, 401,
        "job reads need the token like other reads"
    );
}

#[tokio::test]
async fn the_page_and_api_live_under_the_base_path_too() {
    let backend = Arc::new(Recorder::default());
    let app = app_with(
        true,
        WebSettings {
            base_path: "/lookout".into(),
            ..WebSettings::default()
        },
        backend,
    );
    let login = get(&app, "/lookout/login", "").await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(
        login.body.contains("action=\"/lookout/login\""),
        "{}",
        login.body
    );
    assert!(login.body.contains("href=\"/lookout/assets/app.css?v="));
    assert!(
        login.cookies().iter().any(|c| c.contains("Path=/lookout/")),
        "{:?}",
        login.cookies()
    );
    assert_eq!(
        get(&app, "/lookout/services/web", "")
            .await
            .header("location"),
        "/lookout/login?next=%2Flookout%2Fservices%2Fweb"
    );
    let req = Request::post("/lookout/api/v1/check")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("prefer", "respond-async")
        .body(Body::empty())
        .unwrap();
    let a = send(&app, req).await;
    assert!(
        a.header("location").starts_with("/lookout/api/v1/jobs/"),
        "{}",
        a.header("location")
    );
    assert_eq!(
        get(&app, "/healthz", "").await.status,
        200,
        "the root still serves the API"
    );
}

/// A backend whose one service has a name made to break out of HTML.
struct Hostile;

#[async_trait::async_trait]
impl Backend for Hostile {
    fn metrics(&self) -> String {
        String::new()
    }
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn services(&self) -> Vec<crate::api::model::ServiceView> {
        let mut v = web_view();
        v.name = "<script>alert(1)</script>\"'".into();
        v.display_name = Some("<b>Shop</b> & <i>web</i>".into());
        v.available = Some("evil:\"><img src=x>".into());
        vec![v]
    }
    fn service(&self, _: &str) -> Option<crate::api::model::ServiceView> {
        self.services().pop()
    }
    async fn details(&self, _: &str) -> Option<crate::api::model::ServiceDetails> {
        None
    }
    fn history(&self) -> Vec<crate::api::model::HistoryView> {
        Vec::new()
    }
    fn paused(&self) -> bool {
        false
    }
    async fn check(
        &self,
        _: Vec<String>,
        _: &str,
    ) -> Result<crate::api::model::CheckBody, crate::api::ApiError> {
        Err(crate::api::ApiError::Conflict("no".into()))
    }
    async fn update(
        &self,
        _: &str,
        _: &str,
    ) -> Result<crate::engine::ServiceOutcome, crate::api::ApiError> {
        Err(crate::api::ApiError::Conflict("no".into()))
    }
    async fn rollback(
        &self,
        _: &str,
        _: &str,
    ) -> Result<crate::api::model::RollbackView, crate::api::ApiError> {
        Err(crate::api::ApiError::Conflict("no".into()))
    }
    fn set_paused(&self, _: bool) -> Result<(), crate::api::ApiError> {
        Ok(())
    }
    fn set_service_paused(&self, _: &str, _: bool) -> Result<(), crate::api::ApiError> {
        Ok(())
    }
    fn unblock(&self, _: &str) -> Result<Option<String>, crate::api::ApiError> {
        Ok(None)
    }
    fn pushed(&self, _: &[crate::api::PushedRepository]) -> Vec<String> {
        Vec::new()
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::telemetry::Event> {
        tokio::sync::broadcast::channel(1).1
    }
    fn changes(&self) -> tokio::sync::broadcast::Receiver<Vec<String>> {
        tokio::sync::broadcast::channel(1).1
    }
}

#[tokio::test]
async fn names_and_references_are_escaped() {
    let app = app_with(false, WebSettings::default(), Arc::new(Hostile));
    let page = get(&app, "/", "").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(!page.body.contains("<img src=x>"), "{}", page.body);
    assert!(
        page.body
            .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("/services/%3Cscript%3Ealert"),
        "{}",
        page.body
    );
    // The display name (`wud.display.name`) is the link's text, escaped too.
    assert!(!page.body.contains("<b>Shop"), "{}", page.body);
    assert!(
        page.body
            .contains("&lt;b&gt;Shop&lt;&#x2f;b&gt; &amp; &lt;i&gt;web&lt;&#x2f;i&gt;</a>"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn the_event_stream_carries_the_typed_events() {
    let backend = Arc::new(Recorder::default());
    let app = app_with(false, WebSettings::default(), backend.clone());
    // The router stays: a stream ends when the server (and so the router) is gone.
    let res = app
        .clone()
        .oneshot(Request::get("/api/v1/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body().into_data_stream();
    use futures_util::StreamExt;
    let hello = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(hello.starts_with("event: hello"), "{hello}");
    backend
        .events
        .send(crate::telemetry::Event::RateLimit {
            registry: "docker.io".into(),
            remaining: 9,
        })
        .unwrap();
    let msg = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(msg.starts_with("event: rate_limit\ndata: {"), "{msg}");
    assert!(msg.contains("\"remaining\":9"), "{msg}");
    assert_eq!(
        backend.changed.receiver_count(),
        1,
        "the stream listens for changes"
    );
    backend.changed.send(vec!["web".into()]).unwrap();
    let msg = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(msg.starts_with("event: changed\ndata: {"), "{msg}");
    assert!(msg.contains("\"services\":[\"web\"]"), "{msg}");
}
