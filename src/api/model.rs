//! The JSON the API answers with, as types: what the handlers return and what the OpenAPI
//! document (`/api/v1/openapi.json`, [`super::openapi`]) describes, from the same definitions.
//! The web page renders the same values.
//!
//! Field names and meanings of what existed before these types did are kept as they were
//! (`GET /api/v1/services` of earlier versions reads the same); fields only add.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::ServiceOutcome;

/// `{"error": message, "kind": kind}`: every refusal and failure of the API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// `unauthorized`, `forbidden`, `not_found`, `conflict`, `invalid`, `unavailable`,
    /// `internal`, `too_many`.
    pub kind: String,
}

/// Where lookout learned about a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Origin {
    /// A `[[services]]` entry of the configuration file (merged with its containers' labels
    /// when discovery found them).
    Configured,
    /// Found by `[discovery]` on the host, configured by its containers' labels alone.
    Discovered,
}

/// The one word the page's badge shows for a service; see [`crate::web::status`] for the order
/// in which they win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ServiceStatus {
    /// An update or rollback of the service runs now.
    Updating,
    /// The last check failed: nothing is known about newer images.
    CheckFailed,
    /// The last update could not start or was abandoned.
    UpdateFailed,
    /// The last update failed and the old image runs again (within the last day).
    RolledBack,
    /// The candidate failed before and is not tried again until unblocked or superseded.
    Blocked,
    /// Updates are paused (for all services or this one).
    Paused,
    /// A newer image is there.
    UpdateAvailable,
    /// The service runs what its policy chooses.
    UpToDate,
    /// Not checked yet, or the last check had nothing to check (no running container).
    Unchecked,
}

impl ServiceStatus {
    pub(crate) const ALL: [ServiceStatus; 9] = [
        Self::Updating,
        Self::CheckFailed,
        Self::UpdateFailed,
        Self::RolledBack,
        Self::Blocked,
        Self::Paused,
        Self::UpdateAvailable,
        Self::UpToDate,
        Self::Unchecked,
    ];

    /// The snake_case wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Updating => "updating",
            Self::CheckFailed => "check_failed",
            Self::UpdateFailed => "update_failed",
            Self::RolledBack => "rolled_back",
            Self::Blocked => "blocked",
            Self::Paused => "paused",
            Self::UpdateAvailable => "update_available",
            Self::UpToDate => "up_to_date",
            Self::Unchecked => "unchecked",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// What the badge says.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Updating => "updating",
            Self::CheckFailed => "check failed",
            Self::UpdateFailed => "update failed",
            Self::RolledBack => "rolled back",
            Self::Blocked => "blocked candidate",
            Self::Paused => "paused",
            Self::UpdateAvailable => "update available",
            Self::UpToDate => "up to date",
            Self::Unchecked => "not checked",
        }
    }
}

/// The candidate that failed and is not tried again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct FailedCandidateView {
    /// `repository:tag@digest`.
    pub version: String,
    pub reason: String,
    /// When it failed (RFC 3339).
    #[serde(default)]
    pub at: Option<String>,
}

/// The maintenance window of a service, now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct WindowView {
    /// No window is configured: changes are allowed at any time.
    pub always: bool,
    /// A window is open now.
    pub open: bool,
    /// When the open window closes (RFC 3339), if one is open and windows are configured.
    pub closes_at: Option<String>,
    /// When the next window opens (RFC 3339), if none is open; `null` when none opens within
    /// two weeks.
    pub opens_at: Option<String>,
}

