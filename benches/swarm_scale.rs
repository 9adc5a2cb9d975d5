//! One check cycle of Swarm services at scale: 10,000 simulated services over 1,000
//! repositories by default (`SWARM_SCALE_SERVICES`, `SWARM_SCALE_REPOS`), found by
//! `[swarm] enabled = "auto"` with `[discovery]` on (as shipped) in an in-memory service list (the engine's Swarm seam; 10,000
//! services need not run), checked against a local registry (Debian's `docker-registry` on
//! loopback, started here) through `Engine::pass`, as the daemon runs it. Each service runs
//! `1.0.0@sha256:…` on the semver policy with `1.1.0` in its repository; none has
//! `lookout.action=update`, so the cycle checks and reports without updating.
//!
//! It prints the wall time of the cycle, the registry requests by kind, and the Swarm calls,
//! and fails when a count is not what the design promises: one service list, one inspect per
//! service, one tag list per repository and one `HEAD` per distinct candidate (only the
//! `HEAD`s count against Docker Hub's pull rate limit).
//!
//! `cargo bench --bench swarm_scale`

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, ImageConfig,
};
use futures_util::StreamExt as _;
use lookout::engine::{Engine, PassOptions, ServiceResult};
use lookout::runtime::swarm::{SwarmApi, SwarmService, SwarmTask, UpdateSettings};
use lookout::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSummary, ImageInfo, ImageRemoval, LazyCompose,
    RegistryLogin, RuntimeError,
};
use lookout::schedule::{Clock, SystemClock};
use lookout::telemetry::{Telemetry, TelemetrySettings};

mod common;
use common::{push, start_registry};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The engine's container side: a Swarm manager with no containers of its own.
struct NoContainers;

impl ContainerRuntime for NoContainers {
    async fn pull(&self, _: &str, _: Option<&RegistryLogin>) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn image(&self, _: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        Ok(None)
    }
    async fn tag(&self, _: &str, _: &str, _: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn remove_image(&self, _: &str) -> Result<ImageRemoval, RuntimeError> {
        Ok(ImageRemoval::Absent)
    }
    async fn service_containers(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        Ok(Vec::new())
    }
    async fn compose_containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        Ok(Vec::new())
    }
    async fn container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        Err(none_here(id))
    }
    async fn version(&self) -> Result<String, RuntimeError> {
        Ok("1.41".into())
    }
    async fn containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        Ok(Vec::new())
    }
    async fn container_events(
        &self,
        _: tokio::sync::mpsc::Sender<lookout::runtime::ContainerEvent>,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
    // No container here is recreated: none of these may be asked.
    async fn inspect_container(
        &self,
        id: &str,
    ) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        Err(none_here(id))
    }
    async fn image_config(&self, reference: &str) -> Result<Option<ImageConfig>, RuntimeError> {
        Err(none_here(reference))
    }
    async fn all_containers(&self) -> Result<Vec<ContainerInspectResponse>, RuntimeError> {
        Ok(Vec::new())
    }
    async fn create_container(
        &self,
        name: &str,
        _: ContainerCreateBody,
    ) -> Result<String, RuntimeError> {
        Err(none_here(name))
    }
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        Err(none_here(id))
    }
    async fn stop_container(&self, id: &str) -> Result<(), RuntimeError> {
        Err(none_here(id))
    }
    async fn rename_container(&self, id: &str, _: &str) -> Result<(), RuntimeError> {
        Err(none_here(id))
    }
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        Err(none_here(id))
    }
    async fn connect_network(
        &self,
        _: &str,
        container: &str,
        _: EndpointSettings,
    ) -> Result<(), RuntimeError> {
        Err(none_here(container))
    }
}

fn none_here(what: &str) -> RuntimeError {
    RuntimeError::Service {
        service: what.to_owned(),
        reason: "no containers here".into(),
    }
}

/// The Swarm manager's service list, in memory, counting what is asked of it.
struct MemorySwarm {
    services: HashMap<String, SwarmService>,
    lists: AtomicU64,
    inspects: AtomicU64,
    updates: AtomicU64,
}

