//! Every route, and authentication (missing, wrong, right token), without a socket; one test
//! over a real socket.

use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::*;

/// A backend that records what the API asked of it.
pub(crate) struct Recorder {
    pub(crate) calls: Mutex<Vec<String>>,
    /// What its `subscribe` hands out.
    pub(crate) events: tokio::sync::broadcast::Sender<Event>,
    /// What its `changes` hands out.
    pub(crate) changed: tokio::sync::broadcast::Sender<Vec<String>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            calls: Mutex::default(),
            events: tokio::sync::broadcast::channel(16).0,
            changed: tokio::sync::broadcast::channel(16).0,
        }
    }
}

impl Recorder {
    fn log(&self, s: impl Into<String>) {
        self.calls.lock().unwrap().push(s.into());
    }
}

/// The service `web` as a backend shows it.
pub(crate) fn web_view() -> ServiceView {
    use model::*;
    ServiceView {
        name: "web".into(),
        compose_file: Some("/srv/app/compose.yaml".into()),
        compose_service: "web".into(),
        policy: "semver".into(),
        policy_source: "config".into(),
        origin: Origin::Configured,
        display_name: None,
        enabled: true,
        image: "nginx:1.27.3".into(),
        registry: "docker.io".into(),
        running: None,
        running_digest: None,
        available: None,
        last_check: None,
        last_update: None,
        next_check: None,
        failed_candidate: None,
        last_result: None,
        in_flight: false,
        paused: false,
        service_paused: false,
        window: WindowView {
            always: true,
            open: true,
            closes_at: None,
            opens_at: None,
        },
        status: ServiceStatus::Unchecked,
    }
}

/// The answer of an update of `web`.
pub(crate) fn updated() -> ServiceOutcome {
    ServiceOutcome {
        service: "web".into(),
        from: None,
        to: None,
        digest: None,
        result: crate::engine::ServiceResult::Updated,
        reason: None,
        stage: None,
        duration: Duration::ZERO,
        check_duration: Duration::ZERO,
        phases: Some(crate::engine::update::Phases {
            pull: Duration::from_millis(1500),
            recreate: Duration::from_millis(700),
            health_gate: Duration::from_secs(1),
        }),
    }
}

#[async_trait]
impl Backend for Recorder {
    fn metrics(&self) -> String {
        "lookout_checks_skipped_total 0\n".into()
    }
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn services(&self) -> Vec<ServiceView> {
        vec![web_view()]
    }
    fn service(&self, name: &str) -> Option<ServiceView> {
        (name == "web").then(web_view)
    }
    async fn details(&self, name: &str) -> Option<ServiceDetails> {
        (name == "web").then(ServiceDetails::default)
    }
    fn history(&self) -> Vec<HistoryView> {
        vec![]
    }
    fn paused(&self) -> bool {
        false
    }
    async fn check(&self, only: Vec<String>, actor: &str) -> Result<CheckBody, ApiError> {
        self.log(format!("check {only:?} by {actor}"));
        Ok(CheckBody {
            services: Vec::new(),
        })
    }
    async fn update(&self, service: &str, actor: &str) -> Result<ServiceOutcome, ApiError> {
        self.log(format!("update {service} by {actor}"));
        Ok(updated())
    }
    async fn rollback(&self, service: &str, actor: &str) -> Result<RollbackView, ApiError> {
        self.log(format!("rollback {service} by {actor}"));
        Err(ApiError::Conflict("nothing to roll back".into()))
    }
    fn set_paused(&self, paused: bool) -> Result<(), ApiError> {
        self.log(format!("paused {paused}"));
        Ok(())
    }
    fn set_service_paused(&self, service: &str, paused: bool) -> Result<(), ApiError> {
        self.log(format!("paused {service} {paused}"));
        Ok(())
    }
    fn unblock(&self, service: &str) -> Result<Option<String>, ApiError> {
        self.log(format!("unblock {service}"));
        Ok(None)
    }
    fn pushed(&self, repositories: &[PushedRepository]) -> Vec<String> {
        self.log(format!("pushed {}", repositories[0].repository));
        vec!["web".into()]
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }
    fn changes(&self) -> tokio::sync::broadcast::Receiver<Vec<String>> {
        self.changed.subscribe()
    }
}

