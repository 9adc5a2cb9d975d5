//! One pass over the configured services: find what runs, ask the registry, decide, and update
//! the services that should be updated — the seed's `--once`, and each cycle of the daemon.
//!
//! A service whose check fails, hangs or panics does not stop the others, and an update never
//! waits for the check of another service: [`super::pipeline`] runs the checks and the updates;
//! this module says what a check and an update of one service are.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use tracing::Instrument;

use crate::compose;
use crate::config::labels::Action;
use crate::config::{Config, ServiceSpec};
use crate::discovery::{self, Discovery, Found};
use crate::engine::decide::{Candidate, Decision, Facts, Hold, Running, decide};
use crate::engine::pipeline::{Checked, Pipeline, Stop, UpdateGate, panic_message};
use crate::engine::standalone::{self, ContainerUpdate};
use crate::engine::update::{self, ImageSource, UpdateRequest, UpdateResult, Updater};
use crate::engine::{failpoint, lock, recovery};
use crate::reference::ImageRef;
use crate::registry::{CheckCycle, Credential, Registries, RegistryError, check_service};
use crate::runtime::compose::locate_project_in;
use crate::runtime::compose_cli::ComposeProject;
use crate::runtime::view::{ImageRefs, PassView};
use crate::runtime::{Compose, ContainerRuntime, ContainerState, RegistryLogin};
use crate::schedule::{WindowDecision, Windows};
use crate::state::{ChangeKind, ChangeOutcome, ImageVersion, StateStore};
use crate::telemetry::{CheckResult, Event, NewerImage, Stage, Telemetry, UpdateInfo};

/// What a pass did for one service: `{service, from, to, digest, result, reason, duration}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServiceOutcome {
    pub service: String,
    /// The image that ran when the pass began.
    pub from: Option<String>,
    /// The candidate, when there is one.
    pub to: Option<String>,
    pub digest: Option<String>,
    pub result: ServiceResult,
    pub reason: Option<String>,
    /// Where a failed update stopped.
    pub stage: Option<String>,
    /// The service's own time in seconds: its check, plus its update when one ran (not the
    /// waits for a check slot, for dependencies or for another service's update).
    #[serde(serialize_with = "seconds")]
    #[schema(value_type = f64)]
    pub duration: Duration,
    /// The check's own time in seconds (`lookout_check_duration_seconds`).
    #[serde(serialize_with = "seconds")]
    #[schema(value_type = f64)]
    pub check_duration: Duration,
    /// Where a compose update's time went: the pull, `compose up` and the health gate, in
    /// seconds; `duration` minus `check_duration` minus these is lookout's own time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<crate::engine::update::Phases>,
}

/// How a pass ended for one service; serialised as the snake_case name (`up_to_date`, …), which
/// is what the JSON API, `lookout update --json` and the history show.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ServiceResult {
    /// The running image is the one the policy chooses.
    UpToDate,
    /// A candidate exists but was not applied: dry run, disabled, paused, outside the window,
    /// failed before, or lookout is stopping.
    UpdateAvailable,
    /// The candidate runs and is healthy.
    Updated,
    /// The candidate failed; the old image runs again.
    RolledBack,
    /// The update could not start or was abandoned; nothing (or everything) was put back.
    Failed,
    /// The rollback itself failed: the service may be down, an operator is needed.
    RollbackFailed,
    /// The check failed (compose file, Docker, registry, timeout): nothing was decided.
    CheckFailed,
    /// Nothing to check (no running container), or the check or update was cancelled.
    Skipped,
}

impl ServiceResult {
    /// Whether an update or rollback ran (whatever its end): images were pulled or tagged.
    pub(crate) fn changed_something(self) -> bool {
        matches!(
            self,
            Self::Updated | Self::RolledBack | Self::Failed | Self::RollbackFailed
        )
    }

    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "up_to_date",
            Self::UpdateAvailable => "update_available",
            Self::Updated => "updated",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
            Self::RollbackFailed => "rollback_failed",
            Self::CheckFailed => "check_failed",
            Self::Skipped => "skipped",
        }
    }

    /// True when the service needs attention: an update or a check went wrong.
    pub(crate) fn is_problem(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::RolledBack | Self::RollbackFailed | Self::CheckFailed
        )
    }
}

impl From<&UpdateResult> for ServiceResult {
    fn from(r: &UpdateResult) -> Self {
        match r {
            UpdateResult::Updated => Self::Updated,
            UpdateResult::RolledBack { .. } => Self::RolledBack,
            UpdateResult::Failed { .. } => Self::Failed,
            UpdateResult::RollbackFailed { .. } => Self::RollbackFailed,
        }
    }
}

impl std::fmt::Display for ServiceResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// How many services are checked at once.
pub(crate) const PARALLEL_CHECKS: usize = 8;

/// A change a check decided on: the request and why.
pub(crate) enum Work {
    Compose(Box<UpdateRequest>, String),
    /// A standalone container's update, and the image id it ran when checked.
    Container(Box<ContainerUpdate>, String, String),
    Swarm(Box<crate::engine::swarm::SwarmRequest>, String),
}

/// What one pass is allowed to do.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    /// Only these services (by configured name); all enabled ones when empty.
    pub only: Vec<String>,
    /// Check and decide, change nothing.
    pub dry_run: bool,
    /// Who asked, recorded in history: `cli`, `schedule`, `api`, `hook`.
    pub actor: String,
    /// Updates are paused: check, but hold every update.
    pub paused: bool,
    /// Services whose updates are paused one by one: checked, their updates held.
    pub held: Vec<String>,
    /// Hold updates outside each service's maintenance windows (the daemon, and `lookout update`
    /// unless told otherwise).
    pub respect_windows: bool,
}

