//! The one event type: one value per thing that happens.

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;

/// The events a webhook can receive (and filter on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    UpdateAvailable,
    UpdateStarted,
    Updated,
    RolledBack,
    UpdateFailed,
}

impl EventKind {
    pub(crate) const NAMES: &'static [&'static str] = &[
        "update_available",
        "update_started",
        "updated",
        "rolled_back",
        "update_failed",
    ];

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "update_available" => Some(Self::UpdateAvailable),
            "update_started" => Some(Self::UpdateStarted),
            "updated" => Some(Self::Updated),
            "rolled_back" => Some(Self::RolledBack),
            "update_failed" => Some(Self::UpdateFailed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The Docker Auto-Updater's event name, kept in the generic payload's `event` field:
    /// `update` for `updated`, `rollback` for `rolled_back`, the new name for the others.
    pub(crate) fn seed_name(self) -> &'static str {
        match self {
            Self::Updated => "update",
            Self::RolledBack => "rollback",
            other => other.as_str(),
        }
    }
}

/// What one service's update is about. Shared by every update event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateInfo {
    /// lookout's name for the service (also the metric label).
    pub service: String,
    pub compose_service: String,
    pub compose_file: PathBuf,
    /// The image reference that ran before.
    pub old_image: String,
    /// The image reference the update moves to.
    pub new_image: String,
    pub old_digest: Option<String>,
    pub new_digest: Option<String>,
    /// When the update (or, for `UpdateAvailable`, the check that found it) started. Part of
    /// the event's `id`, so an occurrence keeps its id across retries and restarts.
    pub started_at: Timestamp,
    /// How long it took, once it is over.
    pub duration: Option<Duration>,
}

/// A newer image a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewerImage {
    pub image: String,
    pub digest: Option<String>,
}

/// How one service's check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckResult {
    /// The service runs what its policy picks.
    UpToDate,
    /// A newer image is there.
    UpdateAvailable,
    /// The check failed (registry unreachable, bad answer, …).
    Failed,
}

impl CheckResult {
    pub(crate) const NAMES: &'static [&'static str] = &["up_to_date", "update_available", "failed"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The step of an update that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Plan,
    Pull,
    Journal,
    Tag,
    Edit,
    Up,
    Health,
    Verify,
    Commit,
    Rollback,
}

impl Stage {
    pub(crate) const NAMES: &'static [&'static str] = &[
        "plan", "pull", "journal", "tag", "edit", "up", "health", "verify", "commit", "rollback",
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// One thing that happened. [`crate::telemetry::Telemetry::emit`] turns it into a log line,
/// metric changes and webhook deliveries, all from this one value.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// One service's check is over.
    CheckFinished {
        service: String,
        result: CheckResult,
        update_available: Option<NewerImage>,
        duration: Duration,
    },
    /// A check was due while the previous one still ran; it was skipped.
    CheckSkipped,
    /// A newer image is there for a service (sent once per candidate by the caller).
    UpdateAvailable(UpdateInfo),
    /// An update begins.
    UpdateStarted(UpdateInfo),
    /// An update is done and healthy.
    Updated(UpdateInfo),
    /// An update failed its health gate or a later step and the old image runs again.
    RolledBack { update: UpdateInfo, reason: String },
    /// An update failed at `stage` (and was rolled back where that applies).
    UpdateFailed {
        update: UpdateInfo,
        stage: Stage,
        reason: String,
    },
    /// The state file was unreadable and was restored.
    StateRestored {
        from_backup: Option<PathBuf>,
        set_aside: Option<PathBuf>,
    },
    /// One request to a registry; `status` is `None` when no HTTP answer came.
    RegistryRequest {
        registry: String,
        method: String,
        status: Option<u16>,
    },
    /// A registry said how many requests are left.
    RateLimit { registry: String, remaining: u64 },
    /// A pass (a check of some or all services, and their updates) begins.
    PassStarted,
    /// A pass is over: how it ended for each service it looked at.
    PassFinished { services: Vec<PassService> },
}

/// How a pass ended for one service, as [`Event::PassFinished`] carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassService {
    pub service: String,
    /// The image that ran when the pass began.
    pub installed: Option<String>,
    /// The candidate, when there is one.
    pub candidate: Option<String>,
    /// The pass's result for the service, its snake_case name (`up_to_date`, `updated`, …).
    pub result: String,
    pub reason: Option<String>,
}

impl Event {
    /// The webhook event this is, if webhooks hear about it.
    pub fn kind(&self) -> Option<EventKind> {
        match self {
            Self::UpdateAvailable(_) => Some(EventKind::UpdateAvailable),
            Self::UpdateStarted(_) => Some(EventKind::UpdateStarted),
            Self::Updated(_) => Some(EventKind::Updated),
            Self::RolledBack { .. } => Some(EventKind::RolledBack),
            Self::UpdateFailed { .. } => Some(EventKind::UpdateFailed),
            _ => None,
        }
    }

    /// The update an update event is about.
    pub fn update(&self) -> Option<&UpdateInfo> {
        match self {
            Self::UpdateAvailable(u) | Self::UpdateStarted(u) | Self::Updated(u) => Some(u),
            Self::RolledBack { update, .. } | Self::UpdateFailed { update, .. } => Some(update),
            _ => None,
        }
    }

    /// Why, for events that carry a reason.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::RolledBack { reason, .. } | Self::UpdateFailed { reason, .. } => Some(reason),
            _ => None,
        }
    }
}
