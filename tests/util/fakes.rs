//! In-memory seams for in-process tests of the engine and the daemon: a container runtime, a
//! compose that reads the compose file lookout edits, and a registry. Beside the real-engine
//! tests, not instead of them: these run a pass, an update, a rollback, recovery and the daemon
//! loop in milliseconds, with no Docker and no network.
//!
//! - [`FakeRuntime`]: local images (id, tags, repo digests, health per image) and containers per
//!   compose project and service; "remote" images a pull by digest brings in.
//! - [`FakeCompose`]: `up` reads the service's `image:` from the compose file as it is on disk
//!   (so what lookout wrote is what runs), resolves it against the runtime's local images and
//!   recreates the service's container with it.
//! - [`FakeRegistry`]: tags and digests from memory, served through `Registries::set_adapter`.
//! - [`FakeHost`]: one compose project in a scratch folder with its configuration, the three
//!   fakes wired together, and the engine built on them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lookout::config::{self, Config, ServiceSpec};
use lookout::engine::{Engine, open_store};
use lookout::policy::Tag;
use lookout::reference::ImageRef;
use lookout::registry::{Credential, Digests, ErrorKind, Registry, RegistryError};
use lookout::runtime::{
    Compose, ComposeProject, ContainerInfo, ContainerRuntime, ContainerState, ContainerSummary,
    Health, ImageInfo, ImageRemoval, RegistryLogin, RuntimeError,
};
use lookout::schedule::{Clock, SystemClock};
use lookout::telemetry::{Deliveries, Telemetry, TelemetrySettings};

use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum,
    EndpointSettings, ImageConfig, NetworkSettings,
};

use super::Scratch;

/// The registry host every fake image lives on.
pub(crate) const HOST: &str = "registry.test:5000";

/// A digest made from a short name: `sha256:` and 64 hex digits, stable per name.
pub(crate) fn digest(name: &str) -> String {
    format!("sha256:{}", lookout::state::sha256_hex(name.as_bytes()))
}

#[derive(Debug, Clone)]
struct Image {
    id: String,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    /// `None`: the image has no healthcheck.
    health: Option<Health>,
}

#[derive(Debug, Clone)]
struct Container {
    id: String,
    name: String,
    project: String,
    service: String,
    image_id: String,
    image_ref: String,
    state: ContainerState,
}

#[derive(Debug, Default)]
struct World {
    images: Vec<Image>,
    /// What a pull by `repo@digest` brings in: its health.
    remote: BTreeMap<String, Option<Health>>,
    containers: Vec<Container>,
    /// Every call that changes something, in order: `pull …`, `tag …`, `up …`.
    calls: Vec<String>,
    /// How often each reading method was called: `image`, `service_containers`,
    /// `compose_containers`, `container`.
    reads: BTreeMap<&'static str, usize>,
    next: u64,
    /// Standalone containers (`docker run`), as the engine's inspect shows them.
    standalone: Vec<ContainerInspectResponse>,
}

impl World {
    fn find(&self, reference: &str) -> Option<&Image> {
        self.images.iter().find(|i| {
            i.id == reference
                || i.repo_tags.iter().any(|t| t == reference)
                || i.repo_digests.iter().any(|d| d == reference)
        })
    }

    fn info(&self, c: &Container) -> ContainerInfo {
        let health = self
            .images
            .iter()
            .find(|i| i.id == c.image_id)
            .and_then(|i| i.health);
        ContainerInfo {
            id: c.id.clone(),
            name: c.name.clone(),
            image_id: c.image_id.clone(),
            image_ref: c.image_ref.clone(),
            state: c.state,
            health,
            health_log: (health == Some(Health::Unhealthy)).then(|| "fake: unhealthy".into()),
            restart_count: 0,
            exit_code: None,
            oom_killed: false,
            started_at: None,
            has_healthcheck: health.is_some(),
        }
    }
}

/// A container engine in memory. Clones share one world.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeRuntime(Arc<Mutex<World>>);