/// The seams a pass goes through.
pub struct Pass<'a, R: ContainerRuntime, C: Compose> {
    pub config: &'a Config,
    pub runtime: &'a R,
    pub compose: &'a C,
    pub registries: &'a std::sync::Arc<Registries>,
    pub store: &'a Mutex<StateStore>,
    pub now: &'a (dyn Fn() -> jiff::Timestamp + Send + Sync),
    /// Where logs, metrics and webhooks come from: one event per occurrence.
    pub telemetry: &'a Telemetry,
    /// The candidate last announced per service, so `update_available` is sent once per candidate.
    pub announced: &'a Mutex<HashMap<String, String>>,
    /// Passed by every change of every pass; held exclusively by rollbacks.
    pub(crate) gate: &'a UpdateGate,
    /// Set when lookout stops: checks are cancelled, changes not yet started do not start.
    pub stop: &'a Stop,
    /// The image references of containers seen in earlier passes (see [`PassView`]).
    pub(crate) image_refs: &'a ImageRefs,
    /// Where the pass leaves what discovery found (`[discovery]`), for the commands and the API.
    pub(crate) discovered: &'a std::sync::RwLock<std::sync::Arc<Discovery>>,
    /// The Swarm manager, when the engine is one (`swarm_service` services).
    pub(crate) swarm: Option<&'a dyn crate::runtime::swarm::SwarmApi>,
}

