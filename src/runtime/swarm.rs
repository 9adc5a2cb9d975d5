//! Docker Swarm services over the Engine API (bollard): whether this engine is a manager, the
//! service list (one call), one service, a service update to a new `repo:tag@digest` with the
//! registry credentials as `X-Registry-Auth`, Swarm's own rollback, and a service's tasks.
//!
//! lookout decides when and to what; Swarm rolls the new image across replicas and nodes,
//! health-gates it and rolls back. [`SwarmApi`] is the seam the engine goes through
//! ([`Swarm`] over bollard; tests and the benchmark implement it in memory). Everything read
//! from the engine is bounded ([`MAX_SERVICES`], [`MAX_TASKS`], [`MAX_TEXT`]) and mapped into
//! lookout's own types, so an odd answer is an error naming the service, never a panic.
//!
//! bollard's `Service` model carries no `PreviousSpec`; the previous spec is used through
//! Swarm's rollback (`rollback=previous`), which fails with the engine's message when there is
//! none, and an interrupted update is judged from the spec's image and `UpdateStatus`.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing
    )
)]

use std::collections::HashMap;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::models::{
    EndpointPortConfigPublishModeEnum, LocalNodeState, Service, ServiceSpec,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatusStateEnum, Task, TaskState,
};
use bollard::query_parameters::{
    InspectServiceOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
    UpdateServiceOptionsBuilder,
};

use super::{RegistryLogin, RuntimeError};

/// The most services one list may hold; a longer answer is refused, not truncated.
pub const MAX_SERVICES: usize = 50_000;
/// The most tasks of one service lookout reads (the newest first).
pub const MAX_TASKS: usize = 1_000;
/// The longest engine text (an error or status message) lookout keeps, in bytes.
pub const MAX_TEXT: usize = 1_024;

/// What Swarm reports about a service's last update (`UpdateStatus.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

impl UpdateState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updating => "updating",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::RollbackStarted => "rollback_started",
            Self::RollbackPaused => "rollback_paused",
            Self::RollbackCompleted => "rollback_completed",
        }
    }

    /// Reads Swarm's word; `None` for none or one lookout does not know.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "updating" => Self::Updating,
            "paused" => Self::Paused,
            "completed" => Self::Completed,
            "rollback_started" => Self::RollbackStarted,
            "rollback_paused" => Self::RollbackPaused,
            "rollback_completed" => Self::RollbackCompleted,
            _ => return None,
        })
    }
}

/// A service's `UpdateStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateStatus {
    pub state: Option<UpdateState>,
    /// Swarm's message (`update completed`, `update rolled back due to failure …`).
    pub message: String,
}

/// A Swarm service as lookout needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmService {
    pub id: String,
    pub name: String,
    /// `Version.Index`, which an update must name.
    pub version: u64,
    /// The service's labels (`Spec.Labels`), where `lookout.*` settings are read.
    pub labels: HashMap<String, String>,
    /// The image the spec runs (`Spec.TaskTemplate.ContainerSpec.Image`), as Swarm pinned it
    /// (`repo:tag@sha256:…`).
    pub image: String,
    /// The replica count of a replicated service; `None` for global and job services.
    pub replicas: Option<u64>,
    /// The service defines its own `UpdateConfig` with a `FailureAction`: lookout keeps it.
    pub own_update_config: bool,
    /// `start-first` is possible: no port is published in host mode (the new task could not
    /// bind it while the old one runs).
    pub start_first_allowed: bool,
    pub update_status: Option<UpdateStatus>,
}

/// A task's state (`Status.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwarmTaskState {
    /// new … starting: on its way to running.
    Pending,
    Running,
    /// complete, shutdown, remove, orphaned: ended without failing.
    Ended,
    /// failed or rejected.
    Failed,
}

/// One task of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmTask {
    pub id: String,
    pub state: SwarmTaskState,
    /// The state word as Swarm wrote it (`running`, `failed`, …).
    pub state_text: String,
    /// The state the orchestrator wants (`running`, `shutdown`).
    pub desired_running: bool,
    /// The image the task was created with.
    pub image: String,
    /// `Status.Err`, else `Status.Message` when the task failed.
    pub error: Option<String>,
    /// `Status.Message` (`started`, `finished`, …).
    pub message: String,
    /// The container's exit code, once it exited.
    pub exit_code: Option<i64>,
    /// `Version.Index`: the newer task has the larger one.
    pub version: u64,
}

