//! Discovery end to end on the real engine: `lookout run` with the shipped configuration (no
//! `[[services]]`) watches the host's compose projects and standalone containers by their
//! labels, updates only what a label allows, leaves out what a label excludes, fails a bad
//! label alone, and watches a project started while it runs within seconds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::engine::HEALTHY;
use crate::util::compose::ComposeDown;
use crate::util::daemon::{Daemon, get};
use crate::util::docker::{TestImage, remove_labelled};
use crate::util::registry::{LocalRegistry, RegistryAuth};
use crate::util::{Scratch, free_port, run, wait_for};

/// A compose project in its own folder, brought down (and its containers removed) when
/// dropped.
struct ComposeProject {
    name: String,
    _down: ComposeDown,
}

impl ComposeProject {
    fn up(scratch: &Scratch, suffix: &str, image: &str, labels: &str) -> Self {
        Self::up_services(
            scratch,
            suffix,
            &format!(
                "  app:\n    image: {image}\n    network_mode: none\n    labels:\n      \
                 com.example.role: app\n{labels}"
            ),
        )
    }

    /// A project of the given `services:` entries (YAML indented by two spaces).
    fn up_services(scratch: &Scratch, suffix: &str, services: &str) -> Self {
        let name: String = format!("lk{}{suffix}", scratch.id)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        let dir = scratch.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("compose.yaml");
        std::fs::write(&file, format!("services:\n{services}")).unwrap();
        let down = ComposeDown {
            command: vec!["docker".into(), "compose".into()],
            files: vec![file.clone()],
            project_dir: dir.clone(),
            scratch_id: scratch.id.clone(),
        };
        run(Command::new("docker")
            .args(["compose", "-f"])
            .arg(&file)
            .args(["up", "-d"])
            .current_dir(&dir));
        Self { name, _down: down }
    }

    /// The service's discovered name.
    fn service(&self) -> String {
        format!("{}-app", self.name)
    }

    /// The image id the project's `app` container runs.
    fn image_id(&self) -> String {
        let out = run(Command::new("docker").args([
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
        ]));
        let id = out
            .lines()
            .next()
            .expect("the project's container runs")
            .trim();
        run(Command::new("docker").args(["inspect", "-f", "{{.Image}}", id]))
            .trim()
            .to_owned()
    }
}

/// `docker run -d --name NAME --network none LABELS… IMAGE`; removed with the test's label.
fn standalone(name: &str, labels: &[&str], image: &str) {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "-d", "--name", name, "--network", "none"]);
    for l in labels {
        cmd.args(["--label", l]);
    }
    run(cmd.arg(image));
}

fn services(addr: &str) -> Vec<serde_json::Value> {
    let (status, body) = get(addr, "/api/v1/services", None).unwrap_or((0, String::new()));
    if status != 200 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["services"].as_array().cloned().unwrap_or_default()
}

fn service(addr: &str, name: &str) -> Option<serde_json::Value> {
    services(addr).into_iter().find(|s| s["name"] == name)
}

/// The service's last result, once it has one.
fn result_of(addr: &str, name: &str) -> Option<(String, serde_json::Value)> {
    let s = service(addr, name)?;
    let result = s["last_result"]["result"].as_str()?.to_owned();
    Some((result, s))
}

fn shipped_config(scratch: &Scratch) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lookout.toml");
    let text = std::fs::read_to_string(shipped).unwrap();
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start().starts_with("[[services]]")),
        "the shipped configuration configures no service"
    );
    scratch.write("lookout.toml", text)
}

