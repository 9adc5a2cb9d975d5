//! Compose as operators really run it, end to end on the real engine, with compose v2 and v1:
//! override files, several `-f` files, `-p`, a top-level `name:`, `--env-file`, `extends:`,
//! replicas and groups. lookout must find each project by its containers' labels, run compose
//! exactly as it was run, and keep every setting the user gave the service, after an update and
//! after a rollback.

use std::collections::BTreeMap;
use std::process::Command;

use crate::engine::{Flavor, HEALTHY, Project, UNHEALTHY};
use crate::util::run;

/// A project started with one compose command line. Dropping it runs `down -v` with the same
/// arguments (named volumes included), before the [`Project`] removes the rest.
struct Started {
    args: Vec<String>,
    p: Project,
}

impl Started {
    /// Writes `files` (name, text with `{image}` and `{label}`) into the project folder and the
    /// service settings (with `{image}` and `{dir}`) into lookout's configuration; `args` are
    /// the compose arguments every command of the test runs with.
    fn new(
        test: &str,
        flavor: Flavor,
        files: &[(&str, &str)],
        services: &str,
        args: &[&str],
    ) -> Started {
        let p = Project::new(test, flavor, "services: {}\n", "");
        std::fs::remove_file(&p.compose_file).unwrap();
        for (name, text) in files {
            std::fs::write(
                p.dir.join(name),
                text.replace("{image}", &p.repo)
                    .replace("{label}", &p.scratch.id),
            )
            .unwrap();
        }
        std::fs::write(
            &p.config,
            format!(
                "state_file = \"{}\"\ncheck_interval = 60\nhealth_timeout = \"30s\"\n\
                 health_stable = \"3s\"\ncompose_timeout = \"90s\"\n\n{}",
                p.scratch.join("state/state.json").display(),
                services
                    .replace("{image}", &p.repo)
                    .replace("{dir}", &p.dir.display().to_string())
            ),
        )
        .unwrap();
        Started {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            p,
        }
    }

    /// `compose ARGS… EXTRA…` in the project folder.
    fn compose(&self, extra: &[&str]) -> String {
        let mut cmd = self.p.flavor.command();
        cmd.current_dir(&self.p.dir).args(&self.args).args(extra);
        run(&mut cmd)
    }

    /// `lookout update --json`: every service's report, by service name.
    fn update(&self) -> BTreeMap<String, serde_json::Value> {
        let (code, stdout, stderr) = self.p.lookout(&["update", "--json"]);
        let reports: Vec<serde_json::Value> = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}), exit {code}:\n{stdout}\n{stderr}"));
        eprintln!("lookout update: exit {code}: {stdout}\n{stderr}");
        reports
            .into_iter()
            .map(|r| (r["service"].as_str().unwrap().to_owned(), r))
            .collect()
    }

    /// Every container of compose service `service` in project `project`, inspected.
    fn containers(&self, project: &str, service: &str) -> Vec<serde_json::Value> {
        let ids = run(Command::new("docker").args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]));
        let ids: Vec<&str> = ids.split_whitespace().collect();
        assert!(!ids.is_empty(), "no container of {project}/{service}");
        let out = run(Command::new("docker").arg("inspect").args(&ids));
        serde_json::from_str(&out).unwrap()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let mut cmd = self.p.flavor.command();
        let _ = cmd
            .current_dir(&self.p.dir)
            .args(&self.args)
            .args(["down", "-v", "--timeout", "1"])
            .output();
    }
}

