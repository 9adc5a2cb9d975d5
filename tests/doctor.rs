//! `lookout doctor` on the real engine: a healthy setup passes every check, then each broken
//! part is named with its fix — a wrong registry password, a missing compose file, a service the
//! file does not have, a stopped container, a state folder that cannot exist, an unreachable
//! Docker — and a running lookout's lock is reported without being taken.

use std::path::Path;

use crate::engine::{Flavor, NO_CHECK, Project};
use crate::util::{RegistryAuth, Scratch, lookout};

const COMPOSE: &str = "services:\n  app:\n    image: '{image}:1.0.0'\n    network_mode: none\n    restart: \"no\"\n    labels:\n      lookout.test: \"{label}\"\n  sidecar:\n    image: '{image}:1.0.0'\n    network_mode: none\n    labels:\n      lookout.test: \"{label}\"\n";
const USER: &str = "doctor";
const PASSWORD: &str = "correct-horse-battery";

/// What one configuration says; each broken case changes one field.
#[derive(Clone)]
struct Setup {
    state_file: String,
    compose_file: String,
    compose_service: String,
    password: String,
}

fn write_config(p: &Project, s: &Setup) {
    std::fs::write(
        &p.config,
        format!(
            "state_file = \"{}\"\ncompose_timeout = \"60s\"\n\n[[services]]\nname = \"app\"\nimage = \"{}:1.0.0\"\n\
             compose_file = \"{}\"\ncompose_service = \"{}\"\nregistry_config = {{ username = \"{USER}\", password = \"{}\" }}\n",
            s.state_file, p.repo, s.compose_file, s.compose_service, s.password
        ),
    )
    .unwrap();
}

/// Runs `lookout doctor` with `setup` and extra environment; returns (exit code, stdout).
fn doctor(p: &Project, setup: &Setup, env: &[(&str, &str)]) -> (i32, String) {
    write_config(p, setup);
    let out = lookout()
        .arg("--config")
        .arg(&p.config)
        .arg("doctor")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "lookout doctor: exit {:?}\n{stdout}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains(PASSWORD) && !stdout.contains("wrong-password"),
        "a password was printed:\n{stdout}"
    );
    (out.status.code().unwrap_or(-1), stdout)
}

/// The report line of check `name` (the text after the status and before nothing else).
fn line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| {
            l.get(6..)
                .is_some_and(|rest| rest.starts_with(&format!("{name}: ")))
        })
        .unwrap_or_else(|| panic!("no line for {name:?} in:\n{stdout}"))
}

fn assert_status(stdout: &str, name: &str, status: &str, contains: &[&str]) {
    let l = line(stdout, name);
    assert!(
        l.starts_with(&format!("{status}  ")),
        "{name} is not {status}: {l}"
    );
    for c in contains {
        assert!(l.contains(c), "{name}: want {c:?} in: {l}");
    }
}

