//! One pass over the configured services: find what runs, ask the registry, decide, and update
//! the services that should be updated — the seed's `--once`, and each cycle of the daemon.
//!
//! A service whose check fails does not stop the others. Updates of services in the same compose
//! project run one at a time (this pass runs every update one after the other).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::Instrument;

use crate::compose;
use crate::config::{Config, ServiceSpec};
use crate::engine::decide::{Candidate, Decision, Facts, Hold, Running, decide};
use crate::engine::update::{ImageSource, UpdateRequest, UpdateResult, Updater};
use crate::reference::ImageRef;
use crate::registry::{CheckCycle, Credential, Registries, RegistryError, check_service};
use crate::runtime::compose_cli::{ComposeCli, ComposeProject};
use crate::runtime::{ContainerRuntime, ContainerState, RegistryLogin};
use crate::schedule::{Decision as WindowDecision, Windows};
use crate::state::{ChangeKind, ImageVersion, StateStore};
use crate::telemetry::{
    Candidate as TelemetryCandidate, CheckResult, Event, Telemetry, UpdateInfo,
};

/// What a pass did for one service: `{service, from, to, digest, result, reason, duration}`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceOutcome {
    pub service: String,
    /// The image that ran when the pass began.
    pub from: Option<String>,
    /// The candidate, when there is one.
    pub to: Option<String>,
    pub digest: Option<String>,
    /// `up_to_date`, `update_available` (dry run, or held), `updated`, `rolled_back`, `failed`,
    /// `rollback_failed`, `check_failed`, `skipped`.
    pub result: String,
    pub reason: Option<String>,
    /// Where a failed update stopped.
    pub stage: Option<String>,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// How many services are checked at once.
pub const PARALLEL_CHECKS: usize = 8;

/// A service after its check: finished, or an update to carry out.
enum Checked {
    Done(ServiceOutcome),
    Update {
        request: Box<UpdateRequest>,
        report: ServiceOutcome,
        reason: String,
    },
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
    /// Hold updates outside each service's maintenance windows (the daemon, and `lookout update`
    /// unless told otherwise).
    pub respect_windows: bool,
}

/// The seams a pass goes through.
pub struct Pass<'a, R: ContainerRuntime> {
    pub config: &'a Config,
    pub runtime: &'a R,
    pub compose: &'a ComposeCli,
    pub registries: &'a std::sync::Arc<Registries>,
    pub store: &'a Mutex<StateStore>,
    pub now: &'a (dyn Fn() -> jiff::Timestamp + Send + Sync),
    /// Where logs, metrics and webhooks come from: one event per occurrence.
    pub telemetry: &'a Telemetry,
    /// The candidate last announced per service, so `update_available` is sent once per candidate.
    pub announced: &'a Mutex<HashMap<String, String>>,
}