#[test]
fn the_shipped_configuration_watches_the_host_by_labels_and_updates_only_the_labelled_project() {
    let scratch = Scratch::new("discovery-e2e");
    let _cleanup = crate::util::compose::Labelled(scratch.id.clone());
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let repo = registry.image("disc/app");
    let mut old = TestImage::build(&scratch, &format!("{repo}:1.0.0"), "1.0.0", HEALTHY);
    old.tag(&format!("{repo}:1.0"));
    let mut new = TestImage::build(&scratch, &format!("{repo}:1.1.0"), "1.1.0", HEALTHY);
    new.tag(&format!("{repo}:1.1"));
    for (image, tag) in [
        (&old, "1.0.0"),
        (&old, "1.0"),
        (&new, "1.1.0"),
        (&new, "1.1"),
    ] {
        image.push(&format!("{repo}:{tag}"));
    }

    let labelled = ComposeProject::up(
        &scratch,
        "a",
        &format!("{repo}:1.0.0"),
        "      lookout.action: update\n      lookout.policy: semver\n      lookout.health_stable: 2s\n",
    );
    let plain = ComposeProject::up(&scratch, "b", &format!("{repo}:1.0.0"), "");
    let prefix = format!("lk{}", scratch.id.to_ascii_lowercase());
    let off = format!("{prefix}-off");
    let wud = format!("{prefix}-wud");
    let bad = format!("{prefix}-bad");
    standalone(
        &off,
        &["com.centurylinklabs.watchtower.enable=false"],
        &format!("{repo}:1.0.0"),
    );
    standalone(
        &wud,
        &[r"wud.tag.include=^\d+\.\d+$", "wud.display.name=Two-part"],
        &format!("{repo}:1.0"),
    );
    standalone(
        &bad,
        &["lookout.update_level=sideways"],
        &format!("{repo}:1.0.0"),
    );
    let old_id = labelled.image_id();
    // 1.0.0 is pushed again, rebuilt: the unlabelled project follows its tag's digest (the
    // default policy), so that is its candidate.
    let rebuilt = TestImage::build(&scratch, &format!("{repo}:1.0.0"), "1.0.0-rebuilt", HEALTHY);
    let rebuilt_digest = rebuilt.push(&format!("{repo}:1.0.0"));

    let config = shipped_config(&scratch);
    let addr = format!("127.0.0.1:{}", free_port());
    let state = scratch.join("state/state.json");
    let mut daemon = Daemon::start_with_env(
        &config,
        &addr,
        &scratch.join("lookout.log"),
        None,
        &[
            ("LOOKOUT_STATE_FILE", state.to_str().unwrap()),
            ("LOOKOUT_LISTEN", addr.as_str()),
        ],
    );
    daemon.wait_healthy(Duration::from_secs(30));

    // The labelled project is updated, health-gated, to the newest version its policy allows.
    let (result, updated) = wait_for(
        "the labelled project's update",
        Duration::from_secs(120),
        || result_of(&addr, &labelled.service()).filter(|(r, _)| r != "update_available"),
    );
    assert_eq!(result, "updated", "{updated:#}\n{}", daemon.log());
    assert_eq!(
        updated["last_result"]["to"],
        format!("{repo}:1.1.0"),
        "{updated:#}"
    );
    assert_ne!(
        labelled.image_id(),
        old_id,
        "the labelled project runs the new image"
    );
    assert_eq!(labelled.image_id(), new.id);
    // The API says where the policy came from as `lookout check` does.
    assert_eq!(
        updated["policy_source"], "label lookout.policy",
        "{updated:#}"
    );
    assert_eq!(updated["origin"], "discovered", "{updated:#}");

    // The unlabelled project and the WUD-labelled container are reported, not changed.
    let (result, reported) = wait_for("the plain project's check", Duration::from_secs(60), || {
        result_of(&addr, &plain.service())
    });
    assert_eq!(result, "update_available", "{reported:#}");
    assert_eq!(reported["last_result"]["to"], format!("{repo}:1.0.0"));
    assert_eq!(reported["last_result"]["digest"], rebuilt_digest.as_str());
    assert_eq!(reported["policy_source"], "default", "{reported:#}");
    let reason = reported["last_result"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("notify only (discovery.default_action = notify)")
            && reason.contains("lookout.action=update"),
        "{reason}"
    );
    assert_eq!(
        plain.image_id(),
        old.id,
        "the unlabelled project is not changed"
    );
    let (result, standalone_wud) =
        wait_for("the WUD container's check", Duration::from_secs(60), || {
            result_of(&addr, &wud)
        });
    assert_eq!(result, "update_available", "{standalone_wud:#}");
    assert_eq!(
        standalone_wud["last_result"]["to"],
        format!("{repo}:1.1"),
        "wud.tag.include keeps to major.minor tags: {standalone_wud:#}"
    );
    assert_eq!(
        standalone_wud["policy_source"], "label wud.tag.include",
        "{standalone_wud:#}"
    );
    assert_eq!(standalone_wud["display_name"], "Two-part");

    // The bad label fails that service alone, naming the container, the label and the choices.
    let (result, failed) = wait_for("the bad label's check", Duration::from_secs(60), || {
        result_of(&addr, &bad)
    });
    assert_eq!(result, "check_failed");
    let reason = failed["last_result"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("container {bad}, label lookout.update_level"))
            && reason.contains("major, minor, patch"),
        "{reason}"
    );
    // The excluded container is not a service at all.
    assert!(service(&addr, &off).is_none(), "{off} is excluded");

    let (status, metrics) = get(&addr, "/metrics", None).unwrap();
    assert_eq!(status, 200);
    for (name, value) in [
        (plain.service(), 1),
        (wud.clone(), 1),
        (labelled.service(), 0),
    ] {
        let series = format!("lookout_update_available{{service=\"{name}\"}} {value}");
        assert!(
            metrics.contains(&series),
            "{series} missing from /metrics:\n{metrics}"
        );
    }
    assert!(
        metrics.contains(&format!(
            "lookout_updates_total{{result=\"updated\",service=\"{}\"}} 1",
            labelled.service()
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&format!("service=\"{off}\"")),
        "{metrics}"
    );

    // A project started while the daemon runs is watched within 5 s.
    let started = Instant::now();
    let late = ComposeProject::up(&scratch, "c", &format!("{repo}:1.0.0"), "");
    let up_took = started.elapsed();
    let seen = Instant::now();
    let (result, _) = wait_for("the new project's check", Duration::from_secs(5), || {
        result_of(&addr, &late.service())
    });
    let watched_after = seen.elapsed();
    eprintln!("compose up took {up_took:?}; the new project was checked {watched_after:?} after");
    // It runs the rebuilt 1.0.0, which is what its tag's digest is now.
    assert_eq!(result, "up_to_date");
    assert!(watched_after < Duration::from_secs(5));
    assert_eq!(late.image_id(), rebuilt.id);

    assert_eq!(daemon.stop(Duration::from_secs(20)), 0);
    drop((labelled, plain, late));
    remove_labelled(&scratch.id);
}

