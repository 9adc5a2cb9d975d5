//! The state file's data model and its text form: what lookout remembers per service, and the
//! pure `parse` / `render` pair that turns it into JSON and back.
//!
//! Compatibility: every field added after format version 1 carries `#[serde(default)]`, so older
//! files load; unknown fields are ignored, so a file written by a newer lookout *of the same
//! format version* loads too. A file with a higher `format_version` is refused by [`parse`].

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::journal::{JournalEntry, StandaloneEntry};

/// The format version this lookout writes and the highest one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// How many history entries are kept per service; older ones are dropped first.
pub const HISTORY_LIMIT: usize = 50;

/// Everything lookout remembers between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Bumped when a change would make older lookouts misread the file.
    pub format_version: u32,
    /// Per service, keyed by the service's configured name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceState>,
    /// Updates that have started and not yet been committed or rolled back.
    /// At most one entry per service.
    #[serde(default)]
    pub journal: Vec<JournalEntry>,
    /// Recreations of standalone containers in flight, at most one per service. Absent in
    /// state files written before standalone containers were updated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standalone_journal: Vec<StandaloneEntry>,
    /// Updates paused through the API (`POST /api/v1/pause`); kept across restarts.
    #[serde(default)]
    pub paused: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            format_version: FORMAT_VERSION,
            services: BTreeMap::new(),
            journal: Vec::new(),
            standalone_journal: Vec::new(),
            paused: false,
        }
    }
}

/// What lookout knows about one service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    /// The image the service runs, as last seen or set by a committed update.
    #[serde(default)]
    pub running: Option<ImageVersion>,
    /// When the registry was last asked about this service.
    #[serde(default)]
    pub last_check: Option<Timestamp>,
    /// When an update of this service was last committed.
    #[serde(default)]
    pub last_update: Option<Timestamp>,
    /// The candidate that was tried and rolled back; it is not tried again until cleared.
    #[serde(default)]
    pub failed_candidate: Option<FailedCandidate>,
    /// Finished updates and rollbacks, oldest first, at most [`HISTORY_LIMIT`].
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// Updates of this service alone are paused (the web page or
    /// `POST /api/v1/services/{name}/pause`); kept across restarts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// One image version: repository, tag (if referenced by tag) and content digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVersion {
    /// Normalised repository, e.g. `docker.io/library/nginx`.
    pub image: String,
    /// The tag, e.g. `1.27.3`; `None` when the image is referenced by digest only.
    #[serde(default)]
    pub tag: Option<String>,
    /// The manifest digest, e.g. `sha256:4f1c…`.
    pub digest: String,
}

impl std::fmt::Display for ImageVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tag {
            Some(tag) => write!(f, "{}:{}@{}", self.image, tag, self.digest),
            None => write!(f, "{}@{}", self.image, self.digest),
        }
    }
}

/// A candidate that failed, and why; it blocks that candidate until an operator clears it or a
/// newer candidate appears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedCandidate {
    pub version: ImageVersion,
    pub reason: String,
    pub at: Timestamp,
}

/// Why a change was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Moving to a newer image chosen by the service's policy.
    Update,
    /// Going back to an earlier image because someone asked for it.
    Rollback,
}

/// How a change ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ChangeOutcome {
    /// The new image runs, passed the health gate, and the new file bytes stay.
    Committed,
    /// The new image failed (pull, start, health gate, wrong digest); the old file bytes and the
    /// old image were restored and the old container is healthy. The candidate is blocked.
    RolledBack { reason: String },
    /// Like `RolledBack`, but the old container did not become healthy again either.
    /// The candidate is blocked and an operator is needed.
    RollbackFailed { reason: String },
    /// The change was interrupted (crash, shutdown) before it proved anything about the
    /// candidate and was undone or never took effect. The candidate is *not* blocked.
    Abandoned { reason: String },
}

/// One finished change, as shown by `lookout history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub kind: ChangeKind,
    /// Who started it: `schedule`, `cli`, `api`, `webhook`, …
    pub actor: String,
    pub from: ImageVersion,
    pub to: ImageVersion,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// `finished_at - started_at`, never negative (a clock stepped back reads as 0).
    pub duration_ms: u64,
    pub outcome: ChangeOutcome,
}

/// Why a text is not a state file this lookout can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is not valid JSON (truncated or damaged?): {0}")]
    NotJson(String),
    #[error("the file has no valid `format_version`, so it is not a lookout state file")]
    NoVersion,
    #[error(
        "the file was written by format version {found}, this lookout understands up to {FORMAT_VERSION}"
    )]
    TooNew { found: u64 },
    #[error("the file does not match format version {version}: {detail}")]
    Shape { version: u64, detail: String },
}

impl ParseError {
    /// True when the text is damaged; false when it is intact but too new to read.
    pub fn is_corruption(&self) -> bool {
        !matches!(self, ParseError::TooNew { .. })
    }
}

/// Reads a state file's text. Pure.
///
/// The version is read first, from the bare JSON, so a newer file whose layout changed is
/// reported as too new rather than as damaged.
pub fn parse(text: &str) -> Result<State, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .filter(|v| *v >= 1)
        .ok_or(ParseError::NoVersion)?;
    if version > u64::from(FORMAT_VERSION) {
        return Err(ParseError::TooNew { found: version });
    }
    let mut state: State = serde_json::from_value(value).map_err(|e| ParseError::Shape {
        version,
        detail: e.to_string(),
    })?;
    // Older versions are upgraded in memory; the next write stores the current version.
    state.format_version = FORMAT_VERSION;
    Ok(state)
}