impl FakeRuntime {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }

    /// A local image `repo:tag`, pulled earlier from `repo@digest`; returns its id.
    pub(crate) fn local_image(
        &self,
        repo: &str,
        tag: &str,
        digest: &str,
        health: Option<Health>,
    ) -> String {
        let mut w = self.world();
        w.next += 1;
        let id = format!("sha256:{:064x}", w.next);
        let name = format!("{repo}:{tag}");
        for image in &mut w.images {
            image.repo_tags.retain(|t| *t != name);
        }
        w.images.push(Image {
            id: id.clone(),
            repo_tags: vec![name],
            repo_digests: vec![format!("{repo}@{digest}")],
            health,
        });
        id
    }

    /// What a pull of `repo@digest` brings in, and how its containers' health turns out.
    pub(crate) fn publish(&self, repo: &str, digest: &str, health: Option<Health>) {
        self.world()
            .remote
            .insert(format!("{repo}@{digest}"), health);
    }

    /// Changes the health every container of image `reference` reports from now on.
    pub(crate) fn set_health(&self, reference: &str, health: Option<Health>) {
        let mut w = self.world();
        let id = w.find(reference).map(|i| i.id.clone()).expect("image");
        for image in w.images.iter_mut().filter(|i| i.id == id) {
            image.health = health;
        }
    }

    /// A running container of `project`'s `service` on the local image `reference`.
    pub(crate) fn run(&self, project: &str, service: &str, reference: &str) {
        let mut w = self.world();
        let image_id = w.find(reference).expect("local image").id.clone();
        recreate(&mut w, project, service, image_id, reference);
    }

    /// The image id and `Config.Image` of the service's running container.
    pub(crate) fn running(&self, project: &str, service: &str) -> Option<(String, String)> {
        self.world()
            .containers
            .iter()
            .find(|c| {
                c.project == project && c.service == service && c.state == ContainerState::Running
            })
            .map(|c| (c.image_id.clone(), c.image_ref.clone()))
    }

    /// The id of the local image `reference` names.
    pub(crate) fn image_id(&self, reference: &str) -> Option<String> {
        self.world().find(reference).map(|i| i.id.clone())
    }

    /// The calls that changed something so far.
    pub(crate) fn calls(&self) -> Vec<String> {
        self.world().calls.clone()
    }

    /// How often the reading method `method` was called so far.
    pub(crate) fn reads(&self, method: &str) -> usize {
        self.world().reads.get(method).copied().unwrap_or(0)
    }

    fn read(&self, method: &'static str) {
        *self.world().reads.entry(method).or_default() += 1;
    }

    /// A running standalone container `name` on the local image `reference`; returns its id.
    pub(crate) fn run_standalone(&self, name: &str, reference: &str) -> String {
        let mut w = self.world();
        let image_id = w.find(reference).expect("local image").id.clone();
        w.next += 1;
        let id = format!("{:064x}", w.next);
        w.standalone.push(ContainerInspectResponse {
            id: Some(id.clone()),
            name: Some(format!("/{name}")),
            image: Some(image_id),
            state: Some(bollard::models::ContainerState {
                status: Some(ContainerStateStatusEnum::RUNNING),
                ..Default::default()
            }),
            config: Some(ContainerConfig {
                image: Some(reference.to_owned()),
                ..Default::default()
            }),
            host_config: Some(Default::default()),
            ..Default::default()
        });
        id
    }

    /// The standalone containers: `(name, id, image id, state)`, sorted by name.
    pub(crate) fn standalone(&self) -> Vec<(String, String, String, String)> {
        let w = self.world();
        let mut out: Vec<_> = w
            .standalone
            .iter()
            .map(|c| {
                let info = w.standalone_info(c);
                (info.name, info.id, info.image_id, info.state.to_string())
            })
            .collect();
        out.sort();
        out
    }

    fn set_standalone_state(
        &self,
        id: &str,
        verb: &str,
        status: ContainerStateStatusEnum,
    ) -> Result<(), RuntimeError> {
        let mut w = self.world();
        w.calls.push(format!("{verb} {id}"));
        let c = w
            .standalone_mut(id)
            .ok_or_else(|| not_found(format!("{verb} container {id}")))?;
        c.state.get_or_insert_with(Default::default).status = Some(status);
        Ok(())
    }
}