/// `lookout --config CONFIG ARGS…`: (exit code, stdout, stderr).
fn lookout_with(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = crate::util::lookout()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn discover_shows_each_settings_source_the_toml_and_doctor_what_lookout_cannot_manage() {
    let scratch = Scratch::new("discovery-cli");
    let _cleanup = crate::util::compose::Labelled(scratch.id.clone());
    let image = format!("lookout-disc-cli-{}:1.2.0", std::process::id());
    let _image = TestImage::build(&scratch, &image, "1.2.0", "");
    let prefix = format!("lk{}", scratch.id.to_ascii_lowercase());
    let labelled = format!("{prefix}-web");
    let oneoff = format!("{prefix}-run");
    let clash = format!("{prefix}-clash");
    standalone(
        &labelled,
        &[
            "lookout.action=update",
            "lookout.policy=semver",
            r"wud.tag.include=^\d+\.\d+\.\d+$",
            "wud.display.name=Web",
        ],
        &image,
    );
    standalone(
        &oneoff,
        &[
            &format!("com.docker.compose.project={prefix}p"),
            "com.docker.compose.service=app",
            "com.docker.compose.oneoff=True",
        ],
        &image,
    );
    standalone(
        &clash,
        &["lookout.policy=semver", "wud.watch.digest=true"],
        &image,
    );
    let config = scratch.write(
        "lookout.toml",
        format!(
            "state_file = \"{}\"\n[discovery]\nenabled = true\n\n[[services]]\nname = \"pinned\"\n\
             container = \"{clash}\"\nimage = \"{image}\"\nupdate_level = \"patch\"\n",
            scratch.join("state.json").display()
        ),
    );

    let (code, stdout, stderr) = lookout_with(&config, &["discover", "--json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let find = |name: &str| {
        v["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not discovered: {v:#}"))
    };
    let web = find(&labelled);
    assert_eq!(web["what"]["kind"], "standalone");
    assert_eq!(web["action"], "update");
    assert_eq!(web["display_name"], "Web");
    let settings = &web["settings"];
    assert_eq!(settings["action"]["source"], "label lookout.action");
    assert_eq!(settings["policy"]["source"], "label lookout.policy");
    assert_eq!(settings["tag_regex"]["source"], "label wud.tag.include");
    let toml = web["toml"].as_str().unwrap();
    assert!(
        toml.contains("[[services]]")
            && toml.contains(&format!("container = \"{labelled}\""))
            && toml.contains("policy = \"semver\""),
        "{toml}"
    );
    // The pasted entry is a valid configuration.
    let pasted = scratch.write("pasted.toml", toml);
    let (code, out, err) = lookout_with(&pasted, &["config", "validate"]);
    assert_eq!(code, 0, "{out}\n{err}\n{toml}");
    // The explicit entry names the container: its name, its update_level, the label's policy.
    let pinned = find("pinned");
    assert_eq!(pinned["configured"], "pinned");
    assert_eq!(pinned["settings"]["update_level"]["source"], "config");
    assert_eq!(
        pinned["settings"]["policy"]["source"],
        "label lookout.policy"
    );
    assert!(
        pinned["conflicts"][0]
            .as_str()
            .unwrap()
            .contains("disagrees with lookout.policy"),
        "{pinned:#}"
    );
    let unmanaged = v["unmanaged"].as_array().unwrap();
    assert!(
        unmanaged.iter().any(|l| l["container"] == oneoff.as_str()
            && l["reason"].as_str().unwrap().contains("compose run")),
        "{v:#}"
    );

    // status lists the discovered services beside the configured one, with the sources.
    let (code, stdout, stderr) = lookout_with(&config, &["status"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{labelled}: (not checked yet) [discovered]")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "standalone container {labelled}: action = update (label lookout.action)"
        )) && stdout.contains("policy = semver (label lookout.policy)"),
        "{stdout}"
    );
    assert!(stdout.contains("pinned: (not checked yet)\n"), "{stdout}");

    let (_, stdout, _) = lookout_with(&config, &["doctor"]);
    let line = |what: &str| {
        stdout
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no line for {what}:\n{stdout}"))
            .to_owned()
    };
    assert!(
        line(&format!("container {oneoff}")).contains("WARN"),
        "{stdout}"
    );
    assert!(line("labels of pinned").contains("WARN"), "{stdout}");
}

