//! `lookout doctor`: is this host ready for lookout? One line per check, each failure with what
//! to do about it.
//!
//! [`run`] probes the environment the way the daemon would use it — the configuration, Docker,
//! compose, every enabled service's compose file, container and registry, the state folder, the
//! time zone and the maintenance windows — and returns a list of [`Check`]s. It changes nothing:
//! the state lock is not taken (a running daemon holds it), the only file written is a temporary
//! one in the state folder to prove it writable, and each registry gets one `HEAD` of a manifest.
//!
//! The verdicts are pure: each `*_check` function turns what a probe found into a [`Check`] with
//! its fix text, and [`render_text`], [`render_json`] and [`exit_code`] turn the list into the
//! report. Secrets never reach a check: registry and config errors carry none, and credentials
//! are described by their user name only.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::compose::{ComposeError, ComposeFile, ImageSite, locate};
use crate::config::{self, Config, ConfigError, RegistryKind, ServiceSpec};
use crate::reference::ImageRef;
use crate::registry::{
    Credential, Digests, ErrorKind, Registries, RegistryError, RegistryOptions, RetryPolicy,
};
use crate::runtime::{
    ComposeCli, ComposeFlavor, ComposeProject, ContainerInfo, ContainerRuntime, ContainerState,
    Docker, RuntimeError,
};
use crate::schedule::Windows;
use crate::state::{self, ParseError};

/// How long the Docker probe may take before the engine counts as unreachable.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(15);

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// All well; what was found.
    Pass(String),
    /// Works, but worth fixing; does not fail the run.
    Warn { detail: String, fix: String },
    /// lookout cannot work this way.
    Fail { detail: String, fix: String },
    /// Not checked because an earlier check failed; says which.
    Skip(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked: `docker`, `registry for web (ghcr.io)`.
    pub name: String,
    pub outcome: Outcome,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            outcome: Outcome::Pass(detail.into()),
        }
    }

    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            outcome: Outcome::Warn {
                detail: detail.into(),
                fix: fix.into(),
            },
        }
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            outcome: Outcome::Fail {
                detail: detail.into(),
                fix: fix.into(),
            },
        }
    }

    pub fn skip(name: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            outcome: Outcome::Skip(why.into()),
        }
    }

    /// `PASS`, `WARN`, `FAIL` or `SKIP`.
    pub fn status(&self) -> &'static str {
        match self.outcome {
            Outcome::Pass(_) => "PASS",
            Outcome::Warn { .. } => "WARN",
            Outcome::Fail { .. } => "FAIL",
            Outcome::Skip(_) => "SKIP",
        }
    }

    pub fn detail(&self) -> &str {
        match &self.outcome {
            Outcome::Pass(d) | Outcome::Skip(d) => d,
            Outcome::Warn { detail, .. } | Outcome::Fail { detail, .. } => detail,
        }
    }

    /// What to do, for warnings and failures.
    pub fn fix(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Warn { fix, .. } | Outcome::Fail { fix, .. } => Some(fix),
            _ => None,
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self.outcome, Outcome::Fail { .. })
    }
}

/// 0 when nothing failed (warnings allowed), 1 otherwise.
pub fn exit_code(checks: &[Check]) -> u8 {
    u8::from(checks.iter().any(Check::is_failure))
}

/// One line per check (`PASS  docker: reachable, API 1.41`), continuation lines indented, then
/// a summary line.
pub fn render_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let mut line = format!("{}: {}", c.name, c.detail());
        if let Some(fix) = c.fix() {
            let _ = write!(line, " — fix: {fix}");
        }
        let line = line.replace('\n', "\n      ");
        let _ = writeln!(out, "{}  {line}", c.status());
    }
    let count = |s: &str| checks.iter().filter(|c| c.status() == s).count();
    let _ = write!(
        out,
        "{} check(s): {} passed, {} warning(s), {} failed",
        checks.len(),
        count("PASS"),
        count("WARN"),
        count("FAIL"),
    );
    if count("SKIP") > 0 {
        let _ = write!(out, ", {} skipped", count("SKIP"));
    }
    out.push('\n');
    out
}

/// `{"ok": …, "checks": [{"name", "status", "detail", "fix"}], "passed", "warnings", "failed",
/// "skipped"}`.
pub fn render_json(checks: &[Check]) -> serde_json::Value {
    let count = |s: &str| checks.iter().filter(|c| c.status() == s).count();
    serde_json::json!({
        "ok": exit_code(checks) == 0,
        "checks": checks.iter().map(|c| serde_json::json!({
            "name": c.name,
            "status": c.status().to_ascii_lowercase(),
            "detail": c.detail(),
            "fix": c.fix(),
        })).collect::<Vec<_>>(),
        "passed": count("PASS"),
        "warnings": count("WARN"),
        "failed": count("FAIL"),
        "skipped": count("SKIP"),
    })
}

/// Where the probes look; [`Options::from_env`] is what `lookout doctor` uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// `LOOKOUT_COMPOSE_BINARY`: the compose program to use instead of detecting one.
    pub compose_binary: Option<PathBuf>,
    /// `DOCKER_HOST`, for messages (the Docker client reads it itself).
    pub docker_host: String,
    pub registry: RegistryOptions,
}

impl Options {
    pub fn from_env() -> Self {
        Self {
            compose_binary: std::env::var_os("LOOKOUT_COMPOSE_BINARY").map(PathBuf::from),
            docker_host: std::env::var("DOCKER_HOST")
                .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned()),
            registry: RegistryOptions {
                // One quick answer is what a doctor needs; the daemon retries longer.
                request_timeout: Duration::from_secs(15),
                retry: RetryPolicy {
                    attempts: 2,
                    ..RetryPolicy::default()
                },
                ..RegistryOptions::default()
            },
        }
    }
}