#[test]
fn doctor_passes_a_healthy_setup_and_names_each_broken_part_with_its_fix() {
    let mut p = Project::with_auth(
        "doctor",
        Flavor::V2,
        COMPOSE,
        "",
        RegistryAuth::Basic {
            user: USER.into(),
            password: PASSWORD.into(),
        },
    );
    p.push("1.0.0", NO_CHECK);
    p.up();
    let registry = format!("registry for app ({})", p.registry.host);
    let good = Setup {
        state_file: p.scratch.join("state/state.json").display().to_string(),
        compose_file: p.compose_file.display().to_string(),
        compose_service: "app".into(),
        password: PASSWORD.into(),
    };

    // Healthy: every check passes, and the registry saw one manifest HEAD (after the 401
    // challenge) and no download.
    let heads_before = p.registry.count("HEAD", "/manifests/");
    let gets_before = p.registry.count("GET", "/manifests/") + p.registry.count("GET", "/blobs/");
    let (code, out) = doctor(&p, &good, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .filter(|l| !l.contains(" check(s): "))
            .all(|l| l.starts_with("PASS  ")),
        "every check passes:\n{out}"
    );
    assert_status(&out, "docker", "PASS", &["reachable", ", API 1."]);
    assert_status(&out, "compose", "PASS", &["(v2"]);
    assert_status(
        &out,
        "compose file for app",
        "PASS",
        &["service \"app\", image "],
    );
    assert_status(&out, "container of app", "PASS", &[" running, ", ":1.0.0"]);
    assert_status(&out, &registry, "PASS", &["reachable as doctor", "sha256:"]);
    assert_status(
        &out,
        "state",
        "PASS",
        &["does not exist yet; lookout creates it"],
    );
    assert_status(&out, "timezone", "PASS", &[]);
    assert!(
        out.trim_end().ends_with("0 failed"),
        "summary line last:\n{out}"
    );
    let heads = p.registry.count("HEAD", "/manifests/") - heads_before;
    assert!((1..=2).contains(&heads), "{heads} manifest HEADs");
    assert_eq!(
        p.registry.count("GET", "/manifests/") + p.registry.count("GET", "/blobs/"),
        gets_before,
        "doctor downloads nothing"
    );
    assert!(
        !Path::new(&good.state_file).parent().unwrap().exists(),
        "doctor creates no state folder"
    );

    // A wrong registry password.
    let wrong = Setup {
        password: "wrong-password".into(),
        ..good.clone()
    };
    let (code, out) = doctor(&p, &wrong, &[]);
    assert_eq!(code, 1, "{out}");
    assert_status(
        &out,
        &registry,
        "FAIL",
        &[
            "authentication failed",
            "— fix: check registry_config.username/password, or run `docker login`",
        ],
    );
    assert_status(&out, "docker", "PASS", &[]);

    // The compose file is missing.
    let missing = Setup {
        compose_file: p.scratch.join("gone/compose.yaml").display().to_string(),
        ..good.clone()
    };
    let (code, out) = doctor(&p, &missing, &[]);
    assert_eq!(code, 1, "{out}");
    assert_status(
        &out,
        "compose file for app",
        "FAIL",
        &[
            "gone/compose.yaml",
            "— fix: set compose_file of service \"app\" to the compose file's path",
        ],
    );
    assert_status(
        &out,
        "container of app",
        "SKIP",
        &["the compose file check failed"],
    );

    // The compose file has no such service.
    let unknown = Setup {
        compose_service: "web".into(),
        ..good.clone()
    };
    let (code, out) = doctor(&p, &unknown, &[]);
    assert_eq!(code, 1, "{out}");
    assert_status(
        &out,
        "compose file for app",
        "FAIL",
        &[
            "no service \"web\"",
            "— fix: set compose_service of service \"app\" to one of: app, sidecar",
        ],
    );
    assert_status(
        &out,
        "container of app",
        "SKIP",
        &["the compose file check failed"],
    );

    // The state folder cannot be created: its parent is a regular file.
    let blocker = p.scratch.write("not-a-folder", "x");
    let no_state = Setup {
        state_file: blocker.join("state/state.json").display().to_string(),
        ..good.clone()
    };
    let (code, out) = doctor(&p, &no_state, &[]);
    assert_eq!(code, 1, "{out}");
    assert_status(
        &out,
        "state",
        "FAIL",
        &[
            "is a file, not a folder",
            "— fix: make ",
            "point state_file at a writable path",
        ],
    );

    // A running lookout holds the state lock: reported by pid, not taken.
    std::fs::create_dir_all(Path::new(&good.state_file).parent().unwrap()).unwrap();
    let lock = lookout::state::StateLock::acquire(Path::new(&format!("{}.lock", good.state_file)))
        .unwrap();
    let (code, out) = doctor(&p, &good, &[]);
    assert_eq!(code, 0, "{out}");
    assert_status(
        &out,
        "state",
        "PASS",
        &[
            "writable",
            &format!("in use by a running lookout (pid {}", std::process::id()),
        ],
    );
    drop(lock);

    // Docker cannot be reached.
    let (code, out) = doctor(&p, &good, &[("DOCKER_HOST", "unix:///nonexistent.sock")]);
    assert_eq!(code, 1, "{out}");
    assert_status(
        &out,
        "docker",
        "FAIL",
        &[
            "/nonexistent.sock",
            "— fix: is dockerd running",
            "DOCKER_HOST right (now unix:///nonexistent.sock)",
        ],
    );
    assert_status(
        &out,
        "container of app",
        "SKIP",
        &["Docker is not reachable"],
    );

    // The container is stopped.
    p.compose(&["stop", "--timeout", "1", "app"]);
    let (code, out) = doctor(&p, &good, &[]);
    assert_eq!(code, 1, "{out}");
    assert_status(
        &out,
        "container of app",
        "FAIL",
        &[
            "exited",
            "(not running)",
            "— fix: see why with `docker logs ",
            "up -d app",
        ],
    );

    // Removed altogether: found by compose's labels, so none is found.
    p.compose(&["rm", "-f", "app"]);
    let (code, out) = doctor(&p, &good, &[]);
    assert_eq!(code, 1, "{out}");
    assert_status(
        &out,
        "container of app",
        "FAIL",
        &[
            "no container of compose service \"app\"",
            "— fix: start it with `docker compose -f ",
        ],
    );
}