#[test]
fn a_configured_standalone_container_is_checked_and_a_dry_run_changes_nothing() {
    let scratch = Scratch::new("discovery-standalone");
    let _cleanup = crate::util::compose::Labelled(scratch.id.clone());
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let repo = registry.image("solo/app");
    let old = TestImage::build(&scratch, &format!("{repo}:1.0.0"), "1.0.0", "");
    let new = TestImage::build(&scratch, &format!("{repo}:1.1.0"), "1.1.0", "");
    old.push(&format!("{repo}:1.0.0"));
    let candidate = new.push(&format!("{repo}:1.1.0"));
    let name = format!("lk{}-solo", scratch.id.to_ascii_lowercase());
    standalone(&name, &[], &format!("{repo}:1.0.0"));
    // Discovery off: the entry alone makes lookout look at every container.
    let config = scratch.write(
        "lookout.toml",
        format!(
            "state_file = \"{}\"\n\n[[services]]\nname = \"solo\"\ncontainer = \"{name}\"\n\
             image = \"{repo}:1.0.0\"\npolicy = \"semver\"\n",
            scratch.join("state.json").display()
        ),
    );
    let (code, stdout, stderr) = lookout_with(&config, &["update", "--dry-run", "--json"]);
    let reports: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}), exit {code}:\n{stdout}\n{stderr}"));
    let report = &reports[0];
    assert_eq!(report["service"], "solo");
    assert_eq!(report["result"], "update_available", "{report:#}\n{stderr}");
    assert_eq!(report["from"], format!("{repo}:1.0.0"));
    assert_eq!(report["to"], format!("{repo}:1.1.0"));
    assert_eq!(report["digest"], candidate.as_str());
    let reason = report["reason"].as_str().unwrap();
    assert!(reason.starts_with("would update"), "{reason}");
    let running = run(Command::new("docker").args(["inspect", "-f", "{{.Image}}", &name]));
    assert_eq!(running.trim(), old.id, "nothing was changed");
}