#[async_trait::async_trait]
impl SwarmApi for MemorySwarm {
    async fn is_manager(&self) -> Result<bool, RuntimeError> {
        Ok(true)
    }
    async fn services(&self) -> Result<Vec<SwarmService>, RuntimeError> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        let mut all: Vec<SwarmService> = self.services.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }
    async fn service(&self, name: &str) -> Result<Option<SwarmService>, RuntimeError> {
        self.inspects.fetch_add(1, Ordering::Relaxed);
        Ok(self.services.get(name).cloned())
    }
    async fn update_image(
        &self,
        _: &str,
        _: &str,
        _: Option<&UpdateSettings>,
        _: Option<&RegistryLogin>,
    ) -> Result<Vec<String>, RuntimeError> {
        self.updates.fetch_add(1, Ordering::Relaxed);
        Ok(Vec::new())
    }
    async fn rollback(&self, _: &str) -> Result<Vec<String>, RuntimeError> {
        self.updates.fetch_add(1, Ordering::Relaxed);
        Ok(Vec::new())
    }
    async fn tasks(&self, _: &str) -> Result<Vec<SwarmTask>, RuntimeError> {
        Ok(Vec::new())
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let services = env_or("SWARM_SCALE_SERVICES", 10_000);
    let repos = env_or("SWARM_SCALE_REPOS", 1_000);
    let registry = start_registry("");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pushing = Instant::now();
    runtime.block_on(async {
        let client = lookout::tls::client();
        let pushes =
            (0..repos).flat_map(|r| ["1.0.0", "1.1.0"].map(move |t| (format!("swarm/app{r}"), t)));
        futures_util::stream::iter(pushes)
            .for_each_concurrent(16, |(repo, tag)| {
                let (client, host) = (&client, &registry.host);
                async move {
                    push(client, host, &repo, tag).await;
                }
            })
            .await;
    });
    eprintln!(
        "swarm_scale: pushed {} images in {:.1} s",
        repos * 2,
        pushing.elapsed().as_secs_f64()
    );
    let running = format!("sha256:{}", "1".repeat(64));
    let swarm = Arc::new(MemorySwarm {
        services: (0..services)
            .map(|i| {
                let name = format!("stack_svc{i}");
                let service = SwarmService {
                    id: format!("id{i}"),
                    name: name.clone(),
                    version: 1,
                    labels: HashMap::from([("lookout.policy".to_owned(), "semver".to_owned())]),
                    image: format!("{}/swarm/app{}:1.0.0@{running}", registry.host, i % repos),
                    replicas: Some(3),
                    own_update_config: false,
                    start_first_allowed: true,
                    update_status: None,
                };
                (name, service)
            })
            .collect(),
        lists: AtomicU64::new(0),
        inspects: AtomicU64::new(0),
        updates: AtomicU64::new(0),
    });
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "state_file = \"{}\"\n[discovery]\nenabled = true\n[swarm]\nenabled = \"auto\"\n",
        dir.path().join("state.json").display()
    );
    let config =
        lookout::config::from_text(std::path::Path::new("swarm.toml"), &text, &|_| None).unwrap();
    let outcomes = runtime.block_on(async {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (store, opened) = lookout::engine::open_store(&config, clock.now()).unwrap();
        let (telemetry, _deliveries) =
            Telemetry::new(TelemetrySettings::from_config(&config), clock.clone());
        let compose = LazyCompose::new(None, Duration::from_secs(60));
        let engine = Engine::with(config, NoContainers, compose, store, opened, telemetry, clock)
            .with_swarm(swarm.clone());
        let started = Instant::now();
        let outcomes = engine
            .pass(&PassOptions {
                actor: "bench".into(),
                ..PassOptions::default()
            })
            .await;
        let elapsed = started.elapsed();
        let stats = engine.registries.stats();
        let (gets, heads, total) = (
            stats.count(&registry.host, "GET", "200"),
            stats.count(&registry.host, "HEAD", "200"),
            stats.total(&registry.host),
        );
        eprintln!(
            "swarm_scale: {services} Swarm services over {repos} repositories: one cycle {:.0} ms, {total} registry requests ({gets} GET, {heads} HEAD), Swarm calls: {} list, {} inspect, {} update",
            elapsed.as_secs_f64() * 1000.0,
            swarm.lists.load(Ordering::Relaxed),
            swarm.inspects.load(Ordering::Relaxed),
            swarm.updates.load(Ordering::Relaxed),
        );
        // One tag list per repository, one HEAD of 1.1.0 per repository.
        assert_eq!(
            (gets, heads, total),
            (repos as u64, repos as u64, 2 * repos as u64)
        );
        outcomes
    });
    assert_eq!(outcomes.len(), services);
    let available = outcomes
        .iter()
        .filter(|o| o.result == ServiceResult::UpdateAvailable)
        .count();
    assert_eq!(available, services, "{:?}", outcomes.first());
    assert_eq!(swarm.lists.load(Ordering::Relaxed), 1, "one service list");
    assert_eq!(
        swarm.inspects.load(Ordering::Relaxed),
        services as u64,
        "one inspect per service"
    );
    assert_eq!(swarm.updates.load(Ordering::Relaxed), 0, "nothing updated");
}
