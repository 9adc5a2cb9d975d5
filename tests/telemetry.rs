//! Webhooks over real loopback sockets: payloads, signatures, event filters, retries, and a
//! receiver that hangs or is gone never slowing down `emit`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lookout::schedule::SystemClock;
use lookout::secret::Secret;
use lookout::telemetry::{
    Deliveries, Event, EventKind, Retry, Stage, Telemetry, TelemetrySettings, UpdateInfo,
    WebhookFormat, WebhookSpec, signature,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::util::{eventually, metric};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// How the receiver answers each request, in order; after the list, 200. `None` never answers.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

async fn receiver(answers: Vec<Option<u16>>) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let record = got.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let answer = answers.get(n).copied().unwrap_or(Some(200));
            n += 1;
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let k = sock.read(&mut chunk).await.unwrap();
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let k = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..k]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                record.lock().unwrap().push(Received {
                    headers,
                    body: buf[head_end..head_end + length].to_vec(),
                });
                match answer {
                    Some(status) => {
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        sock.write_all(reply.as_bytes()).await.unwrap();
                    }
                    None => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    });
    Receiver { url, got }
}

fn endpoint(url: &str, events: Option<Vec<EventKind>>, secret: Option<&str>) -> WebhookSpec {
    WebhookSpec {
        url: url.to_owned(),
        events,
        secret: secret.map(Secret::new),
        format: WebhookFormat::Generic,
        timeout: Duration::from_secs(2),
    }
}

fn start(webhooks: Vec<WebhookSpec>, capacity: usize) -> (Telemetry, Deliveries) {
    let settings = TelemetrySettings {
        version: "0.0.0-test".into(),
        host: "test-host".into(),
        services: vec!["web".into()],
        registries: Vec::new(),
        webhooks,
        notify: Vec::new(),
        queue_capacity: capacity,
        retry: Retry {
            attempts: 3,
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
    };
    Telemetry::new(settings, Arc::new(SystemClock))
}

fn update() -> UpdateInfo {
    UpdateInfo {
        service: "web".into(),
        compose_service: "web".into(),
        compose_file: PathBuf::from("/srv/web/compose.yaml"),
        old_image: "nginx:1.27.0".into(),
        new_image: "nginx:1.27.1".into(),
        old_digest: Some("sha256:old".into()),
        new_digest: Some("sha256:new".into()),
        started_at: "2025-01-06T02:00:00Z".parse().unwrap(),
        duration: Some(Duration::from_secs(30)),
    }
}

#[tokio::test]
async fn signed_payloads_reach_each_endpoint_that_wants_them() {
    let all = receiver(vec![]).await;
    let rollbacks = receiver(vec![]).await;
    let (t, deliveries) = start(
        vec![
            endpoint(&all.url, None, Some("s3cret")),
            endpoint(&rollbacks.url, Some(vec![EventKind::RolledBack]), None),
        ],
        8,
    );
    tokio::spawn(deliveries.run(std::future::pending()));
    t.emit(Event::Updated(update()));
    t.emit(Event::UpdateFailed {
        update: update(),
        stage: Stage::Health,
        reason: "unhealthy".into(),
    });
    t.emit(Event::RolledBack {
        update: update(),
        reason: "unhealthy".into(),
    });
    eventually("three deliveries", || all.got.lock().unwrap().len() == 3).await;
    eventually("one delivery", || rollbacks.got.lock().unwrap().len() == 1).await;

    let got = all.got.lock().unwrap().clone();
    let types: Vec<Value> = got.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(types, ["updated", "update_failed", "rolled_back"]);
    let first = &got[0];
    let body = first.json();
    assert_eq!(body["event"], "update");
    assert_eq!(body["service"], "web");
    assert_eq!(body["host"], "test-host");
    assert_eq!(body["new_digest"], "sha256:new");
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("x-lookout-event"), Some("updated"));
    assert_eq!(first.header("x-lookout-delivery"), body["id"].as_str());
    // The signature is over the exact bytes received.
    assert_eq!(
        first.header("x-lookout-signature"),
        Some(signature(b"s3cret", &first.body).as_str())
    );
    let other = rollbacks.got.lock().unwrap()[0].clone();
    assert_eq!(other.json()["event"], "rollback");
    assert_eq!(
        other.header("x-lookout-signature"),
        None,
        "no secret, no signature"
    );
    eventually("delivered counted", || {
        metric(
            &t,
            r#"lookout_webhook_deliveries_total{result="delivered"}"#,
        ) == 4.0
    })
    .await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_the_same_body() {
    let flaky = receiver(vec![Some(503), Some(500)]).await;
    let refusing = receiver(vec![Some(400)]).await;
    let (t, deliveries) = start(
        vec![
            endpoint(&flaky.url, None, Some("k")),
            endpoint(&refusing.url, None, None),
        ],
        8,
    );
    tokio::spawn(deliveries.run(std::future::pending()));
    t.emit(Event::Updated(update()));
    eventually("three attempts", || flaky.got.lock().unwrap().len() == 3).await;
    eventually("outcome counted", || {
        metric(&t, r#"lookout_webhook_deliveries_total{result="failed"}"#) == 1.0
    })
    .await;
    let got = flaky.got.lock().unwrap().clone();
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "same bytes each try"
    );
    assert!(
        got.iter()
            .all(|r| r.header("x-lookout-signature") == got[0].header("x-lookout-signature"))
    );
    // 503, 500, then 200: delivered after two retries. 400 is not retried: failed at once.
    assert_eq!(refusing.got.lock().unwrap().len(), 1);
    assert_eq!(
        metric(&t, r#"lookout_webhook_deliveries_total{result="retried"}"#),
        2.0
    );
    eventually("delivered", || {
        metric(
            &t,
            r#"lookout_webhook_deliveries_total{result="delivered"}"#,
        ) == 1.0
    })
    .await;
}

#[tokio::test]
async fn a_hanging_receiver_never_slows_emit_and_overflow_is_dropped() {
    let hanging = receiver(vec![None; 100]).await;
    let (t, deliveries) = start(vec![endpoint(&hanging.url, None, None)], 2);
    tokio::spawn(deliveries.run(std::future::pending()));
    // Let the worker take the first delivery and hang on it.
    t.emit(Event::UpdateStarted(update()));
    eventually("the receiver hangs on the first", || {
        hanging.got.lock().unwrap().len() == 1
    })
    .await;
    let begun = Instant::now();
    for _ in 0..10 {
        t.emit(Event::Updated(update()));
    }
    assert!(
        begun.elapsed() < Duration::from_millis(200),
        "emit waited: {:?}",
        begun.elapsed()
    );
    // Two fit in the queue; the other eight are dropped and counted.
    assert_eq!(
        metric(&t, r#"lookout_webhook_deliveries_total{result="dropped"}"#),
        8.0
    );
}

#[tokio::test]
async fn a_dead_receiver_never_slows_emit() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let (t, deliveries) = start(vec![endpoint(&url, None, None)], 64);
    tokio::spawn(deliveries.run(std::future::pending()));
    let begun = Instant::now();
    for _ in 0..20 {
        t.emit(Event::Updated(update()));
    }
    assert!(begun.elapsed() < Duration::from_millis(200));
    eventually("the first delivery failed", || {
        metric(&t, r#"lookout_webhook_deliveries_total{result="failed"}"#) >= 1.0
    })
    .await;
}