impl FakeRuntime {
    fn summaries(&self) -> Vec<ContainerSummary> {
        let w = self.world();
        w.containers
            .iter()
            .map(|c| ContainerSummary {
                id: c.id.clone(),
                name: c.name.clone(),
                labels: std::collections::HashMap::from([
                    ("com.docker.compose.project".to_owned(), c.project.clone()),
                    ("com.docker.compose.service".to_owned(), c.service.clone()),
                    ("com.docker.compose.oneoff".to_owned(), "False".to_owned()),
                ]),
                image_id: c.image_id.clone(),
                state: c.state,
            })
            .collect()
    }
}

fn recreate(w: &mut World, project: &str, service: &str, image_id: String, image_ref: &str) {
    w.containers
        .retain(|c| !(c.project == project && c.service == service));
    w.next += 1;
    let id = format!("{:064x}", w.next);
    w.containers.push(Container {
        id,
        name: format!("{project}-{service}-1"),
        project: project.to_owned(),
        service: service.to_owned(),
        image_id,
        image_ref: image_ref.to_owned(),
        state: ContainerState::Running,
    });
}

fn not_found(action: String) -> RuntimeError {
    RuntimeError::Api {
        action,
        status: Some(404),
        message: "no such object".into(),
    }
}

impl ContainerRuntime for FakeRuntime {
    async fn pull(
        &self,
        reference: &str,
        _auth: Option<&RegistryLogin>,
    ) -> Result<(), RuntimeError> {
        let mut w = self.world();
        w.calls.push(format!("pull {reference}"));
        let Some(health) = w.remote.get(reference).copied() else {
            return Err(RuntimeError::Pull {
                reference: reference.to_owned(),
                message: "manifest unknown".into(),
            });
        };
        if w.find(reference).is_none() {
            w.next += 1;
            let id = format!("sha256:{:064x}", w.next);
            w.images.push(Image {
                id,
                repo_tags: Vec::new(),
                repo_digests: vec![reference.to_owned()],
                health,
            });
        }
        Ok(())
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        self.read("image");
        Ok(self.world().find(reference).map(|i| ImageInfo {
            id: i.id.clone(),
            repo_tags: i.repo_tags.clone(),
            repo_digests: i.repo_digests.clone(),
            has_healthcheck: i.health.is_some(),
            labels: Default::default(),
        }))
    }

    async fn tag(&self, source: &str, repo: &str, tag: &str) -> Result<(), RuntimeError> {
        let mut w = self.world();
        let name = format!("{repo}:{tag}");
        w.calls.push(format!("tag {name}"));
        let id = w
            .find(source)
            .map(|i| i.id.clone())
            .ok_or_else(|| not_found(format!("tag {source} as {name}")))?;
        for image in &mut w.images {
            image.repo_tags.retain(|t| *t != name);
            if image.id == id {
                image.repo_tags.push(name.clone());
            }
        }
        Ok(())
    }

    async fn remove_image(&self, reference: &str) -> Result<ImageRemoval, RuntimeError> {
        let mut w = self.world();
        w.calls.push(format!("remove {reference}"));
        let Some(id) = w.find(reference).map(|i| i.id.clone()) else {
            return Ok(ImageRemoval::Absent);
        };
        for image in &mut w.images {
            image.repo_tags.retain(|t| t != reference);
        }
        Ok(ImageRemoval::InUse {
            detail: format!("fake: {id} kept"),
        })
    }

