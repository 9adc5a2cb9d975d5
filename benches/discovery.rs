//! Discovery at scale: 500 containers over 50 repositories (`DISCOVERY_CONTAINERS`,
//! `DISCOVERY_REPOS`), half labelled `lookout.policy=semver`, the rest on the default digest
//! policy, every one up to date. The engine runs on an in-memory container list that counts
//! each Docker API call; the registry is the real one (Debian's `docker-registry` on loopback,
//! started here, as in `check_scale`). First discovery alone, cold (every container inspected
//! once) and again (nothing new); then two check passes, each discovering again. For each it
//! prints the wall time, the Docker calls by kind and the registry requests, and fails when a
//! pass asks Docker more than one list, or inspects an image or a container it has seen.
//!
//! `cargo bench --bench discovery`

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, ImageConfig,
};
use futures_util::StreamExt as _;
use lookout::engine::{Engine, PassOptions, ServiceResult, open_store};
use lookout::runtime::{
    Compose, ComposeProject, ContainerEvent, ContainerInfo, ContainerRuntime, ContainerState,
    ContainerSummary, ImageInfo, ImageRemoval, RegistryLogin, RuntimeError,
};
use lookout::schedule::{Clock, SystemClock};
use lookout::telemetry::{Telemetry, TelemetrySettings};

mod common;
use common::{push, start_registry};

/// A host's containers in memory, counting each call by method.
#[derive(Default)]
struct Host {
    containers: Vec<(ContainerSummary, String)>,
    images: HashMap<String, ImageInfo>,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl Host {
    fn count(&self, method: &'static str) {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
    }

    fn take_calls(&self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

fn unexpected(what: &str) -> RuntimeError {
    RuntimeError::Api {
        action: what.to_owned(),
        status: None,
        message: "not part of an idle check".into(),
    }
}

impl ContainerRuntime for Host {
    async fn pull(&self, _: &str, _: Option<&RegistryLogin>) -> Result<(), RuntimeError> {
        Err(unexpected("pull"))
    }
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        self.count("image");
        Ok(self.images.get(reference).cloned())
    }
    async fn tag(&self, _: &str, _: &str, _: &str) -> Result<(), RuntimeError> {
        Err(unexpected("tag"))
    }
    async fn remove_image(&self, _: &str) -> Result<ImageRemoval, RuntimeError> {
        Err(unexpected("remove an image"))
    }
    async fn service_containers(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        Err(unexpected("list a service's containers"))
    }
    async fn compose_containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        Err(unexpected("list compose's containers"))
    }
    async fn containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        self.count("containers");
        Ok(self.containers.iter().map(|(c, _)| c.clone()).collect())
    }
    async fn container_events(
        &self,
        _: tokio::sync::mpsc::Sender<ContainerEvent>,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        self.count("container");
        let (c, image_ref) = self
            .containers
            .iter()
            .find(|(c, _)| c.id == id)
            .ok_or_else(|| unexpected("inspect an unknown container"))?;
        Ok(ContainerInfo {
            id: c.id.clone(),
            name: c.name.clone(),
            image_id: c.image_id.clone(),
            image_ref: image_ref.clone(),
            state: c.state,
            health: None,
            health_log: None,
            restart_count: 0,
            exit_code: None,
            oom_killed: false,
            started_at: None,
            has_healthcheck: false,
        })
    }
    async fn version(&self) -> Result<String, RuntimeError> {
        Ok("1.41".into())
    }
    // An idle host: nothing is recreated, so none of these may be asked.
    async fn inspect_container(
        &self,
        _: &str,
    ) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        Err(unexpected("inspect a container in full"))
    }
    async fn image_config(&self, _: &str) -> Result<Option<ImageConfig>, RuntimeError> {
        Err(unexpected("read an image's config"))
    }
    async fn all_containers(&self) -> Result<Vec<ContainerInspectResponse>, RuntimeError> {
        Err(unexpected("inspect every container"))
    }
    async fn create_container(
        &self,
        _: &str,
        _: ContainerCreateBody,
    ) -> Result<String, RuntimeError> {
        Err(unexpected("create a container"))
    }
    async fn start_container(&self, _: &str) -> Result<(), RuntimeError> {
        Err(unexpected("start a container"))
    }
    async fn stop_container(&self, _: &str) -> Result<(), RuntimeError> {
        Err(unexpected("stop a container"))
    }
    async fn rename_container(&self, _: &str, _: &str) -> Result<(), RuntimeError> {
        Err(unexpected("rename a container"))
    }
    async fn remove_container(&self, _: &str) -> Result<(), RuntimeError> {
        Err(unexpected("remove a container"))
    }
    async fn connect_network(
        &self,
        _: &str,
        _: &str,
        _: EndpointSettings,
    ) -> Result<(), RuntimeError> {
        Err(unexpected("connect a network"))
    }
}

/// Standalone containers need no compose.
struct NoCompose;

