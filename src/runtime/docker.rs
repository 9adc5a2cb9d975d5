//! [`ContainerRuntime`] over the Docker Engine API, through bollard.

use std::collections::HashMap;

use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointSettings,
    HealthConfig, HealthStatusEnum, ImageConfig, NetworkConnectRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    RenameContainerOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;

use super::{
    ContainerEvent, ContainerInfo, ContainerRuntime, ContainerState, ContainerSummary, Health,
    ImageInfo, ImageRemoval, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE, RegistryLogin,
    RuntimeError,
};

/// The Docker engine, reached through `DOCKER_HOST` or the local socket.
#[derive(Debug, Clone)]
pub struct Docker {
    client: bollard::Docker,
}

impl Docker {
    /// Connects to the engine `DOCKER_HOST` names (`unix://…` or `tcp://…`; the local socket when
    /// unset) and agrees on an API version both sides speak. bollard defaults to a newer API than
    /// older engines accept (Docker 20.10 speaks 1.41), so the version is negotiated down before
    /// any other request.
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
        tracing::debug!(%host, api = %client.client_version(), "connected to the Docker engine");
        Ok(Self { client })
    }

    /// The API version lookout speaks with this engine (after negotiation), e.g. `1.41`.
    pub fn api_version(&self) -> String {
        self.client.client_version().to_string()
    }

    /// The engine's own API version, e.g. `1.41`.
    pub async fn version(&self) -> Result<String, RuntimeError> {
        let version = self
            .client
            .version()
            .await
            .map_err(|e| api_error("read the engine version", e))?;
        Ok(version.api_version.unwrap_or_default())
    }
}

impl ContainerRuntime for Docker {
    async fn pull(
        &self,
        reference: &str,
        auth: Option<&RegistryLogin>,
    ) -> Result<(), RuntimeError> {
        let options = CreateImageOptionsBuilder::new()
            .from_image(reference)
            .build();
        let credentials = auth.map(|login| DockerCredentials {
            username: Some(login.username.clone()),
            password: Some(login.password.expose().to_owned()),
            serveraddress: Some(login.server.clone()),
            ..Default::default()
        });
        let mut progress = self.client.create_image(Some(options), None, credentials);
        while let Some(line) = progress.next().await {
            match line {
                Ok(info) => {
                    let status = info.status.as_deref().unwrap_or("");
                    match info.id.as_deref() {
                        Some(layer) => tracing::trace!(image = %reference, layer, status, "pull"),
                        None => tracing::debug!(image = %reference, status, "pull"),
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(RuntimeError::Pull {
                        reference: reference.to_owned(),
                        message: error,
                    });
                }
                Err(e) => return Err(api_error(&format!("pull image {reference}"), e)),
            }
        }
        Ok(())
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        match self.client.inspect_image(reference).await {
            Ok(image) => Ok(Some(ImageInfo {
                id: image.id.unwrap_or_default(),
                repo_tags: image.repo_tags.unwrap_or_default(),
                repo_digests: image.repo_digests.unwrap_or_default(),
                has_healthcheck: image
                    .config
                    .as_ref()
                    .and_then(|c| c.healthcheck.as_ref())
                    .is_some_and(healthcheck_enabled),
                labels: image.config.and_then(|c| c.labels).unwrap_or_default(),
            })),
            Err(e) => {
                let error = api_error(&format!("inspect image {reference}"), e);
                if error.is_not_found() {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }

    async fn tag(&self, source: &str, repo: &str, tag: &str) -> Result<(), RuntimeError> {
        let options = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        self.client
            .tag_image(source, Some(options))
            .await
            .map_err(|e| api_error(&format!("tag image {source} as {repo}:{tag}"), e))
    }

    async fn remove_image(&self, reference: &str) -> Result<ImageRemoval, RuntimeError> {
        let options = RemoveImageOptionsBuilder::new()
            .force(false)
            .noprune(false)
            .build();
        match self
            .client
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_) => Ok(ImageRemoval::Removed),
            Err(e) => match api_error(&format!("remove image {reference}"), e) {
                RuntimeError::Api {
                    status: Some(404), ..
                } => Ok(ImageRemoval::Absent),
                RuntimeError::Api {
                    status: Some(409),
                    message,
                    ..
                } => {
                    tracing::warn!(image = %reference, detail = %message, "image kept: a container uses it");
                    Ok(ImageRemoval::InUse { detail: message })
                }
                other => Err(other),
            },
        }
    }

    async fn service_containers(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{LABEL_PROJECT}={project}"),
                format!("{LABEL_SERVICE}={service}"),
            ],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|e| {
                api_error(
                    &format!("list containers of service {service} in compose project {project}"),
                    e,
                )
            })?;
        let mut containers = Vec::new();
        for summary in summaries {
            let oneoff = summary
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_ONEOFF))
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let Some(id) = summary.id.filter(|_| !oneoff) else {
                continue;
            };
            match self.container(&id).await {
                Ok(info) => containers.push(info),
                // Removed between the list and the inspect (compose replacing it): skip it.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(containers)
    }