    async fn service_containers(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.read("service_containers");
        let w = self.world();
        let mut out: Vec<ContainerInfo> = w
            .containers
            .iter()
            .filter(|c| c.project == project && c.service == service)
            .map(|c| w.info(c))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The fake's containers carry the project and service labels only, not how compose ran
    /// them, so the engine finds their project from the configured compose file.
    async fn compose_containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        self.read("compose_containers");
        Ok(self.summaries())
    }

    /// The fake has compose containers only: every container is the compose list.
    async fn containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        self.read("containers");
        Ok(self.summaries())
    }

    /// The fake's engine sends no events: the stream stays open until the daemon stops.
    async fn container_events(
        &self,
        _sink: tokio::sync::mpsc::Sender<lookout::runtime::ContainerEvent>,
    ) -> Result<(), RuntimeError> {
        std::future::pending().await
    }

    async fn container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        self.read("container");
        let w = self.world();
        w.containers
            .iter()
            .find(|c| c.id == id || c.name == id)
            .map(|c| w.info(c))
            .or_else(|| w.standalone(id).map(|c| w.standalone_info(c)))
            .ok_or_else(|| not_found(format!("inspect container {id}")))
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        Ok("1.45".into())
    }

    // Standalone containers.

    async fn inspect_container(
        &self,
        id: &str,
    ) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        self.read("inspect_container");
        Ok(self.world().standalone(id).cloned())
    }

    async fn image_config(&self, reference: &str) -> Result<Option<ImageConfig>, RuntimeError> {
        self.read("image_config");
        Ok(self.world().find(reference).map(|_| ImageConfig::default()))
    }

    async fn all_containers(&self) -> Result<Vec<ContainerInspectResponse>, RuntimeError> {
        self.read("all_containers");
        Ok(self.world().standalone.clone())
    }

    async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, RuntimeError> {
        let mut w = self.world();
        w.calls.push(format!("create {name}"));
        if w.standalone(name).is_some() {
            return Err(conflict(format!("create container {name}")));
        }
        let reference = body.image.clone().unwrap_or_default();
        let image_id = w
            .find(&reference)
            .map(|i| i.id.clone())
            .ok_or_else(|| not_found(format!("create container {name} on {reference}")))?;
        w.next += 1;
        let id = format!("{:064x}", w.next);
        let networks = body
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.clone());
        w.standalone.push(ContainerInspectResponse {
            id: Some(id.clone()),
            name: Some(format!("/{name}")),
            image: Some(image_id),
            state: Some(bollard::models::ContainerState {
                status: Some(ContainerStateStatusEnum::CREATED),
                ..Default::default()
            }),
            config: Some(ContainerConfig {
                image: Some(reference),
                env: body.env,
                cmd: body.cmd,
                labels: body.labels,
                ..Default::default()
            }),
            host_config: body.host_config,
            network_settings: Some(NetworkSettings {
                networks,
                ..Default::default()
            }),
            ..Default::default()
        });
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.set_standalone_state(id, "start", ContainerStateStatusEnum::RUNNING)
    }

    async fn stop_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.set_standalone_state(id, "stop", ContainerStateStatusEnum::EXITED)
    }

    async fn rename_container(&self, id: &str, new_name: &str) -> Result<(), RuntimeError> {
        let mut w = self.world();
        w.calls.push(format!("rename {id} {new_name}"));
        if w.standalone(new_name).is_some() {
            return Err(conflict(format!("rename container {id} to {new_name}")));
        }
        let c = w
            .standalone_mut(id)
            .ok_or_else(|| not_found(format!("rename container {id}")))?;
        c.name = Some(format!("/{new_name}"));
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut w = self.world();
        w.calls.push(format!("remove container {id}"));
        let before = w.standalone.len();
        w.standalone.retain(|c| !is(c, id));
        if w.standalone.len() == before {
            return Err(not_found(format!("remove container {id}")));
        }
        Ok(())
    }

    async fn connect_network(
        &self,
        network: &str,
        container: &str,
        endpoint: EndpointSettings,
    ) -> Result<(), RuntimeError> {
        let mut w = self.world();
        w.calls.push(format!("connect {container} {network}"));
        let c = w
            .standalone_mut(container)
            .ok_or_else(|| not_found(format!("connect container {container}")))?;
        c.network_settings
            .get_or_insert_with(Default::default)
            .networks
            .get_or_insert_with(Default::default)
            .insert(network.to_owned(), endpoint);
        Ok(())
    }
}