impl Compose for NoCompose {
    async fn project(
        &self,
        _: &lookout::config::ServiceSpec,
    ) -> Result<ComposeProject, RuntimeError> {
        Err(unexpected("compute a compose project"))
    }
    async fn up(&self, _: &ComposeProject, _: &[&str]) -> Result<(), RuntimeError> {
        Err(unexpected("compose up"))
    }
    async fn service_image(
        &self,
        _: &ComposeProject,
        _: &str,
    ) -> Result<Option<String>, RuntimeError> {
        Err(unexpected("resolve a compose image"))
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let containers = env_or("DISCOVERY_CONTAINERS", 500);
    let repos = env_or("DISCOVERY_REPOS", 50);
    let registry = start_registry("");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let digests: Vec<String> = runtime.block_on(async {
        let client = lookout::tls::client();
        futures_util::stream::iter(0..repos)
            .map(|r| {
                let (client, host) = (&client, &registry.host);
                async move { push(client, host, &format!("disc/app{r}"), "1.0.0").await }
            })
            .buffered(8)
            .collect()
            .await
    });
    let mut host = Host::default();
    for (r, digest) in digests.iter().enumerate() {
        let id = format!("sha256:{}", format!("{r:02x}").repeat(32));
        let repo = format!("{}/disc/app{r}", registry.host);
        host.images.insert(
            id.clone(),
            ImageInfo {
                id: id.clone(),
                repo_tags: vec![format!("{repo}:1.0.0")],
                repo_digests: vec![format!("{repo}@{digest}")],
                has_healthcheck: false,
                labels: HashMap::new(),
            },
        );
    }
    for i in 0..containers {
        let r = i % repos;
        let mut labels = HashMap::new();
        if i % 2 == 0 {
            labels.insert("lookout.policy".to_owned(), "semver".to_owned());
        }
        host.containers.push((
            ContainerSummary {
                id: format!("c{i:04}"),
                name: format!("svc{i}"),
                labels,
                image_id: format!("sha256:{}", format!("{r:02x}").repeat(32)),
                state: ContainerState::Running,
            },
            format!("{}/disc/app{r}:1.0.0", registry.host),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "state_file = \"{}\"\n[discovery]\nenabled = true\n",
        dir.path().join("state.json").display()
    );
    let config = lookout::config::from_text(Path::new("discovery.toml"), &text, &|_| None).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, opened) = open_store(&config, clock.now()).unwrap();
    let (telemetry, _deliveries) =
        Telemetry::new(TelemetrySettings::from_config(&config), clock.clone());
    let engine = Engine::with(config, host, NoCompose, store, opened, telemetry, clock);
    let opts = PassOptions {
        actor: "bench".into(),
        ..PassOptions::default()
    };
    // Discovery alone (what a container event costs): cold, then again with nothing new.
    for round in ["cold", "again"] {
        let started = Instant::now();
        let new = runtime.block_on(engine.rediscover());
        let elapsed = started.elapsed();
        let calls = engine.runtime.take_calls();
        eprintln!(
            "discovery: discovery alone ({round}) over {containers} containers: {:.1} ms; Docker calls {calls:?}; {} new service(s)",
            elapsed.as_secs_f64() * 1000.0,
            new.len()
        );
        assert_eq!(calls.get("containers"), Some(&1));
        let inspected = calls.get("container").copied().unwrap_or(0);
        if round == "cold" {
            assert_eq!((new.len(), inspected), (containers, containers as u64));
        } else {
            assert_eq!(
                (new.len(), inspected),
                (0, 0),
                "nothing new, nothing inspected again"
            );
        }
    }
    let mut seen_requests = 0;
    for pass in ["first", "idle"] {
        let started = Instant::now();
        let outcomes = runtime.block_on(engine.pass(&opts));
        let elapsed = started.elapsed();
        let calls = engine.runtime.take_calls();
        let stats = engine.registries.stats();
        let total = stats.total(&registry.host);
        let (gets, heads) = (
            stats.count(&registry.host, "GET", "200"),
            stats.count(&registry.host, "HEAD", "200"),
        );
        let up_to_date = outcomes
            .iter()
            .filter(|o| o.result == ServiceResult::UpToDate)
            .count();
        eprintln!(
            "discovery: {pass} pass over {containers} containers, {repos} repositories: {:.0} ms; \
             Docker calls {calls:?}; registry requests {} ({gets} GET, {heads} HEAD so far); \
             {up_to_date} up to date",
            elapsed.as_secs_f64() * 1000.0,
            total - seen_requests,
        );
        seen_requests = total;
        assert_eq!(
            up_to_date,
            containers,
            "every service is up to date: {:?}",
            outcomes
                .iter()
                .find(|o| o.result != ServiceResult::UpToDate)
        );
        assert_eq!(
            calls.get("containers"),
            Some(&1),
            "one container list per pass"
        );
        assert_eq!(
            calls.get("image"),
            None,
            "no image inspected again: discovery's inspections are kept"
        );
        assert_eq!(
            calls.get("container"),
            None,
            "a pass inspects no container discovery has seen"
        );
    }
    drop(dir);
}
