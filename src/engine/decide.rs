//! The decision for one service after a check: nothing to do, update, or wait — and why.
//!
//! Pure: it takes what the registry, the policy, Docker and the state said, as plain values, and
//! returns a plain value. The update itself happens elsewhere ([`super::update`]).

use crate::reference::ImageRef;
use crate::state::FailedCandidate;

/// What runs now, as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The reference the container was created from (`Config.Image`), e.g. `nginx:1.27`.
    pub reference: ImageRef,
    /// The local image id (`sha256:…`).
    pub image_id: String,
    /// The registry digests Docker recorded for that image (`repo@sha256:…`).
    pub repo_digests: Vec<String>,
}

impl Running {
    /// The registry digest of the running image in `reference`'s repository, when Docker knows
    /// one; else the local image id.
    pub fn digest(&self) -> String {
        self.repo_digests_of(&self.reference)
            .into_iter()
            .next()
            .unwrap_or_else(|| self.image_id.clone())
    }

    /// The digests Docker recorded for this image in the same repository as `image`.
    pub(crate) fn repo_digests_of(&self, image: &ImageRef) -> Vec<String> {
        self.repo_digests
            .iter()
            .filter_map(|d| {
                let r = ImageRef::parse_partial(d).ok()?;
                (r.name() == image.name())
                    .then(|| r.digest().map(str::to_owned))
                    .flatten()
            })
            .collect()
    }
}

/// What the registry says the candidate is: the tag to run and the digests it points to now (the
/// manifest or index digest, and the host platform's digest for an index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub reference: ImageRef,
    pub manifest_digest: String,
    pub platform_digest: Option<String>,
}

impl Candidate {
    /// Whether `digest` names this candidate: Docker records the index digest when it pulled a
    /// multi-arch tag and the platform digest when it pulled by platform digest.
    pub(crate) fn is_named_by(&self, digest: &str) -> bool {
        self.manifest_digest == digest || self.platform_digest.as_deref() == Some(digest)
    }
}

/// Why nothing is done now although something could be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// `enabled = false` for the service.
    Disabled,
    /// Updates are paused (configuration, `PAUSE_UPDATES`, or the API).
    Paused,
    /// This candidate failed before and is not retried until a different one appears.
    FailedBefore { reason: String },
    /// Outside the service's maintenance window (or too close to its end); `reason` says when
    /// the next one opens.
    OutsideWindow { reason: String },
}

/// What to do about one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The service runs what its policy wants.
    UpToDate { reason: String },
    /// Move to `candidate`.
    Update {
        candidate: Candidate,
        tag_changes: bool,
        reason: String,
    },
    /// An update is available but must not happen now.
    Hold { candidate: Candidate, hold: Hold },
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub running: &'a Running,
    /// The registry's digests for the tag the policy chose (the running tag for the digest
    /// policy); `None` when the policy found nothing to move to.
    pub candidate: Option<&'a Candidate>,
    pub failed: Option<&'a FailedCandidate>,
    pub enabled: bool,
    pub paused: bool,
    /// Why changes are not allowed now (maintenance window), if they are not.
    pub outside_window: Option<String>,
}

/// Decides what to do about one service.
pub fn decide(f: &Facts<'_>) -> Decision {
    let running_tag = f.running.reference.tag().unwrap_or("latest");
    let Some(candidate) = f.candidate else {
        return Decision::UpToDate {
            reason: format!("no tag is better than {running_tag:?}"),
        };
    };
    let tag_changes = candidate.reference.tag() != f.running.reference.tag()
        || candidate.reference.name() != f.running.reference.name();
    let runs_it = f
        .running
        .repo_digests_of(&candidate.reference)
        .iter()
        .any(|d| candidate.is_named_by(d));
    if runs_it {
        return Decision::UpToDate {
            reason: format!(
                "the running image is {} ({})",
                candidate.reference.familiar(),
                candidate.manifest_digest
            ),
        };
    }
    let hold = if !f.enabled {
        Some(Hold::Disabled)
    } else if let Some(failed) = f.failed.filter(|failed| same_candidate(failed, candidate)) {
        Some(Hold::FailedBefore {
            reason: failed.reason.clone(),
        })
    } else if f.paused {
        Some(Hold::Paused)
    } else {
        f.outside_window
            .clone()
            .map(|reason| Hold::OutsideWindow { reason })
    };
    if let Some(hold) = hold {
        return Decision::Hold {
            candidate: candidate.clone(),
            hold,
        };
    }
    let reason = if tag_changes {
        format!(
            "{} → {}",
            f.running.reference.familiar(),
            candidate.reference.familiar()
        )
    } else {
        format!(
            "{} now points to {}",
            candidate.reference.familiar(),
            candidate.manifest_digest
        )
    };
    Decision::Update {
        candidate: candidate.clone(),
        tag_changes,
        reason,
    }
}