impl<R: ContainerRuntime> Pass<'_, R> {
    /// Runs one pass and reports per service: checks run in parallel (at most
    /// [`PARALLEL_CHECKS`] at once; services sharing a repository or reference share the
    /// registry's answers), then updates run one at a time, in configuration order.
    pub async fn run(&self, opts: &PassOptions) -> Vec<ServiceOutcome> {
        let cycle = CheckCycle::new(self.registries.clone());
        let limit = tokio::sync::Semaphore::new(PARALLEL_CHECKS);
        let mut checks = Vec::new();
        for spec in &self.config.services {
            if selected(spec, opts) {
                checks.push(self.check_limited(&limit, &cycle, spec, opts));
            }
        }
        let checked = futures_util::future::join_all(checks).await;
        // Results are reported in configuration order; updates run in `depends_on` order.
        let services: Vec<(PathBuf, String)> = checked
            .iter()
            .map(|(spec, _, _)| (spec.compose_file.clone(), spec.compose_service.clone()))
            .collect();
        let order = update_order(&services, &|file| {
            compose::dependencies(
                &crate::config::read_text(file, crate::config::MAX_FILE_BYTES).unwrap_or_default(),
            )
        });
        let mut checked: Vec<Option<_>> = checked.into_iter().map(Some).collect();
        let mut slots: Vec<Option<ServiceOutcome>> = vec![None; checked.len()];
        for i in order {
            let Some((spec, started, checked)) = checked[i].take() else {
                continue;
            };
            let mut outcome = match checked {
                Checked::Done(outcome) => outcome,
                Checked::Update {
                    request,
                    report,
                    reason,
                } => {
                    let span = tracing::info_span!("check", service = %spec.name);
                    self.update(*request, report, reason).instrument(span).await
                }
            };
            outcome.duration = started.elapsed();
            self.telemetry.emit(check_finished(spec, &outcome));
            slots[i] = Some(outcome);
        }
        let out: Vec<ServiceOutcome> = slots.into_iter().flatten().collect();
        out
    }

    /// [`Pass::check`] once a place among the parallel checks is free.
    async fn check_limited<'s>(
        &self,
        limit: &tokio::sync::Semaphore,
        cycle: &CheckCycle,
        spec: &'s ServiceSpec,
        opts: &PassOptions,
    ) -> (&'s ServiceSpec, Instant, Checked) {
        let _permit = limit
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let started = Instant::now();
        let span = tracing::info_span!("check", service = %spec.name);
        (
            spec,
            started,
            self.check(cycle, spec, opts).instrument(span).await,
        )
    }

    /// Finds what runs, asks the registry and decides; an update is returned, not started.
    async fn check(&self, cycle: &CheckCycle, spec: &ServiceSpec, opts: &PassOptions) -> Checked {
        match self.check_inner(cycle, spec, opts).await {
            Ok(checked) => checked,
            Err(report) => Checked::Done(report),
        }
    }

    async fn check_inner(
        &self,
        cycle: &CheckCycle,
        spec: &ServiceSpec,
        opts: &PassOptions,
    ) -> Result<Checked, ServiceOutcome> {
        let mut report = ServiceOutcome {
            service: spec.name.clone(),
            from: None,
            to: None,
            digest: None,
            result: "check_failed".into(),
            reason: None,
            stage: None,
            duration: Duration::ZERO,
        };
        let project = match self
            .compose
            .project(&spec.compose_file, None, |n| std::env::var(n).ok())
        {
            Ok(p) => p,
            Err(e) => return Err(report.with_reason(e.to_string())),
        };
        let (running, running_text) = match find_running(self.runtime, spec, &project).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                report.result = "skipped".into();
                return Err(report.with_reason(format!(
                    "no running container of compose service {:?} in project {:?}; lookout updates running services only",
                    spec.compose_service, project.name
                )));
            }
            Err(e) => return Err(report.with_reason(e)),
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
        let state_failed = self
            .store
            .lock()
            .expect("state lock")
            .state()
            .services
            .get(&spec.name)
            .and_then(|s| s.failed_candidate.clone());
        let decision = decide(&Facts {
            running: &running,
            candidate: candidate.as_ref(),
            failed: state_failed.as_ref(),
            enabled: spec.enabled || opts.only.contains(&spec.name),
            paused: opts.paused,
            outside_window: if opts.respect_windows {
                self.outside_window(spec)
            } else {
                None
            },
        });
        self.record_check(spec, &running);
        match decision {
            Decision::UpToDate { reason } => {
                report.result = "up_to_date".into();
                Ok(Checked::Done(report.with_reason(format!(
                    "{reason}; {}",
                    check.selection.reason
                ))))
            }
            Decision::Hold { candidate, hold } => {
                self.announce(spec, &report, &candidate);
                report.result = "update_available".into();
                report.to = Some(candidate.reference.familiar());
                report.digest = Some(candidate.manifest_digest);
                Ok(Checked::Done(report.with_reason(match hold {
                    Hold::Disabled => "the service is disabled (enabled = false)".into(),
                    Hold::Paused => "updates are paused".into(),
                    Hold::OutsideWindow { reason } => reason,
                    Hold::FailedBefore { reason } => format!(
                        "this candidate failed before ({reason}); waiting for a different one"
                    ),
                })))
            }
            Decision::Update {
                candidate,
                tag_changes,
                reason,
            } => {
                self.announce(spec, &report, &candidate);
                report.to = Some(candidate.reference.familiar());
                report.digest = Some(candidate.manifest_digest.clone());
                if opts.dry_run {
                    report.result = "update_available".into();
                    return Ok(Checked::Done(
                        report.with_reason(format!("would update: {reason}")),
                    ));
                }
                let login = match pull_login(cycle, spec, &candidate.reference).await {
                    Ok(login) => login,
                    Err(e) => return Err(report.with_reason(e.to_string())),
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
                    env_file: None,
                };
                Ok(Checked::Update {
                    request: Box::new(request),
                    report,
                    reason,
                })
            }
        }
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
        report.result = done.result.as_str().into();
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
        let needed = self.config.compose_timeout + spec.health_timeout;
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
    fn announce(&self, spec: &ServiceSpec, report: &ServiceOutcome, candidate: &Candidate) {
        let mut announced = self.announced.lock().expect("announced lock");
        if announced.get(&spec.name) == Some(&candidate.manifest_digest) {
            return;
        }
        announced.insert(spec.name.clone(), candidate.manifest_digest.clone());
        let from = report.from.clone().unwrap_or_default();
        let info = update_info(spec, &from, "", candidate, (self.now)());
        self.telemetry.emit(Event::UpdateAvailable(info));
    }

    fn record_check(&self, spec: &ServiceSpec, running: &Running) {
        let version = ImageVersion {
            image: running.reference.name(),
            tag: running.reference.tag().map(str::to_owned),
            digest: running.digest(),
        };
        if let Err(e) = self.store.lock().expect("state lock").record_check(
            &spec.name,
            Some(version),
            (self.now)(),
        ) {
            tracing::warn!(error = %e, "cannot record the check in the state file");
        }
    }
}

