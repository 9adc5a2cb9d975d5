//! Swarm services: lookout decides when and to what, Swarm rolls the image out and back.
//!
//! A service with `swarm_service` is checked like any other (its running reference is the
//! service spec's image, `repo:tag@sha256:…`, as Swarm pins it), and updated by one service
//! update through [`SwarmApi::update_image`]: the new `repo:tag@digest`, the registry login
//! as `X-Registry-Auth`, and unless the service has its own, an update config that makes Swarm
//! health-gate the new tasks and roll back on failure ([`update_settings`]). lookout then only
//! watches: [`judge`] reads `UpdateStatus`, the spec's image and the tasks, within
//! [`update_deadline`], and says `updated`, `rolled_back` (the reason from the failed tasks'
//! errors; the candidate is blocked as for compose) or `failed`. After a kill -9, [`resume`]
//! says from the journal entry and the service as it is now whether the update ever reached
//! Swarm; either way the record is finished and the service is never touched again.
//!
//! Everything here that decides is a plain function with table tests; the polling and the
//! journal steps go through [`SwarmApi`] and the state store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::compose::stack::{NAMESPACE_LABEL, stack_service};
use crate::compose::{EditOptions, ImageSite, PlanOptions, PlannedEdit};
use crate::config::{Config, ServiceSpec, SwarmMode};
use crate::engine::decide::{Candidate, Decision, Running};
use crate::engine::pass::{
    Pass, PassOptions, ServiceOutcome, ServiceResult, Work, held, pull_login,
};
use crate::engine::pipeline::Checked;
use crate::engine::recovery::Recovered;
use crate::engine::update::{UpdateReport, UpdateResult, with_tag};
use crate::engine::{failpoint, lock};
use crate::reference::ImageRef;
use crate::registry::{CheckCycle, check_service};
use crate::runtime::swarm::{
    Swarm, SwarmApi, SwarmService, SwarmTask, SwarmTaskState, UpdateSettings, UpdateState,
};
use crate::runtime::{Compose, ContainerRuntime, RegistryLogin};
use crate::state::{
    ChangeKind, ChangeOutcome, FileChange, ImageVersion, Recovery, SavedBytes, StateStore, Step,
    SwarmRun, UpdateIntent, sha256_hex,
};
use crate::telemetry::{Event, Stage, UpdateInfo};

/// The service label that says how many tasks Swarm updates at once (default 1).
pub const PARALLELISM_LABEL: &str = "lookout.swarm.parallelism";
/// The most tasks at once a label may ask for.
pub const MAX_PARALLELISM: u64 = 1_000;
/// The shortest `Monitor` lookout asks Swarm for.
pub const MIN_MONITOR: Duration = Duration::from_secs(1);
/// Added to every deadline for Swarm to schedule tasks and pull (at least).
pub const MIN_GRACE: Duration = Duration::from_secs(30);
/// How often an update in progress is looked at.
pub const POLL: Duration = Duration::from_millis(500);

/// The update config lookout asks Swarm for, or `None` when the service defines its own
/// (`UpdateConfig.FailureAction` set): lookout does not override an operator's choice. Pure.
pub fn update_settings(
    spec: &ServiceSpec,
    service: &SwarmService,
) -> Result<Option<UpdateSettings>, String> {
    if service.own_update_config {
        return Ok(None);
    }
    let parallelism = match service.labels.get(PARALLELISM_LABEL) {
        None => 1,
        Some(value) => value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=MAX_PARALLELISM).contains(n))
            .ok_or_else(|| {
                format!(
                    "Swarm service {:?}, label {PARALLELISM_LABEL}: expected how many tasks \
                     Swarm updates at once, a whole number from 1 to {MAX_PARALLELISM}, found \
                     {value:?}",
                    service.name
                )
            })?,
    };
    Ok(Some(UpdateSettings {
        parallelism,
        monitor: spec.health_stable.max(MIN_MONITOR),
        start_first: service.start_first_allowed,
    }))
}

/// How long lookout follows one update: for each batch of `parallelism` tasks, the health
/// timeout (start, healthcheck, monitor), plus `grace` for Swarm to schedule and pull. A
/// rollback takes as long again. Saturates. Pure.
pub fn update_deadline(
    health_timeout: Duration,
    replicas: Option<u64>,
    parallelism: u64,
    grace: Duration,
) -> Duration {
    let tasks = replicas.unwrap_or(1).max(1);
    let batches = tasks.div_ceil(parallelism.max(1));
    let per_batch = u32::try_from(batches).unwrap_or(u32::MAX);
    health_timeout
        .saturating_mul(per_batch)
        .saturating_mul(2)
        .saturating_add(grace)
}

/// The digest of `repo:tag@sha256:…` (`None` without one).
pub fn digest_of(image: &str) -> Option<&str> {
    image.rsplit_once('@').map(|(_, d)| d)
}

/// What [`judge`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// Swarm is still at work; look again.
    Wait,
    /// Every task the service wants runs the candidate.
    Updated,
    /// Swarm rolled back; the reason from the failed tasks' errors.
    RolledBack { reason: String },
    /// Swarm's rollback paused: the service may be down, an operator is needed.
    RollbackFailed { reason: String },
    /// The update paused, the service changed outside lookout, or the deadline passed.
    Failed { reason: String },
}

/// What one look at an update in progress saw.
#[derive(Debug, Clone, Copy)]
pub struct Look<'a> {
    pub service: &'a SwarmService,
    pub tasks: &'a [SwarmTask],
    /// The manifest digest lookout asked for.
    pub candidate_digest: &'a str,
    pub elapsed: Duration,
    pub deadline: Duration,
    /// Swarm's message when it began rolling back or paused, if lookout saw it.
    pub why: Option<&'a str>,
}

/// Decides from `UpdateStatus`, the spec's image and the tasks whether an update is done and
/// how it ended. Pure.
///
/// ```text
/// spec image \ UpdateStatus  completed          updating/none  paused  rollback_started  rollback_completed  rollback_paused
/// the candidate              Updated when the   Wait           Failed  Wait              Wait (an earlier    RollbackFailed
///                            tasks converged,                                            update's status)
///                            else Wait
/// another image              Failed (changed    Failed         Failed  Wait              RolledBack          RollbackFailed
///                            outside lookout)
/// ```
/// A `Wait` past the deadline is `Failed`; lookout leaves the service to Swarm.
pub fn judge(look: &Look<'_>) -> Judged {
    let service = look.service;
    let on_candidate = digest_of(&service.image) == Some(look.candidate_digest);
    let state = service.update_status.as_ref().and_then(|u| u.state);
    let message = service
        .update_status
        .as_ref()
        .map(|u| u.message.as_str())
        .filter(|m| !m.is_empty());
    let status_text = || {
        let word = state.map_or("none", UpdateState::as_str);
        message.map_or_else(|| word.to_owned(), |m| format!("{word}: {m}"))
    };
    let verdict = match (on_candidate, state) {
        (_, Some(UpdateState::RollbackPaused)) => Judged::RollbackFailed {
            reason: format!(
                "Swarm paused rolling back {:?} ({}); {}",
                service.name,
                status_text(),
                failure_reason(look).unwrap_or_else(|| "no task reported an error".into())
            ),
        },
        (true, Some(UpdateState::Paused)) => Judged::Failed {
            reason: format!(
                "Swarm paused the update of {:?} ({}); {}",
                service.name,
                status_text(),
                failure_reason(look).unwrap_or_else(|| "no task reported an error".into())
            ),
        },
        (true, Some(UpdateState::Completed) | None) if converged(look) => Judged::Updated,
        (true, _) => Judged::Wait,
        (false, Some(UpdateState::RollbackCompleted)) => Judged::RolledBack {
            reason: failure_reason(look)
                .unwrap_or_else(|| format!("Swarm rolled the update back ({})", status_text())),
        },
        (false, Some(UpdateState::RollbackStarted)) => Judged::Wait,
        (false, _) => Judged::Failed {
            reason: format!(
                "Swarm service {:?} now runs {} (UpdateStatus {}): it was changed outside \
                 lookout during the update",
                service.name,
                service.image,
                status_text()
            ),
        },
    };
    if verdict == Judged::Wait && look.elapsed >= look.deadline {
        return Judged::Failed {
            reason: format!(
                "Swarm had not finished updating {:?} after {}s (UpdateStatus {}); lookout \
                 leaves the service to Swarm",
                service.name,
                look.deadline.as_secs(),
                status_text()
            ),
        };
    }
    verdict
}