    async fn compose_containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let filters = HashMap::from([("label", vec![LABEL_PROJECT.to_owned()])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|e| api_error("list the containers compose created", e))?;
        Ok(summaries.into_iter().filter_map(summary).collect())
    }

    async fn containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let options = ListContainersOptionsBuilder::new().all(true).build();
        let summaries = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|e| api_error("list the containers", e))?;
        Ok(summaries.into_iter().filter_map(summary).collect())
    }

    async fn container_events(
        &self,
        sink: tokio::sync::mpsc::Sender<ContainerEvent>,
    ) -> Result<(), RuntimeError> {
        let filters = HashMap::from([
            ("type", vec!["container".to_owned()]),
            (
                "event",
                super::WATCHED_EVENTS
                    .iter()
                    .map(|e| (*e).to_owned())
                    .collect(),
            ),
        ]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        let mut stream = std::pin::pin!(self.client.events(Some(options)));
        while let Some(message) = stream.next().await {
            let message = message.map_err(|e| api_error("follow the container events", e))?;
            let actor = message.actor.unwrap_or_default();
            let name = actor
                .attributes
                .as_ref()
                .and_then(|a| a.get("name"))
                .cloned()
                .unwrap_or_default();
            let event = ContainerEvent {
                action: message.action.unwrap_or_default(),
                id: actor.id.unwrap_or_default(),
                name,
            };
            if sink.send(event).await.is_err() {
                // Nobody listens any more.
                return Ok(());
            }
        }
        Ok(())
    }

    async fn container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let inspect = self
            .client
            .inspect_container(id, None)
            .await
            .map_err(|e| api_error(&format!("inspect container {id}"), e))?;
        Ok(container_info(inspect))
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        Docker::version(self).await
    }

    // Standalone containers.

    async fn inspect_container(
        &self,
        id: &str,
    ) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        match self.client.inspect_container(id, None).await {
            Ok(inspect) => Ok(Some(inspect)),
            Err(e) => absent_on_404(api_error(&format!("inspect container {id}"), e)),
        }
    }

    async fn image_config(&self, reference: &str) -> Result<Option<ImageConfig>, RuntimeError> {
        match self.client.inspect_image(reference).await {
            Ok(image) => Ok(Some(image.config.unwrap_or_default())),
            Err(e) => absent_on_404(api_error(&format!("inspect image {reference}"), e)),
        }
    }

    async fn all_containers(&self) -> Result<Vec<ContainerInspectResponse>, RuntimeError> {
        let options = ListContainersOptionsBuilder::new().all(true).build();
        let summaries = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|e| api_error("list the containers", e))?;
        let mut out = Vec::new();
        for id in summaries.into_iter().filter_map(|s| s.id) {
            // Removed between the list and the inspect: skip it.
            if let Some(inspect) = self.inspect_container(&id).await? {
                out.push(inspect);
            }
        }
        Ok(out)
    }

    async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, RuntimeError> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = self
            .client
            .create_container(Some(options), body)
            .await
            .map_err(|e| api_error(&format!("create container {name}"), e))?;
        for warning in &created.warnings {
            tracing::warn!(container = %name, %warning, "Docker warned when creating the container");
        }
        Ok(created.id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        // Docker answers 304 for a container already running, which bollard takes as success.
        self.client
            .start_container(id, None)
            .await
            .map_err(|e| api_error(&format!("start container {id}"), e))
    }

    async fn stop_container(&self, id: &str) -> Result<(), RuntimeError> {
        // 304 for a container already stopped, success too.
        self.client
            .stop_container(id, None)
            .await
            .map_err(|e| api_error(&format!("stop container {id}"), e))
    }

    async fn rename_container(&self, id: &str, new_name: &str) -> Result<(), RuntimeError> {
        let options = RenameContainerOptionsBuilder::new().name(new_name).build();
        self.client
            .rename_container(id, options)
            .await
            .map_err(|e| api_error(&format!("rename container {id} to {new_name}"), e))
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(false)
            .build();
        self.client
            .remove_container(id, Some(options))
            .await
            .map_err(|e| api_error(&format!("remove container {id}"), e))
    }

    async fn connect_network(
        &self,
        network: &str,
        container: &str,
        endpoint: EndpointSettings,
    ) -> Result<(), RuntimeError> {
        let request = NetworkConnectRequest {
            container: container.to_owned(),
            endpoint_config: Some(endpoint),
        };
        self.client
            .connect_network(network, request)
            .await
            .map_err(|e| {
                api_error(
                    &format!("connect container {container} to network {network}"),
                    e,
                )
            })
    }
}

