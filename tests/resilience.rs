//! What one bad registry, a flood of hooks or a bug can and cannot do to lookout, on the real
//! binary: a registry that accepts connections and never answers (or drips bytes) holds up only
//! its own service; updates, rollbacks and SIGTERM go on around it; a burst of push hooks runs
//! one check; a panic fails one service, not the process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::engine::{COMPOSE_TAGGED, Flavor, HEALTHY, Project};
use crate::util::compose::ComposeDown;
use crate::util::daemon::{Daemon, http};
use crate::util::{Scratch, TestImage, free_port, run, wait_for};

const TOKEN: &str = "api-token-0123456789abcdef";
const HOOK_SECRET: &str = "hook-secret-0123456789abcdef";

/// How a [`HangingRegistry`] treats a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hang {
    /// Reads the request and never answers.
    Silent,
    /// Answers a status line, then one header byte every half second, never finishing.
    Drip,
}

/// A loopback "registry" that accepts every connection and never answers. Counts connections.
struct HangingRegistry {
    /// `127.0.0.1:PORT`, the registry part of image references.
    host: String,
    accepted: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
}

impl HangingRegistry {
    fn start(mode: Hang) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (count, stop) = (accepted.clone(), done.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut buf = [0; 4096];
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                    let _ = stream.read(&mut buf);
                    if mode == Hang::Drip {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Drip: ");
                    }
                    // Hold the connection until the client goes away (or the test ends).
                    while !stop.load(Ordering::SeqCst) {
                        if mode == Hang::Drip && stream.write_all(b"x").is_err() {
                            break;
                        }
                        match stream.read(&mut buf) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                });
            }
        });
        Self {
            host,
            accepted,
            done,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HangingRegistry {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host); // wakes the accept loop
    }
}

/// A service `stuck` whose image lives on a [`HangingRegistry`]: its container runs (built
/// here, never pushed), so every check of it asks the hanging registry.
struct Stuck {
    // Dropped in this order: the project comes down before its image goes.
    _down: ComposeDown,
    _image: TestImage,
    compose_file: PathBuf,
    image: String,
}

impl Stuck {
    fn start(scratch: &Scratch, registry: &HangingRegistry) -> Self {
        let image = format!("{}/e2e/stuck:1.0.0", registry.host);
        let built = TestImage::build(scratch, &image, "1.0.0", HEALTHY);
        let name: String = format!("lkstuck{}", scratch.id)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let dir = scratch.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let compose_file = dir.join("compose.yaml");
        std::fs::write(
            &compose_file,
            format!(
                "services:\n  stuck:\n    image: {image}\n    network_mode: none\n    labels:\n      lookout.test: \"{}\"\n",
                scratch.id
            ),
        )
        .unwrap();
        let down = ComposeDown {
            command: vec!["docker".into(), "compose".into()],
            files: vec![compose_file.clone()],
            project_dir: dir.clone(),
            scratch_id: scratch.id.clone(),
        };
        run(Command::new("docker")
            .args(["compose", "-f", "compose.yaml", "up", "-d"])
            .current_dir(&dir));
        Self {
            _down: down,
            _image: built,
            compose_file,
            image,
        }
    }

    /// Its `[[services]]` table.
    fn toml(&self) -> String {
        format!(
            "[[services]]\nname = \"stuck\"\ncompose_file = \"{}\"\ncompose_service = \"stuck\"\nimage = \"{}\"\npolicy = \"semver\"\n\n",
            self.compose_file.display(),
            self.image
        )
    }
}

/// Rewrites a [`Project`]'s configuration: `settings` (top-level lines) and `services` (tables)
/// go before the project's own `app` service; the check interval becomes an hour.
fn configure(p: &Project, settings: &str, services: &str) {
    let text = std::fs::read_to_string(&p.config).unwrap();
    let (head, app) = text.split_once("[[services]]").unwrap();
    let head = head.replace("check_interval = 60", "check_interval = \"1h\"");
    std::fs::write(
        &p.config,
        format!("{head}{settings}\n{services}[[services]]{app}"),
    )
    .unwrap();
}

/// `lookout run` on `config` with `env`, once `/healthz` answers.
fn start(config: &Path, addr: &str, log: PathBuf, env: &[(&str, &str)]) -> Daemon {
    let mut d = Daemon::start_with_env(config, addr, &log, None, env);
    d.wait_healthy(Duration::from_secs(30));
    d
}