impl<R: ContainerRuntime, C: Compose> Pass<'_, R, C> {
    /// Runs one pass and reports per service, in configuration order. Checks run in parallel
    /// (at most [`PARALLEL_CHECKS`] at once, each within `check_timeout`; services sharing a
    /// repository or reference share the registry's answers). Each update starts as soon as its
    /// own check is done and the services it `depends_on` are done, one at a time on the host
    /// (see [`super::pipeline`]).
    pub async fn run(&self, opts: &PassOptions) -> Vec<ServiceOutcome> {
        let cycle = CheckCycle::new(self.registries.clone());
        // Every container when discovery is on or a configured service is a standalone one;
        // else compose's only.
        let every = self.config.discovery.enabled
            || self.config.services.iter().any(|s| s.container.is_some());
        let view = PassView::listing(self.runtime, self.image_refs, every);
        let discovery = if self.config.discovery.enabled {
            self.discover(&view).await
        } else {
            None
        };
        let discovered_services;
        let all: &[ServiceSpec] = match &discovery {
            Some(d) => {
                discovered_services = d.services(self.config);
                &discovered_services
            }
            None => &self.config.services,
        };
        if let Some(d) = &discovery {
            // Their metric series, before the first event about them.
            self.telemetry
                .add_services(d.found.iter().map(|f| f.name.as_str()));
        }
        let found: HashMap<&str, &Found> = discovery
            .iter()
            .flat_map(|d| d.found.iter())
            .map(|f| (f.name.as_str(), f))
            .collect();
        let specs: Vec<&ServiceSpec> = all.iter().filter(|spec| selected(spec, opts)).collect();
        let services: Vec<(PathBuf, String)> = specs
            .iter()
            .map(|s| (dependency_key(s), s.compose_service.clone()))
            .collect();
        // What discovered services' labels say to update first: `lookout.depends_on`,
        // Watchtower's `…depends-on`, compose's own `com.docker.compose.depends_on`.
        let labelled = match &discovery {
            Some(_) => match view.containers().await {
                Ok(listed) => label_waits(&specs, all, &found, &listed),
                Err(_) => label_waits(&specs, all, &found, &[]),
            },
            None => Vec::new(),
        };
        let after = update_after(
            &services,
            &|file| compose::dependencies(&read_compose_for_dependencies(file)),
            &labelled,
        );
        let files: Vec<PathBuf> = services.iter().map(|(file, _)| file.clone()).collect();
        let pipeline = Pipeline {
            after: &after,
            files: &files,
            parallel: PARALLEL_CHECKS,
            check_timeout: self.config.check_timeout,
            gate: self.gate,
            stop: self.stop,
        };
        let (cycle, view, found) = (&cycle, &view, &found);
        pipeline
            .run(
                &specs,
                |spec: &&ServiceSpec| {
                    let spec: &ServiceSpec = spec;
                    let span = tracing::info_span!("check", service = %spec.name);
                    let found = found.get(spec.name.as_str()).copied();
                    self.check(cycle, view, spec, found, opts).instrument(span)
                },
                |spec, report, work: Work| {
                    let span = tracing::info_span!("check", service = %spec.name);
                    async move {
                        match work {
                            Work::Compose(request, reason) => {
                                self.apply(*request, report, reason).await
                            }
                            Work::Container(request, running, reason) => {
                                self.apply_container(*request, &running, report, reason)
                                    .await
                            }
                            Work::Swarm(request, reason) => {
                                self.apply_swarm(*request, report, reason).await
                            }
                        }
                    }
                    .instrument(span)
                },
                |spec, outcome| self.telemetry.emit(check_finished(spec, outcome)),
            )
            .await
    }

    /// What discovery finds in the pass's container list (stored for the commands and the
    /// API); `None` when the list cannot be made, and the configured services go on alone.
    async fn discover(&self, view: &PassView<'_, R>) -> Option<Discovery> {
        discover_in(view, self.config, self.discovered).await
    }

    /// Finds what runs, asks the registry and decides; an update is returned, not started.
    async fn check(
        &self,
        cycle: &CheckCycle,
        view: &PassView<'_, R>,
        spec: &ServiceSpec,
        found: Option<&Found>,
        opts: &PassOptions,
    ) -> Checked<Work> {
        if let Some(f) = found.filter(|f| !f.problems.is_empty()) {
            let report = ServiceOutcome::new(&spec.name, ServiceResult::CheckFailed);
            return Checked::Done(report.with_reason(f.problems.join("; ")));
        }
        match self.check_inner(cycle, view, spec, found, opts).await {
            Ok(checked) => checked,
            Err(report) => Checked::Done(report),
        }
    }

    async fn check_inner(
        &self,
        cycle: &CheckCycle,
        view: &PassView<'_, R>,
        spec: &ServiceSpec,
        found: Option<&Found>,
        opts: &PassOptions,
    ) -> Result<Checked<Work>, ServiceOutcome> {
        failpoint::hit("during_check");
        if let Some(name) = &spec.swarm_service {
            return self.check_swarm(cycle, spec, name, opts).await;
        }
        let mut report = ServiceOutcome::new(&spec.name, ServiceResult::CheckFailed);
        let (project, running, running_text) = match self.running_service(view, spec).await {
            Ok(found) => found,
            Err((result, reason)) => {
                report.result = result;
                return Err(report.with_reason(reason));
            }
        };
        report.from = Some(running_text.clone());
        let check = match check_service(cycle, spec, &running.reference).await {
            Ok(c) => c,
            Err(e) => return Err(report.with_reason(e.to_string())),
        };
        let candidate = match (&check.candidate, &check.digests) {
            (Some(reference), Some(d)) => Some(Candidate {
                reference: reference.clone(),
                manifest_digest: d.manifest.clone(),
                platform_digest: d.platform.clone(),
            }),
            _ => None,
        };
        let decision = self.decision(spec, opts, &running, candidate.as_ref());
        self.record_check(spec, &running);
        match decision {
            Decision::UpToDate { reason } => {
                report.result = ServiceResult::UpToDate;
                Ok(Checked::Done(report.with_reason(format!(
                    "{reason}; {}",
                    check.selection.reason
                ))))
            }
            Decision::Hold { candidate, hold } => {
                self.announce(spec, project.as_ref(), &report, &candidate);
                Ok(Checked::Done(held(report, candidate, hold)))
            }
            Decision::Update {
                candidate,
                tag_changes,
                reason,
            } => {
                self.announce(spec, project.as_ref(), &report, &candidate);
                report.to = Some(candidate.reference.familiar());
                report.digest = Some(candidate.manifest_digest.clone());
                if let Some(f) = found.filter(|f| f.action == Action::Notify) {
                    report.result = ServiceResult::UpdateAvailable;
                    return Ok(Checked::Done(report.with_reason(format!(
                        "notify only ({} = notify): would update: {reason}; the label \
                         lookout.action=update lets lookout update it",
                        f.action_source
                    ))));
                }
                if opts.dry_run {
                    report.result = ServiceResult::UpdateAvailable;
                    return Ok(Checked::Done(
                        report.with_reason(format!("would update: {reason}")),
                    ));
                }
                let login = match pull_login(cycle, spec, &candidate.reference).await {
                    Ok(login) => login,
                    Err(e) => return Err(report.with_reason(e.to_string())),
                };
                let Some(project) = project else {
                    let work = self.container_update(spec, candidate, login, &running, opts);
                    return Ok(Checked::Apply {
                        report,
                        work: Work::Container(Box::new(work.0), work.1, reason),
                    });
                };
                let request = UpdateRequest {
                    spec: spec.clone(),
                    project,
                    running,
                    running_text,
                    candidate,
                    tag_changes,
                    source: ImageSource::Registry { login },
                    kind: ChangeKind::Update,
                    actor: opts.actor.clone(),
                };
                Ok(Checked::Apply {
                    report,
                    work: Work::Compose(Box::new(request), reason),
                })
            }
        }
    }

    /// The service's compose project (none for a standalone container) and the container it
    /// runs now, or the result and reason the check ends with (a service that does not run is
    /// skipped, not failed).
    async fn running_service(
        &self,
        view: &PassView<'_, R>,
        spec: &ServiceSpec,
    ) -> Result<(Option<ComposeProject>, Running, String), (ServiceResult, String)> {
        let failed = |e: String| (ServiceResult::CheckFailed, e);
        if let Some(name) = &spec.container {
            return match view_standalone(view, name).await {
                Ok(Some((running, text))) => Ok((None, running, text)),
                Ok(None) => Err((
                    ServiceResult::Skipped,
                    format!(
                        "container {name:?} does not run; lookout checks running containers only"
                    ),
                )),
                Err(e) => Err(failed(e)),
            };
        }
        let listed = view.containers().await.map_err(failed)?;
        let project = locate_project_in(&listed, self.compose, spec)
            .await
            .map_err(|e| failed(e.to_string()))?;
        match view_running(view, spec, &project).await {
            Ok(Some((running, text))) => Ok((Some(project), running, text)),
            Ok(None) => Err((
                ServiceResult::Skipped,
                format!(
                    "no running container of compose service {:?} in project {:?}; lookout \
                     updates running services only",
                    spec.compose_service, project.name
                ),
            )),
            Err(e) => Err((ServiceResult::CheckFailed, e)),
        }
    }

    /// The pure decision over what runs, the candidate, what failed before, and the pass's
    /// pause and windows.
    pub(super) fn decision(
        &self,
        spec: &ServiceSpec,
        opts: &PassOptions,
        running: &Running,
        candidate: Option<&Candidate>,
    ) -> Decision {
        let failed = lock(self.store)
            .state()
            .services
            .get(&spec.name)
            .and_then(|s| s.failed_candidate.clone());
        decide(&Facts {
            running,
            candidate,
            failed: failed.as_ref(),
            enabled: spec.enabled || opts.only.contains(&spec.name),
            paused: opts.paused || opts.held.contains(&spec.name),
            outside_window: if opts.respect_windows {
                self.outside_window(spec)
            } else {
                None
            },
        })
    }

    /// Carries out an update a check decided on, under the update lock: unless the service
    /// changed since its check, and turning a panic into this service's failure.
    async fn apply(
        &self,
        request: UpdateRequest,
        mut report: ServiceOutcome,
        reason: String,
    ) -> ServiceOutcome {
        if let Some(why) = self.changed_since_check(&request).await {
            report.result = ServiceResult::Skipped;
            return report.with_reason(why);
        }
        let kept = request.clone();
        match AssertUnwindSafe(self.update(request, report.clone(), reason))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            Err(panic) => {
                self.after_update_panic(&kept, report, &panic_message(&*panic))
                    .await
            }
        }
    }

    /// The update of a standalone container (`container =`, or one discovery found) a check
    /// decided on, and the image id it runs now.
    fn container_update(
        &self,
        spec: &ServiceSpec,
        candidate: Candidate,
        login: Option<RegistryLogin>,
        running: &Running,
        opts: &PassOptions,
    ) -> (ContainerUpdate, String) {
        let update = ContainerUpdate {
            service: spec.name.clone(),
            container: spec.container.clone().unwrap_or_else(|| spec.name.clone()),
            candidate,
            source: ImageSource::Registry { login },
            gate: update::gate_options(spec),
            include_stopped: self.config.discovery.include_stopped,
            kind: ChangeKind::Update,
            actor: opts.actor.clone(),
        };
        (update, running.image_id.clone())
    }

    /// Recreates a standalone container on the candidate (see [`standalone`]), under the
    /// update gate the pipeline holds: unless it changed since its check; a panic becomes
    /// this service's failure, and what it left is finished by the journal at the next start.
    async fn apply_container(
        &self,
        request: ContainerUpdate,
        checked_image: &str,
        mut report: ServiceOutcome,
        reason: String,
    ) -> ServiceOutcome {
        match self.runtime.container(&request.container).await {
            Ok(now) if now.image_id == checked_image => {}
            Ok(_) => {
                report.result = ServiceResult::Skipped;
                return report.with_reason("the container changed while this update waited for its turn (another update or a rollback ran); the next check decides again".into());
            }
            Err(e) => {
                report.result = ServiceResult::Skipped;
                return report
                    .with_reason(format!("cannot look at the container before updating: {e}"));
            }
        }
        let run = standalone::update_reported(
            self.runtime,
            self.store,
            self.now,
            self.stop,
            self.telemetry,
            &request,
        );
        match AssertUnwindSafe(run).catch_unwind().await {
            Ok(done) => {
                report.result = ServiceResult::from(&done.result);
                report.stage = done.result.stage().map(|s| s.as_str().to_owned());
                report.reason = Some(match &done.result {
                    UpdateResult::Updated => reason,
                    other => other.reason().unwrap_or_default().to_owned(),
                });
                report
            }
            Err(panic) => {
                report.result = ServiceResult::Failed;
                report.with_reason(format!(
                    "lookout hit a bug while updating this container (panic: {}); the journal \
                     lets the next start finish or undo what it left — please report it",
                    panic_message(&*panic)
                ))
            }
        }
    }

    /// Why an update decided by a check must not run now that it has the update lock: another
    /// pass or a rollback changed the service meanwhile, or the candidate failed meanwhile.
    async fn changed_since_check(&self, request: &UpdateRequest) -> Option<String> {
        let changed = "the service changed while this update waited for its turn (another update or a rollback ran); the next check decides again";
        match find_running(self.runtime, &request.spec, &request.project).await {
            Ok(Some((running, _))) if running.image_id == request.running.image_id => {}
            Ok(_) => return Some(changed.into()),
            Err(e) => return Some(format!("cannot look at the service before updating: {e}")),
        }
        let failed = lock(self.store)
            .state()
            .services
            .get(&request.spec.name)
            .and_then(|s| s.failed_candidate.clone())
            .filter(|f| f.version.digest == request.candidate.manifest_digest);
        failed.map(|f| {
            format!(
                "this candidate failed meanwhile ({}); waiting for a different one",
                f.reason
            )
        })
    }

    /// A panic interrupted an update: finish it from the journal, as a fresh start would (the
    /// update lock is still held, so nothing else is in flight).
    async fn after_update_panic(
        &self,
        request: &UpdateRequest,
        mut report: ServiceOutcome,
        panic: &str,
    ) -> ServiceOutcome {
        let service = &request.spec.name;
        tracing::error!(%service, %panic, "lookout hit a bug during the update; finishing it from the journal");
        let find = |name: &str| {
            (name == service.as_str()).then(|| (request.spec.clone(), request.project.clone()))
        };
        let recovered = recovery::recover(self.runtime, self.compose, self.store, self.now, &find)
            .await
            .into_iter()
            .find(|r| &r.service == service);
        let (result, detail) = match &recovered {
            None => (
                ServiceResult::Failed,
                "nothing had been changed yet".to_owned(),
            ),
            Some(r) => (
                match &r.outcome {
                    Some(ChangeOutcome::Committed) => ServiceResult::Updated,
                    Some(ChangeOutcome::RolledBack { .. }) => ServiceResult::RolledBack,
                    Some(ChangeOutcome::Abandoned { .. }) => ServiceResult::Failed,
                    Some(ChangeOutcome::RollbackFailed { .. }) | None => {
                        ServiceResult::RollbackFailed
                    }
                },
                r.detail.clone(),
            ),
        };
        let reason = format!(
            "lookout hit a bug during the update (panic: {panic}) — please report it; recovery: {detail}"
        );
        let info = update_info(
            &request.spec,
            event_file(&request.project),
            &request.running_text,
            &request.running.digest(),
            &request.candidate,
            (self.now)(),
        );
        self.telemetry.emit(match result {
            ServiceResult::Updated => Event::Updated(info),
            ServiceResult::RolledBack => Event::RolledBack {
                update: info,
                reason: reason.clone(),
            },
            _ => Event::UpdateFailed {
                update: info,
                stage: Stage::Rollback,
                reason: reason.clone(),
            },
        });
        report.result = result;
        report.with_reason(reason)
    }

    /// Carries out an update a check decided on, with its events.
    async fn update(
        &self,
        request: UpdateRequest,
        mut report: ServiceOutcome,
        reason: String,
    ) -> ServiceOutcome {
        let spec = &request.spec;
        let mut info = update_info(
            spec,
            event_file(&request.project),
            &request.running_text,
            &request.running.digest(),
            &request.candidate,
            (self.now)(),
        );
        self.telemetry.emit(Event::UpdateStarted(info.clone()));
        let updater = Updater {
            runtime: self.runtime,
            compose: self.compose,
            store: self.store,
            now: self.now,
            stop: self.stop,
        };
        let done = updater.update(&request).await;
        info.duration = Some(done.duration);
        self.telemetry.emit(match &done.result {
            UpdateResult::Updated => Event::Updated(info),
            UpdateResult::RolledBack { reason, .. } => Event::RolledBack {
                update: info,
                reason: reason.clone(),
            },
            UpdateResult::Failed { stage, reason }
            | UpdateResult::RollbackFailed { stage, reason } => Event::UpdateFailed {
                update: info,
                stage: *stage,
                reason: reason.clone(),
            },
        });
        report.result = ServiceResult::from(&done.result);
        report.phases = done.phases;
        report.stage = done.result.stage().map(|s| s.as_str().to_owned());
        report.reason = Some(match &done.result {
            UpdateResult::Updated => reason,
            other => other.reason().unwrap_or_default().to_owned(),
        });
        report
    }

    /// Why an update of `spec` may not start now: outside its maintenance windows, or too close
    /// to a window's end to finish (compose timeout plus health timeout).
    fn outside_window(&self, spec: &ServiceSpec) -> Option<String> {
        let local = jiff::tz::TimeZone::system();
        let windows = Windows::for_service(self.config, spec, &local);
        let needed = update_needs(self.config.compose_timeout, spec.health_timeout);
        match windows.may_change_now((self.now)(), needed) {
            WindowDecision::Allowed { .. } => None,
            WindowDecision::WaitUntil(at) => Some(format!(
                "outside the maintenance window (or too close to its end to finish within {}s); the next one opens at {at}",
                needed.as_secs()
            )),
            WindowDecision::NoWindowLongEnough => Some(format!(
                "no maintenance window is long enough for an update that may take {}s (compose_timeout + health_timeout)",
                needed.as_secs()
            )),
        }
    }

    /// `update_available`, once per service and candidate digest.
    fn announce(
        &self,
        spec: &ServiceSpec,
        project: Option<&ComposeProject>,
        report: &ServiceOutcome,
        candidate: &Candidate,
    ) {
        let mut announced = lock(self.announced);
        if announced.get(&spec.name) == Some(&candidate.manifest_digest) {
            return;
        }
        announced.insert(spec.name.clone(), candidate.manifest_digest.clone());
        let from = report.from.clone().unwrap_or_default();
        let info = update_info(
            spec,
            project.map(event_file).unwrap_or_default(),
            &from,
            "",
            candidate,
            (self.now)(),
        );
        self.telemetry.emit(Event::UpdateAvailable(info));
    }

    pub(super) fn record_check(&self, spec: &ServiceSpec, running: &Running) {
        let version = ImageVersion {
            image: running.reference.name(),
            tag: running.reference.tag().map(str::to_owned),
            digest: running.digest(),
        };
        lock(self.store).record_check(&spec.name, Some(version), (self.now)());
    }
}