/// Runs every check against the configuration at `config_path`.
pub async fn run(config_path: &Path, options: &Options) -> Vec<Check> {
    let config = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => return vec![config_failure(config_path, &e)],
    };
    let mut checks = vec![config_check(config_path, &config)];

    let (docker, compose) = tokio::join!(
        tokio::time::timeout(DOCKER_TIMEOUT, probe_docker()),
        probe_compose(options.compose_binary.as_deref(), config.compose_timeout),
    );
    let docker = docker.unwrap_or_else(|_| {
        Err(RuntimeError::Connect {
            host: options.docker_host.clone(),
            detail: format!("no answer within {}s", DOCKER_TIMEOUT.as_secs()),
        })
    });
    checks.push(docker_check(
        &options.docker_host,
        docker.as_ref().map(|(d, v)| (v.as_str(), d.api_version())),
    ));
    checks.push(compose_check(
        options.compose_binary.as_deref(),
        compose
            .as_ref()
            .map(|c| (c.flavor(), c.version(), c.program())),
    ));
    checks.push(state_check(&probe_state(&config)));
    checks.push(timezone_check(
        config.timezone.as_ref(),
        TimeZone::try_system().map_err(|e| e.to_string()),
        uses_local_zone(&config),
    ));
    let local = TimeZone::try_system().unwrap_or(TimeZone::UTC);
    checks.extend(schedule_checks(&config, &local, Timestamp::now()));

    let registries = Arc::new(Registries::new(options.registry.clone()));
    let services: Vec<&ServiceSpec> = config.services.iter().filter(|s| s.enabled).collect();
    let mut probes = Vec::new();
    for spec in &services {
        let (file_check, running) =
            service_local_checks(spec, docker.as_ref().ok(), compose.as_ref()).await;
        probes.push((file_check, running));
    }
    let registry_checks = futures_util::future::join_all(
        services
            .iter()
            .zip(&probes)
            .map(|(spec, (_, (_, running)))| probe_registry(&registries, spec, running.clone())),
    )
    .await;
    for ((file_check, (container_check, _)), registry_check) in
        probes.into_iter().zip(registry_checks)
    {
        checks.push(file_check);
        checks.push(container_check);
        checks.push(registry_check);
    }
    checks
}

/// `lookout doctor [--json]`: runs the checks and writes the report to `out`; returns the exit
/// code.
pub fn command(config_path: &Path, json: bool, out: &mut dyn io::Write) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let checks = runtime.block_on(run(config_path, &Options::from_env()));
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&render_json(&checks))?
        )?;
    } else {
        write!(out, "{}", render_text(&checks))?;
    }
    Ok(exit_code(&checks))
}

// ---------------------------------------------------------------------------------------------
// Configuration

fn config_failure(path: &Path, e: &ConfigError) -> Check {
    let fix = match e {
        ConfigError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound => format!(
            "create {} (the documented default is config/lookout.toml in lookout's sources), or \
             name another file with --config or LOOKOUT_CONFIG",
            path.display()
        ),
        ConfigError::Read { .. } => format!(
            "let lookout's user read {} (it may hold credentials: mode 0640, group lookout)",
            path.display()
        ),
        ConfigError::Syntax { .. } | ConfigError::Invalid { .. } => format!(
            "correct the file; `lookout config validate {}` lists every problem",
            path.display()
        ),
    };
    Check::fail("config", e.to_string(), fix)
}

