//! The shipping pieces under `deploy/` and `config/examples/`: install and uninstall scripts
//! into a temporary root, the systemd unit, the container image and compose file, the example
//! configurations, the Grafana dashboard and the Prometheus alerts.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{Scratch, docker::remove_labelled, lookout, run};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

const BINARY: &str = env!("CARGO_BIN_EXE_lookout");

/// Runs a deploy script with `DESTDIR=root`; returns its output, panicking when it fails.
fn script(name: &str, root: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(repo("deploy").join(name));
    cmd.args(args).env("DESTDIR", root);
    run(&mut cmd)
}

fn install(root: &Path, args: &[&str]) -> String {
    let mut all = vec!["--binary", BINARY];
    all.extend_from_slice(args);
    script("install.sh", root, &all)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every path below `root` with its mode and its content (or symlink target).
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, (mode, target.into_os_string().into_encoded_bytes()));
            } else if meta.is_dir() {
                out.insert(rel, (mode, Vec::new()));
                walk(root, &path, out);
            } else {
                out.insert(rel, (mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn install_into_destdir_creates_files_with_their_modes_and_enables_the_unit() {
    let s = Scratch::new("install");
    let root = s.join("root");
    let out = install(&root, &[]);

    let bin = root.join("usr/local/bin/lookout");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(BINARY).unwrap());
    let version = run(Command::new(&bin).arg("--version"));
    assert!(version.starts_with("lookout "), "{version}");

    let unit_path = root.join("etc/systemd/system/lookout.service");
    assert_eq!(mode(&unit_path), 0o644);
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/lookout run --config /etc/lookout/lookout.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=lookout",
        "User=lookout",
        "EnvironmentFile=-/etc/lookout/lookout.env",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line:?}");
    }
    for key in ["WatchdogSec=", "ReadWritePaths="] {
        assert!(unit.lines().any(|l| l.starts_with(key)), "unit lacks {key}");
    }
    let wants = root.join("etc/systemd/system/multi-user.target.wants/lookout.service");
    assert_eq!(
        std::fs::read_link(&wants).unwrap(),
        Path::new("/etc/systemd/system/lookout.service")
    );

    assert_eq!(mode(&root.join("etc/lookout")), 0o750);
    assert_eq!(mode(&root.join("etc/lookout/lookout.toml")), 0o640);
    assert_eq!(mode(&root.join("etc/lookout/lookout.env")), 0o600);
    assert_eq!(mode(&root.join("var/lib/lookout")), 0o750);
    assert_eq!(
        std::fs::read(root.join("etc/lookout/lookout.toml")).unwrap(),
        std::fs::read(repo("config/lookout.toml")).unwrap()
    );
    // The installed default configuration is valid as it is, with the installed env file.
    let toml = root.join("etc/lookout/lookout.toml");
    run(lookout()
        .env_clear()
        .args(["config", "validate"])
        .arg(&toml));

    // With DESTDIR set the steps that change the running system are printed, not run.
    for step in [
        "not running: useradd --system",
        "not running: usermod --append --groups docker lookout",
        "not running: chown lookout:lookout /var/lib/lookout",
        "not running: systemctl daemon-reload",
    ] {
        assert!(out.contains(step), "output lacks {step:?}:\n{out}");
    }
}

