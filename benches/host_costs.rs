//! What lookout costs on a real host, measured from outside the process as an operator sees it:
//! the `lookout` binary of this build (release under `cargo bench`) against the real Docker
//! engine and a loopback registry (Debian's `docker-registry`, started here, which sends its
//! push notifications to lookout's registry hook).
//!
//! - **Idle `lookout update`**: `SERVICES` running compose services (default 200, in five
//!   compose projects) over `REPOS` repositories (default 40), semver policy, all up to date.
//!   Wall time and peak RSS of the whole command, median of five runs.
//! - **Idle daemon**: `lookout run` on the same services once its first pass is done: RSS.
//! - **Push to healthy**: a new version of one repository is pushed; the registry's
//!   notification reaches lookout's hook, which checks that repository only and updates its
//!   services (one in each compose project, so they are independent: `update_concurrency = 5`).
//!   The time from the end of `docker push` to every one of them committed healthy, and where
//!   each update's time went (the API's `last_result`: its check, the pull, `compose up`, the
//!   health gate, and what is left, lookout's own time, which must stay under 1 s).
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it runs 10 services over 2
//! repositories, to show it works; the figures in the README come from `cargo bench --bench
//! host_costs` (`HOST_COSTS_LOOKOUT=PATH` measures another `lookout` binary, `--bench` the
//! full size with any build of this file). Everything it creates in Docker is labelled `lookout.test=host-costs-<pid>` and
//! removed at the end, also when it fails.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::free_port;