/// The update config lookout asks for when the service defines none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSettings {
    pub parallelism: u64,
    /// How long Swarm watches each updated task for failure.
    pub monitor: Duration,
    pub start_first: bool,
}

/// What lookout asks of Swarm. Every method names the service in its error.
#[async_trait::async_trait]
pub trait SwarmApi: Send + Sync {
    /// The engine is an active Swarm manager (it may list and update services).
    async fn is_manager(&self) -> Result<bool, RuntimeError>;
    /// Every service, from one call.
    async fn services(&self) -> Result<Vec<SwarmService>, RuntimeError>;
    /// One service by name or id; `None` when there is none.
    async fn service(&self, name: &str) -> Result<Option<SwarmService>, RuntimeError>;
    /// Updates the service's image to `image`; with `settings`, its update config too.
    /// `login` travels as `X-Registry-Auth` so that the workers can pull.
    async fn update_image(
        &self,
        name: &str,
        image: &str,
        settings: Option<&UpdateSettings>,
        login: Option<&RegistryLogin>,
    ) -> Result<Vec<String>, RuntimeError>;
    /// Swarm's own rollback to the service's `PreviousSpec`.
    async fn rollback(&self, name: &str) -> Result<Vec<String>, RuntimeError>;
    /// The service's tasks, newest first, at most [`MAX_TASKS`].
    async fn tasks(&self, service_id: &str) -> Result<Vec<SwarmTask>, RuntimeError>;
}

/// Swarm over the Engine API (its own bollard connection, version negotiated like
/// [`super::Docker`]'s).
#[derive(Debug, Clone)]
pub struct Swarm {
    client: bollard::Docker,
}

impl Swarm {
    pub async fn connect() -> Result<Self, RuntimeError> {
        let host = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
        let connect_error = |e: bollard::errors::Error| RuntimeError::Connect {
            host: host.clone(),
            detail: e.to_string(),
        };
        let client = bollard::Docker::connect_with_defaults()
            .map_err(connect_error)?
            .negotiate_version()
            .await
            .map_err(connect_error)?;
        Ok(Self { client })
    }

    async fn inspect(&self, name: &str) -> Result<Option<Service>, RuntimeError> {
        let options = InspectServiceOptionsBuilder::new()
            .insert_defaults(false)
            .build();
        match self.client.inspect_service(name, Some(options)).await {
            Ok(service) => Ok(Some(service)),
            Err(e) => {
                let e = api_error(&format!("inspect Swarm service {name:?}"), e);
                if e.is_not_found() { Ok(None) } else { Err(e) }
            }
        }
    }

    async fn post_update(
        &self,
        name: &str,
        service: Service,
        spec: ServiceSpec,
        rollback: bool,
        login: Option<&RegistryLogin>,
    ) -> Result<Vec<String>, RuntimeError> {
        let action = if rollback {
            format!("roll back Swarm service {name:?}")
        } else {
            format!("update Swarm service {name:?}")
        };
        let version = service
            .version
            .and_then(|v| v.index)
            .and_then(|i| i32::try_from(i).ok())
            .ok_or_else(|| RuntimeError::Service {
                service: name.to_owned(),
                reason: "the engine gave the Swarm service no version index".into(),
            })?;
        let mut options = UpdateServiceOptionsBuilder::new().version(version);
        if rollback {
            options = options.rollback("previous");
        }
        let credentials = login.map(|login| DockerCredentials {
            username: Some(login.username.clone()),
            password: Some(login.password.expose().to_owned()),
            serveraddress: Some(login.server.clone()),
            ..Default::default()
        });
        let id = service.id.unwrap_or_else(|| name.to_owned());
        let answer = self
            .client
            .update_service(&id, spec, options.build(), credentials)
            .await
            .map_err(|e| api_error(&action, e))?;
        Ok(answer
            .warnings
            .unwrap_or_default()
            .into_iter()
            .take(16)
            .map(|w| bounded(&w))
            .collect())
    }
}

#[async_trait::async_trait]
impl SwarmApi for Swarm {
    async fn is_manager(&self) -> Result<bool, RuntimeError> {
        let info = self
            .client
            .info()
            .await
            .map_err(|e| api_error("read the engine's Swarm state", e))?;
        Ok(info.swarm.is_some_and(|s| {
            s.local_node_state == Some(LocalNodeState::ACTIVE) && s.control_available == Some(true)
        }))
    }

