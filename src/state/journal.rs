//! The update journal: what an update is about to do and how far it got, written down before it
//! touches anything, so a lookout that starts after a crash can finish or undo it.
//!
//! This module holds the data model, the pure state transitions (`begin_update`, `advance`,
//! `finish`) and the pure recovery decision [`decide_recovery`]. The store persists the
//! transitions; the update engine acts on the decision.

use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::{
    ChangeKind, ChangeOutcome, FailedCandidate, HISTORY_LIMIT, HistoryEntry, ImageVersion, State,
};

/// How far an update got. Each step is recorded *after* it is done, except
/// [`Step::RollingBack`], which is recorded before the rollback starts. Steps only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The intent is recorded; nothing outside lookout has changed.
    Planned,
    /// The candidate image was pulled by digest; what runs has not changed.
    Pulled,
    /// The image that runs now was tagged so that rollback can restore it exactly.
    OldImageTagged,
    /// The compose or `.env` file holds the new bytes (for a digest-only update, whose file
    /// does not change: the tag now points at the new image).
    FileWritten,
    /// `compose up` replaced the old container with one on the new image.
    ContainerStarted,
    /// The new container is being watched until it is healthy or the gate times out.
    HealthGate,
    /// The update is being undone: old file bytes, old image, old container.
    RollingBack,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Step::Planned => "planned",
            Step::Pulled => "pulled",
            Step::OldImageTagged => "old_image_tagged",
            Step::FileWritten => "file_written",
            Step::ContainerStarted => "container_started",
            Step::HealthGate => "health_gate",
            Step::RollingBack => "rolling_back",
        };
        f.write_str(name)
    }
}

/// Exact bytes kept in the state file so rollback can restore a file byte for byte.
///
/// UTF-8 text (every compose and `.env` file in practice) is stored as is, readable by a person;
/// anything else as hex. `Debug` prints only the length: `.env` files hold secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "encoding", content = "data", rename_all = "snake_case")]
pub enum SavedBytes {
    Utf8(String),
    Hex(String),
}

impl SavedBytes {
    pub fn new(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => SavedBytes::Utf8(text.to_owned()),
            Err(_) => SavedBytes::Hex(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        }
    }

    /// The original bytes; `None` if hex data was damaged by hand.
    pub(crate) fn to_bytes(&self) -> Option<Vec<u8>> {
        match self {
            SavedBytes::Utf8(text) => Some(text.as_bytes().to_vec()),
            SavedBytes::Hex(hex) => {
                if hex.len() % 2 != 0 {
                    return None;
                }
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect()
            }
        }
    }
}

impl std::fmt::Debug for SavedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.to_bytes().map_or(0, |b| b.len());
        write!(f, "SavedBytes({len} bytes)")
    }
}

/// The lowercase hex SHA-256 of `bytes`, the form used for file hashes in the journal.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The one file an update edits (a compose file or an `.env` file) before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: PathBuf,
    /// [`sha256_hex`] of the bytes before the update.
    pub old_sha256: String,
    /// [`sha256_hex`] of the bytes the update writes. Equal to `old_sha256` when the file does
    /// not change (an update that keeps the tag and moves the digest).
    pub new_sha256: String,
    /// The bytes before the update, restored on rollback (empty when `created`).
    pub old_bytes: SavedBytes,
    /// The file did not exist before the update: lookout created it (an env file for a
    /// variable whose default is in the compose file), and a rollback removes it. Absent in
    /// state files written before this field existed: those never created a file.
    #[serde(default)]
    pub created: bool,
}

/// What an update means to do, recorded before it does anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateIntent {
    /// The service's configured name.
    pub service: String,
    pub kind: ChangeKind,
    /// Who asked: `schedule`, `cli`, `api`, `webhook`, …
    pub actor: String,
    pub from: ImageVersion,
    pub to: ImageVersion,
    pub file: FileChange,
    /// How compose was run for the update, so that recovery runs it the same way even when the
    /// interruption left no container whose labels could say. Absent in older state files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<ComposeRun>,
    /// The Swarm service a Swarm update changes (then `file` names no file and `compose` is
    /// absent). Absent in older state files and for compose updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<SwarmRun>,
}

/// What a Swarm update asked of Swarm, so that a starting lookout can tell whether Swarm was
/// ever asked and what it did (`engine::swarm::resume`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmRun {
    /// The Swarm service's name.
    pub service: String,
    /// The service's `Version.Index` before the update was sent.
    pub version_before: u64,
    /// The spec's image before, and the one sent (`repo:tag@digest`).
    pub image_before: String,
    pub image_after: String,
}

