//! Reading a parsed document field by field, collecting every problem with its path.
//!
//! The configuration is parsed into a JSON value first (TOML and JSON alike) and then read through
//! [`Obj`], which knows where it is (`services[1].registry_config`), substitutes `${VAR}` and
//! `${VAR:-default}` in strings, accepts the string forms environment variables bring (`"1"`,
//! `"30m"`), and reports unknown keys with the valid ones. Nothing stops at the first problem.

use std::cell::RefCell;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::policy::{Policy, PolicyProblem, PolicySpec};
use crate::secret::Secret;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `services[1].registry_type`, or `check_interval (from CHECK_INTERVAL)`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// What every reader shares: the environment and the problems and warnings found so far.
pub(super) struct Ctx<'e> {
    pub env: &'e dyn Fn(&str) -> Option<String>,
    pub problems: RefCell<Vec<Problem>>,
    pub warnings: RefCell<Vec<Problem>>,
    /// Every secret value read so far (as written and as substituted): masked in every problem
    /// and remembered for [`crate::redact`].
    pub secrets: RefCell<Vec<String>>,
    /// Each distinct policy compiled once: 10,000 services on `semver` share one.
    pub policies: RefCell<std::collections::HashMap<Arc<PolicySpec>, Arc<Policy>>>,
}