/// Each container's image id and `status/health`, sorted.
fn images(containers: &[serde_json::Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = containers
        .iter()
        .map(|c| {
            let health = c["State"]["Health"]["Status"].as_str().unwrap_or("none");
            (
                c["Image"].as_str().unwrap().to_owned(),
                format!("{}/{health}", c["State"]["Status"].as_str().unwrap()),
            )
        })
        .collect();
    out.sort();
    out
}

fn env_of(container: &serde_json::Value) -> Vec<String> {
    container["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

fn volume_names(container: &serde_json::Value) -> Vec<String> {
    container["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Type"] == "volume")
        .map(|m| m["Name"].as_str().unwrap().to_owned())
        .collect()
}

/// The compose files a container's labels name, made absolute from `dir` (compose v1 records
/// them as typed, relative to where it ran; lookout passes absolute paths).
fn config_files_label(container: &serde_json::Value, dir: &std::path::Path) -> Vec<String> {
    container["Config"]["Labels"]["com.docker.compose.project.config_files"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .map(|f| dir.join(f).display().to_string())
        .collect()
}

const BASE: &str = "services:\n  app:\n    image: '{image}:1.0.0'\n    network_mode: none\n    labels:\n      lookout.test: \"{label}\"\n";

/// compose picks up `docker-compose.override.yml` by itself; it adds an environment variable
/// and a named volume, and both must survive an update and a rollback.
fn override_file_settings_survive_update_and_rollback(flavor: Flavor) {
    let mut s = Started::new(
        &format!("run-override-{flavor:?}"),
        flavor,
        &[
            ("docker-compose.yml", BASE),
            (
                "docker-compose.override.yml",
                "services:\n  app:\n    environment:\n      FROM_OVERRIDE: \"yes\"\n    volumes:\n      - data:/data\nvolumes:\n  data:\n    labels:\n      lookout.test: \"{label}\"\n",
            ),
        ],
        "[[services]]\nname = \"app\"\nimage = \"{image}:1.0.0\"\npolicy = \"semver\"\ncompose_file = \"{dir}/docker-compose.yml\"\n",
        &[],
    );
    s.p.push("1.0.0", HEALTHY);
    s.compose(&["up", "-d"]);
    let project = s.p.project_name();
    let before = s.containers(&project, "app");
    let volumes = volume_names(&before[0]);
    assert_eq!(volumes, [format!("{project}_data")]);
    let files = config_files_label(&before[0], &s.p.dir);
    assert_eq!(files.len(), 2, "{files:?}");

    let id_new = s.p.push("1.1.0", HEALTHY);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "updated", "{reports:?}");
    let after = s.containers(&project, "app");
    assert_eq!(images(&after), [(id_new.clone(), "running/healthy".into())]);
    assert!(env_of(&after[0]).contains(&"FROM_OVERRIDE=yes".to_owned()));
    assert_eq!(volume_names(&after[0]), volumes, "the same named volume");
    assert_eq!(
        config_files_label(&after[0], &s.p.dir),
        files,
        "both files, as before"
    );

    s.p.push("2.0.0", UNHEALTHY);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "rolled_back", "{reports:?}");
    let back = s.containers(&project, "app");
    assert_eq!(images(&back), [(id_new, "running/healthy".into())]);
    assert!(env_of(&back[0]).contains(&"FROM_OVERRIDE=yes".to_owned()));
    assert_eq!(volume_names(&back[0]), volumes);
    assert_eq!(config_files_label(&back[0], &s.p.dir), files);
}

#[test]
fn override_file_settings_survive_update_and_rollback_compose_v2() {
    override_file_settings_survive_update_and_rollback(Flavor::V2);
}

#[test]
fn override_file_settings_survive_update_and_rollback_compose_v1() {
    override_file_settings_survive_update_and_rollback(Flavor::V1);
}

/// `-f base.yml -f prod.yml`, the image set in the second: prod.yml is the file edited, and
/// both files stay in use.
fn image_set_in_the_second_file_is_edited_there(flavor: Flavor) {
    let base = "services:\n  app:\n    image: '{image}:0.1.0'\n    network_mode: none\n    environment:\n      FROM_BASE: \"yes\"\n    labels:\n      lookout.test: \"{label}\"\n";
    let prod = "services:\n  app:\n    image: \"{image}:1.0.0\"  # production pin\n";
    let mut s = Started::new(
        &format!("run-two-files-{flavor:?}"),
        flavor,
        &[("base.yml", base), ("prod.yml", prod)],
        "[[services]]\nname = \"app\"\nimage = \"{image}:1.0.0\"\npolicy = \"semver\"\ncompose_file = \"{dir}/base.yml\"\n",
        &["-f", "base.yml", "-f", "prod.yml"],
    );
    s.p.push("1.0.0", HEALTHY);
    s.compose(&["up", "-d"]);
    let base_before = s.p.read(&s.p.dir.join("base.yml"));
    let prod_before = s.p.read(&s.p.dir.join("prod.yml"));
    let id_new = s.p.push("1.1.0", HEALTHY);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "updated", "{reports:?}");
    assert_eq!(s.p.read(&s.p.dir.join("base.yml")), base_before);
    assert_eq!(
        s.p.read(&s.p.dir.join("prod.yml")),
        prod_before.replace(":1.0.0\"", ":1.1.0\"")
    );
    let after = s.containers(&s.p.project_name(), "app");
    assert_eq!(images(&after), [(id_new, "running/healthy".into())]);
    assert!(env_of(&after[0]).contains(&"FROM_BASE=yes".to_owned()));
}

