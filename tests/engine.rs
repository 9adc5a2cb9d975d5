//! End to end on the real Docker engine: `lookout update` and `lookout rollback` as an operator
//! runs them, against images built here and pushed to a local registry, with compose v2 and v1.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::docker::{CountingDocker, remove_labelled};
use crate::util::{LocalRegistry, RegistryAuth, Scratch, TestImage, lookout, run};

/// The compose tool a test drives (lookout detects v2 first; `LOOKOUT_COMPOSE_BINARY` picks v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    V2,
    V1,
}

impl Flavor {
    /// The compose command of this flavor: `docker compose` or Debian's `docker-compose`.
    pub(crate) fn command(self) -> Command {
        match self {
            Flavor::V2 => {
                let mut c = Command::new("docker");
                c.arg("compose");
                c
            }
            Flavor::V1 => Command::new("/usr/bin/docker-compose"),
        }
    }
}

/// A HEALTHCHECK that passes once the container has created its marker file.
pub(crate) const HEALTHY: &str = "HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD [\"/bin/test\", \"-f\", \"/healthy\"]\n\
    CMD [\"/bin/sh\", \"-c\", \"touch /healthy; trap 'exit 0' TERM; while true; do sleep 1; done\"]";
/// A HEALTHCHECK that never passes.
pub(crate) const UNHEALTHY: &str =
    "HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD [\"/bin/false\"]";
/// No HEALTHCHECK; runs until stopped.
pub(crate) const NO_CHECK: &str = "";
/// No HEALTHCHECK; exits after 3 seconds.
pub(crate) const EXITS_AFTER_3S: &str = "CMD [\"/bin/sh\", \"-c\", \"sleep 3; exit 1\"]";

/// A compose project in a scratch folder, with lookout's configuration next to it. Dropping it
/// runs `compose down` and removes every labelled container and image.
pub(crate) struct Project {
    pub scratch: Scratch,
    pub registry: LocalRegistry,
    pub flavor: Flavor,
    pub dir: PathBuf,
    pub compose_file: PathBuf,
    pub config: PathBuf,
    pub repo: String,
    images: Vec<TestImage>,
}

impl Project {
    /// `compose` is the compose file text with `{image}` for `HOST/e2e/app` and `{label}` for
    /// the test label; `service` is lookout's service settings (TOML lines).
    pub(crate) fn new(test: &str, flavor: Flavor, compose: &str, service: &str) -> Self {
        Self::build(test, flavor, compose, service, RegistryAuth::Anonymous, "")
    }

    /// As [`Project::new`], with a registry that authenticates as `auth` says (the engine is
    /// logged in to it, so pushes work).
    pub(crate) fn with_auth(
        test: &str,
        flavor: Flavor,
        compose: &str,
        service: &str,
        auth: RegistryAuth,
    ) -> Self {
        Self::build(test, flavor, compose, service, auth, "")
    }

    /// Like [`Project::new`], with extra top-level YAML in the registry's configuration (e.g.
    /// `notifications:` pointing at lookout).
    pub(crate) fn with_registry_yaml(
        test: &str,
        flavor: Flavor,
        compose: &str,
        service: &str,
        registry_yaml: &str,
    ) -> Self {
        Self::build(
            test,
            flavor,
            compose,
            service,
            RegistryAuth::Anonymous,
            registry_yaml,
        )
    }