/// The compose invocation an update used: every `-f` file, the folder, the project name, the
/// env files, profiles, the replicas of each service, and the services it recreated (more than
/// one for a group sharing one image value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposeRun {
    pub files: Vec<PathBuf>,
    pub project_dir: PathBuf,
    pub name: String,
    #[serde(default)]
    pub env_files: Vec<PathBuf>,
    #[serde(default)]
    pub explicit_name: bool,
    #[serde(default)]
    pub explicit_dir: bool,
    #[serde(default)]
    pub profiles: Vec<String>,
    #[serde(default)]
    pub replicas: std::collections::BTreeMap<String, usize>,
    /// The compose services the update recreated, in order.
    pub services: Vec<String>,
}

/// An update in flight: its intent and the last step it reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub intent: UpdateIntent,
    pub step: Step,
    pub started_at: Timestamp,
    /// When `step` was recorded.
    pub step_at: Timestamp,
}

/// A journal operation that does not fit the journal as it is. These are bugs in the caller,
/// not conditions of the machine; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error(
        "service {service}: an update is already in flight (step {step}); finish it before starting another"
    )]
    AlreadyInFlight { service: String, step: Step },
    #[error("service {service}: no update is in flight")]
    NotInFlight { service: String },
    #[error("service {service}: the update cannot go back from step {from} to step {to}")]
    StepBackwards {
        service: String,
        from: Step,
        to: Step,
    },
    #[error(
        "service {service}: the recreation of its container cannot go back from step {from:?} \
         to step {to:?}"
    )]
    StandaloneStepBackwards {
        service: String,
        from: StandaloneStep,
        to: StandaloneStep,
    },
    #[error(
        "service {service}: the saved old bytes of {path} do not hash to old_sha256 {expected}; refusing to journal a rollback that could not restore them"
    )]
    OldBytesMismatch {
        service: String,
        path: PathBuf,
        expected: String,
    },
}

impl State {
    /// The update in flight for `service`, if any.
    pub(crate) fn journal_entry(&self, service: &str) -> Option<&JournalEntry> {
        self.journal.iter().find(|e| e.intent.service == service)
    }

    fn journal_entry_mut(&mut self, service: &str) -> Result<&mut JournalEntry, JournalError> {
        self.journal
            .iter_mut()
            .find(|e| e.intent.service == service)
            .ok_or_else(|| JournalError::NotInFlight {
                service: service.to_owned(),
            })
    }

    /// Records the intent of an update at [`Step::Planned`].
    pub(crate) fn begin_update(
        &mut self,
        intent: UpdateIntent,
        now: Timestamp,
    ) -> Result<(), JournalError> {
        if let Some(entry) = self.journal_entry(&intent.service) {
            return Err(JournalError::AlreadyInFlight {
                service: intent.service,
                step: entry.step,
            });
        }
        let restorable = intent
            .file
            .old_bytes
            .to_bytes()
            .is_some_and(|b| sha256_hex(&b) == intent.file.old_sha256);
        if !restorable {
            return Err(JournalError::OldBytesMismatch {
                service: intent.service,
                path: intent.file.path,
                expected: intent.file.old_sha256,
            });
        }
        self.journal.push(JournalEntry {
            intent,
            step: Step::Planned,
            started_at: now,
            step_at: now,
        });
        Ok(())
    }

    /// Records that the update of `service` reached `step`. Recording the current step again
    /// is allowed (a retried step); going back is not.
    pub(crate) fn advance(
        &mut self,
        service: &str,
        step: Step,
        now: Timestamp,
    ) -> Result<(), JournalError> {
        let entry = self.journal_entry_mut(service)?;
        if step < entry.step {
            return Err(JournalError::StepBackwards {
                service: service.to_owned(),
                from: entry.step,
                to: step,
            });
        }
        entry.step = step;
        entry.step_at = now;
        Ok(())
    }

    /// Ends the update of `service`: removes its journal entry, appends it to the history and
    /// sets what runs, the last update and the failed candidate according to `outcome`.
    pub fn finish(
        &mut self,
        service: &str,
        outcome: ChangeOutcome,
        now: Timestamp,
    ) -> Result<HistoryEntry, JournalError> {
        let index = self
            .journal
            .iter()
            .position(|e| e.intent.service == service)
            .ok_or_else(|| JournalError::NotInFlight {
                service: service.to_owned(),
            })?;
        let entry = self.journal.remove(index);
        let intent = entry.intent;
        let record = HistoryEntry {
            kind: intent.kind,
            actor: intent.actor,
            from: intent.from,
            to: intent.to,
            started_at: entry.started_at,
            finished_at: now,
            duration_ms: 0,
            outcome,
        };
        Ok(self.record_finished(service, record, now))
    }