/// What discovery finds in `view`'s container list, also left in `store`; `None` when the
/// list cannot be made.
pub(crate) async fn discover_in<R: ContainerRuntime>(
    view: &PassView<'_, R>,
    config: &Config,
    store: &std::sync::RwLock<std::sync::Arc<Discovery>>,
) -> Option<Discovery> {
    let found = match discovery::from_view(view, config).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "discovery cannot list the containers; checking the configured services only");
            return None;
        }
    };
    *store
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(found.clone());
    Some(found)
}

/// The report of a candidate that is held back, saying why.
pub(super) fn held(mut report: ServiceOutcome, candidate: Candidate, hold: Hold) -> ServiceOutcome {
    report.result = ServiceResult::UpdateAvailable;
    report.to = Some(candidate.reference.familiar());
    report.digest = Some(candidate.manifest_digest);
    report.with_reason(match hold {
        Hold::Disabled => "the service is disabled (enabled = false)".into(),
        Hold::Paused => "updates are paused".into(),
        Hold::OutsideWindow { reason } => reason,
        Hold::FailedBefore { reason } => {
            format!("this candidate failed before ({reason}); waiting for a different one")
        }
    })
}

/// What the Docker engine must present to pull `image`, from the registry layer (lookout never
/// runs `docker login`).
pub(super) async fn pull_login(
    cycle: &CheckCycle,
    spec: &ServiceSpec,
    image: &ImageRef,
) -> Result<Option<RegistryLogin>, RegistryError> {
    let registry = cycle.registry(spec)?;
    Ok(match registry.credential(image).await? {
        Credential::Anonymous => None,
        Credential::Basic { username, password } => Some(RegistryLogin {
            username,
            password,
            server: image.registry().to_owned(),
        }),
    })
}