#[test]
fn install_again_changes_nothing_and_keeps_edited_configuration() {
    let s = Scratch::new("reinstall");
    let root = s.join("root");
    install(&root, &[]);
    let config = root.join("etc/lookout/lookout.toml");
    let env = root.join("etc/lookout/lookout.env");
    std::fs::write(
        &config,
        "check_interval = \"5m\"\n# edited by the operator\n",
    )
    .unwrap();
    std::fs::write(&env, "LOOKOUT_API_TOKEN=0123456789abcdef0123\n").unwrap();
    let before = tree(&root);

    let out = install(&root, &[]);
    assert_eq!(tree(&root), before, "a second install changed files");
    assert!(out.contains(&format!("kept {}", config.display())), "{out}");
    assert!(out.contains(&format!("kept {}", env.display())), "{out}");
    assert!(
        out.contains(&format!(
            "unchanged {}",
            root.join("usr/local/bin/lookout").display()
        )),
        "{out}"
    );

    // A mode changed by hand is put back; the content of configuration is still kept.
    std::fs::set_permissions(
        root.join("var/lib/lookout"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    install(&root, &[]);
    assert_eq!(mode(&root.join("var/lib/lookout")), 0o750);
    assert_eq!(tree(&root), before);
}

#[test]
fn install_with_a_prefix_points_the_unit_at_that_binary() {
    let s = Scratch::new("install-prefix");
    let root = s.join("root");
    install(&root, &["--prefix", "/opt/lookout"]);
    assert!(root.join("opt/lookout/bin/lookout").exists());
    assert!(!root.join("usr/local/bin/lookout").exists());
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/lookout.service")).unwrap();
    assert!(
        unit.contains("\nExecStart=/opt/lookout/bin/lookout run --config"),
        "{unit}"
    );
    script("uninstall.sh", &root, &["--prefix", "/opt/lookout"]);
    assert!(!root.join("opt/lookout/bin/lookout").exists());
}

#[test]
fn uninstall_keeps_configuration_and_state_unless_purged() {
    let s = Scratch::new("uninstall");
    let root = s.join("root");
    install(&root, &[]);
    let state = root.join("var/lib/lookout/state.json");
    std::fs::write(&state, "{\"format_version\": 1}\n").unwrap();

    let out = script("uninstall.sh", &root, &[]);
    assert!(out.contains("kept configuration"), "{out}");
    for gone in [
        "usr/local/bin/lookout",
        "etc/systemd/system/lookout.service",
        "etc/systemd/system/multi-user.target.wants/lookout.service",
    ] {
        assert!(
            std::fs::symlink_metadata(root.join(gone)).is_err(),
            "{gone} is still there"
        );
    }
    assert!(root.join("etc/lookout/lookout.toml").exists());
    assert!(root.join("etc/lookout/lookout.env").exists());
    assert!(state.exists());

    // Running it again is fine, and so is installing again over the kept files.
    script("uninstall.sh", &root, &[]);
    install(&root, &[]);
    assert!(state.exists());

    let out = script("uninstall.sh", &root, &["--purge"]);
    assert!(!root.join("etc/lookout").exists());
    assert!(!root.join("var/lib/lookout").exists());
    assert!(!root.join("usr/local/bin/lookout").exists());
    assert!(out.contains("not running: userdel lookout"), "{out}");
    script("uninstall.sh", &root, &["--purge"]);
}

#[test]
fn dry_run_changes_nothing() {
    let s = Scratch::new("dry-run");
    let root = s.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let out = install(&root, &["--dry-run"]);
    assert!(tree(&root).is_empty(), "dry run wrote {:?}", tree(&root));
    assert!(
        out.contains("would run: install -D -m 0755"),
        "dry run did not say what it would do:\n{out}"
    );
    assert!(out.contains("dry run: nothing was changed"), "{out}");

    install(&root, &[]);
    std::fs::set_permissions(
        root.join("etc/lookout"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let before = tree(&root);
    let out = install(&root, &["--dry-run"]);
    assert!(out.contains("would run: chmod 0750"), "{out}");
    script("uninstall.sh", &root, &["--purge", "--dry-run"]);
    assert_eq!(tree(&root), before, "a dry run changed files");
}

#[test]
fn install_refuses_a_missing_binary() {
    let s = Scratch::new("install-missing");
    let out = Command::new(repo("deploy/install.sh"))
        .args(["--binary", "/nonexistent/lookout"])
        .env("DESTDIR", s.join("root"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/lookout"),
        "{out:?}"
    );
    assert!(!s.join("root").exists());
}

#[test]
fn shell_scripts_pass_shellcheck() {
    Command::new("shellcheck")
        .arg("--version")
        .output()
        .expect("shellcheck is not installed: tests/run installs Debian's shellcheck package");
    let scripts: Vec<PathBuf> = ["install.sh", "uninstall.sh", "build-image.sh"]
        .iter()
        .map(|s| repo("deploy").join(s))
        .collect();
    run(Command::new("shellcheck").args(&scripts));
}

/// Lines of `systemd-analyze verify` output that concern the unit.
fn unit_problems(unit: &Path) -> (Output, Vec<String>) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("systemd-analyze is missing: tests/run installs Debian's systemd package");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems = text
        .lines()
        .filter(|l| l.contains("lookout"))
        .map(str::to_owned)
        .collect();
    (out, problems)
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let s = Scratch::new("unit-verify");
    let root = s.join("root");
    install(&root, &[]);
    // verify checks that ExecStart exists: point it at the binary under test.
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/lookout.service"))
        .unwrap()
        .replace("/usr/local/bin/lookout", BINARY);
    let path = s.write("verify/lookout.service", &unit);
    let (out, problems) = unit_problems(&path);
    assert!(
        out.status.success() && problems.is_empty(),
        "systemd-analyze verify: {out:?}\n{problems:#?}"
    );

    // The same check notices a unit systemd would complain about.
    let bad = s.write(
        "verify-bad/lookout.service",
        unit.replace("Type=notify", "Type=notify\nWatchdogSecs=1min"),
    );
    let (_, problems) = unit_problems(&bad);
    assert!(
        problems.iter().any(|p| p.contains("WatchdogSecs")),
        "{problems:?}"
    );
}

// ---- configuration examples ----------------------------------------------------------------

/// The `${VAR}` names a configuration file refers to.
fn referenced_vars(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}").unwrap();
    re.captures_iter(text).map(|c| c[1].to_owned()).collect()
}

/// `KEY=VALUE` lines of an env file (comments and blank lines skipped).
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn validate(file: &Path, env: &[(String, String)]) -> String {
    run(lookout()
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["config", "validate"])
        .arg(file))
}

#[test]
fn every_config_example_validates() {
    let dir = repo("config/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml" || e == "json"))
        .collect();
    files.push(dir.join("docker-auto-updater/updater_config.json"));
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
        .collect();
    for expected in [
        "docker-hub-semver.toml",
        "ecr-staging-glob.toml",
        "artifact-registry.toml",
        "digest-latest.toml",
        "slack-webhook.toml",
        "maintenance-windows.toml",
        "notify-channels.toml",
        "docker-auto-updater/updater_config.json",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} is missing");
    }
    for file in &files {
        // Without the environment: valid, secrets left out with a warning.
        let out = validate(file, &[]);
        assert!(out.contains(": valid ("), "{}: {out}", file.display());
        // With every referenced variable set: valid and without warnings.
        let text = std::fs::read_to_string(file).unwrap();
        let env: Vec<(String, String)> = referenced_vars(&text)
            .into_iter()
            .map(|name| {
                let value = if name.ends_with("URL") {
                    "https://hooks.example.com/services/T000/B000/XXXX".to_owned()
                } else {
                    "0123456789abcdef0123456789abcdef".to_owned()
                };
                (name, value)
            })
            .collect();
        let out = validate(file, &env);
        assert!(
            out.contains(": valid (") && !out.contains("warning"),
            "{} with {env:?}: {out}",
            file.display()
        );
    }
}

