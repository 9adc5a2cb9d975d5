//! The state store: opens, locks, recovers and durably writes the state file, and keeps its
//! rotating backups.
//!
//! Every change goes through one path: apply it to a copy of the state, render it, replace the
//! file with [`crate::durable::replace`], and only then adopt the copy and write a backup. A
//! failed write leaves both the file and the in-memory state as they were.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use tracing::{info, warn};

use super::journal::{JournalEntry, JournalError, Step, UpdateIntent};
use super::lock::{self, LockError, StateLock, holder_text};
use super::model::{
    ChangeOutcome, FORMAT_VERSION, FailedCandidate, HistoryEntry, ImageVersion, ParseError, State,
    parse, render,
};
use crate::durable::{self, DurableError, NewFileMode};

/// Where the state file lives unless configured otherwise.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/lookout/state.json";

/// How many backups are kept unless configured otherwise.
pub const DEFAULT_BACKUPS: usize = 5;

const STATE_FILE_MODE: NewFileMode = NewFileMode(0o600);

/// Everything that can go wrong opening or writing the state file. Each message names the file,
/// what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "cannot use state file {state}: cannot create {path}: {source}. Create the folder writable for the user lookout runs as, point `state_file` at a writable path, or set `state_fallback` to let lookout use a fallback location"
    )]
    NotWritable {
        state: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "no writable location for the state file; tried: {tried}. Point `state_file` at a writable path"
    )]
    NoWritableLocation { tried: String },
    #[error(
        "another lookout ({}) is using state file {state} (lock file {lock}). Stop it first, or give this lookout its own `state_file`",
        holder_text(*.pid)
    )]
    Locked {
        state: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    #[error("cannot lock state file {state}: {source}")]
    Lock { state: PathBuf, source: LockError },
    #[error(
        "cannot read state file {path}: {source}. Check its owner and mode (lookout needs to read and write it); the file was not changed"
    )]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "state file {path} was written by format version {found}, this lookout understands up to {FORMAT_VERSION}: upgrade lookout or point `state_file` elsewhere; the file was not changed"
    )]
    TooNew { path: PathBuf, found: u64 },
    #[error(
        "state file {path} is damaged ({problem}) and could not be moved aside to {to}: {source}. Move it away by hand and start lookout again; it will restore the newest good backup"
    )]
    SetAside {
        path: PathBuf,
        to: PathBuf,
        problem: ParseError,
        source: io::Error,
    },
    #[error(
        "cannot write state file {path}: {source}. The previous state file is unchanged; free disk space or fix the folder's permissions"
    )]
    Write { path: PathBuf, source: DurableError },
    #[error("state file {path}: {source}")]
    Journal { path: PathBuf, source: JournalError },
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How many backups to keep (`state_backups`). 0 keeps none.
    pub backups: usize,
    /// Where backups go (`state_backup_dir`); `None`: `backups/` next to the state file.
    pub backup_dir: Option<PathBuf>,
    /// Whether another location may be used when the state file's folder is not writable
    /// (`state_fallback`).
    pub fallback: bool,
    /// The fallback locations, tried in order; see [`default_fallback_paths`].
    pub fallback_paths: Vec<PathBuf>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            backups: DEFAULT_BACKUPS,
            backup_dir: None,
            fallback: false,
            fallback_paths: default_fallback_paths(|name| std::env::var_os(name)),
        }
    }
}

/// `$XDG_STATE_HOME/lookout/state.json` (or `$HOME/.local/state/lookout/state.json`), then
/// `./lookout-state.json`. `env` looks up an environment variable.
pub fn default_fallback_paths(env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let non_empty = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let state_home = non_empty("XDG_STATE_HOME")
        .or_else(|| non_empty("HOME").map(|home| home.join(".local/state")));
    state_home
        .map(|dir| dir.join("lookout/state.json"))
        .into_iter()
        .chain([PathBuf::from("lookout-state.json")])
        .collect()
}

