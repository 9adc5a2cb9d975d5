//! The report: what one check found ([`Check`], [`Finding`]), the text and JSON renderings and
//! the exit code. Pure.

use std::fmt::Write as _;

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    /// All well; what was found.
    Pass(String),
    /// Works, but worth fixing; does not fail the run.
    Warn { detail: String, fix: String },
    /// lookout cannot work this way.
    Fail { detail: String, fix: String },
    /// Not checked because an earlier check failed; says which.
    Skip(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    /// What was checked: `docker`, `registry for web (ghcr.io)`.
    pub name: String,
    pub outcome: Finding,
}

impl Check {
    pub(crate) fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            outcome: Finding::Pass(detail.into()),
        }
    }

    pub(crate) fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            outcome: Finding::Warn {
                detail: detail.into(),
                fix: fix.into(),
            },
        }
    }

    pub(crate) fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            outcome: Finding::Fail {
                detail: detail.into(),
                fix: fix.into(),
            },
        }
    }

    pub(crate) fn skip(name: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            outcome: Finding::Skip(why.into()),
        }
    }

    /// `PASS`, `WARN`, `FAIL` or `SKIP`.
    pub(crate) fn status(&self) -> &'static str {
        match self.outcome {
            Finding::Pass(_) => "PASS",
            Finding::Warn { .. } => "WARN",
            Finding::Fail { .. } => "FAIL",
            Finding::Skip(_) => "SKIP",
        }
    }

    pub(crate) fn detail(&self) -> &str {
        match &self.outcome {
            Finding::Pass(d) | Finding::Skip(d) => d,
            Finding::Warn { detail, .. } | Finding::Fail { detail, .. } => detail,
        }
    }

    /// What to do, for warnings and failures.
    pub(crate) fn fix(&self) -> Option<&str> {
        match &self.outcome {
            Finding::Warn { fix, .. } | Finding::Fail { fix, .. } => Some(fix),
            _ => None,
        }
    }

    pub(crate) fn is_failure(&self) -> bool {
        matches!(self.outcome, Finding::Fail { .. })
    }
}

/// 0 when nothing failed (warnings allowed), 1 otherwise.
pub(crate) fn exit_code(checks: &[Check]) -> u8 {
    u8::from(checks.iter().any(Check::is_failure))
}

/// How many checks have `status`.
fn count(checks: &[Check], status: &str) -> usize {
    checks.iter().filter(|c| c.status() == status).count()
}

/// One line per check (`PASS  docker: reachable, API 1.41`), continuation lines indented, then
/// a summary line.
pub(crate) fn render_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let mut line = format!("{}: {}", c.name, c.detail());
        if let Some(fix) = c.fix() {
            let _ = write!(line, " — fix: {fix}");
        }
        let line = line.replace('\n', "\n      ");
        let _ = writeln!(out, "{}  {line}", c.status());
    }
    let _ = write!(
        out,
        "{} check(s): {} passed, {} warning(s), {} failed",
        checks.len(),
        count(checks, "PASS"),
        count(checks, "WARN"),
        count(checks, "FAIL"),
    );
    if count(checks, "SKIP") > 0 {
        let _ = write!(out, ", {} skipped", count(checks, "SKIP"));
    }
    out.push('\n');
    out
}

/// `{"ok": …, "checks": [{"name", "status", "detail", "fix"}], "passed", "warnings", "failed",
/// "skipped"}`.
pub(crate) fn render_json(checks: &[Check]) -> serde_json::Value {
    serde_json::json!({
        "ok": exit_code(checks) == 0,
        "checks": checks.iter().map(|c| serde_json::json!({
            "name": c.name,
            "status": c.status().to_ascii_lowercase(),
            "detail": c.detail(),
            "fix": c.fix(),
        })).collect::<Vec<_>>(),
        "passed": count(checks, "PASS"),
        "warnings": count(checks, "WARN"),
        "failed": count(checks, "FAIL"),
        "skipped": count(checks, "SKIP"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_one_line_per_check_and_fixes_on_failures() {
        let checks = vec![
            Check::pass(
                "docker",
                "reachable at unix:///var/run/docker.sock, API 1.41",
            ),
            Check::warn(
                "compose",
                "docker-compose 1.29.2 (v1) found",
                "install the plugin",
            ),
            Check::fail(
                "state",
                "/var/lib/lookout is not writable: denied",
                "make it writable",
            ),
            Check::skip("container of web", "Docker is not reachable"),
        ];
        assert_eq!(
            render_text(&checks),
            "PASS  docker: reachable at unix:///var/run/docker.sock, API 1.41\n\
             WARN  compose: docker-compose 1.29.2 (v1) found — fix: install the plugin\n\
             FAIL  state: /var/lib/lookout is not writable: denied — fix: make it writable\n\
             SKIP  container of web: Docker is not reachable\n\
             4 check(s): 1 passed, 1 warning(s), 1 failed, 1 skipped\n"
        );
    }

    #[test]
    fn multi_line_details_stay_under_their_check() {
        let text = render_text(&[Check::fail("config", "2 problems:\n  - a\n  - b", "fix it")]);
        assert!(
            text.starts_with("FAIL  config: 2 problems:\n        - a\n        - b — fix: fix it\n"),
            "{text}"
        );
    }

    #[test]
    fn exit_code_is_one_on_any_failure_and_zero_with_warnings() {
        let check = |checks: &[Check], want: u8| assert_eq!(exit_code(checks), want, "{checks:?}");
        check(&[], 0);
        check(&[Check::pass("a", "ok")], 0);
        check(&[Check::pass("a", "ok"), Check::warn("b", "hm", "x")], 0);
        check(&[Check::skip("a", "because")], 0);
        check(&[Check::pass("a", "ok"), Check::fail("b", "no", "x")], 1);
        check(
            &[Check::warn("a", "hm", "x"), Check::fail("b", "no", "x")],
            1,
        );
    }

    #[test]
    fn json_report_counts_and_lists_checks() {
        let v = render_json(&[
            Check::pass("docker", "ok"),
            Check::fail("state", "no", "do this"),
        ]);
        assert_eq!(v["ok"], false);
        assert_eq!(
            (v["passed"].as_u64(), v["failed"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(v["checks"][0]["status"], "pass");
        assert!(v["checks"][0]["fix"].is_null());
        assert_eq!(v["checks"][1]["fix"], "do this");
    }
}
