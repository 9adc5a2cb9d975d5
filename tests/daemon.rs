//! The daemon as operators run it: `lookout run` as a process against the local registry and the
//! Docker engine. A push to the registry reaches lookout through the registry's notifications,
//! and the update is seen through the API, the metrics and a signed webhook.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::{Flavor, HEALTHY, Project};
use crate::util::daemon::{Daemon, http};
use crate::util::{free_port, wait_for};

const TOKEN: &str = "api-token-0123456789abcdef";
const HOOK_SECRET: &str = "hook-secret-0123456789abcdef";
const WEBHOOK_SECRET: &str = "webhook-secret-0123456789";

/// A webhook receiver on loopback that answers 200 and keeps (headers, body) of each delivery.
/// The (headers, body) of each delivery a receiver got.
type Received = Arc<Mutex<Vec<(String, String)>>>;

fn webhook_receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                headers.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            seen.lock()
                .unwrap()
                .push((headers, String::from_utf8_lossy(&body).into_owned()));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// The value of one sample in Prometheus text, e.g. `lookout_updates_total{service="app",result="updated"}`.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse().ok())
            .flatten()
        })
}

#[test]
fn a_push_to_the_registry_updates_the_service_without_waiting_for_the_interval() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let notifications = format!(
        "notifications:\n  endpoints:\n    - name: lookout\n      url: http://{addr}/hooks/registry\n      headers:\n        X-Lookout-Hook-Secret: [{HOOK_SECRET}]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n"
    );
    let compose = "services:\n  app:\n    image: {image}:1.0.0\n    network_mode: none\n    labels:\n      lookout.test: \"{label}\"\n";
    let mut p = Project::with_registry_yaml(
        "daemon-push",
        Flavor::V2,
        compose,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
        &notifications,
    );
    p.push("1.0.0", HEALTHY);
    p.up();
    let (webhook_url, deliveries) = webhook_receiver();
    // The daemon's own settings go before the [[services]] table.
    let config = std::fs::read_to_string(&p.config).unwrap();
    let settings = format!(
        "listen = \"{addr}\"\napi_token = \"{TOKEN}\"\nhook_secret = \"{HOOK_SECRET}\"\n\n[[webhooks]]\nurl = \"{webhook_url}\"\nsecret = \"{WEBHOOK_SECRET}\"\n\n"
    );
    let (head, services) = config.split_once("[[services]]").unwrap();
    let config = format!(
        "{}{settings}[[services]]{services}",
        head.replace("check_interval = 60", "check_interval = \"1h\"")
    );
    std::fs::write(&p.config, config).unwrap();

    let log_path = p.scratch.join("lookout.log");
    let daemon = Daemon::start(&p.config, &addr, &log_path, None);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    wait_for("/readyz", Duration::from_secs(30), || {
        TcpStream::connect(&daemon.addr)
            .ok()
            .and_then(|_| (http(&addr, "GET", "/readyz", None, "").0 == 200).then_some(()))
    });
    // The first check at start finds nothing new.
    wait_for("the first check", Duration::from_secs(60), || {
        let (_, body) = http(&addr, "GET", "/api/v1/services/app", Some(TOKEN), "");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["last_check"].is_string().then_some(())
    });
    assert_eq!(
        http(&addr, "GET", "/api/v1/services", None, "").0,
        401,
        "the API needs the token"
    );

    // A push: the registry notifies lookout, which checks and updates at once (the interval is 1h).
    let pushed_at = Instant::now();
    let new_id = p.push("1.1.0", HEALTHY);
    let service = wait_for(
        "the update through the push hook",
        Duration::from_secs(120),
        || {
            let (_, body) = http(&addr, "GET", "/api/v1/services/app", Some(TOKEN), "");
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            v["running"]
                .as_str()
                .is_some_and(|r| r.contains(":1.1.0"))
                .then_some(v)
        },
    );
    eprintln!(
        "updated {:?} after the push: {service}",
        pushed_at.elapsed()
    );
    assert_eq!(
        p.running().1,
        new_id,
        "the container runs the pushed image\n{}",
        log()
    );
    assert!(p.read(&p.compose_file).contains(":1.1.0"));

    // Metrics over the socket, parsed as Prometheus text.
    let (status, metrics) = http(&addr, "GET", "/metrics", Some(TOKEN), "");
    assert_eq!(status, 200);
    assert_eq!(
        sample(
            &metrics,
            "lookout_updates_total",
            &[("service", "app"), ("result", "updated")]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "lookout_checks_total",
            &[("result", "up_to_date")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "lookout_registry_requests_total",
            &[("method", "HEAD")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "lookout_build_info", &[]).is_some(),
        "{metrics}"
    );

    // History through the API.
    let (_, history) = http(&addr, "GET", "/api/v1/history", Some(TOKEN), "");
    assert!(
        history.contains("\"committed\"") && history.contains(":1.1.0"),
        "{history}"
    );

    // The signed `updated` webhook.
    let (headers, body) = wait_for("the updated webhook", Duration::from_secs(30), || {
        deliveries
            .lock()
            .unwrap()
            .iter()
            .find(|(h, _)| h.to_ascii_lowercase().contains("x-lookout-event: updated"))
            .cloned()
    });
    let payload: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(payload["service"], "app", "{payload}");
    assert_eq!(
        payload["event"], "update",
        "the Docker Auto-Updater's event name is kept: {payload}"
    );
    let signature = lookout::telemetry::signature(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    assert!(
        headers
            .to_ascii_lowercase()
            .contains(&format!("x-lookout-signature: {signature}")),
        "{headers}"
    );

    // Pause through the API is kept in the state file.
    assert_eq!(http(&addr, "POST", "/api/v1/pause", Some(TOKEN), "").0, 200);
    assert!(
        std::fs::read_to_string(p.scratch.join("state/state.json"))
            .unwrap()
            .contains("\"paused\": true")
    );

    // SIGHUP: an invalid configuration is refused and the one in force stays; a valid one is
    // put in force.
    let good = std::fs::read_to_string(&p.config).unwrap();
    let hup = || daemon.signal(rustix::process::Signal::HUP);
    std::fs::write(&p.config, format!("{good}\ncheck_interval = \"soon\"\n")).unwrap();
    hup();
    wait_for(
        "the refused reload in the log",
        Duration::from_secs(30),
        || {
            log()
                .contains("the new configuration is invalid; keeping the one in force")
                .then_some(())
        },
    );
    assert_eq!(
        http(&addr, "GET", "/api/v1/services/app", Some(TOKEN), "").0,
        200
    );
    std::fs::write(&p.config, format!("{good}enabled = false\n")).unwrap();
    hup();
    wait_for(
        "the reloaded configuration",
        Duration::from_secs(30),
        || {
            let (_, body) = http(&addr, "GET", "/api/v1/services/app", Some(TOKEN), "");
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            (v["enabled"] == false).then_some(())
        },
    );

    assert_eq!(
        daemon.stop(Duration::from_secs(60)),
        0,
        "SIGTERM ends lookout run with exit code 0\n{}",
        log()
    );
}