impl World {
    /// A standalone container by id or name.
    fn standalone(&self, id: &str) -> Option<&ContainerInspectResponse> {
        self.standalone.iter().find(|c| is(c, id))
    }

    fn standalone_mut(&mut self, id: &str) -> Option<&mut ContainerInspectResponse> {
        self.standalone.iter_mut().find(|c| is(c, id))
    }

    fn standalone_info(&self, c: &ContainerInspectResponse) -> ContainerInfo {
        let image_id = c.image.clone().unwrap_or_default();
        let health = self
            .images
            .iter()
            .find(|i| i.id == image_id)
            .and_then(|i| i.health);
        let status = c.state.as_ref().and_then(|s| s.status);
        ContainerInfo {
            id: c.id.clone().unwrap_or_default(),
            name: c
                .name
                .clone()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            image_id,
            image_ref: c
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            state: status.map_or(ContainerState::Unknown, |s| {
                ContainerState::parse(s.as_ref())
            }),
            health,
            health_log: (health == Some(Health::Unhealthy)).then(|| "fake: unhealthy".into()),
            restart_count: 0,
            exit_code: None,
            oom_killed: false,
            started_at: None,
            has_healthcheck: health.is_some(),
        }
    }
}

fn is(c: &ContainerInspectResponse, id: &str) -> bool {
    c.id.as_deref() == Some(id) || c.name.as_deref().map(|n| n.trim_start_matches('/')) == Some(id)
}

fn conflict(action: String) -> RuntimeError {
    RuntimeError::Api {
        action,
        status: Some(409),
        message: "name already in use".into(),
    }
}

/// Compose in memory over a [`FakeRuntime`]: the project is named as compose names it from
/// the file's folder, and `up` runs the image the compose file names now (its `${VAR}`s read
/// from the project's `.env`).
#[derive(Debug, Clone)]
pub(crate) struct FakeCompose {
    runtime: FakeRuntime,
    /// While set, `up` never returns (a process killed in the middle of an update).
    hang: Arc<std::sync::atomic::AtomicBool>,
    ups: Arc<AtomicU64>,
}

impl FakeCompose {
    pub(crate) fn new(runtime: FakeRuntime) -> Self {
        Self {
            runtime,
            hang: Arc::default(),
            ups: Arc::default(),
        }
    }

    /// From now on `up` hangs (`true`) or works (`false`).
    pub(crate) fn hang_up(&self, hang: bool) {
        self.hang.store(hang, Ordering::SeqCst);
    }

    /// How many times `up` ran.
    pub(crate) fn ups(&self) -> u64 {
        self.ups.load(Ordering::SeqCst)
    }

    fn image_of(project: &ComposeProject, service: &str) -> Result<Option<String>, RuntimeError> {
        let file = project.files.first().cloned().unwrap_or_default();
        let problem = |reason: String| RuntimeError::Project {
            file: file.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&file).map_err(|e| problem(e.to_string()))?;
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).map_err(|e| problem(e.to_string()))?;
        let entry = doc
            .get("services")
            .and_then(|s| s.get(service))
            .ok_or_else(|| problem(format!("no service {service:?}")))?;
        // `${VAR}`s read the project's `.env`, as compose reads it.
        let env = std::fs::read_to_string(project.project_dir.join(".env")).unwrap_or_default();
        let env = lookout::compose::parse_env(&env);
        let value = |name: &str| {
            env.iter()
                .rfind(|e| e.name == name)
                .map(|e| e.value.clone())
        };
        entry
            .get("image")
            .and_then(|i| i.as_str())
            .map(|i| lookout::compose::interpolate(i, value).map_err(problem))
            .transpose()
    }
}

