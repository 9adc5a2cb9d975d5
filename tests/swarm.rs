//! Docker Swarm services on a single-node swarm these tests start themselves on loopback
//! (`docker swarm init --advertise-addr 127.0.0.1`) and leave (`docker swarm leave --force`)
//! when the last test of the process is done, also when one fails. lookout decides, Swarm
//! rolls: semver to a healthy image across three replicas, a failing HEALTHCHECK that Swarm
//! rolls back and lookout reports with the task's error, a private image on the token-auth
//! registry pulled with the credentials lookout forwards, and a lookout killed with `kill -9`
//! while Swarm updates (or rolls back), whose successor records what Swarm did. Metrics and
//! webhooks are the same as for compose updates. Stacks: a service deployed with `docker stack
//! deploy` and `stack_file` configured, whose file keeps every byte but the image value and
//! survives the next deploy, or keeps its old bytes when Swarm rolls back or lookout is
//! killed. Without `[swarm]`, discovery's scope decides which services are watched.

use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lookout::engine::{Engine, PassOptions, ServiceResult};

use crate::engine::HEALTHY;
use crate::util::fake_http::{FakeHttp, Response};
use crate::util::token::TokenRegistry;
use crate::util::{LocalRegistry, RegistryAuth, Scratch, TestImage, metric, run};

/// The node label that marks a swarm these tests made (so a swarm left by a crashed run is
/// recognised and left, and an operator's swarm is never touched).
const MARK: &str = "lookout.test.swarm";
/// A HEALTHCHECK that never passes, on a process that (as PID 1 without a handler) ignores
/// SIGTERM: Swarm's executor finds the container unhealthy and has to kill it.
const UNHEALTHY: &str = "HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD [\"/bin/false\"]\n\
    CMD [\"/bin/sh\", \"-c\", \"while true; do sleep 1; done\"]";
/// Held by the process while any of its tests uses the swarm; across processes (nextest), the
/// lock file makes them take turns.
const LOCK_FILE: &str = "/tmp/lookout-swarm-tests.lock";

struct Shared {
    users: usize,
    lock: Option<std::fs::File>,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    users: 0,
    lock: None,
});

/// One test's use of the shared swarm; the last one to drop leaves the swarm.
struct SwarmUse;

impl SwarmUse {
    fn join() -> Self {
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.users == 0 {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(LOCK_FILE)
                .unwrap();
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
            shared.lock = Some(file);
            start_swarm();
        }
        shared.users += 1;
        SwarmUse
    }
}

impl Drop for SwarmUse {
    fn drop(&mut self) {
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        shared.users = shared.users.saturating_sub(1);
        if shared.users == 0 {
            let _ = Command::new("docker")
                .args(["swarm", "leave", "--force"])
                .output();
            // `swarm init` made this bridge network; leaving the swarm keeps it.
            let _ = Command::new("docker")
                .args(["network", "rm", "docker_gwbridge"])
                .output();
            shared.lock = None;
        }
    }
}

fn swarm_state() -> String {
    run(Command::new("docker").args(["info", "--format", "{{.Swarm.LocalNodeState}}"]))
        .trim()
        .to_owned()
}