#[test]
fn doctor_stops_at_a_configuration_that_does_not_load() {
    let scratch = Scratch::new("doctor-bad-config");
    let config = scratch.write(
        "lookout.toml",
        "check_interval = \"often\"\n[[services]]\nname = \"web\"\nimage = \"nginx:1\"\ncompose_file = \"/c.yaml\"\nregistry_type = \"quay\"\n",
    );
    let out = lookout()
        .arg("--config")
        .arg(&config)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{v}");
    assert_eq!(
        (checks[0]["name"].as_str(), checks[0]["status"].as_str()),
        (Some("config"), Some("fail"))
    );
    let detail = checks[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("check_interval") && detail.contains("registry_type"),
        "every problem is listed: {detail}"
    );
    assert!(
        checks[0]["fix"]
            .as_str()
            .unwrap()
            .contains("lookout config validate"),
        "{v}"
    );
    assert_eq!(v["ok"], false);

    let missing = scratch.join("nope.toml");
    let out = lookout()
        .arg("--config")
        .arg(&missing)
        .arg("doctor")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("FAIL  config: cannot read configuration file")
            && text.contains("— fix: create "),
        "{text}"
    );
}

#[test]
fn doctor_finds_a_compose_v1_project_and_an_anonymous_registry() {
    let mut p = Project::new(
        "doctor-v1",
        Flavor::V1,
        COMPOSE,
        "image = \"{image}:1.0.0\"\n",
    );
    p.push("1.0.0", NO_CHECK);
    p.up();
    let (code, out, stderr) = p.lookout(&["doctor"]);
    eprintln!("{out}{stderr}");
    assert_eq!(code, 0, "warnings do not fail the run:\n{out}");
    assert_status(
        &out,
        "compose",
        "WARN",
        &[
            "/usr/bin/docker-compose 1.",
            "(v1)",
            "— fix: compose v1 is end of life",
        ],
    );
    assert_status(&out, "container of app", "PASS", &[" running, "]);
    assert_status(
        &out,
        &format!("registry for app ({})", p.registry.host),
        "PASS",
        &["reachable anonymously"],
    );
}

/// The `api` line of `lookout doctor --json` for a configuration with `top` at its top level.
fn api_check(scratch: &Scratch, top: &str) -> (i32, serde_json::Value) {
    let config = scratch.write(
        "lookout.toml",
        format!(
            "{top}\n[[services]]\nname = \"web\"\nimage = \"nginx:1\"\ncompose_file = \"{}\"\n",
            scratch.join("compose.yaml").display()
        ),
    );
    let out = lookout()
        .arg("--config")
        .arg(&config)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let api = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "api")
        .unwrap_or_else(|| panic!("no api check in {v}"))
        .clone();
    (out.status.code().unwrap_or(-1), api)
}

#[test]
fn doctor_fails_an_api_open_to_the_network_without_a_token() {
    let scratch = Scratch::new("doctor-api");
    // Without a token and without listen_without_token the configuration itself is refused, and
    // doctor says so as its only check.
    let config = scratch.write(
        "refused.toml",
        "listen = \"0.0.0.0:9100\"\nstate_file = \"/tmp/lookout-doctor-api-unused/state.json\"\n",
    );
    let out = lookout()
        .arg("--config")
        .arg(&config)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{v}");
    let detail = checks[0]["detail"].as_str().unwrap();
    assert!(
        checks[0]["status"] == "fail"
            && detail.contains("0.0.0.0:9100")
            && detail.contains("api_token")
            && detail.contains("listen_without_token"),
        "{v}"
    );

    // Allowed knowingly: a warning that says what is open and how to close it.
    let (code, api) = api_check(
        &scratch,
        "listen = \"0.0.0.0:9100\"\nlisten_without_token = true",
    );
    assert_ne!(code, 0, "{api}");
    assert_eq!(api["status"], "warn", "{api}");
    let detail = api["detail"].as_str().unwrap();
    assert!(
        detail.contains("0.0.0.0:9100")
            && detail.contains("no api_token is set")
            && detail.contains("/api/v1/services")
            && detail.contains("/metrics")
            && detail.contains("listen_without_token = true"),
        "{api}"
    );
    let fix = api["fix"].as_str().unwrap();
    assert!(fix.starts_with("set api_token"), "{api}");

    let (_, api) = api_check(
        &scratch,
        "listen = \"0.0.0.0:9100\"\napi_token = \"0123456789abcdef0123\"",
    );
    assert_eq!(api["status"], "pass", "{api}");
    assert!(
        !api.to_string().contains("0123456789abcdef0123"),
        "the token was printed: {api}"
    );

    let (_, api) = api_check(&scratch, "");
    assert_eq!(
        (api["status"].as_str(), api["detail"].as_str()),
        (
            Some("pass"),
            Some("listening on 127.0.0.1:9100 (loopback only)")
        )
    );
}
