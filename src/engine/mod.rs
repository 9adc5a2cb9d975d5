//! The update engine: decide what to do about each service, and carry an update through step by
//! step — or put everything back.
//!
//! [`decide`] is pure. The steps of an update ([`update`]) go through the seams: the registry for
//! digests and credentials, the Docker runtime for pulls, tags and health, the compose editor for
//! the file, and the state store for the journal. [`recovery`] finishes what an interrupted update
//! left; [`pass`] runs one check-and-update pass over the configured services, through
//! [`pipeline`], which keeps one service's slow, hung or panicking check from holding up or
//! failing the others. [`Engine`] holds the seams for the command line and the daemon.
//!
//! Locks: checks take none. Applying a change (an update or a rollback) holds the engine's update
//! lock, so one change runs at a time on the host; nothing holds it while it waits for a
//! registry. The state store's mutex is held for single, short calls, never across an `await`.

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

pub mod decide;
pub mod failpoint;
pub mod pass;
pub mod pipeline;
pub mod recovery;
pub mod standalone;
pub mod swarm;
pub mod update;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

pub use decide::{Candidate, Decision, Facts, Hold, Running, decide};
pub use pass::{Pass, PassOptions, ServiceOutcome, ServiceResult};
pub use pipeline::Stop;
pub use recovery::Recovered;
pub use standalone::ContainerUpdate;
pub use update::{ImageSource, UpdateReport, UpdateRequest, UpdateResult, Updater};

use crate::config::{Config, ServiceSpec};
use crate::reference::ImageRef;
use crate::registry::{Registries, RegistryOptions};
use crate::runtime::compose_cli::{ComposeProject, LazyCompose};
use crate::runtime::view::ImageRefs;
use crate::runtime::{Compose, ContainerRuntime, Docker};
use crate::schedule::{Clock, SystemClock};
use crate::state::{
    ChangeKind, ChangeOutcome, OpenReport, Origin, StateStore, StoreOptions, default_fallback_paths,
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

/// Why [`Engine::rollback`] did not roll back; nothing was changed in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("not rolling back {0:?}: lookout is stopping")]
    Stopping(String),
    #[error("no service {0:?} in the configuration")]
    UnknownService(String),
    #[error("{0:?} has no committed update to roll back")]
    NothingToRollBack(String),
    #[error("no running container of {compose_service:?} in project {project:?}")]
    NotRunning {
        compose_service: String,
        project: String,
    },
    /// Docker or compose could not be asked about the service.
    #[error("{0}")]
    Runtime(String),
    #[error("the image recorded before the last update is not a valid reference: {0}")]
    BadReference(#[from] crate::reference::ReferenceError),
}

/// Everything lookout works with on a host: the configuration, Docker, compose, the registries,
/// the state store and the clock. Generic over the container engine and compose, so tests run
/// it on fakes (`tests/util/fakes.rs`); the binary runs `Engine<Docker, LazyCompose>`.
pub struct Engine<R: ContainerRuntime, C: Compose = LazyCompose> {
    /// The configuration in force; replaced whole by [`Engine::reload`].
    config: RwLock<Arc<Config>>,
    pub runtime: R,
    pub compose: C,
    pub registries: Arc<Registries>,
    pub store: Mutex<StateStore>,
    /// How the state file was opened (fresh, loaded, restored from a backup).
    pub opened: OpenReport,
    pub telemetry: Telemetry,
    /// The candidate last announced per service (`update_available` once per candidate).
    announced: Mutex<HashMap<String, String>>,
    /// Passed by every update (`update_concurrency` at once, one per compose file); held
    /// exclusively by a rollback or a recovery. Sized when the engine is made.
    gate: pipeline::UpdateGate,
    /// Set by [`Engine::stop`].
    stop: Stop,
    /// Image references of the containers earlier passes saw, so an idle pass inspects only
    /// containers that are new (see `runtime::view`).
    image_refs: ImageRefs,
    /// Where every timestamp of the engine, its events and its state file comes from.
    clock: Arc<dyn Clock>,
    /// What discovery found in the last pass (`[discovery]`).
    discovered: RwLock<Arc<crate::discovery::Discovery>>,
    /// The configuration with the discovered services beside the configured ones: what
    /// [`Engine::config`] answers.
    in_force: RwLock<Arc<Config>>,
    /// The Swarm manager this engine is, if it is one (see [`Engine::with_swarm`]).
    swarm: Option<Arc<dyn crate::runtime::swarm::SwarmApi>>,
    /// The Swarm services the last pass discovered (`[swarm] enabled`), in force beside the
    /// others.
    swarm_found: RwLock<Arc<Vec<ServiceSpec>>>,
}

/// Locks `mutex` even when a panic poisoned it. A panic is caught per service (see
/// [`pipeline`]) and the daemon goes on, so a poisoned lock must not fail everything after it:
/// the data behind lookout's mutexes is only changed by short calls that finish or return an
/// error, and the state store writes its file atomically.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens the state store the configuration names (taking its lock); `now` stamps a backup or
/// a fresh state.
pub fn open_store(
    config: &Config,
    now: jiff::Timestamp,
) -> Result<(StateStore, OpenReport), crate::state::StateError> {
    let options = StoreOptions {
        backups: usize::try_from(config.state_backups).unwrap_or(usize::MAX),
        backup_dir: config.state_backup_dir.clone(),
        fallback: config.state_fallback,
        fallback_paths: default_fallback_paths(|name| std::env::var_os(name)),
    };
    StateStore::open(&config.state_file, &options, now)
}

impl Engine<Docker> {
    /// Connects to Docker and opens (and locks) the state store; compose is found when first
    /// needed.
    /// Webhooks go out once the caller runs the returned [`Deliveries`].
    pub async fn start(config: Config) -> Result<(Self, Deliveries), StartError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (store, opened) = open_store(&config, clock.now())?;
        let runtime = Docker::connect().await?;
        // LOOKOUT_COMPOSE_BINARY names the compose program (e.g. /usr/bin/docker-compose for v1);
        // otherwise `docker compose` (v2) is tried first, then `docker-compose`. Either is run
        // (`version`) only when compose is first needed, so an idle pass starts no process.
        let compose = LazyCompose::new(
            std::env::var_os("LOOKOUT_COMPOSE_BINARY").map(std::path::PathBuf::from),
            config.compose_timeout,
        );
        let settings = TelemetrySettings::from_config(&config);
        let (telemetry, deliveries) = Telemetry::new(settings, clock.clone());
        let swarm = swarm::connect(&config).await;
        let mut engine = Self::with(config, runtime, compose, store, opened, telemetry, clock);
        if let Some(swarm) = swarm {
            engine = engine.with_swarm(swarm);
        }
        Ok((engine, deliveries))
    }
}