#[test]
fn the_seed_files_are_kept_as_they_are_and_validate_together() {
    let dir = repo("config/examples/docker-auto-updater");
    for (example, fixture) in [
        ("updater_config.json", "updater_config.json"),
        (".env", "seed.env"),
    ] {
        assert_eq!(
            std::fs::read(dir.join(example)).unwrap(),
            std::fs::read(crate::util::fixture(&format!("config/{fixture}"))).unwrap(),
            "{example} differs from the Docker Auto-Updater's"
        );
    }
    // The .env's CHECK_INTERVAL=3600 wins over the file's 30.
    let out = validate(
        &dir.join("updater_config.json"),
        &env_file(&dir.join(".env")),
    );
    assert!(
        out.contains("valid (3 service(s), 3 enabled; check every 3600s)"),
        "{out}"
    );
}

#[test]
fn the_env_template_sets_nothing_by_default() {
    let template = repo("deploy/lookout.env");
    assert!(
        env_file(&template).is_empty(),
        "lookout.env sets values by default"
    );
    let out = validate(&repo("config/lookout.toml"), &env_file(&template));
    assert!(out.contains(": valid ("), "{out}");
}

// ---- compose file and container image --------------------------------------------------------

/// Fails the test, naming what is missing, when the Docker engine does not answer.
fn require_docker() {
    let why = match Command::new("docker").arg("info").output() {
        Ok(out) if out.status.success() => return,
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        Err(e) => format!("cannot run docker: {e}"),
    };
    panic!(
        "the Docker engine is not reachable (`docker info`: {why}); this test builds and runs \
         lookout's image, so start dockerd (tests/run checks it before running)"
    );
}