/// The `PassFinished` event of a pass's reports.
pub(crate) fn finished(outcomes: &[ServiceOutcome]) -> Event {
    Event::PassFinished {
        services: outcomes
            .iter()
            .map(|o| crate::telemetry::PassService {
                service: o.service.clone(),
                installed: o.from.clone(),
                candidate: o.to.clone(),
                result: o.result.as_str().to_owned(),
                reason: o.reason.clone(),
            })
            .collect(),
    }
}

/// The `CheckFinished` event of one service's report.
fn check_finished(spec: &ServiceSpec, outcome: &ServiceOutcome) -> Event {
    let result = match outcome.result {
        ServiceResult::CheckFailed | ServiceResult::Skipped => CheckResult::Failed,
        ServiceResult::UpToDate | ServiceResult::Updated => CheckResult::UpToDate,
        ServiceResult::UpdateAvailable
        | ServiceResult::RolledBack
        | ServiceResult::Failed
        | ServiceResult::RollbackFailed => CheckResult::UpdateAvailable,
    };
    let update_available = (result == CheckResult::UpdateAvailable)
        .then(|| outcome.to.clone())
        .flatten()
        .map(|image| NewerImage {
            image,
            digest: outcome.digest.clone(),
        });
    Event::CheckFinished {
        service: spec.name.clone(),
        result,
        update_available,
        duration: outcome.check_duration,
    }
}