fn config_check(path: &Path, config: &Config) -> Check {
    let enabled = config.services.iter().filter(|s| s.enabled).count();
    let detail = format!(
        "{} loads: {} service(s), {enabled} enabled",
        path.display(),
        config.services.len()
    );
    if config.warnings.is_empty() {
        Check::pass("config", detail)
    } else {
        let list: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
        Check::warn(
            "config",
            format!("{detail}; {}", list.join("; ")),
            "set the variables named (or give a default: ${VAR:-value})",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Docker and compose

async fn probe_docker() -> Result<(Docker, String), RuntimeError> {
    let docker = Docker::connect().await?;
    let version = docker.version().await?;
    Ok((docker, version))
}

/// `found` is the engine's API version and the one lookout speaks with it.
pub fn docker_check(host: &str, found: Result<(&str, String), &RuntimeError>) -> Check {
    match found {
        Ok((engine, speaks)) => {
            let mut detail = format!("reachable at {host}, API {engine}");
            if speaks != engine {
                let _ = write!(detail, " (lookout speaks {speaks})");
            }
            Check::pass("docker", detail)
        }
        Err(e @ RuntimeError::Connect { .. }) => Check::fail(
            "docker",
            e.to_string(),
            format!(
                "is dockerd running (`systemctl status docker`)? Is lookout's user in the docker \
                 group, or the socket mounted into its container (-v /var/run/docker.sock:/var/run/docker.sock)? \
                 Is DOCKER_HOST right (now {host})?"
            ),
        ),
        Err(e) => Check::fail(
            "docker",
            e.to_string(),
            "the engine answered but refused; if a socket proxy sits in between, let it pass \
             /version, /containers, /images and /images/create",
        ),
    }
}

async fn probe_compose(
    program: Option<&Path>,
    timeout: Duration,
) -> Result<ComposeCli, RuntimeError> {
    match program {
        Some(p) => ComposeCli::with_program(p, timeout).await,
        None => ComposeCli::detect(timeout).await,
    }
}

/// `found` is the compose lookout will run: its flavor, version and program.
pub fn compose_check(
    configured: Option<&Path>,
    found: Result<(ComposeFlavor, &str, &Path), &RuntimeError>,
) -> Check {
    match found {
        Ok((flavor, version, program)) => {
            let what = match flavor {
                ComposeFlavor::V2Plugin => {
                    format!("{} compose {version} (v2 plugin)", program.display())
                }
                ComposeFlavor::V2Standalone => format!("{} {version} (v2)", program.display()),
                ComposeFlavor::V1 => format!("{} {version} (v1)", program.display()),
            };
            if flavor.is_v1() {
                Check::warn(
                    "compose",
                    format!("{what} found"),
                    "compose v1 is end of life; install the Docker Compose plugin \
                     (docker-compose-plugin) when you can",
                )
            } else {
                Check::pass("compose", format!("{what} found"))
            }
        }
        Err(e) => {
            let fix = match configured {
                Some(p) => format!(
                    "LOOKOUT_COMPOSE_BINARY={} does not work: point it at a working compose \
                     (docker or docker-compose), or unset it to detect one",
                    p.display()
                ),
                None => "install the Docker Compose plugin (package docker-compose-plugin, \
                         `docker compose version` must work) or a docker-compose binary on PATH, \
                         or set LOOKOUT_COMPOSE_BINARY to its path"
                    .to_owned(),
            };
            Check::fail("compose", e.to_string(), fix)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Services: compose file, container, registry

/// What the container check learned for the registry check: the image reference that runs.
type Running = Option<ImageRef>;

async fn service_local_checks(
    spec: &ServiceSpec,
    docker: Option<&(Docker, String)>,
    compose: Result<&ComposeCli, &RuntimeError>,
) -> (Check, (Check, Running)) {
    let file = &spec.compose_file;
    let site = ComposeFile::read(file).and_then(|f| locate(f.text(), &spec.compose_service));
    let folder_writable = parent(file)
        .map(|d| rustix::fs::access(d, rustix::fs::Access::WRITE_OK).map_err(io::Error::from));
    let file_check = compose_file_check(spec, &site, folder_writable);

    let name = format!("container of {}", spec.name);
    let container = match (docker, compose) {
        _ if site.is_err() => (Check::skip(name, "the compose file check failed"), None),
        (None, _) => (Check::skip(name, "Docker is not reachable"), None),
        (_, Err(_)) => (
            Check::skip(name, "no compose found, so the project name is not known"),
            None,
        ),
        (Some((docker, _)), Ok(compose)) => {
            match compose.project(file, None, |n| std::env::var(n).ok()) {
                Err(e) => (
                    Check::fail(
                        name,
                        e.to_string(),
                        "compose cannot name this project; set COMPOSE_PROJECT_NAME or give the \
                         project folder a name of letters and digits",
                    ),
                    None,
                ),
                Ok(project) => {
                    let found = tokio::time::timeout(
                        DOCKER_TIMEOUT,
                        docker.service_containers(&project.name, &spec.compose_service),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(RuntimeError::Api {
                            action: "list containers".into(),
                            status: None,
                            message: format!("no answer within {}s", DOCKER_TIMEOUT.as_secs()),
                        })
                    });
                    let running = found.as_ref().ok().and_then(|list| {
                        list.iter()
                            .find(|c| c.state == ContainerState::Running)
                            .and_then(|c| ImageRef::parse(&c.image_ref).ok())
                    });
                    (container_check(spec, &project, &found), running)
                }
            }
        }
    };
    (file_check, container)
}

fn parent(file: &Path) -> Option<&Path> {
    file.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    })
}

/// The compose file is readable, parses, names the service, and gives it an image lookout can
/// change; its folder is writable (lookout writes the new file beside it and renames it).
pub fn compose_file_check(
    spec: &ServiceSpec,
    site: &Result<ImageSite, ComposeError>,
    folder_writable: Option<io::Result<()>>,
) -> Check {
    let name = format!("compose file for {}", spec.name);
    let file = spec.compose_file.display();
    let service = &spec.compose_service;
    let site = match site {
        Ok(site) => site,
        Err(e) => {
            let fix = match e.kind() {
                ComposeError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                    format!(
                        "set compose_file of service {:?} to the compose file's path as lookout \
                         sees it (in a container, mount the project folder at the same path)",
                        spec.name
                    )
                }
                ComposeError::Io { .. } => format!(
                    "let lookout's user read and write {file} (it edits the file on update)"
                ),
                ComposeError::NotUtf8 { .. } => "save the file as UTF-8".to_owned(),
                ComposeError::InvalidYaml { .. } | ComposeError::NotCompose { .. } => format!(
                    "correct the YAML; `docker compose -f {file} config` shows what compose reads"
                ),
                ComposeError::UnknownService { known, .. } => format!(
                    "set compose_service of service {:?} to one of: {} (it defaults to the \
                     service's name), or add {service:?} to {file}",
                    spec.name,
                    known.join(", ")
                ),
                ComposeError::BuildOnly { .. } | ComposeError::NoImage { .. } => format!(
                    "give {service:?} an `image:` in {file}; lookout updates images from a \
                     registry, not builds"
                ),
                _ => format!("change {service:?} in {file} as the message says"),
            };
            return Check::fail(name, e.to_string(), fix);
        }
    };
    let (where_, shared) = match site {
        ImageSite::Inline { value, .. } => (format!("image {value}"), None),
        ImageSite::Variable {
            template,
            name: var,
            services,
            ..
        } => (
            format!("image {template} (from {var} in the env file)"),
            (services.len() > 1).then(|| (format!("variable {var}"), services)),
        ),
        ImageSite::Anchor {
            anchor,
            value,
            services,
            ..
        } => (
            format!("image {value} (through {anchor})"),
            (services.len() > 1).then(|| (anchor.clone(), services)),
        ),
    };
    let detail = format!("{file}: service {service:?}, {where_}");
    if let Some(Err(e)) = folder_writable {
        let folder = parent(&spec.compose_file).unwrap_or(Path::new("."));
        return Check::fail(
            name,
            format!(
                "{detail}; but its folder {} is not writable: {e}",
                folder.display()
            ),
            format!(
                "let lookout's user write {} (an update writes the new file beside the old one \
                 and renames it over)",
                folder.display()
            ),
        );
    }
    if let Some((via, services)) = shared {
        let others: Vec<&str> = services
            .iter()
            .map(String::as_str)
            .filter(|s| s != service)
            .collect();
        return Check::warn(
            name,
            format!("{detail}, shared through {via} with {}", others.join(", ")),
            format!(
                "lookout refuses to change an image other services share; give {service:?} its \
                 own `image:` to let lookout update it"
            ),
        );
    }
    Check::pass(name, detail)
}

/// The service has a running container, found as compose labels it.
pub fn container_check(
    spec: &ServiceSpec,
    project: &ComposeProject,
    found: &Result<Vec<ContainerInfo>, RuntimeError>,
) -> Check {
    let name = format!("container of {}", spec.name);
    let service = &spec.compose_service;
    let up = format!(
        "docker compose -f {} up -d {service}",
        spec.compose_file.display()
    );
    match found {
        Err(e) => Check::fail(
            name,
            e.to_string(),
            "lookout lists containers through the Docker API; see the docker check",
        ),
        Ok(list) if list.is_empty() => Check::fail(
            name,
            format!(
                "no container of compose service {service:?} in project {:?}",
                project.name
            ),
            format!(
                "start it with `{up}` (lookout finds containers by the labels \
                 com.docker.compose.project={} and com.docker.compose.service={service}, so start \
                 it from this file without another -p)",
                project.name
            ),
        ),
        Ok(list) => match list.iter().find(|c| c.state == ContainerState::Running) {
            Some(c) => Check::pass(name, format!("{}, image {}", c.describe(), c.image_ref)),
            None => {
                let c = &list[0];
                Check::fail(
                    name,
                    format!("{} (not running)", c.describe()),
                    format!(
                        "see why with `docker logs {}`, then start it with `{up}`; lookout only \
                         updates running services",
                        c.name
                    ),
                )
            }
        },
    }
}

/// One `HEAD` of the manifest the service runs (or, without a running container, the
/// configured image), with the service's credentials.
async fn probe_registry(registries: &Registries, spec: &ServiceSpec, running: Running) -> Check {
    let reference = running.unwrap_or_else(|| spec.image.clone());
    let result = match registries.for_service(spec) {
        Ok(registry) => match registry.digest(&reference).await {
            Ok(d) => {
                let who = match spec.registry_type {
                    RegistryKind::Oci | RegistryKind::DockerHub => {
                        registry.credential(&reference).await.ok()
                    }
                    RegistryKind::Ecr | RegistryKind::Gcr => None,
                };
                Ok((d, who))
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    registry_check(
        spec,
        &reference,
        result.as_ref().map(|(d, c)| (d, c.as_ref())),
    )
}

/// What the registry said to one `HEAD` of `reference`.
pub fn registry_check(
    spec: &ServiceSpec,
    reference: &ImageRef,
    answer: Result<(&Digests, Option<&Credential>), &RegistryError>,
) -> Check {
    let host = reference.registry();
    let name = format!("registry for {} ({host})", spec.name);
    let creds = match spec.registry_type {
        RegistryKind::Ecr => {
            "the AWS credentials (registry_config.aws_access_key_id/aws_secret_access_key, or the host's AWS profile or role) and region"
        }
        RegistryKind::Gcr => {
            "the Google credentials (registry_config.service_account_path, or GOOGLE_APPLICATION_CREDENTIALS)"
        }
        RegistryKind::Oci | RegistryKind::DockerHub => {
            "registry_config.username/password, or run `docker login` on this host as lookout's user"
        }
    };
    match answer {
        Ok((digests, who)) => {
            let as_whom = match (spec.registry_type, who) {
                (_, Some(Credential::Basic { username, .. })) => format!("as {username}"),
                (_, Some(Credential::Anonymous)) => "anonymously".to_owned(),
                (RegistryKind::Ecr, _) => "with AWS credentials".to_owned(),
                (RegistryKind::Gcr, _) => "with Google credentials".to_owned(),
                _ => "with its credentials".to_owned(),
            };
            Check::pass(
                name,
                format!(
                    "reachable {as_whom}; {} is {}",
                    reference.familiar(),
                    short_digest(&digests.manifest)
                ),
            )
        }
        Err(e) => match &e.kind {
            ErrorKind::Auth { .. } => Check::fail(name, e.to_string(), format!("check {creds}")),
            ErrorKind::Status {
                status: 401 | 403, ..
            } => Check::fail(
                name,
                e.to_string(),
                format!(
                    "check {creds}, and that they may pull {}",
                    reference.repository()
                ),
            ),
            ErrorKind::NotFound { .. } => Check::warn(
                name,
                e.to_string(),
                format!(
                    "the registry answers and accepts the credentials, but {} is not there; \
                     check `image` of service {:?} and the compose file",
                    reference.familiar(),
                    spec.name
                ),
            ),
            ErrorKind::Unreachable { .. } => Check::fail(
                name,
                e.to_string(),
                format!(
                    "check the host name, DNS, proxy (HTTPS_PROXY) and firewall from this host to \
                     {host}; a plain-HTTP registry needs registry_config.insecure = true, a \
                     private CA registry_config.ca_file"
                ),
            ),
            ErrorKind::RateLimited { .. } => Check::warn(
                name,
                e.to_string(),
                format!("wait, or give {creds} to get a higher limit"),
            ),
            ErrorKind::Protocol { .. } | ErrorKind::Status { .. } => Check::fail(
                name,
                e.to_string(),
                format!(
                    "is {host} a registry of kind {}? set registry_type of service {:?} if not",
                    spec.registry_type, spec.name
                ),
            ),
            ErrorKind::Setup { .. } => Check::fail(name, e.to_string(), format!("check {creds}")),
            ErrorKind::TimedOut { .. } => Check::fail(
                name,
                e.to_string(),
                format!(
                    "check the network path from this host to {host}, and the registry's health"
                ),
            ),
            ErrorKind::TooLarge { .. } => Check::fail(
                name,
                e.to_string(),
                format!("is {host} a registry? lookout refuses answers beyond its limits"),
            ),
        },
    }
}

fn short_digest(d: &str) -> &str {
    d.get(..19).unwrap_or(d)
}

// ---------------------------------------------------------------------------------------------
// State folder

/// What the state probe found, without taking the lock.
#[derive(Debug, Clone)]
pub struct StateFacts {
    pub path: PathBuf,
    /// Creating and removing a file in the state folder (or, when it does not exist yet, in
    /// the nearest existing folder above it, where lookout would create it).
    pub writable: Result<WritableAt, String>,
    /// Used when the configured folder is not writable and `state_fallback` is on.
    pub fallback: Option<PathBuf>,
    pub file: StateFile,
    /// The pid in the lock file, when a live process holds the lock.
    pub lock_holder: Option<LockHolder>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WritableAt {
    /// The folder exists and takes files.
    Folder,
    /// The folder does not exist yet; lookout will create it under this one, which is writable.
    WillCreateUnder(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateFile {
    Missing,
    Loaded {
        services: usize,
        /// Services with an update in flight.
        in_flight: Vec<String>,
    },
    Damaged(String),
    TooNew(u64),
    Unreadable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub lock_file: PathBuf,
    pub pid: Option<u32>,
}

fn probe_state(config: &Config) -> StateFacts {
    let path = config.state_file.clone();
    let writable = probe_writable(parent(&path).unwrap_or(Path::new(".")));
    let fallback = if writable.is_err() && config.state_fallback {
        state::default_fallback_paths(|n| std::env::var_os(n))
            .into_iter()
            .find(|p| probe_writable(parent(p).unwrap_or(Path::new("."))).is_ok())
    } else {
        None
    };
    let file = match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => StateFile::Missing,
        Err(e) => StateFile::Unreadable(e.to_string()),
        Ok(text) => match state::parse(&text) {
            Ok(s) => StateFile::Loaded {
                services: s.services.len(),
                in_flight: s.journal.iter().map(|j| j.intent.service.clone()).collect(),
            },
            Err(ParseError::TooNew { found }) => StateFile::TooNew(found),
            Err(e) => StateFile::Damaged(e.to_string()),
        },
    };
    let mut lock_file = path.clone().into_os_string();
    lock_file.push(".lock");
    let lock_file = PathBuf::from(lock_file);
    StateFacts {
        path,
        writable,
        fallback,
        file,
        lock_holder: lock_holder(&lock_file),
    }
}

/// Creates and removes a file in `dir`, or in the nearest existing folder above it.
fn probe_writable(dir: &Path) -> Result<WritableAt, String> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => return Err(format!("{} is a file, not a folder", at.display())),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => at = p,
                    _ => return Err(format!("{}: {e}", at.display())),
                }
            }
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
    let probe = at.join(format!(".lookout-doctor-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("cannot create a file in {}: {e}", at.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(if at == dir {
        WritableAt::Folder
    } else {
        WritableAt::WillCreateUnder(at.to_owned())
    })
}

/// Who holds the lock, read without taking it: the lock file holds the pid of the lookout that
/// took it last; the kernel's lock table (`/proc/locks`) says whether the lock is held now, and
/// where it cannot be read, whether that pid still runs.
fn lock_holder(lock_file: &Path) -> Option<LockHolder> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(lock_file).ok()?;
    let pid = std::fs::read_to_string(lock_file)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok());
    let held = match std::fs::read_to_string("/proc/locks") {
        Ok(table) => {
            let dev = meta.dev();
            let id = format!(
                "{:02x}:{:02x}:{}",
                rustix::fs::major(dev),
                rustix::fs::minor(dev),
                meta.ino()
            );
            locks_table_holds(&table, &id)
        }
        Err(_) => pid.is_some_and(process_alive),
    };
    held.then(|| LockHolder {
        lock_file: lock_file.to_owned(),
        pid,
    })
}

/// Whether `/proc/locks` lists a granted `FLOCK` on the file `maj:min:inode`.
fn locks_table_holds(table: &str, id: &str) -> bool {
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; a waiter has `->` after `1:`.
        fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&id)
    })
}

fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// The state folder is writable (or a fallback is), the file (if any) is one this lookout
/// reads, and who holds the lock.
pub fn state_check(facts: &StateFacts) -> Check {
    let name = "state";
    let folder = parent(&facts.path).unwrap_or(Path::new("."));
    let mut detail = match &facts.writable {
        Ok(WritableAt::Folder) => format!("{} writable", folder.display()),
        Ok(WritableAt::WillCreateUnder(at)) => format!(
            "{} does not exist yet; lookout creates it ({} is writable)",
            folder.display(),
            at.display()
        ),
        Err(e) => {
            let fix = format!(
                "make {} writable for lookout's user (systemd: StateDirectory=lookout; a \
                 container: mount a volume there), or point state_file at a writable path",
                folder.display()
            );
            return match &facts.fallback {
                Some(fb) => Check::warn(
                    name,
                    format!(
                        "{} is not writable ({e}); lookout falls back to {}",
                        folder.display(),
                        fb.display()
                    ),
                    fix,
                ),
                None => Check::fail(
                    name,
                    format!("{} is not writable: {e}", folder.display()),
                    fix,
                ),
            };
        }
    };
    match &facts.file {
        StateFile::Missing => detail.push_str("; no state file yet"),
        StateFile::Loaded {
            services,
            in_flight,
        } => {
            let _ = write!(
                detail,
                "; {} holds {services} service(s)",
                facts.path.display()
            );
            if !in_flight.is_empty() {
                return Check::warn(
                    name,
                    format!(
                        "{detail}; an update is in flight for {}",
                        in_flight.join(", ")
                    ),
                    "start lookout (or run `lookout update`) to finish or undo it; `lookout status` shows the step",
                );
            }
        }
        StateFile::Damaged(why) => {
            return Check::warn(
                name,
                format!("{detail}; {} is damaged: {why}", facts.path.display()),
                "nothing to do: lookout sets it aside and restores the newest good backup when it starts",
            );
        }
        StateFile::TooNew(found) => {
            return Check::fail(
                name,
                format!(
                    "{detail}; {} was written by a newer lookout (format version {found}, this one reads up to {})",
                    facts.path.display(),
                    state::FORMAT_VERSION
                ),
                "run the newer lookout that wrote it, or move the file away (its history is lost)",
            );
        }
        StateFile::Unreadable(e) => {
            return Check::fail(
                name,
                format!("{detail}; cannot read {}: {e}", facts.path.display()),
                format!("let lookout's user read and write {}", facts.path.display()),
            );
        }
    }
    if let Some(holder) = &facts.lock_holder {
        let _ = write!(
            detail,
            "; in use by a running lookout ({}, lock file {})",
            crate::state::lock::holder_text(holder.pid),
            holder.lock_file.display()
        );
    }
    Check::pass(name, detail)
}