/// What `open` found and did; the caller logs it and counts restores.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenReport {
    /// The state file in use.
    pub path: PathBuf,
    /// Set when the configured location was not writable and a fallback is used.
    pub fell_back: Option<FellBack>,
    pub origin: Origin,
}

impl OpenReport {
    /// True when a damaged state file was found (`lookout_state_restores_total` counts these).
    pub fn recovered_from_corruption(&self) -> bool {
        self.origin.is_recovery()
    }
}

/// The configured location that could not be used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct FellBack {
    pub configured: PathBuf,
    pub reason: String,
}

/// Where the state came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// No state file existed: a fresh start.
    Fresh,
    /// The state file was read as it was.
    Loaded,
    /// The state file was damaged: it was moved to `corrupt_moved_to` and `backup` was restored
    /// in its place.
    Restored {
        backup: PathBuf,
        corrupt_moved_to: PathBuf,
        problem: ParseError,
    },
    /// The state file was damaged and no backup could be read: it was moved to
    /// `corrupt_moved_to` and lookout starts fresh.
    StartedFreshAfterCorruption {
        corrupt_moved_to: PathBuf,
        problem: ParseError,
    },
}

impl Origin {
    /// True when the state file was damaged and had to be set aside.
    pub(crate) fn is_recovery(&self) -> bool {
        matches!(
            self,
            Origin::Restored { .. } | Origin::StartedFreshAfterCorruption { .. }
        )
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Fresh => f.write_str("does not exist yet: starting fresh"),
            Origin::Loaded => f.write_str("loaded"),
            Origin::Restored {
                backup,
                corrupt_moved_to,
                problem,
            } => write!(
                f,
                "state file was damaged ({problem}); restored from backup {}, damaged file set aside as {}",
                backup.display(),
                corrupt_moved_to.display()
            ),
            Origin::StartedFreshAfterCorruption {
                corrupt_moved_to,
                problem,
            } => write!(
                f,
                "state file was damaged ({problem}) and no backup could be read; starting fresh, damaged file set aside as {}",
                corrupt_moved_to.display()
            ),
        }
    }
}

/// The open, locked state file and its contents.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    backup_dir: PathBuf,
    backups: usize,
    next_backup_seq: u64,
    lock: StateLock,
    state: State,
    /// Checks recorded in memory since the file was last written (see
    /// [`StateStore::record_check`]).
    unsaved_checks: bool,
}

impl StateStore {
    /// Opens the state file at `path`: takes the lock, reads the file, and recovers a damaged
    /// one from its backups. Falls back to `options.fallback_paths` only when `options.fallback`
    /// is set and the configured folder is not writable.
    pub fn open(
        path: &Path,
        options: &StoreOptions,
        now: Timestamp,
    ) -> Result<(StateStore, OpenReport), StateError> {
        let not_writable = match Self::open_at(path, options, now) {
            Err(e @ StateError::NotWritable { .. }) if options.fallback => e,
            other => return other,
        };
        warn!(error = %not_writable, "state file location is not writable, trying fallbacks");
        let mut tried = vec![format!("{}: {not_writable}", path.display())];
        for candidate in &options.fallback_paths {
            match Self::open_at(candidate, options, now) {
                Ok((store, mut report)) => {
                    warn!(
                        configured = %path.display(),
                        using = %candidate.display(),
                        "using fallback state file; set `state_file` to silence this"
                    );
                    report.fell_back = Some(FellBack {
                        configured: path.to_owned(),
                        reason: not_writable.to_string(),
                    });
                    return Ok((store, report));
                }
                Err(e @ StateError::NotWritable { .. }) => {
                    tried.push(format!("{}: {e}", candidate.display()));
                }
                Err(e) => return Err(e),
            }
        }
        Err(StateError::NoWritableLocation {
            tried: tried.join("; "),
        })
    }