/// One service as the API and the page show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ServiceView {
    pub name: String,
    /// The compose file configured for the service, if one is (else lookout finds the project by
    /// `compose_project` and its containers' labels).
    pub compose_file: Option<String>,
    pub compose_service: String,
    /// `digest`, `semver`, `glob` or `regex`.
    pub policy: String,
    /// Where the policy came from, as `lookout check` says it (`crate::discovery::policy_source`):
    /// `label lookout.policy`, `label wud.tag.include`, … for a container label, `config` for the
    /// service's `[[services]]` entry, `default` when nothing set one.
    pub policy_source: String,
    pub origin: Origin,
    /// How the page names the service, from a container's `wud.display.name` label; `null`
    /// when none is set (the page shows `name`).
    pub display_name: Option<String>,
    pub enabled: bool,
    /// The configured image reference.
    pub image: String,
    /// The registry host of the image.
    pub registry: String,
    /// What runs, as `repository:tag@digest`, once seen.
    pub running: Option<String>,
    /// The digest of what runs.
    pub running_digest: Option<String>,
    /// The candidate the last check found.
    pub available: Option<String>,
    pub last_check: Option<String>,
    pub last_update: Option<String>,
    /// When the next scheduled check is due (RFC 3339), if one is.
    pub next_check: Option<String>,
    pub failed_candidate: Option<FailedCandidateView>,
    /// The last check or update of this service since lookout started.
    pub last_result: Option<ServiceOutcome>,
    /// An update of this service is journaled and not finished.
    pub in_flight: bool,
    /// Updates of this service are paused (this service alone, or all of them).
    pub paused: bool,
    /// Updates of this service alone are paused (`POST /api/v1/services/{name}/pause`).
    pub service_paused: bool,
    pub window: WindowView,
    pub status: ServiceStatus,
}

/// `GET /api/v1/services`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ServicesBody {
    pub services: Vec<ServiceView>,
    /// Updates of every service are paused (configuration or `POST /api/v1/pause`).
    #[serde(default)]
    pub paused: bool,
}

/// How a finished change ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct HistoryOutcome {
    /// `committed`, `rolled_back`, `rollback_failed` or `abandoned`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One finished update or rollback.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct HistoryView {
    pub service: String,
    /// `update` or `rollback`.
    pub kind: String,
    /// Who asked: `schedule`, `api`, `web`, `cli`, `hook`, …
    pub actor: String,
    pub from: String,
    pub to: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub outcome: HistoryOutcome,
}

/// `GET /api/v1/history`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct HistoryBody {
    pub history: Vec<HistoryView>,
}

/// `POST /api/v1/check` when it waits.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct CheckBody {
    pub services: Vec<ServiceOutcome>,
}

/// What a rollback did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct RollbackView {
    pub service: String,
    pub from: String,
    pub to: String,
    /// `rolled_back`, …
    pub result: String,
    pub reason: Option<String>,
    /// Seconds.
    pub duration: f64,
}

/// `POST /api/v1/pause` and `/resume`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct PausedBody {
    pub paused: bool,
    /// The one service paused or resumed, for `/api/v1/services/{name}/pause`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// `POST /api/v1/services/{name}/unblock`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct UnblockBody {
    pub service: String,
    /// The candidate that was blocked, `null` when none was.
    pub unblocked: Option<String>,
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JobKind {
    Check,
    Update,
    Rollback,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JobState {
    Running,
    /// Done; `result` holds what the synchronous endpoint would have answered.
    Succeeded,
    /// Refused or failed; `error` says why.
    Failed,
}

/// A long action started with `Prefer: respond-async` (or from the page).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct JobView {
    pub id: String,
    pub kind: JobKind,
    /// The service it is about; `null` for a check of every service.
    pub service: Option<String>,
    /// Who asked: `api` or `web`.
    pub actor: String,
    pub state: JobState,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// The answer of the synchronous endpoint, once succeeded.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub error: Option<ErrorBody>,
}

/// `202 Accepted`: the job that was started; follow it at `GET /api/v1/jobs/{id}` (the
/// `Location` header).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct JobBody {
    pub job: JobView,
}

pub(crate) use crate::registry::ImageOrigin;

/// What the page's service view shows beyond [`ServiceView`].
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ServiceDetails {
    /// This service's updates and rollbacks, newest first.
    pub history: Vec<HistoryView>,
    /// Requests left at the registry, when it said (Docker Hub's `ratelimit-remaining`).
    pub rate_limit_remaining: Option<u64>,
    /// Of the running image and of the candidate, when the registry could say within a few
    /// seconds.
    pub running_origin: Option<ImageOrigin>,
    pub candidate_origin: Option<ImageOrigin>,
    /// Why the origins could not be read, if they could not.
    pub origin_error: Option<String>,
}