/// `GET path` with the token, as JSON (`null` when the answer is not JSON).
fn get(d: &Daemon, path: &str) -> serde_json::Value {
    let (_, body) = http(&d.addr, "GET", path, Some(TOKEN), "");
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

/// `POST path` with the token: the status and the answer as JSON (or as a string).
fn post(d: &Daemon, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(&d.addr, "POST", path, Some(TOKEN), "");
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Service `stuck` hangs in its check (the first one, at start) for as long as the test runs.
/// Meanwhile service `app` is updated and rolled back through the API, each promptly, and
/// SIGTERM ends the daemon within seconds.
#[test]
fn updates_and_rollbacks_do_not_wait_for_a_hung_registry_of_another_service() {
    let hanging = HangingRegistry::start(Hang::Silent);
    let mut p = Project::new(
        "resilience-hung",
        Flavor::V2,
        COMPOSE_TAGGED,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    let id_old = p.push("1.0.0", HEALTHY);
    p.up();
    let stuck = Stuck::start(&p.scratch, &hanging);
    let addr = format!("127.0.0.1:{}", free_port());
    // The deadline is far away: the stuck check is still running when the test ends.
    configure(
        &p,
        &format!("listen = \"{addr}\"\napi_token = \"{TOKEN}\"\ncheck_timeout = \"10m\"\n"),
        &stuck.toml(),
    );
    let d = start(&p.config, &addr, p.scratch.join("lookout.log"), &[]);

    wait_for(
        "the stuck check to reach the hanging registry",
        Duration::from_secs(60),
        || (hanging.accepted() > 0).then_some(()),
    );
    wait_for("the first check of app", Duration::from_secs(60), || {
        get(&d, "/api/v1/services/app")["last_check"]
            .is_string()
            .then_some(())
    });
    let still_checking = |d: &Daemon| get(d, "/api/v1/services/stuck")["last_result"].is_null();
    assert!(still_checking(&d), "the stuck check has not ended");

    let id_new = p.push("1.1.0", HEALTHY);
    let asked = Instant::now();
    let (status, update) = post(&d, "/api/v1/services/app/update");
    let took_update = asked.elapsed();
    assert_eq!(status, 200, "{update}\n{}", d.log());
    assert_eq!(update["result"], "updated", "{update}\n{}", d.log());
    assert_eq!(p.running().1, id_new);
    assert!(
        still_checking(&d),
        "the update finished while the stuck check still hangs"
    );

    let asked = Instant::now();
    let (status, rollback) = post(&d, "/api/v1/services/app/rollback");
    let took_rollback = asked.elapsed();
    assert_eq!(status, 200, "{rollback}\n{}", d.log());
    assert_eq!(rollback["result"], "updated", "{rollback}");
    assert_eq!(p.running().1, id_old, "the rollback restored 1.0.0");
    assert!(
        still_checking(&d),
        "the rollback finished while the stuck check still hangs"
    );
    eprintln!("update took {took_update:?}, rollback {took_rollback:?} while a check hung");
    assert!(took_update < Duration::from_secs(90), "{took_update:?}");
    assert!(took_rollback < Duration::from_secs(90), "{took_rollback:?}");

    let log_path = d.log_path().to_owned();
    let (code, took) = d.stop_timed(Duration::from_secs(60));
    let log = std::fs::read_to_string(log_path).unwrap_or_default();
    eprintln!("SIGTERM to exit: {took:?}");
    assert_eq!(code, 0, "{log}");
    assert!(took < Duration::from_secs(5), "took {took:?}\n{log}");
}

/// SIGTERM while the only check drips bytes from a registry: exit 0 within seconds.
#[test]
fn sigterm_during_a_hung_check_exits_0_within_seconds() {
    let scratch = Scratch::new("resilience-sigterm");
    let hanging = HangingRegistry::start(Hang::Drip);
    let stuck = Stuck::start(&scratch, &hanging);
    let addr = format!("127.0.0.1:{}", free_port());
    let config = scratch.write(
        "lookout.toml",
        format!(
            "state_file = \"{}\"\nlisten = \"{addr}\"\ncheck_interval = \"1h\"\ncheck_timeout = \"10m\"\n\n{}",
            scratch.join("state/state.json").display(),
            stuck.toml()
        ),
    );
    let d = start(&config, &addr, scratch.join("lookout.log"), &[]);
    wait_for(
        "the check to reach the dripping registry",
        Duration::from_secs(60),
        || (hanging.accepted() > 0).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2)); // well into the drip
    let log_path = d.log_path().to_owned();
    let (code, took) = d.stop_timed(Duration::from_secs(60));
    let log = std::fs::read_to_string(log_path).unwrap_or_default();
    eprintln!("SIGTERM to exit during a dripping check: {took:?}");
    assert_eq!(code, 0, "{log}");
    assert!(took < Duration::from_secs(5), "took {took:?}\n{log}");
}

/// `check_timeout` ends a check that hangs: that service fails its check, the other is
/// updated, and the whole `lookout update` takes about the deadline, not the registry's time.
#[test]
fn a_check_past_check_timeout_fails_only_its_own_service() {
    let hanging = HangingRegistry::start(Hang::Silent);
    let mut p = Project::new(
        "resilience-deadline",
        Flavor::V2,
        COMPOSE_TAGGED,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    p.push("1.0.0", HEALTHY);
    p.up();
    let stuck = Stuck::start(&p.scratch, &hanging);
    configure(&p, "check_timeout = \"3s\"\n", &stuck.toml());
    let id_new = p.push("1.1.0", HEALTHY);
    let started = Instant::now();
    let (_code, stdout, stderr) = p.lookout(&["update", "--json"]);
    let took = started.elapsed();
    let reports: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}):\n{stdout}\n{stderr}"));
    let by_name = |name: &str| {
        reports
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["service"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no report for {name}: {reports}"))
    };
    let stuck_report = by_name("stuck");
    assert_eq!(stuck_report["result"], "check_failed", "{stuck_report}");
    assert!(
        stuck_report["reason"]
            .as_str()
            .unwrap()
            .contains("check_timeout (3s)"),
        "{stuck_report}"
    );
    assert_eq!(by_name("app")["result"], "updated", "{reports}\n{stderr}");
    assert_eq!(p.running().1, id_new);
    eprintln!("lookout update with a hung registry took {took:?}");
    assert!(
        took < Duration::from_secs(60),
        "the hung check ended at its deadline: {took:?}"
    );
}

/// 500 push hooks for one repository within a fraction of a second: one check, a handful of
/// registry requests.
#[test]
fn a_burst_of_500_hooks_runs_one_check() {
    let mut p = Project::new(
        "resilience-hooks",
        Flavor::V2,
        COMPOSE_TAGGED,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    p.push("1.0.0", HEALTHY);
    p.up();
    let addr = format!("127.0.0.1:{}", free_port());
    configure(
        &p,
        &format!(
            "listen = \"{addr}\"\napi_token = \"{TOKEN}\"\nhook_secret = \"{HOOK_SECRET}\"\nfirst_check_at_start = false\n"
        ),
        "",
    );
    let d = start(&p.config, &addr, p.scratch.join("lookout.log"), &[]);
    let tag_lists_before = p.registry.count("GET", "/tags/list");
    let requests_before = p.registry.access_log().len();
    let payload = format!(
        r#"{{"events":[{{"action":"push","target":{{"repository":"e2e/app","tag":"1.0.0"}},"request":{{"host":"{}"}}}}]}}"#,
        p.registry.host
    );
    // distribution sends the hook secret as a bearer token (set in its `headers`).
    let path = "/hooks/registry".to_owned();
    let started = Instant::now();
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let (addr, path, payload) = (addr.clone(), path.clone(), payload.clone());
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| http(&addr, "POST", &path, Some(HOOK_SECRET), &payload).0)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let burst = started.elapsed();
    eprintln!("500 hooks sent in {burst:?}");
    assert!(
        statuses.iter().all(|s| *s == 202),
        "every hook accepted: {:?}",
        statuses
            .iter()
            .filter(|s| **s != 202)
            .take(5)
            .collect::<Vec<_>>()
    );
    let checks = || {
        let (_, metrics) = http(&addr, "GET", "/metrics", Some(TOKEN), "");
        metric_sum(&metrics, "lookout_checks_total")
    };
    wait_for("the hook's check", Duration::from_secs(60), || {
        (checks() >= 1.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(4)); // a follow-up would have started by now
    let tag_lists = p.registry.count("GET", "/tags/list") - tag_lists_before;
    let requests = p.registry.access_log().len() - requests_before;
    eprintln!(
        "500 hooks: {} check(s), {tag_lists} tag list(s), {requests} registry request(s)",
        checks()
    );
    // A check starts 1 s after the first hook of a burst and hooks during it queue one
    // follow-up, so a burst that the loaded machine spreads over several seconds may take one
    // check per second it lasts; without coalescing it would be 500.
    let most = if burst < Duration::from_millis(900) {
        1.0
    } else {
        1.0 + burst.as_secs_f64().ceil()
    };
    assert!(
        checks() <= most,
        "{} checks for one burst\n{}",
        checks(),
        d.log()
    );
    assert!(tag_lists <= most as usize, "{tag_lists} tag lists");
    assert!(requests <= 10, "{requests} registry requests");
    let (code, _) = d.stop_timed(Duration::from_secs(60));
    assert_eq!(code, 0);
}

/// A panic while a service's check runs fails that check; `lookout update` still reports.
#[cfg(feature = "failpoints")]
#[test]
fn a_panic_in_a_check_fails_that_check_not_the_process() {
    let scratch = Scratch::new("resilience-check-panic");
    let compose_file = scratch.write(
        "app/compose.yaml",
        "services:\n  web:\n    image: nginx:1.27\n    network_mode: none\n",
    );
    let config = scratch.write(
        "lookout.toml",
        format!(
            "state_file = \"{}\"\n\n[[services]]\nname = \"web\"\ncompose_file = \"{}\"\nimage = \"nginx:1.27\"\n",
            scratch.join("state/state.json").display(),
            compose_file.display()
        ),
    );
    let out = crate::util::lookout()
        .arg("--config")
        .arg(&config)
        .args(["update", "--json"])
        .env("LOOKOUT_FAILPOINT", "panic:during_check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reports: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}), {}:\n{stdout}\n{stderr}", out.status));
    assert_eq!(reports[0]["result"], "check_failed", "{reports}");
    let reason = reports[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("bug") && reason.contains("failpoint during_check"),
        "{reason}"
    );
}

/// A panic in the middle of an update (after the compose file was written): the service is put
/// back from the journal at once, the daemon goes on serving, and SIGTERM ends it with 0.
#[cfg(feature = "failpoints")]
#[test]
fn a_panic_during_an_update_is_recovered_and_the_daemon_goes_on() {
    let mut p = Project::new(
        "resilience-update-panic",
        Flavor::V2,
        COMPOSE_TAGGED,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    let id_old = p.push("1.0.0", HEALTHY);
    p.up();
    let before = p.read(&p.compose_file);
    let addr = format!("127.0.0.1:{}", free_port());
    configure(
        &p,
        &format!("listen = \"{addr}\"\napi_token = \"{TOKEN}\"\nfirst_check_at_start = false\n"),
        "",
    );
    let d = start(
        &p.config,
        &addr,
        p.scratch.join("lookout.log"),
        &[("LOOKOUT_FAILPOINT", "panic:after_file_write")],
    );
    p.push("1.1.0", HEALTHY);
    let (status, update) = post(&d, "/api/v1/services/app/update");
    assert_eq!(status, 200, "{update}\n{}", d.log());
    assert_eq!(update["result"], "failed", "{update}\n{}", d.log());
    let reason = update["reason"].as_str().unwrap();
    assert!(
        reason.contains("failpoint after_file_write") && reason.contains("recovery"),
        "{reason}"
    );
    assert_eq!(p.read(&p.compose_file), before, "the old bytes are back");
    let (_, image, health) = p.running();
    assert_eq!(
        (image.as_str(), health.as_str()),
        (id_old.as_str(), "running/healthy")
    );
    assert_eq!(
        p.state()["journal"].as_array().map_or(0, Vec::len),
        0,
        "nothing is left in flight"
    );
    assert_eq!(http(&addr, "GET", "/healthz", None, "").0, 200);
    assert!(
        get(&d, "/api/v1/services/app")["name"] == "app",
        "the API still answers"
    );
    let (code, _) = d.stop_timed(Duration::from_secs(60));
    assert_eq!(code, 0);
}