/// A backend that knows the service `web` and refuses every change with one error.
struct Refuses(ApiError);

#[async_trait]
impl Backend for Refuses {
    fn metrics(&self) -> String {
        String::new()
    }
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn services(&self) -> Vec<ServiceView> {
        vec![web_view()]
    }
    fn service(&self, name: &str) -> Option<ServiceView> {
        (name == "web").then(web_view)
    }
    async fn details(&self, _: &str) -> Option<ServiceDetails> {
        None
    }
    fn history(&self) -> Vec<HistoryView> {
        vec![]
    }
    fn paused(&self) -> bool {
        false
    }
    async fn check(&self, _: Vec<String>, _: &str) -> Result<CheckBody, ApiError> {
        Err(self.0.clone())
    }
    async fn update(&self, _: &str, _: &str) -> Result<ServiceOutcome, ApiError> {
        Err(self.0.clone())
    }
    async fn rollback(&self, _: &str, _: &str) -> Result<RollbackView, ApiError> {
        Err(self.0.clone())
    }
    fn set_paused(&self, _: bool) -> Result<(), ApiError> {
        Err(self.0.clone())
    }
    fn set_service_paused(&self, _: &str, _: bool) -> Result<(), ApiError> {
        Err(self.0.clone())
    }
    fn unblock(&self, _: &str) -> Result<Option<String>, ApiError> {
        Err(self.0.clone())
    }
    fn pushed(&self, _: &[PushedRepository]) -> Vec<String> {
        vec![]
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        tokio::sync::broadcast::channel(1).1
    }
    fn changes(&self) -> tokio::sync::broadcast::Receiver<Vec<String>> {
        tokio::sync::broadcast::channel(1).1
    }
}

pub(crate) const TOKEN: &str = "0123456789abcdef-token";
const HOOK: &str = "hook-secret-42";