impl Compose for FakeCompose {
    async fn project(&self, spec: &ServiceSpec) -> Result<ComposeProject, RuntimeError> {
        let file = spec
            .compose_file
            .as_deref()
            .expect("fake services name their compose file");
        ComposeProject::from_file(file, None, |_| None)
    }

    async fn up(&self, project: &ComposeProject, services: &[&str]) -> Result<(), RuntimeError> {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.ups.fetch_add(1, Ordering::SeqCst);
        for service in services {
            self.up_one(project, service)?;
        }
        Ok(())
    }

    async fn service_image(
        &self,
        project: &ComposeProject,
        service: &str,
    ) -> Result<Option<String>, RuntimeError> {
        Self::image_of(project, service)
    }
}

impl FakeCompose {
    fn up_one(&self, project: &ComposeProject, service: &str) -> Result<(), RuntimeError> {
        let image = Self::image_of(project, service)?.ok_or_else(|| RuntimeError::Project {
            file: project.files[0].clone(),
            reason: format!("service {service:?} has no image"),
        })?;
        let mut w = self.runtime.world();
        w.calls.push(format!("up {service} {image}"));
        let id =
            w.find(&image)
                .map(|i| i.id.clone())
                .ok_or_else(|| RuntimeError::ComposeFailed {
                    command: format!("compose up -d --no-deps {service}"),
                    code: Some(1),
                    stderr_tail: format!("pull access denied for {image}"),
                })?;
        recreate(&mut w, &project.name, service, id, &image);
        Ok(())
    }
}

/// A registry in memory: per repository, its tags and the digest each points to.
#[derive(Debug, Default)]
pub(crate) struct FakeRegistry {
    repos: Mutex<BTreeMap<String, Vec<(String, String)>>>,
    /// Tag-list and digest requests answered.
    pub requests: AtomicU64,
}

impl FakeRegistry {
    /// `repository:tag` (as `team/web`) now points to `digest`.
    pub(crate) fn push(&self, repository: &str, tag: &str, digest: &str) {
        let mut repos = self.repos.lock().unwrap();
        let tags = repos.entry(repository.to_owned()).or_default();
        tags.retain(|(t, _)| t != tag);
        tags.push((tag.to_owned(), digest.to_owned()));
    }
}

