//! The update of one standalone container (`docker run`, no compose file), step by step, with
//! the old container kept until the new one is proven.
//!
//! pull by digest → journal the intent → keep the old image under the rollback tag (and tag the
//! new one) → rename the old container to `NAME-lookout-old` → stop its dependents, then it → create the new container
//! under `NAME` from the old one's settings ([`crate::runtime::recreate`]) and connect its
//! networks → start it → health gate (the same gate as compose services) → remove the old
//! container (its volumes stay: the new one mounts them) → recreate the dependents.
//! A failure after the rename stops and removes the new container, gives the old one its name
//! back, starts it and gates it: no pull, no re-create. Every step is journaled before the next
//! one starts ([`crate::state::StandaloneStep`]), so a fresh lookout finishes or undoes it
//! ([`recover`], decided by [`crate::state::decide_standalone_recovery`]).
//!
//! Stopped containers are recreated stopped, and only when asked (`include_stopped`); they are
//! not started, so there is nothing to gate. `--rm` containers are refused.

use std::sync::Mutex;
use std::time::Instant;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, ImageConfig,
};
use jiff::Timestamp;

use crate::engine::decide::Candidate;
use crate::reference::ImageRef;
use crate::runtime::health::{GateOptions, wait_healthy};
use crate::runtime::recreate::{self, Recreate};
use crate::runtime::{
    ContainerInfo, ContainerRuntime, ContainerState, ContainerSummary, ImageInfo, ImageRemoval,
    RegistryLogin, RuntimeError,
};
use crate::state::{
    ChangeKind, ChangeOutcome, ImageVersion, Recovery, StandaloneEntry, StandaloneObserved,
    StandaloneRecovery, StandaloneStep, StateStore, decide_standalone_recovery,
    standalone_old_name,
};
use crate::telemetry::Stage;

use super::update::{ImageSource, UpdateReport, UpdateResult, rollback_tag, with_tag};
use super::{Recovered, Stop, failpoint, lock};

/// Everything the update of one standalone container needs, as plain values.
#[derive(Debug, Clone)]
pub struct ContainerUpdate {
    /// The service's configured name: the key of its history and journal.
    pub service: String,
    /// The container's name.
    pub container: String,
    /// The image to move to.
    pub candidate: Candidate,
    /// Where that image comes from.
    pub source: ImageSource,
    pub gate: GateOptions,
    /// A stopped container is recreated (stopped) only when this is set.
    pub include_stopped: bool,
    pub kind: ChangeKind,
    /// Who asked: `schedule`, `cli`, `api`, `hook`.
    pub actor: String,
}

/// The key a standalone container's changes hold the update gate under: its own, so a
/// container is changed by one update or rollback at a time, beside other services' changes.
pub(crate) fn gate_key(container: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("<container {container}>"))
}

/// One update of a standalone container with the events of any update (`UpdateStarted`, then
/// `Updated`, `RolledBack` or `UpdateFailed`); the caller holds the update gate.
pub(crate) async fn update_reported<R: ContainerRuntime>(
    runtime: &R,
    store: &Mutex<StateStore>,
    now: &(dyn Fn() -> Timestamp + Send + Sync),
    stop: &Stop,
    telemetry: &crate::telemetry::Telemetry,
    req: &ContainerUpdate,
) -> UpdateReport {
    use crate::telemetry::Event;
    let old_image = runtime
        .container(&req.container)
        .await
        .map(|c| c.image_ref)
        .unwrap_or_default();
    let mut info = crate::telemetry::UpdateInfo {
        service: req.service.clone(),
        compose_service: req.container.clone(),
        compose_file: std::path::PathBuf::new(),
        old_image,
        new_image: req.candidate.reference.familiar(),
        old_digest: None,
        new_digest: Some(req.candidate.manifest_digest.clone()),
        started_at: now(),
        duration: None,
    };
    telemetry.emit(Event::UpdateStarted(info.clone()));
    let updater = StandaloneUpdater {
        runtime,
        store,
        now,
        stop,
    };
    let done = updater.update(req).await;
    info.duration = Some(done.duration);
    telemetry.emit(match &done.result {
        UpdateResult::Updated => Event::Updated(info),
        UpdateResult::RolledBack { reason, .. } => Event::RolledBack {
            update: info,
            reason: reason.clone(),
        },
        UpdateResult::Failed { stage, reason } | UpdateResult::RollbackFailed { stage, reason } => {
            Event::UpdateFailed {
                update: info,
                stage: *stage,
                reason: reason.clone(),
            }
        }
    });
    done
}