/// Writes a state as pretty-printed JSON with a trailing newline. Pure.
pub fn render(state: &State) -> String {
    let mut text = serde_json::to_string_pretty(state)
        .expect("the state serialises: its maps are keyed by strings");
    text.push('\n');
    text
}

impl State {
    /// Records a registry check of `service` and what it was seen running (`None`: unknown).
    pub(crate) fn record_check(
        &mut self,
        service: &str,
        running: Option<ImageVersion>,
        now: Timestamp,
    ) {
        let svc = self.services.entry(service.to_owned()).or_default();
        svc.last_check = Some(now);
        if running.is_some() {
            svc.running = running;
        }
    }

    /// The services whose updates are paused one by one, by name.
    pub fn paused_services(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Forgets the failed candidate of `service` so it may be tried again.
    /// Returns what was forgotten.
    pub fn clear_failed_candidate(&mut self, service: &str) -> Option<FailedCandidate> {
        self.services.get_mut(service)?.failed_candidate.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sample() -> State {
        let mut state = State::default();
        let v1 = ImageVersion {
            image: "docker.io/library/nginx".into(),
            tag: Some("1.27.3".into()),
            digest: "sha256:aaa".into(),
        };
        let v2 = ImageVersion {
            tag: Some("1.27.4".into()),
            digest: "sha256:bbb".into(),
            ..v1.clone()
        };
        state.record_check("web", Some(v1.clone()), ts("2025-03-01T10:00:00Z"));
        let svc = state.services.get_mut("web").unwrap();
        svc.failed_candidate = Some(FailedCandidate {
            version: v2.clone(),
            reason: "health gate timed out after 60s".into(),
            at: ts("2025-03-01T10:05:00.123456789Z"),
        });
        svc.history.push(HistoryEntry {
            kind: ChangeKind::Update,
            actor: "schedule".into(),
            from: v1,
            to: v2,
            started_at: ts("2025-03-01T10:04:00Z"),
            finished_at: ts("2025-03-01T10:05:00Z"),
            duration_ms: 60_000,
            outcome: ChangeOutcome::RolledBack {
                reason: "health gate timed out after 60s".into(),
            },
        });
        state
    }

    #[test]
    fn render_then_parse_gives_the_same_state() {
        let state = sample();
        let text = render(&state);
        assert!(text.ends_with("}\n"));
        assert!(
            text.contains("\n  \"format_version\": 1,\n"),
            "pretty-printed: {text}"
        );
        assert!(
            text.contains("\"2025-03-01T10:05:00.123456789Z\""),
            "{text}"
        );
        assert_eq!(parse(&text).unwrap(), state);
    }

    /// Parses `text` and compares the kind of result with `expect`: `ok`, `empty`, `not_json`,
    /// `no_version`, `too_new N` or `shape`.
    fn check(text: &str, expect: &str) {
        let got = match parse(text) {
            Ok(_) => "ok".to_string(),
            Err(ParseError::Empty) => "empty".to_string(),
            Err(ParseError::NotJson(_)) => "not_json".to_string(),
            Err(ParseError::NoVersion) => "no_version".to_string(),
            Err(ParseError::TooNew { found }) => format!("too_new {found}"),
            Err(ParseError::Shape { .. }) => "shape".to_string(),
        };
        assert_eq!(got, expect, "input: {text:?}");
    }

    #[test]
    fn parse_accepts_only_usable_files() {
        let whole = render(&sample());
        check(&whole, "ok");
        check(r#"{"format_version": 1}"#, "ok");
        // An older file without later fields, and a field this version does not know.
        check(r#"{"format_version": 1, "services": {"web": {}}}"#, "ok");
        check(r#"{"format_version": 1, "added_later": [1, 2]}"#, "ok");
        check("", "empty");
        check(" \n\t", "empty");
        check(&whole[..whole.len() / 2], "not_json");
        check(&whole[..whole.len() - 3], "not_json");
        check("\0\0\0\0", "not_json");
        check("[1, 2]", "no_version");
        check(r#"{"services": {}}"#, "no_version");
        check(r#"{"format_version": 0}"#, "no_version");
        check(r#"{"format_version": "1"}"#, "no_version");
        check(r#"{"format_version": 2}"#, "too_new 2");
        // A newer file is reported as newer even when its layout changed completely.
        check(
            r#"{"format_version": 3, "services": [1, 2, 3]}"#,
            "too_new 3",
        );
        check(r#"{"format_version": 1, "services": [1, 2, 3]}"#, "shape");
        check(
            r#"{"format_version": 1, "journal": [{"step": "planned"}]}"#,
            "shape",
        );
    }

    #[test]
    fn only_too_new_is_not_corruption() {
        assert!(!ParseError::TooNew { found: 2 }.is_corruption());
        assert!(ParseError::Empty.is_corruption());
        assert!(ParseError::NotJson("x".into()).is_corruption());
    }

    #[test]
    fn record_check_keeps_running_image_when_unknown() {
        let mut state = sample();
        let before = state.services["web"].running.clone();
        state.record_check("web", None, ts("2025-03-02T00:00:00Z"));
        let svc = &state.services["web"];
        assert_eq!(svc.running, before);
        assert_eq!(svc.last_check, Some(ts("2025-03-02T00:00:00Z")));
    }

    #[test]
    fn clear_failed_candidate_returns_it_once() {
        let mut state = sample();
        assert!(state.clear_failed_candidate("web").is_some());
        assert_eq!(state.clear_failed_candidate("web"), None);
        assert_eq!(state.clear_failed_candidate("no-such-service"), None);
    }
}
