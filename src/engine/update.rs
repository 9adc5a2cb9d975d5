//! One update, step by step, and its rollback.
//!
//! pull by digest → journal the intent → tag the running image for rollback → tag the new image
//! under the name compose will ask for → edit the compose file or `.env` → `up -d --no-deps` →
//! health gate (which also checks the container runs the pulled image) → commit.
//! Any failure after the first change restores the old file bytes and the old image tag, runs
//! `up` again, waits for the old container to be healthy and blocks the candidate. Every step is
//! journaled in the state store before the next one starts, so a fresh lookout can finish or undo
//! an update that was interrupted (see [`super::recovery`]).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tracing::Instrument;

use crate::compose::{self, EditOptions, PlannedEdit};
use crate::config::ServiceSpec;
use crate::engine::decide::{Candidate, Running};
use crate::runtime::compose_cli::ComposeProject;
use crate::runtime::health::{GateOptions, wait_healthy};
use crate::runtime::{Compose, ContainerRuntime, ImageRemoval, RegistryLogin};
use crate::state::{
    ChangeKind, ChangeOutcome, ComposeRun, FileChange, ImageVersion, SavedBytes, StateStore, Step,
    UpdateIntent, sha256_hex,
};

use super::{Stop, failpoint, lock};
use crate::telemetry::Stage;

/// The tag under which lookout keeps the image a service ran before its last update, so it
/// cannot be pruned and a rollback can restore it: `lookout-rollback-<service>`.
pub(crate) fn rollback_tag(service: &str) -> String {
    let clean: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut tag = format!("lookout-rollback-{clean}");
    tag.truncate(128);
    tag
}

/// `text` with its tag replaced by `tag` (and any `@digest` dropped): `nginx:1.25` →
/// `nginx:1.27`, `registry:5000/app` → `registry:5000/app:1.27`. The registry and repository are
/// kept exactly as the compose file wrote them.
pub fn with_tag(text: &str, tag: &str) -> String {
    let name = text.split('@').next().unwrap_or(text);
    let (folder, last) = match name.rsplit_once('/') {
        Some((folder, last)) => (Some(folder), last),
        None => (None, name),
    };
    let repository = last.split_once(':').map_or(last, |(r, _)| r);
    match folder {
        Some(folder) => format!("{folder}/{repository}:{tag}"),
        None => format!("{repository}:{tag}"),
    }
}

/// How an update ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateResult {
    /// The new image runs and is healthy.
    Updated,
    /// The new image failed at `stage`; everything was put back and the old container is healthy.
    RolledBack { stage: Stage, reason: String },
    /// The update could not start (nothing was changed), e.g. the pull failed.
    Failed { stage: Stage, reason: String },
    /// The rollback itself failed: the service may be down. An operator is needed.
    RollbackFailed { stage: Stage, reason: String },
}

impl UpdateResult {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::RolledBack { .. } => "rolled_back",
            Self::Failed { .. } => "failed",
            Self::RollbackFailed { .. } => "rollback_failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Updated => None,
            Self::RolledBack { reason, .. }
            | Self::Failed { reason, .. }
            | Self::RollbackFailed { reason, .. } => Some(reason),
        }
    }

    pub fn stage(&self) -> Option<Stage> {
        match self {
            Self::Updated => None,
            Self::RolledBack { stage, .. }
            | Self::Failed { stage, .. }
            | Self::RollbackFailed { stage, .. } => Some(*stage),
        }
    }
}

/// What one update did.
#[derive(Debug, Clone)]
pub struct UpdateReport {
    pub service: String,
    pub from: String,
    pub to: String,
    pub digest: String,
    pub result: UpdateResult,
    pub duration: Duration,
    /// Where a compose update's time went (what is in no phase is lookout's own); `None` for
    /// standalone containers and Swarm services.
    pub phases: Option<Phases>,
}

