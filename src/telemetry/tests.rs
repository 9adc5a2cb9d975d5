use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::*;
use super::{LogFormat, LogLevel};
use crate::schedule::SystemClock;

fn update(service: &str) -> UpdateInfo {
    UpdateInfo {
        service: service.into(),
        compose_service: "web".into(),
        compose_file: PathBuf::from("/opt/web/compose.yaml"),
        old_image: "nginx:1.27.0".into(),
        new_image: "nginx:1.27.1".into(),
        old_digest: Some("sha256:aaa".into()),
        new_digest: Some("sha256:bbb".into()),
        started_at: "2025-01-06T02:00:00Z".parse().unwrap(),
        duration: Some(Duration::from_secs(42)),
    }
}

fn telemetry(services: &[&str]) -> Telemetry {
    let settings = TelemetrySettings {
        version: "1.2.3".into(),
        host: "box".into(),
        services: services.iter().map(|s| s.to_string()).collect(),
        registries: vec!["docker.io".into()],
        webhooks: Vec::new(),
        notify: Vec::new(),
        queue_capacity: 4,
        retry: Retry::default(),
    };
    Telemetry::new(settings, Arc::new(SystemClock)).0
}

/// Parses the Prometheus text format into `name{label="v",…}` → value, labels sorted.
pub(crate) fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                format!("{name}{{{}}}", labels.join(","))
            }
            None => series.to_owned(),
        };
        out.insert(key, value.parse().expect("a number"));
    }
    out
}

