//! The state store: what lookout remembers between runs, kept so that a crash at any moment
//! leaves it knowing which image every service runs.
//!
//! - [`model`]: the data model and the pure `parse` / `render` of the state file.
//! - [`journal`]: updates in flight, their steps, and the pure recovery decision.
//! - [`store`]: the file on disk: lock, atomic writes, backups, recovery of a damaged file.
//! - [`lock`]: the advisory lock that keeps a second lookout off the same state file.

pub mod journal;
pub mod lock;
pub mod model;
pub mod store;

pub use journal::{
    ComposeRun, FileChange, JournalEntry, JournalError, Observed, Recovery, SavedBytes,
    StandaloneEntry, StandaloneObserved, StandaloneRecovery, StandaloneStep, Step, SwarmRun,
    UpdateIntent, decide_recovery, decide_standalone_recovery, sha256_hex, standalone_old_name,
};
pub use lock::{LockError, StateLock};
pub use model::{
    ChangeKind, ChangeOutcome, FORMAT_VERSION, FailedCandidate, HISTORY_LIMIT, HistoryEntry,
    ImageVersion, ParseError, ServiceState, State, parse, render,
};
pub use store::{
    DEFAULT_BACKUPS, DEFAULT_STATE_FILE, FellBack, OpenReport, Origin, StateError, StateStore,
    StoreOptions, default_fallback_paths,
};