/// The compose file events name for a service: the first of its project's files.
fn event_file(project: &ComposeProject) -> PathBuf {
    project.files.first().cloned().unwrap_or_default()
}

fn update_info(
    spec: &ServiceSpec,
    compose_file: PathBuf,
    from: &str,
    from_digest: &str,
    candidate: &Candidate,
    at: jiff::Timestamp,
) -> UpdateInfo {
    UpdateInfo {
        service: spec.name.clone(),
        compose_service: spec.compose_service.clone(),
        compose_file,
        old_image: from.to_owned(),
        new_image: candidate.reference.familiar(),
        old_digest: (!from_digest.is_empty()).then(|| from_digest.to_owned()),
        new_digest: Some(candidate.manifest_digest.clone()),
        started_at: at,
        duration: None,
    }
}

/// The running container of a service: its image reference as compose wrote it
/// (`Config.Image`), with the image id and the registry digests Docker recorded for that image.
/// `None` when no container of the service runs.
pub(crate) async fn find_running<R: ContainerRuntime>(
    runtime: &R,
    spec: &ServiceSpec,
    project: &ComposeProject,
) -> Result<Option<(Running, String)>, String> {
    let containers = runtime
        .service_containers(&project.name, &spec.compose_service)
        .await
        .map_err(|e| e.to_string())?;
    let Some(container) = containers
        .into_iter()
        .find(|c| c.state == ContainerState::Running)
    else {
        return Ok(None);
    };
    let reference = ImageRef::parse(&container.image_ref)
        .map_err(|e| format!("container {}: {e}", container.name))?;
    let image = runtime
        .image(&container.image_id)
        .await
        .map_err(|e| e.to_string())?;
    let repo_digests = image.map(|i| i.repo_digests).unwrap_or_default();
    let running = Running {
        reference,
        image_id: container.image_id,
        repo_digests,
    };
    Ok(Some((running, container.image_ref)))
}

/// [`find_running`] from the pass's shared view of Docker.
async fn view_running<R: ContainerRuntime>(
    view: &PassView<'_, R>,
    spec: &ServiceSpec,
    project: &ComposeProject,
) -> Result<Option<(Running, String)>, String> {
    let Some(container) = view.running(&project.name, &spec.compose_service).await? else {
        return Ok(None);
    };
    let reference = ImageRef::parse(&container.image_ref)
        .map_err(|e| format!("container {}: {e}", container.name))?;
    let image = view.image(&container.image_id).await?;
    let running = Running {
        reference,
        image_id: container.image_id,
        repo_digests: image.map(|i| i.repo_digests).unwrap_or_default(),
    };
    Ok(Some((running, container.image_ref)))
}

/// The running standalone container `name` from the pass's shared view of Docker.
async fn view_standalone<R: ContainerRuntime>(
    view: &PassView<'_, R>,
    name: &str,
) -> Result<Option<(Running, String)>, String> {
    let Some(container) = view.running_container(name).await? else {
        return Ok(None);
    };
    let reference = ImageRef::parse(&container.image_ref)
        .map_err(|e| format!("container {}: {e}", container.name))?;
    let image = view.image(&container.image_id).await?;
    let running = Running {
        reference,
        image_id: container.image_id,
        repo_digests: image.map(|i| i.repo_digests).unwrap_or_default(),
    };
    Ok(Some((running, container.image_ref)))
}

/// For each of a pass's services, the services its `lookout.depends_on` (or Watchtower's
/// `…depends-on`) label names, by index into `specs` (see [`discovery::depends`]); each name
/// that matches nothing lookout knows is logged as a warning naming the container, the label and
/// the value, and orders nothing.
fn label_waits(
    specs: &[&ServiceSpec],
    all: &[ServiceSpec],
    found: &HashMap<&str, &Found>,
    listed: &[crate::runtime::ContainerSummary],
) -> Vec<Vec<usize>> {
    let targets: Vec<discovery::depends::Target<'_>> = specs
        .iter()
        .map(|spec| {
            let f = found.get(spec.name.as_str()).copied();
            let compose = match f.map(|f| &f.kind) {
                Some(discovery::Kind::Compose { project, service }) => {
                    Some((project.as_str(), service.as_str()))
                }
                Some(discovery::Kind::Standalone { .. }) => None,
                None if spec.container.is_some() || spec.swarm_service.is_some() => None,
                None => spec
                    .compose_project
                    .as_deref()
                    .map(|p| (p, spec.compose_service.as_str())),
            };
            discovery::depends::Target {
                name: &spec.name,
                compose,
                containers: match (f, &spec.container) {
                    (Some(f), _) => &f.containers,
                    (None, Some(c)) => std::slice::from_ref(c),
                    (None, None) => &[],
                },
                labelled: f.map_or(spec.name.as_str(), |f| f.container.as_str()),
                depends_on: f.map(|f| f.depends_on.as_slice()).unwrap_or_default(),
            }
        })
        .collect();
    let known = discovery::depends::Known::of(listed, all.iter().map(|s| s.name.as_str()));
    let (on, warnings) = discovery::depends::waits(&targets, &known);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    on
}

/// The order to go through services, given as (compose file, compose service) in configuration
/// order: a service comes after the services of the same compose file it `depends_on`, and
/// after those `labelled` says (by index) it depends on; otherwise configuration order is kept.
/// A dependency cycle falls back to configuration order.
#[cfg(test)]
pub fn update_order(
    services: &[(PathBuf, String)],
    dependencies: &dyn Fn(&Path) -> BTreeMap<String, Vec<String>>,
    labelled: &[Vec<usize>],
) -> Vec<usize> {
    plan_updates(services, dependencies, labelled).0
}