#[test]
fn compose_yaml_mounts_socket_state_and_compose_folders_at_the_same_path() {
    let out = run(Command::new("docker")
        .args(["compose", "-f"])
        .arg(repo("deploy/compose.yaml"))
        .args(["config", "--format", "json"])
        .env("LOOKOUT_COMPOSE_ROOT", "/srv/compose"));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let svc = &doc["services"]["lookout"];
    let volumes = svc["volumes"].as_array().unwrap();
    let mount = |target: &str| {
        volumes
            .iter()
            .find(|v| v["target"] == target)
            .unwrap_or_else(|| panic!("nothing mounted at {target}: {volumes:?}"))
    };
    assert_eq!(
        mount("/var/run/docker.sock")["source"],
        "/var/run/docker.sock"
    );
    assert_eq!(mount("/srv/compose")["source"], "/srv/compose");
    assert_eq!(mount("/var/lib/lookout")["type"], "volume");
    assert_eq!(mount("/etc/lookout/lookout.toml")["read_only"], true);
    let ports = svc["ports"].as_array().unwrap();
    assert!(
        ports.iter().all(|p| p["host_ip"] == "127.0.0.1"),
        "the API is published beyond loopback: {ports:?}"
    );
}

/// Removes everything labelled with the scratch id, also when the test fails.
struct Labelled<'a>(&'a str);

impl Drop for Labelled<'_> {
    fn drop(&mut self) {
        remove_labelled(self.0);
    }
}

#[test]
fn container_image_builds_from_scratch_and_starts() {
    require_docker();
    let s = Scratch::new("image");
    let _cleanup = Labelled(&s.id);
    let tag = format!("lookout-test-{}:latest", s.id);
    let context = s.join("context");
    let out = Command::new(repo("deploy/build-image.sh"))
        .args(["--binary", BINARY, "--tag", &tag, "--context"])
        .arg(&context)
        .args(["--label", &format!("lookout.test={}", s.id)])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "build-image.sh failed:\n{log}");

    let version = run(Command::new("docker").args(["run", "--rm", &tag, "--version"]));
    let expected = run(Command::new(BINARY).arg("--version"));
    assert_eq!(version, expected);

    // The image carries the libraries the binary needs, and nothing that makes it a full system.
    let rootfs = context.join("rootfs");
    assert!(rootfs.join("usr/local/bin/lookout").exists());
    assert!(!rootfs.join("bin/sh").exists(), "the image has a shell");
    let no_shell = Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "/bin/sh", &tag, "-c", "true"])
        .output()
        .unwrap();
    assert!(!no_shell.status.success(), "the image has a shell");

    // The image carries the host's Docker CLI and compose plugin, and they run in it.
    assert!(
        rootfs
            .join("usr/libexec/docker/cli-plugins/docker-compose")
            .exists(),
        "build-image.sh found no compose v2 plugin to copy into the image (tests/run installs \
         it as ~/.docker/cli-plugins/docker-compose):\n{log}"
    );
    let compose = run(Command::new("docker").args([
        "run",
        "--rm",
        "--entrypoint",
        "/usr/local/bin/docker",
        &tag,
        "compose",
        "version",
    ]));
    assert!(compose.contains("Docker Compose version"), "{compose}");
    let labels = run(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &tag,
    ]));
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["lookout.test"], s.id.as_str());
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
}

// ---- dashboard and alerts ----------------------------------------------------------------------

/// The metrics lookout exports (the telemetry module's names).
const METRICS: &[&str] = &[
    "lookout_updates_total",
    "lookout_rollbacks_total",
    "lookout_update_failures_total",
    "lookout_state_restores_total",
    "lookout_checks_total",
    "lookout_checks_skipped_total",
    "lookout_registry_requests_total",
    "lookout_registry_ratelimit_remaining",
    "lookout_update_available",
    "lookout_last_check_timestamp_seconds",
    "lookout_webhook_deliveries_total",
    "lookout_notify_deliveries_total",
    "lookout_build_info",
];
const HISTOGRAMS: &[&str] = &[
    "lookout_check_duration_seconds",
    "lookout_update_duration_seconds",
];