#[test]
fn image_set_in_the_second_file_is_edited_there_compose_v2() {
    image_set_in_the_second_file_is_edited_there(Flavor::V2);
}

#[test]
fn image_set_in_the_second_file_is_edited_there_compose_v1() {
    image_set_in_the_second_file_is_edited_there(Flavor::V1);
}

/// `-p customname`, configured by `compose_project` alone (no `compose_file`): found by its
/// containers' labels, run again with the same name.
fn a_custom_project_name_is_found_by_its_labels(flavor: Flavor) {
    let name = format!("custom{}", flavor_tag(flavor));
    let mut s = Started::new(
        &format!("run-custom-name-{flavor:?}"),
        flavor,
        &[("docker-compose.yml", BASE)],
        &format!(
            "[[services]]\nname = \"app\"\nimage = \"{{image}}:1.0.0\"\npolicy = \"semver\"\ncompose_project = \"{name}\"\n"
        ),
        &["-p", &name],
    );
    s.p.push("1.0.0", HEALTHY);
    s.compose(&["up", "-d"]);
    // doctor says which project, files and env file lookout will use, and where it learnt them.
    let (_, doctor, stderr) = s.p.lookout(&["doctor"]);
    let want = format!(
        "compose project \"{name}\" (as its containers' labels record): files {}/docker-compose.yml; folder {}; env file .env in the folder",
        s.p.dir.display(),
        s.p.dir.display()
    );
    assert!(
        doctor.contains(&want),
        "want {want:?} in:\n{doctor}\n{stderr}"
    );
    let id_new = s.p.push("1.1.0", HEALTHY);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "updated", "{reports:?}");
    let after = s.containers(&name, "app");
    assert_eq!(images(&after), [(id_new, "running/healthy".into())]);
    let computed = run(Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={}", s.p.project_name()),
    ]));
    assert!(
        computed.trim().is_empty(),
        "no project under the folder's name"
    );
}

fn flavor_tag(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::V2 => "v2",
        Flavor::V1 => "v1",
    }
}

#[test]
fn a_custom_project_name_is_found_by_its_labels_compose_v2() {
    a_custom_project_name_is_found_by_its_labels(Flavor::V2);
}

#[test]
fn a_custom_project_name_is_found_by_its_labels_compose_v1() {
    a_custom_project_name_is_found_by_its_labels(Flavor::V1);
}

/// A top-level `name:` (compose v2 only; v1 does not know it).
#[test]
fn a_top_level_name_is_kept_compose_v2() {
    let mut s = Started::new(
        "run-top-name",
        Flavor::V2,
        &[(
            "compose.yaml",
            &format!("name: topname{}\n{BASE}", std::process::id()),
        )],
        "[[services]]\nname = \"app\"\nimage = \"{image}:1.0.0\"\npolicy = \"semver\"\ncompose_file = \"{dir}/compose.yaml\"\n",
        &[],
    );
    let name = format!("topname{}", std::process::id());
    s.p.push("1.0.0", HEALTHY);
    s.compose(&["up", "-d"]);
    let id_new = s.p.push("1.1.0", HEALTHY);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "updated", "{reports:?}");
    assert_eq!(
        images(&s.containers(&name, "app")),
        [(id_new, "running/healthy".into())]
    );
}