    /// Records a finished change in the history of `service` and sets what runs, the last
    /// update and the failed candidate according to its outcome (for compose and standalone
    /// updates alike).
    fn record_finished(
        &mut self,
        service: &str,
        mut record: HistoryEntry,
        now: Timestamp,
    ) -> HistoryEntry {
        record.duration_ms = now
            .duration_since(record.started_at)
            .as_millis()
            .try_into()
            .unwrap_or(0);
        let svc = self.services.entry(service.to_owned()).or_default();
        match record.outcome.clone() {
            ChangeOutcome::Committed => {
                if svc
                    .failed_candidate
                    .as_ref()
                    .is_some_and(|f| f.version == record.to)
                {
                    svc.failed_candidate = None;
                }
                svc.running = Some(record.to.clone());
                svc.last_update = Some(now);
            }
            ChangeOutcome::RolledBack { reason } | ChangeOutcome::RollbackFailed { reason } => {
                svc.failed_candidate = Some(FailedCandidate {
                    version: record.to.clone(),
                    reason,
                    at: now,
                });
                svc.running = Some(record.from.clone());
            }
            ChangeOutcome::Abandoned { .. } => svc.running = Some(record.from.clone()),
        }
        svc.history.push(record.clone());
        let excess = svc.history.len().saturating_sub(HISTORY_LIMIT);
        svc.history.drain(..excess);
        record
    }
}

/// What a starting lookout sees of a service whose update was in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// [`sha256_hex`] of the edited file now; `None` if the file is missing (which, for a file
    /// the update creates, is its old state).
    pub file_sha256: Option<String>,
    /// Digest of the image the service's container runs now; `None` if no container runs.
    pub running_digest: Option<String>,
    /// Whether that container passed the health gate just now.
    pub healthy: bool,
}

/// What to do about an update found in the journal at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The new file and the new image are in place and healthy: finish as committed.
    Commit,
    /// Something of the update is in effect but not proven good, or a rollback was under way:
    /// restore the old bytes and the old image (both steps are safe to repeat).
    RollBack,
    /// Nothing the update changes is in effect: drop the entry, touch nothing.
    NothingToDo,
    /// The file holds neither the old nor the new bytes (or is gone): someone else changed it.
    /// lookout does not overwrite it; an operator decides.
    Conflict,
}

/// Decides how to recover an interrupted update. Pure.
///
/// ```text
/// file now \ runs now   new, healthy  new, unhealthy  old          other or none
/// neither old nor new   Conflict      Conflict        Conflict     Conflict
/// (step RollingBack, any file but the above: RollBack)
/// old bytes             RollBack      RollBack        NothingToDo  NothingToDo
/// new bytes             Commit        RollBack        RollBack     RollBack
/// unchanged (old = new) Commit        RollBack        NothingToDo before OldImageTagged,
///                                                     RollBack from it on
/// ```
///
/// When the file does not change, only the tag moved; before the old image is tagged the tag
/// cannot have moved, from then on it may have. For a file the update creates, "old" is the
/// file missing (an existing file, even an empty one, is someone else's).
pub fn decide_recovery(entry: &JournalEntry, seen: &Observed) -> Recovery {
    let file = &entry.intent.file;
    let hash = seen.file_sha256.as_deref();
    let file_old = if file.created {
        hash.is_none()
    } else {
        hash == Some(file.old_sha256.as_str())
    };
    let file_new = hash == Some(file.new_sha256.as_str());
    if !file_old && !file_new {
        return Recovery::Conflict;
    }
    if entry.step == Step::RollingBack {
        return Recovery::RollBack;
    }
    let digest = seen.running_digest.as_deref();
    let runs_new = digest == Some(entry.intent.to.digest.as_str());
    match (file_old, file_new) {
        // The file does not change in this update: only the tag and the container tell.
        (true, true) => {
            if runs_new {
                if seen.healthy {
                    Recovery::Commit
                } else {
                    Recovery::RollBack
                }
            } else if entry.step < Step::OldImageTagged {
                Recovery::NothingToDo
            } else {
                Recovery::RollBack
            }
        }
        (true, false) if runs_new => Recovery::RollBack,
        (true, false) => Recovery::NothingToDo,
        _ if runs_new && seen.healthy => Recovery::Commit,
        _ => Recovery::RollBack,
    }
}

// Standalone containers (`docker run`): the journal of their recreation.

/// How far the recreation of a standalone container got. Each step is recorded *after* it is
/// done, except [`StandaloneStep::RollingBack`], recorded before the rollback starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StandaloneStep {
    /// The intent is recorded; nothing has changed.
    Planned,
    /// The old container is named `NAME-lookout-old`.
    OldRenamed,
    /// Its dependents and the old container are stopped.
    OldStopped,
    /// The new container exists under `NAME` (its id is recorded).
    NewCreated,
    /// The new container was started and is being health gated.
    HealthGate,
    /// The new container is proven; the old one is being removed and the dependents recreated.
    Committing,
    /// Being undone: the new container goes, the old one gets its name back and starts.
    RollingBack,
}