/// The seams a standalone update goes through.
pub struct StandaloneUpdater<'a, R: ContainerRuntime> {
    pub runtime: &'a R,
    pub store: &'a Mutex<StateStore>,
    pub now: &'a (dyn Fn() -> Timestamp + Send + Sync),
    pub stop: &'a Stop,
}

/// What the update changed so far, which is what a rollback undoes.
#[derive(Default)]
struct Applied {
    renamed: bool,
    stopped: Vec<String>,
    new_id: Option<String>,
}

/// What was read before anything changed.
struct Prepared {
    old_id: String,
    old_image_id: String,
    /// `Config.Image` of the old container, as `docker run` was given it.
    old_text: String,
    was_running: bool,
    plan: Recreate,
    /// `Config.Image` of the new container.
    new_text: String,
    new_image_id: String,
    dependents: Vec<String>,
    /// The dependents' inspect data before anything changed: what they are recreated from
    /// (renaming and removing the old container changes their links).
    snapshots: Vec<ContainerInspectResponse>,
    entry: StandaloneEntry,
}

impl<R: ContainerRuntime> StandaloneUpdater<'_, R> {
    /// Carries one standalone update through, rolling back on failure.
    pub async fn update(&self, req: &ContainerUpdate) -> UpdateReport {
        let started = Instant::now();
        let (from, result) = self.run(req).await;
        match &result {
            UpdateResult::Updated => {
                tracing::info!(service = %req.service, container = %req.container, "updated")
            }
            other => tracing::warn!(
                service = %req.service,
                container = %req.container,
                result = other.as_str(),
                reason = other.reason().unwrap_or(""),
                "update did not complete"
            ),
        }
        UpdateReport {
            service: req.service.clone(),
            from,
            to: req.candidate.reference.familiar(),
            digest: req.candidate.manifest_digest.clone(),
            result,
            duration: started.elapsed(),
            phases: None,
        }
    }

    async fn run(&self, req: &ContainerUpdate) -> (String, UpdateResult) {
        let failed = |stage, reason: String| UpdateResult::Failed { stage, reason };
        let prepared = match self.prepare(req).await {
            Ok(p) => p,
            Err((stage, reason)) => return (String::new(), failed(stage, reason)),
        };
        let from = prepared.old_text.clone();
        if let Err(e) = lock(self.store).begin_standalone(prepared.entry.clone(), (self.now)()) {
            return (from, failed(Stage::Journal, e.to_string()));
        }
        failpoint::hit("standalone_after_journal");
        let mut applied = Applied::default();
        match self.apply(req, &prepared, &mut applied).await {
            Ok(()) => {
                self.commit(req, &prepared).await;
                (from, UpdateResult::Updated)
            }
            Err((stage, reason)) => {
                let result = self
                    .roll_back(req, &prepared, &applied, stage, reason)
                    .await;
                (from, result)
            }
        }
    }

    /// Reads the old container and its image, plans the create request, pulls the new image and
    /// finds the dependents. Nothing changes but the pulled image.
    async fn prepare(&self, req: &ContainerUpdate) -> Result<Prepared, (Stage, String)> {
        let plan_err = |reason: String| (Stage::Plan, reason);
        let name = &req.container;
        let old = self
            .runtime
            .inspect_container(name)
            .await
            .map_err(|e| plan_err(e.to_string()))?
            .ok_or_else(|| plan_err(format!("there is no container {name}")))?;
        let old_id = old.id.clone().unwrap_or_default();
        let old_image_id = old.image.clone().unwrap_or_default();
        let old_text = old
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_else(|| old_image_id.clone());
        let status = old
            .state
            .as_ref()
            .and_then(|s| s.status)
            .map_or(ContainerState::Unknown, |s| {
                ContainerState::parse(s.as_ref())
            });
        let was_running = status == ContainerState::Running;
        if !was_running && !req.include_stopped {
            return Err(plan_err(format!(
                "container {name} is {status}; lookout recreates stopped containers only with \
                 include_stopped = true"
            )));
        }
        let old_config = self
            .runtime
            .image_config(&old_image_id)
            .await
            .map_err(|e| plan_err(e.to_string()))?
            .ok_or_else(|| {
                plan_err(format!(
                    "the image {old_image_id} container {name} was created from is gone, so \
                     lookout cannot tell which of its settings came from the image"
                ))
            })?;
        let new_text = new_reference(&old_text, &req.candidate);
        let plan =
            recreate::plan(&old, &old_config, &new_text).map_err(|e| plan_err(e.to_string()))?;

        let new_image = self.fetch(req).await.map_err(|e| (Stage::Pull, e))?;
        failpoint::hit("standalone_after_pull");

        let all = self
            .runtime
            .all_containers()
            .await
            .map_err(|e| plan_err(e.to_string()))?;
        let running_names: Vec<String> = all
            .iter()
            .filter(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.status)
                    .map(|s| s.to_string())
                    .as_deref()
                    == Some("running")
            })
            .map(recreate::container_name)
            .collect();
        let dependents: Vec<String> = recreate::dependents(&old, &all)
            .into_iter()
            .filter(|d| running_names.contains(d))
            .collect();
        let snapshots: Vec<ContainerInspectResponse> = all
            .into_iter()
            .filter(|c| dependents.contains(&recreate::container_name(c)))
            .collect();

        let old_ref = ImageRef::parse(&old_text).ok();
        let now = (self.now)();
        let entry = StandaloneEntry {
            service: req.service.clone(),
            kind: req.kind,
            actor: req.actor.clone(),
            from: ImageVersion {
                image: old_ref
                    .as_ref()
                    .map_or_else(|| old_text.clone(), ImageRef::name),
                tag: old_ref.as_ref().and_then(|r| r.tag().map(str::to_owned)),
                digest: old_digest(
                    &self.runtime.image(&old_image_id).await.ok().flatten(),
                    old_ref.as_ref(),
                )
                .unwrap_or_else(|| old_image_id.clone()),
            },
            to: ImageVersion {
                image: req.candidate.reference.name(),
                tag: req.candidate.reference.tag().map(str::to_owned),
                digest: req.candidate.manifest_digest.clone(),
            },
            container: name.clone(),
            old_id: old_id.clone(),
            old_image_id: old_image_id.clone(),
            new_id: None,
            was_running,
            dependents: dependents.clone(),
            step: StandaloneStep::Planned,
            started_at: now,
            step_at: now,
        };
        Ok(Prepared {
            old_id,
            old_image_id,
            old_text,
            was_running,
            plan,
            new_text,
            new_image_id: new_image.id,
            dependents,
            snapshots,
            entry,
        })
    }

    /// The new image, pulled by digest when it is not on this host yet.
    async fn fetch(&self, req: &ContainerUpdate) -> Result<ImageInfo, String> {
        let by_digest = format!(
            "{}@{}",
            req.candidate.reference.name(),
            req.candidate.manifest_digest
        );
        let reference = match &req.source {
            ImageSource::Local { reference } => reference.clone(),
            ImageSource::Registry { login } => {
                if self
                    .runtime
                    .image(&by_digest)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_none()
                {
                    self.pull(&by_digest, login.as_ref()).await?;
                }
                by_digest
            }
        };
        self.runtime
            .image(&reference)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{reference} is not on this host"))
    }

    async fn pull(&self, reference: &str, login: Option<&RegistryLogin>) -> Result<(), String> {
        tokio::select! {
            biased;
            () = self.stop.stopped() => {
                Err("the pull was given up: lookout is stopping; nothing was changed".into())
            }
            pulled = self.runtime.pull(reference, login) => pulled.map_err(|e| e.to_string()),
        }
    }

    /// Tag, rename, stop, create, start, gate; `applied` records what changed.
    async fn apply(
        &self,
        req: &ContainerUpdate,
        p: &Prepared,
        applied: &mut Applied,
    ) -> Result<(), (Stage, String)> {
        let name = &req.container;
        let old_name = standalone_old_name(name);
        let up = |e: RuntimeError| (Stage::Up, e.to_string());

        // Keep the old image (it may lose its tag to the new one) and give the new image the
        // tag the new container names.
        let tag_err = |e: RuntimeError| (Stage::Tag, e.to_string());
        let rollback_repo = ImageRef::parse(&p.old_text)
            .map_or_else(|_| req.candidate.reference.name(), |r| r.name());
        self.runtime
            .tag(&p.old_image_id, &rollback_repo, &rollback_tag(&req.service))
            .await
            .map_err(tag_err)?;
        if let Ok(new_ref) = ImageRef::parse(&p.new_text)
            && let Some(tag) = new_ref.tag()
        {
            self.runtime
                .tag(&p.new_image_id, &new_ref.name(), tag)
                .await
                .map_err(tag_err)?;
        }

        self.runtime
            .rename_container(&p.old_id, &old_name)
            .await
            .map_err(up)?;
        applied.renamed = true;
        self.step(req, StandaloneStep::OldRenamed, None)?;
        failpoint::hit("standalone_after_rename");

        for dependent in p.dependents.iter().rev() {
            self.runtime.stop_container(dependent).await.map_err(up)?;
            applied.stopped.push(dependent.clone());
        }
        self.runtime.stop_container(&p.old_id).await.map_err(up)?;
        self.step(req, StandaloneStep::OldStopped, None)?;
        failpoint::hit("standalone_after_stop");

        let new_id = self
            .runtime
            .create_container(name, p.plan.body.clone())
            .await
            .map_err(up)?;
        applied.new_id = Some(new_id.clone());
        for (network, endpoint) in &p.plan.connect {
            self.runtime
                .connect_network(network, &new_id, endpoint.clone())
                .await
                .map_err(up)?;
        }
        self.step(req, StandaloneStep::NewCreated, Some(&new_id))?;
        failpoint::hit("standalone_after_create");

        if !p.was_running {
            return Ok(());
        }
        self.runtime.start_container(&new_id).await.map_err(up)?;
        self.step(req, StandaloneStep::HealthGate, None)?;
        failpoint::hit("standalone_during_health_gate");
        gate(self.runtime, name, &p.new_image_id, &req.gate)
            .await
            .map_err(|f| (Stage::Health, f))?;
        Ok(())
    }

    /// The new container is proven: the old one goes (not its volumes), the dependents are
    /// recreated against the new one.
    async fn commit(&self, req: &ContainerUpdate, p: &Prepared) {
        if let Err((_, e)) = self.step(req, StandaloneStep::Committing, None) {
            tracing::error!(error = %e, "cannot journal the commit; the next start finishes it");
        }
        failpoint::hit("standalone_after_gate");
        if let Err(e) = self.runtime.remove_container(&p.old_id).await {
            tracing::warn!(container = %req.container, error = %e, "cannot remove the old container; remove it by hand");
        }
        let new_id = lock(self.store)
            .standalone_in_flight()
            .into_iter()
            .find(|e| e.service == req.service)
            .and_then(|e| e.new_id)
            .unwrap_or_default();
        recreate_dependents(
            self.runtime,
            &req.container,
            &p.old_id,
            &new_id,
            &p.dependents,
            &p.snapshots,
        )
        .await;
        self.finish(&req.service, ChangeOutcome::Committed);
    }

    /// Undoes what `applied` says changed: the new container goes, the old one gets its name
    /// back, starts and is gated; its dependents start again.
    async fn roll_back(
        &self,
        req: &ContainerUpdate,
        p: &Prepared,
        applied: &Applied,
        stage: Stage,
        reason: String,
    ) -> UpdateResult {
        tracing::warn!(container = %req.container, stage = stage.as_str(), %reason, "rolling back");
        if let Err((_, e)) = self.step(req, StandaloneStep::RollingBack, None) {
            tracing::error!(error = %e, "cannot journal the rollback; rolling back anyway");
        }
        failpoint::hit("standalone_during_rollback");
        let undo = async {
            if let Some(new_id) = &applied.new_id {
                self.runtime
                    .remove_container(new_id)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if applied.renamed {
                self.runtime
                    .rename_container(&p.old_id, &req.container)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            restore_old_tag(self.runtime, &p.old_text, &p.old_image_id).await;
            if p.was_running {
                self.runtime
                    .start_container(&p.old_id)
                    .await
                    .map_err(|e| e.to_string())?;
                gate(self.runtime, &req.container, &p.old_image_id, &req.gate)
                    .await
                    .map_err(|f| format!("the old container is not healthy either: {f}"))?;
            }
            start_all(self.runtime, &applied.stopped).await
        };
        match undo.await {
            Ok(()) => {
                self.finish(
                    &req.service,
                    ChangeOutcome::RolledBack {
                        reason: reason.clone(),
                    },
                );
                UpdateResult::RolledBack { stage, reason }
            }
            Err(e) => {
                let reason = format!("{reason}; rollback failed: {e}");
                self.finish(
                    &req.service,
                    ChangeOutcome::RollbackFailed {
                        reason: reason.clone(),
                    },
                );
                UpdateResult::RollbackFailed { stage, reason }
            }
        }
    }

    fn step(
        &self,
        req: &ContainerUpdate,
        step: StandaloneStep,
        new_id: Option<&str>,
    ) -> Result<(), (Stage, String)> {
        lock(self.store)
            .advance_standalone(&req.service, step, new_id, (self.now)())
            .map_err(|e| (Stage::Journal, e.to_string()))
    }

    fn finish(&self, service: &str, outcome: ChangeOutcome) {
        if let Err(e) = lock(self.store).finish_standalone(service, outcome, (self.now)()) {
            tracing::error!(%service, error = %e, "cannot record the end of the update in the state file");
        }
    }
}

/// `Config.Image` of the new container: the old one's text with the candidate's tag (`app:1` →
/// `app:2`, the registry and repository as the user wrote them), or the candidate itself when
/// the old text names no tag.
fn new_reference(old_text: &str, candidate: &Candidate) -> String {
    match (ImageRef::parse(old_text), candidate.reference.tag()) {
        (Ok(old), Some(tag)) if old.name() == candidate.reference.name() => with_tag(old_text, tag),
        _ => candidate.reference.familiar(),
    }
}

/// The registry digest of the old image in its repository, when Docker recorded one.
fn old_digest(image: &Option<ImageInfo>, reference: Option<&ImageRef>) -> Option<String> {
    let image = image.as_ref()?;
    let reference = reference?;
    image.repo_digests.iter().find_map(|d| {
        let (repo, digest) = d.rsplit_once('@')?;
        let repo = ImageRef::parse(repo).ok()?;
        (repo.name() == reference.name()).then(|| digest.to_owned())
    })
}

/// Gives the old image its tag back when the update moved it to the new image.
async fn restore_old_tag<R: ContainerRuntime>(runtime: &R, old_text: &str, old_image_id: &str) {
    let Ok(old) = ImageRef::parse(old_text) else {
        return;
    };
    let Some(tag) = old.tag() else { return };
    if let Err(e) = runtime.tag(old_image_id, &old.name(), tag).await {
        tracing::warn!(image = %old_text, error = %e, "cannot give the old image its tag back");
    }
}

async fn start_all<R: ContainerRuntime>(runtime: &R, names: &[String]) -> Result<(), String> {
    for name in names {
        runtime
            .start_container(name)
            .await
            .map_err(|e| format!("cannot start dependent {name}: {e}"))?;
    }
    Ok(())
}

/// Recreates each dependent (in order) on its own image and settings, pointing a shared
/// network namespace at the new container: the old dependent is renamed, the new one created
/// and started, then the old one removed. A dependent that fails is left as it was, started,
/// and reported in the log.
/// `snapshots` are their inspect data from before the update; one without is inspected now.
async fn recreate_dependents<R: ContainerRuntime>(
    runtime: &R,
    target: &str,
    old_id: &str,
    new_id: &str,
    dependents: &[String],
    snapshots: &[ContainerInspectResponse],
) {
    for name in dependents {
        let snapshot = snapshots
            .iter()
            .find(|c| recreate::container_name(c) == *name)
            .cloned();
        if let Err(e) = recreate_dependent(runtime, target, old_id, new_id, name, snapshot).await {
            tracing::warn!(container = %name, error = %e, "cannot recreate a dependent; starting it as it was");
            let _ = runtime.start_container(name).await;
        }
    }
}

async fn recreate_dependent<R: ContainerRuntime>(
    runtime: &R,
    target: &str,
    old_id: &str,
    new_id: &str,
    name: &str,
    snapshot: Option<ContainerInspectResponse>,
) -> Result<(), String> {
    let err = |e: RuntimeError| e.to_string();
    let aside = standalone_old_name(name);
    let dep = match snapshot {
        Some(dep) => dep,
        None => {
            // After a crash halfway through this dependent: its old container is aside, and a
            // replacement may stand under its name. Put the old one back and start over.
            if let Some(old) = runtime.inspect_container(&aside).await.map_err(err)? {
                if let Some(half) = runtime.inspect_container(name).await.map_err(err)?
                    && half.id != old.id
                {
                    runtime
                        .remove_container(half.id.as_deref().unwrap_or(name))
                        .await
                        .map_err(err)?;
                }
                runtime
                    .rename_container(old.id.as_deref().unwrap_or(&aside), name)
                    .await
                    .map_err(err)?;
            }
            runtime
                .inspect_container(name)
                .await
                .map_err(err)?
                .ok_or_else(|| format!("container {name} is gone"))?
        }
    };
    let image_id = dep.image.clone().unwrap_or_default();
    let config: ImageConfig = runtime
        .image_config(&image_id)
        .await
        .map_err(err)?
        .unwrap_or_default();
    let text = dep
        .config
        .as_ref()
        .and_then(|c| c.image.clone())
        .unwrap_or_else(|| image_id.clone());
    let mut plan = recreate::plan(&dep, &config, &text).map_err(|e| e.to_string())?;
    recreate::repoint_namespace(&mut plan.body, &[old_id, target], new_id);
    recreate::relink(&mut plan.body, &standalone_old_name(target), target);
    let dep_id = dep.id.clone().unwrap_or_default();
    runtime
        .rename_container(&dep_id, &aside)
        .await
        .map_err(err)?;
    failpoint::hit("standalone_during_dependents");
    let created = create_and_connect(runtime, name, plan.body, &plan.connect).await;
    match created {
        Ok(id) => {
            runtime.start_container(&id).await.map_err(err)?;
            runtime.remove_container(&dep_id).await.map_err(err)?;
            Ok(())
        }
        Err(e) => {
            let _ = runtime.rename_container(&dep_id, name).await;
            Err(e)
        }
    }
}

async fn create_and_connect<R: ContainerRuntime>(
    runtime: &R,
    name: &str,
    body: ContainerCreateBody,
    connect: &[(String, EndpointSettings)],
) -> Result<String, String> {
    let id = runtime
        .create_container(name, body)
        .await
        .map_err(|e| e.to_string())?;
    for (network, endpoint) in connect {
        if let Err(e) = runtime
            .connect_network(network, &id, endpoint.clone())
            .await
        {
            let _ = runtime.remove_container(&id).await;
            return Err(e.to_string());
        }
    }
    Ok(id)
}

/// The health gate of compose services, on the one container named `name`.
async fn gate<R: ContainerRuntime>(
    runtime: &R,
    name: &str,
    image_id: &str,
    opts: &GateOptions,
) -> Result<ContainerInfo, String> {
    wait_healthy(&ByName { runtime, name }, "", name, image_id, opts)
        .await
        .map_err(|f| f.to_string())
}

/// Finishes every standalone recreation in the journal. `gate_for` gives a service's gate
/// settings (the defaults for one no longer configured).
pub async fn recover<R: ContainerRuntime>(
    runtime: &R,
    store: &Mutex<StateStore>,
    now: &(dyn Fn() -> Timestamp + Send + Sync),
    gate_for: &(dyn Fn(&str) -> GateOptions + Sync),
) -> Vec<Recovered> {
    let entries = lock(store).standalone_in_flight();
    let mut out = Vec::new();
    for entry in entries {
        let gate_opts = gate_for(&entry.service);
        let (decision, detail, outcome) = recover_one(runtime, &entry, &gate_opts).await;
        let closed = match &outcome {
            Some(o) => match lock(store).finish_standalone(&entry.service, o.clone(), now()) {
                Ok(_) => true,
                Err(e) => {
                    tracing::error!(service = %entry.service, error = %e, "cannot close the journal entry");
                    false
                }
            },
            None => false,
        };
        tracing::warn!(service = %entry.service, container = %entry.container, ?decision, %detail, "finished an interrupted update");
        out.push(Recovered {
            service: entry.service.clone(),
            decision,
            detail,
            outcome,
            closed,
        });
    }
    out
}

async fn recover_one<R: ContainerRuntime>(
    runtime: &R,
    entry: &StandaloneEntry,
    gate_opts: &GateOptions,
) -> (Recovery, String, Option<ChangeOutcome>) {
    let name = &entry.container;
    let old_name = standalone_old_name(name);
    let id_of = |c: Option<ContainerInspectResponse>| c.and_then(|c| c.id);
    let under_name = id_of(runtime.inspect_container(name).await.ok().flatten());
    let under_old_name = id_of(runtime.inspect_container(&old_name).await.ok().flatten());
    let new_there = under_name
        .as_ref()
        .filter(|id| **id != entry.old_id)
        .cloned();
    // The new container gets the gate the interrupted update did not finish.
    let mut gate_failure = None;
    if let Some(new_id) = &new_there
        && entry.step != StandaloneStep::RollingBack
        && under_old_name.is_some()
    {
        let image_id = runtime
            .container(new_id)
            .await
            .map(|c| c.image_id)
            .unwrap_or_default();
        if entry.was_running {
            let _ = runtime.start_container(new_id).await;
            gate_failure = gate(runtime, name, &image_id, gate_opts).await.err();
        }
    }
    let seen = StandaloneObserved {
        under_name: under_name.clone(),
        under_old_name: under_old_name.clone(),
        healthy: new_there.is_some() && gate_failure.is_none(),
    };
    let decision = decide_standalone_recovery(entry, &seen);
    match decision {
        StandaloneRecovery::Commit => {
            if under_old_name.as_deref() == Some(entry.old_id.as_str())
                && let Err(e) = runtime.remove_container(&entry.old_id).await
            {
                tracing::warn!(container = %old_name, error = %e, "cannot remove the old container; remove it by hand");
            }
            let new_id = new_there.unwrap_or_default();
            recreate_dependents(
                runtime,
                name,
                &entry.old_id,
                &new_id,
                &entry.dependents,
                &[],
            )
            .await;
            (
                Recovery::Commit,
                "the new container is healthy on the expected image".into(),
                Some(ChangeOutcome::Committed),
            )
        }
        StandaloneRecovery::NothingToDo | StandaloneRecovery::RollBack => {
            let rolling_back = decision == StandaloneRecovery::RollBack;
            let done = async {
                if let Some(tag) = &entry.from.tag
                    && !entry.old_image_id.is_empty()
                {
                    restore_old_tag(
                        runtime,
                        &format!("{}:{tag}", entry.from.image),
                        &entry.old_image_id,
                    )
                    .await;
                }
                if rolling_back {
                    if let Some(new_id) = &new_there {
                        runtime
                            .remove_container(new_id)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    runtime
                        .rename_container(&entry.old_id, name)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                if entry.was_running {
                    runtime
                        .start_container(&entry.old_id)
                        .await
                        .map_err(|e| e.to_string())?;
                    let image_id = runtime
                        .container(&entry.old_id)
                        .await
                        .map(|c| c.image_id)
                        .unwrap_or_default();
                    gate(runtime, name, &image_id, gate_opts)
                        .await
                        .map_err(|f| format!("the old container is not healthy: {f}"))?;
                }
                start_all(runtime, &entry.dependents).await
            }
            .await;
            let reason = match (&done, &gate_failure) {
                (Err(e), _) => format!("rollback after the interruption failed: {e}"),
                (Ok(()), Some(f)) => format!(
                    "interrupted at step {:?}; the new container failed the health gate when \
                     lookout started again: {f}; the old container runs again",
                    entry.step
                ),
                (Ok(()), None) => format!(
                    "interrupted at step {:?}; the old container runs again",
                    entry.step
                ),
            };
            let outcome = match done {
                Err(_) => ChangeOutcome::RollbackFailed {
                    reason: reason.clone(),
                },
                Ok(()) if entry.step == StandaloneStep::RollingBack || gate_failure.is_some() => {
                    ChangeOutcome::RolledBack {
                        reason: reason.clone(),
                    }
                }
                Ok(()) => ChangeOutcome::Abandoned {
                    reason: reason.clone(),
                },
            };
            let decision = if rolling_back {
                Recovery::RollBack
            } else {
                Recovery::NothingToDo
            };
            (decision, reason, Some(outcome))
        }
        StandaloneRecovery::Conflict => (
            Recovery::Conflict,
            format!(
                "neither {name} nor {old_name} is the container the journal recorded \
                 (changed by someone else?); lookout leaves them alone — look with `docker ps -a` \
                 and run `lookout status`"
            ),
            None,
        ),
    }
}

/// A runtime whose "service" is the one container named `name`, so the health gate of
/// compose services judges a standalone container exactly the same way.
struct ByName<'a, R: ContainerRuntime> {
    runtime: &'a R,
    name: &'a str,
}

impl<R: ContainerRuntime> ContainerRuntime for ByName<'_, R> {
    async fn pull(
        &self,
        reference: &str,
        auth: Option<&RegistryLogin>,
    ) -> Result<(), RuntimeError> {
        self.runtime.pull(reference, auth).await
    }
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        self.runtime.image(reference).await
    }
    async fn tag(&self, source: &str, repo: &str, tag: &str) -> Result<(), RuntimeError> {
        self.runtime.tag(source, repo, tag).await
    }
    async fn remove_image(&self, reference: &str) -> Result<ImageRemoval, RuntimeError> {
        self.runtime.remove_image(reference).await
    }
    async fn service_containers(
        &self,
        _project: &str,
        _service: &str,
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        match self.runtime.container(self.name).await {
            Ok(c) => Ok(vec![c]),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
    async fn compose_containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        self.runtime.compose_containers().await
    }
    async fn containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        self.runtime.containers().await
    }
    async fn container_events(
        &self,
        sink: tokio::sync::mpsc::Sender<crate::runtime::ContainerEvent>,
    ) -> Result<(), RuntimeError> {
        self.runtime.container_events(sink).await
    }
    async fn container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        self.runtime.container(id).await
    }
    async fn version(&self) -> Result<String, RuntimeError> {
        self.runtime.version().await
    }
    async fn inspect_container(
        &self,
        id: &str,
    ) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        self.runtime.inspect_container(id).await
    }
    async fn image_config(&self, reference: &str) -> Result<Option<ImageConfig>, RuntimeError> {
        self.runtime.image_config(reference).await
    }
    async fn all_containers(&self) -> Result<Vec<ContainerInspectResponse>, RuntimeError> {
        self.runtime.all_containers().await
    }
    async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, RuntimeError> {
        self.runtime.create_container(name, body).await
    }
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.runtime.start_container(id).await
    }
    async fn stop_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.runtime.stop_container(id).await
    }
    async fn rename_container(&self, id: &str, new_name: &str) -> Result<(), RuntimeError> {
        self.runtime.rename_container(id, new_name).await
    }
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.runtime.remove_container(id).await
    }
    async fn connect_network(
        &self,
        network: &str,
        container: &str,
        endpoint: EndpointSettings,
    ) -> Result<(), RuntimeError> {
        self.runtime
            .connect_network(network, container, endpoint)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(text: &str) -> Candidate {
        Candidate {
            reference: ImageRef::parse(text).unwrap(),
            manifest_digest: "sha256:new".into(),
            platform_digest: None,
        }
    }

    #[test]
    fn the_new_reference_keeps_the_name_as_written() {
        let cases = [
            ("app:1", "app:2", "app:2"),
            (
                "docker.io/library/app:1",
                "app:2",
                "docker.io/library/app:2",
            ),
            (
                "127.0.0.1:5000/team/app:1",
                "127.0.0.1:5000/team/app:2",
                "127.0.0.1:5000/team/app:2",
            ),
            // Another repository, or no tag in the old text: the candidate as Docker prints it.
            ("other:1", "app:2", "app:2"),
            ("sha256:0123", "app:2", "app:2"),
        ];
        for (old, new, want) in cases {
            assert_eq!(new_reference(old, &candidate(new)), want, "{old} → {new}");
        }
    }
}