/// A container of the engine's container list; `None` without an id.
fn summary(s: bollard::models::ContainerSummary) -> Option<ContainerSummary> {
    Some(ContainerSummary {
        id: s.id?,
        name: s
            .names
            .and_then(|n| n.into_iter().next())
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        labels: s.labels.unwrap_or_default(),
        image_id: s.image_id.unwrap_or_default(),
        state: s.state.map_or(ContainerState::Unknown, |st| {
            ContainerState::parse(st.as_ref())
        }),
    })
}

/// Maps bollard's answer to the container facts the health gate and the engine use.
fn container_info(inspect: ContainerInspectResponse) -> ContainerInfo {
    let state = inspect.state.unwrap_or_default();
    let status = match state.status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited,
        Some(ContainerStateStatusEnum::DEAD) => ContainerState::Dead,
        _ => ContainerState::Unknown,
    };
    let health = state.health.as_ref().and_then(|h| match h.status {
        Some(HealthStatusEnum::STARTING) => Some(Health::Starting),
        Some(HealthStatusEnum::HEALTHY) => Some(Health::Healthy),
        Some(HealthStatusEnum::UNHEALTHY) => Some(Health::Unhealthy),
        _ => None,
    });
    let health_log = state
        .health
        .as_ref()
        .and_then(|h| h.log.as_ref())
        .and_then(|log| log.last())
        .map(|run| {
            let output = run.output.as_deref().unwrap_or("").trim();
            match run.exit_code {
                Some(code) => format!("exit code {code}: {output}"),
                None => output.to_owned(),
            }
        });
    let config = inspect.config.unwrap_or_default();
    let has_healthcheck =
        health.is_some() || config.healthcheck.as_ref().is_some_and(healthcheck_enabled);
    let not_running = matches!(
        status,
        ContainerState::Exited | ContainerState::Dead | ContainerState::Restarting
    );
    ContainerInfo {
        id: inspect.id.unwrap_or_default(),
        name: inspect
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image_id: inspect.image.unwrap_or_default(),
        image_ref: config.image.unwrap_or_default(),
        state: status,
        health,
        health_log,
        restart_count: inspect.restart_count.unwrap_or(0).max(0) as u64,
        exit_code: state.exit_code.filter(|_| not_running),
        oom_killed: state.oom_killed.unwrap_or(false),
        started_at: state.started_at.filter(|s| !s.starts_with("0001-")),
        has_healthcheck,
    }
}

/// A `HEALTHCHECK` that runs something: not absent, not `NONE`.
fn healthcheck_enabled(check: &HealthConfig) -> bool {
    check
        .test
        .as_ref()
        .and_then(|t| t.first())
        .is_some_and(|first| first != "NONE")
}

/// `Ok(None)` for Docker's 404 (no such object), the error otherwise.
fn absent_on_404<T>(error: RuntimeError) -> Result<Option<T>, RuntimeError> {
    if error.is_not_found() {
        Ok(None)
    } else {
        Err(error)
    }
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
        message,
    }
}
