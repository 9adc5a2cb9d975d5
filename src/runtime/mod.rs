//! The seam between lookout and Docker: the Engine API for everything, the compose CLI for `up`.
//!
//! [`ContainerRuntime`] and [`Compose`] are what the update engine is generic over, so the
//! engine's tests can use fakes (`tests/util/fakes.rs`). [`Docker`] implements it over the Engine API (bollard): pull by digest with
//! credentials, image and container inspection (state, health, restart count), tags, removal.
//! [`compose_cli`] runs `docker compose` (v2) or `docker-compose` (v1) for `up -d --no-deps` and
//! for the resolved configuration, and computes a project's name as compose does, so
//! [`ContainerRuntime::service_containers`] finds the containers compose created by their labels.
//! [`health`] is the gate an update must pass: a pure [`health::judge`] over observations and the
//! polling loop [`health::wait_healthy`].
//!
//! Nothing here reads configuration or decides whether to update; nothing here writes files.
//! Credentials travel as [`Secret`] and never appear in an error or a log line.

pub mod compose;
pub mod compose_cli;
pub mod compose_labels;
mod docker;
pub mod health;
pub mod recreate;
pub mod swarm;
pub(crate) mod view;

use std::fmt;
use std::future::Future;
use std::time::Duration;

pub use compose::{Compose, locate_project};
pub use compose_cli::{ComposeCli, ComposeFlavor, ComposeProject, LazyCompose, ProjectSource};
pub use docker::Docker;
pub use health::{
    GateFailure, GateOptions, Observation, ProbeResult, Verdict, judge, wait_healthy,
};

use crate::secret::Secret;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, ImageConfig,
};

/// Compose's label holding the project name on every container it creates.
pub(crate) const LABEL_PROJECT: &str = "com.docker.compose.project";
/// Compose's label holding the service name.
pub(crate) const LABEL_SERVICE: &str = "com.docker.compose.service";
/// `True` on containers made by `compose run`, which are not the service's containers.
pub(crate) const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";

