//! The update engine: decide what to do about each service, and carry an update through step by
//! step — or put everything back.
//!
//! [`decide`] is pure. The steps of an update ([`update`]) go through the seams: the registry for
//! digests and credentials, the Docker runtime for pulls, tags and health, the compose editor for
//! the file, and the state store for the journal. [`recovery`] finishes what an interrupted update
//! left; [`pass`] runs one check-and-update pass over the configured services. [`Engine`] holds
//! the seams for the command line and the daemon.

pub mod decide;
pub mod failpoint;
pub mod pass;
pub mod recovery;
pub mod update;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

pub use decide::{Candidate, Decision, Facts, Hold, Running, decide};
pub use pass::{Pass, PassOptions, ServiceOutcome};
pub use recovery::Recovered;
pub use update::{ImageSource, UpdateReport, UpdateRequest, UpdateResult, Updater};

use crate::config::{Config, ServiceSpec};
use crate::reference::ImageRef;
use crate::registry::{Registries, RegistryOptions};
use crate::runtime::compose_cli::{ComposeCli, ComposeProject};
use crate::runtime::{ContainerRuntime, Docker};
use crate::schedule::SystemClock;
use crate::state::{
    ChangeKind, OpenReport, Origin, Outcome, StateStore, StoreOptions, default_fallback_paths,
};
use crate::telemetry::{Deliveries, Event, Telemetry, TelemetrySettings};

/// Why lookout could not start working on this host.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
}

/// Everything lookout works with on a host: the configuration, Docker, compose, the registries
/// and the state store.
pub struct Engine<R: ContainerRuntime> {
    /// The configuration in force; replaced whole by [`Engine::reload`].
    config: RwLock<Arc<Config>>,
    pub runtime: R,
    pub compose: ComposeCli,
    pub registries: Arc<Registries>,
    pub store: Mutex<StateStore>,
    /// How the state file was opened (fresh, loaded, restored from a backup).
    pub opened: OpenReport,
    pub telemetry: Telemetry,
    /// The candidate last announced per service (`update_available` once per candidate).
    announced: Mutex<HashMap<String, String>>,
}

/// The wall clock, the one place the engine reads it.
pub fn system_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Opens the state store the configuration names (taking its lock).
pub fn open_store(config: &Config) -> Result<(StateStore, OpenReport), crate::state::StateError> {
    let options = StoreOptions {
        backups: usize::try_from(config.state_backups).unwrap_or(usize::MAX),
        backup_dir: config.state_backup_dir.clone(),
        fallback: config.state_fallback,
        fallback_paths: default_fallback_paths(|name| std::env::var_os(name)),
    };
    StateStore::open(&config.state_file, &options, system_now())
}

impl Engine<Docker> {
    /// Connects to Docker, finds compose, and opens (and locks) the state store.
    /// Webhooks go out once the caller runs the returned [`Deliveries`].
    pub async fn start(config: Config) -> Result<(Self, Deliveries), StartError> {
        let (store, opened) = open_store(&config)?;
        let runtime = Docker::connect().await?;
        // LOOKOUT_COMPOSE_BINARY names the compose program (e.g. /usr/bin/docker-compose for v1);
        // otherwise `docker compose` (v2) is tried first, then `docker-compose`.
        let compose = match std::env::var_os("LOOKOUT_COMPOSE_BINARY") {
            Some(program) => {
                ComposeCli::with_program(std::path::Path::new(&program), config.compose_timeout)
                    .await?
            }
            None => ComposeCli::detect(config.compose_timeout).await?,
        };
        let settings = TelemetrySettings::from_config(&config);
        let (telemetry, deliveries) = Telemetry::new(settings, Arc::new(SystemClock));
        let engine = Self::with(config, runtime, compose, store, opened, telemetry);
        Ok((engine, deliveries))
    }
}