#[test]
fn depends_on_labels_and_compose_depends_on_update_dependencies_first_and_an_unknown_name_is_a_warning()
 {
    let scratch = Scratch::new("discovery-depends");
    let _cleanup = crate::util::compose::Labelled(scratch.id.clone());
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let repo = registry.image("dep/app");
    let old = TestImage::build(&scratch, &format!("{repo}:1.0.0"), "1.0.0", HEALTHY);
    let new = TestImage::build(&scratch, &format!("{repo}:1.1.0"), "1.1.0", HEALTHY);
    old.push(&format!("{repo}:1.0.0"));
    new.push(&format!("{repo}:1.1.0"));
    let update = "      lookout.action: update\n      lookout.policy: semver\n      \
                  lookout.health_stable: 3s\n";
    // `api` comes before `app` in the pass (by name) and depends on it in the compose file:
    // compose's own `depends_on` orders a discovered project too.
    let service = |name: &str, extra: &str| {
        format!(
            "  {name}:\n    image: {repo}:1.0.0\n    network_mode: none\n{extra}    labels:\n{update}"
        )
    };
    let db = ComposeProject::up_services(
        &scratch,
        "db",
        &format!(
            "{}{}",
            service("api", "    depends_on: [app]\n"),
            service("app", "")
        ),
    );
    // The standalone container comes first in the pass (discovery lists standalone containers
    // before compose services) and, with two changes allowed at once, would start beside the
    // project's update; its Watchtower label names the project's container, so it waits.
    let prefix = format!("lk{}", scratch.id.to_ascii_lowercase());
    let app = format!("{prefix}-app");
    let unknown = format!("{prefix}-nosuch");
    let depends = format!(
        "com.centurylinklabs.watchtower.depends-on={}-app-1,{unknown}",
        db.name
    );
    standalone(
        &app,
        &[
            "lookout.action=update",
            "lookout.policy=semver",
            "lookout.health_stable=3s",
            &depends,
        ],
        &format!("{repo}:1.0.0"),
    );
    let state = scratch.join("state.json");
    let config = scratch.write(
        "lookout.toml",
        format!(
            "state_file = \"{}\"\nupdate_concurrency = 2\n[discovery]\nenabled = true\n",
            state.display()
        ),
    );

    let (code, stdout, stderr) = lookout_with(&config, &["update", "--json"]);
    let reports: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}), exit {code}:\n{stdout}\n{stderr}"));
    let result = |name: &str| {
        reports
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["service"] == name)
            .unwrap_or_else(|| panic!("no report for {name}: {reports:#}"))["result"]
            .clone()
    };
    let api = format!("{}-api", db.name);
    assert_eq!(result(&db.service()), "updated", "{reports:#}\n{stderr}");
    assert_eq!(result(&api), "updated", "{reports:#}\n{stderr}");
    assert_eq!(result(&app), "updated", "{reports:#}\n{stderr}");
    assert_eq!(db.image_id(), new.id);

    // The history's times: the dependent's update started after the project's had finished.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let times = |name: &str| {
        let h = &state["services"][name]["history"][0];
        let at = |key: &str| {
            h[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} in {name}'s history: {state:#}"))
                .parse::<jiff::Timestamp>()
                .unwrap()
        };
        (at("started_at"), at("finished_at"))
    };
    let (_, db_finished) = times(&db.service());
    let (app_started, _) = times(&app);
    assert!(
        app_started >= db_finished,
        "{app} started at {app_started}, before {} finished at {db_finished}\n{stderr}",
        db.service()
    );
    let (api_started, _) = times(&api);
    assert!(
        api_started >= db_finished,
        "{api} started at {api_started}, before {} finished at {db_finished}\n{stderr}",
        db.service()
    );

    // The name that matches nothing is a warning naming the container, the label and the value.
    assert!(
        stderr.lines().any(|l| l.contains(&format!(
            "container {app}, label com.centurylinklabs.watchtower.depends-on names \"{unknown}\""
        ))),
        "{stderr}"
    );
    drop(db);
    remove_labelled(&scratch.id);
}