    fn open_at(
        path: &Path,
        options: &StoreOptions,
        now: Timestamp,
    ) -> Result<(StateStore, OpenReport), StateError> {
        let not_writable = |at: &Path| {
            let state = path.to_owned();
            let at = at.to_owned();
            move |source| StateError::NotWritable {
                state,
                path: at,
                source,
            }
        };
        let dir = parent_dir(path);
        fs::create_dir_all(&dir).map_err(not_writable(&dir))?;
        let lock_path = lock::lock_path(path);
        let lock = StateLock::acquire(&lock_path).map_err(|e| match e {
            LockError::Open { path: at, source } => not_writable(&at)(source),
            LockError::Held { path: lock, pid } => StateError::Locked {
                state: path.to_owned(),
                lock,
                pid,
            },
            other => StateError::Lock {
                state: path.to_owned(),
                source: other,
            },
        })?;
        let backup_dir = options
            .backup_dir
            .clone()
            .unwrap_or_else(|| dir.join("backups"));
        create_private_dir(&backup_dir).map_err(not_writable(&backup_dir))?;

        let (state, origin) = match read_state(path)? {
            None => (State::default(), Origin::Fresh),
            Some(Ok(state)) => (state, Origin::Loaded),
            Some(Err(ParseError::TooNew { found })) => {
                return Err(StateError::TooNew {
                    path: path.to_owned(),
                    found,
                });
            }
            Some(Err(problem)) => recover(path, &backup_dir, problem, now)?,
        };
        if origin.is_recovery() {
            warn!(state_file = %path.display(), "{origin}");
        } else {
            info!(state_file = %path.display(), "state file {origin}");
        }
        let next_backup_seq = list_backups(&backup_dir, path)
            .map(|list| list.last().map_or(1, |(seq, _)| seq + 1))
            .unwrap_or(1);
        let store = StateStore {
            path: path.to_owned(),
            backup_dir,
            backups: options.backups,
            next_backup_seq,
            lock,
            state,
            unsaved_checks: false,
        };
        let report = OpenReport {
            path: path.to_owned(),
            fell_back: None,
            origin,
        };
        Ok((store, report))
    }

    /// The state file in use.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file held while this store is open.
    pub fn lock_path(&self) -> &Path {
        self.lock.path()
    }

    /// The folder holding the backups.
    pub fn backup_dir(&self) -> &Path {
        &self.backup_dir
    }

    /// The state as last written.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Updates in flight, e.g. left by a crash; the engine recovers each at start.
    pub fn in_flight(&self) -> Vec<JournalEntry> {
        self.state.journal.clone()
    }

    /// Records a registry check of `service` and, when known, what it runs, in memory: the
    /// file gets it with the next write, or at [`StateStore::save_checks`] (the end of a pass).
    /// A pass of 10,000 services thus writes the file once, not 10,000 times; what a crash can
    /// lose is when each service was last checked and what it ran then, which the next check
    /// finds again (updates are journaled, never only in memory).
    pub(crate) fn record_check(
        &mut self,
        service: &str,
        running: Option<ImageVersion>,
        now: Timestamp,
    ) {
        self.state.record_check(service, running, now);
        self.unsaved_checks = true;
    }

    /// Writes the checks recorded since the last write, if there are any.
    pub(crate) fn save_checks(&mut self, now: Timestamp) -> Result<(), StateError> {
        if !self.unsaved_checks {
            return Ok(());
        }
        self.change(now, |_| Ok(()))
    }

    /// Pauses or resumes updates (the API's pause and resume); persists across restarts.
    pub(crate) fn set_paused(&mut self, paused: bool, now: Timestamp) -> Result<(), StateError> {
        self.change(now, |state| {
            state.paused = paused;
            Ok(())
        })
    }

    /// Pauses or resumes the updates of `service` alone. Durable on return.
    pub(crate) fn set_service_paused(
        &mut self,
        service: &str,
        paused: bool,
        now: Timestamp,
    ) -> Result<(), StateError> {
        self.change(now, |state| {
            state.services.entry(service.to_owned()).or_default().paused = paused;
            Ok(())
        })
    }