/// What the Docker engine must present to pull `image`, from the registry layer (lookout never
/// runs `docker login`).
async fn pull_login(
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

/// The `CheckFinished` event of one service's report.
fn check_finished(spec: &ServiceSpec, outcome: &ServiceOutcome) -> Event {
    let result = match outcome.result.as_str() {
        "check_failed" | "skipped" => CheckResult::Failed,
        "up_to_date" | "updated" => CheckResult::UpToDate,
        _ => CheckResult::UpdateAvailable,
    };
    let update_available = (result == CheckResult::UpdateAvailable)
        .then(|| outcome.to.clone())
        .flatten()
        .map(|image| TelemetryCandidate {
            image,
            digest: outcome.digest.clone(),
        });
    Event::CheckFinished {
        service: spec.name.clone(),
        result,
        update_available,
        duration: outcome.duration,
    }
}

fn update_info(
    spec: &ServiceSpec,
    from: &str,
    from_digest: &str,
    candidate: &Candidate,
    at: jiff::Timestamp,
) -> UpdateInfo {
    UpdateInfo {
        service: spec.name.clone(),
        compose_service: spec.compose_service.clone(),
        compose_file: spec.compose_file.clone(),
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
pub async fn find_running<R: ContainerRuntime>(
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

/// The order to go through services, given as (compose file, compose service) in configuration
/// order: a service comes after the services of the same compose file it `depends_on`;
/// otherwise configuration order is kept. A dependency cycle falls back to configuration order.
pub fn update_order(
    services: &[(PathBuf, String)],
    dependencies: &dyn Fn(&Path) -> BTreeMap<String, Vec<String>>,
) -> Vec<usize> {
    let mut deps_by_file: HashMap<&Path, BTreeMap<String, Vec<String>>> = HashMap::new();
    for (file, _) in services {
        deps_by_file
            .entry(file.as_path())
            .or_insert_with(|| dependencies(file));
    }
    let waits_for = |i: usize, j: usize| {
        let (file, service) = &services[i];
        file == &services[j].0
            && deps_by_file[file.as_path()]
                .get(service)
                .is_some_and(|d| d.contains(&services[j].1))
    };
    let mut placed = vec![false; services.len()];
    let mut order = Vec::with_capacity(services.len());
    while order.len() < services.len() {
        let ready = (0..services.len())
            .filter(|&i| !placed[i])
            .find(|&i| (0..services.len()).all(|j| placed[j] || j == i || !waits_for(i, j)));
        let next =
            ready.unwrap_or_else(|| (0..services.len()).find(|&i| !placed[i]).expect("one left"));
        placed[next] = true;
        order.push(next);
    }
    order
}

fn selected(spec: &ServiceSpec, opts: &PassOptions) -> bool {
    if opts.only.is_empty() {
        true
    } else {
        opts.only.iter().any(|n| n == &spec.name)
    }
}

impl ServiceOutcome {
    fn with_reason(mut self, reason: String) -> Self {
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
        assert_eq!(update_order(&services, &lookup), expect, "{services:?}");
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
}