impl<'e> Ctx<'e> {
    pub(super) fn new(env: &'e dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            env,
            problems: RefCell::default(),
            warnings: RefCell::default(),
            secrets: RefCell::default(),
            policies: RefCell::default(),
        }
    }

    /// `spec` compiled, or the spec and policy of an equal spec compiled before.
    pub(super) fn policy(
        &self,
        spec: PolicySpec,
    ) -> Result<(Arc<PolicySpec>, Arc<Policy>), Vec<PolicyProblem>> {
        if let Some((s, p)) = self.policies.borrow().get_key_value(&spec) {
            return Ok((s.clone(), p.clone()));
        }
        let policy = Arc::new(Policy::compile(&spec)?);
        let spec = Arc::new(spec);
        self.policies
            .borrow_mut()
            .insert(spec.clone(), policy.clone());
        Ok((spec, policy))
    }

    /// Marks `value` as a secret: it is masked wherever it would appear in a message.
    pub(super) fn secret_value(&self, value: &str) {
        if !value.is_empty() {
            self.secrets.borrow_mut().push(value.to_owned());
        }
    }

    pub(super) fn problem(&self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.borrow_mut().push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    pub(super) fn warn(&self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.borrow_mut().push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// A JSON object being read, with its path.
pub(super) struct Obj<'a, 'e> {
    pub ctx: &'a Ctx<'e>,
    pub path: String,
    map: &'a Map<String, Value>,
    known: Vec<&'static str>,
}

impl<'a, 'e> Obj<'a, 'e> {
    pub(super) fn new(ctx: &'a Ctx<'e>, path: String, map: &'a Map<String, Value>) -> Self {
        Self {
            ctx,
            path,
            map,
            known: Vec::new(),
        }
    }

    pub(super) fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The raw value of `key`, marking the key as known. `null` counts as absent.
    pub(super) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn type_problem(&self, key: &str, want: &str, got: &Value, secret: bool) {
        let shown = if secret {
            "a value".to_owned()
        } else {
            describe(got)
        };
        self.ctx
            .problem(self.at(key), format!("expected {want}, found {shown}"));
    }

    /// A string, with `${VAR}` substituted. A value that is only an unset `${VAR}` is absent.
    pub(super) fn string(&mut self, key: &'static str) -> Option<String> {
        self.string_inner(key, false)
    }

    /// Like [`Obj::string`], but the value never appears in a message.
    pub(super) fn secret(&mut self, key: &'static str) -> Option<Secret> {
        self.string_inner(key, true).map(Secret::new)
    }

    /// An `http://` or `https://` URL. A `secret` URL (a webhook's, whose path is often the
    /// credential) is shown in messages as its scheme and host only, and masked everywhere;
    /// another is shown with its userinfo and tokens masked.
    pub(super) fn url(&mut self, key: &'static str, secret: bool) -> Option<String> {
        let url = self.string_inner(key, secret)?;
        let shown = if secret {
            crate::redact::redact_url(&url)
        } else {
            crate::redact::redact(&url).into_owned()
        };
        let problem = match url::Url::parse(&url) {
            Err(e) => Some(format!("{shown:?} is not a URL ({e})")),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                Some(format!("{shown:?} is not an http:// or https:// URL"))
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                Some(format!("{shown:?} names no host"))
            }
            Ok(_) if url.chars().any(|c| c.is_whitespace() || c.is_control()) => Some(format!(
                "{shown:?} contains white space or control characters"
            )),
            Ok(u) => {
                if secret {
                    // The parts after the host are the credential of a chat webhook.
                    let after_host = &u[url::Position::BeforePath..];
                    if after_host.len() > 1 {
                        self.ctx.secret_value(after_host);
                    }
                    if !u.password().unwrap_or("").is_empty() {
                        self.ctx.secret_value(u.password().unwrap_or(""));
                    }
                }
                None
            }
        };
        match problem {
            Some(message) => {
                self.ctx.problem(self.at(key), message);
                None
            }
            None => Some(url),
        }
    }

    fn string_inner(&mut self, key: &'static str, secret: bool) -> Option<String> {
        let value = self.get(key)?;
        let Value::String(s) = value else {
            self.type_problem(key, "a string", value, secret);
            return None;
        };
        let path = self.at(key);
        if secret {
            self.ctx.secret_value(s);
        }
        let substituted = substitute(s, self.ctx.env);
        if secret && let Ok(Substituted { text, .. }) = &substituted {
            self.ctx.secret_value(text);
        }
        match substituted {
            Ok(Substituted { text, unset }) => {
                if !unset.is_empty() {
                    let names = unset.join(", ");
                    if text.is_empty() {
                        self.ctx.warn(
                            &path,
                            format!(
                                "environment variable {names} is not set; the setting is left out"
                            ),
                        );
                        return None;
                    }
                    self.ctx.warn(
                        &path,
                        format!(
                            "environment variable {names} is not set; substituted an empty string"
                        ),
                    );
                }
                Some(text)
            }
            Err(e) => {
                let message = if secret {
                    e.to_string()
                } else {
                    format!("{s:?}: {e}")
                };
                self.ctx.problem(path, message);
                None
            }
        }
    }

    /// `true`/`false`, or the strings `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`.
    pub(super) fn bool(&mut self, key: &'static str) -> Option<bool> {
        let value = self.get(key)?;
        match value {
            Value::Bool(b) => Some(*b),
            Value::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
                Some(n.as_u64() == Some(1))
            }
            Value::String(_) => {
                let s = self.string(key)?;
                match s.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Some(true),
                    "0" | "false" | "no" | "off" | "" => Some(false),
                    _ => {
                        self.ctx
                            .problem(self.at(key), format!("expected true or false, found {s:?}"));
                        None
                    }
                }
            }
            other => {
                self.type_problem(key, "true or false", other, false);
                None
            }
        }
    }

    /// A whole number, or a string of one.
    pub(super) fn uint(&mut self, key: &'static str) -> Option<u64> {
        let value = self.get(key)?;
        match value {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            Value::String(_) => {
                let s = self.string(key)?;
                s.trim().parse().ok().or_else(|| {
                    self.ctx.problem(
                        self.at(key),
                        format!("expected a whole number, found {s:?}"),
                    );
                    None
                })
            }
            other => {
                self.type_problem(key, "a whole number", other, false);
                None
            }
        }
    }

    /// A whole number in `range`; a number outside it is a problem naming the range.
    pub(super) fn uint_in(&mut self, key: &'static str, range: RangeInclusive<u64>) -> Option<u64> {
        let n = self.uint(key)?;
        if range.contains(&n) {
            return Some(n);
        }
        self.ctx.problem(
            self.at(key),
            format!(
                "{n} is out of range: use {} to {}",
                range.start(),
                range.end()
            ),
        );
        None
    }

    /// A duration in `range`; one outside it is a problem naming the value and the range (and
    /// `hint`, when it says more).
    pub(super) fn duration_in(
        &mut self,
        key: &'static str,
        range: RangeInclusive<Duration>,
        hint: &str,
    ) -> Option<Duration> {
        let d = self.duration(key)?;
        if range.contains(&d) {
            return Some(d);
        }
        self.ctx.problem(
            self.at(key),
            format!(
                "{} is out of range: use {} to {}{hint}",
                format_duration(d),
                format_duration(*range.start()),
                format_duration(*range.end())
            ),
        );
        None
    }

    /// Seconds as a number, or a duration such as `90s`, `30m`, `1h30m`, `2d`. Prefer
    /// [`Obj::duration_in`]: every duration setting has a range.
    fn duration(&mut self, key: &'static str) -> Option<Duration> {
        let value = self.get(key)?;
        match value {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64().map(Duration::from_secs),
            Value::String(_) => {
                let s = self.string(key)?;
                parse_duration(&s).or_else(|| {
                    self.ctx.problem(
                        self.at(key),
                        format!("{s:?} is not a duration: write seconds (3600) or a duration such as \"90s\", \"30m\", \"1h30m\", \"2d\""),
                    );
                    None
                })
            }
            other => {
                self.type_problem(key, "seconds or a duration such as \"30m\"", other, false);
                None
            }
        }
    }

    /// One of a fixed set of words; the message lists them.
    pub(super) fn choice<T>(
        &mut self,
        key: &'static str,
        names: &[&str],
        parse: fn(&str) -> Option<T>,
    ) -> Option<T> {
        let s = self.string(key)?;
        parse(&s).or_else(|| {
            self.ctx.problem(
                self.at(key),
                format!("{s:?} is not one of {}", names.join(", ")),
            );
            None
        })
    }

    /// A nested object.
    pub(super) fn object(&mut self, key: &'static str) -> Option<Obj<'a, 'e>> {
        let value = self.get(key)?;
        match value {
            Value::Object(map) => Some(Obj::new(self.ctx, self.at(key), map)),
            other => {
                self.type_problem(key, "a table / object", other, false);
                None
            }
        }
    }

    /// An array of objects.
    pub(super) fn objects(&mut self, key: &'static str) -> Vec<Obj<'a, 'e>> {
        let Some(value) = self.get(key) else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            self.type_problem(key, "a list", value, false);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.at(key));
            match item {
                Value::Object(map) => out.push(Obj::new(self.ctx, path, map)),
                other => self.ctx.problem(
                    path,
                    format!("expected a table / object, found {}", describe(other)),
                ),
            }
        }
        out
    }

    /// Reports every key that no reader asked for, with the valid keys.
    pub(super) fn finish(self) {
        let mut valid = self.known.clone();
        valid.sort_unstable();
        valid.dedup();
        for key in self.map.keys() {
            if !self.known.contains(&key.as_str()) {
                let hint = closest(key, &valid)
                    .map(|k| format!("did you mean {k:?}? "))
                    .unwrap_or_default();
                self.ctx.problem(
                    self.at(key),
                    format!("unknown key; {hint}valid keys are {}", valid.join(", ")),
                );
            }
        }
    }
}