    /// Forgets the failed candidate of `service` so it may be tried again.
    pub fn clear_failed_candidate(
        &mut self,
        service: &str,
        now: Timestamp,
    ) -> Result<Option<FailedCandidate>, StateError> {
        self.change(now, |state| Ok(state.clear_failed_candidate(service)))
    }

    /// Journals the intent of an update before it touches anything. Durable on return.
    pub(crate) fn begin_update(
        &mut self,
        intent: UpdateIntent,
        now: Timestamp,
    ) -> Result<(), StateError> {
        self.change(now, |state| state.begin_update(intent, now))
    }

    /// Journals that the update of `service` reached `step`. Durable on return.
    pub(crate) fn advance(
        &mut self,
        service: &str,
        step: Step,
        now: Timestamp,
    ) -> Result<(), StateError> {
        self.change(now, |state| state.advance(service, step, now))
    }

    /// Ends the update of `service` with `outcome`: clears its journal entry and records it in
    /// the history. Durable on return.
    pub fn finish(
        &mut self,
        service: &str,
        outcome: ChangeOutcome,
        now: Timestamp,
    ) -> Result<HistoryEntry, StateError> {
        self.change(now, |state| state.finish(service, outcome, now))
    }

    /// Standalone recreations in flight, e.g. left by a crash.
    pub fn standalone_in_flight(&self) -> Vec<super::journal::StandaloneEntry> {
        self.state.standalone_journal.clone()
    }

    /// Journals the intent of a standalone recreation before it touches anything. Durable on
    /// return.
    pub(crate) fn begin_standalone(
        &mut self,
        entry: super::journal::StandaloneEntry,
        now: Timestamp,
    ) -> Result<(), StateError> {
        self.change(now, |state| state.begin_standalone(entry))
    }

    /// Journals that a standalone recreation reached `step`. Durable on return.
    pub(crate) fn advance_standalone(
        &mut self,
        service: &str,
        step: super::journal::StandaloneStep,
        new_id: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StateError> {
        self.change(now, |state| {
            state.advance_standalone(service, step, new_id, now)
        })
    }

    /// Ends a standalone recreation with `outcome`. Durable on return.
    pub fn finish_standalone(
        &mut self,
        service: &str,
        outcome: ChangeOutcome,
        now: Timestamp,
    ) -> Result<HistoryEntry, StateError> {
        self.change(now, |state| state.finish_standalone(service, outcome, now))
    }

    /// Applies `f` to a copy of the state and writes it; adopts the copy only once it is on disk.
    fn change<T>(
        &mut self,
        now: Timestamp,
        f: impl FnOnce(&mut State) -> Result<T, JournalError>,
    ) -> Result<T, StateError> {
        let mut next = self.state.clone();
        let out = f(&mut next).map_err(|source| StateError::Journal {
            path: self.path.clone(),
            source,
        })?;
        let text = render(&next);
        durable::replace(&self.path, text.as_bytes(), STATE_FILE_MODE).map_err(|source| {
            StateError::Write {
                path: self.path.clone(),
                source,
            }
        })?;
        self.state = next;
        self.unsaved_checks = false;
        self.write_backup(text.as_bytes(), now);
        Ok(out)
    }

    /// Writes a backup of `bytes` and prunes old ones. The state file is already safe, so a
    /// failure here is logged, not returned.
    fn write_backup(&mut self, bytes: &[u8], now: Timestamp) {
        if self.backups == 0 {
            return;
        }
        let name = backup_name(&self.path, self.next_backup_seq, now);
        let backup = self.backup_dir.join(name);
        if let Err(error) = durable::replace(&backup, bytes, STATE_FILE_MODE) {
            warn!(%error, "cannot write state backup; the state file itself was written");
            return;
        }
        self.next_backup_seq += 1;
        if let Err(error) = prune_backups(&self.backup_dir, &self.path, self.backups) {
            warn!(%error, backup_dir = %self.backup_dir.display(), "cannot remove old state backups");
        }
    }
}

/// Reads and parses the state file; `None` when it does not exist.
fn read_state(path: &Path) -> Result<Option<Result<State, ParseError>>, StateError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    Ok(Some(parse_bytes(&bytes)))
}