/// A failed candidate blocks the same tag at the same digest; a new push to that tag (a
/// different digest) is a different candidate and is tried.
fn same_candidate(failed: &FailedCandidate, candidate: &Candidate) -> bool {
    failed.version.image == candidate.reference.name()
        && failed.version.tag.as_deref() == candidate.reference.tag()
        && candidate.is_named_by(&failed.version.digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ImageVersion;

    const OLD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const NEW: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const NEW_AMD64: &str =
        "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn running(reference: &str, digests: &[&str]) -> Running {
        let r = ImageRef::parse(reference).unwrap();
        Running {
            repo_digests: digests
                .iter()
                .map(|d| format!("{}@{d}", r.name()))
                .collect(),
            reference: r,
            image_id: "sha256:local".into(),
        }
    }

    fn candidate(reference: &str, manifest: &str, platform: Option<&str>) -> Candidate {
        Candidate {
            reference: ImageRef::parse(reference).unwrap(),
            manifest_digest: manifest.into(),
            platform_digest: platform.map(str::to_owned),
        }
    }

    fn failed(reference: &str, digest: &str) -> FailedCandidate {
        let r = ImageRef::parse(reference).unwrap();
        FailedCandidate {
            version: ImageVersion {
                image: r.name(),
                tag: r.tag().map(str::to_owned),
                digest: digest.into(),
            },
            reason: "unhealthy".into(),
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    /// `expect`: "up-to-date", "update", "update-tag", "hold-disabled", "hold-paused", "hold-failed".
    fn check(
        run: Running,
        cand: Option<Candidate>,
        fail: Option<FailedCandidate>,
        enabled: bool,
        paused: bool,
        expect: &str,
    ) {
        let facts = Facts {
            running: &run,
            candidate: cand.as_ref(),
            failed: fail.as_ref(),
            enabled,
            paused,
            outside_window: None,
        };
        let got = match decide(&facts) {
            Decision::UpToDate { .. } => "up-to-date",
            Decision::Update {
                tag_changes: false, ..
            } => "update",
            Decision::Update {
                tag_changes: true, ..
            } => "update-tag",
            Decision::Hold {
                hold: Hold::Disabled,
                ..
            } => "hold-disabled",
            Decision::Hold {
                hold: Hold::Paused, ..
            } => "hold-paused",
            Decision::Hold {
                hold: Hold::FailedBefore { .. },
                ..
            } => "hold-failed",
            Decision::Hold {
                hold: Hold::OutsideWindow { .. },
                ..
            } => "hold-window",
        };
        assert_eq!(got, expect, "{facts:#?}");
    }

    #[test]
    fn digest_policy() {
        // Same digest: nothing to do.
        check(
            running("app:latest", &[OLD]),
            Some(candidate("app:latest", OLD, None)),
            None,
            true,
            false,
            "up-to-date",
        );
        // The tag moved.
        check(
            running("app:latest", &[OLD]),
            Some(candidate("app:latest", NEW, None)),
            None,
            true,
            false,
            "update",
        );
        // Docker recorded the index digest, or the platform digest: both mean "runs it".
        check(
            running("app:latest", &[NEW]),
            Some(candidate("app:latest", NEW, Some(NEW_AMD64))),
            None,
            true,
            false,
            "up-to-date",
        );
        check(
            running("app:latest", &[NEW_AMD64]),
            Some(candidate("app:latest", NEW, Some(NEW_AMD64))),
            None,
            true,
            false,
            "up-to-date",
        );
        // A locally built image with no repo digest is updated to the registry's.
        check(
            running("app:latest", &[]),
            Some(candidate("app:latest", NEW, None)),
            None,
            true,
            false,
            "update",
        );
        // A repo digest of another repository does not count.
        let mut r = running("app:latest", &[]);
        r.repo_digests = vec![format!("docker.io/library/other@{NEW}")];
        check(
            r,
            Some(candidate("app:latest", NEW, None)),
            None,
            true,
            false,
            "update",
        );
    }

    #[test]
    fn tag_policies() {
        check(
            running("app:1.0.0", &[OLD]),
            Some(candidate("app:1.1.0", NEW, None)),
            None,
            true,
            false,
            "update-tag",
        );
        check(
            running("app:1.0.0", &[OLD]),
            None,
            None,
            true,
            false,
            "up-to-date",
        );
        // The candidate tag holds exactly what runs (a re-tag): nothing to do.
        check(
            running("app:1.0.0", &[OLD]),
            Some(candidate("app:1.0.1", OLD, None)),
            None,
            true,
            false,
            "up-to-date",
        );
    }

    #[test]
    fn holds() {
        let run = || running("app:1.0.0", &[OLD]);
        let cand = || Some(candidate("app:1.1.0", NEW, None));
        check(run(), cand(), None, false, false, "hold-disabled");
        check(run(), cand(), None, true, true, "hold-paused");
        check(
            run(),
            cand(),
            Some(failed("app:1.1.0", NEW)),
            true,
            false,
            "hold-failed",
        );
        // A failure of another digest of the same tag does not block a new push.
        check(
            run(),
            cand(),
            Some(failed("app:1.1.0", OLD)),
            true,
            false,
            "update-tag",
        );
        // A failure of another tag does not block this one.
        check(
            run(),
            cand(),
            Some(failed("app:1.0.9", NEW)),
            true,
            false,
            "update-tag",
        );
    }

    #[test]
    fn outside_a_window_updates_wait_and_nothing_else_changes() {
        let run = running("app:1.0.0", &[OLD]);
        let cand = candidate("app:1.1.0", NEW, None);
        let facts = |window: Option<&str>, cand: &Candidate| {
            decide(&Facts {
                running: &run,
                candidate: Some(cand),
                failed: None,
                enabled: true,
                paused: false,
                outside_window: window.map(str::to_owned),
            })
        };
        match facts(Some("next window opens at 02:00"), &cand) {
            Decision::Hold {
                hold: Hold::OutsideWindow { reason },
                ..
            } => assert!(reason.contains("02:00")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(facts(None, &cand), Decision::Update { .. }));
        // A service that is up to date stays up to date whatever the window.
        let same = candidate("app:1.0.0", OLD, None);
        assert!(matches!(
            facts(Some("closed"), &same),
            Decision::UpToDate { .. }
        ));
    }
}