/// `--env-file other.env`: the variable is changed in other.env, and `.env` is left alone.
fn an_env_file_given_on_the_command_line_is_the_one_edited(flavor: Flavor) {
    let compose = "services:\n  app:\n    image: \"{image}:${APP_TAG}\"\n    network_mode: none\n    environment:\n      WHERE: \"${WHERE}\"\n    labels:\n      lookout.test: \"{label}\"\n";
    let mut s = Started::new(
        &format!("run-env-file-{flavor:?}"),
        flavor,
        &[
            ("docker-compose.yml", compose),
            ("other.env", "APP_TAG=1.0.0\nWHERE=other\n"),
            (".env", "APP_TAG=0.0.1\nWHERE=dotenv\n"),
        ],
        "[[services]]\nname = \"app\"\nimage = \"{image}:1.0.0\"\npolicy = \"semver\"\ncompose_file = \"{dir}/docker-compose.yml\"\n",
        &["--env-file", "other.env"],
    );
    s.p.push("1.0.0", HEALTHY);
    s.compose(&["up", "-d"]);
    let id_new = s.p.push("1.1.0", HEALTHY);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "updated", "{reports:?}");
    assert_eq!(
        s.p.read(&s.p.dir.join("other.env")),
        "APP_TAG=1.1.0\nWHERE=other\n"
    );
    assert_eq!(
        s.p.read(&s.p.dir.join(".env")),
        "APP_TAG=0.0.1\nWHERE=dotenv\n"
    );
    let after = s.containers(&s.p.project_name(), "app");
    assert_eq!(images(&after), [(id_new, "running/healthy".into())]);
    assert!(env_of(&after[0]).contains(&"WHERE=other".to_owned()));
}

#[test]
fn an_env_file_given_on_the_command_line_is_the_one_edited_compose_v2() {
    an_env_file_given_on_the_command_line_is_the_one_edited(Flavor::V2);
}

#[test]
fn an_env_file_given_on_the_command_line_is_the_one_edited_compose_v1() {
    an_env_file_given_on_the_command_line_is_the_one_edited(Flavor::V1);
}

/// The image lives in another file the service `extends:`; that file is the one edited.
fn an_image_in_an_extends_file_is_edited_there(flavor: Flavor) {
    let common = "services:\n  base:\n    image: '{image}:1.0.0'\n    network_mode: none\n";
    let compose = "services:\n  app:\n    extends:\n      file: common.yml\n      service: base\n    labels:\n      lookout.test: \"{label}\"\n";
    let mut s = Started::new(
        &format!("run-extends-{flavor:?}"),
        flavor,
        &[("docker-compose.yml", compose), ("common.yml", common)],
        "[[services]]\nname = \"app\"\nimage = \"{image}:1.0.0\"\npolicy = \"semver\"\ncompose_file = \"{dir}/docker-compose.yml\"\n",
        &[],
    );
    s.p.push("1.0.0", HEALTHY);
    s.compose(&["up", "-d"]);
    let compose_before = s.p.read(&s.p.dir.join("docker-compose.yml"));
    let id_new = s.p.push("1.1.0", HEALTHY);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "updated", "{reports:?}");
    assert_eq!(
        s.p.read(&s.p.dir.join("common.yml")),
        common
            .replace("{image}", &s.p.repo)
            .replace(":1.0.0'", ":1.1.0'")
    );
    assert_eq!(
        s.p.read(&s.p.dir.join("docker-compose.yml")),
        compose_before
    );
    let after = s.containers(&s.p.project_name(), "app");
    assert_eq!(images(&after), [(id_new, "running/healthy".into())]);
}

#[test]
fn an_image_in_an_extends_file_is_edited_there_compose_v2() {
    an_image_in_an_extends_file_is_edited_there(Flavor::V2);
}