impl<R: ContainerRuntime, C: Compose> Engine<R, C> {
    /// An engine over the given seams. `clock` stamps everything the engine records (history,
    /// journal, checks, events); telemetry has its own, normally the same one.
    pub fn with(
        config: Config,
        runtime: R,
        compose: C,
        store: StateStore,
        opened: OpenReport,
        telemetry: Telemetry,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let concurrency = config.update_concurrency;
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
            in_force: RwLock::new(Arc::new(config.clone())),
            discovered: RwLock::new(Arc::default()),
            swarm_found: RwLock::new(Arc::default()),
            config: RwLock::new(Arc::new(config)),
            runtime,
            compose,
            store: Mutex::new(store),
            opened,
            telemetry,
            announced: Mutex::new(HashMap::new()),
            gate: pipeline::UpdateGate::new(concurrency),
            stop: Stop::default(),
            image_refs: ImageRefs::default(),
            clock,
            swarm: None,
        }
    }

    /// Drives Swarm services (`swarm_service`, `[swarm]`) through `swarm`.
    pub fn with_swarm(mut self, swarm: Arc<dyn crate::runtime::swarm::SwarmApi>) -> Self {
        self.swarm = Some(swarm);
        self
    }

    /// The Swarm manager the engine drives, if any.
    pub fn swarm(&self) -> Option<&dyn crate::runtime::swarm::SwarmApi> {
        self.swarm.as_deref()
    }

    /// The time now, by the engine's clock.
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// The configuration in force, its services the configured ones and those discovery found
    /// in the last pass.
    pub fn config(&self) -> Arc<Config> {
        self.in_force
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The configuration as loaded, without discovered services.
    pub fn configured(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What discovery found in the last pass (empty before the first, or without
    /// `[discovery]`).
    pub fn discovered(&self) -> Arc<crate::discovery::Discovery> {
        self.discovered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts a new, already validated configuration in force (SIGHUP). Metric labels and webhook
    /// endpoints stay as they were at start.
    pub fn reload(&self, config: Config) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        self.refresh_in_force();
    }

    /// [`Engine::config`] again from the configuration and the last discovery.
    fn refresh_in_force(&self) {
        let base = self.configured();
        let in_force = if base.discovery.enabled {
            let mut in_force = (*base).clone();
            let discovered = self.discovered();
            self.telemetry
                .add_services(discovered.found.iter().map(|f| f.name.as_str()));
            in_force.services = discovered.services(&base);
            Arc::new(in_force)
        } else {
            base
        };
        let swarm_found = self
            .swarm_found
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let in_force = if swarm_found.is_empty() {
            in_force
        } else {
            let mut with = (*in_force).clone();
            let known: std::collections::HashSet<String> =
                with.services.iter().map(|s| s.name.clone()).collect();
            with.services.extend(
                swarm_found
                    .iter()
                    .filter(|spec| !known.contains(&spec.name))
                    .cloned(),
            );
            Arc::new(with)
        };
        *self
            .in_force
            .write()
            .unwrap_or_else(PoisonError::into_inner) = in_force;
    }

    /// lookout is stopping: checks in flight are cancelled and no update or rollback starts
    /// from now on. One already running goes on; [`Engine::quiesce`] waits for it.
    pub fn stop(&self) {
        self.stop.stop();
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_stopping()
    }

    /// Waits until no update or rollback runs and returns the update lock: while the guard is
    /// held, none starts. After [`Engine::stop`], this is how long shutdown waits for a change
    /// in progress (bounded by its compose and health timeouts).
    pub(crate) async fn quiesce(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.gate.exclusive().await
    }

    pub fn service(&self, name: &str) -> Option<ServiceSpec> {
        self.config()
            .services
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }

    /// The service's compose project and how to run compose for it (see
    /// [`crate::runtime::locate_project`]).
    pub async fn project(
        &self,
        spec: &ServiceSpec,
    ) -> Result<ComposeProject, crate::runtime::RuntimeError> {
        crate::runtime::locate_project(&self.runtime, &self.compose, spec).await
    }

    /// Finishes every update an earlier lookout left in the journal (holding the update lock).
    pub async fn recover(&self) -> Vec<Recovered> {
        let _forget = ForgetImages::now_and_after(&self.image_refs);
        // An interrupted update of a discovered service is finished too: discovery looks first.
        self.rediscover().await;
        if self.swarm().is_some() {
            self.rediscover_swarm().await;
            self.refresh_in_force();
        }
        let _guard = self.gate.exclusive().await;
        let in_flight = lock(&self.store).in_flight();
        let mut swarm_done = Vec::new();
        if let Some(api) = self.swarm() {
            swarm_done = swarm::recover_all(
                api,
                &self.store,
                &|| self.clock.now(),
                &in_flight,
                &|name| self.service(name),
                self.config().compose_timeout,
            )
            .await;
        }
        let mut known = HashMap::new();
        for entry in in_flight {
            let name = entry.intent.service;
            let Some(spec) = self.service(&name) else {
                continue;
            };
            // The journal says how compose ran; the containers may be gone by now.
            if let Some(run) = &entry.intent.compose {
                known.insert(name, (spec, recovery::journaled_project(run)));
                continue;
            }
            match self.project(&spec).await {
                Ok(project) => {
                    known.insert(name, (spec, project));
                }
                Err(e) => {
                    tracing::warn!(service = %name, error = %e, "cannot tell the compose project of an interrupted update");
                }
            }
        }
        let find = |name: &str| known.get(name).cloned();
        let now = || self.clock.now();
        let mut recovered =
            recovery::recover(&self.runtime, &self.compose, &self.store, &now, &find).await;
        let gate_for = |name: &str| {
            self.service(name)
                .map(|spec| update::gate_options(&spec))
                .unwrap_or_default()
        };
        recovered.extend(standalone::recover(&self.runtime, &self.store, &now, &gate_for).await);
        recovered.extend(swarm_done);
        recovered
    }

    /// Updates one standalone container (`docker run`, no compose file) to `req.candidate`,
    /// keeping the old container until the new one passes the health gate (see [`standalone`]),
    /// with the same events as a compose update. Waits for a rollback or recovery in progress.
    pub async fn update_container(&self, req: &ContainerUpdate) -> UpdateReport {
        let _forget = ForgetImages::now_and_after(&self.image_refs);
        let _guard = self
            .gate
            .change(&standalone::gate_key(&req.container))
            .await;
        let now = || self.clock.now();
        standalone::update_reported(
            &self.runtime,
            &self.store,
            &now,
            &self.stop,
            &self.telemetry,
            req,
        )
        .await
    }

    /// `lookout rollback NAME` for a standalone service: recreates `container` on the image it
    /// ran before the service's last committed update, kept under the rollback tag, through the
    /// same steps and health gate as an update.
    pub async fn rollback_container(
        &self,
        service: &str,
        container: &str,
        gate: crate::runtime::GateOptions,
        actor: &str,
    ) -> Result<UpdateReport, RollbackError> {
        let _forget = ForgetImages::now_and_after(&self.image_refs);
        let stopping = || RollbackError::Stopping(service.to_owned());
        // Alone, as every rollback runs.
        let _guard = tokio::select! {
            biased;
            () = self.stop.stopped() => return Err(stopping()),
            guard = self.gate.exclusive() => guard,
        };
        if self.stop.is_stopping() {
            return Err(stopping());
        }
        let last = lock(&self.store)
            .state()
            .services
            .get(service)
            .and_then(|s| {
                s.history
                    .iter()
                    .rev()
                    .find(|h| h.outcome == ChangeOutcome::Committed)
                    .cloned()
            })
            .ok_or_else(|| RollbackError::NothingToRollBack(service.to_owned()))?;
        let target = ImageRef::parse(&format!(
            "{}:{}",
            last.from.image,
            last.from.tag.as_deref().unwrap_or("latest")
        ))?;
        let running = self
            .runtime
            .container(container)
            .await
            .map_err(|e| RollbackError::Runtime(e.to_string()))?;
        let running_repo =
            ImageRef::parse(&running.image_ref).map_or_else(|_| target.name(), |r| r.name());
        let kept = format!("{running_repo}:{}", update::rollback_tag(service));
        let req = ContainerUpdate {
            service: service.to_owned(),
            container: container.to_owned(),
            candidate: Candidate {
                reference: target,
                manifest_digest: last.from.digest.clone(),
                platform_digest: None,
            },
            source: ImageSource::Local { reference: kept },
            gate,
            include_stopped: true,
            kind: ChangeKind::Rollback,
            actor: actor.to_owned(),
        };
        let now = || self.clock.now();
        Ok(standalone::update_reported(
            &self.runtime,
            &self.store,
            &now,
            &self.stop,
            &self.telemetry,
            &req,
        )
        .await)
    }

    /// Discovery again, without a check (the daemon, on container events): the services found
    /// that the last discovery did not have. Costs one container list and an inspection of
    /// each container not seen before.
    pub async fn rediscover(&self) -> Vec<String> {
        let config = self.configured();
        if !config.discovery.enabled {
            return Vec::new();
        }
        let before: std::collections::HashSet<String> = self
            .discovered()
            .found
            .iter()
            .map(|f| f.name.clone())
            .collect();
        let view = crate::runtime::view::PassView::listing(&self.runtime, &self.image_refs, true);
        let Some(found) = pass::discover_in(&view, &config, &self.discovered).await else {
            return Vec::new();
        };
        self.refresh_in_force();
        found
            .found
            .iter()
            .filter(|f| !before.contains(&f.name))
            .map(|f| f.name.clone())
            .collect()
    }

    /// The configuration with the Swarm services `[swarm]` discovers now (one service list),
    /// which are kept in force beside the others (the API, `lookout rollback`, recovery and
    /// their metrics know them).
    async fn rediscover_swarm(&self) -> Arc<Config> {
        let configured = self.configured();
        let config = swarm::with_discovered(self.swarm(), configured.clone()).await;
        let found: Vec<ServiceSpec> = config
            .services
            .get(configured.services.len()..)
            .unwrap_or_default()
            .to_vec();
        self.telemetry
            .add_services(found.iter().map(|s| s.name.as_str()));
        *self
            .swarm_found
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(found);
        config
    }

    /// One check-and-update pass.
    pub async fn pass(&self, opts: &PassOptions) -> Vec<ServiceOutcome> {
        let config = self.rediscover_swarm().await;
        let now = || self.clock.now();
        let pass = Pass {
            config: &config,
            runtime: &self.runtime,
            compose: &self.compose,
            registries: &self.registries,
            store: &self.store,
            now: &now,
            telemetry: &self.telemetry,
            announced: &self.announced,
            gate: &self.gate,
            stop: &self.stop,
            image_refs: &self.image_refs,
            discovered: &self.discovered,
            swarm: self.swarm.as_deref(),
        };
        self.telemetry.emit(crate::telemetry::Event::PassStarted);
        let outcomes = pass.run(opts).await;
        // The pass's checks, in the state file once.
        if let Err(e) = lock(&self.store).save_checks(self.clock.now()) {
            tracing::warn!(error = %e, "cannot record the pass's checks in the state file");
        }
        if outcomes.iter().any(|o| o.result.changed_something()) {
            // Its pulls added registry digests to images the next pass must see.
            self.image_refs.forget_images();
        }
        self.refresh_in_force();
        self.telemetry.emit(pass::finished(&outcomes));
        outcomes
    }

    /// Returns `service` to the image it ran before its last update, kept under the rollback
    /// tag, through the same steps and health gate as an update. Waits for an update or
    /// rollback in progress (never for a check), and refuses once lookout is stopping.
    pub async fn rollback(
        &self,
        service: &str,
        actor: &str,
    ) -> Result<UpdateReport, RollbackError> {
        let _forget = ForgetImages::now_and_after(&self.image_refs);
        if let Some(spec) = self.service(service)
            && let Some(container) = &spec.container
        {
            let gate = update::gate_options(&spec);
            return self
                .rollback_container(service, container, gate, actor)
                .await;
        }
        let stopping = || RollbackError::Stopping(service.to_owned());
        let _guard = tokio::select! {
            biased;
            () = self.stop.stopped() => return Err(stopping()),
            guard = self.gate.exclusive() => guard,
        };
        if self.stop.is_stopping() {
            return Err(stopping());
        }
        let spec = self
            .service(service)
            .ok_or_else(|| RollbackError::UnknownService(service.to_owned()))?
            .clone();
        let last = {
            let store = lock(&self.store);
            store
                .state()
                .services
                .get(service)
                .and_then(|s| {
                    s.history
                        .iter()
                        .rev()
                        .find(|h| h.outcome == ChangeOutcome::Committed)
                        .cloned()
                })
                .ok_or_else(|| RollbackError::NothingToRollBack(service.to_owned()))?
        };
        if let Some(name) = &spec.swarm_service {
            let api = self.swarm().ok_or_else(|| {
                RollbackError::Runtime(format!(
                    "Swarm service {name:?}: this Docker engine is not a Swarm manager"
                ))
            })?;
            let now = || self.clock.now();
            return swarm::rollback_service(api, &self.store, &now, &spec, name, &last, actor)
                .await
                .map_err(RollbackError::Runtime);
        }
        let project = self
            .project(&spec)
            .await
            .map_err(|e| RollbackError::Runtime(e.to_string()))?;
        let (running, running_text) = pass::find_running(&self.runtime, &spec, &project)
            .await
            .map_err(RollbackError::Runtime)?
            .ok_or_else(|| RollbackError::NotRunning {
                compose_service: spec.compose_service.clone(),
                project: project.name.clone(),
            })?;
        let running_ref = running.reference.clone();
        let kept = format!("{}:{}", running_ref.name(), update::rollback_tag(service));
        let target = ImageRef::parse(&format!(
            "{}:{}",
            last.from.image,
            last.from.tag.as_deref().unwrap_or("latest")
        ))?;
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
            spec,
            project,
        };
        let now = || self.clock.now();
        let updater = Updater {
            runtime: &self.runtime,
            compose: &self.compose,
            store: &self.store,
            now: &now,
            stop: &self.stop,
        };
        Ok(updater.update(&request).await)
    }
}

/// Forgets the images kept across passes now and when dropped: around a change made outside a
/// pass (a rollback, a recovery), whose pulls and tags a pass running meanwhile must not keep.
struct ForgetImages<'a>(&'a ImageRefs);

impl<'a> ForgetImages<'a> {
    fn now_and_after(refs: &'a ImageRefs) -> Self {
        refs.forget_images();
        Self(refs)
    }
}

impl Drop for ForgetImages<'_> {
    fn drop(&mut self) {
        self.0.forget_images();
    }
}