/// A standalone container's recreation in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandaloneEntry {
    /// The service's configured name.
    pub service: String,
    pub kind: ChangeKind,
    pub actor: String,
    pub from: ImageVersion,
    pub to: ImageVersion,
    /// The container's name (what the new container is called too).
    pub container: String,
    pub old_id: String,
    /// The image the old container runs (`sha256:…`), whose tag a rollback gives back.
    #[serde(default)]
    pub old_image_id: String,
    /// Set from [`StandaloneStep::NewCreated`] on.
    #[serde(default)]
    pub new_id: Option<String>,
    /// The old container ran (a stopped one is recreated stopped, and not started again).
    #[serde(default = "yes")]
    pub was_running: bool,
    /// The containers stopped before and recreated after it, in recreation order.
    #[serde(default)]
    pub dependents: Vec<String>,
    pub step: StandaloneStep,
    pub started_at: Timestamp,
    pub step_at: Timestamp,
}

fn yes() -> bool {
    true
}

/// The name the old container has while its replacement is proven.
pub fn standalone_old_name(container: &str) -> String {
    format!("{container}-lookout-old")
}

impl State {
    /// Records the intent of a standalone recreation at [`StandaloneStep::Planned`].
    pub(crate) fn begin_standalone(&mut self, entry: StandaloneEntry) -> Result<(), JournalError> {
        let busy = self
            .journal_entry(&entry.service)
            .map(|e| e.step)
            .or_else(|| {
                self.standalone_journal
                    .iter()
                    .find(|e| e.service == entry.service)
                    .map(|_| Step::Planned)
            });
        if let Some(step) = busy {
            return Err(JournalError::AlreadyInFlight {
                service: entry.service,
                step,
            });
        }
        self.standalone_journal.push(StandaloneEntry {
            step: StandaloneStep::Planned,
            ..entry
        });
        Ok(())
    }

    /// Records that the standalone recreation of `service` reached `step` (and, once created,
    /// the new container's id). Steps only move forward.
    pub(crate) fn advance_standalone(
        &mut self,
        service: &str,
        step: StandaloneStep,
        new_id: Option<&str>,
        now: Timestamp,
    ) -> Result<(), JournalError> {
        let entry = self
            .standalone_journal
            .iter_mut()
            .find(|e| e.service == service)
            .ok_or_else(|| JournalError::NotInFlight {
                service: service.to_owned(),
            })?;
        if step < entry.step {
            return Err(JournalError::StandaloneStepBackwards {
                service: service.to_owned(),
                from: entry.step,
                to: step,
            });
        }
        entry.step = step;
        entry.step_at = now;
        if let Some(id) = new_id {
            entry.new_id = Some(id.to_owned());
        }
        Ok(())
    }

    /// Ends the standalone recreation of `service`, recording it in the history as
    /// [`State::finish`] does for compose updates.
    pub fn finish_standalone(
        &mut self,
        service: &str,
        outcome: ChangeOutcome,
        now: Timestamp,
    ) -> Result<HistoryEntry, JournalError> {
        let index = self
            .standalone_journal
            .iter()
            .position(|e| e.service == service)
            .ok_or_else(|| JournalError::NotInFlight {
                service: service.to_owned(),
            })?;
        let entry = self.standalone_journal.remove(index);
        let record = HistoryEntry {
            kind: entry.kind,
            actor: entry.actor,
            from: entry.from,
            to: entry.to,
            started_at: entry.started_at,
            finished_at: now,
            duration_ms: 0,
            outcome,
        };
        Ok(self.record_finished(service, record, now))
    }
}

/// What a starting lookout sees of a standalone container whose recreation was in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandaloneObserved {
    /// The id of the container that holds the name `NAME` now, if any.
    pub under_name: Option<String>,
    /// The id of the container named `NAME-lookout-old` now, if any.
    pub under_old_name: Option<String>,
    /// The container under `NAME` passed the health gate just now.
    pub healthy: bool,
}

/// What to do about a standalone recreation found in the journal at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandaloneRecovery {
    /// The new container is proven (or the old one is already gone): remove the old container
    /// if it is still there, recreate the dependents.
    Commit,
    /// Remove the new container if there is one, give the old one its name back, start it.
    RollBack,
    /// The old container still has its name: start it (and its dependents) if it ran.
    NothingToDo,
    /// Neither container is where the journal says: an operator decides.
    Conflict,
}

