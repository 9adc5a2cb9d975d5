//! The runtime seam against the real engine (Docker 20.10, API 1.41) and both compose
//! generations: pulls by digest with credentials, tags, removal, `compose up`, project names,
//! and the health gate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lookout::runtime::compose_cli::ComposeFlavor;
use lookout::runtime::{
    ComposeCli, ComposeProject, ContainerRuntime, ContainerState, Docker, GateFailure, GateOptions,
    Health, ImageRemoval, RegistryLogin, RuntimeError, wait_healthy,
};
use lookout::secret::Secret;

use crate::util::compose::{ComposeDown, Labelled, run_as_service};
use crate::util::{LocalRegistry, RegistryAuth, Scratch, TestImage, free_port, run};

/// Debian's compose v1; `docker-compose` on `PATH` may be a v2 binary.
const COMPOSE_V1: &str = "/usr/bin/docker-compose";
const COMPOSE_TIMEOUT: Duration = Duration::from_secs(60);

/// A healthcheck that passes once the command created its marker file (`FROM scratch` has no
/// `/tmp`).
const HEALTHY: &str = "HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD test -f /tmp/healthy\n\
     CMD [\"/bin/sh\", \"-c\", \"mkdir -p /tmp && touch /tmp/healthy; trap 'exit 0' TERM; while true; do sleep 1; done\"]";

fn gate(timeout: u64, stable: u64) -> GateOptions {
    GateOptions {
        timeout: Duration::from_secs(timeout),
        stable: Duration::from_secs(stable),
        probe_url: None,
        poll: Duration::from_millis(250),
    }
}

async fn docker() -> Docker {
    Docker::connect()
        .await
        .expect("connect to the Docker engine")
}

#[tokio::test]
async fn negotiates_the_api_version_down_to_the_engines() {
    let docker = docker().await;
    let server = docker.version().await.unwrap();
    assert_eq!(docker.api_version(), server, "negotiated version");
    // bollard on its own claims a newer API than this engine speaks.
    let raw = bollard::Docker::connect_with_defaults().unwrap();
    let (claimed, negotiated) = (version(&raw.client_version().to_string()), version(&server));
    assert!(claimed >= negotiated, "{claimed:?} < {negotiated:?}");
    // And requests work at the negotiated version.
    assert_eq!(docker.image("lookout-test/absent:0").await.unwrap(), None);
}

fn version(s: &str) -> (u32, u32) {
    let (major, minor) = s.split_once('.').unwrap();
    (major.parse().unwrap(), minor.parse().unwrap())
}