/// The result of `${VAR}` substitution, with the names of unset variables without default.
#[derive(Debug)]
pub struct Substituted {
    pub text: String,
    pub unset: Vec<String>,
}

/// Why `${…}` substitution failed. The message never quotes the value (it may be a secret); it
/// says where, in characters from the start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstituteError {
    #[error(
        "unclosed \"${{\" at character {at}: write ${{NAME}} or ${{NAME:-default}}, or $$ for a literal $"
    )]
    Unclosed { at: usize },
    #[error(
        "the \"${{…}}\" at character {at} is not a variable reference: write ${{NAME}} or ${{NAME:-default}} (NAME: letters, digits and _, not starting with a digit), or $$ for a literal $"
    )]
    NotAName { at: usize },
}

/// Substitutes `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`. A lone `$` stays as it is.
pub fn substitute(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Substituted, SubstituteError> {
    let mut text = String::with_capacity(s.len());
    let mut unset = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            text.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let at = s[..s.len() - rest.len() + i].chars().count() + 1;
            let end = body.find('}').ok_or(SubstituteError::Unclosed { at })?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            let valid_name = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(SubstituteError::NotAName { at });
            }
            match (
                env(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(v), _) => text.push_str(&v),
                (None, Some(d)) => text.push_str(d),
                (None, None) => unset.push(name.to_owned()),
            }
            rest = &body[end + 1..];
        } else {
            text.push('$');
            rest = after;
        }
    }
    text.push_str(rest);
    Ok(Substituted { text, unset })
}