#[async_trait]
impl Registry for FakeRegistry {
    async fn digest(&self, image: &ImageRef) -> Result<Digests, RegistryError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let tag = image.tag().unwrap_or("latest");
        let repos = self.repos.lock().unwrap();
        let digest = repos
            .get(image.repository())
            .and_then(|tags| tags.iter().find(|(t, _)| t == tag))
            .map(|(_, d)| d.clone())
            .ok_or_else(|| {
                ErrorKind::NotFound {
                    what: format!("tag {tag}"),
                }
                .at(image.registry(), image.repository())
            })?;
        Ok(Digests {
            manifest: digest.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            platform: Some(digest),
        })
    }

    async fn tags(&self, image: &ImageRef) -> Result<Vec<Tag>, RegistryError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .repos
            .lock()
            .unwrap()
            .get(image.repository())
            .map(|tags| {
                tags.iter()
                    .map(|(t, _)| Tag::new(t.clone(), None))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn created(&self, _image: &ImageRef) -> Result<Option<i64>, RegistryError> {
        Ok(None)
    }

    async fn credential(&self, _image: &ImageRef) -> Result<Credential, RegistryError> {
        Ok(Credential::Anonymous)
    }
}

/// The compose file of a [`FakeHost`]: `web` is the service lookout keeps current, `db` is a
/// neighbour whose bytes must never change. Comments and quoting are there to be kept.
pub(crate) const COMPOSE: &str = "# the web project\nservices:\n  web:\n    image: \"registry.test:5000/team/web:1.0.0\"   # pinned by lookout\n    network_mode: none\n  db:\n    image: registry.test:5000/team/db:16\n    network_mode: none\n";

/// One compose project (`app/compose.yaml`, project `app`) with lookout's configuration, on the
/// three fakes: `team/web:1.0.0` runs and is published in the registry.
pub(crate) struct FakeHost {
    pub scratch: Scratch,
    pub compose_file: PathBuf,
    pub config_path: PathBuf,
    pub runtime: FakeRuntime,
    pub compose: FakeCompose,
    pub registry: Arc<FakeRegistry>,
}

/// The repository of the service lookout keeps current, as the runtime names it.
pub(crate) const WEB: &str = "registry.test:5000/team/web";

impl FakeHost {
    /// `extra` is more top-level configuration (TOML lines).
    pub(crate) fn new(test: &str, extra: &str) -> Self {
        let scratch = Scratch::new(test);
        let compose_file = scratch.write("app/compose.yaml", COMPOSE);
        let config_path =
            scratch.write("lookout.toml", config_text(&scratch, &compose_file, extra));
        let runtime = FakeRuntime::default();
        let compose = FakeCompose::new(runtime.clone());
        let registry = Arc::new(FakeRegistry::default());
        let old = digest("web 1.0.0");
        runtime.local_image(WEB, "1.0.0", &old, Some(Health::Healthy));
        runtime.local_image("registry.test:5000/team/db", "16", &digest("db 16"), None);
        runtime.run("app", "web", "registry.test:5000/team/web:1.0.0");
        runtime.run("app", "db", "registry.test:5000/team/db:16");
        registry.push("team/web", "1.0.0", &old);
        Self {
            scratch,
            compose_file,
            config_path,
            runtime,
            compose,
            registry,
        }
    }

    /// Publishes `team/web:TAG`: the registry serves it, a pull brings it in with `health`.
    pub(crate) fn publish(&self, tag: &str, health: Option<Health>) -> String {
        let d = digest(&format!("web {tag}"));
        self.registry.push("team/web", tag, &d);
        self.runtime.publish(WEB, &d, health);
        d
    }

    pub(crate) fn config(&self) -> Config {
        config::load(&self.config_path).expect("the test configuration is valid")
    }

    /// The engine on this host's fakes, with the system clock.
    pub(crate) fn engine(&self) -> (Engine<FakeRuntime, FakeCompose>, Deliveries) {
        self.engine_with(Arc::new(SystemClock))
    }

    /// The engine on this host's fakes, with `clock` for everything it records.
    pub(crate) fn engine_with(
        &self,
        clock: Arc<dyn Clock>,
    ) -> (Engine<FakeRuntime, FakeCompose>, Deliveries) {
        let config = self.config();
        let (store, opened) = open_store(&config, clock.now()).expect("open the state file");
        let (telemetry, deliveries) =
            Telemetry::new(TelemetrySettings::from_config(&config), clock.clone());
        let engine = Engine::with(
            config,
            self.runtime.clone(),
            self.compose.clone(),
            store,
            opened,
            telemetry,
            clock,
        );
        engine.registries.set_adapter(HOST, self.registry.clone());
        (engine, deliveries)
    }

    /// The compose file's bytes now.
    pub(crate) fn compose_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.compose_file).unwrap()
    }

    pub(crate) fn state_file(&self) -> PathBuf {
        self.scratch.join("state/state.json")
    }
}

/// lookout's configuration for the fake host: one semver service, short gates.
pub(crate) fn config_text(scratch: &Scratch, compose_file: &Path, extra: &str) -> String {
    format!(
        "state_file = \"{}\"\ncheck_interval = 60\nhealth_timeout = \"2s\"\nhealth_stable = \"0s\"\ncompose_timeout = \"5s\"\n{extra}\n\n[[services]]\nname = \"web\"\ncompose_file = \"{}\"\ncompose_service = \"web\"\nimage = \"registry.test:5000/team/web:1.0.0\"\npolicy = \"semver\"\n",
        scratch.join("state/state.json").display(),
        compose_file.display()
    )
}
