//! At start, finish what an interrupted update left: commit it when the new container is healthy
//! on the expected image, otherwise put back the recorded old bytes and the old image.
//!
//! What to do is decided by [`crate::state::decide_recovery`] from what is observed now (the
//! file's hash, the image the container runs, its health); this module observes and acts.

use crate::compose;
use crate::config::ServiceSpec;
use crate::runtime::compose_cli::ComposeProject;
use crate::runtime::health::{GateFailure, GateOptions, wait_healthy};
use crate::runtime::{Compose, ContainerRuntime, ContainerState};
use crate::state::{
    ChangeOutcome, JournalEntry, Observed, Recovery, StateStore, Step, decide_recovery, sha256_hex,
};

use super::lock;
use super::update::{gate_options, rollback_tag};

/// What recovery did for one interrupted update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub service: String,
    pub decision: Recovery,
    /// What was done, or why nothing could be.
    pub detail: String,
    /// How the journal entry was closed, or would have been (`None`: it stays open for an
    /// operator).
    pub outcome: Option<ChangeOutcome>,
    /// Whether the journal entry was closed.
    pub closed: bool,
}

/// Finishes every update in the journal. `find` maps a service name to its configuration and
/// compose project (a service no longer configured is reported and left in the journal).
pub async fn recover<R: ContainerRuntime, C: Compose>(
    runtime: &R,
    compose: &C,
    store: &std::sync::Mutex<StateStore>,
    now: &(dyn Fn() -> jiff::Timestamp + Send + Sync),
    find: &(dyn Fn(&str) -> Option<(ServiceSpec, ComposeProject)> + Sync),
) -> Vec<Recovered> {
    let entries = lock(store).in_flight();
    let mut out = Vec::new();
    for entry in entries {
        if entry.intent.swarm.is_some() {
            continue; // A Swarm update: `swarm::recover_one`.
        }
        let service = entry.intent.service.clone();
        let Some((spec, project)) = find(&service) else {
            out.push(Recovered {
                service,
                decision: Recovery::Conflict,
                detail: "the service is no longer in the configuration; its journal entry is kept for an operator".into(),
                outcome: None,
                closed: false,
            });
            continue;
        };
        let r = recover_one(runtime, compose, &spec, &project, &entry).await;
        let closed = match &r.outcome {
            Some(outcome) => match lock(store).finish(&service, outcome.clone(), now()) {
                Ok(_) => true,
                Err(e) => {
                    tracing::error!(%service, error = %e, "cannot close the journal entry");
                    false
                }
            },
            None => false,
        };
        tracing::warn!(%service, decision = ?r.decision, detail = %r.detail, "finished an interrupted update");
        out.push(Recovered {
            service,
            decision: r.decision,
            detail: r.detail,
            outcome: r.outcome,
            closed,
        });
    }
    out
}

struct OneResult {
    decision: Recovery,
    detail: String,
    outcome: Option<ChangeOutcome>,
}

async fn recover_one<R: ContainerRuntime, C: Compose>(
    runtime: &R,
    compose: &C,
    spec: &ServiceSpec,
    project: &ComposeProject,
    entry: &JournalEntry,
) -> OneResult {
    let gate = gate_options(spec);
    let (seen, file_now, gate_failure) = observe(runtime, spec, project, entry, &gate).await;
    let decision = decide_recovery(entry, &seen);
    let (detail, outcome) = match decision {
        Recovery::Commit => (
            "the new container is healthy on the expected image".into(),
            Some(ChangeOutcome::Committed),
        ),
        Recovery::NothingToDo => (
            "the update was interrupted before it changed anything".into(),
            Some(ChangeOutcome::Abandoned {
                reason: format!("interrupted at step {:?}", entry.step),
            }),
        ),
        Recovery::Conflict => (
            format!(
                "{} holds neither the old nor the new bytes (changed by someone else?); lookout \
                 leaves it alone — restore it by hand and run `lookout status`",
                entry.intent.file.path.display()
            ),
            None,
        ),
        Recovery::RollBack => {
            let done = roll_back(
                runtime,
                compose,
                spec,
                project,
                entry,
                file_now.as_deref(),
                &gate,
            )
            .await;
            rolled_back(entry, gate_failure.as_ref(), done)
        }
    };
    OneResult {
        decision,
        detail,
        outcome,
    }
}