    async fn services(&self) -> Result<Vec<SwarmService>, RuntimeError> {
        let options = ListServicesOptionsBuilder::new().build();
        let listed = self
            .client
            .list_services(Some(options))
            .await
            .map_err(|e| api_error("list Swarm services", e))?;
        if listed.len() > MAX_SERVICES {
            return Err(RuntimeError::Api {
                action: "list Swarm services".into(),
                status: None,
                message: format!(
                    "the engine listed {} services, more than lookout reads ({MAX_SERVICES})",
                    listed.len()
                ),
            });
        }
        listed.into_iter().map(service_of).collect()
    }

    async fn service(&self, name: &str) -> Result<Option<SwarmService>, RuntimeError> {
        self.inspect(name).await?.map(service_of).transpose()
    }

    async fn update_image(
        &self,
        name: &str,
        image: &str,
        settings: Option<&UpdateSettings>,
        login: Option<&RegistryLogin>,
    ) -> Result<Vec<String>, RuntimeError> {
        let service = self.inspect(name).await?.ok_or_else(|| gone(name))?;
        let spec = service.spec.clone().ok_or_else(|| no_spec(name))?;
        let spec = with_image(spec, image, settings).map_err(|reason| RuntimeError::Service {
            service: name.to_owned(),
            reason,
        })?;
        self.post_update(name, service, spec, false, login).await
    }

    async fn rollback(&self, name: &str) -> Result<Vec<String>, RuntimeError> {
        let service = self.inspect(name).await?.ok_or_else(|| gone(name))?;
        let spec = service.spec.clone().ok_or_else(|| no_spec(name))?;
        self.post_update(name, service, spec, true, None).await
    }

    async fn tasks(&self, service_id: &str) -> Result<Vec<SwarmTask>, RuntimeError> {
        let filters = HashMap::from([("service", vec![service_id])]);
        let options = ListTasksOptionsBuilder::new().filters(&filters).build();
        let listed = self.client.list_tasks(Some(options)).await.map_err(|e| {
            api_error(
                &format!("list the tasks of Swarm service {service_id:?}"),
                e,
            )
        })?;
        Ok(tasks_of(listed))
    }
}

fn gone(name: &str) -> RuntimeError {
    RuntimeError::Service {
        service: name.to_owned(),
        reason: "no such Swarm service (was it removed?)".into(),
    }
}

fn no_spec(name: &str) -> RuntimeError {
    RuntimeError::Service {
        service: name.to_owned(),
        reason: "the engine gave the Swarm service no spec".into(),
    }
}

/// `text` cut to [`MAX_TEXT`] bytes at a character boundary.
pub(crate) fn bounded(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

/// Maps the engine's service to lookout's, refusing one without a name, spec or image.
pub(crate) fn service_of(service: Service) -> Result<SwarmService, RuntimeError> {
    let id = service.id.clone().unwrap_or_default();
    let spec = service.spec.unwrap_or_default();
    let name = spec.name.clone().unwrap_or_default();
    let label = if name.is_empty() { &id } else { &name };
    let refuse = |reason: &str| RuntimeError::Service {
        service: bounded(label),
        reason: reason.to_owned(),
    };
    if id.is_empty() || name.is_empty() {
        return Err(refuse(
            "the engine listed a Swarm service without an id or name",
        ));
    }
    let image = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.clone())
        .filter(|i| !i.is_empty() && i.len() <= MAX_TEXT)
        .ok_or_else(|| refuse("the Swarm service's spec names no container image"))?;
    let replicas = spec
        .mode
        .as_ref()
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .map(|r| u64::try_from(r).unwrap_or(0));
    let own_update_config = spec
        .update_config
        .as_ref()
        .is_some_and(|u| u.failure_action.is_some());
    let start_first_allowed = !spec
        .endpoint_spec
        .as_ref()
        .and_then(|e| e.ports.as_ref())
        .is_some_and(|ports| {
            ports
                .iter()
                .any(|p| p.publish_mode == Some(EndpointPortConfigPublishModeEnum::HOST))
        });
    let update_status = service.update_status.map(|u| UpdateStatus {
        state: u.state.and_then(|s| match s {
            ServiceUpdateStatusStateEnum::EMPTY => None,
            other => UpdateState::parse(other.as_ref()),
        }),
        message: bounded(u.message.as_deref().unwrap_or("")),
    });
    Ok(SwarmService {
        version: service.version.and_then(|v| v.index).unwrap_or(0),
        labels: spec.labels.unwrap_or_default(),
        id,
        name,
        image,
        replicas,
        own_update_config,
        start_first_allowed,
        update_status,
    })
}