fn app(token: bool) -> (Router, Arc<Recorder>) {
    let backend = Arc::new(Recorder::default());
    let config = ApiConfig {
        token: token.then(|| Secret::new(TOKEN)),
        hook_secret: Some(Secret::new(HOOK)),
        ..ApiConfig::default()
    };
    (router(backend.clone(), config), backend)
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = auth {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

const READS: &[(&str, &str)] = &[
    ("GET", "/metrics"),
    ("GET", "/api/v1/services"),
    ("GET", "/api/v1/services/web"),
    ("GET", "/api/v1/history"),
];
const CHANGES: &[(&str, &str)] = &[
    ("POST", "/api/v1/check"),
    ("POST", "/api/v1/services/web/update"),
    ("POST", "/api/v1/services/web/rollback"),
    ("POST", "/api/v1/pause"),
    ("POST", "/api/v1/resume"),
];

#[tokio::test]
async fn with_a_token_everything_but_healthz_needs_it() {
    let (app, backend) = app(true);
    assert_eq!(call(&app, "GET", "/healthz", None, "").await.0, 200);
    for (method, uri) in READS.iter().chain(CHANGES) {
        let (status, body) = call(&app, method, uri, None, "").await;
        assert_eq!(status, 401, "{method} {uri} without a token: {body}");
        assert!(body.contains("missing bearer token"), "{body}");
        let (status, _) = call(&app, method, uri, Some("0123456789abcdef-tokeX"), "").await;
        assert_eq!(status, 401, "{method} {uri} with a wrong token");
    }
    assert!(
        backend.calls.lock().unwrap().is_empty(),
        "nothing ran without the right token"
    );
    for (method, uri) in READS {
        assert_eq!(
            call(&app, method, uri, Some(TOKEN), "").await.0,
            200,
            "{method} {uri}"
        );
    }
    assert_eq!(
        call(&app, "POST", "/api/v1/check", Some(TOKEN), "").await.0,
        200
    );
    assert_eq!(
        call(&app, "POST", "/api/v1/services/web/update", Some(TOKEN), "")
            .await
            .0,
        200
    );
    let (status, body) = call(
        &app,
        "POST",
        "/api/v1/services/web/rollback",
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(
        (status, body.contains("nothing to roll back")),
        (409, true),
        "{body}"
    );
    assert_eq!(
        call(&app, "POST", "/api/v1/pause", Some(TOKEN), "").await.1,
        "{\"paused\":true}"
    );
    assert_eq!(
        call(&app, "POST", "/api/v1/resume", Some(TOKEN), "")
            .await
            .1,
        "{\"paused\":false}"
    );
    assert_eq!(
        call(
            &app,
            "POST",
            "/api/v1/services/nope/update",
            Some(TOKEN),
            ""
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(&app, "GET", "/api/v1/services/nope", Some(TOKEN), "")
            .await
            .0,
        404
    );
    assert_eq!(
        *backend.calls.lock().unwrap(),
        [
            "check [] by api",
            "update web by api",
            "rollback web by api",
            "paused true",
            "paused false"
        ]
    );
}

#[tokio::test]
async fn without_a_token_reads_are_open_and_changes_are_off() {
    let (app, backend) = app(false);
    for (method, uri) in READS {
        assert_eq!(
            call(&app, method, uri, None, "").await.0,
            200,
            "{method} {uri}"
        );
    }
    for (method, uri) in CHANGES {
        let (status, body) = call(&app, method, uri, Some("anything"), "").await;
        assert_eq!(status, 403, "{method} {uri}");
        assert!(body.contains("set api_token"), "{body}");
    }
    assert!(backend.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let (app, _) = app(false);
    let res = app
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

/// A hook request: (status, body).
async fn hook(app: &Router, uri: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut req = Request::post(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn hub_payload(pushed_at: i64) -> String {
    format!(
        r#"{{"push_data":{{"tag":"1.2","pushed_at":{pushed_at}}},"repository":{{"repo_name":"team/web"}}}}"#
    )
}

fn registry_payload(id: &str, at: &str) -> String {
    format!(
        r#"{{"events":[{{"id":"{id}","timestamp":"{at}","action":"push","target":{{"repository":"team/web","tag":"1.2"}},"request":{{"host":"r:5000"}}}}]}}"#
    )
}

fn github_payload() -> &'static str {
    r#"{"action":"published","package":{"name":"web","namespace":"team","package_type":"CONTAINER","package_version":{"container_metadata":{"tag":{"name":"1.2"}},"package_url":"ghcr.io/team/web:1.2"}}}"#
}

fn github_signature(body: &str) -> String {
    crate::telemetry::signature(HOOK.as_bytes(), body.as_bytes())
}

#[tokio::test]
async fn docker_hub_hooks_take_the_secret_in_the_url() {
    let (app, backend) = app(true);
    let hub = hub_payload(now());
    assert_eq!(hook(&app, "/hooks/dockerhub", &[], &hub).await.0, 401);
    assert_eq!(hook(&app, "/hooks/dockerhub/wrong", &[], &hub).await.0, 401);
    assert_eq!(
        hook(&app, "/hooks/dockerhub?secret=wrong", &[], &hub)
            .await
            .0,
        401
    );
    assert!(backend.calls.lock().unwrap().is_empty());
    let (status, body) = hook(&app, &format!("/hooks/dockerhub/{HOOK}"), &[], &hub).await;
    assert_eq!((status, body.as_str()), (202, "{\"checking\":[\"web\"]}"));
    let (status, body) = hook(&app, &format!("/hooks/dockerhub?secret={HOOK}"), &[], &hub).await;
    assert_eq!(status, 409, "the same push again is a replay: {body}");
    let older = hub_payload(now() - 1);
    assert_eq!(
        hook(
            &app,
            &format!("/hooks/dockerhub?secret={HOOK}"),
            &[],
            &older
        )
        .await
        .0,
        202
    );
    let (status, body) = hook(
        &app,
        &format!("/hooks/dockerhub/{HOOK}"),
        &[],
        &hub_payload(now() - 3600),
    )
    .await;
    assert!(
        status == 409 && body.contains("older than 300 s"),
        "{status} {body}"
    );
    assert_eq!(
        hook(&app, &format!("/hooks/dockerhub/{HOOK}"), &[], "{")
            .await
            .0,
        400
    );
    assert_eq!(
        *backend.calls.lock().unwrap(),
        ["pushed team/web", "pushed team/web"]
    );
}

#[tokio::test]
async fn registry_notifications_take_the_secret_in_a_header_never_the_url() {
    let (app, backend) = app(true);
    let at = jiff::Timestamp::now().to_string();
    let (status, body) = hook(
        &app,
        &format!("/hooks/registry/{HOOK}"),
        &[],
        &registry_payload("e1", &at),
    )
    .await;
    assert!(
        status == 401 && body.contains("Docker Hub only"),
        "{status} {body}"
    );
    assert_eq!(
        hook(
            &app,
            &format!("/hooks/registry?secret={HOOK}"),
            &[],
            &registry_payload("e1", &at)
        )
        .await
        .0,
        401
    );
    assert_eq!(
        hook(
            &app,
            "/hooks/registry",
            &[("x-lookout-hook-secret", "wrong")],
            &registry_payload("e1", &at)
        )
        .await
        .0,
        401
    );
    assert!(backend.calls.lock().unwrap().is_empty());
    let (status, body) = hook(
        &app,
        "/hooks/registry",
        &[("x-lookout-hook-secret", HOOK)],
        &registry_payload("e1", &at),
    )
    .await;
    assert_eq!((status, body.as_str()), (202, "{\"checking\":[\"web\"]}"));
    // distribution retries whatever is not 2xx for ever: a replayed or stale event is answered
    // 202 and ignored.
    let bearer = format!("Bearer {HOOK}");
    let (status, body) = hook(
        &app,
        "/hooks/registry",
        &[("authorization", &bearer)],
        &registry_payload("e1", &at),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (202, "{\"checking\":[],\"replayed\":1}")
    );
    let old = (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(10)).to_string();
    let (status, body) = hook(
        &app,
        "/hooks/registry",
        &[("authorization", &bearer)],
        &registry_payload("e2", &old),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (202, "{\"checking\":[],\"stale\":1}")
    );
    assert_eq!(*backend.calls.lock().unwrap(), ["pushed team/web"]);
    let (status, body) = hook(
        &app,
        "/hooks/gitlab",
        &[("x-lookout-hook-secret", HOOK)],
        "{}",
    )
    .await;
    assert!(
        status == 404 && body.contains("unknown hook source"),
        "{body}"
    );
}

#[tokio::test]
async fn github_hooks_must_be_signed() {
    let (app, backend) = app(true);
    let body = github_payload();
    let sig = github_signature(body);
    let event = ("x-github-event", "package");
    let (status, answer) = hook(&app, "/hooks/github", &[event], body).await;
    assert!(
        status == 401 && answer.contains("must be signed"),
        "{answer}"
    );
    let (status, _) = hook(&app, &format!("/hooks/github/{HOOK}"), &[event], body).await;
    assert_eq!(status, 401, "no static secret for GitHub");
    let wrong = github_signature("another body");
    let (status, answer) = hook(
        &app,
        "/hooks/github",
        &[event, ("x-hub-signature-256", &wrong)],
        body,
    )
    .await;
    assert!(
        status == 401 && answer.contains("does not match"),
        "{answer}"
    );
    assert!(backend.calls.lock().unwrap().is_empty());
    let headers = [
        event,
        ("x-hub-signature-256", &sig),
        ("x-github-delivery", "d-1"),
    ];
    let (status, answer) = hook(&app, "/hooks/github", &headers, body).await;
    assert_eq!((status, answer.as_str()), (202, "{\"checking\":[\"web\"]}"));
    assert_eq!(
        hook(&app, "/hooks/github", &headers, body).await.0,
        409,
        "replayed delivery id"
    );
    assert_eq!(*backend.calls.lock().unwrap(), ["pushed team/web"]);
    let ping = r#"{"zen":"Keep it logically awesome."}"#;
    let ping_sig = github_signature(ping);
    let (status, _) = hook(
        &app,
        "/hooks/github",
        &[
            ("x-github-event", "ping"),
            ("x-hub-signature-256", &ping_sig),
        ],
        ping,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn lookout_signatures_work_for_every_source_and_expire() {
    let (app, backend) = app(true);
    let at = jiff::Timestamp::now().to_string();
    let body = registry_payload("s1", &at);
    let sig = sign_lookout(HOOK.as_bytes(), now(), body.as_bytes());
    let (status, answer) = hook(
        &app,
        "/hooks/registry",
        &[("x-lookout-signature", &sig)],
        &body,
    )
    .await;
    assert_eq!((status, answer.as_str()), (202, "{\"checking\":[\"web\"]}"));
    let (status, answer) = hook(
        &app,
        "/hooks/registry",
        &[("x-lookout-signature", &sig)],
        &body,
    )
    .await;
    assert!(status == 409 && answer.contains("replay"), "{answer}");
    let stale = sign_lookout(HOOK.as_bytes(), now() - 600, body.as_bytes());
    let (status, answer) = hook(
        &app,
        "/hooks/registry",
        &[("x-lookout-signature", &stale)],
        &body,
    )
    .await;
    assert!(
        status == 401 && answer.contains("away from lookout's clock"),
        "{answer}"
    );
    let forged = sign_lookout(b"not-the-secret", now(), body.as_bytes());
    assert_eq!(
        hook(
            &app,
            "/hooks/registry",
            &[("x-lookout-signature", &forged)],
            &body
        )
        .await
        .0,
        401
    );
    let (status, answer) = hook(
        &app,
        "/hooks/registry",
        &[("x-lookout-signature", "sha256=00")],
        &body,
    )
    .await;
    assert!(status == 401 && answer.contains("malformed"), "{answer}");
    let hub = hub_payload(now());
    let sig = sign_lookout(HOOK.as_bytes(), now(), hub.as_bytes());
    assert_eq!(
        hook(
            &app,
            "/hooks/dockerhub",
            &[("x-lookout-signature", &sig)],
            &hub
        )
        .await
        .0,
        202
    );
    assert_eq!(
        *backend.calls.lock().unwrap(),
        ["pushed team/web", "pushed team/web"]
    );
}

#[tokio::test]
async fn hook_bodies_have_a_size_cap() {
    let (app, backend) = app(true);
    let big = format!(
        "{{\"events\":[],\"pad\":\"{}\"}}",
        "x".repeat(Limits::default().max_body)
    );
    let (status, answer) = hook(
        &app,
        "/hooks/registry",
        &[("x-lookout-hook-secret", HOOK)],
        &big,
    )
    .await;
    assert!(
        status == 413 && answer.contains("limited to 1048576 bytes"),
        "{answer}"
    );
    // Without a length announced, the read stops at the cap.
    let chunks = futures_util::stream::iter(
        std::iter::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 64 * 1024])))
            .take(64),
    );
    let req = Request::post("/hooks/registry")
        .header("x-lookout-hook-secret", HOOK)
        .body(Body::from_stream(chunks))
        .unwrap();
    assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 413);
    assert!(backend.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn without_a_hook_secret_hooks_are_off() {
    let backend = Arc::new(Recorder::default());
    let app = router(backend.clone(), ApiConfig::default());
    let (status, body) = hook(&app, "/hooks/dockerhub/anything", &[], &hub_payload(now())).await;
    assert!(status == 403 && body.contains("set hook_secret"), "{body}");
}

#[test]
fn secrets_compare_whole() {
    assert!(same_secret(b"abc", b"abc"));
    assert!(!same_secret(b"ab", b"abc"));
    assert!(!same_secret(b"abcd", b"abc"));
    assert!(!same_secret(b"", b"abc"));
    assert!(!same_secret(b"abd", b"abc"));
}

#[tokio::test]
async fn serves_over_a_real_socket_until_shutdown() {
    let (app, _) = app(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, async {
        let _ = stopped.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"),
        "{answer}"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// The API on a real socket with `limits`, stopped when dropped.
struct Running {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn running(limits: Limits) -> Running {
    let backend = Arc::new(Recorder::default());
    let config = ApiConfig {
        token: Some(Secret::new(TOKEN)),
        hook_secret: Some(Secret::new(HOOK)),
        ..ApiConfig::default()
    };
    let app = router_with(backend, config, limits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_with(listener, app, limits, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

fn short(limits: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    limits(&mut l);
    l
}

/// Sends `request` and reads until the server closes; `None` if it is still open after `wait`.
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    request: &[u8],
    wait: Duration,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&answer).into_owned())
}

async fn connect(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

fn status(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("")
}

#[tokio::test]
async fn requests_are_refused_before_their_body_is_read() {
    let server = running(Limits::default()).await;
    let wait = Duration::from_secs(5);
    // Each request announces 2 MB and sends none of it: the answer comes anyway.
    let unauthenticated = [
        ("/hooks/registry", String::new(), "401"),
        ("/hooks/dockerhub/wrong", String::new(), "401"),
        ("/api/v1/check", String::new(), "401"),
        (
            "/hooks/github",
            format!("x-hub-signature-256: sha256={}\r\n", "0".repeat(64)),
            "413",
        ),
        (
            "/hooks/registry",
            format!("x-lookout-signature: t=1,v1={}\r\n", "0".repeat(64)),
            "401",
        ),
    ];
    for (path, headers, expected) in unauthenticated {
        let mut stream = connect(server.addr).await;
        let request =
            format!("POST {path} HTTP/1.1\r\nhost: x\r\n{headers}content-length: 2000000\r\n\r\n");
        let answer = exchange(&mut stream, request.as_bytes(), wait)
            .await
            .unwrap_or_else(|| panic!("{path}: no answer without the body"));
        assert_eq!(status(&answer), expected, "{path}: {answer}");
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_dropped() {
    let server = running(short(|_| {})).await;
    let wait = Duration::from_secs(3);
    let mut idle = connect(server.addr).await;
    assert!(
        exchange(&mut idle, b"", wait).await.is_some(),
        "an idle connection is closed"
    );
    let mut slow_head = connect(server.addr).await;
    assert!(
        exchange(&mut slow_head, b"GET /healthz HTTP/1.1\r\nhost:", wait)
            .await
            .is_some(),
        "a head that does not arrive in time ends the connection"
    );
    let sig = sign_lookout(HOOK.as_bytes(), now(), b"{}");
    let mut slow_body = connect(server.addr).await;
    let request = format!(
        "POST /hooks/registry HTTP/1.1\r\nhost: x\r\nx-lookout-signature: {sig}\r\ntransfer-encoding: chunked\r\n\r\n1\r\n{{\r\n"
    );
    let answer = exchange(&mut slow_body, request.as_bytes(), wait)
        .await
        .expect("a body that does not arrive in time ends the request");
    assert_eq!(status(&answer), "408", "{answer}");
    // A client that keeps up is served.
    let mut ok = connect(server.addr).await;
    let answer = exchange(
        &mut ok,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        wait,
    )
    .await
    .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"),
        "{answer}"
    );
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_make_room_and_busy_ones_do_not() {
    let limits = short(|l| {
        l.max_connections = 4;
        l.max_waiting = 0;
        l.header_read_timeout = Duration::from_secs(30);
        l.body_read_timeout = Duration::from_secs(30);
    });
    let server = running(limits).await;
    let wait = Duration::from_secs(3);
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect(server.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut probe = connect(server.addr).await;
    let healthz = b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let answer = exchange(&mut probe, healthz, wait).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        exchange(&mut idle[0], b"", wait).await.is_some(),
        "the oldest idle connection was closed for the probe"
    );

    // Four connections in the middle of a request (bodies that do not come): nothing to close.
    let sig = sign_lookout(HOOK.as_bytes(), now(), b"{}");
    let busy_request = format!(
        "POST /hooks/registry HTTP/1.1\r\nhost: x\r\nx-lookout-signature: {sig}\r\ntransfer-encoding: chunked\r\n\r\n1\r\n{{\r\n"
    );
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(server.addr).await;
        assert_eq!(
            exchange(
                &mut stream,
                busy_request.as_bytes(),
                Duration::from_millis(300)
            )
            .await,
            None,
            "the request is waiting for its body"
        );
        busy.push(stream);
    }
    let mut refused = connect(server.addr).await;
    let answer = exchange(&mut refused, healthz, wait).await.unwrap();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "all busy: refused at once: {answer}"
    );
    drop(busy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect(server.addr).await;
    let answer = exchange(&mut again, healthz, wait).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn shutdown_waits_for_requests_in_progress_only_so_long() {
    let mut server = running(short(|l| {
        l.body_read_timeout = Duration::from_secs(60);
        l.drain_timeout = Duration::from_millis(300);
    }))
    .await;
    let sig = sign_lookout(HOOK.as_bytes(), now(), b"{}");
    let mut busy = connect(server.addr).await;
    let request = format!(
        "POST /hooks/registry HTTP/1.1\r\nhost: x\r\nx-lookout-signature: {sig}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    assert_eq!(
        exchange(&mut busy, request.as_bytes(), Duration::from_millis(200)).await,
        None
    );
    let started = std::time::Instant::now();
    server.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("the server stops within its drain timeout")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        exchange(&mut busy, b"", Duration::from_secs(2))
            .await
            .is_some(),
        "the busy connection was closed"
    );
}

#[tokio::test]
async fn each_backend_error_kind_has_its_status_and_a_json_body() {
    let cases = [
        (
            ApiError::NotFound("no service \"web\"".into()),
            404,
            "not_found",
        ),
        (
            ApiError::Conflict("nothing to roll back".into()),
            409,
            "conflict",
        ),
        (
            ApiError::Invalid("not a valid image reference".into()),
            422,
            "invalid",
        ),
        (
            ApiError::Unavailable("Docker: connection refused".into()),
            503,
            "unavailable",
        ),
        (
            ApiError::Internal("state file not writable".into()),
            500,
            "internal",
        ),
    ];
    let config = ApiConfig {
        token: Some(Secret::new(TOKEN)),
        ..ApiConfig::default()
    };
    for (err, status, kind) in cases {
        let message = err.to_string();
        let app = router(Arc::new(Refuses(err)), config.clone());
        for uri in [
            "/api/v1/check",
            "/api/v1/services/web/update",
            "/api/v1/services/web/rollback",
            "/api/v1/pause",
            "/api/v1/resume",
        ] {
            let (got, body) = call(&app, "POST", uri, Some(TOKEN), "").await;
            assert_eq!(got, status, "{uri} answering {kind}: {body}");
            let body: Value = serde_json::from_str(&body).expect("a JSON error body");
            assert_eq!(body, json!({"error": message, "kind": kind}), "{uri}");
        }
    }
}

#[tokio::test]
async fn an_unknown_service_is_404_not_409() {
    let (app, backend) = app(true);
    for (method, uri) in [
        ("GET", "/api/v1/services/nope"),
        ("POST", "/api/v1/services/nope/update"),
        ("POST", "/api/v1/services/nope/rollback"),
    ] {
        let (status, body) = call(&app, method, uri, Some(TOKEN), "").await;
        assert_eq!(status, 404, "{method} {uri}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["kind"], "not_found", "{body}");
        assert_eq!(body["error"], "no service \"nope\"", "{body}");
    }
    assert!(
        backend.calls.lock().unwrap().is_empty(),
        "the backend was not asked to change an unknown service"
    );
}