/// The parts of an update that wait on others, each measured where it happens: the pull
/// (Docker and the registry), the recreate (`compose up`), and the health gate (the
/// container's own start and its stability wait). An update's `duration` minus these is
/// lookout's own time (planning, journal, tags, the file write). A phase that did not run is
/// zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Phases {
    /// Seconds spent making sure the new image is here (a pull, or the look that found it).
    #[serde(serialize_with = "crate::engine::pass::seconds")]
    #[schema(value_type = f64)]
    pub pull: Duration,
    /// Seconds in `compose up` (or creating the new container).
    #[serde(serialize_with = "crate::engine::pass::seconds")]
    #[schema(value_type = f64)]
    pub recreate: Duration,
    /// Seconds at the health gate.
    #[serde(serialize_with = "crate::engine::pass::seconds")]
    #[schema(value_type = f64)]
    pub health_gate: Duration,
}

impl Phases {
    /// What of `total` is in no phase: lookout's own time.
    pub fn own(&self, total: Duration) -> Duration {
        total
            .saturating_sub(self.pull)
            .saturating_sub(self.recreate)
            .saturating_sub(self.health_gate)
    }
}

/// Runs `f`, adding its time to `into`.
async fn timed<T>(into: &mut Duration, f: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = f.await;
    *into = into.saturating_add(started.elapsed());
    out
}

/// Everything an update needs to know about its service.
#[derive(Debug, Clone)]
pub struct UpdateRequest {
    pub spec: ServiceSpec,
    pub project: ComposeProject,
    pub running: Running,
    /// `Config.Image` of the running container, exactly as compose wrote it (`nginx:1.25`).
    pub running_text: String,
    pub candidate: Candidate,
    pub tag_changes: bool,
    /// Where the new image comes from.
    pub source: ImageSource,
    /// An update, or an operator's rollback to the previous image.
    pub kind: ChangeKind,
    /// Who asked: `schedule`, `cli`, `api`, `hook`.
    pub actor: String,
}

/// Where the image an update moves to comes from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// Pull `repo@digest` from the registry (skipped when the image is already here).
    Registry { login: Option<RegistryLogin> },
    /// Already on this host under this reference (a rollback to the image kept for it).
    Local { reference: String },
}

/// The seams an update goes through.
pub struct Updater<'a, R: ContainerRuntime, C: Compose> {
    pub runtime: &'a R,
    pub compose: &'a C,
    pub store: &'a Mutex<StateStore>,
    pub now: &'a (dyn Fn() -> Timestamp + Send + Sync),
    /// Once set, a pull still running is given up (nothing has changed yet); every later step
    /// runs to its end under its own timeout.
    pub stop: &'a Stop,
}

/// What an update changed so far, which is what a rollback must undo.
struct Applied {
    /// The old image got the rollback tag (the old tag may have been moved).
    tagged: bool,
    /// The file holds the new bytes.
    edit: Option<PlannedEdit>,
    /// `up` ran with the new image.
    started: bool,
}