/// Every task the service wants running runs the candidate, as many as it has replicas.
fn converged(look: &Look<'_>) -> bool {
    let wanted: Vec<&SwarmTask> = look.tasks.iter().filter(|t| t.desired_running).collect();
    let ready = wanted.iter().all(|t| {
        t.state == SwarmTaskState::Running && digest_of(&t.image) == Some(look.candidate_digest)
    });
    let enough = u64::try_from(wanted.len()).unwrap_or(u64::MAX)
        >= look.service.replicas.unwrap_or(1).max(1);
    ready && enough
}

/// The errors of the tasks on the candidate that failed, distinct, at most three.
fn failure_reason(look: &Look<'_>) -> Option<String> {
    let mut errors: Vec<&str> = Vec::new();
    for task in look.tasks {
        let failed =
            task.state == SwarmTaskState::Failed || (task.error.is_some() && !task.desired_running);
        if !failed || digest_of(&task.image) != Some(look.candidate_digest) {
            continue;
        }
        if let Some(e) = task.error.as_deref()
            && !errors.contains(&e)
            && errors.len() < 3
        {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Some(format!("task failed: {}", errors.join("; ")));
    }
    let why = look.why?;
    let named = look
        .tasks
        .iter()
        .find(|t| why.contains(t.id.as_str()))
        .map(|t| {
            let mut s = format!("; task {} ended {}", t.id, t.state_text);
            if !t.message.is_empty() {
                s.push_str(&format!(" ({})", t.message));
            }
            if let Some(code) = t.exit_code.filter(|c| *c != 0) {
                s.push_str(&format!(", exit code {code}"));
            }
            s
        })
        .unwrap_or_default();
    Some(format!("Swarm: {why}{named}"))
}

/// What a starting lookout does about a Swarm update the journal holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The service's version is the one journaled before the update: Swarm was never asked.
    NeverReached,
    /// Swarm was asked: follow it (without touching it) and record what it did.
    Follow,
    /// The service is gone.
    Gone,
}

/// Pure: compares the journaled version with the service now.
pub fn resume(run: &SwarmRun, now: Option<&SwarmService>) -> Resume {
    match now {
        None => Resume::Gone,
        Some(s) if s.version == run.version_before && s.image == run.image_before => {
            Resume::NeverReached
        }
        Some(_) => Resume::Follow,
    }
}

/// The journal's outcome for a verdict (`None` for [`Judged::Wait`]).
fn outcome_of(verdict: &Judged) -> Option<ChangeOutcome> {
    Some(match verdict {
        Judged::Wait => return None,
        Judged::Updated => ChangeOutcome::Committed,
        Judged::RolledBack { reason } => ChangeOutcome::RolledBack {
            reason: reason.clone(),
        },
        Judged::RollbackFailed { reason } => ChangeOutcome::RollbackFailed {
            reason: reason.clone(),
        },
        Judged::Failed { reason } => ChangeOutcome::Abandoned {
            reason: reason.clone(),
        },
    })
}

/// The update's result for a verdict.
fn result_of(verdict: Judged) -> UpdateResult {
    match verdict {
        Judged::Updated => UpdateResult::Updated,
        Judged::RolledBack { reason } => UpdateResult::RolledBack {
            stage: Stage::Health,
            reason,
        },
        Judged::RollbackFailed { reason } => UpdateResult::RollbackFailed {
            stage: Stage::Rollback,
            reason,
        },
        Judged::Failed { reason } => UpdateResult::Failed {
            stage: Stage::Health,
            reason,
        },
        Judged::Wait => UpdateResult::Failed {
            stage: Stage::Health,
            reason: "lookout stopped following the update".into(),
        },
    }
}