/// The tasks, newest first and at most [`MAX_TASKS`]; tasks without an id are left out.
pub(crate) fn tasks_of(listed: Vec<Task>) -> Vec<SwarmTask> {
    let mut tasks: Vec<SwarmTask> = listed.into_iter().filter_map(task_of).collect();
    tasks.sort_by(|a, b| b.version.cmp(&a.version).then_with(|| a.id.cmp(&b.id)));
    tasks.truncate(MAX_TASKS);
    tasks
}

fn task_of(task: Task) -> Option<SwarmTask> {
    let id = task.id.filter(|i| !i.is_empty())?;
    let status = task.status.unwrap_or_default();
    let state = match status.state {
        Some(TaskState::RUNNING) => SwarmTaskState::Running,
        Some(TaskState::FAILED | TaskState::REJECTED) => SwarmTaskState::Failed,
        Some(
            TaskState::COMPLETE | TaskState::SHUTDOWN | TaskState::REMOVE | TaskState::ORPHANED,
        ) => SwarmTaskState::Ended,
        _ => SwarmTaskState::Pending,
    };
    let message = bounded(status.message.as_deref().unwrap_or(""));
    let exit_code = status.container_status.as_ref().and_then(|c| c.exit_code);
    let error = status
        .err
        .filter(|e| !e.is_empty())
        .or_else(|| status.message.filter(|_| state == SwarmTaskState::Failed))
        .map(|e| bounded(&e));
    Some(SwarmTask {
        id: bounded(&id),
        state,
        state_text: status.state.map(|s| s.to_string()).unwrap_or_default(),
        desired_running: task.desired_state == Some(TaskState::RUNNING),
        image: task
            .spec
            .and_then(|s| s.container_spec)
            .and_then(|c| c.image)
            .map(|i| bounded(&i))
            .unwrap_or_default(),
        error,
        message,
        exit_code,
        version: task.version.and_then(|v| v.index).unwrap_or(0),
    })
}

/// The spec with the new image and, when given, lookout's update config (pure).
pub(crate) fn with_image(
    mut spec: ServiceSpec,
    image: &str,
    settings: Option<&UpdateSettings>,
) -> Result<ServiceSpec, String> {
    let container = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
        .ok_or("the Swarm service's spec has no container spec")?;
    container.image = Some(image.to_owned());
    if let Some(settings) = settings {
        let keep = spec.update_config.take().unwrap_or_default();
        spec.update_config = Some(ServiceSpecUpdateConfig {
            parallelism: Some(i64::try_from(settings.parallelism).unwrap_or(i64::MAX)),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            monitor: Some(i64::try_from(settings.monitor.as_nanos()).unwrap_or(i64::MAX)),
            order: Some(if settings.start_first {
                ServiceSpecUpdateConfigOrderEnum::START_FIRST
            } else {
                ServiceSpecUpdateConfigOrderEnum::STOP_FIRST
            }),
            ..keep
        });
    }
    Ok(spec)
}