#[test]
fn an_image_in_an_extends_file_is_edited_there_compose_v1() {
    an_image_in_an_extends_file_is_edited_there(Flavor::V1);
}

/// A candidate whose first container to start takes a lock on a shared volume and never turns
/// healthy; the others pass. One bad replica of three.
const ONE_REPLICA_FAILS: &str = "HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD [\"/bin/test\", \"-f\", \"/healthy\"]\n\
    CMD [\"/bin/sh\", \"-c\", \"mkdir /shared/lock || touch /healthy; trap 'exit 0' TERM; while true; do sleep 1; done\"]";

/// Three replicas (`--scale app=3`): all three move to the new image, and when one of three
/// fails its health check, all three return to the old one.
fn three_replicas_update_and_roll_back_as_one(flavor: Flavor) {
    let compose = "services:\n  app:\n    image: '{image}:1.0.0'\n    network_mode: none\n    volumes:\n      - shared:/shared\n    labels:\n      lookout.test: \"{label}\"\nvolumes:\n  shared:\n    labels:\n      lookout.test: \"{label}\"\n";
    let mut s = Started::new(
        &format!("run-replicas-{flavor:?}"),
        flavor,
        &[("docker-compose.yml", compose)],
        "[[services]]\nname = \"app\"\nimage = \"{image}:1.0.0\"\npolicy = \"semver\"\ncompose_file = \"{dir}/docker-compose.yml\"\n",
        &[],
    );
    s.p.push("1.0.0", HEALTHY);
    s.compose(&["up", "-d", "--scale", "app=3"]);
    let project = s.p.project_name();
    assert_eq!(s.containers(&project, "app").len(), 3);

    let id_new = s.p.push("1.1.0", HEALTHY);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "updated", "{reports:?}");
    let healthy_new = (id_new.clone(), "running/healthy".to_owned());
    assert_eq!(
        images(&s.containers(&project, "app")),
        vec![healthy_new.clone(); 3],
        "all three replicas on the new image, still three"
    );

    s.p.push("2.0.0", ONE_REPLICA_FAILS);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "rolled_back", "{reports:?}");
    assert_eq!(
        images(&s.containers(&project, "app")),
        vec![healthy_new; 3],
        "all three back on the old image"
    );
}

#[test]
fn three_replicas_update_and_roll_back_as_one_compose_v2() {
    three_replicas_update_and_roll_back_as_one(Flavor::V2);
}

#[test]
fn three_replicas_update_and_roll_back_as_one_compose_v1() {
    three_replicas_update_and_roll_back_as_one(Flavor::V1);
}

/// Two services share `${APP_TAG}`: with `group = true` both move together, and both return
/// when the candidate fails.
fn a_group_sharing_a_variable_updates_and_rolls_back_together(flavor: Flavor) {
    let compose = "services:\n  app:\n    image: \"{image}:${APP_TAG}\"\n    network_mode: none\n    labels:\n      lookout.test: \"{label}\"\n  worker:\n    image: \"{image}:${APP_TAG}\"\n    network_mode: none\n    labels:\n      lookout.test: \"{label}\"\n";
    let mut s = Started::new(
        &format!("run-group-{flavor:?}"),
        flavor,
        &[("docker-compose.yml", compose), (".env", "APP_TAG=1.0.0\n")],
        "[[services]]\nname = \"app\"\nimage = \"{image}:1.0.0\"\npolicy = \"semver\"\ngroup = true\ncompose_file = \"{dir}/docker-compose.yml\"\n",
        &[],
    );
    s.p.push("1.0.0", HEALTHY);
    s.compose(&["up", "-d"]);
    let project = s.p.project_name();
    let id_new = s.p.push("1.1.0", HEALTHY);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "updated", "{reports:?}");
    assert_eq!(s.p.read(&s.p.dir.join(".env")), "APP_TAG=1.1.0\n");
    let healthy_new = vec![(id_new.clone(), "running/healthy".to_owned())];
    assert_eq!(images(&s.containers(&project, "app")), healthy_new);
    assert_eq!(images(&s.containers(&project, "worker")), healthy_new);

    s.p.push("2.0.0", UNHEALTHY);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "rolled_back", "{reports:?}");
    assert_eq!(s.p.read(&s.p.dir.join(".env")), "APP_TAG=1.1.0\n");
    assert_eq!(images(&s.containers(&project, "app")), healthy_new);
    assert_eq!(images(&s.containers(&project, "worker")), healthy_new);
}