fn parse_bytes(bytes: &[u8]) -> Result<State, ParseError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => Err(ParseError::NotJson(format!("not UTF-8: {e}"))),
    }
}

/// Sets a damaged state file aside and restores the newest backup that parses.
fn recover(
    path: &Path,
    backup_dir: &Path,
    problem: ParseError,
    now: Timestamp,
) -> Result<(State, Origin), StateError> {
    let moved_to = set_aside(path, now).map_err(|(to, source)| StateError::SetAside {
        path: path.to_owned(),
        to,
        problem: problem.clone(),
        source,
    })?;
    let backups = list_backups(backup_dir, path).unwrap_or_else(|error| {
        warn!(%error, backup_dir = %backup_dir.display(), "cannot list state backups");
        Vec::new()
    });
    for (_, backup) in backups.iter().rev() {
        let parsed = fs::read(backup)
            .map_err(|e| e.to_string())
            .and_then(|bytes| parse_bytes(&bytes).map_err(|e| e.to_string()));
        match parsed {
            Ok(state) => {
                durable::replace(path, render(&state).as_bytes(), STATE_FILE_MODE).map_err(
                    |source| StateError::Write {
                        path: path.to_owned(),
                        source,
                    },
                )?;
                let origin = Origin::Restored {
                    backup: backup.clone(),
                    corrupt_moved_to: moved_to,
                    problem,
                };
                return Ok((state, origin));
            }
            Err(error) => {
                warn!(backup = %backup.display(), %error, "skipping unusable state backup")
            }
        }
    }
    let origin = Origin::StartedFreshAfterCorruption {
        corrupt_moved_to: moved_to,
        problem,
    };
    Ok((State::default(), origin))
}

/// Renames `path` to `<name>.corrupt-<timestamp>` (plus `-N` if taken), never replacing a file.
fn set_aside(path: &Path, now: Timestamp) -> Result<PathBuf, (PathBuf, io::Error)> {
    let base = sibling(path, &format!(".corrupt-{}", file_timestamp(now)));
    let mut to = base.clone();
    let mut n = 1;
    while to.symlink_metadata().is_ok() {
        to = sibling(&base, &format!("-{n}"));
        n += 1;
    }
    fs::rename(path, &to).map_err(|e| (to.clone(), e))?;
    if let Err(error) = durable::sync_dir(&parent_dir(path)) {
        warn!(%error, "cannot fsync state folder after setting the damaged file aside");
    }
    Ok(to)
}

/// `<state file name>.<sequence, 10 digits>.<UTC time with nanoseconds>`: unique even within
/// one nanosecond, and ordered by the sequence number, which a clock stepping back cannot
/// disturb.
fn backup_name(state_path: &Path, seq: u64, now: Timestamp) -> String {
    format!(
        "{}.{seq:010}.{}",
        file_name(state_path),
        file_timestamp(now)
    )
}

/// The backups of `state_path` in `dir`, oldest first. Files that do not follow
/// [`backup_name`] are ignored (and never deleted).
fn list_backups(dir: &Path, state_path: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let prefix = format!("{}.", file_name(state_path));
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((seq, stamp)) = rest.split_once('.') else {
            continue;
        };
        if seq.len() < 10 || stamp.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(seq) = seq.parse::<u64>() {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn prune_backups(dir: &Path, state_path: &Path, keep: usize) -> io::Result<()> {
    let backups = list_backups(dir, state_path)?;
    let excess = backups.len().saturating_sub(keep);
    for (_, old) in &backups[..excess] {
        fs::remove_file(old)?;
    }
    Ok(())
}

fn file_timestamp(now: Timestamp) -> String {
    now.strftime("%Y%m%dT%H%M%S.%NZ").to_string()
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.is_dir() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "state.json".into(), |n| n.to_string_lossy().into_owned())
}

/// `path` with `suffix` appended to its file name: `state.json` → `state.json.lock`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
