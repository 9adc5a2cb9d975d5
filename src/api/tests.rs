//! Every route, and authentication (missing, wrong, right token), without a socket; one test
//! over a real socket.

use std::sync::Mutex;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

/// A backend that records what the API asked of it.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

impl Recorder {
    fn log(&self, s: impl Into<String>) {
        self.calls.lock().unwrap().push(s.into());
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
    fn services(&self) -> Vec<Value> {
        vec![json!({"name": "web"})]
    }
    fn service(&self, name: &str) -> Option<Value> {
        (name == "web").then(|| json!({"name": "web"}))
    }
    fn history(&self) -> Vec<Value> {
        vec![]
    }
    async fn check(&self, only: Vec<String>) -> Result<Value, String> {
        self.log(format!("check {only:?}"));
        Ok(json!({"services": []}))
    }
    async fn update(&self, service: &str) -> Result<Value, String> {
        self.log(format!("update {service}"));
        Ok(json!({"result": "updated"}))
    }
    async fn rollback(&self, service: &str) -> Result<Value, String> {
        self.log(format!("rollback {service}"));
        Err("nothing to roll back".into())
    }
    fn set_paused(&self, paused: bool) -> Result<(), String> {
        self.log(format!("paused {paused}"));
        Ok(())
    }
    fn pushed(&self, repositories: &[PushedRepository]) -> Vec<String> {
        self.log(format!("pushed {}", repositories[0].repository));
        vec!["web".into()]
    }
}

const TOKEN: &str = "0123456789abcdef-token";
const HOOK: &str = "hook-secret-42";

fn app(token: bool) -> (Router, Arc<Recorder>) {
    let backend = Arc::new(Recorder::default());
    let config = ApiConfig {
        token: token.then(|| Secret::new(TOKEN)),
        hook_secret: Some(Secret::new(HOOK)),
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
            "check []",
            "update web",
            "rollback web",
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

#[tokio::test]
async fn hooks_need_their_secret() {
    let (app, backend) = app(true);
    let hub = r#"{"push_data":{"tag":"1.2"},"repository":{"repo_name":"team/web"}}"#;
    assert_eq!(
        call(&app, "POST", "/hooks/dockerhub", None, hub).await.0,
        401
    );
    assert_eq!(
        call(&app, "POST", "/hooks/dockerhub/wrong", None, hub)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&app, "POST", "/hooks/dockerhub?secret=wrong", None, hub)
            .await
            .0,
        401
    );
    assert!(backend.calls.lock().unwrap().is_empty());
    let (status, body) = call(&app, "POST", &format!("/hooks/dockerhub/{HOOK}"), None, hub).await;
    assert_eq!((status, body.as_str()), (202, "{\"checking\":[\"web\"]}"));
    assert_eq!(
        call(
            &app,
            "POST",
            &format!("/hooks/dockerhub?secret={HOOK}"),
            None,
            hub
        )
        .await
        .0,
        202
    );
    let req = Request::post("/hooks/registry")
        .header("x-lookout-hook-secret", HOOK)
        .body(Body::from(r#"{"events":[{"action":"push","target":{"repository":"team/web"},"request":{"host":"r:5000"}}]}"#))
        .unwrap();
    assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 202);
    assert_eq!(
        call(&app, "POST", &format!("/hooks/registry/{HOOK}"), None, "{")
            .await
            .0,
        400
    );
    assert_eq!(
        *backend.calls.lock().unwrap(),
        ["pushed team/web", "pushed team/web", "pushed team/web"]
    );
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