/// For each service, the services whose update must be done before its own: those of the same
/// compose file it `depends_on`, and those `labelled` names for it (its `lookout.depends_on`
/// label, by index), that come earlier in [`update_order`] (so a dependency cycle cannot make
/// two services wait for each other).
pub(crate) fn update_after(
    services: &[(PathBuf, String)],
    dependencies: &dyn Fn(&Path) -> BTreeMap<String, Vec<String>>,
    labelled: &[Vec<usize>],
) -> Vec<Vec<usize>> {
    plan_updates(services, dependencies, labelled).1
}

fn plan_updates(
    services: &[(PathBuf, String)],
    dependencies: &dyn Fn(&Path) -> BTreeMap<String, Vec<String>>,
    labelled: &[Vec<usize>],
) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut deps_by_file: HashMap<&Path, BTreeMap<String, Vec<String>>> = HashMap::new();
    for (file, _) in services {
        deps_by_file
            .entry(file.as_path())
            .or_insert_with(|| dependencies(file));
    }
    let mut by_name: HashMap<(&Path, &str), Vec<usize>> = HashMap::new();
    for (i, (file, service)) in services.iter().enumerate() {
        by_name
            .entry((file.as_path(), service.as_str()))
            .or_default()
            .push(i);
    }
    // For each service, the services it waits for: of the same compose file, named in its
    // depends_on, and named by its depends_on label (never itself); and the reverse.
    let waits_for: Vec<Vec<usize>> = services
        .iter()
        .enumerate()
        .map(|(i, (file, service))| {
            let named = deps_by_file
                .get(file.as_path())
                .and_then(|deps| deps.get(service))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut on: Vec<usize> = named
                .iter()
                .flat_map(|other| {
                    by_name
                        .get(&(file.as_path(), other.as_str()))
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                })
                .copied()
                .chain(labelled.get(i).into_iter().flatten().copied())
                .filter(|&j| j != i && j < services.len())
                .collect();
            on.sort_unstable();
            on.dedup();
            on
        })
        .collect();
    let mut waited_by: Vec<Vec<usize>> = vec![Vec::new(); services.len()];
    for (i, on) in waits_for.iter().enumerate() {
        for &j in on {
            if let Some(w) = waited_by.get_mut(j) {
                w.push(i);
            }
        }
    }
    // Kahn's order, the first ready service in configuration order first; in a cycle, the
    // first one left.
    let mut missing: Vec<usize> = waits_for.iter().map(Vec::len).collect();
    let mut ready: std::collections::BTreeSet<usize> = (0..services.len())
        .filter(|&i| missing.get(i) == Some(&0))
        .collect();
    let mut unplaced: std::collections::BTreeSet<usize> = (0..services.len()).collect();
    let mut order: Vec<usize> = Vec::with_capacity(services.len());
    while let Some(next) = ready.pop_first().or_else(|| unplaced.first().copied()) {
        if !unplaced.remove(&next) {
            continue;
        }
        ready.remove(&next);
        order.push(next);
        for &k in waited_by.get(next).map(Vec::as_slice).unwrap_or_default() {
            if let Some(m) = missing.get_mut(k) {
                *m = m.saturating_sub(1);
                if *m == 0 && unplaced.contains(&k) {
                    ready.insert(k);
                }
            }
        }
    }
    let mut position = vec![usize::MAX; services.len()];
    for (at, &i) in order.iter().enumerate() {
        if let Some(p) = position.get_mut(i) {
            *p = at;
        }
    }
    let at = |i: usize| position.get(i).copied().unwrap_or(usize::MAX);
    let after = waits_for
        .iter()
        .enumerate()
        .map(|(i, on)| {
            let mut earlier: Vec<usize> = on.iter().copied().filter(|&j| at(j) < at(i)).collect();
            earlier.sort_by_key(|&j| at(j));
            earlier
        })
        .collect();
    (order, after)
}

/// The compose file's text for its `depends_on`, when it is a regular file of a sane size
/// (anything else has no dependencies here; the update itself reports what is wrong with it).
/// The file whose `depends_on` orders a service's update. A service configured by
/// `compose_project` alone has none lookout reads before the pass: its key names the project,
/// which no file has, so it waits for nothing.
fn dependency_key(spec: &ServiceSpec) -> PathBuf {
    if let Some(container) = &spec.container {
        return standalone::gate_key(container);
    }
    if let Some(name) = &spec.swarm_service {
        return PathBuf::from(format!("<swarm service {name}>"));
    }
    spec.compose_file.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "<compose project {}>",
            spec.compose_project.as_deref().unwrap_or_default()
        ))
    })
}

fn read_compose_for_dependencies(file: &Path) -> String {
    crate::config::read_text(file, crate::config::MAX_FILE_BYTES).unwrap_or_default()
}

/// How long an update may take from its start: `compose up` plus the health gate. Saturates,
/// so no configured duration can overflow it.
pub(crate) fn update_needs(compose_timeout: Duration, health_timeout: Duration) -> Duration {
    compose_timeout.saturating_add(health_timeout)
}

fn selected(spec: &ServiceSpec, opts: &PassOptions) -> bool {
    if opts.only.is_empty() {
        true
    } else {
        opts.only.iter().any(|n| n == &spec.name)
    }
}

impl ServiceOutcome {
    /// An outcome with only the service and the result so far.
    pub fn new(service: &str, result: ServiceResult) -> Self {
        Self {
            service: service.to_owned(),
            from: None,
            to: None,
            digest: None,
            result,
            reason: None,
            stage: None,
            duration: Duration::ZERO,
            check_duration: Duration::ZERO,
            phases: None,
        }
    }