fn known_metric(name: &str) -> bool {
    METRICS.contains(&name)
        || HISTOGRAMS.iter().any(|h| {
            name.strip_prefix(h)
                .is_some_and(|rest| ["_bucket", "_sum", "_count"].contains(&rest))
        })
}

const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "avg",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp_max",
    "clamp_min",
    "count",
    "count_over_time",
    "delta",
    "deriv",
    "floor",
    "group",
    "histogram_quantile",
    "increase",
    "irate",
    "label_replace",
    "last_over_time",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "quantile",
    "rate",
    "resets",
    "round",
    "scalar",
    "sort",
    "sort_desc",
    "sum",
    "sum_over_time",
    "time",
    "timestamp",
    "topk",
    "bottomk",
    "vector",
];
const AGGREGATIONS: &[&str] = &[
    "avg", "bottomk", "count", "group", "max", "min", "quantile", "sum", "topk",
];
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset"];
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects, or what is wrong with it (an unknown function,
/// unbalanced brackets).
fn promql_metrics(expr: &str) -> Result<Vec<String>, String> {
    // Drop string literals, label matchers and range selectors, keeping the brackets' balance.
    let mut plain = String::new();
    let mut stack = Vec::new();
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let mut closed = false;
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(format!("unclosed string in {expr:?}"));
                }
            }
            '(' | '{' | '[' => {
                stack.push(c);
                if c == '(' {
                    plain.push('(');
                }
            }
            ')' | '}' | ']' => {
                let open = stack.pop();
                let want = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                if open != Some(want) {
                    return Err(format!("unbalanced {c:?} in {expr:?}"));
                }
                if c == ')' {
                    plain.push(')');
                } else {
                    plain.push(' ');
                }
            }
            _ if stack.last().is_some_and(|&o| o == '{' || o == '[') => {}
            _ => plain.push(c),
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed {stack:?} in {expr:?}"));
    }
    let tokens =
        regex::Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*|[0-9][0-9A-Za-z.]*|\(|\)|\S").unwrap();
    let tokens: Vec<&str> = tokens.find_iter(&plain).map(|m| m.as_str()).collect();
    let mut metrics = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        let ident = t.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':');
        let next = tokens.get(i + 1).copied();
        // `sum by (a) (…)`: an aggregation with its grouping first is a call too.
        let call = next == Some("(")
            || (AGGREGATIONS.contains(&t) && matches!(next, Some("by" | "without")));
        if !ident || KEYWORDS.contains(&t) {
        } else if LABEL_LIST_KEYWORDS.contains(&t) {
            if call {
                // Skip the label list `(a, b)`.
                while i < tokens.len() && tokens[i] != ")" {
                    i += 1;
                }
            }
        } else if call {
            if !FUNCTIONS.contains(&t) {
                return Err(format!("unknown function {t:?} in {expr:?}"));
            }
        } else {
            metrics.push(t.to_owned());
        }
        i += 1;
    }
    Ok(metrics)
}

/// Checks every expression: it parses as far as [`promql_metrics`] looks and names only
/// lookout's metrics. Returns all metric names used.
fn check_exprs<'a>(exprs: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut used = Vec::new();
    for expr in exprs {
        let metrics = promql_metrics(expr).unwrap_or_else(|e| panic!("{e}"));
        assert!(!metrics.is_empty(), "{expr:?} selects no metric");
        for m in metrics {
            assert!(
                known_metric(&m),
                "{expr:?} uses {m:?}, which lookout does not export"
            );
            used.push(m);
        }
    }
    used
}