    fn build(
        test: &str,
        flavor: Flavor,
        compose: &str,
        service: &str,
        auth: RegistryAuth,
        registry_yaml: &str,
    ) -> Self {
        let scratch = Scratch::new(test);
        let registry = LocalRegistry::start_with(&scratch, auth, registry_yaml);
        let repo = registry.image("e2e/app");
        // v1 and v2 both derive the project name from an alphanumeric folder name alike.
        let name: String = format!("lk{}", scratch.id)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let dir = scratch.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let compose_file = dir.join("compose.yaml");
        std::fs::write(
            &compose_file,
            compose
                .replace("{image}", &repo)
                .replace("{label}", &scratch.id),
        )
        .unwrap();
        let config = scratch.join("lookout.toml");
        std::fs::write(
            &config,
            format!(
                "state_file = \"{}\"\ncheck_interval = 60\nhealth_timeout = \"30s\"\nhealth_stable = \"4s\"\ncompose_timeout = \"60s\"\n\n[[services]]\nname = \"app\"\ncompose_file = \"{}\"\ncompose_service = \"app\"\n{service}\n",
                scratch.join("state/state.json").display(),
                compose_file.display()
            )
            .replace("{image}", &repo),
        )
        .unwrap();
        Self {
            scratch,
            registry,
            flavor,
            dir,
            compose_file,
            config,
            repo,
            images: Vec::new(),
        }
    }

    /// Builds `e2e/app:TAG` with `dockerfile` lines, pushes it, and returns its local image id.
    pub(crate) fn push(&mut self, tag: &str, dockerfile: &str) -> String {
        let reference = format!("{}:{tag}", self.repo);
        let image = TestImage::build(&self.scratch, &reference, tag, dockerfile);
        image.push(&reference);
        let id = image.id.clone();
        self.images.push(image);
        id
    }

    pub(crate) fn compose(&self, args: &[&str]) -> String {
        let mut cmd = self.flavor.command();
        cmd.current_dir(&self.dir)
            .args(["-f", "compose.yaml"])
            .args(args);
        run(&mut cmd)
    }

    pub(crate) fn up(&self) {
        self.compose(&["up", "-d"]);
    }

    /// Runs `lookout --config CONFIG ARGS`, with v1 selected for v1 projects.
    pub(crate) fn lookout(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = lookout();
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env("LOG_LEVEL", "info");
        if self.flavor == Flavor::V1 {
            cmd.env("LOOKOUT_COMPOSE_BINARY", "/usr/bin/docker-compose");
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `lookout --config CONFIG ARGS` with extra environment variables and returns the
    /// child with its stderr piped (stdout is discarded), for tests that stop it midway.
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))] // Used by the fault tests.
    pub(crate) fn spawn_lookout(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        let mut cmd = lookout();
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env("LOG_LEVEL", "info")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if self.flavor == Flavor::V1 {
            cmd.env("LOOKOUT_COMPOSE_BINARY", "/usr/bin/docker-compose");
        }
        cmd.spawn().unwrap()
    }

    /// The compose project's name (the folder's name, which v1 and v2 both use as is).
    pub(crate) fn project_name(&self) -> String {
        self.dir.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// `lookout update --json`, returning the one service's report.
    pub(crate) fn update(&self) -> serde_json::Value {
        self.update_with_code().1
    }

    /// `lookout update --json`: the exit code and the one service's report.
    pub(crate) fn update_with_code(&self) -> (i32, serde_json::Value) {
        let (code, stdout, stderr) = self.lookout(&["update", "--json"]);
        let reports: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("update printed no JSON ({e}), exit {code}:\n{stdout}\n{stderr}")
        });
        let report = reports[0].clone();
        eprintln!("lookout update: exit {code}: {report}\n{stderr}");
        (code, report)
    }

    /// The running container of service `app`: (id, image id, health).
    pub(crate) fn running(&self) -> (String, String, String) {
        let ids = self.compose(&["ps", "-q", "app"]);
        let id = ids
            .lines()
            .next()
            .unwrap_or_else(|| panic!("no container for app"))
            .trim()
            .to_owned();
        let out = run(Command::new("docker").args([
            "inspect",
            "--format",
            "{{.Image}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
            &id,
        ]));
        let mut f = out.split_whitespace();
        let image = f.next().unwrap().to_owned();
        let status = f.next().unwrap().to_owned();
        let health = f.next().unwrap().to_owned();
        (id, image, format!("{status}/{health}"))
    }

    pub(crate) fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.scratch.join("state/state.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    pub(crate) fn read(&self, path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let mut cmd = self.flavor.command();
        let _ = cmd
            .current_dir(&self.dir)
            .args(["-f", "compose.yaml", "down", "--timeout", "1"])
            .output();
        remove_labelled(&self.scratch.id);
        // Tags lookout made (rollback tags, retags) on the test's repository.
        if let Ok(out) = Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}", &self.repo])
            .output()
        {
            let refs: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            if !refs.is_empty() {
                let _ = Command::new("docker")
                    .args(["rmi", "-f"])
                    .args(&refs)
                    .output();
            }
        }
    }
}