fn start_swarm() {
    if swarm_state() == "active" {
        let labels = run(Command::new("docker").args([
            "node",
            "inspect",
            "self",
            "--format",
            "{{json .Spec.Labels}}",
        ]));
        assert!(
            labels.contains(MARK),
            "this Docker engine is already in a swarm these tests did not make (no node label \
             {MARK}); leave it (`docker swarm leave`) or run the tests on another engine"
        );
        eprintln!("leaving the swarm a crashed earlier run of these tests left");
        run(Command::new("docker").args(["swarm", "leave", "--force"]));
    }
    let out = Command::new("docker")
        .args(["swarm", "init", "--advertise-addr", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`docker swarm init --advertise-addr 127.0.0.1` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = run(Command::new("docker").args(["info", "--format", "{{.Swarm.NodeID}}"]));
    let marked = Command::new("docker")
        .args([
            "node",
            "update",
            "--label-add",
            &format!("{MARK}=1"),
            node.trim(),
        ])
        .output()
        .unwrap();
    if !marked.status.success() {
        let _ = Command::new("docker")
            .args(["swarm", "leave", "--force"])
            .output();
        panic!(
            "cannot label the swarm node: {}",
            String::from_utf8_lossy(&marked.stderr)
        );
    }
}

/// A Swarm service removed on drop (its containers with it).
struct Service {
    name: String,
    /// The test's label value, on its containers and images.
    label: String,
}

impl Service {
    /// `docker service create` with `replicas`, waiting until it converged. `extra` goes before
    /// the image (e.g. `--with-registry-auth`).
    fn create(scratch: &Scratch, name: &str, replicas: u32, image: &str, extra: &[&str]) -> Self {
        let name = format!("{name}-{}", scratch.id);
        let service = Service {
            name: name.clone(),
            label: scratch.id.clone(),
        };
        run(Command::new("docker")
            .args(["service", "create", "-q", "--detach=false", "--name", &name])
            .args(["--replicas", &replicas.to_string()])
            .args(["--label", &format!("lookout.test={}", scratch.id)])
            .args(["--container-label", &format!("lookout.test={}", scratch.id)])
            .args(["--stop-grace-period", "2s"])
            .args(extra)
            .arg(image));
        service
    }

    fn inspect(&self) -> serde_json::Value {
        let out = run(Command::new("docker").args(["service", "inspect", &self.name]));
        let mut all: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        all.remove(0)
    }

    fn spec_image(&self) -> String {
        self.inspect()["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The images of the tasks Swarm wants running, and their states.
    fn running_tasks(&self) -> Vec<(String, String)> {
        let out = run(Command::new("docker").args([
            "service",
            "ps",
            &self.name,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Image}} {{.CurrentState}}",
        ]));
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(i, s)| (i.to_owned(), s.to_owned()))
            .collect()
    }

    /// The digests of the images the service's running containers run.
    /// Waits (up to 30 s) until the service's containers run exactly `want`: with
    /// `start-first`, the tasks Swarm replaced can still be stopping when it reports the update
    /// complete.
    fn assert_containers_on(&self, want: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.container_digests();
            if now == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the containers run {now:?}, not {want:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn container_digests(&self) -> Vec<String> {
        let ids = run(Command::new("docker").args([
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={}", self.name),
        ]));
        ids.split_whitespace()
            .map(|id| {
                run(Command::new("docker").args([
                    "inspect",
                    "--format",
                    "{{index .Config.Labels \"com.docker.swarm.task.name\"}} {{.Config.Image}}",
                    id,
                ]))
                .trim()
                .rsplit_once('@')
                .map(|(_, d)| d.to_owned())
                .unwrap_or_default()
            })
            .collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["service", "rm", &self.name])
            .output();
        crate::util::docker::remove_labelled(&self.label);
    }
}

/// A test's registry, images and lookout configuration.
struct Setup {
    scratch: Scratch,
    /// Kept running for the test.
    _registry: LocalRegistry,
    repo: String,
    images: Vec<TestImage>,
    hook: FakeHttp,
}

impl Setup {
    fn new(test: &str) -> Self {
        let scratch = Scratch::new(test);
        let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
        let repo = registry.image(&format!("swarm/{}", scratch.id));
        let hook = FakeHttp::start(|_| Response::status(200));
        Setup {
            scratch,
            _registry: registry,
            repo,
            images: Vec::new(),
            hook,
        }
    }

    /// Builds and pushes `REPO:tag`; returns its digest.
    fn push(&mut self, tag: &str, dockerfile: &str) -> String {
        let reference = format!("{}:{tag}", self.repo);
        let image = TestImage::build(&self.scratch, &reference, tag, dockerfile);
        let digest = image.push(&reference);
        self.images.push(image);
        digest
    }

    /// Writes lookout's configuration for one Swarm service and returns its path.
    fn config(&self, service: &Service, image: &str, extra: &str) -> std::path::PathBuf {
        self.scratch.write(
            "lookout.toml",
            format!(
                "state_file = \"{}\"\ncheck_interval = 60\nhealth_timeout = \"40s\"\n\
                 health_stable = \"2s\"\ncompose_timeout = \"60s\"\nwebhook_url = \"{}\"\n\n\
                 [[services]]\nname = \"web\"\nimage = \"{image}\"\nswarm_service = \"{}\"\n\
                 policy = \"semver\"\n{extra}\n",
                self.scratch.join("state/state.json").display(),
                self.hook.url("/hook"),
                service.name
            ),
        )
    }

    /// The events the webhook endpoint got, by their `X-Lookout-Event` header.
    fn events(&self) -> Vec<(String, serde_json::Value)> {
        self.hook
            .requests()
            .iter()
            .map(|r| {
                (
                    r.header("x-lookout-event").unwrap_or_default().to_owned(),
                    serde_json::from_slice(&r.body).unwrap_or_default(),
                )
            })
            .collect()
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.scratch.join("state/state.json")).unwrap(),
        )
        .unwrap()
    }
}