impl<R: ContainerRuntime, C: Compose> Updater<'_, R, C> {
    /// Carries one update through, rolling back on failure. Never returns with the service left
    /// on a half-applied update: the result says which image runs.
    pub async fn update(&self, req: &UpdateRequest) -> UpdateReport {
        let started = Instant::now();
        let span = tracing::info_span!("update", service = %req.spec.name, from = %req.running_text, to = %req.candidate.reference.familiar());
        let mut phases = Phases::default();
        let result = self.run(req, &mut phases).instrument(span.clone()).await;
        let duration = started.elapsed();
        span.in_scope(|| match &result {
            UpdateResult::Updated => tracing::info!(
                pull_ms = phases.pull.as_millis() as u64,
                recreate_ms = phases.recreate.as_millis() as u64,
                health_gate_ms = phases.health_gate.as_millis() as u64,
                own_ms = phases.own(duration).as_millis() as u64,
                "updated"
            ),
            other => tracing::warn!(
                result = other.as_str(),
                reason = other.reason().unwrap_or(""),
                "update did not complete"
            ),
        });
        UpdateReport {
            service: req.spec.name.clone(),
            from: req.running_text.clone(),
            to: req.candidate.reference.familiar(),
            digest: req.candidate.manifest_digest.clone(),
            result,
            duration,
            phases: Some(phases),
        }
    }

    async fn run(&self, req: &UpdateRequest, phases: &mut Phases) -> UpdateResult {
        let service = &req.spec.name;
        let repo = req.candidate.reference.name();
        let by_digest = format!("{repo}@{}", req.candidate.manifest_digest);

        // 1. Pull by digest, unless the image is already here. Nothing has changed yet: a
        //    failure here is just a failure.
        let new_image = match timed(&mut phases.pull, self.fetch(req, &by_digest)).await {
            Ok(image) => image,
            Err(reason) => {
                return UpdateResult::Failed {
                    stage: Stage::Pull,
                    reason,
                };
            }
        };
        failpoint::hit("after_pull");

        // 2. Plan the file edit (pure: nothing is written yet).
        let edit = match self.plan_edit(req) {
            Ok(edit) => edit,
            Err(reason) => {
                return UpdateResult::Failed {
                    stage: Stage::Plan,
                    reason,
                };
            }
        };
        let file = match file_change(req, edit.as_ref()) {
            Ok(f) => f,
            Err(reason) => {
                return UpdateResult::Failed {
                    stage: Stage::Plan,
                    reason,
                };
            }
        };
        // The services the edit changes are recreated and gated together.
        let targets = match self.targets(req, edit.as_ref()).await {
            Ok(t) => t,
            Err(reason) => {
                return UpdateResult::Failed {
                    stage: Stage::Plan,
                    reason,
                };
            }
        };

        // 3. Journal the intent before touching anything.
        let intent = UpdateIntent {
            service: service.clone(),
            kind: req.kind,
            actor: req.actor.clone(),
            from: ImageVersion {
                image: req.running.reference.name(),
                tag: req.running.reference.tag().map(str::to_owned),
                digest: req.running.digest(),
            },
            to: ImageVersion {
                image: repo.clone(),
                tag: req.candidate.reference.tag().map(str::to_owned),
                digest: req.candidate.manifest_digest.clone(),
            },
            file,
            compose: Some(compose_run(&req.project, &targets)),
            swarm: None,
        };
        if let Err(e) = lock(self.store).begin_update(intent, (self.now)()) {
            return UpdateResult::Failed {
                stage: Stage::Journal,
                reason: e.to_string(),
            };
        }
        failpoint::hit("after_journal");

        let mut applied = Applied {
            tagged: false,
            edit: None,
            started: false,
        };
        match self
            .apply(
                req,
                &targets,
                &repo,
                &new_image.id,
                edit,
                &mut applied,
                phases,
            )
            .await
        {
            Ok(()) => {
                self.journal_finish(service, ChangeOutcome::Committed);
                if req.spec.cleanup {
                    self.cleanup_left_image(req, &new_image.id).await;
                }
                UpdateResult::Updated
            }
            Err((stage, reason)) => self.roll_back(req, &targets, &applied, stage, reason).await,
        }
    }

    /// Steps 4-8; `applied` records what changed so a rollback undoes exactly that, `phases`
    /// where the time went.
    #[allow(clippy::too_many_arguments)] // The update's parts, handed down from `run`.
    async fn apply(
        &self,
        req: &UpdateRequest,
        targets: &[String],
        repo: &str,
        new_id: &str,
        edit: Option<PlannedEdit>,
        applied: &mut Applied,
        phases: &mut Phases,
    ) -> Result<(), (Stage, String)> {
        let service = &req.spec.name;
        let tag = req.candidate.reference.tag().unwrap_or("latest");

        // 4. Keep the running image under the rollback tag, then give the new image the tag
        //    compose will ask for (for a digest-following `latest`, this moves `latest`).
        let stage = Stage::Tag;
        let running_repo = req.running.reference.name();
        self.runtime
            .tag(&req.running.image_id, &running_repo, &rollback_tag(service))
            .await
            .map_err(|e| (stage, e.to_string()))?;
        applied.tagged = true;
        self.step(service, Step::OldImageTagged)
            .map_err(|e| (stage, e))?;
        self.runtime
            .tag(new_id, repo, tag)
            .await
            .map_err(|e| (stage, e.to_string()))?;

        // 5. Write the file (or .env), atomically, refusing if it changed since it was read.
        if let Some(edit) = edit {
            edit.apply().map_err(|e| (Stage::Edit, e.to_string()))?;
            applied.edit = Some(edit);
        }
        self.step(service, Step::FileWritten)
            .map_err(|e| (Stage::Edit, e))?;
        failpoint::hit("after_file_write");

        // 6. Recreate the service's containers (every service of a group).
        applied.started = true;
        timed(
            &mut phases.recreate,
            self.compose.up(&req.project, &names(targets)),
        )
        .await
        .map_err(|e| (Stage::Up, e.to_string()))?;
        self.step(service, Step::ContainerStarted)
            .map_err(|e| (Stage::Up, e))?;
        failpoint::hit("after_up");

        // 7-8. Health gate, which also checks the container runs the new image.
        self.step(service, Step::HealthGate)
            .map_err(|e| (Stage::Health, e))?;
        failpoint::hit("during_health_gate");
        timed(&mut phases.health_gate, self.gate_all(req, targets, new_id))
            .await
            .map_err(|failure| (Stage::Health, failure))?;
        Ok(())
    }

    /// The health gate of every target service, one after the other; every container of each
    /// (all its replicas) must pass on `image_id`.
    async fn gate_all(
        &self,
        req: &UpdateRequest,
        targets: &[String],
        image_id: &str,
    ) -> Result<(), String> {
        let opts = gate_options(&req.spec);
        for service in targets {
            wait_healthy(self.runtime, &req.project.name, service, image_id, &opts)
                .await
                .map_err(|failure| {
                    if targets.len() > 1 {
                        format!("{service}: {failure}")
                    } else {
                        failure.to_string()
                    }
                })?;
        }
        Ok(())
    }

    /// The compose services an update recreates: the service itself, or every service whose
    /// image the edited value decides (a group). A group must be allowed (`group = true`) and
    /// its services must all run the service's image now, so that one pull, one rollback tag
    /// and one gate image serve them all.
    async fn targets(
        &self,
        req: &UpdateRequest,
        edit: Option<&PlannedEdit>,
    ) -> Result<Vec<String>, String> {
        let own = req.spec.compose_service.clone();
        let mut targets = vec![own.clone()];
        let Some(edit) = edit else {
            return Ok(targets);
        };
        targets.extend(edit.services().iter().filter(|s| **s != own).cloned());
        if targets.len() == 1 {
            return Ok(targets);
        }
        if !req.spec.group {
            return Err(format!(
                "the edit would change the image of {} too; set group = true to update them together",
                targets.get(1..).unwrap_or_default().join(", ")
            ));
        }
        for member in targets.get(1..).unwrap_or_default() {
            let containers = self
                .runtime
                .service_containers(&req.project.name, member)
                .await
                .map_err(|e| e.to_string())?;
            let running: Vec<_> = containers
                .iter()
                .filter(|c| c.state == crate::runtime::ContainerState::Running)
                .collect();
            if running.is_empty() {
                return Err(format!(
                    "{member}, which shares the image value, does not run; lookout updates a \
                     group whose services all run"
                ));
            }
            if let Some(other) = running.iter().find(|c| c.image_id != req.running.image_id) {
                return Err(format!(
                    "{member}, which shares the image value, runs another image ({}) than {own}; \
                     recreate the group with compose first",
                    other.image_ref
                ));
            }
        }
        Ok(targets)
    }

    /// Puts back what `applied` says changed: the old file bytes, the old image under its tag,
    /// then `up` and a health gate on the old container.
    async fn roll_back(
        &self,
        req: &UpdateRequest,
        targets: &[String],
        applied: &Applied,
        stage: Stage,
        reason: String,
    ) -> UpdateResult {
        let service = &req.spec.name;
        tracing::warn!(stage = stage.as_str(), %reason, "rolling back");
        if let Err(e) = self.step(service, Step::RollingBack) {
            tracing::error!(error = %e, "cannot journal the rollback; rolling back anyway");
        }
        let undo = async {
            if let Some(edit) = &applied.edit {
                edit.restore().map_err(|e| e.to_string())?;
            }
            failpoint::hit("during_rollback");
            if applied.tagged {
                let old_tag = req.running.reference.tag().unwrap_or("latest");
                self.runtime
                    .tag(
                        &req.running.image_id,
                        &req.running.reference.name(),
                        old_tag,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if applied.started || applied.tagged {
                self.compose
                    .up(&req.project, &names(targets))
                    .await
                    .map_err(|e| e.to_string())?;
                self.gate_all(req, targets, &req.running.image_id)
                    .await
                    .map_err(|f| format!("the old container is not healthy either: {f}"))?;
            }
            Ok::<(), String>(())
        };
        match undo.await {
            Ok(()) => {
                self.journal_finish(
                    service,
                    ChangeOutcome::RolledBack {
                        reason: reason.clone(),
                    },
                );
                UpdateResult::RolledBack { stage, reason }
            }
            Err(rollback_error) => {
                let reason = format!("{reason}; rollback failed: {rollback_error}");
                self.journal_finish(
                    service,
                    ChangeOutcome::RollbackFailed {
                        reason: reason.clone(),
                    },
                );
                UpdateResult::RollbackFailed { stage, reason }
            }
        }
    }

    /// The new image, pulled by digest when it is not on this host yet.
    async fn fetch(
        &self,
        req: &UpdateRequest,
        by_digest: &str,
    ) -> Result<crate::runtime::ImageInfo, String> {
        let reference = match &req.source {
            ImageSource::Local { reference } => reference.as_str(),
            ImageSource::Registry { login } => {
                if self
                    .runtime
                    .image(by_digest)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_none()
                {
                    tokio::select! {
                        biased;
                        () = self.stop.stopped() => {
                            return Err("the pull was given up: lookout is stopping; nothing was changed".into());
                        }
                        pulled = self.runtime.pull(by_digest, login.as_ref()) => {
                            pulled.map_err(|e| e.to_string())?;
                        }
                    }
                }
                by_digest
            }
        };
        self.runtime
            .image(reference)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{reference} is not on this host"))
    }

    fn plan_edit(&self, req: &UpdateRequest) -> Result<Option<PlannedEdit>, String> {
        let pin = req
            .spec
            .pin_digest
            .then(|| req.candidate.manifest_digest.clone());
        if !req.tag_changes && pin.is_none() {
            return Ok(None); // Digest-following without pinning: the file stays as it is.
        }
        let new_value = with_tag(
            &req.running_text,
            req.candidate.reference.tag().unwrap_or("latest"),
        );
        let edit = EditOptions {
            allow_anchor_group: req.spec.group,
            pin_digest: pin,
        };
        // The file and value that decide the image, across every -f file and extends:.
        let project = &req.project;
        let plan = compose::plan_project_image(
            &project.files,
            &project.project_dir,
            &project.env_files,
            &req.spec.compose_service,
            &new_value,
            &edit,
        )
        .map_err(|e| e.to_string())?;
        Ok((!plan.is_noop()).then_some(plan))
    }

    fn step(&self, service: &str, step: Step) -> Result<(), String> {
        lock(self.store)
            .advance(service, step, (self.now)())
            .map_err(|e| e.to_string())
    }

    fn journal_finish(&self, service: &str, outcome: ChangeOutcome) {
        if let Err(e) = lock(self.store).finish(service, outcome, (self.now)()) {
            // The journal entry stays; the next start finishes it from what it observes.
            tracing::error!(error = %e, "cannot record the end of the update in the state file");
        }
    }

    /// With `cleanup` on: the image the service ran before the *previous* update loses its tags
    /// (and goes, when no container uses it). The image it just left keeps the rollback tag.
    async fn cleanup_left_image(&self, req: &UpdateRequest, new_id: &str) {
        let previous_rollback = lock(self.store)
            .state()
            .services
            .get(&req.spec.name)
            .and_then(|s| {
                s.history
                    .iter()
                    .rev()
                    .filter(|h| h.outcome == ChangeOutcome::Committed)
                    .nth(1)
                    .map(|h| (h.from.image.clone(), h.from.tag.clone()))
            });
        let Some((image, Some(tag))) = previous_rollback else {
            return;
        };
        let reference = format!("{image}:{tag}");
        match self.runtime.image(&reference).await {
            Ok(Some(info)) if info.id != new_id && info.id != req.running.image_id => {
                match self.runtime.remove_image(&reference).await {
                    Ok(ImageRemoval::InUse { detail }) => {
                        tracing::info!(%reference, %detail, "kept: still in use")
                    }
                    Ok(_) => tracing::info!(%reference, "removed the image left two updates ago"),
                    Err(e) => tracing::warn!(%reference, error = %e, "cleanup failed"),
                }
            }
            _ => {}
        }
    }
}

/// The compose file the update edits.
fn edited_file(req: &UpdateRequest) -> Result<PathBuf, String> {
    req.spec
        .compose_file
        .clone()
        .or_else(|| req.project.files.first().cloned())
        .ok_or_else(|| format!("no compose file is known for {}", req.spec.name))
}

fn names(targets: &[String]) -> Vec<&str> {
    targets.iter().map(String::as_str).collect()
}

/// What the journal keeps of how compose is run for an update.
fn compose_run(project: &ComposeProject, targets: &[String]) -> ComposeRun {
    ComposeRun {
        files: project.files.clone(),
        project_dir: project.project_dir.clone(),
        name: project.name.clone(),
        env_files: project.env_files.clone(),
        explicit_name: project.explicit_name,
        explicit_dir: project.explicit_dir,
        profiles: project.profiles.clone(),
        replicas: project.replicas.clone(),
        services: targets.to_vec(),
    }
}

/// The health gate a service's configuration asks for; an update and the recovery of an
/// interrupted one gate the same way.
pub(super) fn gate_options(spec: &ServiceSpec) -> GateOptions {
    GateOptions {
        timeout: spec.health_timeout,
        stable: spec.health_stable,
        probe_url: spec.probe_url.clone(),
        poll: Duration::from_millis(500),
    }
}

/// The journal's record of the file: the planned edit's target and bytes (and whether it
/// creates the file), or the compose file unchanged when only the digest moves.
fn file_change(req: &UpdateRequest, edit: Option<&PlannedEdit>) -> Result<FileChange, String> {
    let (path, old, new, created) = match edit {
        Some(e) => (
            e.target().to_path_buf(),
            e.previous_bytes().to_vec(),
            e.new_bytes().to_vec(),
            e.created(),
        ),
        None => {
            let path = edited_file(req)?;
            let bytes = crate::config::read_file(&path, crate::config::MAX_FILE_BYTES)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            (path, bytes.clone(), bytes, false)
        }
    };
    Ok(FileChange {
        path,
        old_sha256: sha256_hex(&old),
        new_sha256: sha256_hex(&new),
        old_bytes: SavedBytes::new(&old),
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_replaced_keeping_the_name_as_written() {
        let cases = [
            ("nginx:1.25", "1.27", "nginx:1.27"),
            ("nginx", "1.27", "nginx:1.27"),
            (
                "registry:5000/team/app:1.0",
                "2.0",
                "registry:5000/team/app:2.0",
            ),
            (
                "registry:5000/team/app",
                "2.0",
                "registry:5000/team/app:2.0",
            ),
            (
                "docker.io/library/redis:7@sha256:abc",
                "8",
                "docker.io/library/redis:8",
            ),
            ("[::1]:5000/app:1", "2", "[::1]:5000/app:2"),
        ];
        for (text, tag, want) in cases {
            assert_eq!(with_tag(text, tag), want, "{text}");
        }
    }

    #[test]
    fn rollback_tags_are_valid_tags() {
        assert_eq!(rollback_tag("web"), "lookout-rollback-web");
        assert_eq!(
            rollback_tag("api staging/1"),
            "lookout-rollback-api-staging-1"
        );
        assert!(rollback_tag(&"x".repeat(300)).len() <= 128);
    }
}