// ---------------------------------------------------------------------------------------------
// Time zone and schedule

/// Whether any window or the cron schedule falls back to the system's zone.
fn uses_local_zone(config: &Config) -> bool {
    let zone_free = config.timezone.is_none();
    let global = zone_free
        && (config.schedule.is_some()
            || config.maintenance_window.is_some()
            || config.maintenance_days.is_some());
    global
        || config.services.iter().any(|s| {
            s.timezone.is_none()
                && zone_free
                && (s.maintenance_window.is_some() || s.maintenance_days.is_some())
        })
}

/// The configured zone, or that the system's can be determined when windows or the cron
/// schedule need it.
pub fn timezone_check(
    configured: Option<&TimeZone>,
    system: Result<TimeZone, String>,
    needed: bool,
) -> Check {
    let name = "timezone";
    if let Some(tz) = configured {
        return Check::pass(
            name,
            format!("{} (configured)", tz.iana_name().unwrap_or("a fixed zone")),
        );
    }
    match system {
        Ok(tz) => Check::pass(
            name,
            format!(
                "system zone {}",
                tz.iana_name()
                    .unwrap_or("(from /etc/localtime, no IANA name)")
            ),
        ),
        Err(e) if needed => Check::warn(
            name,
            format!(
                "the system's time zone cannot be determined ({e}); maintenance windows and the schedule use UTC"
            ),
            "set `timezone` in the configuration (e.g. \"Europe/Berlin\"), or TZ, or mount /etc/localtime (in a container: -v /etc/localtime:/etc/localtime:ro)",
        ),
        Err(_) => Check::pass(
            name,
            "the system's zone is not known (UTC is used), and no window or cron schedule needs one",
        ),
    }
}