fn api_error(action: &str, error: bollard::errors::Error) -> RuntimeError {
    let (status, message) = match error {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => (Some(status_code), message),
        other => (None, other.to_string()),
    };
    RuntimeError::Api {
        action: action.to_owned(),
        status,
        message: bounded(&message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(json: serde_json::Value) -> Service {
        serde_json::from_value(json).unwrap()
    }

    fn web() -> serde_json::Value {
        serde_json::json!({
            "ID": "abc",
            "Version": {"Index": 42},
            "Spec": {
                "Name": "web",
                "Labels": {"lookout.policy": "semver"},
                "TaskTemplate": {"ContainerSpec": {"Image": "reg:5000/app:1.0.0@sha256:aa"}},
                "Mode": {"Replicated": {"Replicas": 3}},
                "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}]}
            },
            "UpdateStatus": {"State": "rollback_completed", "Message": "rolled back"}
        })
    }

    #[test]
    fn a_listed_service_becomes_lookout_s() {
        let s = service_of(listed(web())).unwrap();
        assert_eq!(s.name, "web");
        assert_eq!(s.version, 42);
        assert_eq!(s.image, "reg:5000/app:1.0.0@sha256:aa");
        assert_eq!(s.replicas, Some(3));
        assert!(!s.own_update_config);
        assert!(s.start_first_allowed);
        assert_eq!(
            s.update_status.unwrap().state,
            Some(UpdateState::RollbackCompleted)
        );
        assert_eq!(s.labels["lookout.policy"], "semver");
    }

    #[test]
    fn host_ports_forbid_start_first_and_an_own_failure_action_is_kept() {
        let mut json = web();
        json["Spec"]["EndpointSpec"]["Ports"][0]["PublishMode"] = "host".into();
        json["Spec"]["UpdateConfig"] = serde_json::json!({"FailureAction": "pause"});
        let s = service_of(listed(json)).unwrap();
        assert!(!s.start_first_allowed);
        assert!(s.own_update_config);
    }

    #[test]
    fn odd_services_are_refused_with_their_name() {
        for (path, why) in [
            ("/Spec/Name", "without an id or name"),
            ("/Spec/TaskTemplate", "names no container image"),
        ] {
            let mut json = web();
            let (parent, key) = path.rsplit_once('/').unwrap();
            json.pointer_mut(parent)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(key);
            let e = service_of(listed(json)).unwrap_err().to_string();
            assert!(e.contains(why), "{path}: {e}");
        }
        let mut json = web();
        json["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = "x".repeat(5000).into();
        assert!(service_of(listed(json)).is_err());
    }

    #[test]
    fn the_new_spec_changes_the_image_and_sets_the_update_config_keeping_the_rest() {
        let spec = listed(web()).spec.unwrap();
        let settings = UpdateSettings {
            parallelism: 2,
            monitor: Duration::from_secs(15),
            start_first: true,
        };
        let mut with_delay = spec.clone();
        with_delay.update_config = Some(ServiceSpecUpdateConfig {
            delay: Some(7),
            ..Default::default()
        });
        let new = with_image(with_delay, "reg:5000/app:1.1.0@sha256:bb", Some(&settings)).unwrap();
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(
            json["TaskTemplate"]["ContainerSpec"]["Image"],
            "reg:5000/app:1.1.0@sha256:bb"
        );
        assert_eq!(
            json["UpdateConfig"],
            serde_json::json!({"Parallelism": 2, "Delay": 7, "FailureAction": "rollback",
                "Monitor": 15_000_000_000_i64, "Order": "start-first"})
        );
        assert_eq!(
            json["Mode"],
            serde_json::json!({"Replicated": {"Replicas": 3}})
        );
        let untouched = with_image(spec.clone(), "x@sha256:cc", None).unwrap();
        assert_eq!(untouched.update_config, spec.update_config);
        let mut empty = spec;
        empty.task_template = None;
        assert!(with_image(empty, "x", None).is_err());
    }

    #[test]
    fn tasks_are_newest_first_with_the_error_of_failed_ones() {
        let tasks: Vec<Task> = serde_json::from_value(serde_json::json!([
            {"ID": "t1", "Version": {"Index": 5}, "DesiredState": "shutdown",
             "Spec": {"ContainerSpec": {"Image": "app:1@sha256:aa"}},
             "Status": {"State": "failed", "Message": "started", "Err": "task: non-zero exit (1): dockerexec: unhealthy container"}},
            {"ID": "t2", "Version": {"Index": 9}, "DesiredState": "running",
             "Status": {"State": "running", "Message": "started"}},
            {"Version": {"Index": 11}, "Status": {"State": "running"}},
            {"ID": "t3", "Version": {"Index": 7}, "Status": {"State": "rejected", "Message": "No such image: app:2"}}
        ]))
        .unwrap();
        let tasks = tasks_of(tasks);
        let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["t2", "t3", "t1"]);
        assert_eq!(tasks[0].state, SwarmTaskState::Running);
        assert!(tasks[0].desired_running);
        assert_eq!(tasks[0].error, None);
        assert_eq!(tasks[1].state, SwarmTaskState::Failed);
        assert_eq!(tasks[1].error.as_deref(), Some("No such image: app:2"));
        assert!(tasks[2].error.as_deref().unwrap().contains("unhealthy"));
        assert_eq!(tasks[2].image, "app:1@sha256:aa");
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_TEXT + "…".len());
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short"), "short");
    }
}
