//! Discovery at scale: 500 containers over 50 repositories (`DISCOVERY_CONTAINERS`,
//! `DISCOVERY_REPOS`), half labelled `lookout.policy=semver`, the rest on the default digest
//! policy, every one up to date. The engine runs on an in-memory container list that counts
//! each Docker API call; the registry is the real one (Debian's `docker-registry` on loopback,
//! started here, as in `check_scale`). First discovery alone, cold (every container inspected
//! once) and again (nothing new); then two check passes, each discovering again. For each it
//! prints the wall time, the Docker calls by kind and the registry requests, and fails when a
//! pass asks Docker more than one list and one inspection per image, or inspects a container it
//! has seen.
//!
//! `cargo bench --bench discovery`

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use lookout::engine::{Engine, PassOptions, ServiceResult, open_store};
use lookout::runtime::{
    Compose, ComposeProject, ContainerEvent, ContainerInfo, ContainerRuntime, ContainerState,
    ContainerSummary, ImageInfo, ImageRemoval, RegistryLogin, RuntimeError,
};
use lookout::schedule::{Clock, SystemClock};
use lookout::telemetry::{Telemetry, TelemetrySettings};
use sha2::Digest as _;

struct Registry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(dir: tempfile::TempDir) -> Registry {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("storage").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry is missing: run tests/run");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&host).is_err() {
        assert!(Instant::now() < deadline, "the registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        child,
        host,
        _dir: dir,
    }
}

fn digest_of(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

async fn blob(client: &reqwest::Client, host: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = digest_of(bytes);
    let r = client
        .post(format!("http://{host}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let location = if location.starts_with('/') {
        format!("http://{host}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = client
        .put(format!("{location}{sep}digest={digest}"))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    digest
}

/// Pushes `repo:tag`, a one-layer image; returns its manifest's digest.
async fn push(client: &reqwest::Client, host: &str, repo: &str, tag: &str) -> String {
    let content = format!("{repo}:{tag}");
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest_of(content.as_bytes())]}})
    .to_string();
    let config_digest = blob(client, host, repo, config.as_bytes()).await;
    let layer_digest = blob(client, host, repo, content.as_bytes()).await;
    let media = "application/vnd.docker.distribution.manifest.v2+json";
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": media,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": content.len(), "digest": layer_digest}]})
    .to_string();
    let digest = digest_of(manifest.as_bytes());
    let r = client
        .put(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", media)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    digest
}

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
    let registry = start_registry(tempfile::tempdir().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let digests: Vec<String> = runtime.block_on(async {
        let client = reqwest::Client::new();
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
            Some(&(repos as u64)),
            "one inspection per image"
        );
        assert_eq!(
            calls.get("container"),
            None,
            "a pass inspects no container discovery has seen"
        );
    }
    drop(dir);
}