/// How checks are scheduled, and for each service whose changes are limited to windows, when
/// the next one opens.
pub fn schedule_checks(config: &Config, local: &TimeZone, now: Timestamp) -> Vec<Check> {
    let tz = config.timezone.clone().unwrap_or_else(|| local.clone());
    let mut checks = vec![match &config.schedule {
        Some(cron) => match cron.next_after(now, &tz) {
            Some(next) => Check::pass(
                "schedule",
                format!(
                    "cron {cron}; next check at {}",
                    next.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M %Z")
                ),
            ),
            None => Check::fail(
                "schedule",
                format!("cron {cron} never fires"),
                "correct `schedule` (minute hour day-of-month month day-of-week)",
            ),
        },
        None => Check::pass(
            "schedule",
            format!(
                "a check every {}s{}",
                config.check_interval.as_secs(),
                if config.check_jitter.is_zero() {
                    String::new()
                } else {
                    format!(" (plus up to {}s jitter)", config.check_jitter.as_secs())
                }
            ),
        ),
    }];
    for spec in config.services.iter().filter(|s| s.enabled) {
        let windows = Windows::for_service(config, spec, local);
        if windows.is_unrestricted() {
            continue;
        }
        let name = format!("maintenance windows for {}", spec.name);
        checks.push(match windows.next_open(now) {
            Some(at) if at == now => Check::pass(name, "a window is open now"),
            Some(at) => Check::pass(
                name,
                format!(
                    "next window opens {}",
                    at.to_zoned(windows.tz.clone())
                        .strftime("%Y-%m-%d %H:%M %Z")
                ),
            ),
            None => Check::warn(
                name,
                "no window opens in the next two weeks, so this service is never updated",
                "check maintenance_window and maintenance_days (no day selected?)",
            ),
        });
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml: &str) -> ServiceSpec {
        let text = format!(
            "[[services]]\nname = \"web\"\nimage = \"ghcr.io/acme/web:1.2\"\ncompose_file = \"/srv/web/compose.yaml\"\n{toml}"
        );
        let doc = config::parse(&text, config::Format::Toml).unwrap();
        config::validate(&doc, &|_| None)
            .unwrap()
            .services
            .remove(0)
    }

    #[test]
    fn report_has_one_line_per_check_and_fixes_on_failures() {
        let checks = vec![
            Check::pass(
                "docker",
                "reachable at unix:///var/run/docker.sock, API 1.41",
            ),
            Check::warn(
                "compose",
                "docker-compose 1.29.2 (v1) found",
                "install the plugin",
            ),
            Check::fail(
                "state",
                "/var/lib/lookout is not writable: denied",
                "make it writable",
            ),
            Check::skip("container of web", "Docker is not reachable"),
        ];
        assert_eq!(
            render_text(&checks),
            "PASS  docker: reachable at unix:///var/run/docker.sock, API 1.41\n\
             WARN  compose: docker-compose 1.29.2 (v1) found — fix: install the plugin\n\
             FAIL  state: /var/lib/lookout is not writable: denied — fix: make it writable\n\
             SKIP  container of web: Docker is not reachable\n\
             4 check(s): 1 passed, 1 warning(s), 1 failed, 1 skipped\n"
        );
    }

    #[test]
    fn multi_line_details_stay_under_their_check() {
        let text = render_text(&[Check::fail("config", "2 problems:\n  - a\n  - b", "fix it")]);
        assert!(
            text.starts_with("FAIL  config: 2 problems:\n        - a\n        - b — fix: fix it\n"),
            "{text}"
        );
    }

    #[test]
    fn exit_code_is_one_on_any_failure_and_zero_with_warnings() {
        let check = |checks: &[Check], want: u8| assert_eq!(exit_code(checks), want, "{checks:?}");
        check(&[], 0);
        check(&[Check::pass("a", "ok")], 0);
        check(&[Check::pass("a", "ok"), Check::warn("b", "hm", "x")], 0);
        check(&[Check::skip("a", "because")], 0);
        check(&[Check::pass("a", "ok"), Check::fail("b", "no", "x")], 1);
        check(
            &[Check::warn("a", "hm", "x"), Check::fail("b", "no", "x")],
            1,
        );
    }

    #[test]
    fn json_report_counts_and_lists_checks() {
        let v = render_json(&[
            Check::pass("docker", "ok"),
            Check::fail("state", "no", "do this"),
        ]);
        assert_eq!(v["ok"], false);
        assert_eq!(
            (v["passed"].as_u64(), v["failed"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(v["checks"][0]["status"], "pass");
        assert!(v["checks"][0]["fix"].is_null());
        assert_eq!(v["checks"][1]["fix"], "do this");
    }

    #[test]
    fn docker_failures_say_what_to_check() {
        let connect = RuntimeError::Connect {
            host: "unix:///nonexistent.sock".into(),
            detail: "No such file or directory".into(),
        };
        let c = docker_check("unix:///nonexistent.sock", Err(&connect));
        assert!(c.is_failure());
        let fix = c.fix().unwrap();
        assert!(
            fix.contains("is dockerd running") && fix.contains("docker group"),
            "{fix}"
        );
        assert!(
            fix.contains("DOCKER_HOST right (now unix:///nonexistent.sock)"),
            "{fix}"
        );

        let c = docker_check("unix:///var/run/docker.sock", Ok(("1.41", "1.41".into())));
        assert_eq!(
            c.detail(),
            "reachable at unix:///var/run/docker.sock, API 1.41"
        );
        let c = docker_check("tcp://d:2375", Ok(("1.47", "1.45".into())));
        assert_eq!(
            c.detail(),
            "reachable at tcp://d:2375, API 1.47 (lookout speaks 1.45)"
        );
    }

    #[test]
    fn compose_results_name_flavor_and_fix() {
        let docker = Path::new("docker");
        let c = compose_check(None, Ok((ComposeFlavor::V2Plugin, "2.40.3", docker)));
        assert_eq!(
            (c.status(), c.detail()),
            ("PASS", "docker compose 2.40.3 (v2 plugin) found")
        );
        let v1 = Path::new("/usr/bin/docker-compose");
        let c = compose_check(Some(v1), Ok((ComposeFlavor::V1, "1.29.2", v1)));
        assert_eq!(c.status(), "WARN");
        let missing = RuntimeError::ComposeNotFound {
            tried: "`docker compose`: …".into(),
        };
        let c = compose_check(None, Err(&missing));
        assert!(c.fix().unwrap().contains("docker-compose-plugin"), "{c:?}");
        let c = compose_check(Some(Path::new("/opt/dc")), Err(&missing));
        assert!(
            c.fix()
                .unwrap()
                .starts_with("LOOKOUT_COMPOSE_BINARY=/opt/dc does not work"),
            "{c:?}"
        );
    }

    #[test]
    fn compose_file_problems_each_have_their_fix() {
        let s = spec("compose_service = \"app\"\n");
        let io_err = |kind| ComposeError::Io {
            action: "read",
            path: "/srv/web/compose.yaml".into(),
            source: io::Error::from(kind),
        };
        type Case = (
            Result<ImageSite, ComposeError>,
            Option<io::Result<()>>,
            &'static str,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                Err(io_err(io::ErrorKind::NotFound)),
                None,
                "FAIL",
                "set compose_file of service \"web\"",
            ),
            (
                Err(io_err(io::ErrorKind::PermissionDenied)),
                None,
                "FAIL",
                "let lookout's user read and write",
            ),
            (
                Err(ComposeError::UnknownService {
                    service: "app".into(),
                    known: vec!["db".into(), "api".into()],
                }),
                None,
                "FAIL",
                "set compose_service of service \"web\" to one of: db, api",
            ),
            (
                Err(ComposeError::BuildOnly {
                    service: "app".into(),
                }),
                None,
                "FAIL",
                "give \"app\" an `image:`",
            ),
            (
                Err(ComposeError::InvalidYaml {
                    line: 3,
                    col: 1,
                    message: "bad".into(),
                }),
                None,
                "FAIL",
                "correct the YAML",
            ),
            (
                Ok(ImageSite::Inline {
                    span: 0..1,
                    quote: crate::compose::Quote::Plain,
                    value: "ghcr.io/acme/web:1.2".into(),
                }),
                Some(Err(io::Error::from(io::ErrorKind::PermissionDenied))),
                "FAIL",
                "let lookout's user write /srv/web",
            ),
            (
                Ok(ImageSite::Anchor {
                    anchor: "&base".into(),
                    span: 0..1,
                    quote: crate::compose::Quote::Plain,
                    value: "x:1".into(),
                    services: vec!["app".into(), "worker".into()],
                }),
                Some(Ok(())),
                "WARN",
                "give \"app\" its own `image:`",
            ),
        ];
        for (site, writable, status, fix) in cases {
            let c = compose_file_check(&s, &site, writable);
            assert_eq!(c.status(), status, "{c:?}");
            assert!(c.fix().unwrap().contains(fix), "want {fix:?} in {c:?}");
        }
        let ok = Ok(ImageSite::Inline {
            span: 0..1,
            quote: crate::compose::Quote::Plain,
            value: "ghcr.io/acme/web:1.2".into(),
        });
        let c = compose_file_check(&s, &ok, Some(Ok(())));
        assert_eq!(
            (c.status(), c.detail()),
            (
                "PASS",
                "/srv/web/compose.yaml: service \"app\", image ghcr.io/acme/web:1.2"
            )
        );
    }

    #[test]
    fn registry_answers_each_have_their_fix() {
        let oci = spec("");
        let ecr = spec("registry_type = \"ecr\"\n");
        let image = ImageRef::parse("ghcr.io/acme/web:1.2").unwrap();
        let err = |kind| ErrorKind::at(kind, "ghcr.io", "acme/web");
        let cases = [
            (
                &oci,
                err(ErrorKind::auth("401 Unauthorized")),
                "FAIL",
                "registry_config.username/password, or run `docker login`",
            ),
            (
                &ecr,
                err(ErrorKind::auth("denied")),
                "FAIL",
                "AWS credentials",
            ),
            (
                &oci,
                err(ErrorKind::Status {
                    what: "HEAD manifest 1.2".into(),
                    status: 403,
                    detail: String::new(),
                }),
                "FAIL",
                "may pull acme/web",
            ),
            (
                &oci,
                err(ErrorKind::NotFound {
                    what: "manifest 1.2".into(),
                }),
                "WARN",
                "check `image` of service \"web\"",
            ),
            (
                &oci,
                err(ErrorKind::Unreachable {
                    what: "HEAD".into(),
                    message: "connection refused".into(),
                }),
                "FAIL",
                "registry_config.insecure = true",
            ),
            (
                &oci,
                err(ErrorKind::RateLimited { retry_after: None }),
                "WARN",
                "higher limit",
            ),
            (
                &oci,
                err(ErrorKind::protocol("HTML page")),
                "FAIL",
                "set registry_type",
            ),
        ];
        for (s, e, status, fix) in cases {
            let c = registry_check(s, &image, Err(&e));
            assert_eq!(c.name, "registry for web (ghcr.io)");
            assert_eq!(c.status(), status, "{c:?}");
            assert!(c.fix().unwrap().contains(fix), "want {fix:?} in {c:?}");
        }
        let digests = Digests {
            manifest: "sha256:0123456789abcdef0123456789abcdef".into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            platform: None,
        };
        let who = Credential::basic("ci", "hunter2");
        let c = registry_check(&oci, &image, Ok((&digests, Some(&who))));
        assert_eq!(
            (c.status(), c.detail()),
            (
                "PASS",
                "reachable as ci; ghcr.io/acme/web:1.2 is sha256:0123456789ab"
            )
        );
        assert!(!render_text(&[c]).contains("hunter2"));
    }

    fn facts(writable: Result<WritableAt, String>) -> StateFacts {
        StateFacts {
            path: "/var/lib/lookout/state.json".into(),
            writable,
            fallback: None,
            file: StateFile::Missing,
            lock_holder: None,
        }
    }

    #[test]
    fn state_folder_outcomes() {
        let c = state_check(&facts(Ok(WritableAt::Folder)));
        assert_eq!(
            (c.status(), c.detail()),
            ("PASS", "/var/lib/lookout writable; no state file yet")
        );

        let mut f = facts(Ok(WritableAt::Folder));
        f.lock_holder = Some(LockHolder {
            lock_file: "/var/lib/lookout/state.json.lock".into(),
            pid: Some(4242),
        });
        f.file = StateFile::Loaded {
            services: 3,
            in_flight: vec![],
        };
        let c = state_check(&f);
        assert_eq!(c.status(), "PASS");
        assert!(
            c.detail()
                .contains("holds 3 service(s); in use by a running lookout (pid 4242"),
            "{c:?}"
        );

        let c = state_check(&facts(Err(
            "cannot create a file in /var/lib/lookout: Permission denied".into(),
        )));
        assert!(c.is_failure());
        assert!(c.fix().unwrap().contains("StateDirectory=lookout"), "{c:?}");

        let mut f = facts(Err("denied".into()));
        f.fallback = Some("/home/u/.local/state/lookout/state.json".into());
        let c = state_check(&f);
        assert_eq!(c.status(), "WARN");
        assert!(
            c.detail()
                .contains("falls back to /home/u/.local/state/lookout/state.json")
        );

        let mut f = facts(Ok(WritableAt::Folder));
        f.file = StateFile::TooNew(9);
        assert!(state_check(&f).is_failure());
        f.file = StateFile::Damaged("the file is empty".into());
        assert_eq!(state_check(&f).status(), "WARN");
        f.file = StateFile::Loaded {
            services: 1,
            in_flight: vec!["web".into()],
        };
        let c = state_check(&f);
        assert_eq!(c.status(), "WARN");
        assert!(
            c.detail().ends_with("an update is in flight for web"),
            "{c:?}"
        );
    }

    #[test]
    fn writable_probe_walks_up_to_the_folder_lookout_would_create_under() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe_writable(dir.path()), Ok(WritableAt::Folder));
        assert_eq!(
            probe_writable(&dir.path().join("a/b")),
            Ok(WritableAt::WillCreateUnder(dir.path().to_owned()))
        );
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let e = probe_writable(&file.join("state")).unwrap_err();
        assert!(e.ends_with("is a file, not a folder"), "{e}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "the probe file is gone"
        );
    }

    #[test]
    fn lock_table_lines_are_matched_by_device_and_inode() {
        let table = "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 777 fd:01:5678 0 EOF\n\
                     2: POSIX  ADVISORY  WRITE 99 fd:01:9999 0 EOF\n";
        assert!(locks_table_holds(table, "fd:01:1234"));
        assert!(
            !locks_table_holds(table, "fd:01:5678"),
            "a waiter does not hold it"
        );
        assert!(!locks_table_holds(table, "fd:01:9999"), "not a flock");
        assert!(!locks_table_holds(table, "fd:01:12345"));
    }

    #[test]
    fn lock_holder_is_found_while_held_and_not_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json.lock");
        let lock = crate::state::StateLock::acquire(&path).unwrap();
        let holder = lock_holder(&path).expect("held");
        assert_eq!(holder.pid, Some(std::process::id()));
        drop(lock);
        if std::path::Path::new("/proc/locks").exists() {
            assert_eq!(lock_holder(&path), None, "released");
        }
    }

    #[test]
    fn timezone_outcomes() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let c = timezone_check(Some(&berlin), Err("no".into()), true);
        assert_eq!(
            (c.status(), c.detail()),
            ("PASS", "Europe/Berlin (configured)")
        );
        let c = timezone_check(None, Ok(berlin), true);
        assert_eq!(c.detail(), "system zone Europe/Berlin");
        let c = timezone_check(None, Err("no /etc/localtime".into()), true);
        assert_eq!(c.status(), "WARN");
        assert!(c.fix().unwrap().contains("set `timezone`"));
        let c = timezone_check(None, Err("no /etc/localtime".into()), false);
        assert_eq!(c.status(), "PASS");
    }

    #[test]
    fn windows_say_when_they_open_next() {
        let text = "maintenance_window = \"02:00-04:00\"\ntimezone = \"UTC\"\ncheck_interval = \"5m\"\ncheck_jitter = \"0s\"\n\
                    [[services]]\nname = \"web\"\nimage = \"nginx:1\"\ncompose_file = \"/c.yaml\"\n\
                    [[services]]\nname = \"db\"\nimage = \"postgres:16\"\ncompose_file = \"/c.yaml\"\nmaintenance_window = \"11:00-13:00\"\n\
                    [[services]]\nname = \"cache\"\nimage = \"redis:7\"\ncompose_file = \"/c.yaml\"\nmaintenance_window = \"00:00-01:00\"\nenabled = false\n";
        let doc = config::parse(text, config::Format::Toml).unwrap();
        let config = config::validate(&doc, &|_| None).unwrap();
        let now: Timestamp = "2025-03-03T12:00:00Z".parse().unwrap();
        let checks = schedule_checks(&config, &TimeZone::UTC, now);
        let lines: Vec<(&str, &str, &str)> = checks
            .iter()
            .map(|c| (c.name.as_str(), c.status(), c.detail()))
            .collect();
        assert_eq!(
            lines,
            [
                ("schedule", "PASS", "a check every 300s"),
                (
                    "maintenance windows for web",
                    "PASS",
                    "next window opens 2025-03-04 02:00 UTC"
                ),
                ("maintenance windows for db", "PASS", "a window is open now"),
            ]
        );
    }
}