#[test]
fn the_promql_check_catches_unknown_metrics_and_functions() {
    let check = |expr: &str, expect: Result<&[&str], &str>| {
        let got = promql_metrics(expr);
        match expect {
            Ok(names) => assert_eq!(
                got,
                Ok(names.iter().map(|n| n.to_string()).collect()),
                "{expr}"
            ),
            Err(part) => assert!(
                got.as_ref().is_err_and(|e| e.contains(part)),
                "{expr}: {got:?}"
            ),
        }
    };
    check(
        r#"sum by (service, result) (increase(lookout_updates_total{service=~"$service"}[$__rate_interval]))"#,
        Ok(&["lookout_updates_total"]),
    );
    check(
        "time() - lookout_last_check_timestamp_seconds > 3 * 3600 and lookout_build_info offset 5m",
        Ok(&["lookout_last_check_timestamp_seconds", "lookout_build_info"]),
    );
    check(
        "sum(rate(a_sum[5m])) / on (le) group_left sum(rate(b_count[5m]))",
        Ok(&["a_sum", "b_count"]),
    );
    check("rate(lookout_updates_total[5m]", Err("unclosed"));
    check("frobnicate(lookout_updates_total)", Err("unknown function"));
    check(
        r#"lookout_updates_total{result="ok}"#,
        Err("unclosed string"),
    );
    assert!(known_metric("lookout_update_duration_seconds_bucket"));
    assert!(!known_metric("lookout_update_duration_seconds_max"));
    assert!(!known_metric("lookout_updates_applied_total"));
}

#[test]
fn grafana_dashboard_parses_and_queries_only_lookout_metrics() {
    let text = std::fs::read_to_string(repo("deploy/grafana/lookout-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(dash["title"].is_string() && dash["uid"].is_string());

    fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| exprs(i, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    exprs(&dash["panels"], &mut all);
    exprs(&dash["annotations"], &mut all);
    let used = check_exprs(all.iter().map(String::as_str));

    // Variables: label_values(METRIC{…}, label).
    let re = regex::Regex::new(r"^label_values\(([^,]+),\s*[a-z_]+\)$").unwrap();
    for var in dash["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            let q = var["definition"].as_str().unwrap();
            let caps = re
                .captures(q)
                .unwrap_or_else(|| panic!("variable query {q:?}"));
            check_exprs([&caps[1]]);
        }
    }

    for needed in [
        "lookout_updates_total",
        "lookout_rollbacks_total",
        "lookout_update_failures_total",
        "lookout_checks_total",
        "lookout_registry_requests_total",
        "lookout_registry_ratelimit_remaining",
        "lookout_update_duration_seconds_bucket",
    ] {
        assert!(used.iter().any(|m| m == needed), "no panel shows {needed}");
    }

    // Panel ids are unique, and every panel has a place and a data source.
    let panels = dash["panels"].as_array().unwrap();
    let mut ids: Vec<i64> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "duplicate panel ids");
    for p in panels {
        assert!(p["gridPos"]["w"].as_i64().is_some(), "{p}");
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["type"], "prometheus", "{}", p["title"]);
        }
    }
}

#[test]
fn prometheus_alerts_are_well_formed_rules_on_lookout_metrics() {
    let path = repo("deploy/prometheus/alerts.yml");
    let doc: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let duration = regex::Regex::new(r"^\d+[smhd]$").unwrap();
    let mut alerts = Vec::new();
    let mut used = Vec::new();
    for group in doc["groups"].as_array().expect("groups") {
        assert!(group["name"].is_string());
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().expect("expr");
            assert!(rule["labels"]["severity"].is_string(), "{name}: severity");
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{name}: summary"
            );
            if let Some(d) = rule.get("for") {
                assert!(duration.is_match(d.as_str().unwrap()), "{name}: for {d}");
            }
            used.extend(check_exprs([expr]));
            alerts.push(name.to_owned());
        }
    }
    for (metric, what) in [
        ("lookout_rollbacks_total", "a rollback happened"),
        ("lookout_update_failures_total", "updates failing"),
        ("lookout_last_check_timestamp_seconds", "checks stale"),
        (
            "lookout_registry_ratelimit_remaining",
            "rate limit nearly exhausted",
        ),
    ] {
        assert!(
            used.iter().any(|m| m == metric),
            "no alert for {what} ({metric})"
        );
    }
    let mut unique = alerts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), alerts.len(), "duplicate alert names");

    match Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
    {
        Ok(out) => assert!(out.status.success(), "promtool check rules: {out:?}"),
        Err(e) => panic!(
            "promtool cannot run ({e}): tests/run installs Debian's prometheus package, which provides it"
        ),
    }
}