/// Looks at the update until [`judge`] decides (every [`POLL`]). An engine error is retried
/// until the deadline.
pub async fn follow(
    api: &dyn SwarmApi,
    name: &str,
    candidate_digest: &str,
    deadline: Duration,
) -> Judged {
    let start = Instant::now();
    let mut last_error = None;
    // Swarm's message when the rollback or pause began (it names the task that failed); the
    // status says only `rollback completed` once it is done.
    let mut why: Option<String> = None;
    loop {
        let elapsed = start.elapsed();
        let looked = match api.service(name).await {
            Ok(Some(service)) => match api.tasks(&service.id).await {
                Ok(tasks) => Some({
                    let status = service.update_status.as_ref();
                    if why.is_none()
                        && status.and_then(|u| u.state).is_some_and(|s| {
                            matches!(
                                s,
                                UpdateState::RollbackStarted
                                    | UpdateState::RollbackPaused
                                    | UpdateState::Paused
                            )
                        })
                    {
                        why = status.map(|u| u.message.clone()).filter(|m| !m.is_empty());
                    }
                    judge(&Look {
                        service: &service,
                        tasks: &tasks,
                        candidate_digest,
                        elapsed,
                        deadline,
                        why: why.as_deref(),
                    })
                }),
                Err(e) => {
                    last_error = Some(e.to_string());
                    None
                }
            },
            Ok(None) => {
                return Judged::Failed {
                    reason: format!("Swarm service {name:?} was removed during the update"),
                };
            }
            Err(e) => {
                last_error = Some(e.to_string());
                None
            }
        };
        match looked {
            Some(Judged::Wait) => {}
            Some(verdict) => return verdict,
            None if elapsed >= deadline => {
                return Judged::Failed {
                    reason: format!(
                        "cannot follow the update of Swarm service {name:?}: {}",
                        last_error.unwrap_or_default()
                    ),
                };
            }
            None => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

/// An update of one Swarm service a check decided on.
#[derive(Debug, Clone)]
pub struct SwarmRequest {
    pub spec: ServiceSpec,
    pub service: SwarmService,
    pub candidate: Candidate,
    pub login: Option<RegistryLogin>,
    pub settings: Option<UpdateSettings>,
    pub actor: String,
}

impl SwarmRequest {
    /// The image value Swarm gets: `repo:tag@digest`.
    pub fn image(&self) -> String {
        let familiar = self.candidate.reference.familiar();
        let plain = familiar.split('@').next().unwrap_or_default();
        format!("{plain}@{}", self.candidate.manifest_digest)
    }

    fn deadline(&self, grace: Duration) -> Duration {
        let parallelism = self.settings.as_ref().map_or(1, |s| s.parallelism);
        update_deadline(
            self.spec.health_timeout,
            self.service.replicas,
            parallelism,
            grace,
        )
    }
}

/// The running reference of a Swarm service, from its spec's image.
pub fn running_of(service: &SwarmService) -> Result<Running, String> {
    let reference = ImageRef::parse(&service.image).map_err(|e| {
        format!(
            "Swarm service {:?} runs {:?}, which is not an image reference lookout can follow: {e}",
            service.name, service.image
        )
    })?;
    let digest = reference.digest().unwrap_or_default().to_owned();
    Ok(Running {
        repo_digests: if digest.is_empty() {
            Vec::new()
        } else {
            vec![format!("{}@{digest}", reference.name())]
        },
        image_id: digest,
        reference,
    })
}

fn version_of(reference: &ImageRef, digest: &str) -> ImageVersion {
    ImageVersion {
        image: reference.name(),
        tag: reference.tag().map(str::to_owned),
        digest: digest.to_owned(),
    }
}

/// The journal's file record of a Swarm update: no file changes.
fn no_file(name: &str) -> FileChange {
    FileChange {
        path: PathBuf::from(format!("<swarm service {name}>")),
        old_sha256: sha256_hex(b""),
        new_sha256: sha256_hex(b""),
        old_bytes: SavedBytes::new(b""),
        created: false,
    }
}

/// Plans the change of a Swarm service's image in its `stack_file` to `tag` (and `digest`
/// with `pin_digest`), with the compose editor: `None` without a stack file, or when the file
/// needs no change (a digest followed without pinning). The stack's service is the Swarm
/// service's name less its stack's name (label `com.docker.stack.namespace`), and the file's
/// value must name the repository the service runs.
pub fn plan_stack_edit(
    spec: &ServiceSpec,
    service: &SwarmService,
    tag: &str,
    digest: &str,
) -> Result<Option<PlannedEdit>, String> {
    let Some(file) = &spec.stack_file else {
        return Ok(None);
    };
    let in_file = |e: String| format!("stack_file {}: {e}", file.display());
    let name = stack_service(
        &service.name,
        service.labels.get(NAMESPACE_LABEL).map(String::as_str),
    )
    .map_err(in_file)?;
    let running = running_of(service)?;
    let pin = spec.pin_digest.then(|| digest.to_owned());
    if running.reference.tag() == Some(tag) && pin.is_none() {
        return Ok(None);
    }
    let text = crate::config::read_text(file, crate::config::MAX_FILE_BYTES)
        .map_err(|e| in_file(e.to_string()))?;
    // The value as the file writes it, when it is written out; Swarm's spec otherwise (the
    // editor then finds the variable or the part to change).
    let written = match crate::compose::locate(&text, name).map_err(|e| in_file(e.to_string()))? {
        ImageSite::Inline { value, .. } => {
            let theirs = ImageRef::parse(&value).map(|r| r.name());
            if theirs.as_ref() != Ok(&running.reference.name()) {
                return Err(in_file(format!(
                    "service {name:?} has image {value:?}, but Swarm service {:?} runs {}; \
                     lookout changes only the image the service runs",
                    service.name,
                    running.reference.name()
                )));
            }
            value
        }
        _ => service.image.clone(),
    };
    let opts = PlanOptions {
        edit: EditOptions {
            allow_anchor_group: spec.group,
            pin_digest: pin,
        },
        env_file: None,
    };
    let plan = crate::compose::plan_set_image(file, name, &with_tag(&written, tag), &opts)
        .map_err(|e| in_file(e.to_string()))?;
    Ok((!plan.is_noop()).then_some(plan))
}

/// The journal's record of a stack file edit (old bytes kept, as for a compose file).
fn stack_change(edit: &PlannedEdit) -> FileChange {
    FileChange {
        path: edit.target().to_path_buf(),
        old_sha256: sha256_hex(edit.previous_bytes()),
        new_sha256: sha256_hex(edit.new_bytes()),
        old_bytes: SavedBytes::new(edit.previous_bytes()),
        created: edit.created(),
    }
}

/// Puts the stack file's old bytes back after an update Swarm did not complete; the reason
/// grows by what could not be done.
fn restore_stack(edit: Option<&PlannedEdit>, reason: &mut String) {
    let Some(edit) = edit else { return };
    if let Err(e) = edit.restore() {
        tracing::error!(file = %edit.target().display(), error = %e, "cannot restore the stack file");
        reason.push_str(&format!(
            "; the stack file {} could not be restored to its old bytes: {e}",
            edit.target().display()
        ));
    }
}

/// What recovery does with the stack file of an interrupted Swarm update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackFile {
    /// No stack file, or it already holds what the outcome wants.
    Keep,
    /// It holds lookout's new bytes and Swarm did not complete the update: the old bytes back.
    Restore,
    /// It holds other bytes than the outcome wants (someone else changed it): left alone.
    Conflict,
}

/// Pure: the file as journaled, its hash now, and whether the update was committed. The edit
/// is written before Swarm is asked, so a committed update's file holds the new bytes.
pub fn stack_file_after(
    change: &FileChange,
    now_sha256: Option<&str>,
    committed: bool,
) -> StackFile {
    if change.old_sha256 == change.new_sha256 {
        return StackFile::Keep; // No stack file edit (`no_file`).
    }
    let now = now_sha256.unwrap_or_default();
    match (
        committed,
        now == change.new_sha256,
        now == change.old_sha256,
    ) {
        (true, true, _) | (false, _, true) => StackFile::Keep,
        (false, true, _) => StackFile::Restore,
        _ => StackFile::Conflict,
    }
}

/// Settles the stack file of a recovered Swarm update ([`stack_file_after`]); says what it did.
fn settle_stack_file(change: &FileChange, committed: bool) -> Option<String> {
    let bytes = crate::config::read_file(&change.path, crate::config::MAX_FILE_BYTES).ok();
    let path = change.path.display();
    match stack_file_after(
        change,
        bytes.as_deref().map(sha256_hex).as_deref(),
        committed,
    ) {
        StackFile::Keep => None,
        StackFile::Conflict => Some(format!(
            "the stack file {path} does not hold the bytes this outcome wants (changed by \
             someone else?); lookout leaves it alone"
        )),
        StackFile::Restore => {
            let Some(old) = change.old_bytes.to_bytes() else {
                return Some(format!(
                    "the journal's copy of the stack file {path} is damaged; restore it by hand"
                ));
            };
            let current = bytes.unwrap_or_default();
            Some(
                match crate::compose::restore(&change.path, &old, &current) {
                    Ok(()) => format!("restored the old bytes of the stack file {path}"),
                    Err(e) => format!("cannot restore the old bytes of the stack file {path}: {e}"),
                },
            )
        }
    }
}

/// Carries out a Swarm update: journal, the stack file's edit (with `stack_file`), one service
/// update, follow, finish the record. The stack file keeps the new bytes only when Swarm
/// completed the update; otherwise its old bytes are put back.
pub async fn update(
    api: &dyn SwarmApi,
    store: &Mutex<StateStore>,
    now: &(dyn Fn() -> jiff::Timestamp + Send + Sync),
    req: &SwarmRequest,
    grace: Duration,
) -> UpdateReport {
    let started = Instant::now();
    let image = req.image();
    let running = running_of(&req.service);
    let mut report = UpdateReport {
        service: req.spec.name.clone(),
        from: req.service.image.clone(),
        to: req.candidate.reference.familiar(),
        digest: req.candidate.manifest_digest.clone(),
        result: UpdateResult::Updated,
        duration: Duration::ZERO,
        phases: None,
    };
    let from = match &running {
        Ok(r) => version_of(&r.reference, &r.image_id),
        Err(e) => {
            report.result = UpdateResult::Failed {
                stage: Stage::Plan,
                reason: e.clone(),
            };
            return report;
        }
    };
    let edit = match plan_stack_edit(
        &req.spec,
        &req.service,
        req.candidate.reference.tag().unwrap_or("latest"),
        &req.candidate.manifest_digest,
    ) {
        Ok(edit) => edit,
        Err(reason) => {
            report.result = UpdateResult::Failed {
                stage: Stage::Plan,
                reason,
            };
            return report;
        }
    };
    let intent = UpdateIntent {
        service: req.spec.name.clone(),
        kind: ChangeKind::Update,
        actor: req.actor.clone(),
        from,
        to: version_of(&req.candidate.reference, &req.candidate.manifest_digest),
        file: edit
            .as_ref()
            .map_or_else(|| no_file(&req.service.name), stack_change),
        compose: None,
        swarm: Some(SwarmRun {
            service: req.service.name.clone(),
            version_before: req.service.version,
            image_before: req.service.image.clone(),
            image_after: image.clone(),
        }),
    };
    let begun = lock(store).begin_update(intent, now());
    if let Err(e) = begun {
        report.result = UpdateResult::Failed {
            stage: Stage::Journal,
            reason: e.to_string(),
        };
        return report;
    }
    failpoint::hit("swarm_after_journal");
    // A step that fails before Swarm changed anything: the journal entry is abandoned and the
    // update reported failed at `stage`.
    let abandon = |mut report: UpdateReport, stage: Stage, reason: String| {
        finish(
            store,
            now,
            &req.spec.name,
            ChangeOutcome::Abandoned {
                reason: reason.clone(),
            },
        );
        report.result = UpdateResult::Failed { stage, reason };
        report.duration = started.elapsed();
        report
    };
    if let Some(edit) = &edit {
        if let Err(e) = edit.apply() {
            let reason = format!("cannot change the stack file: {e}");
            return abandon(report, Stage::Edit, reason);
        }
        failpoint::hit("swarm_after_stack_edit");
    }
    let posted = api
        .update_image(
            &req.service.name,
            &image,
            req.settings.as_ref(),
            req.login.as_ref(),
        )
        .await;
    let verdict = match posted {
        Err(e) => {
            let mut reason = e.to_string();
            restore_stack(edit.as_ref(), &mut reason);
            return abandon(report, Stage::Up, reason);
        }
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!(service = %req.spec.name, warning = %w, "Swarm's answer to the update");
            }
            if let Err(e) = lock(store).advance(&req.spec.name, Step::HealthGate, now()) {
                tracing::warn!(error = %e, "cannot journal the Swarm update's step");
            }
            failpoint::hit("swarm_during_update");
            follow(
                api,
                &req.service.name,
                &req.candidate.manifest_digest,
                req.deadline(grace),
            )
            .await
        }
    };
    let verdict = match verdict {
        Judged::Updated => Judged::Updated,
        Judged::RolledBack { mut reason } => {
            restore_stack(edit.as_ref(), &mut reason);
            Judged::RolledBack { reason }
        }
        Judged::RollbackFailed { mut reason } => {
            restore_stack(edit.as_ref(), &mut reason);
            Judged::RollbackFailed { reason }
        }
        Judged::Failed { mut reason } => {
            restore_stack(edit.as_ref(), &mut reason);
            Judged::Failed { reason }
        }
        Judged::Wait => Judged::Wait,
    };
    if let Some(outcome) = outcome_of(&verdict) {
        finish(store, now, &req.spec.name, outcome);
    }
    report.result = result_of(verdict);
    report.duration = started.elapsed();
    report
}