#[test]
fn a_group_sharing_a_variable_updates_and_rolls_back_together_compose_v2() {
    a_group_sharing_a_variable_updates_and_rolls_back_together(Flavor::V2);
}

#[test]
fn a_group_sharing_a_variable_updates_and_rolls_back_together_compose_v1() {
    a_group_sharing_a_variable_updates_and_rolls_back_together(Flavor::V1);
}

/// Without `group = true`, a shared variable is refused with the reason, and nothing changes.
#[test]
fn a_shared_variable_without_group_is_refused_and_nothing_changes() {
    let compose = "services:\n  app:\n    image: \"{image}:${APP_TAG}\"\n    network_mode: none\n    labels:\n      lookout.test: \"{label}\"\n  worker:\n    image: \"{image}:${APP_TAG}\"\n    network_mode: none\n    labels:\n      lookout.test: \"{label}\"\n";
    let mut s = Started::new(
        "run-group-refused",
        Flavor::V2,
        &[("docker-compose.yml", compose), (".env", "APP_TAG=1.0.0\n")],
        "[[services]]\nname = \"app\"\nimage = \"{image}:1.0.0\"\npolicy = \"semver\"\ncompose_file = \"{dir}/docker-compose.yml\"\n",
        &[],
    );
    let id_old = s.p.push("1.0.0", HEALTHY);
    s.compose(&["up", "-d"]);
    s.p.push("1.1.0", HEALTHY);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "failed", "{reports:?}");
    let reason = reports["app"]["reason"].as_str().unwrap();
    assert!(reason.contains("worker"), "{reason}");
    assert_eq!(s.p.read(&s.p.dir.join(".env")), "APP_TAG=1.0.0\n");
    let project = s.p.project_name();
    assert_eq!(images(&s.containers(&project, "worker"))[0].0, id_old);
}

/// A service in a profile, started with `--profile extra`, is updated with that profile active
/// (doctor names it).
fn a_service_in_a_profile_is_updated_with_the_profile(flavor: Flavor) {
    let compose = "services:\n  app:\n    image: '{image}:1.0.0'\n    profiles: [extra]\n    network_mode: none\n    labels:\n      lookout.test: \"{label}\"\n";
    let mut s = Started::new(
        &format!("run-profile-{flavor:?}"),
        flavor,
        &[("docker-compose.yml", compose)],
        "[[services]]\nname = \"app\"\nimage = \"{image}:1.0.0\"\npolicy = \"semver\"\ncompose_file = \"{dir}/docker-compose.yml\"\n",
        &["--profile", "extra"],
    );
    s.p.push("1.0.0", HEALTHY);
    s.compose(&["up", "-d"]);
    let (_, doctor, _) = s.p.lookout(&["doctor"]);
    assert!(doctor.contains("; profiles extra"), "{doctor}");
    let id_new = s.p.push("1.1.0", HEALTHY);
    let reports = s.update();
    assert_eq!(reports["app"]["result"], "updated", "{reports:?}");
    assert_eq!(
        images(&s.containers(&s.p.project_name(), "app")),
        [(id_new, "running/healthy".into())]
    );
}

#[test]
fn a_service_in_a_profile_is_updated_with_the_profile_compose_v2() {
    a_service_in_a_profile_is_updated_with_the_profile(Flavor::V2);
}

#[test]
fn a_service_in_a_profile_is_updated_with_the_profile_compose_v1() {
    a_service_in_a_profile_is_updated_with_the_profile(Flavor::V1);
}