/// What lookout needs from a container engine. Every method names what it acts on in its error.
pub trait ContainerRuntime: Send + Sync {
    /// Pulls `reference` (normally `repo@sha256:…`, by digest), with registry credentials when
    /// given. Fails on the first error line of the pull's progress stream.
    fn pull(
        &self,
        reference: &str,
        auth: Option<&RegistryLogin>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// The local image with this reference or id; `None` when there is none.
    fn image(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<ImageInfo>, RuntimeError>> + Send;

    /// `docker tag SOURCE REPO:TAG`; `source` is an image id or reference.
    fn tag(
        &self,
        source: &str,
        repo: &str,
        tag: &str,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Removes one image reference (a tag, or the image when it is the last). Never forced: an
    /// image a container still uses is kept and reported as [`ImageRemoval::InUse`].
    fn remove_image(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<ImageRemoval, RuntimeError>> + Send;

    /// The containers compose created for a service (any state, `compose run` ones excluded),
    /// found by the labels `com.docker.compose.project` and `com.docker.compose.service`,
    /// sorted by name.
    fn service_containers(
        &self,
        project: &str,
        service: &str,
    ) -> impl Future<Output = Result<Vec<ContainerInfo>, RuntimeError>> + Send;

    /// Every container compose created on this host, in any state, one-off ones included (their
    /// labels say so), from one container list: enough to tell which compose run made each.
    fn compose_containers(
        &self,
    ) -> impl Future<Output = Result<Vec<ContainerSummary>, RuntimeError>> + Send;

    /// Every container on this host, compose's or not, in any state, from one container list
    /// (what discovery watches).
    fn containers(
        &self,
    ) -> impl Future<Output = Result<Vec<ContainerSummary>, RuntimeError>> + Send;

    /// Follows the engine's container events that change what runs (`start`, `destroy`,
    /// `rename`), sending each to `sink`, until the stream ends (`Ok`) or fails; the caller
    /// reconnects.
    fn container_events(
        &self,
        sink: tokio::sync::mpsc::Sender<ContainerEvent>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// One container by id or name.
    fn container(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<ContainerInfo, RuntimeError>> + Send;

    /// The engine's API version: whether the engine answers at all (the daemon's `/readyz`).
    fn version(&self) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    // Standalone containers (`docker run`): what recreating one takes (see [`recreate`]).

    /// The whole inspect answer of a container by id or name; `None` when there is none.
    fn inspect_container(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ContainerInspectResponse>, RuntimeError>> + Send;

    /// The `Config` of a local image by reference or id; `None` when there is no such image.
    fn image_config(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<ImageConfig>, RuntimeError>> + Send;

    /// Every container on the host in any state, inspected: where dependents are found.
    fn all_containers(
        &self,
    ) -> impl Future<Output = Result<Vec<ContainerInspectResponse>, RuntimeError>> + Send;

    /// Creates a container named `name`; returns its id.
    fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// Starts a container; one already running is left as it is.
    fn start_container(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Stops a container (its stop signal, then SIGKILL after its stop timeout); one already
    /// stopped is left as it is.
    fn stop_container(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Renames a container.
    fn rename_container(
        &self,
        id: &str,
        new_name: &str,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Removes a container, stopping it first when it runs; its volumes stay.
    fn remove_container(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Connects a container to one more network with these endpoint settings.
    fn connect_network(
        &self,
        network: &str,
        container: &str,
        endpoint: EndpointSettings,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
}

/// Credentials for one registry, sent with a pull (lookout never runs `docker login`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    pub username: String,
    pub password: Secret,
    /// The registry host as in image references (`registry.example.com:5000`, `docker.io`).
    pub server: String,
}

/// A local image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `sha256:…`
    pub id: String,
    pub repo_tags: Vec<String>,
    /// `repo@sha256:…` for each registry the image was pulled from or pushed to.
    pub repo_digests: Vec<String>,
    /// The image defines a `HEALTHCHECK` (and does not disable it with `NONE`).
    pub has_healthcheck: bool,
    /// The image's own `LABEL`s, which a container shows among its labels too (discovery does
    /// not take them for policy).
    pub labels: std::collections::HashMap<String, String>,
}

/// What happened to an image reference lookout asked to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRemoval {
    Removed,
    /// There was no such image or tag.
    Absent,
    /// A container uses the image, so Docker kept it; `detail` is Docker's message.
    InUse {
        detail: String,
    },
}

/// A container's state as Docker reports it (`State.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    /// A state this version of lookout does not know.
    Unknown,
}

impl ContainerState {
    /// Reads Docker's `State.Status` word (`running`, `exited`, …).
    pub fn parse(status: &str) -> Self {
        match status {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "exited" => Self::Exited,
            "dead" => Self::Dead,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of a container's `HEALTHCHECK` (`State.Health.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container as the engine's container list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub labels: std::collections::HashMap<String, String>,
    /// The id of the image the container runs (`sha256:…`).
    pub image_id: String,
    pub state: ContainerState,
}

/// A container event of the engine's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// `start`, `destroy` or `rename`.
    pub action: String,
    pub id: String,
    /// The container's name (its new name after a rename).
    pub name: String,
}

/// The container events discovery re-lists on.
pub const WATCHED_EVENTS: &[&str] = &["start", "destroy", "rename"];

/// A container as inspected at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    /// The id of the image the container runs (`sha256:…`).
    pub image_id: String,
    /// The image as the container was created with it (`Config.Image`).
    pub image_ref: String,
    pub state: ContainerState,
    /// `None` when the container has no healthcheck.
    pub health: Option<Health>,
    /// Output of the most recent healthcheck run, to tell operators why it failed.
    pub health_log: Option<String>,
    pub restart_count: u64,
    /// Set when the container is not running (exited, dead, restarting).
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub started_at: Option<String>,
    pub has_healthcheck: bool,
}

impl ContainerInfo {
    /// One line for logs and gate messages: `web-1 running (healthy), 0 restarts`.
    pub(crate) fn describe(&self) -> String {
        let mut s = format!("{} {}", self.name, self.state);
        if let Some(health) = self.health {
            s.push_str(&format!(" ({health})"));
        }
        if let Some(code) = self.exit_code {
            s.push_str(&format!(", exit code {code}"));
        }
        if self.oom_killed {
            s.push_str(", killed: out of memory");
        }
        s.push_str(&format!(", {} restart(s)", self.restart_count));
        s
    }
}

/// Why a Docker or compose operation failed. Messages name what was acted on and never contain
/// credentials.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "cannot connect to the Docker engine ({host}): {detail}; is Docker running, and may \
         lookout use its socket?"
    )]
    Connect { host: String, detail: String },
    #[error("Docker API: cannot {action}: {}{message}", status_text(*status))]
    Api {
        /// What lookout tried, naming the image, container or service (`pull image nginx@sha256:…`).
        action: String,
        /// The HTTP status Docker answered with; `None` when no answer arrived.
        status: Option<u16>,
        message: String,
    },
    #[error("pulling {reference} failed: {message}")]
    Pull { reference: String, message: String },
    #[error("no compose found: {tried}; install the Docker Compose plugin (`docker compose`)")]
    ComposeNotFound { tried: String },
    #[error("cannot run `{command}`: {detail}")]
    ComposeSpawn { command: String, detail: String },
    #[error("`{command}` failed ({}){}", exit_text(*code), stderr_text(stderr_tail))]
    ComposeFailed {
        command: String,
        /// `None` when the process was killed by a signal.
        code: Option<i32>,
        stderr_tail: String,
    },
    #[error(
        "`{command}` did not finish within {}s and was killed{}",
        timeout.as_secs(), stderr_text(stderr_tail)
    )]
    ComposeTimeout {
        command: String,
        timeout: Duration,
        stderr_tail: String,
    },
    #[error("`{command}` printed output lookout cannot read: {detail}")]
    ComposeOutput { command: String, detail: String },
    #[error("compose service {service:?}: {reason}")]
    Service { service: String, reason: String },
    #[error("compose project of {}: {reason}", file.display())]
    Project {
        file: std::path::PathBuf,
        reason: String,
    },
}

impl RuntimeError {
    /// Docker answered 404: the image or container does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Api {
                status: Some(404),
                ..
            }
        )
    }
}

fn status_text(status: Option<u16>) -> String {
    status.map_or_else(String::new, |s| format!("status {s}: "))
}

fn exit_text(code: Option<i32>) -> String {
    code.map_or_else(|| "killed by a signal".into(), |c| format!("exit code {c}"))
}

fn stderr_text(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", tail.trim_end())
    }
}

/// The last `max_lines` lines of `text`, for error messages that stay readable.
pub(crate) fn tail(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}