/// What an interrupted update left: the file's bytes, which image runs and whether it is
/// healthy. The new container gets the health gate the interrupted update did not finish; a
/// failure here proves the candidate bad just as the update's own gate would have. A rollback
/// that was under way goes on whatever the new container does now, so it is not judged again.
async fn observe<R: ContainerRuntime>(
    runtime: &R,
    spec: &ServiceSpec,
    project: &ComposeProject,
    entry: &JournalEntry,
    gate: &GateOptions,
) -> (Observed, Option<Vec<u8>>, Option<GateFailure>) {
    let intent = &entry.intent;
    let file_now = crate::config::read_file(&intent.file.path, crate::config::MAX_FILE_BYTES).ok();
    let new_ref = format!("{}@{}", intent.to.image, intent.to.digest);
    let new_id = runtime.image(&new_ref).await.ok().flatten().map(|i| i.id);
    let container = runtime
        .service_containers(&project.name, &spec.compose_service)
        .await
        .ok()
        .and_then(|cs| cs.into_iter().find(|c| c.state == ContainerState::Running));
    let runs_new = matches!((&container, &new_id), (Some(c), Some(id)) if &c.image_id == id);
    let gate_failure = if runs_new && entry.step != Step::RollingBack {
        wait_healthy(
            runtime,
            &project.name,
            &spec.compose_service,
            new_id.as_deref().unwrap_or_default(),
            gate,
        )
        .await
        .err()
    } else {
        None
    };
    let seen = Observed {
        file_sha256: file_now.as_deref().map(sha256_hex),
        running_digest: if runs_new {
            Some(intent.to.digest.clone())
        } else {
            container.map(|c| c.image_id)
        },
        healthy: runs_new && gate_failure.is_none(),
    };
    (seen, file_now, gate_failure)
}

/// How a rollback after an interruption ends. A rollback that was already under way, or a new
/// container that failed the health gate just now, is a real failure of the candidate (it is
/// blocked); an update cut off before its health gate proved nothing about it.
fn rolled_back(
    entry: &JournalEntry,
    gate_failure: Option<&GateFailure>,
    done: Result<(), String>,
) -> (String, Option<ChangeOutcome>) {
    if let Err(e) = done {
        return (
            format!("rollback after the interruption failed: {e}"),
            Some(ChangeOutcome::RollbackFailed { reason: e }),
        );
    }
    let mut reason = format!(
        "interrupted at step {:?}; restored the old file and image",
        entry.step
    );
    if let Some(failure) = gate_failure {
        reason = format!(
            "{reason}; the new container failed the health gate when lookout started again: \
             {failure}"
        );
    }
    let outcome = if entry.step == Step::RollingBack || gate_failure.is_some() {
        ChangeOutcome::RolledBack {
            reason: reason.clone(),
        }
    } else {
        ChangeOutcome::Abandoned {
            reason: reason.clone(),
        }
    };
    (reason, Some(outcome))
}

async fn roll_back<R: ContainerRuntime, C: Compose>(
    runtime: &R,
    compose: &C,
    spec: &ServiceSpec,
    project: &ComposeProject,
    entry: &JournalEntry,
    file_now: Option<&[u8]>,
    gate: &GateOptions,
) -> Result<(), String> {
    let intent = &entry.intent;
    let old = intent.file.old_bytes.to_bytes().ok_or_else(|| {
        format!(
            "the journal's copy of {} is damaged; restore it by hand",
            intent.file.path.display()
        )
    })?;
    match file_now {
        // A file the update created is removed again; its bytes were checked to be lookout's.
        Some(current) if intent.file.created => {
            compose::remove_created(&intent.file.path, current).map_err(|e| e.to_string())?;
        }
        Some(current) if current != old.as_slice() => {
            compose::restore(&intent.file.path, &old, current).map_err(|e| e.to_string())?;
        }
        _ => {}
    }
    // The old image is under the rollback tag when the update got that far; put its own tag back.
    let rollback_ref = format!("{}:{}", intent.from.image, rollback_tag(&intent.service));
    let old_id = match runtime
        .image(&rollback_ref)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(image) => {
            let tag = intent.from.tag.as_deref().unwrap_or("latest");
            runtime
                .tag(&image.id, &intent.from.image, tag)
                .await
                .map_err(|e| e.to_string())?;
            image.id
        }
        None => {
            let reference = format!(
                "{}:{}",
                intent.from.image,
                intent.from.tag.as_deref().unwrap_or("latest")
            );
            runtime
                .image(&reference)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("the old image {reference} is gone; cannot restore it"))?
                .id
        }
    };
    // Every service the update recreated (a group's), as the journal recorded them.
    let services: Vec<&str> = match &intent.compose {
        Some(run) if !run.services.is_empty() => run.services.iter().map(String::as_str).collect(),
        _ => vec![spec.compose_service.as_str()],
    };
    compose
        .up(project, &services)
        .await
        .map_err(|e| e.to_string())?;
    for service in services {
        wait_healthy(runtime, &project.name, service, &old_id, gate)
            .await
            .map_err(|f| format!("the old container of {service} is not healthy: {f}"))?;
    }
    Ok(())
}

/// The compose project an interrupted update used, as its journal entry recorded it.
pub(crate) fn journaled_project(run: &crate::state::ComposeRun) -> ComposeProject {
    ComposeProject {
        files: run.files.clone(),
        project_dir: run.project_dir.clone(),
        name: run.name.clone(),
        env_files: run.env_files.clone(),
        explicit_name: run.explicit_name,
        explicit_dir: run.explicit_dir,
        profiles: run.profiles.clone(),
        replicas: run.replicas.clone(),
        source: crate::runtime::ProjectSource::Journal,
    }
}