pub(crate) const COMPOSE_TAGGED: &str = "services:\n  app:\n    # the service under test\n    image: '{image}:1.0.0'  # keep the quotes\n    network_mode: none\n    restart: \"no\"\n    labels:\n      lookout.test: \"{label}\"\n";

/// Updates 1.0.0 → 1.1.0, then refuses 2.0.0 whose health check fails: rolled back to exactly
/// the bytes before, the old container healthy, the candidate blocked on the next pass.
fn semver_update_then_rollback(flavor: Flavor) {
    let mut p = Project::new(
        &format!("engine-semver-{flavor:?}"),
        flavor,
        COMPOSE_TAGGED,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    p.push("1.0.0", HEALTHY);
    p.up();
    let before = p.read(&p.compose_file);

    let id_110 = p.push("1.1.0", HEALTHY);
    let report = p.update();
    assert_eq!(report["result"], "updated", "{report}");
    assert_eq!(report["to"].as_str().unwrap(), format!("{}:1.1.0", p.repo));
    let after = p.read(&p.compose_file);
    assert_eq!(
        after,
        before.replace(":1.0.0'", ":1.1.0'"),
        "exactly one value changed"
    );
    let (container, image, health) = p.running();
    assert_eq!(
        (image.as_str(), health.as_str()),
        (id_110.as_str(), "running/healthy")
    );

    p.push("2.0.0", UNHEALTHY);
    let (code, report) = p.update_with_code();
    assert_eq!(report["result"], "rolled_back", "{report}");
    assert_eq!(
        code, 3,
        "a rolled-back update exits with EXIT_ROLLED_BACK: {report}"
    );
    assert_eq!(report["stage"], "health", "{report}");
    assert_eq!(
        p.read(&p.compose_file),
        after,
        "the compose file is byte-identical to before the failed update"
    );
    let (_, image, health) = p.running();
    assert_eq!(
        (image.as_str(), health.as_str()),
        (id_110.as_str(), "running/healthy"),
        "the old container is back and healthy"
    );
    let failed = &p.state()["services"]["app"]["failed_candidate"];
    assert_eq!(failed["version"]["tag"], "2.0.0", "{failed}");

    let (container_before, _, _) = p.running();
    let report = p.update();
    assert_eq!(report["result"], "update_available", "{report}");
    assert!(
        report["reason"].as_str().unwrap().contains("failed before"),
        "{report}"
    );
    assert_eq!(
        p.running().0,
        container_before,
        "a blocked candidate restarts nothing"
    );
    let _ = container;
}

#[test]
fn semver_update_and_failed_candidate_rollback_compose_v2() {
    semver_update_then_rollback(Flavor::V2);
}

#[test]
fn semver_update_and_failed_candidate_rollback_compose_v1() {
    semver_update_then_rollback(Flavor::V1);
}

/// `latest` follows its digest: a new healthy push is taken, a crash-looping one is rolled back,
/// and the compose file never changes.
fn latest_digest_update_and_rollback_of_a_crash_loop(flavor: Flavor) {
    let compose = "services:\n  app:\n    image: {image}:latest\n    network_mode: none\n    restart: unless-stopped\n    labels:\n      lookout.test: \"{label}\"\n";
    let mut p = Project::new(
        &format!("engine-latest-{flavor:?}"),
        flavor,
        compose,
        "image = \"{image}:latest\"\n",
    );
    p.push("latest", HEALTHY);
    p.up();
    let file = p.read(&p.compose_file);

    let id_b = p.push("latest", &format!("{HEALTHY}\nLABEL build=b"));
    let report = p.update();
    assert_eq!(report["result"], "updated", "{report}");
    assert_eq!(p.running().1, id_b);
    assert_eq!(
        p.read(&p.compose_file),
        file,
        "a digest update leaves the file alone"
    );

    p.push("latest", &format!("{EXITS_AFTER_3S}\nLABEL build=c"));
    let report = p.update();
    assert_eq!(report["result"], "rolled_back", "{report}");
    let (_, image, health) = p.running();
    assert_eq!(
        (image.as_str(), health.as_str()),
        (id_b.as_str(), "running/healthy")
    );
    let local_latest = run(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("{}:latest", p.repo),
    ]));
    assert_eq!(
        local_latest.trim(),
        id_b,
        "the local `latest` tag points to the restored image"
    );
    assert_eq!(p.read(&p.compose_file), file);
}