fn finish(
    store: &Mutex<StateStore>,
    now: &(dyn Fn() -> jiff::Timestamp + Send + Sync),
    service: &str,
    outcome: ChangeOutcome,
) {
    if let Err(e) = lock(store).finish(service, outcome, now()) {
        tracing::error!(%service, error = %e, "cannot close the journal entry of a Swarm update");
    }
}

/// Finishes one interrupted Swarm update from the journal: follows Swarm (never asks it to do
/// anything) and records the outcome. `None` when the entry is not a Swarm update.
pub async fn recover_one(
    api: &dyn SwarmApi,
    store: &Mutex<StateStore>,
    now: &(dyn Fn() -> jiff::Timestamp + Send + Sync),
    entry: &crate::state::JournalEntry,
    health_timeout: Duration,
    grace: Duration,
) -> Option<(ChangeOutcome, String)> {
    let run = entry.intent.swarm.as_ref()?;
    let service = &entry.intent.service;
    let seen = match api.service(&run.service).await {
        Ok(seen) => seen,
        Err(e) => {
            tracing::warn!(%service, error = %e, "cannot look at the Swarm service of an interrupted update; the journal entry stays");
            return None;
        }
    };
    let (outcome, detail) = match resume(run, seen.as_ref()) {
        Resume::Gone => {
            let why = format!("Swarm service {:?} is gone", run.service);
            (
                ChangeOutcome::Abandoned {
                    reason: why.clone(),
                },
                why,
            )
        }
        Resume::NeverReached => {
            let why = "lookout stopped before Swarm was asked; the service was not changed";
            (ChangeOutcome::Abandoned { reason: why.into() }, why.into())
        }
        // A `lookout rollback` Swarm was asked for: its end is `rollback_completed`.
        Resume::Follow if entry.intent.kind == ChangeKind::Rollback => {
            let replicas = seen.as_ref().and_then(|s| s.replicas);
            let deadline = update_deadline(health_timeout, replicas, 1, grace);
            match follow_rollback(api, &run.service, &entry.intent.to.digest, deadline).await {
                Ok(()) => (
                    ChangeOutcome::Committed,
                    "Swarm's rollback, followed to its end: completed".to_owned(),
                ),
                Err(reason) => (
                    ChangeOutcome::Abandoned {
                        reason: reason.clone(),
                    },
                    reason,
                ),
            }
        }
        Resume::Follow => {
            let replicas = seen.as_ref().and_then(|s| s.replicas);
            let deadline = update_deadline(health_timeout, replicas, 1, grace);
            let verdict = follow(api, &run.service, &entry.intent.to.digest, deadline).await;
            let detail = format!("Swarm's update, followed to its end: {verdict:?}");
            (outcome_of(&verdict)?, detail)
        }
    };
    let mut detail = detail;
    if let Some(note) = settle_stack_file(&entry.intent.file, outcome == ChangeOutcome::Committed) {
        tracing::warn!(%service, %note, "the stack file of an interrupted Swarm update");
        detail = format!("{detail}; {note}");
    }
    finish(store, now, service, outcome.clone());
    Some((outcome, detail))
}

/// Swarm's own rollback to the service's previous spec, followed to its end.
pub async fn rollback(
    api: &dyn SwarmApi,
    name: &str,
    target_digest: &str,
    deadline: Duration,
) -> Result<(), String> {
    api.rollback(name).await.map_err(|e| e.to_string())?;
    failpoint::hit("swarm_during_rollback");
    follow_rollback(api, name, target_digest, deadline).await
}