#[tokio::test]
async fn pulls_by_digest_with_credentials_tags_and_removes() {
    let scratch = Scratch::new("runtime-pull");
    let _cleanup = Labelled(scratch.id.clone());
    let password = "s3cret-pull-pw";
    let registry = LocalRegistry::start(
        &scratch,
        RegistryAuth::Basic {
            user: "puller".into(),
            password: password.into(),
        },
    );
    let tag = registry.image(&format!("runtime/{}:1.0.0", scratch.id));
    let image = TestImage::build(&scratch, &tag, "1.0.0", HEALTHY);
    let digest = image.push(&tag);
    // The harness logged the Docker CLI in to push; lookout must not depend on that login.
    run(Command::new("docker").args(["logout", &registry.host]));
    run(Command::new("docker").args(["rmi", &tag]));
    let repo = tag.rsplit_once(':').unwrap().0;
    let by_digest = format!("{repo}@{digest}");

    let docker = docker().await;
    assert_eq!(docker.image(&by_digest).await.unwrap(), None);

    let error = docker.pull(&by_digest, None).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&by_digest), "{message}");
    assert!(
        message.contains("no basic auth credentials") || message.contains("unauthorized"),
        "{message}"
    );

    let wrong = RegistryLogin {
        username: "puller".into(),
        password: Secret::new("wrong-password-123"),
        server: registry.host.clone(),
    };
    let message = docker
        .pull(&by_digest, Some(&wrong))
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains(&by_digest), "{message}");
    assert!(!message.contains("wrong-password-123"), "{message}");

    let login = RegistryLogin {
        password: Secret::new(password),
        ..wrong
    };
    assert!(!format!("{login:?}").contains(password));
    docker.pull(&by_digest, Some(&login)).await.unwrap();
    assert!(registry.count("GET", &format!("/manifests/{digest}")) >= 1);

    let pulled = docker
        .image(&by_digest)
        .await
        .unwrap()
        .expect("pulled image");
    assert_eq!(pulled.id, image.id);
    assert!(pulled.repo_digests.contains(&by_digest), "{pulled:?}");
    assert!(pulled.repo_tags.is_empty(), "{pulled:?}");
    assert!(pulled.has_healthcheck);

    // Tag it as the compose file will name it, by id and by reference.
    docker.tag(&pulled.id, repo, "1.0.0").await.unwrap();
    docker.tag(&by_digest, repo, "rollback").await.unwrap();
    let tagged = docker
        .image(&format!("{repo}:1.0.0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tagged.id, image.id);
    assert_eq!(tagged.repo_tags.len(), 2, "{tagged:?}");

    // Removing a tag keeps the image while another tag holds it.
    let rollback = format!("{repo}:rollback");
    assert_eq!(
        docker.remove_image(&rollback).await.unwrap(),
        ImageRemoval::Removed
    );
    assert_eq!(docker.image(&rollback).await.unwrap(), None);
    assert!(docker.image(&image.id).await.unwrap().is_some());
    assert_eq!(
        docker.remove_image(&rollback).await.unwrap(),
        ImageRemoval::Absent
    );

    let error = docker
        .tag(
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            repo,
            "x",
        )
        .await
        .unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert!(error.to_string().contains("status 404"), "{error}");
}

#[tokio::test]
async fn an_image_a_container_uses_is_kept_and_reported() {
    let scratch = Scratch::new("runtime-in-use");
    let _cleanup = Labelled(scratch.id.clone());
    let tag = format!("lookout-test/{}:1", scratch.id);
    let image = TestImage::build(&scratch, &tag, "1", "");
    run_as_service(&scratch, "inuse", "web", &tag, &[]);
    let docker = docker().await;
    let removal = docker.remove_image(&image.id).await.unwrap();
    let ImageRemoval::InUse { detail } = removal else {
        panic!("{removal:?}")
    };
    assert!(detail.contains("container"), "{detail}");
    assert!(docker.image(&image.id).await.unwrap().is_some());
}

/// A compose project in a folder whose name needs normalising: `_Up.<id>` is `up<id>` for v2
/// and `_up<id>` for v1. The image comes from `${WEB_IMAGE}` in `.env`.
fn write_project(scratch: &Scratch, image: &str) -> PathBuf {
    let dir = format!("_Up.{}", scratch.id);
    scratch.write(&format!("{dir}/.env"), format!("WEB_IMAGE={image}\n"));
    scratch.write(
        &format!("{dir}/compose.yaml"),
        format!(
            "services:\n  web:\n    image: ${{WEB_IMAGE}}\n    network_mode: none\n    stop_grace_period: 1s\n    labels:\n      lookout.test: \"{}\"\n",
            scratch.id
        ),
    )
}

fn project_label(container: &str) -> String {
    run(Command::new("docker").args([
        "inspect",
        "--format",
        "{{index .Config.Labels \"com.docker.compose.project\"}}",
        container,
    ]))
    .trim()
    .to_owned()
}

async fn compose_up_and_find(cli: ComposeCli, command: &[&str], expected_name: &str) {
    let scratch = Scratch::new(&format!("runtime-up-{:?}", cli.flavor()));
    let tag = format!("lookout-test/{}:1", scratch.id);
    let image = TestImage::build(&scratch, &tag, "1", "");
    let file = write_project(&scratch, &tag);
    let env = |name: &str| std::env::var(name).ok();
    let project = cli.project(&file, None, env).unwrap();
    let _down = ComposeDown {
        command: command.iter().map(|s| s.to_string()).collect(),
        files: project.files.clone(),
        project_dir: project.project_dir.clone(),
        scratch_id: scratch.id.clone(),
    };
    assert_eq!(project.name, expected_name.replace("<id>", &scratch.id));

    // compose resolves the variable from .env.
    assert_eq!(
        cli.service_image(&project, "web").await.unwrap().as_deref(),
        Some(tag.as_str())
    );

    cli.up(&project, &["web"]).await.unwrap();
    let docker = docker().await;
    let containers = docker
        .service_containers(&project.name, "web")
        .await
        .unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    let web = &containers[0];
    assert_eq!(web.state, ContainerState::Running);
    assert_eq!(web.image_id, image.id);
    assert_eq!(web.image_ref, tag);
    assert!(!web.has_healthcheck);
    assert_eq!(project_label(&web.id), project.name);
    assert_eq!(docker.container(&web.id).await.unwrap().id, web.id);
    // A second `up` with nothing changed keeps the container.
    cli.up(&project, &["web"]).await.unwrap();
    assert_eq!(
        docker
            .service_containers(&project.name, "web")
            .await
            .unwrap()[0]
            .id,
        web.id
    );

    let passed = wait_healthy(&docker, &project.name, "web", &image.id, &gate(20, 2))
        .await
        .unwrap();
    assert_eq!(passed.id, web.id);

    let error = cli.up(&project, &["nope"]).await.unwrap_err();
    let RuntimeError::ComposeFailed {
        command,
        code,
        stderr_tail,
    } = &error
    else {
        panic!("{error:?}")
    };
    assert!(command.contains("up -d --no-deps nope"), "{command}");
    assert!(command.contains(&file.display().to_string()), "{command}");
    assert_eq!(*code, Some(1), "{error}");
    assert!(stderr_tail.contains("nope"), "{error}");
}

#[tokio::test]
async fn compose_v2_up_and_find_its_containers_by_labels() {
    let cli = ComposeCli::detect(COMPOSE_TIMEOUT).await.unwrap();
    assert_eq!(cli.flavor(), ComposeFlavor::V2Plugin, "{cli:?}");
    assert!(cli.version().starts_with('2'), "{cli:?}");
    compose_up_and_find(cli, &["docker", "compose"], "up<id>").await;
}

#[tokio::test]
async fn compose_v1_up_and_find_its_containers_by_labels() {
    let cli = ComposeCli::with_program(Path::new(COMPOSE_V1), COMPOSE_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(cli.flavor(), ComposeFlavor::V1, "{cli:?}");
    assert!(cli.version().starts_with("1."), "{cli:?}");
    compose_up_and_find(cli, &[COMPOSE_V1], "_up<id>").await;
}

#[tokio::test]
async fn a_docker_compose_on_path_is_asked_its_version() {
    let cli = ComposeCli::with_program(Path::new("docker-compose"), COMPOSE_TIMEOUT)
        .await
        .unwrap();
    let reported = run(Command::new("docker-compose").arg("version"));
    let expected = if reported.contains("version 1.") {
        ComposeFlavor::V1
    } else {
        ComposeFlavor::V2Standalone
    };
    assert_eq!(cli.flavor(), expected, "{reported}");
}

#[tokio::test]
async fn compose_that_hangs_is_killed_at_the_timeout_with_its_stderr() {
    let scratch = Scratch::new("runtime-hang");
    let fake = scratch.write(
        "fake-compose",
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo 'Docker Compose version v2.99.0'; exit 0; fi\n\
         echo \"pulling forever\" >&2\nsleep 30 &\nwait\n",
    );
    run(Command::new("chmod").arg("+x").arg(&fake));
    let cli = ComposeCli::with_program(&fake, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(cli.flavor(), ComposeFlavor::V2Standalone);
    let file = scratch.write("app/compose.yaml", "services: {}\n");
    let project = ComposeProject::from_file(&file, Some("hang"), |_: &str| None).unwrap();
    let started = std::time::Instant::now();
    let error = cli.up(&project, &["web"]).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let RuntimeError::ComposeTimeout {
        command,
        stderr_tail,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert!(
        command.ends_with("-p hang up -d --no-deps web"),
        "{command}"
    );
    assert!(stderr_tail.contains("pulling forever"), "{error}");
    // The whole process group went: no `sleep 30` is left behind.
    let left = Command::new("pgrep")
        .args(["-f", "^sleep 30$"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// A container for the gate tests, with compose's labels, from an image with `extra` lines.
struct GateCase {
    scratch: Scratch,
    _cleanup: Labelled,
    image: TestImage,
    project: String,
}

impl GateCase {
    fn new(test: &str, extra: &str, run_args: &[&str]) -> Self {
        let scratch = Scratch::new(test);
        let cleanup = Labelled(scratch.id.clone());
        let tag = format!("lookout-test/{}:1", scratch.id);
        let image = TestImage::build(&scratch, &tag, "1", extra);
        let project = format!("gate{}", scratch.id.replace('-', ""));
        run_as_service(&scratch, &project, "web", &tag, run_args);
        Self {
            scratch,
            _cleanup: cleanup,
            image,
            project,
        }
    }

    async fn gate(
        &self,
        opts: &GateOptions,
    ) -> Result<lookout::runtime::ContainerInfo, GateFailure> {
        let _ = &self.scratch;
        wait_healthy(&docker().await, &self.project, "web", &self.image.id, opts).await
    }
}

#[tokio::test]
async fn gate_passes_a_container_that_becomes_healthy() {
    let case = GateCase::new("runtime-gate-healthy", HEALTHY, &[]);
    let passed = case.gate(&gate(30, 60)).await.unwrap();
    assert_eq!(passed.health, Some(Health::Healthy));
    assert!(passed.has_healthcheck);
}

#[tokio::test]
async fn gate_fails_an_unhealthy_container_with_the_check_output() {
    let case = GateCase::new(
        "runtime-gate-unhealthy",
        "HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD [\"/bin/sh\", \"-c\", \"echo database unreachable; exit 1\"]",
        &[],
    );
    let failure = case.gate(&gate(30, 2)).await.unwrap_err();
    let GateFailure::Unhealthy { log } = &failure else {
        panic!("{failure:?}")
    };
    assert!(log.contains("database unreachable"), "{log}");
    assert!(log.contains("exit code 1"), "{log}");
}

const EXITS_AFTER_3S: &str = "CMD [\"/bin/sh\", \"-c\", \"sleep 3; exit 7\"]";

#[tokio::test]
async fn gate_fails_a_container_that_exits_during_the_stable_period() {
    let case = GateCase::new("runtime-gate-exit", EXITS_AFTER_3S, &[]);
    let started = std::time::Instant::now();
    let failure = case.gate(&gate(30, 4)).await.unwrap_err();
    assert_eq!(failure, GateFailure::Exited { code: Some(7) });
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn gate_fails_a_container_that_restarts_during_the_stable_period() {
    let case = GateCase::new(
        "runtime-gate-restart",
        EXITS_AFTER_3S,
        &["--restart", "always"],
    );
    let failure = case.gate(&gate(30, 4)).await.unwrap_err();
    assert!(
        matches!(
            failure,
            GateFailure::Restarted { .. } | GateFailure::Exited { code: Some(7) }
        ),
        "{failure:?}"
    );
}

#[tokio::test]
async fn gate_waits_the_whole_stable_period() {
    let case = GateCase::new("runtime-gate-stable", "", &[]);
    let started = std::time::Instant::now();
    let passed = case.gate(&gate(30, 3)).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(passed.state, ContainerState::Running);
    assert_eq!(passed.health, None);
}

#[tokio::test]
async fn gate_detects_a_container_on_another_image() {
    let case = GateCase::new("runtime-gate-image", "", &[]);
    let expected = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let failure = wait_healthy(
        &docker().await,
        &case.project,
        "web",
        expected,
        &gate(30, 2),
    )
    .await
    .unwrap_err();
    assert_eq!(
        failure,
        GateFailure::WrongImage {
            expected: expected.into(),
            found: case.image.id.clone(),
        }
    );
}

const HTTPD: &str = "RUN [\"/bin/sh\", \"-c\", \"mkdir /www && echo ok > /www/health\"]\n\
     CMD [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]";

#[tokio::test]
async fn gate_requires_the_probe_url_to_answer_2xx() {
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let case = GateCase::new("runtime-gate-probe", HTTPD, &["-p", &publish]);

    let good = GateOptions {
        probe_url: Some(format!("http://127.0.0.1:{port}/health")),
        ..gate(20, 1)
    };
    case.gate(&good).await.unwrap();

    let missing = GateOptions {
        probe_url: Some(format!("http://user:probe-pw@127.0.0.1:{port}/missing")),
        ..gate(3, 1)
    };
    let failure = case.gate(&missing).await.unwrap_err();
    let GateFailure::Probe { url, detail } = &failure else {
        panic!("{failure:?}")
    };
    assert_eq!(url, &format!("http://127.0.0.1:{port}/missing"));
    assert!(detail.contains("404"), "{detail}");
    assert!(!failure.to_string().contains("probe-pw"), "{failure}");
}