/// Without a HEALTHCHECK, a container that exits after 3 s fails the stability period.
fn a_service_without_healthcheck_that_exits_is_rolled_back(flavor: Flavor) {
    let compose = "services:\n  app:\n    image: {image}:1.0.0\n    network_mode: none\n    labels:\n      lookout.test: \"{label}\"\n";
    let mut p = Project::new(
        &format!("engine-nocheck-{flavor:?}"),
        flavor,
        compose,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    let id_old = p.push("1.0.0", NO_CHECK);
    p.up();
    let before = p.read(&p.compose_file);
    p.push("1.1.0", EXITS_AFTER_3S);
    let report = p.update();
    assert_eq!(report["result"], "rolled_back", "{report}");
    assert_eq!(p.read(&p.compose_file), before);
    let (_, image, health) = p.running();
    assert_eq!(
        (image.as_str(), health.as_str()),
        (id_old.as_str(), "running/none")
    );
}

/// `image: …:${TAG}`: the project's `.env` changes, the compose file does not.
fn a_variable_image_updates_the_env_file_only(flavor: Flavor) {
    let compose = "services:\n  app:\n    image: \"{image}:${TAG}\"\n    network_mode: none\n    labels:\n      lookout.test: \"{label}\"\n";
    let mut p = Project::new(
        &format!("engine-env-{flavor:?}"),
        flavor,
        compose,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    let env = p.dir.join(".env");
    std::fs::write(&env, "# the app's version\nTAG=1.0.0\n").unwrap();
    p.push("1.0.0", HEALTHY);
    p.up();
    let compose_before = p.read(&p.compose_file);
    let id_new = p.push("1.1.0", HEALTHY);
    let report = p.update();
    assert_eq!(report["result"], "updated", "{report}");
    assert_eq!(p.read(&env), "# the app's version\nTAG=1.1.0\n");
    assert_eq!(p.read(&p.compose_file), compose_before);
    assert_eq!(p.running().1, id_new);
}

/// `image: …:${TAG:-1.0.0}` with its default in compose.yaml and no `.env` (projects that ship
/// a `.env.example` only).
const COMPOSE_DEFAULT_TAG: &str = "services:\n  app:\n    image: \"{image}:${TAG:-1.0.0}\"\n    network_mode: none\n    labels:\n      lookout.test: \"{label}\"\n";

/// The variable's default is in the compose file and there is no `.env`: the update creates
/// `.env` (mode 0600) with the new tag, and compose runs what it says.
#[test]
fn a_default_in_the_compose_file_and_no_env_file_gets_a_new_env_file_compose_v2() {
    use std::os::unix::fs::PermissionsExt;
    let mut p = Project::new(
        "engine-env-created",
        Flavor::V2,
        COMPOSE_DEFAULT_TAG,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    let env = p.dir.join(".env");
    p.push("1.0.0", HEALTHY);
    p.up();
    assert!(!env.exists());
    let compose_before = p.read(&p.compose_file);
    let id_new = p.push("1.1.0", HEALTHY);
    let report = p.update();
    assert_eq!(report["result"], "updated", "{report}");
    assert_eq!(p.read(&env), "TAG=1.1.0\n");
    let mode = std::fs::metadata(&env).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    assert_eq!(p.read(&p.compose_file), compose_before);
    let (_, image, health) = p.running();
    assert_eq!(
        (image.as_str(), health.as_str()),
        (id_new.as_str(), "running/healthy")
    );
}

/// The same project, whose new image fails its health check: the rollback removes the `.env`
/// lookout created, and the old container is back.
#[test]
fn a_new_env_file_is_removed_when_its_update_rolls_back_compose_v2() {
    let mut p = Project::new(
        "engine-env-created-rollback",
        Flavor::V2,
        COMPOSE_DEFAULT_TAG,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    let env = p.dir.join(".env");
    let id_old = p.push("1.0.0", HEALTHY);
    p.up();
    let compose_before = p.read(&p.compose_file);
    p.push("1.1.0", UNHEALTHY);
    let (code, report) = p.update_with_code();
    assert_eq!(report["result"], "rolled_back", "{report}");
    assert_eq!(code, 3, "{report}");
    assert_eq!(report["stage"], "health", "{report}");
    assert!(!env.exists(), "the .env lookout created is gone");
    assert_eq!(p.read(&p.compose_file), compose_before);
    let (_, image, health) = p.running();
    assert_eq!(
        (image.as_str(), health.as_str()),
        (id_old.as_str(), "running/healthy")
    );
    let failed = &p.state()["services"]["app"]["failed_candidate"];
    assert_eq!(failed["version"]["tag"], "1.1.0", "{failed}");
}

/// With nothing new, a pass pulls nothing and restarts nothing.
fn nothing_new_pulls_nothing_and_restarts_nothing(flavor: Flavor) {
    let mut p = Project::new(
        &format!("engine-idle-{flavor:?}"),
        flavor,
        COMPOSE_TAGGED,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    p.push("1.0.0", HEALTHY);
    p.up();
    let (container, _, _) = p.running();
    let blobs_before = p.registry.count("GET", "/blobs/");
    let report = p.update();
    assert_eq!(report["result"], "up_to_date", "{report}");
    assert_eq!(p.running().0, container, "no restart");
    assert_eq!(
        p.registry.count("GET", "/blobs/"),
        blobs_before,
        "no layer or config was fetched"
    );
    assert_eq!(
        p.registry.count("GET", "/manifests/1.0.0"),
        0,
        "no pull by tag"
    );
}

/// A compose program that writes each call's arguments to `log`, then runs `docker compose`.
fn recording_compose(scratch: &Scratch, log: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let wrapper = scratch.join("recording-compose");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec docker compose \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// An idle `lookout update` runs no compose process at all (not even `version`); one that
/// updates asks compose its version once and then runs it.
#[test]
fn an_idle_update_runs_no_compose_process_and_an_update_detects_compose_once() {
    let mut p = Project::new(
        "engine-lazy-compose",
        Flavor::V2,
        COMPOSE_TAGGED,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    p.push("1.0.0", HEALTHY);
    p.up();
    let log = p.scratch.join("compose-calls.log");
    let wrapper = recording_compose(&p.scratch, &log);
    let config = p.config.clone();
    let update = || {
        let started = std::time::Instant::now();
        let out = lookout()
            .arg("--config")
            .arg(&config)
            .args(["update", "--json"])
            .env("LOOKOUT_COMPOSE_BINARY", &wrapper)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let reports: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "update printed no JSON ({e}):\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (reports[0].clone(), started.elapsed().as_secs_f64())
    };
    let calls = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    let (report, _) = update();
    assert_eq!(report["result"], "up_to_date", "{report}");
    assert_eq!(
        calls(),
        Vec::<String>::new(),
        "an idle pass runs no compose"
    );

    // The Engine API calls of an idle pass, through a counting proxy: the version, one list of
    // the compose containers, one inspection of the service's container and one of its image.
    let docker = CountingDocker::start(&p.scratch);
    let out = lookout()
        .arg("--config")
        .arg(&config)
        .args(["update", "--json"])
        .env("LOOKOUT_COMPOSE_BINARY", &wrapper)
        .env("DOCKER_HOST", docker.host())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up_to_date"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let api = docker.calls();
    eprintln!("Engine API calls of an idle `lookout update` over one service: {api:#?}");
    let count = |prefix: &str| api.iter().filter(|c| c.starts_with(prefix)).count();
    assert_eq!(count("GET /containers/json"), 1, "{api:#?}");
    assert_eq!(
        count("GET /containers/"),
        2,
        "one list, one inspection: {api:#?}"
    );
    assert_eq!(count("GET /images/"), 1, "{api:#?}");
    assert!(api.len() <= 5, "{api:#?}");

    p.push("1.1.0", HEALTHY);
    let (report, wall) = update();
    assert_eq!(report["result"], "updated", "{report}");
    // The update is nearly all of the command's time (pull, compose, the health gate of at
    // least health_stable = 4 s): its reported duration is the wall clock within 10 %.
    let duration = report["duration"].as_f64().unwrap();
    assert!(
        duration <= wall && duration >= 0.9 * wall,
        "duration {duration} s, wall clock {wall} s"
    );
    let check = report["check_duration"].as_f64().unwrap();
    assert!(check > 0.0 && check < duration, "{report}");
    let calls = calls();
    assert_eq!(
        calls.iter().filter(|c| c.as_str() == "version").count(),
        1,
        "{calls:?}"
    );
    assert_eq!(
        calls.first().map(String::as_str),
        Some("version"),
        "{calls:?}"
    );
    assert!(calls.iter().any(|c| c.contains(" up ")), "{calls:?}");
}

/// With `update_concurrency = 3`, three services of three compose projects on one new image
/// are updated, each through its own health gate (`health_stable` 4 s), at the same time: the
/// pass takes about one gate, not three.
#[test]
fn independent_services_are_updated_and_gated_at_once_with_update_concurrency() {
    let mut p = Project::new(
        "engine-concurrency",
        Flavor::V2,
        COMPOSE_TAGGED,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    p.push("1.0.0", HEALTHY);
    // Two more projects of the same image, in folders of their own.
    let mut dirs = vec![p.dir.clone()];
    let mut config = format!(
        "update_concurrency = 3\n{}",
        std::fs::read_to_string(&p.config).unwrap()
    );
    for n in 1..3 {
        let dir = p.scratch.join(&format!("{}x{n}", p.project_name()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("compose.yaml");
        std::fs::write(
            &file,
            COMPOSE_TAGGED
                .replace("{image}", &p.repo)
                .replace("{label}", &p.scratch.id),
        )
        .unwrap();
        config.push_str(&format!(
            "\n[[services]]\nname = \"app{n}\"\ncompose_file = \"{}\"\ncompose_service = \"app\"\nimage = \"{}:1.0.0\"\npolicy = \"semver\"\n",
            file.display(),
            p.repo
        ));
        dirs.push(dir);
    }
    std::fs::write(&p.config, config).unwrap();
    // Dropped last: takes the extra projects down also when the test fails.
    struct Down(Vec<PathBuf>);
    impl Drop for Down {
        fn drop(&mut self) {
            for dir in &self.0 {
                let _ = Command::new("docker")
                    .args(["compose", "-f", "compose.yaml", "down", "--timeout", "1"])
                    .current_dir(dir)
                    .output();
            }
        }
    }
    let _down = Down(dirs.clone());
    for dir in &dirs {
        run(Command::new("docker")
            .args(["compose", "-f", "compose.yaml", "up", "-d"])
            .current_dir(dir));
    }

    p.push("1.1.0", HEALTHY);
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = p.lookout(&["update", "--json"]);
    let wall = started.elapsed().as_secs_f64();
    let reports: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}), exit {code}:\n{stdout}\n{stderr}"));
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 3, "{reports:?}");
    let mut own = 0.0;
    for r in reports {
        assert_eq!(r["result"], "updated", "{r}\n{stderr}");
        let d = r["duration"].as_f64().unwrap();
        // Pull, compose up and the health gate (health_stable counts from the container's
        // start, so it is not a floor here).
        assert!(d >= 1.0, "{r}");
        own += d;
    }
    eprintln!(
        "update_concurrency = 3: wall clock {wall:.1} s, the three updates' own times {own:.1} s in all"
    );
    // One after another, the wall clock would be at least the sum of the three updates.
    assert!(
        wall < own / 1.8,
        "the updates overlapped: wall clock {wall:.1} s, their own times {own:.1} s in all"
    );
}

/// `lookout rollback` returns to the image the service ran before its last update.
#[test]
fn rollback_returns_to_the_previous_image() {
    let mut p = Project::new(
        "engine-manual-rollback",
        Flavor::V2,
        COMPOSE_TAGGED,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    let id_old = p.push("1.0.0", HEALTHY);
    p.up();
    let before = p.read(&p.compose_file);
    p.push("1.1.0", HEALTHY);
    assert_eq!(p.update()["result"], "updated");
    let (code, stdout, stderr) = p.lookout(&["rollback", "app"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(p.read(&p.compose_file), before);
    let (_, image, health) = p.running();
    assert_eq!(
        (image.as_str(), health.as_str()),
        (id_old.as_str(), "running/healthy")
    );
}

#[test]
fn latest_digest_update_and_rollback_of_a_crash_loop_compose_v2() {
    latest_digest_update_and_rollback_of_a_crash_loop(Flavor::V2);
}

#[test]
fn latest_digest_update_and_rollback_of_a_crash_loop_compose_v1() {
    latest_digest_update_and_rollback_of_a_crash_loop(Flavor::V1);
}

#[test]
fn a_service_without_healthcheck_that_exits_is_rolled_back_compose_v2() {
    a_service_without_healthcheck_that_exits_is_rolled_back(Flavor::V2);
}

#[test]
fn a_service_without_healthcheck_that_exits_is_rolled_back_compose_v1() {
    a_service_without_healthcheck_that_exits_is_rolled_back(Flavor::V1);
}

#[test]
fn a_variable_image_updates_the_env_file_only_compose_v2() {
    a_variable_image_updates_the_env_file_only(Flavor::V2);
}

#[test]
fn a_variable_image_updates_the_env_file_only_compose_v1() {
    a_variable_image_updates_the_env_file_only(Flavor::V1);
}

#[test]
fn nothing_new_pulls_nothing_and_restarts_nothing_compose_v2() {
    nothing_new_pulls_nothing_and_restarts_nothing(Flavor::V2);
}

#[test]
fn nothing_new_pulls_nothing_and_restarts_nothing_compose_v1() {
    nothing_new_pulls_nothing_and_restarts_nothing(Flavor::V1);
}

fn image_exists(id: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", id])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// With `cleanup = true`, a successful update removes the image the service left two updates
/// ago; the one it just left stays, under the rollback tag, until the next successful update.
#[test]
fn cleanup_keeps_the_rollback_image_and_removes_the_one_before() {
    let mut p = Project::new(
        "engine-cleanup",
        Flavor::V2,
        COMPOSE_TAGGED,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\ncleanup = true\n",
    );
    let id_100 = p.push("1.0.0", HEALTHY);
    p.up();
    let id_110 = p.push("1.1.0", HEALTHY);
    assert_eq!(p.update()["result"], "updated");
    assert!(
        image_exists(&id_100),
        "after one update, the image left is kept for rollback"
    );
    p.push("1.2.0", HEALTHY);
    assert_eq!(p.update()["result"], "updated");
    assert!(
        !image_exists(&id_100),
        "the image left two updates ago is removed"
    );
    assert!(image_exists(&id_110), "the image just left stays");
    let kept = run(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("{}:lookout-rollback-app", p.repo),
    ]));
    assert_eq!(
        kept.trim(),
        id_110,
        "the rollback tag holds the image just left"
    );
}
