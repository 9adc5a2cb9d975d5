//! The one word a service's badge shows, from plain facts. Pure.
//!
//! The first that applies wins: **updating** (an update or rollback runs now), **check failed**
//! (the last check failed), **update failed** (the last update could not start),
//! **rolled back** (the last change ended in a rollback within the last [`RECENT`]),
//! **blocked candidate** (the candidate failed before and is held), **paused** (updates of this
//! service or of all are paused), **update available**, **up to date**, else **not checked**.
//! A rollback older than a day reads as *blocked candidate* while the failed candidate is still
//! the one offered: the page then shows a steady state, not an event.

use jiff::{SignedDuration, Timestamp};

use crate::api::model::ServiceStatus;
use crate::engine::ServiceResult;

/// How long a rollback is shown as *rolled back*.
pub(crate) const RECENT: SignedDuration = SignedDuration::from_hours(24);

/// What the badge is decided from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// An update or rollback of the service runs (journaled, or a job of the page or API).
    pub updating: bool,
    /// Updates of this service, or of all, are paused.
    pub paused: bool,
    /// The result of the last check or update since lookout started.
    pub last: Option<ServiceResult>,
    /// The candidate the last check found (`repository:tag`).
    pub candidate: Option<String>,
    /// The failed candidate that is blocked (`repository:tag`), if any.
    pub blocked: Option<String>,
    /// When the newest history entry finished, if it was a failed update rolled back (or a
    /// rollback that failed).
    pub rolled_back_at: Option<Timestamp>,
    pub now: Option<Timestamp>,
}

pub(crate) fn status(f: &Facts) -> ServiceStatus {
    let recent_rollback = match (f.rolled_back_at, f.now) {
        (Some(at), Some(now)) => now.duration_since(at) < RECENT,
        (Some(_), None) => true,
        _ => false,
    };
    let blocked = f.blocked.is_some() && f.blocked == f.candidate;
    if f.updating {
        return ServiceStatus::Updating;
    }
    match f.last {
        Some(ServiceResult::CheckFailed) => return ServiceStatus::CheckFailed,
        Some(ServiceResult::Failed) => return ServiceStatus::UpdateFailed,
        Some(ServiceResult::RolledBack | ServiceResult::RollbackFailed) => {
            return ServiceStatus::RolledBack;
        }
        _ => {}
    }
    if recent_rollback && (blocked || f.last.is_none()) {
        return ServiceStatus::RolledBack;
    }
    if blocked {
        return ServiceStatus::Blocked;
    }
    if f.paused {
        return ServiceStatus::Paused;
    }
    match f.last {
        Some(ServiceResult::UpdateAvailable) => ServiceStatus::UpdateAvailable,
        Some(ServiceResult::UpToDate | ServiceResult::Updated) => ServiceStatus::UpToDate,
        _ => ServiceStatus::Unchecked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceResult as R;
    use ServiceStatus as S;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// `check(facts, expect)`: one row of the table.
    fn check(f: Facts, expect: ServiceStatus) {
        assert_eq!(status(&f), expect, "{f:?}");
    }

    fn facts(last: Option<ServiceResult>) -> Facts {
        Facts {
            last,
            now: Some(ts("2025-03-02T12:00:00Z")),
            ..Facts::default()
        }
    }

    #[test]
    fn the_first_that_applies_wins() {
        check(facts(None), S::Unchecked);
        check(facts(Some(R::Skipped)), S::Unchecked);
        check(facts(Some(R::UpToDate)), S::UpToDate);
        check(facts(Some(R::Updated)), S::UpToDate);
        check(facts(Some(R::UpdateAvailable)), S::UpdateAvailable);
        check(facts(Some(R::CheckFailed)), S::CheckFailed);
        check(facts(Some(R::Failed)), S::UpdateFailed);
        check(facts(Some(R::RolledBack)), S::RolledBack);
        check(facts(Some(R::RollbackFailed)), S::RolledBack);
        check(
            Facts {
                updating: true,
                ..facts(Some(R::CheckFailed))
            },
            S::Updating,
        );
        check(
            Facts {
                paused: true,
                ..facts(Some(R::UpdateAvailable))
            },
            S::Paused,
        );
        check(
            Facts {
                paused: true,
                ..facts(Some(R::CheckFailed))
            },
            S::CheckFailed,
        );
    }

    #[test]
    fn a_failed_candidate_is_rolled_back_for_a_day_then_blocked() {
        let held = Facts {
            candidate: Some("app:2.0.0".into()),
            blocked: Some("app:2.0.0".into()),
            rolled_back_at: Some(ts("2025-03-02T10:00:00Z")),
            ..facts(Some(R::UpdateAvailable))
        };
        check(held.clone(), S::RolledBack);
        check(
            Facts {
                rolled_back_at: Some(ts("2025-02-28T10:00:00Z")),
                ..held.clone()
            },
            S::Blocked,
        );
        // Blocked wins over paused: the operator must act on it either way.
        check(
            Facts {
                rolled_back_at: None,
                paused: true,
                ..held.clone()
            },
            S::Blocked,
        );
        // A newer candidate than the failed one is simply available.
        check(
            Facts {
                candidate: Some("app:2.0.1".into()),
                rolled_back_at: Some(ts("2025-02-28T10:00:00Z")),
                ..held.clone()
            },
            S::UpdateAvailable,
        );
        // Before the first check after a restart, a fresh rollback still shows.
        check(
            Facts {
                candidate: None,
                ..Facts { last: None, ..held }
            },
            S::RolledBack,
        );
    }
}