const PROJECTS: usize = 5;
/// The health gate's stability wait of every service (no image here has a HEALTHCHECK).
const HEALTH_STABLE_S: u64 = 1;
const HOOK_SECRET: &str = "host-costs-hook-secret-0123456789";

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (services, repos) = if bench { (200, 40) } else { (10, 2) };
    assert_eq!(services % repos, 0);
    assert_eq!(
        (services / repos) % PROJECTS,
        0,
        "each repository's services spread over the projects"
    );
    let host = Host::new();
    let lookout_port = free_port();
    let registry = start_registry(lookout_port);

    let old = host.build_image("1.0.0");
    for r in 0..repos {
        let tag = format!("{}/costs/app{r}:1.0.0", registry.host);
        host.tag(&old, &tag);
        docker(&["push", "-q", &tag]);
    }
    let files = host.write_projects(&registry.host, services, repos);
    for (p, file) in files.iter().enumerate() {
        docker_compose(&host.project(p), file, &["up", "-d", "--quiet-pull"]);
    }
    let config = host.write_config(&files, services, repos, &registry.host, lookout_port);
    // `HOST_COSTS_LOOKOUT=/usr/local/bin/lookout` measures another build (an installed one).
    let binary = std::env::var_os("HOST_COSTS_LOOKOUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lookout")));
    let binary = binary.as_path();

    // Idle update: nothing to do, every service up to date.
    let mut runs: Vec<(Duration, u64)> = (0..5)
        .map(|_| {
            let (status, wall, peak) = measure(
                Command::new(binary)
                    .arg("--config")
                    .arg(&config)
                    .args(["update", "--json"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            );
            assert!(status.success(), "an idle lookout update failed: {status}");
            (wall, peak)
        })
        .collect();
    runs.sort();
    let (wall, _) = runs[runs.len() / 2];
    let mut peaks: Vec<u64> = runs.iter().map(|r| r.1).collect();
    peaks.sort_unstable();
    let peak = peaks[peaks.len() / 2];
    eprintln!(
        "host_costs: idle `lookout update`, {services} services over {repos} repositories: {:.0} ms, peak RSS {:.1} MiB (medians of 5)",
        wall.as_secs_f64() * 1000.0,
        mib(peak)
    );

    // The daemon: its first pass, then idle.
    let log = host.dir.join("daemon.log");
    let mut daemon = Daemon::start(binary, &config, &log);
    let addr = format!("127.0.0.1:{lookout_port}");
    wait_until(Duration::from_secs(120), "the daemon's first pass", || {
        let body = get(&addr, "/api/v1/services")?;
        (body.matches("\"last_check\":\"").count() == services).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let (rss, hwm, anon, file) = (
        status_kib(daemon.pid(), "VmRSS"),
        status_kib(daemon.pid(), "VmHWM"),
        status_kib(daemon.pid(), "RssAnon"),
        status_kib(daemon.pid(), "RssFile"),
    );
    eprintln!(
        "host_costs: `lookout run` idle after its first pass over {services} services: RSS {:.1} MiB ({:.1} MiB heap and stacks, {:.1} MiB of the binary's pages; peak so far {:.1} MiB)",
        mib(rss),
        mib(anon),
        mib(file),
        mib(hwm)
    );

    // Push to healthy through the registry's notification.
    let new = host.build_image("1.1.0");
    let tag = format!("{}/costs/app0:1.1.0", registry.host);
    host.tag(&new, &tag);
    docker(&["push", "-q", &tag]);
    let pushed = Instant::now();
    let names: Vec<String> = (0..services)
        .step_by(repos)
        .map(|i| format!("svc{i}"))
        .collect();
    let durations = wait_until(
        Duration::from_secs(120),
        "the updates after the push",
        || {
            let body = get(&addr, "/api/v1/services")?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let list = v["services"].as_array()?;
            names
                .iter()
                .map(|n| {
                    let s = list.iter().find(|s| s["name"] == n.as_str())?;
                    let last = &s["last_result"];
                    (last["result"] == "updated").then(|| Spans::of(last))
                })
                .collect::<Option<Vec<_>>>()
        },
    );
    let elapsed = pushed.elapsed();
    let own: Vec<f64> = durations.iter().map(Spans::own).collect();
    eprintln!(
        "host_costs: push to healthy: {} services on the pushed repository, one per compose project, update_concurrency = {PROJECTS}: all committed {:.2} s after the push (health gate stability wait {HEALTH_STABLE_S} s each)",
        names.len(),
        elapsed.as_secs_f64(),
    );
    for d in &durations {
        eprintln!(
            "host_costs:   one update: {:.2} s in all: check {:.2} s, pull {:.2} s, compose up {:.2} s, health gate {:.2} s, lookout's own {:.2} s",
            d.total,
            d.check,
            d.pull,
            d.recreate,
            d.gate,
            d.own()
        );
    }
    for d in &durations {
        assert!(
            d.check + d.pull + d.recreate + d.gate <= d.total + 0.001,
            "an update's phases add up to more than its duration: {d:?}"
        );
    }
    daemon.stop();
    assert!(
        elapsed < Duration::from_secs(HEALTH_STABLE_S * names.len() as u64 + 10),
        "the updates of independent services ran one after another: {elapsed:?}"
    );
    if bench {
        assert!(
            mib(peak) <= 20.0,
            "an idle lookout update peaked at {:.1} MiB",
            mib(peak)
        );
        assert!(
            own.iter().all(|&o| o < 1.0),
            "lookout's own time of an update was 1 s or more: {own:.2?} s"
        );
        assert!(
            mib(rss) <= 15.0,
            "the idle daemon holds {:.1} MiB",
            mib(rss)
        );
    }
    drop(new);
    drop(old);
}

/// Where one update's time went, from the API's `last_result` (seconds).
#[derive(Debug)]
struct Spans {
    total: f64,
    check: f64,
    pull: f64,
    recreate: f64,
    gate: f64,
}

impl Spans {
    fn of(last: &serde_json::Value) -> Self {
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        let phases = &last["phases"];
        Self {
            total: f(&last["duration"]),
            check: f(&last["check_duration"]),
            pull: f(&phases["pull"]),
            recreate: f(&phases["recreate"]),
            gate: f(&phases["health_gate"]),
        }
    }

    /// What is in no phase: lookout's own time (planning, journal, tags, the file write).
    fn own(&self) -> f64 {
        self.total - self.check - self.pull - self.recreate - self.gate
    }
}

/// The Docker objects this run made, removed when it ends (also on a panic).
struct Host {
    label: String,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    projects: std::cell::RefCell<Vec<(String, PathBuf)>>,
    tags: std::cell::RefCell<Vec<String>>,
}

impl Host {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        Self {
            label: format!("lookout.test=host-costs-{}", std::process::id()),
            dir: tmp.path().to_owned(),
            _tmp: tmp,
            projects: Default::default(),
            tags: Default::default(),
        }
    }

    fn project(&self, p: usize) -> String {
        format!("host-costs-{}-{p}", std::process::id())
    }

    /// `FROM scratch` plus Debian's static busybox, sleeping; `/version` holds `version`.
    fn build_image(&self, version: &str) -> String {
        let ctx = self.dir.join(format!("image-{version}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::copy("/bin/busybox", ctx.join("busybox"))
            .expect("/bin/busybox (Debian's busybox-static) is missing: run tests/run");
        std::fs::write(ctx.join("version"), version).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!(
                "FROM scratch\nLABEL {}\nCOPY busybox /bin/busybox\nCOPY version /version\n\
                 CMD [\"/bin/busybox\", \"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do /bin/busybox sleep 1; done\"]\n",
                self.label
            ),
        )
        .unwrap();
        let tag = format!("host-costs-{}:{version}", std::process::id());
        let out = Command::new("docker")
            .args(["build", "-q", "--no-cache", "-t", &tag])
            .arg(&ctx)
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .expect("docker is missing");
        assert!(
            out.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.tags.borrow_mut().push(tag.clone());
        tag
    }

    fn tag(&self, image: &str, tag: &str) {
        docker(&["tag", image, tag]);
        self.tags.borrow_mut().push(tag.to_owned());
    }

    /// `PROJECTS` compose files; service `svcI` runs repository `I % repos` and lives in project
    /// `(I / repos) % PROJECTS`, so each repository's services are spread over every project.
    fn write_projects(&self, registry: &str, services: usize, repos: usize) -> Vec<PathBuf> {
        (0..PROJECTS)
            .map(|p| {
                let mut text = String::from("services:\n");
                for i in (0..services).filter(|i| (i / repos) % PROJECTS == p) {
                    text.push_str(&format!(
                        "  svc{i}:\n    image: {registry}/costs/app{}:1.0.0\n    network_mode: none\n    labels: [\"{}\"]\n",
                        i % repos,
                        self.label
                    ));
                }
                let file = self.dir.join(format!("project{p}/compose.yaml"));
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, text).unwrap();
                self.projects.borrow_mut().push((self.project(p), file.clone()));
                file
            })
            .collect()
    }

    fn write_config(
        &self,
        files: &[PathBuf],
        services: usize,
        repos: usize,
        registry: &str,
        port: u16,
    ) -> PathBuf {
        let mut text = format!(
            "check_interval = \"24h\"\nlisten = \"127.0.0.1:{port}\"\nhook_secret = \"{HOOK_SECRET}\"\n\
             update_concurrency = {PROJECTS}\nhealth_stable = \"{HEALTH_STABLE_S}s\"\nhealth_timeout = \"60s\"\n\
             state_file = \"{}\"\n\n",
            self.dir.join("state.json").display()
        );
        for i in 0..services {
            text.push_str(&format!(
                "[[services]]\nname = \"svc{i}\"\nimage = \"{registry}/costs/app{}:1.0.0\"\ncompose_file = \"{}\"\ncompose_project = \"{}\"\npolicy = \"semver\"\n\n",
                i % repos,
                files[(i / repos) % PROJECTS].display(),
                self.project((i / repos) % PROJECTS),
            ));
        }
        let path = self.dir.join("lookout.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for (project, file) in self.projects.borrow().iter() {
            let _ = Command::new("docker")
                .args(["compose", "-p", project, "-f"])
                .arg(file)
                .args(["down", "-v", "--remove-orphans", "-t", "1"])
                .output();
        }
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker ps -aq --filter label={0} | xargs -r docker rm -fv; docker images -q --filter label={0} | sort -u | xargs -r docker rmi -f",
                self.label
            ))
            .output();
        let tags = self.tags.borrow();
        if !tags.is_empty() {
            let _ = Command::new("docker")
                .arg("rmi")
                .arg("-f")
                .args(tags.iter())
                .output();
        }
    }
}

/// A loopback registry that notifies lookout's registry hook of every push.
fn start_registry(lookout_port: u16) -> common::Registry {
    common::start_registry(&format!(
        "notifications:\n  endpoints:\n    - name: lookout\n      url: http://127.0.0.1:{lookout_port}/hooks/registry\n\
         \x20     headers:\n        X-Lookout-Hook-Secret: [{HOOK_SECRET}]\n      timeout: 2s\n      threshold: 5\n      backoff: 1s\n"
    ))
}

struct Daemon(Child);

impl Daemon {
    fn start(binary: &Path, config: &Path, log: &Path) -> Self {
        Self(
            Command::new(binary)
                .arg("--config")
                .arg(config)
                .arg("run")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .expect("start lookout run"),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` to its end: its exit status, wall time, and peak RSS in KiB (its `VmHWM`, read
/// every millisecond while it runs; the last reading is taken just before it exits).
fn measure(cmd: &mut Command) -> (std::process::ExitStatus, Duration, u64) {
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start lookout");
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, started.elapsed(), peak);
        }
        peak = peak.max(status_kib(child.id(), "VmHWM"));
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A `/proc/PID/status` figure in KiB (0 once the process is gone).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` from lookout's API, the body of a 200 answer.
fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
}

fn docker(args: &[&str]) {
    succeed(Command::new("docker").args(args));
}

fn docker_compose(project: &str, file: &Path, args: &[&str]) {
    succeed(
        Command::new("docker")
            .args(["compose", "-p", project, "-f"])
            .arg(file)
            .args(args),
    );
}

/// Runs `cmd`, failing the bench with its stderr unless it succeeds.
fn succeed(cmd: &mut Command) {
    let out = cmd.output().expect("docker is missing: run tests/run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