async fn pass(engine: &Engine<lookout::runtime::Docker>) -> lookout::engine::ServiceOutcome {
    let opts = PassOptions {
        actor: "test".into(),
        ..Default::default()
    };
    let mut outcomes = engine.pass(&opts).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes.remove(0)
}

async fn start(config: &std::path::Path) -> Engine<lookout::runtime::Docker> {
    let config = lookout::config::load(config).unwrap();
    let (engine, deliveries) = Engine::start(config).await.unwrap();
    tokio::spawn(deliveries.run(std::future::pending()));
    assert!(engine.swarm().is_some(), "the engine is a Swarm manager");
    engine
}

async fn eventually_events(setup: &Setup, kind: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((_, body)) = setup.events().into_iter().find(|(k, _)| k == kind) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} webhook; got {:?}",
            setup.events()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_are_updated_by_semver_through_swarm_s_rolling_update() {
    let _swarm = SwarmUse::join();
    let mut setup = Setup::new("swarm-semver");
    setup.push("1.0.0", HEALTHY);
    let new = setup.push("1.1.0", HEALTHY);
    setup.push("2.0.0-rc.1", HEALTHY);
    // Two tasks at a time, as the service's label asks.
    let service = Service::create(
        &setup.scratch,
        "web",
        3,
        &format!("{}:1.0.0", setup.repo),
        &["--label", "lookout.swarm.parallelism=2"],
    );
    assert!(service.spec_image().contains(":1.0.0@sha256:"));
    let config = setup.config(&service, &format!("{}:1.0.0", setup.repo), "");
    let engine = start(&config).await;

    let started = Instant::now();
    let outcome = pass(&engine).await;
    eprintln!("{outcome:?} after {:?}", started.elapsed());
    assert_eq!(outcome.result, ServiceResult::Updated, "{outcome:?}");
    assert_eq!(outcome.digest.as_deref(), Some(new.as_str()));

    let spec = service.inspect();
    assert_eq!(
        spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        format!("{}:1.1.0@{new}", setup.repo),
    );
    let update = &spec["Spec"]["UpdateConfig"];
    assert_eq!(update["FailureAction"], "rollback", "{update}");
    assert_eq!(update["Order"], "start-first", "{update}");
    assert_eq!(update["Parallelism"], 2, "{update}");
    assert_eq!(update["Monitor"], 2_000_000_000_u64, "{update}");
    assert_eq!(spec["UpdateStatus"]["State"], "completed", "{spec}");
    let tasks = service.running_tasks();
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    assert!(
        tasks
            .iter()
            .all(|(image, state)| image.ends_with(":1.1.0") && state.starts_with("Running")),
        "{tasks:?}"
    );
    service.assert_containers_on(&[new.clone(), new.clone(), new.clone()]);

    // Metrics and webhooks as for a compose update.
    assert_eq!(
        metric(
            &engine.telemetry,
            r#"lookout_updates_total{result="updated",service="web"}"#
        ),
        1.0
    );
    let body = eventually_events(&setup, "updated").await;
    assert!(body.to_string().contains(&new), "{body}");
    eventually_events(&setup, "update_started").await;
    let state = setup.state();
    let history = &state["services"]["web"]["history"];
    assert_eq!(history[0]["outcome"]["result"], "committed", "{state}");
    assert_eq!(history[0]["to"]["digest"], new.as_str());
    assert!(
        state["journal"].as_array().is_none_or(Vec::is_empty),
        "{state}"
    );

    // The next pass finds the service up to date: no second update.
    let again = pass(&engine).await;
    assert_eq!(again.result, ServiceResult::UpToDate, "{again:?}");

    // `lookout rollback` goes back through Swarm's previous spec.
    let back = engine.rollback("web", "test").await.unwrap();
    assert_eq!(back.result.as_str(), "updated", "{back:?}");
    assert!(
        service.spec_image().contains(":1.0.0@sha256:"),
        "{}",
        service.spec_image()
    );
    assert_eq!(
        service.inspect()["UpdateStatus"]["State"],
        "rollback_completed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_healthcheck_is_rolled_back_by_swarm_and_reported_with_the_task_error() {
    let _swarm = SwarmUse::join();
    let mut setup = Setup::new("swarm-bad");
    let old = setup.push("1.0.0", HEALTHY);
    let bad = setup.push("1.1.0", UNHEALTHY);
    let service = Service::create(
        &setup.scratch,
        "bad",
        2,
        &format!("{}:1.0.0", setup.repo),
        &[],
    );
    let config = setup.config(&service, &format!("{}:1.0.0", setup.repo), "");
    let engine = start(&config).await;

    let outcome = pass(&engine).await;
    eprintln!("{outcome:?}");
    assert_eq!(outcome.result, ServiceResult::RolledBack, "{outcome:?}");
    let reason = outcome.reason.clone().unwrap_or_default();
    let history = run(Command::new("docker").args([
        "service",
        "ps",
        "--no-trunc",
        &service.name,
        "--format",
        "{{.Image}} {{.DesiredState}} {{.CurrentState}} {{.Error}}",
    ]));
    assert!(
        reason.contains("unhealthy"),
        "the task's error: {reason}\n{history}"
    );

    let spec = service.inspect();
    assert_eq!(
        spec["UpdateStatus"]["State"], "rollback_completed",
        "{spec}"
    );
    assert_eq!(
        spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        format!("{}:1.0.0@{old}", setup.repo)
    );
    service.assert_containers_on(&[old.clone(), old.clone()]);
    let digests = service.container_digests();
    assert_eq!(
        digests,
        [old.clone(), old.clone()],
        "the old image runs again"
    );

    assert_eq!(
        metric(
            &engine.telemetry,
            r#"lookout_updates_total{result="rolled_back",service="web"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &engine.telemetry,
            r#"lookout_rollbacks_total{service="web"}"#
        ),
        1.0
    );
    let body = eventually_events(&setup, "rolled_back").await;
    assert!(body.to_string().contains("unhealthy"), "{body}");

    // The candidate is blocked as for compose: the next pass holds it.
    let state = setup.state();
    assert_eq!(
        state["services"]["web"]["failed_candidate"]["version"]["digest"],
        bad.as_str(),
        "{state}"
    );
    let again = pass(&engine).await;
    assert_eq!(again.result, ServiceResult::UpdateAvailable, "{again:?}");
    assert!(
        again
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("failed before"),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_image_is_pulled_by_swarm_with_the_credentials_lookout_forwards() {
    let _swarm = SwarmUse::join();
    let scratch = Scratch::new("swarm-private");
    // Pushed to a plain registry whose storage the token registry serves.
    let storage = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let registry = TokenRegistry::start(&scratch, &storage, "robot", "swarm-pass-314");
    let pushed = storage.image(&format!("private/{}", scratch.id));
    let served = format!("{}/private/{}", registry.host, scratch.id);
    let mut images = Vec::new();
    let mut digests = Vec::new();
    for tag in ["1.0.0", "1.0.1"] {
        let image = TestImage::build(&scratch, &format!("{pushed}:{tag}"), tag, HEALTHY);
        digests.push(image.push(&format!("{pushed}:{tag}")));
        images.push(image);
    }
    // The new image leaves this host: a digest the engine knows under any name would do.
    let new_id = images[1].id.clone();
    images.pop();
    let gone = Command::new("docker")
        .args(["image", "inspect", &new_id])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the new image is still on the host");
    // The engine pulls the first one from the served name, logged in only for that pull; the
    // service is created without stored credentials (no `--with-registry-auth`), so its task
    // runs the local image. Pulling the new one needs the credentials lookout forwards.
    {
        let _login = Login::new(&registry.host, "robot", "swarm-pass-314");
        run(Command::new("docker").args(["pull", "-q", &format!("{served}:1.0.0")]));
    }
    let service = Service::create(&scratch, "private", 1, &format!("{served}:1.0.0"), &[]);
    let no_login = Command::new("docker")
        .args(["pull", "-q", &format!("{served}:1.0.1")])
        .output()
        .unwrap();
    assert!(
        !no_login.status.success(),
        "the engine must not be able to pull the new image on its own"
    );
    let hook = FakeHttp::start(|_| Response::status(200));
    let config = scratch.write(
        "lookout.toml",
        format!(
            "state_file = \"{}\"\nhealth_timeout = \"40s\"\nhealth_stable = \"2s\"\n\
             compose_timeout = \"60s\"\nwebhook_url = \"{}\"\n\n[[services]]\nname = \"web\"\n\
             image = \"{served}:1.0.0\"\nswarm_service = \"{}\"\npolicy = \"semver\"\n\
             registry_config = {{ username = \"robot\", password = \"swarm-pass-314\" }}\n",
            scratch.join("state/state.json").display(),
            hook.url("/hook"),
            service.name
        ),
    );
    let engine = start(&config).await;
    let outcome = pass(&engine).await;
    eprintln!("{outcome:?}");
    assert_eq!(outcome.result, ServiceResult::Updated, "{outcome:?}");
    service.assert_containers_on(&[digests[1].clone()]);
    let spec = service.inspect();
    assert_eq!(
        spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        format!("{served}:1.0.1@{}", digests[1])
    );
    assert_eq!(spec["UpdateStatus"]["State"], "completed", "{spec}");
    drop(images);
}

/// `docker login` for the lifetime of the value (the engine's stored credentials).
struct Login {
    host: String,
}

impl Login {
    fn new(host: &str, user: &str, password: &str) -> Self {
        use std::io::Write;
        let mut child = Command::new("docker")
            .args(["login", "-u", user, "--password-stdin", host])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker login {host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Login {
            host: host.to_owned(),
        }
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["logout", &self.host]).output();
    }
}

#[cfg(feature = "failpoints")]
#[test]
fn a_lookout_killed_while_swarm_updates_is_followed_by_one_that_records_the_outcome() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;

    let _swarm = SwarmUse::join();
    let mut setup = Setup::new("swarm-kill");
    setup.push("1.0.0", HEALTHY);
    let new = setup.push("1.2.0", HEALTHY);
    let service = Service::create(
        &setup.scratch,
        "kill",
        3,
        &format!("{}:1.0.0", setup.repo),
        &[],
    );
    let config = setup.config(&service, &format!("{}:1.0.0", setup.repo), "");

    let mut child = crate::util::lookout()
        .arg("--config")
        .arg(&config)
        .args(["update", "--json"])
        .env("LOOKOUT_FAILPOINT", "swarm_during_update")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let mut child = Reap(child);
    let mut seen = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("lookout failpoint reached: swarm_during_update") {
            break;
        }
    }
    assert!(seen.contains("failpoint reached"), "{seen}");
    // Swarm has the update and goes on while no lookout watches.
    assert!(
        service.spec_image().ends_with(&new),
        "{}",
        service.spec_image()
    );
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");
    let state = setup.state();
    assert_eq!(
        state["journal"][0]["intent"]["swarm"]["service"],
        service.name.as_str(),
        "{state}"
    );

    // A fresh lookout finishes the record without sending Swarm anything.
    let version_before = service.inspect()["Spec"].clone();
    let out = crate::util::lookout()
        .arg("--config")
        .arg(&config)
        .args(["update", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("recovered web: Commit"), "{stderr}");
    let state = setup.state();
    assert!(
        state["journal"].as_array().is_none_or(Vec::is_empty),
        "{state}"
    );
    let history = &state["services"]["web"]["history"];
    assert_eq!(history[0]["outcome"]["result"], "committed", "{state}");
    assert_eq!(history[0]["to"]["digest"], new.as_str());
    assert_eq!(
        service.inspect()["Spec"],
        version_before,
        "the service was not touched"
    );
    service.assert_containers_on(&[new.clone(), new.clone(), new.clone()]);
    let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports[0]["result"], "up_to_date", "{reports:?}");

    // `lookout rollback web` killed while Swarm rolls back: the next lookout follows Swarm's
    // rollback to `rollback_completed` and records it, again without touching the service.
    let mut rolling = crate::util::lookout()
        .arg("--config")
        .arg(&config)
        .args(["rollback", "web"])
        .env("LOOKOUT_FAILPOINT", "swarm_during_rollback")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = rolling.stderr.take().unwrap();
    let mut rolling = Reap(rolling);
    let mut seen = String::new();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("lookout failpoint reached: swarm_during_rollback") {
            break;
        }
    }
    assert!(seen.contains("failpoint reached"), "{seen}");
    rolling.0.kill().unwrap();
    assert_eq!(rolling.0.wait().unwrap().signal(), Some(9));
    let out = crate::util::lookout()
        .arg("--config")
        .arg(&config)
        .args(["update", "--dry-run", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("recovered web: Commit") && stderr.contains("rollback"),
        "{stderr}"
    );
    let state = setup.state();
    assert!(
        state["journal"].as_array().is_none_or(Vec::is_empty),
        "{state}"
    );
    let history = state["services"]["web"]["history"].as_array().unwrap();
    let last = history.last().unwrap();
    assert_eq!(last["kind"], "rollback", "{state}");
    assert_eq!(last["outcome"]["result"], "committed", "{state}");
    assert_eq!(
        service.inspect()["UpdateStatus"]["State"],
        "rollback_completed"
    );
    assert!(
        service.spec_image().contains(":1.0.0@sha256:"),
        "{}",
        service.spec_image()
    );
}

/// A stack deployed with `docker stack deploy`, removed on drop (`docker stack rm`, then its
/// containers are waited for). Its services join the `host` network, so the stack creates no
/// network of its own.
struct Stack {
    name: String,
    /// The test's label value, on its containers.
    label: String,
    file: std::path::PathBuf,
}

impl Stack {
    /// Writes `text` (with `REPO` and `LABEL` filled in) as `stack.yml` and deploys it.
    fn deploy(scratch: &Scratch, repo: &str, text: &str) -> Self {
        let stack = Stack {
            name: format!("st-{}", scratch.id),
            label: scratch.id.clone(),
            file: scratch.write(
                "stack/stack.yml",
                text.replace("REPO", repo).replace("LABEL", &scratch.id),
            ),
        };
        stack.redeploy();
        stack
    }

    /// `docker stack deploy -c stack.yml NAME` again.
    fn redeploy(&self) {
        run(Command::new("docker")
            .args(["stack", "deploy", "-c"])
            .arg(&self.file)
            .arg(&self.name));
    }

    /// The stack's Swarm service `service` (`NAME_service`), to inspect.
    fn service(&self, service: &str) -> Service {
        Service {
            name: format!("{}_{service}", self.name),
            label: self.label.clone(),
        }
    }

    fn bytes(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["stack", "rm", &self.name])
            .output();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let left = Command::new("docker")
                .args(["ps", "-aq", "--filter"])
                .arg(format!("label=com.docker.stack.namespace={}", self.name))
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            if left.iter().all(u8::is_ascii_whitespace) {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        crate::util::docker::remove_labelled(&self.label);
    }
}

/// A stack file as operators write them: comments, odd spacing, quotes and flow mappings.
const STACK_FILE: &str = r#"# The shop, as `docker stack deploy -c stack.yml shop` runs it.
version: "3.8"

services:
  web:      # the site
    image:     "REPO:1.0.0"    # lookout keeps this current
    stop_grace_period: 2s
    labels: [ "lookout.test=LABEL" ]
    deploy: { replicas: 2,
              labels: { lookout.test: "LABEL" } }
    networks: [ outside ]   # no network of the stack's own

networks:
  outside: { external: true, name: host }
"#;

/// Waits until `service` has `n` running tasks, all on an image ending with `tag`.
fn wait_converged(service: &Service, n: usize, tag: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let tasks = service.running_tasks();
        if tasks.len() == n
            && tasks
                .iter()
                .all(|(i, s)| i.ends_with(tag) && s.starts_with("Running"))
        {
            return;
        }
        assert!(Instant::now() < deadline, "{}: {tasks:?}", service.name);
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_service_s_update_changes_the_stack_file_so_the_next_deploy_keeps_it() {
    let _swarm = SwarmUse::join();
    let mut setup = Setup::new("swarm-stack");
    setup.push("1.0.0", HEALTHY);
    let new = setup.push("1.1.0", HEALTHY);
    let stack = Stack::deploy(&setup.scratch, &setup.repo, STACK_FILE);
    let service = stack.service("web");
    wait_converged(&service, 2, ":1.0.0");
    let before = stack.bytes();
    let config = setup.config(
        &service,
        &format!("{}:1.0.0", setup.repo),
        &format!("stack_file = \"{}\"", stack.file.display()),
    );
    let engine = start(&config).await;

    let outcome = pass(&engine).await;
    eprintln!("{outcome:?}");
    assert_eq!(outcome.result, ServiceResult::Updated, "{outcome:?}");
    assert_eq!(service.spec_image(), format!("{}:1.1.0@{new}", setup.repo));
    // Exactly the image value changed: comments, spacing and quotes are the operator's.
    assert_eq!(
        stack.bytes(),
        before.replacen(":1.0.0\"", ":1.1.0\"", 1),
        "the stack file"
    );
    let state = setup.state();
    assert!(
        state["journal"].as_array().is_none_or(Vec::is_empty),
        "{state}"
    );

    // The next `stack deploy` of the file keeps the service on the new image.
    stack.redeploy();
    wait_converged(&service, 2, ":1.1.0");
    assert_eq!(service.spec_image(), format!("{}:1.1.0@{new}", setup.repo));
    service.assert_containers_on(&[new.clone(), new.clone()]);
    let again = pass(&engine).await;
    assert_eq!(again.result, ServiceResult::UpToDate, "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_file_keeps_its_old_bytes_when_swarm_rolls_back_or_lookout_is_killed() {
    let _swarm = SwarmUse::join();
    let mut setup = Setup::new("swarm-stack-bad");
    let old = setup.push("1.0.0", HEALTHY);
    let bad = setup.push("1.1.0", UNHEALTHY);
    let stack = Stack::deploy(
        &setup.scratch,
        &setup.repo,
        &STACK_FILE.replace("replicas: 2", "replicas: 1"),
    );
    let service = stack.service("web");
    wait_converged(&service, 1, ":1.0.0");
    let before = stack.bytes();
    let old_spec = service.spec_image();
    let config = setup.config(
        &service,
        &format!("{}:1.0.0", setup.repo),
        &format!("stack_file = \"{}\"", stack.file.display()),
    );

    // Killed after the stack file was written, before Swarm was asked: the next lookout puts
    // the old bytes back and leaves the service alone.
    #[cfg(feature = "failpoints")]
    {
        let killed = killed_at(&config, "swarm_after_stack_edit");
        assert!(stack.bytes().contains(":1.1.0\""), "{killed}");
        assert_eq!(service.spec_image(), old_spec, "Swarm was not asked");
        let out = crate::util::lookout()
            .arg("--config")
            .arg(&config)
            .args(["update", "--dry-run", "--json"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("restored the old bytes of the stack file"),
            "{stderr}"
        );
        assert_eq!(stack.bytes(), before, "the stack file after recovery");
        assert_eq!(service.spec_image(), old_spec);
        let state = setup.state();
        assert!(
            state["journal"].as_array().is_none_or(Vec::is_empty),
            "{state}"
        );
    }

    // Swarm rolls the failing candidate back: the file keeps its old bytes.
    let engine = start(&config).await;
    let outcome = pass(&engine).await;
    eprintln!("{outcome:?}");
    assert_eq!(outcome.result, ServiceResult::RolledBack, "{outcome:?}");
    assert!(
        outcome
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("unhealthy"),
        "{outcome:?}"
    );
    assert_eq!(
        stack.bytes(),
        before,
        "the stack file after Swarm's rollback"
    );
    assert_eq!(
        service.inspect()["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        format!("{}:1.0.0@{old}", setup.repo)
    );
    let state = setup.state();
    assert_eq!(
        state["services"]["web"]["failed_candidate"]["version"]["digest"],
        bad.as_str(),
        "{state}"
    );
    service.assert_containers_on(std::slice::from_ref(&old));
}

/// Runs `lookout update` with `LOOKOUT_FAILPOINT=point` and kills it with `kill -9` there;
/// returns what it wrote on stderr.
#[cfg(feature = "failpoints")]
fn killed_at(config: &std::path::Path, point: &str) -> String {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    let mut child = crate::util::lookout()
        .arg("--config")
        .arg(config)
        .args(["update", "--json"])
        .env("LOOKOUT_FAILPOINT", point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(&format!("lookout failpoint reached: {point}")) {
            break;
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(seen.contains("failpoint reached"), "{seen}");
    assert_eq!(status.signal(), Some(9), "{status}");
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_swarm_section_discovery_s_settings_decide_which_swarm_services_are_watched() {
    let _swarm = SwarmUse::join();
    let mut setup = Setup::new("swarm-auto");
    setup.push("1.0.0", HEALTHY);
    let new = setup.push("1.1.0", HEALTHY);
    let scope = setup.scratch.id.clone();
    let image = format!("{}:1.0.0", setup.repo);
    let scope_label = |s: &str| format!("com.centurylinklabs.watchtower.scope={s}");
    let ours = Service::create(
        &setup.scratch,
        "ours",
        1,
        &image,
        &[
            "--label",
            &scope_label(&scope),
            "--label",
            "lookout.policy=semver",
        ],
    );
    let theirs = Service::create(
        &setup.scratch,
        "theirs",
        1,
        &image,
        &["--label", &scope_label(&format!("{scope}-other"))],
    );
    // No `[swarm]`: "auto". No `[[services]]`: every service is a discovered one.
    let config = setup.scratch.write(
        "lookout.toml",
        format!(
            "state_file = \"{}\"\n\n[discovery]\nenabled = true\nscope = \"{scope}\"\n",
            setup.scratch.join("state/state.json").display()
        ),
    );
    let engine = start(&config).await;
    assert_eq!(engine.config().swarm, lookout::config::SwarmMode::Auto);
    let outcomes = engine
        .pass(&PassOptions {
            actor: "test".into(),
            ..Default::default()
        })
        .await;
    let names: Vec<&str> = outcomes.iter().map(|o| o.service.as_str()).collect();
    assert_eq!(names, [ours.name.as_str()], "{outcomes:?}");
    let found = &outcomes[0];
    assert_eq!(found.result, ServiceResult::UpdateAvailable, "{found:?}");
    assert_eq!(found.digest.as_deref(), Some(new.as_str()), "{found:?}");
    // A service like the others: in force (API, `lookout rollback`), with its own metrics.
    assert!(engine.service(&ours.name).is_some());
    assert!(engine.service(&theirs.name).is_none());
    assert_eq!(
        metric(
            &engine.telemetry,
            &format!(r#"lookout_update_available{{service="{}"}}"#, ours.name)
        ),
        1.0
    );
    // Watched and reported, not updated: no lookout.action=update, default_action is notify.
    assert_eq!(ours.spec_image().split('@').next(), Some(image.as_str()));
    assert_eq!(theirs.spec_image().split('@').next(), Some(image.as_str()));
}