#[test]
fn events_become_metrics() {
    let t = telemetry(&["web", "db"]);
    let check = |event: Event, series: &[(&str, f64)]| {
        t.emit(event.clone());
        let m = parse_metrics(&t.render_metrics());
        for (key, want) in series {
            assert_eq!(m.get(*key), Some(want), "{key} after {event:?}\n{m:#?}");
        }
    };
    check(
        Event::Updated(update("web")),
        &[
            (
                r#"lookout_updates_total{result="updated",service="web"}"#,
                1.0,
            ),
            (
                r#"lookout_updates_total{result="rolled_back",service="db"}"#,
                0.0,
            ),
            ("lookout_update_duration_seconds_count", 1.0),
            ("lookout_update_duration_seconds_sum", 42.0),
        ],
    );
    check(
        Event::RolledBack {
            update: update("web"),
            reason: "unhealthy".into(),
        },
        &[
            (
                r#"lookout_updates_total{result="rolled_back",service="web"}"#,
                1.0,
            ),
            (r#"lookout_rollbacks_total{service="web"}"#, 1.0),
        ],
    );
    check(
        Event::UpdateFailed {
            update: update("unknown-service"),
            stage: Stage::Pull,
            reason: "denied".into(),
        },
        &[
            (
                r#"lookout_update_failures_total{service="other",stage="pull"}"#,
                1.0,
            ),
            (
                r#"lookout_updates_total{result="failed",service="other"}"#,
                1.0,
            ),
        ],
    );
    check(
        Event::CheckFinished {
            service: "db".into(),
            result: CheckResult::UpdateAvailable,
            update_available: Some(NewerImage {
                image: "postgres:17.2".into(),
                digest: None,
            }),
            duration: Duration::from_millis(300),
        },
        &[
            (r#"lookout_checks_total{result="update_available"}"#, 1.0),
            (r#"lookout_checks_total{result="failed"}"#, 0.0),
            (r#"lookout_update_available{service="db"}"#, 1.0),
            (r#"lookout_update_available{service="web"}"#, 0.0),
            ("lookout_check_duration_seconds_count", 1.0),
        ],
    );
    check(
        Event::CheckSkipped,
        &[("lookout_checks_skipped_total", 1.0)],
    );
    check(
        Event::StateRestored {
            from_backup: Some("/b/1".into()),
            set_aside: None,
        },
        &[("lookout_state_restores_total", 1.0)],
    );
    check(
        Event::RegistryRequest {
            registry: "docker.io".into(),
            method: "head".into(),
            status: Some(200),
        },
        &[(
            r#"lookout_registry_requests_total{method="HEAD",registry="docker.io",status="200"}"#,
            1.0,
        )],
    );
    check(
        Event::RegistryRequest {
            registry: "evil.example/with/path".into(),
            method: "PROPFIND".into(),
            status: None,
        },
        &[(
            r#"lookout_registry_requests_total{method="other",registry="other",status="error"}"#,
            1.0,
        )],
    );
    check(
        Event::RateLimit {
            registry: "docker.io".into(),
            remaining: 87,
        },
        &[(
            r#"lookout_registry_ratelimit_remaining{registry="docker.io"}"#,
            87.0,
        )],
    );
    let m = parse_metrics(&t.render_metrics());
    assert_eq!(m.get(r#"lookout_build_info{version="1.2.3"}"#), Some(&1.0));
    assert!(m["lookout_last_check_timestamp_seconds"] > 1.7e9);
}

#[test]
fn payload_formats() {
    let at: Timestamp = "2025-01-06T02:01:00Z".parse().unwrap();
    let updated = Event::Updated(update("web"));
    let rolled_back = Event::RolledBack {
        update: update("web"),
        reason: "container unhealthy after 180s".into(),
    };
    let failed = Event::UpdateFailed {
        update: update("web"),
        stage: Stage::Health,
        reason: "timeout".into(),
    };
    let check = |format: WebhookFormat, event: &Event, path: &str, want: Value| {
        let body = payload(format, event, "box", at).unwrap();
        assert_eq!(body.pointer(path), Some(&want), "{path} in {body:#}");
    };
    use WebhookFormat::*;
    check(Generic, &updated, "/type", "updated".into());
    check(Generic, &updated, "/event", "update".into());
    check(Generic, &rolled_back, "/event", "rollback".into());
    check(Generic, &failed, "/event", "update_failed".into());
    check(Generic, &failed, "/stage", "health".into());
    check(
        Generic,
        &rolled_back,
        "/reason",
        "container unhealthy after 180s".into(),
    );
    check(Generic, &updated, "/reason", Value::Null);
    check(Generic, &updated, "/host", "box".into());
    check(Generic, &updated, "/service", "web".into());
    check(Generic, &updated, "/compose_service", "web".into());
    check(
        Generic,
        &updated,
        "/compose_file",
        "/opt/web/compose.yaml".into(),
    );
    check(Generic, &updated, "/old_image", "nginx:1.27.0".into());
    check(Generic, &updated, "/new_digest", "sha256:bbb".into());
    check(Generic, &updated, "/duration_seconds", 42.0.into());
    check(
        Generic,
        &updated,
        "/timestamp",
        "2025-01-06T02:01:00Z".into(),
    );
    check(
        Generic,
        &updated,
        "/started_at",
        "2025-01-06T02:00:00Z".into(),
    );
    check(
        Slack,
        &updated,
        "/text",
        "web: updated on box in 42s: nginx:1.27.0 → nginx:1.27.1".into(),
    );
    check(Slack, &updated, "/blocks/0/type", "section".into());
    check(
        Discord,
        &rolled_back,
        "/content",
        "web: rolled back on box to nginx:1.27.0 (container unhealthy after 180s)".into(),
    );
    check(
        Discord,
        &rolled_back,
        "/embeds/0/fields/4/name",
        "Reason".into(),
    );
    check(Discord, &updated, "/embeds/0/title", "web: updated".into());
    assert_eq!(payload(Generic, &Event::CheckSkipped, "box", at), None);
}

#[test]
fn ids_are_stable_per_occurrence() {
    let a = Event::Updated(update("web"));
    let id = event_id("box", &a).unwrap();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(event_id("box", &a.clone()), Some(id.clone()));
    let mut later = update("web");
    later.started_at = "2025-01-07T02:00:00Z".parse().unwrap();
    assert_ne!(event_id("box", &Event::Updated(later)), Some(id.clone()));
    assert_ne!(event_id("other-host", &a), Some(id.clone()));
    assert_ne!(
        event_id("box", &Event::UpdateStarted(update("web"))),
        Some(id)
    );
}

#[test]
fn signatures_are_hmac_sha256() {
    // RFC 4231, test case 2.
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn webhook_urls_are_redacted_in_logs() {
    assert_eq!(
        webhook::redact("https://hooks.slack.com/services/T0/B0/secret"),
        "https://hooks.slack.com/…"
    );
    assert_eq!(
        webhook::redact("http://user:pw@host:8080/x?token=1"),
        "http://host:8080/…"
    );
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

fn logged(format: LogFormat, level: LogLevel, event: Event) -> String {
    let buf = Buffer::default();
    let t = telemetry(&["web"]);
    tracing::subscriber::with_default(subscriber(level, format, buf.clone()), || {
        // Another test's thread may have registered these callsites while no subscriber
        // wanted them; asking every dispatcher again makes this one count.
        tracing::callsite::rebuild_interest_cache();
        let _span = update_span("web", "nginx:1.27.0", "nginx:1.27.1").entered();
        t.emit(event);
    });
    String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
}

#[test]
fn logs_carry_the_event_fields_in_both_formats() {
    let event = Event::RolledBack {
        update: update("web"),
        reason: "unhealthy".into(),
    };
    let json = logged(LogFormat::Json, LogLevel::Info, event.clone());
    let line: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(line["event"], "rolled_back", "{line}");
    assert_eq!(line["service"], "web");
    assert_eq!(line["reason"], "unhealthy");
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["span"]["name"], "update");

    let plain = logged(LogFormat::Plain, LogLevel::Info, event);
    assert!(
        plain.contains("rolled back") && plain.contains("service=web"),
        "{plain}"
    );
    assert!(plain.contains("update{"), "span shown: {plain}");

    let quiet = logged(
        LogFormat::Plain,
        LogLevel::Warn,
        Event::Updated(update("web")),
    );
    assert_eq!(quiet, "", "info is below warn");
}