/// Decides how to recover an interrupted standalone recreation. Pure.
///
/// ```text
/// under NAME \ under NAME-lookout-old   the old one            nothing
/// the old one                           (impossible) Conflict  NothingToDo
/// another (the new) one                 Commit if healthy and  Commit (the old one was
///                                       not rolling back,      removed: only a proven new
///                                       else RollBack          container is kept)
/// nothing                               RollBack               Conflict
/// ```
///
/// Before [`StandaloneStep::NewCreated`] the new container's id is not known; a container under
/// `NAME` while the old one is renamed is lookout's own (it holds the update lock). When the
/// new id is known, a container under `NAME` with another id is someone else's: Conflict.
pub fn decide_standalone_recovery(
    entry: &StandaloneEntry,
    seen: &StandaloneObserved,
) -> StandaloneRecovery {
    let old = Some(entry.old_id.as_str());
    let under_name = seen.under_name.as_deref();
    let under_old = seen.under_old_name.as_deref();
    if under_name.is_some() && under_name == old {
        return if under_old.is_none() {
            StandaloneRecovery::NothingToDo
        } else {
            StandaloneRecovery::Conflict
        };
    }
    let new_known = entry.new_id.as_deref();
    let is_new = |id: &str| new_known.is_none_or(|n| n == id);
    match (under_name, under_old == old && under_old.is_some()) {
        (Some(id), _) if !is_new(id) => StandaloneRecovery::Conflict,
        (Some(_), true) => {
            if seen.healthy && entry.step != StandaloneStep::RollingBack {
                StandaloneRecovery::Commit
            } else {
                StandaloneRecovery::RollBack
            }
        }
        (Some(_), false) if under_old.is_none() && new_known.is_some() => {
            StandaloneRecovery::Commit
        }
        (None, true) => StandaloneRecovery::RollBack,
        _ => StandaloneRecovery::Conflict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const OLD_FILE: &[u8] = b"services:\n  web:\n    image: nginx:1.27.3\n";
    const NEW_FILE: &[u8] = b"services:\n  web:\n    image: nginx:1.27.4\n";

    fn version(tag: &str, digest: &str) -> ImageVersion {
        ImageVersion {
            image: "docker.io/library/nginx".into(),
            tag: Some(tag.into()),
            digest: digest.into(),
        }
    }

    /// An update of `web` from 1.27.3 to 1.27.4; `file_changes: false` makes it a digest-only
    /// update whose file stays the same.
    fn intent(file_changes: bool) -> UpdateIntent {
        let new_file = if file_changes { NEW_FILE } else { OLD_FILE };
        UpdateIntent {
            service: "web".into(),
            kind: ChangeKind::Update,
            actor: "schedule".into(),
            from: version("1.27.3", "sha256:old"),
            to: version("1.27.4", "sha256:new"),
            file: FileChange {
                path: "/srv/web/compose.yaml".into(),
                old_sha256: sha256_hex(OLD_FILE),
                new_sha256: sha256_hex(new_file),
                old_bytes: SavedBytes::new(OLD_FILE),
                created: false,
            },
            compose: None,
            swarm: None,
        }
    }

    /// `file`: old | new | other | missing; `runs`: old | new | other | none.
    fn check(
        file_changes: bool,
        step: Step,
        file: &str,
        runs: &str,
        healthy: bool,
        expect: Recovery,
    ) {
        let entry = JournalEntry {
            intent: intent(file_changes),
            step,
            started_at: ts("2025-03-01T10:00:00Z"),
            step_at: ts("2025-03-01T10:00:05Z"),
        };
        let file_sha256 = match file {
            "old" => Some(sha256_hex(OLD_FILE)),
            "new" => Some(sha256_hex(NEW_FILE)),
            "other" => Some(sha256_hex(b"edited by hand")),
            "missing" => None,
            _ => panic!("bad file state {file}"),
        };
        let running_digest = match runs {
            "old" => Some("sha256:old".to_string()),
            "new" => Some("sha256:new".to_string()),
            "other" => Some("sha256:other".to_string()),
            "none" => None,
            _ => panic!("bad container state {runs}"),
        };
        let seen = Observed {
            file_sha256,
            running_digest,
            healthy,
        };
        let got = decide_recovery(&entry, &seen);
        assert_eq!(
            got, expect,
            "file_changes={file_changes} step={step} file={file} runs={runs} healthy={healthy}"
        );
    }

    #[test]
    fn recovery_when_the_file_changes() {
        use Recovery::*;
        use Step::*;
        // Someone else changed the file: never overwrite it, whatever the step.
        check(true, HealthGate, "other", "new", true, Conflict);
        check(true, Planned, "other", "old", true, Conflict);
        check(true, RollingBack, "missing", "old", true, Conflict);
        // A rollback was under way: finish it, even if the new version now looks healthy.
        check(true, RollingBack, "new", "new", true, RollBack);
        check(true, RollingBack, "old", "old", true, RollBack);
        check(true, RollingBack, "old", "none", false, RollBack);
        // The new bytes and a healthy new container: commit, whatever step was recorded.
        check(true, HealthGate, "new", "new", true, Commit);
        check(true, FileWritten, "new", "new", true, Commit);
        // New bytes but the new version is not proven: roll back.
        check(true, HealthGate, "new", "new", false, RollBack);
        check(true, FileWritten, "new", "old", true, RollBack);
        check(true, OldImageTagged, "new", "old", true, RollBack);
        check(true, ContainerStarted, "new", "none", false, RollBack);
        check(true, ContainerStarted, "new", "other", true, RollBack);
        // Old bytes: the update never took effect.
        check(true, Planned, "old", "old", true, NothingToDo);
        check(true, Pulled, "old", "old", false, NothingToDo);
        check(true, OldImageTagged, "old", "none", false, NothingToDo);
        // Old bytes but the new image runs: inconsistent, undo it.
        check(true, ContainerStarted, "old", "new", true, RollBack);
    }

    #[test]
    fn recovery_when_only_the_digest_changes() {
        use Recovery::*;
        use Step::*;
        check(false, HealthGate, "old", "new", true, Commit);
        check(false, HealthGate, "old", "new", false, RollBack);
        check(false, Planned, "old", "old", true, NothingToDo);
        check(false, Pulled, "old", "none", false, NothingToDo);
        // Once the old image is tagged, the tag may have moved: restore it.
        check(false, OldImageTagged, "old", "old", true, RollBack);
        check(false, FileWritten, "old", "none", false, RollBack);
        check(false, RollingBack, "old", "new", true, RollBack);
        check(false, HealthGate, "other", "new", true, Conflict);
    }

    #[test]
    fn recovery_when_the_update_creates_the_file() {
        use Recovery::*;
        use Step::*;
        let new_env = b"TAG=1.27.4\n";
        let mut created = intent(true);
        created.file = FileChange {
            path: "/srv/web/.env".into(),
            old_sha256: sha256_hex(b""),
            new_sha256: sha256_hex(new_env),
            old_bytes: SavedBytes::new(b""),
            created: true,
        };
        /// Step, the file now (`None`: missing), what runs, healthy, the decision.
        type Case<'a> = (Step, Option<&'a [u8]>, &'a str, bool, Recovery);
        let cases: &[Case] = &[
            // Not created yet: nothing happened.
            (Pulled, None, "old", true, NothingToDo),
            (OldImageTagged, None, "old", true, NothingToDo),
            // Created, the new container healthy: commit; anything else: roll back.
            (HealthGate, Some(new_env), "new", true, Commit),
            (HealthGate, Some(new_env), "new", false, RollBack),
            (FileWritten, Some(new_env), "old", true, RollBack),
            // A rollback that removed the file already, or not yet: finish it.
            (RollingBack, None, "old", true, RollBack),
            (RollingBack, Some(new_env), "new", false, RollBack),
            // An empty file where lookout created none, or other bytes: someone else's.
            (FileWritten, Some(b""), "old", true, Conflict),
            (HealthGate, Some(b"TAG=9\n"), "new", true, Conflict),
        ];
        for (step, file, runs, healthy, expect) in cases {
            let entry = JournalEntry {
                intent: created.clone(),
                step: *step,
                started_at: ts("2025-03-01T10:00:00Z"),
                step_at: ts("2025-03-01T10:00:05Z"),
            };
            let seen = Observed {
                file_sha256: file.map(sha256_hex),
                running_digest: Some(format!("sha256:{runs}")),
                healthy: *healthy,
            };
            assert_eq!(
                decide_recovery(&entry, &seen),
                *expect,
                "step={step} file={file:?} runs={runs} healthy={healthy}"
            );
        }
    }

    #[test]
    fn a_journal_written_before_created_existed_still_loads() {
        let json = serde_json::json!({
            "path": "/srv/web/compose.yaml",
            "old_sha256": sha256_hex(OLD_FILE),
            "new_sha256": sha256_hex(NEW_FILE),
            "old_bytes": {"encoding": "utf8", "data": "services:\n  web:\n    image: nginx:1.27.3\n"},
        });
        let change: FileChange = serde_json::from_value(json).unwrap();
        assert_eq!(change, intent(true).file);
        assert!(!change.created);
    }

    #[test]
    fn begin_advance_finish_committed() {
        let mut state = State::default();
        let t0 = ts("2025-03-01T10:00:00Z");
        state.begin_update(intent(true), t0).unwrap();
        assert_eq!(state.journal_entry("web").unwrap().step, Step::Planned);
        for (i, step) in [Step::Pulled, Step::OldImageTagged, Step::FileWritten]
            .into_iter()
            .enumerate()
        {
            let now = ts(&format!("2025-03-01T10:00:0{}Z", i + 1));
            state.advance("web", step, now).unwrap();
            let entry = state.journal_entry("web").unwrap();
            assert_eq!((entry.step, entry.step_at), (step, now));
        }
        // Repeating a step is allowed; going back is not.
        state
            .advance("web", Step::FileWritten, ts("2025-03-01T10:00:04Z"))
            .unwrap();
        let back = state.advance("web", Step::Pulled, ts("2025-03-01T10:00:05Z"));
        assert_eq!(
            back,
            Err(JournalError::StepBackwards {
                service: "web".into(),
                from: Step::FileWritten,
                to: Step::Pulled
            })
        );

        let done = ts("2025-03-01T10:01:30.500Z");
        let record = state.finish("web", ChangeOutcome::Committed, done).unwrap();
        assert!(state.journal.is_empty());
        assert_eq!(record.duration_ms, 90_500);
        assert_eq!(record.actor, "schedule");
        let svc = &state.services["web"];
        assert_eq!(svc.running, Some(version("1.27.4", "sha256:new")));
        assert_eq!(svc.last_update, Some(done));
        assert_eq!(svc.history, vec![record]);
    }

    #[test]
    fn rolled_back_blocks_the_candidate_and_commit_of_it_clears_it() {
        let mut state = State::default();
        let t0 = ts("2025-03-01T10:00:00Z");
        state.begin_update(intent(true), t0).unwrap();
        let reason = "health gate timed out after 60s".to_string();
        state
            .finish(
                "web",
                ChangeOutcome::RolledBack {
                    reason: reason.clone(),
                },
                t0,
            )
            .unwrap();
        let svc = &state.services["web"];
        assert_eq!(svc.running, Some(version("1.27.3", "sha256:old")));
        assert_eq!(svc.last_update, None, "a rollback is not an update");
        let failed = svc.failed_candidate.clone().unwrap();
        assert_eq!((failed.version, failed.reason), (intent(true).to, reason));

        // An interrupted attempt blames nobody and leaves the failed candidate alone.
        state.begin_update(intent(true), t0).unwrap();
        let abandoned = ChangeOutcome::Abandoned {
            reason: "interrupted".into(),
        };
        state.finish("web", abandoned, t0).unwrap();
        assert!(state.services["web"].failed_candidate.is_some());

        // The same candidate succeeding later clears it.
        state.begin_update(intent(true), t0).unwrap();
        state.finish("web", ChangeOutcome::Committed, t0).unwrap();
        assert_eq!(state.services["web"].failed_candidate, None);
        assert_eq!(state.services["web"].history.len(), 3);
    }

    #[test]
    fn one_update_per_service_and_only_known_ones() {
        let mut state = State::default();
        let t0 = ts("2025-03-01T10:00:00Z");
        state.begin_update(intent(true), t0).unwrap();
        assert_eq!(
            state.begin_update(intent(true), t0),
            Err(JournalError::AlreadyInFlight {
                service: "web".into(),
                step: Step::Planned
            })
        );
        let mut other = intent(true);
        other.service = "db".into();
        state.begin_update(other, t0).unwrap();
        assert_eq!(state.journal.len(), 2);
        let not_in_flight = JournalError::NotInFlight {
            service: "cache".into(),
        };
        assert_eq!(
            state.advance("cache", Step::Pulled, t0),
            Err(not_in_flight.clone())
        );
        assert_eq!(
            state.finish("cache", ChangeOutcome::Committed, t0),
            Err(not_in_flight)
        );
    }

    #[test]
    fn refuses_intent_whose_saved_bytes_do_not_match_the_hash() {
        let mut state = State::default();
        let mut bad = intent(true);
        bad.file.old_bytes = SavedBytes::new(NEW_FILE);
        let err = state
            .begin_update(bad, ts("2025-03-01T10:00:00Z"))
            .unwrap_err();
        assert!(
            matches!(err, JournalError::OldBytesMismatch { .. }),
            "{err}"
        );
        assert!(state.journal.is_empty());
    }

    #[test]
    fn history_keeps_the_newest_entries() {
        let mut state = State::default();
        for minute in 0..HISTORY_LIMIT + 7 {
            let now = Timestamp::from_second(1_700_000_000 + 60 * minute as i64).unwrap();
            state.begin_update(intent(true), now).unwrap();
            state.finish("web", ChangeOutcome::Committed, now).unwrap();
        }
        let history = &state.services["web"].history;
        assert_eq!(history.len(), HISTORY_LIMIT);
        let first = Timestamp::from_second(1_700_000_000 + 60 * 7).unwrap();
        assert_eq!(history[0].started_at, first, "the oldest 7 were dropped");
    }

    #[test]
    fn duration_is_zero_when_the_clock_stepped_back() {
        let mut state = State::default();
        state
            .begin_update(intent(true), ts("2025-03-01T10:00:00Z"))
            .unwrap();
        let record = state
            .finish("web", ChangeOutcome::Committed, ts("2025-03-01T09:59:00Z"))
            .unwrap();
        assert_eq!(record.duration_ms, 0);
    }

    #[test]
    fn saved_bytes_restore_exactly_and_hide_content_in_debug() {
        let text = b"TOKEN=s3cret\n";
        let binary = [0u8, 159, 146, 150, 255, b'\n'];
        for bytes in [&text[..], &binary[..], &[][..]] {
            let saved = SavedBytes::new(bytes);
            let json = serde_json::to_string(&saved).unwrap();
            let back: SavedBytes = serde_json::from_str(&json).unwrap();
            assert_eq!(back.to_bytes().as_deref(), Some(bytes), "{json}");
            assert!(!format!("{saved:?}").contains("s3cret"));
        }
        assert!(matches!(SavedBytes::new(&binary), SavedBytes::Hex(_)));
        assert_eq!(SavedBytes::Hex("abc".into()).to_bytes(), None);
        assert_eq!(SavedBytes::Hex("zz".into()).to_bytes(), None);
    }

    #[test]
    fn sha256_hex_matches_a_known_value() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn standalone_entry(step: StandaloneStep, new_id: Option<&str>) -> StandaloneEntry {
        StandaloneEntry {
            service: "web".into(),
            kind: ChangeKind::Update,
            actor: "schedule".into(),
            from: ImageVersion {
                image: "app".into(),
                tag: Some("1".into()),
                digest: "sha256:old".into(),
            },
            to: ImageVersion {
                image: "app".into(),
                tag: Some("2".into()),
                digest: "sha256:new".into(),
            },
            container: "web".into(),
            old_id: "old".into(),
            old_image_id: "sha256:oldimage".into(),
            new_id: new_id.map(str::to_owned),
            was_running: true,
            dependents: Vec::new(),
            step,
            started_at: ts("2025-03-01T10:00:00Z"),
            step_at: ts("2025-03-01T10:00:05Z"),
        }
    }

    #[test]
    fn standalone_recovery_table() {
        use StandaloneRecovery::*;
        use StandaloneStep::*;
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        // (step, journaled new id, under NAME, under NAME-lookout-old, healthy, decision)
        let cases = [
            // Crashed before the rename, or a rollback got the name back already.
            (Planned, "", "old", "", false, NothingToDo),
            (RollingBack, "new", "old", "", false, NothingToDo),
            // Renamed (and maybe stopped), nothing under NAME yet: undo.
            (OldRenamed, "", "", "old", false, RollBack),
            (OldStopped, "", "", "old", false, RollBack),
            (RollingBack, "new", "", "old", false, RollBack),
            // Created but the id not journaled yet: the container under NAME is lookout's.
            (OldStopped, "", "new", "old", false, RollBack),
            (OldStopped, "", "new", "old", true, Commit),
            // The new one is proven healthy now: keep it; not healthy: undo.
            (NewCreated, "new", "new", "old", true, Commit),
            (HealthGate, "new", "new", "old", true, Commit),
            (HealthGate, "new", "new", "old", false, RollBack),
            // A rollback under way goes on even if the new one looks healthy now.
            (RollingBack, "new", "new", "old", true, RollBack),
            // The old one was removed: that happens only after the gate passed.
            (Committing, "new", "new", "", false, Commit),
            (Committing, "new", "new", "", true, Commit),
            // Someone else's container under NAME, or nothing anywhere: an operator decides.
            (HealthGate, "new", "other", "old", true, Conflict),
            (HealthGate, "new", "", "", false, Conflict),
            (OldRenamed, "", "", "", false, Conflict),
            (Planned, "", "old", "old", false, Conflict),
            (HealthGate, "new", "new", "other", true, Conflict),
        ];
        for (step, new_id, name, old_name, healthy, want) in cases {
            let entry = standalone_entry(step, some(new_id).as_deref());
            let seen = StandaloneObserved {
                under_name: some(name),
                under_old_name: some(old_name),
                healthy,
            };
            assert_eq!(
                decide_standalone_recovery(&entry, &seen),
                want,
                "step={step:?} new_id={new_id} NAME={name} old={old_name} healthy={healthy}"
            );
        }
    }

    #[test]
    fn standalone_journal_records_history_like_compose_updates() {
        let mut state = State::default();
        let now = ts("2025-03-01T10:00:00Z");
        state
            .begin_standalone(standalone_entry(StandaloneStep::HealthGate, None))
            .unwrap();
        assert_eq!(state.standalone_journal[0].step, StandaloneStep::Planned);
        assert!(matches!(
            state.begin_standalone(standalone_entry(StandaloneStep::Planned, None)),
            Err(JournalError::AlreadyInFlight { .. })
        ));
        state
            .advance_standalone("web", StandaloneStep::NewCreated, Some("new"), now)
            .unwrap();
        assert_eq!(state.standalone_journal[0].new_id.as_deref(), Some("new"));
        assert!(matches!(
            state.advance_standalone("web", StandaloneStep::OldRenamed, None, now),
            Err(JournalError::StandaloneStepBackwards { .. })
        ));
        let later = ts("2025-03-01T10:00:30Z");
        let record = state
            .finish_standalone("web", ChangeOutcome::Committed, later)
            .unwrap();
        assert_eq!(record.duration_ms, 30_000);
        assert!(state.standalone_journal.is_empty());
        let svc = &state.services["web"];
        assert_eq!(svc.running.as_ref().unwrap().digest, "sha256:new");
        assert_eq!(svc.history.len(), 1);
    }

    #[test]
    fn state_files_without_a_standalone_journal_load() {
        let state: State = serde_json::from_str(r#"{"format_version": 1}"#).unwrap();
        assert!(state.standalone_journal.is_empty());
        let text = serde_json::to_string(&State::default()).unwrap();
        assert!(!text.contains("standalone_journal"), "{text}");
    }
}