/// What a JSON value is, for a message that must not quote it (it may hold a secret, or be big):
/// numbers and booleans are shown, strings, lists and tables are named.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a table / object".to_owned(),
    }
}

/// `90s`, `30m`, `6h`, `2d`, or seconds (`3601s`) when no larger unit divides it.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `3600`, `90s`, `30m`, `1h30m`, `2d`, `1h 30m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in s.chars() {
        match c {
            '0'..='9' => number.push(c),
            ' ' if number.is_empty() => {}
            's' | 'm' | 'h' | 'd' | 'w' => {
                let n: u64 = number.parse().ok()?;
                let unit = match c {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    'd' => 86_400,
                    _ => 604_800,
                };
                total = total.checked_add(n.checked_mul(unit)?)?;
                number.clear();
                any = true;
            }
            _ => return None,
        }
    }
    (any && number.is_empty()).then(|| Duration::from_secs(total))
}

/// The valid key closest to a misspelt one, when it is close enough to be a likely typo.
pub(super) fn closest<'k>(key: &str, valid: &[&'k str]) -> Option<&'k str> {
    valid
        .iter()
        .map(|v| (edit_distance(key, v), *v))
        .filter(|(d, v)| *d <= 2.max(v.len() / 4))
        .min()
        .map(|(_, v)| v)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/root".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitution() {
        let check = |s: &str, want: &str, unset: &[&str]| {
            let got = substitute(s, &env).unwrap();
            assert_eq!(
                (
                    got.text.as_str(),
                    got.unset.iter().map(String::as_str).collect::<Vec<_>>()
                ),
                (want, unset.to_vec()),
                "{s:?}"
            );
        };
        check("${HOME}/x", "/root/x", &[]);
        check("${NOPE:-fallback}", "fallback", &[]);
        check("${EMPTY:-fallback}", "fallback", &[]);
        check("${EMPTY}", "", &[]);
        check("a${NOPE}b", "ab", &["NOPE"]);
        check("$$HOME and $5", "$HOME and $5", &[]);
        check("no vars", "no vars", &[]);
        assert_eq!(
            substitute("ab${HOME", &env).unwrap_err(),
            SubstituteError::Unclosed { at: 3 }
        );
        assert_eq!(
            substitute("é${1X}", &env).unwrap_err(),
            SubstituteError::NotAName { at: 2 }
        );
        let message = substitute("hunter2${oops", &env).unwrap_err().to_string();
        assert!(
            message.starts_with("unclosed \"${\" at character 8") && !message.contains("hunter2"),
            "{message}"
        );
    }

    #[test]
    fn durations() {
        let cases = [
            ("3600", Some(3600)),
            ("90s", Some(90)),
            ("30m", Some(1800)),
            ("1h30m", Some(5400)),
            ("1h 30m", Some(5400)),
            ("2d", Some(172_800)),
            ("1w", Some(604_800)),
            ("", None),
            ("m", None),
            ("30x", None),
            ("30", Some(30)),
            ("1h30", None),
            ("-5s", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_duration(s).map(|d| d.as_secs()), want, "{s:?}");
        }
    }

    #[test]
    fn typo_hints() {
        assert_eq!(
            closest("tag_patern", &["tag_pattern", "tag_regex"]),
            Some("tag_pattern")
        );
        assert_eq!(closest("zzzzzz", &["tag_pattern", "tag_regex"]), None);
    }
}