/// Follows a rollback Swarm was asked for until `rollback_completed` with every task on
/// `target_digest`, `rollback_paused`, or the deadline.
async fn follow_rollback(
    api: &dyn SwarmApi,
    name: &str,
    target_digest: &str,
    deadline: Duration,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let service = api
            .service(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("Swarm service {name:?} was removed during the rollback"))?;
        let tasks = api.tasks(&service.id).await.map_err(|e| e.to_string())?;
        let state = service.update_status.as_ref().and_then(|u| u.state);
        let look = Look {
            service: &service,
            tasks: &tasks,
            candidate_digest: target_digest,
            elapsed: start.elapsed(),
            deadline,
            why: None,
        };
        match state {
            Some(UpdateState::RollbackCompleted) if converged(&look) => return Ok(()),
            Some(UpdateState::RollbackPaused) => {
                return Err(format!(
                    "Swarm paused the rollback of {name:?}: {}",
                    failure_reason(&look).unwrap_or_default()
                ));
            }
            _ if look.elapsed >= deadline => {
                return Err(format!(
                    "Swarm had not finished rolling back {name:?} after {}s",
                    deadline.as_secs()
                ));
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

/// `lookout rollback` of a Swarm service: Swarm's own rollback to the previous spec, when the
/// service still runs what lookout's last update `last` installed; journaled and recorded like
/// a compose rollback. `Err` when nothing was asked of Swarm.
pub async fn rollback_service(
    api: &dyn SwarmApi,
    store: &Mutex<StateStore>,
    now: &(dyn Fn() -> jiff::Timestamp + Send + Sync),
    spec: &ServiceSpec,
    name: &str,
    last: &crate::state::HistoryEntry,
    actor: &str,
) -> Result<UpdateReport, String> {
    let started = Instant::now();
    let service = api
        .service(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no Swarm service {name:?}"))?;
    if digest_of(&service.image) != Some(last.to.digest.as_str()) {
        return Err(format!(
            "Swarm service {name:?} runs {}, not {} which lookout's last update installed; Swarm's \
             previous spec is not what lookout would roll back to, so nothing was changed",
            service.image, last.to
        ));
    }
    // The stack file goes back to the tag Swarm's previous spec runs, as an update would.
    let edit = plan_stack_edit(
        spec,
        &service,
        last.from.tag.as_deref().unwrap_or("latest"),
        &last.from.digest,
    )?;
    let intent = UpdateIntent {
        service: spec.name.clone(),
        kind: ChangeKind::Rollback,
        actor: actor.to_owned(),
        from: last.to.clone(),
        to: last.from.clone(),
        file: edit.as_ref().map_or_else(|| no_file(name), stack_change),
        compose: None,
        swarm: Some(SwarmRun {
            service: name.to_owned(),
            version_before: service.version,
            image_before: service.image.clone(),
            image_after: last.from.to_string(),
        }),
    };
    lock(store)
        .begin_update(intent, now())
        .map_err(|e| e.to_string())?;
    let deadline = update_deadline(spec.health_timeout, service.replicas, 1, MIN_GRACE);
    let done = match edit.as_ref().map(PlannedEdit::apply).transpose() {
        Err(e) => Err(format!("cannot change the stack file: {e}")),
        Ok(_) => rollback(api, name, &last.from.digest, deadline)
            .await
            .map_err(|mut reason| {
                restore_stack(edit.as_ref(), &mut reason);
                reason
            }),
    };
    let (outcome, result) = match &done {
        Ok(()) => (ChangeOutcome::Committed, UpdateResult::Updated),
        Err(reason) => (
            ChangeOutcome::Abandoned {
                reason: reason.clone(),
            },
            UpdateResult::Failed {
                stage: Stage::Rollback,
                reason: reason.clone(),
            },
        ),
    };
    finish(store, now, &spec.name, outcome);
    Ok(UpdateReport {
        service: spec.name.clone(),
        from: service.image,
        to: last.from.to_string(),
        digest: last.from.digest.clone(),
        result,
        duration: started.elapsed(),
        phases: None,
    })
}

/// Every service of a Swarm manager as a lookout service, admitted and acted on as
/// `[discovery]` admits containers: its policy from its `lookout.*` labels; left out by
/// `lookout.enable=false`, `lookout.action=ignore`, `discovery.scope` (the scope label) and
/// `discovery.require_enable_label`; updated with `lookout.action=update`, or without an action
/// label when `discovery.default_action = "update"` (otherwise watched and reported). A service
/// a `[[services]]` entry names is left to that entry; one whose labels are wrong is left out
/// with its problems.
pub fn discovered(
    services: &[SwarmService],
    config: &crate::config::Config,
) -> (Vec<ServiceSpec>, Vec<String>) {
    use crate::config::labels;
    let mut specs = Vec::new();
    let mut problems = Vec::new();
    for service in services {
        if config.services.iter().any(|s| {
            s.swarm_service.as_deref() == Some(service.name.as_str()) || s.name == service.name
        }) {
            continue;
        }
        let mut own: HashMap<String, String> = service.labels.clone();
        own.remove(PARALLELISM_LABEL);
        let read = labels::read(&own);
        if read
            .action
            .as_ref()
            .is_some_and(|a| a.value == labels::Action::Ignore)
            || crate::discovery::excluded(&read, &config.discovery).is_some()
        {
            continue;
        }
        let action = read
            .action
            .as_ref()
            .map_or(config.discovery.default_action, |a| a.value);
        let update = action == labels::Action::Update;
        let image = match ImageRef::parse(&service.image) {
            Ok(r) => r.with_tag(r.tag().unwrap_or("latest")),
            Err(e) => {
                problems.push(format!("Swarm service {:?}: {e}", service.name));
                continue;
            }
        };
        let mut base = serde_json::Map::new();
        base.insert("name".into(), service.name.clone().into());
        base.insert(
            "image".into(),
            format!("{}:{}", image.name(), image.tag().unwrap_or("latest")).into(),
        );
        base.insert("swarm_service".into(), service.name.clone().into());
        base.insert("enabled".into(), update.into());
        let layer = labels::merge(&[&read.own, &read.foreign]);
        match labels::service_from_labels(&service.name, &base, &layer, config) {
            Ok(spec) => specs.push(spec),
            Err(found) => problems.extend(found.into_iter().map(|p| {
                format!(
                    "Swarm service {:?}: {}: {}",
                    service.name, p.path, p.message
                )
            })),
        }
    }
    (specs, problems)
}

/// The Swarm manager to drive, when the configuration asks for Swarm (`[swarm] enabled`, or a
/// `swarm_service`) and the engine is an active manager; `None` otherwise (said in the log).
pub async fn connect(config: &Config) -> Option<Arc<dyn SwarmApi>> {
    let wanted = config.swarm.discovers(&config.discovery)
        || config.services.iter().any(|s| s.swarm_service.is_some());
    if !wanted {
        return None;
    }
    let swarm = match Swarm::connect().await {
        Ok(swarm) => swarm,
        Err(e) => {
            tracing::warn!(error = %e, "cannot reach the Docker engine for Swarm services");
            return None;
        }
    };
    match swarm.is_manager().await {
        Ok(true) => Some(Arc::new(swarm)),
        Ok(false) => {
            if config.swarm == SwarmMode::On
                || config.services.iter().any(|s| s.swarm_service.is_some())
            {
                tracing::warn!(
                    "the configuration names Swarm services, but this Docker engine is not a \
                     Swarm manager; run lookout on a manager node"
                );
            }
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether this engine is a Swarm manager");
            None
        }
    }
}

/// The configuration with the Swarm services [`discovered`] admits added, when `[swarm]
/// enabled` and `[discovery]` ask for them ([`SwarmMode::discovers`]) and the engine is a
/// manager (one service list per pass). A listing that fails is logged and the pass goes on
/// with the configured services.
pub async fn with_discovered(api: Option<&dyn SwarmApi>, config: Arc<Config>) -> Arc<Config> {
    let Some(api) = api else {
        return config;
    };
    if !config.swarm.discovers(&config.discovery) {
        return config;
    }
    let services = match api.services().await {
        Ok(services) => services,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the Swarm services; checking the configured ones");
            return config;
        }
    };
    let (mut specs, mut problems) = discovered(&services, &config);
    keep_valid_stack_files(&mut specs, &mut problems);
    for problem in problems {
        tracing::warn!(%problem, "Swarm service left out");
    }
    if specs.is_empty() {
        return config;
    }
    let mut with = (*config).clone();
    with.services.extend(specs);
    Arc::new(with)
}

/// Leaves out the discovered services whose `lookout.stack_file` label fails the check a
/// configured `stack_file` gets at load (reads each file), with the problem.
fn keep_valid_stack_files(specs: &mut Vec<ServiceSpec>, problems: &mut Vec<String>) {
    specs.retain(|spec| {
        let (Some(file), Some(name)) = (&spec.stack_file, &spec.swarm_service) else {
            return true;
        };
        match crate::compose::stack::check(file, name) {
            Ok(()) => true,
            Err(e) => {
                problems.push(format!(
                    "Swarm service {name:?}, label lookout.stack_file: {e}"
                ));
                false
            }
        }
    });
}

/// Finishes every Swarm update of the journal (see [`recover_one`]). `spec` finds a service's
/// configuration (for its health timeout); `grace` is added to the deadline.
pub async fn recover_all(
    api: &dyn SwarmApi,
    store: &Mutex<StateStore>,
    now: &(dyn Fn() -> jiff::Timestamp + Send + Sync),
    entries: &[crate::state::JournalEntry],
    spec: &(dyn Fn(&str) -> Option<ServiceSpec> + Sync),
    grace: Duration,
) -> Vec<Recovered> {
    let mut out = Vec::new();
    for entry in entries.iter().filter(|e| e.intent.swarm.is_some()) {
        let service = entry.intent.service.clone();
        let health_timeout = spec(&service).map_or(Duration::from_secs(300), |s| s.health_timeout);
        let Some((outcome, detail)) =
            recover_one(api, store, now, entry, health_timeout, grace).await
        else {
            continue;
        };
        tracing::warn!(%service, %detail, "finished an interrupted Swarm update");
        out.push(Recovered {
            service,
            decision: match outcome {
                ChangeOutcome::Committed => Recovery::Commit,
                ChangeOutcome::RolledBack { .. } | ChangeOutcome::RollbackFailed { .. } => {
                    Recovery::RollBack
                }
                ChangeOutcome::Abandoned { .. } => Recovery::NothingToDo,
            },
            detail,
            outcome: Some(outcome),
            closed: true,
        });
    }
    out
}

impl<R: ContainerRuntime, C: Compose> Pass<'_, R, C> {
    /// The check of a Swarm service: what its spec runs, the registry, the decision.
    pub(super) async fn check_swarm(
        &self,
        cycle: &CheckCycle,
        spec: &ServiceSpec,
        name: &str,
        opts: &PassOptions,
    ) -> Result<Checked<Work>, ServiceOutcome> {
        let mut report = ServiceOutcome::new(&spec.name, ServiceResult::CheckFailed);
        let Some(api) = self.swarm else {
            return Err(report.with_reason(format!(
                "Swarm service {name:?}: this Docker engine is not a Swarm manager; run lookout \
                 on a manager node (docker info: Swarm active, is manager)"
            )));
        };
        let service = match api.service(name).await {
            Ok(Some(service)) => service,
            Ok(None) => {
                report.result = ServiceResult::Skipped;
                return Err(report.with_reason(format!("no Swarm service {name:?}")));
            }
            Err(e) => return Err(report.with_reason(e.to_string())),
        };
        let running = running_of(&service).map_err(|e| report.clone().with_reason(e))?;
        report.from = Some(running.reference.familiar());
        let check = check_service(cycle, spec, &running.reference)
            .await
            .map_err(|e| report.clone().with_reason(e.to_string()))?;
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
                self.announce_swarm(spec, &report, &candidate);
                Ok(Checked::Done(held(report, candidate, hold)))
            }
            Decision::Update {
                candidate, reason, ..
            } => {
                self.announce_swarm(spec, &report, &candidate);
                report.to = Some(candidate.reference.familiar());
                report.digest = Some(candidate.manifest_digest.clone());
                if opts.dry_run {
                    report.result = ServiceResult::UpdateAvailable;
                    return Ok(Checked::Done(
                        report.with_reason(format!("would update: {reason}")),
                    ));
                }
                let settings =
                    update_settings(spec, &service).map_err(|e| report.clone().with_reason(e))?;
                let login = pull_login(cycle, spec, &candidate.reference)
                    .await
                    .map_err(|e| report.clone().with_reason(e.to_string()))?;
                let request = SwarmRequest {
                    spec: spec.clone(),
                    service,
                    candidate,
                    login,
                    settings,
                    actor: opts.actor.clone(),
                };
                Ok(Checked::Apply {
                    report,
                    work: Work::Swarm(Box::new(request), reason),
                })
            }
        }
    }

    /// Carries out a Swarm update a check decided on, with the same events as a compose update.
    pub(super) async fn apply_swarm(
        &self,
        request: SwarmRequest,
        mut report: ServiceOutcome,
        reason: String,
    ) -> ServiceOutcome {
        let Some(api) = self.swarm else {
            report.result = ServiceResult::Failed;
            return report.with_reason("this Docker engine is no longer a Swarm manager".into());
        };
        match api.service(&request.service.name).await {
            Ok(Some(now)) if now.version == request.service.version => {}
            Ok(_) => {
                report.result = ServiceResult::Skipped;
                return report.with_reason(
                    "the Swarm service changed while this update waited for its turn; the next \
                     check decides again"
                        .into(),
                );
            }
            Err(e) => {
                report.result = ServiceResult::Failed;
                return report.with_reason(e.to_string());
            }
        }
        let mut info = swarm_info(
            &request.spec,
            &request.service.image,
            &request.candidate,
            (self.now)(),
        );
        self.telemetry.emit(Event::UpdateStarted(info.clone()));
        let done = update(
            api,
            self.store,
            self.now,
            &request,
            self.config.compose_timeout,
        )
        .await;
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
        report.stage = done.result.stage().map(|s| s.as_str().to_owned());
        report.reason = Some(match &done.result {
            UpdateResult::Updated => reason,
            other => other.reason().unwrap_or_default().to_owned(),
        });
        report
    }

    /// `update_available`, once per service and candidate digest.
    fn announce_swarm(&self, spec: &ServiceSpec, report: &ServiceOutcome, candidate: &Candidate) {
        let mut announced = lock(self.announced);
        if announced.get(&spec.name) == Some(&candidate.manifest_digest) {
            return;
        }
        announced.insert(spec.name.clone(), candidate.manifest_digest.clone());
        let from = report.from.clone().unwrap_or_default();
        let mut info = swarm_info(spec, &from, candidate, (self.now)());
        info.old_digest = None;
        self.telemetry.emit(Event::UpdateAvailable(info));
    }
}