    pub(crate) fn with_reason(mut self, reason: String) -> Self {
        self.reason = Some(reason);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(services: &[(&str, &str)], deps: &[(&str, &str, &[&str])], expect: &[usize]) {
        let services: Vec<(PathBuf, String)> = services
            .iter()
            .map(|(f, s)| (PathBuf::from(f), (*s).to_owned()))
            .collect();
        let lookup = |file: &Path| {
            deps.iter()
                .filter(|(f, _, _)| Path::new(f) == file)
                .map(|(_, s, d)| ((*s).to_owned(), d.iter().map(|x| (*x).to_owned()).collect()))
                .collect()
        };
        assert_eq!(
            update_order(&services, &lookup, &[]),
            expect,
            "{services:?}"
        );
    }

    #[test]
    fn each_update_waits_only_for_the_services_it_depends_on() {
        let services: Vec<(PathBuf, String)> = [
            ("a.yml", "web"),
            ("a.yml", "api"),
            ("b.yml", "other"),
            ("a.yml", "db"),
        ]
        .iter()
        .map(|(f, s)| (PathBuf::from(f), (*s).to_owned()))
        .collect();
        let deps = |file: &Path| {
            let mut m = BTreeMap::new();
            if file == Path::new("a.yml") {
                m.insert("web".to_owned(), vec!["api".to_owned()]);
                m.insert("api".to_owned(), vec!["db".to_owned()]);
            }
            m
        };
        assert_eq!(
            update_after(&services, &deps, &[]),
            vec![vec![1], vec![3], vec![], vec![]]
        );
        // A cycle: the later one waits, the earlier one does not.
        let cycle = |_: &Path| {
            let mut m = BTreeMap::new();
            m.insert("x".to_owned(), vec!["y".to_owned()]);
            m.insert("y".to_owned(), vec!["x".to_owned()]);
            m
        };
        let two: Vec<(PathBuf, String)> = vec![
            (PathBuf::from("a.yml"), "x".into()),
            (PathBuf::from("a.yml"), "y".into()),
        ];
        assert_eq!(update_after(&two, &cycle, &[]), vec![vec![], vec![0]]);
    }

    #[test]
    fn the_time_an_update_needs_saturates_instead_of_overflowing() {
        assert_eq!(
            update_needs(Duration::from_secs(120), Duration::from_secs(180)),
            Duration::from_secs(300)
        );
        assert_eq!(
            update_needs(Duration::from_secs(120), Duration::from_secs(u64::MAX)),
            Duration::MAX
        );
    }

    #[test]
    fn updates_follow_depends_on_within_a_project() {
        // web depends on api, api on db: db, api, web whatever the configuration order.
        let chain: &[(&str, &str, &[&str])] =
            &[("a.yml", "web", &["api"]), ("a.yml", "api", &["db"])];
        check(
            &[("a.yml", "web"), ("a.yml", "api"), ("a.yml", "db")],
            chain,
            &[2, 1, 0],
        );
        check(
            &[("a.yml", "db"), ("a.yml", "api"), ("a.yml", "web")],
            chain,
            &[0, 1, 2],
        );
        // Another project's service of the same name is not a dependency.
        check(&[("a.yml", "web"), ("b.yml", "api")], chain, &[0, 1]);
        // Without dependencies, configuration order.
        check(
            &[("a.yml", "x"), ("b.yml", "y"), ("a.yml", "z")],
            &[],
            &[0, 1, 2],
        );
        // A cycle does not hang: configuration order.
        let cycle: &[(&str, &str, &[&str])] = &[("a.yml", "x", &["y"]), ("a.yml", "y", &["x"])];
        check(&[("a.yml", "x"), ("a.yml", "y")], cycle, &[0, 1]);
    }

    #[test]
    fn a_depends_on_label_orders_updates_across_projects_and_containers() {
        let services: Vec<(PathBuf, String)> = [
            ("<container app>", "app"),
            ("/srv/shop/compose.yaml", "web"),
            ("<compose project db>", "db"),
            ("<container proxy>", "proxy"),
        ]
        .iter()
        .map(|(f, s)| (PathBuf::from(f), (*s).to_owned()))
        .collect();
        let web_on_api = |file: &Path| {
            let mut m = BTreeMap::new();
            if file == Path::new("/srv/shop/compose.yaml") {
                m.insert("web".to_owned(), vec!["api".to_owned()]);
            }
            m
        };
        let none = |_: &Path| BTreeMap::new();
        // (what, compose depends_on, label waits by index, expected order, expected waits)
        type Deps<'a> = &'a dyn Fn(&Path) -> BTreeMap<String, Vec<String>>;
        type Case<'a> = (
            &'a str,
            Deps<'a>,
            Vec<Vec<usize>>,
            Vec<usize>,
            Vec<Vec<usize>>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "no label: configuration order, nobody waits",
                &none,
                vec![],
                vec![0, 1, 2, 3],
                vec![vec![], vec![], vec![], vec![]],
            ),
            (
                "the container labelled to depend on the db project waits for it",
                &none,
                vec![vec![2], vec![], vec![], vec![]],
                vec![1, 2, 0, 3],
                vec![vec![2], vec![], vec![], vec![]],
            ),
            (
                "a chain across kinds: app after web, web after proxy",
                &web_on_api,
                vec![vec![1], vec![3], vec![], vec![]],
                vec![2, 3, 1, 0],
                vec![vec![1], vec![3], vec![], vec![]],
            ),
            (
                "two names: the proxy waits for both, in update order",
                &none,
                vec![vec![], vec![], vec![], vec![2, 0]],
                vec![0, 1, 2, 3],
                vec![vec![], vec![], vec![], vec![0, 2]],
            ),
            (
                "a cycle of labels: the others first, then the cycle in configuration order; \
                 the earlier one does not wait, so nothing hangs",
                &none,
                vec![vec![2], vec![], vec![0], vec![]],
                vec![1, 3, 0, 2],
                vec![vec![], vec![], vec![0], vec![]],
            ),
            (
                "itself and an index that points nowhere are ignored",
                &none,
                vec![vec![0, 9], vec![], vec![], vec![]],
                vec![0, 1, 2, 3],
                vec![vec![], vec![], vec![], vec![]],
            ),
        ];
        for (what, deps, labelled, order, after) in cases {
            assert_eq!(update_order(&services, deps, &labelled), order, "{what}");
            assert_eq!(update_after(&services, deps, &labelled), after, "{what}");
        }
    }
}