impl<R: ContainerRuntime> Engine<R> {
    pub fn with(
        config: Config,
        runtime: R,
        compose: ComposeCli,
        store: StateStore,
        opened: OpenReport,
        telemetry: Telemetry,
    ) -> Self {
        match &opened.origin {
            Origin::Restored {
                backup,
                corrupt_moved_to,
                ..
            } => telemetry.emit(Event::StateRestored {
                from_backup: Some(backup.clone()),
                set_aside: Some(corrupt_moved_to.clone()),
            }),
            Origin::StartedFreshAfterCorruption {
                corrupt_moved_to, ..
            } => telemetry.emit(Event::StateRestored {
                from_backup: None,
                set_aside: Some(corrupt_moved_to.clone()),
            }),
            _ => {}
        }
        Self {
            registries: Arc::new(Registries::new(RegistryOptions::default())),
            config: RwLock::new(Arc::new(config)),
            runtime,
            compose,
            store: Mutex::new(store),
            opened,
            telemetry,
            announced: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("config lock").clone()
    }

    /// Puts a new, already validated configuration in force (SIGHUP). Metric labels and webhook
    /// endpoints stay as they were at start.
    pub fn reload(&self, config: Config) {
        *self.config.write().expect("config lock") = Arc::new(config);
    }

    pub fn service(&self, name: &str) -> Option<ServiceSpec> {
        self.config()
            .services
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }

    /// The service's compose project, named as the detected compose flavor names it.
    pub fn project(
        &self,
        spec: &ServiceSpec,
    ) -> Result<ComposeProject, crate::runtime::RuntimeError> {
        self.compose
            .project(&spec.compose_file, None, |n| std::env::var(n).ok())
    }

    /// Finishes every update an earlier lookout left in the journal.
    pub async fn recover(&self) -> Vec<Recovered> {
        let find = |name: &str| {
            let spec = self.service(name)?.clone();
            let project = self.project(&spec).ok()?;
            Some((spec, project))
        };
        recovery::recover(
            &self.runtime,
            &self.compose,
            &self.store,
            &system_now,
            &find,
        )
        .await
    }

    /// One check-and-update pass.
    pub async fn pass(&self, opts: &PassOptions) -> Vec<ServiceOutcome> {
        let config = self.config();
        let pass = Pass {
            config: &config,
            runtime: &self.runtime,
            compose: &self.compose,
            registries: &self.registries,
            store: &self.store,
            now: &system_now,
            telemetry: &self.telemetry,
            announced: &self.announced,
        };
        pass.run(opts).await
    }

    /// Returns `service` to the image it ran before its last update, kept under the rollback
    /// tag, through the same steps and health gate as an update.
    pub async fn rollback(&self, service: &str, actor: &str) -> Result<UpdateReport, String> {
        let spec = self
            .service(service)
            .ok_or_else(|| format!("no service {service:?} in the configuration"))?
            .clone();
        let last = {
            let store = self.store.lock().expect("state lock");
            store
                .state()
                .services
                .get(service)
                .and_then(|s| {
                    s.history
                        .iter()
                        .rev()
                        .find(|h| h.outcome == Outcome::Committed)
                        .cloned()
                })
                .ok_or_else(|| format!("{service:?} has no committed update to roll back"))?
        };
        let project = self.project(&spec).map_err(|e| e.to_string())?;
        let (running, running_text) = pass::find_running(&self.runtime, &spec, &project)
            .await?
            .ok_or_else(|| {
                format!(
                    "no running container of {:?} in project {:?}",
                    spec.compose_service, project.name
                )
            })?;
        let running_ref = running.reference.clone();
        let kept = format!("{}:{}", running_ref.name(), update::rollback_tag(service));
        let target = ImageRef::parse(&format!(
            "{}:{}",
            last.from.image,
            last.from.tag.as_deref().unwrap_or("latest")
        ))
        .map_err(|e| e.to_string())?;
        let request = UpdateRequest {
            running,
            running_text,
            tag_changes: target.tag() != running_ref.tag(),
            candidate: Candidate {
                reference: target,
                manifest_digest: last.from.digest.clone(),
                platform_digest: None,
            },
            source: ImageSource::Local { reference: kept },
            kind: ChangeKind::Rollback,
            actor: actor.to_owned(),
            env_file: None,
            spec,
            project,
        };
        let updater = Updater {
            runtime: &self.runtime,
            compose: &self.compose,
            store: &self.store,
            now: &system_now,
        };
        Ok(updater.update(&request).await)
    }
}