/// The event facts of a Swarm update: the Swarm service stands where the compose service does,
/// the stack file (if configured) where the compose file does.
fn swarm_info(
    spec: &ServiceSpec,
    from: &str,
    candidate: &Candidate,
    at: jiff::Timestamp,
) -> UpdateInfo {
    UpdateInfo {
        service: spec.name.clone(),
        compose_service: spec.swarm_service.clone().unwrap_or_default(),
        compose_file: spec.stack_file.clone().unwrap_or_default(),
        old_image: from.to_owned(),
        new_image: candidate.reference.familiar(),
        old_digest: digest_of(from).map(str::to_owned),
        new_digest: Some(candidate.manifest_digest.clone()),
        started_at: at,
        duration: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::swarm::UpdateStatus;

    const OLD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const NEW: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn service(digest: &str, state: Option<UpdateState>) -> SwarmService {
        SwarmService {
            id: "id1".into(),
            name: "web".into(),
            version: 10,
            labels: HashMap::new(),
            image: format!("reg:5000/app:1.0.0@{digest}"),
            replicas: Some(3),
            own_update_config: false,
            start_first_allowed: true,
            update_status: state.map(|state| UpdateStatus {
                state: Some(state),
                message: "msg".into(),
            }),
        }
    }

    fn task(id: &str, digest: &str, state: SwarmTaskState, desired: bool) -> SwarmTask {
        SwarmTask {
            id: id.into(),
            state,
            state_text: String::new(),
            desired_running: desired,
            image: format!("reg:5000/app:1.1.0@{digest}"),
            error: (state == SwarmTaskState::Failed).then(|| format!("{id}: unhealthy container")),
            message: String::new(),
            exit_code: None,
            version: 1,
        }
    }

    fn running3(digest: &str) -> Vec<SwarmTask> {
        (1..=3)
            .map(|i| task(&format!("t{i}"), digest, SwarmTaskState::Running, true))
            .collect()
    }

    fn judged(service: &SwarmService, tasks: &[SwarmTask], elapsed: u64) -> Judged {
        judge(&Look {
            service,
            tasks,
            candidate_digest: NEW,
            elapsed: Duration::from_secs(elapsed),
            deadline: Duration::from_secs(60),
            why: None,
        })
    }

    #[test]
    fn the_judge_follows_update_status_the_spec_and_the_tasks() {
        use SwarmTaskState::*;
        use UpdateState::*;
        let mut failed = running3(OLD);
        failed.push(task("bad", NEW, Failed, false));
        let mut two_new = running3(NEW);
        two_new.pop();
        let mut mixed = running3(NEW);
        mixed.push(task("old", OLD, Running, true));
        let cases: Vec<(&str, SwarmService, Vec<SwarmTask>, u64, &str)> = vec![
            (
                "completed, all new",
                service(NEW, Some(Completed)),
                running3(NEW),
                5,
                "updated",
            ),
            (
                "no status, all new",
                service(NEW, None),
                running3(NEW),
                5,
                "updated",
            ),
            (
                "completed, one short",
                service(NEW, Some(Completed)),
                two_new,
                5,
                "wait",
            ),
            (
                "completed, an old one wanted",
                service(NEW, Some(Completed)),
                mixed,
                5,
                "wait",
            ),
            (
                "updating",
                service(NEW, Some(Updating)),
                running3(OLD),
                5,
                "wait",
            ),
            (
                "updating past the deadline",
                service(NEW, Some(Updating)),
                running3(OLD),
                60,
                "failed",
            ),
            (
                "stale rollback status",
                service(NEW, Some(RollbackCompleted)),
                running3(OLD),
                5,
                "wait",
            ),
            (
                "rolling back",
                service(OLD, Some(RollbackStarted)),
                running3(OLD),
                5,
                "wait",
            ),
            (
                "rolled back",
                service(OLD, Some(RollbackCompleted)),
                failed.clone(),
                5,
                "rolled_back",
            ),
            (
                "rollback paused",
                service(OLD, Some(RollbackPaused)),
                failed.clone(),
                5,
                "rollback_failed",
            ),
            (
                "paused",
                service(NEW, Some(Paused)),
                failed.clone(),
                5,
                "failed",
            ),
            (
                "changed outside",
                service(OLD, Some(Completed)),
                running3(OLD),
                5,
                "failed",
            ),
        ];
        for (what, service, tasks, elapsed, want) in cases {
            let got = match judged(&service, &tasks, elapsed) {
                Judged::Wait => "wait",
                Judged::Updated => "updated",
                Judged::RolledBack { .. } => "rolled_back",
                Judged::RollbackFailed { .. } => "rollback_failed",
                Judged::Failed { .. } => "failed",
            };
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn a_rollback_s_reason_is_the_failed_tasks_errors() {
        let mut tasks = running3(OLD);
        tasks.push(task("a", NEW, SwarmTaskState::Failed, false));
        tasks.push(task("b", NEW, SwarmTaskState::Failed, false));
        tasks.push(task("c", OLD, SwarmTaskState::Failed, false));
        let Judged::RolledBack { reason } = judged(
            &service(OLD, Some(UpdateState::RollbackCompleted)),
            &tasks,
            5,
        ) else {
            panic!("not rolled back")
        };
        assert_eq!(
            reason,
            "task failed: a: unhealthy container; b: unhealthy container"
        );
        let Judged::RolledBack { reason } = judged(
            &service(OLD, Some(UpdateState::RollbackCompleted)),
            &running3(OLD),
            5,
        ) else {
            panic!("not rolled back")
        };
        assert_eq!(
            reason,
            "Swarm rolled the update back (rollback_completed: msg)"
        );

        // A task stopped before it could fail: Swarm's own words, with what the task did.
        let mut tasks = running3(OLD);
        let mut stopped = task("early", NEW, SwarmTaskState::Ended, false);
        stopped.state_text = "complete".into();
        stopped.message = "finished".into();
        stopped.exit_code = Some(3);
        tasks.push(stopped);
        let why = "update rolled back due to failure or early termination of task early";
        let Judged::RolledBack { reason } = judge(&Look {
            service: &service(OLD, Some(UpdateState::RollbackCompleted)),
            tasks: &tasks,
            candidate_digest: NEW,
            elapsed: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
            why: Some(why),
        }) else {
            panic!("not rolled back")
        };
        assert_eq!(
            reason,
            format!("Swarm: {why}; task early ended complete (finished), exit code 3")
        );
    }

    #[test]
    fn update_settings_come_from_health_settings_ports_and_the_parallelism_label() {
        let config = crate::config::validate(
            &serde_json::json!({"services": [{"name": "web", "image": "reg:5000/app:1.0.0",
                "swarm_service": "web", "health_stable": "7s"}]}),
            &|_| None,
        )
        .unwrap();
        let spec = config.services[0].clone();
        assert_eq!(spec.swarm_service.as_deref(), Some("web"));
        let mut s = service(OLD, None);
        let got = update_settings(&spec, &s).unwrap().unwrap();
        assert_eq!(got.parallelism, 1);
        assert_eq!(got.monitor, spec.health_stable.max(MIN_MONITOR));
        assert!(got.start_first);
        s.labels.insert(PARALLELISM_LABEL.into(), "3".into());
        s.start_first_allowed = false;
        let got = update_settings(&spec, &s).unwrap().unwrap();
        assert_eq!((got.parallelism, got.start_first), (3, false));
        for bad in ["0", "x", "1001", "-2"] {
            s.labels.insert(PARALLELISM_LABEL.into(), bad.into());
            let e = update_settings(&spec, &s).unwrap_err();
            assert!(e.contains(PARALLELISM_LABEL) && e.contains("web"), "{e}");
        }
        s.own_update_config = true;
        assert_eq!(update_settings(&spec, &s).unwrap(), None);
    }

    #[test]
    fn the_deadline_grows_with_batches_and_saturates() {
        let h = Duration::from_secs(10);
        let g = Duration::from_secs(5);
        assert_eq!(update_deadline(h, Some(3), 1, g), Duration::from_secs(65));
        assert_eq!(update_deadline(h, Some(3), 2, g), Duration::from_secs(45));
        assert_eq!(update_deadline(h, None, 1, g), Duration::from_secs(25));
        assert_eq!(update_deadline(h, Some(0), 0, g), Duration::from_secs(25));
        assert_eq!(
            update_deadline(Duration::MAX, Some(u64::MAX), 1, g),
            Duration::MAX
        );
    }

    #[test]
    fn recovery_tells_whether_swarm_was_ever_asked() {
        let run = SwarmRun {
            service: "web".into(),
            version_before: 10,
            image_before: format!("reg:5000/app:1.0.0@{OLD}"),
            image_after: format!("reg:5000/app:1.1.0@{NEW}"),
        };
        assert_eq!(resume(&run, None), Resume::Gone);
        assert_eq!(
            resume(&run, Some(&service(OLD, None))),
            Resume::NeverReached
        );
        let mut moved = service(NEW, Some(UpdateState::Updating));
        moved.version = 11;
        assert_eq!(resume(&run, Some(&moved)), Resume::Follow);
        let mut status_only = service(OLD, Some(UpdateState::RollbackCompleted));
        status_only.version = 14;
        assert_eq!(resume(&run, Some(&status_only)), Resume::Follow);
    }

    #[test]
    fn discovered_services_take_their_policy_from_labels_and_update_only_when_told() {
        let config = crate::config::validate(
            &serde_json::json!({"services": [{"name": "own", "image": "reg:5000/app:1.0.0",
                "swarm_service": "configured"}]}),
            &|_| None,
        )
        .unwrap();
        let with = |name: &str, labels: &[(&str, &str)]| {
            let mut s = service(OLD, None);
            s.name = name.into();
            s.labels = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            s
        };
        let services = [
            with("watched", &[("lookout.policy", "semver")]),
            with(
                "updated",
                &[("lookout.action", "update"), (PARALLELISM_LABEL, "2")],
            ),
            with("ignored", &[("lookout.action", "ignore")]),
            with("disabled", &[("lookout.enable", "false")]),
            with("configured", &[]),
            with("wrong", &[("lookout.policy", "newest")]),
        ];
        let (specs, problems) = discovered(&services, &config);
        let names: Vec<(&str, bool)> = specs.iter().map(|s| (s.name.as_str(), s.enabled)).collect();
        assert_eq!(names, [("watched", false), ("updated", true)]);
        assert_eq!(specs[0].swarm_service.as_deref(), Some("watched"));
        assert_eq!(specs[0].image.tag(), Some("1.0.0"));
        assert_eq!(
            specs[0].policy_spec.policy.map(|p| p.as_str()),
            Some("semver")
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("\"wrong\"") && problems[0].contains("lookout.policy"),
            "{problems:?}"
        );
    }

    #[test]
    fn discovered_services_follow_the_discovery_settings_as_containers_do() {
        let config = |discovery: serde_json::Value| {
            crate::config::validate(&serde_json::json!({ "discovery": discovery }), &|_| None)
                .unwrap()
        };
        let with = |name: &str, labels: &[(&str, &str)]| {
            let mut s = service(OLD, None);
            s.name = name.into();
            s.labels = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            s
        };
        const SCOPE: &str = "com.centurylinklabs.watchtower.scope";
        let services = [
            with("plain", &[]),
            with("ours", &[(SCOPE, "blue")]),
            with("theirs", &[(SCOPE, "green")]),
            with("enabled", &[("lookout.enable", "true"), (SCOPE, "blue")]),
            with("notify", &[("lookout.action", "notify"), (SCOPE, "blue")]),
        ];
        let cases: Vec<(serde_json::Value, Vec<(&str, bool)>)> = vec![
            (
                serde_json::json!({}),
                vec![
                    ("plain", false),
                    ("ours", false),
                    ("theirs", false),
                    ("enabled", false),
                    ("notify", false),
                ],
            ),
            (
                serde_json::json!({"scope": "blue", "default_action": "update"}),
                vec![("ours", true), ("enabled", true), ("notify", false)],
            ),
            (
                serde_json::json!({"require_enable_label": true}),
                vec![("enabled", false)],
            ),
        ];
        for (discovery, want) in cases {
            let (specs, problems) = discovered(&services, &config(discovery.clone()));
            assert!(problems.is_empty(), "{problems:?}");
            let got: Vec<(&str, bool)> =
                specs.iter().map(|s| (s.name.as_str(), s.enabled)).collect();
            assert_eq!(got, want, "{discovery}");
        }
        // `[swarm]` absent is "auto": discovered when `[discovery]` is on.
        let on = config(serde_json::json!({"scope": "blue"}));
        assert_eq!(on.swarm, SwarmMode::Auto);
        assert!(on.swarm.discovers(&on.discovery));
        let off = crate::config::validate(&serde_json::json!({}), &|_| None).unwrap();
        assert!(!off.swarm.discovers(&off.discovery));
        assert!(SwarmMode::On.discovers(&off.discovery));
    }

    fn stack_spec(file: &std::path::Path, pin: bool) -> ServiceSpec {
        crate::config::validate(
            &serde_json::json!({"services": [{"name": "web", "image": "reg:5000/app:1.0.0",
                "swarm_service": "shop_web", "stack_file": file, "pin_digest": pin}]}),
            &|_| None,
        )
        .unwrap()
        .services[0]
            .clone()
    }

    fn stacked() -> SwarmService {
        let mut s = service(OLD, None);
        s.name = "shop_web".into();
        s.labels.insert(NAMESPACE_LABEL.into(), "shop".into());
        s
    }

    #[test]
    fn the_stack_file_edit_changes_exactly_the_image_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stack.yml");
        let text = "# shop\nservices:\n    web :   # site\n        image:   \"reg:5000/app:1.0.0\"   # pinned\n        deploy: {replicas: 3}\n    db:\n        image: reg:5000/app:1.0.0\n";
        std::fs::write(&file, text).unwrap();
        let edit = plan_stack_edit(&stack_spec(&file, false), &stacked(), "1.1.0", NEW)
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(edit.new_bytes().to_vec()).unwrap(),
            text.replacen("app:1.0.0\"", "app:1.1.0\"", 1)
        );
        assert_eq!(edit.previous_bytes(), text.as_bytes());
        // A digest followed without pinning changes nothing; pinned, the digest is written.
        assert!(
            plan_stack_edit(&stack_spec(&file, false), &stacked(), "1.0.0", NEW)
                .unwrap()
                .is_none()
        );
        let pinned = plan_stack_edit(&stack_spec(&file, true), &stacked(), "1.0.0", NEW)
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8_lossy(pinned.new_bytes()).contains(&format!("app:1.0.0@{NEW}\"")),
            "{}",
            String::from_utf8_lossy(pinned.new_bytes())
        );
        // Without the stack's label, or with another repository in the file: refused, named.
        let mut unlabelled = stacked();
        unlabelled.labels.clear();
        let e = plan_stack_edit(&stack_spec(&file, false), &unlabelled, "1.1.0", NEW).unwrap_err();
        assert!(
            e.contains("stack.yml") && e.contains(NAMESPACE_LABEL),
            "{e}"
        );
        std::fs::write(
            &file,
            text.replace("reg:5000/app:1.0.0\"", "other/app:1.0.0\""),
        )
        .unwrap();
        let e = plan_stack_edit(&stack_spec(&file, false), &stacked(), "1.1.0", NEW).unwrap_err();
        assert!(e.contains("other/app") && e.contains("\"shop_web\""), "{e}");
    }

    #[test]
    fn recovery_keeps_or_restores_the_stack_file_by_the_outcome() {
        let change = FileChange {
            path: "stack.yml".into(),
            old_sha256: "old".into(),
            new_sha256: "new".into(),
            old_bytes: SavedBytes::new(b"x"),
            created: false,
        };
        let cases = [
            (Some("new"), true, StackFile::Keep),
            (Some("old"), true, StackFile::Conflict),
            (Some("new"), false, StackFile::Restore),
            (Some("old"), false, StackFile::Keep),
            (Some("other"), false, StackFile::Conflict),
            (None, false, StackFile::Conflict),
            (Some("other"), true, StackFile::Conflict),
        ];
        for (now, committed, want) in cases {
            assert_eq!(
                stack_file_after(&change, now, committed),
                want,
                "{now:?} {committed}"
            );
        }
        assert_eq!(
            stack_file_after(&no_file("web"), Some("other"), false),
            StackFile::Keep
        );
    }

    #[test]
    fn a_swarm_task_s_container_is_not_discovered_as_a_standalone_container() {
        use crate::runtime::{ContainerState, ContainerSummary};
        let container = |name: &str, labels: &[(&str, &str)]| ContainerSummary {
            id: format!("id-{name}"),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            image_id: format!("sha256:{}", "ab".repeat(32)),
            state: ContainerState::Running,
        };
        let listed = [
            container(
                "shop_web.1.x1",
                &[
                    (crate::discovery::SWARM_SERVICE_LABEL, "shop_web"),
                    ("lookout.action", "update"),
                ],
            ),
            container("plain", &[]),
        ];
        let grouped = crate::discovery::groups(&listed, false);
        let names: Vec<&str> = grouped
            .groups
            .iter()
            .map(|g| g.container.name.as_str())
            .collect();
        assert_eq!(names, ["plain"]);
        assert_eq!(grouped.unmanaged.len(), 1);
        assert!(
            grouped.unmanaged[0]
                .reason
                .contains("Swarm service \"shop_web\""),
            "{:?}",
            grouped.unmanaged
        );
    }

    #[test]
    fn a_stack_file_label_is_checked_as_a_configured_stack_file_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stack.yml");
        std::fs::write(&file, "services:\n  web:\n    image: reg:5000/app:1.0.0\n").unwrap();
        let config = crate::config::validate(&serde_json::json!({}), &|_| None).unwrap();
        let with = |name: &str, stack: &std::path::Path| {
            let mut s = stacked();
            s.name = name.into();
            s.labels
                .insert("lookout.stack_file".into(), stack.display().to_string());
            s
        };
        let services = [
            with("shop_web", &file),
            with("shop_db", &file),
            with("shop_api", &dir.path().join("gone.yml")),
        ];
        let (mut specs, mut problems) = discovered(&services, &config);
        assert_eq!(specs.len(), 3, "{problems:?}");
        assert_eq!(specs[0].stack_file.as_deref(), Some(file.as_path()));
        keep_valid_stack_files(&mut specs, &mut problems);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["shop_web"]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("\"shop_db\", label lookout.stack_file")
                && problems[0].contains("defines no service"),
            "{problems:?}"
        );
        assert!(problems[1].contains("gone.yml"), "{problems:?}");
    }

    #[test]
    fn the_running_reference_is_the_pinned_spec_image() {
        let r = running_of(&service(OLD, None)).unwrap();
        assert_eq!(r.reference.tag(), Some("1.0.0"));
        assert_eq!(r.digest(), OLD);
        let mut odd = service(OLD, None);
        odd.image = "app:not a tag".into();
        assert!(running_of(&odd).unwrap_err().contains("\"web\""));
    }
}
