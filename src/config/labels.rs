//! A service's settings from its container's labels: lookout's own (`lookout.*`) and the labels
//! Watchtower, What's Up Docker and Diun users already have on their containers.
//!
//! [`read`] sorts a container's labels into two layers of `[[services]]` keys — lookout's own and
//! the foreign ones — each key with the label it came from, plus what is not a service setting
//! (the action, enable, scope, dependencies, a display name). [`merge`] stacks layers in the
//! order the caller decides, and [`service_from_labels`] validates the result with exactly the
//! rules of the configuration file, naming the container and the label in every problem.
//!
//! Labels are the container's (compose fills them from the service's `labels:`); an image's own
//! `LABEL`s are not trusted for policy, so callers pass container labels only. Label values are
//! taken literally: no `${VAR}` of lookout's environment is substituted into them.
//!
//! Pure: no Docker, no files.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::fields::{Ctx, Obj, Problem};
use super::{Config, ServiceDefaults, ServiceSpec};

/// The prefix of lookout's own labels.
pub const PREFIX: &str = "lookout.";

/// lookout's own labels that are `[[services]]` keys, each under the same name.
const SERVICE_KEYS: &[&str] = &[
    "policy",
    "tag_pattern",
    "tag_regex",
    "tag_exclude",
    "semver_pattern",
    "semver_range",
    "update_level",
    "prerelease",
    "maintenance_window",
    "maintenance_days",
    "timezone",
    "health_timeout",
    "health_stable",
    "probe_url",
    "pin_digest",
    "cleanup",
    "group",
    "stack_file",
];

/// lookout's own labels that are not service keys.
const OTHER_KEYS: &[&str] = &["enable", "action", "depends_on"];

const WATCHTOWER: &str = "com.centurylinklabs.watchtower.";

/// What lookout does with a discovered service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A health-gated update with rollback.
    Update,
    /// Check and report only (metrics, webhooks, API, `lookout check`).
    Notify,
    /// Not watched at all.
    Ignore,
}

impl Action {
    pub const NAMES: &'static [&'static str] = &["update", "notify", "ignore"];

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "update" => Some(Self::Update),
            "notify" => Some(Self::Notify),
            "ignore" => Some(Self::Ignore),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Update => "update",
            Self::Notify => "notify",
            Self::Ignore => "ignore",
        }
    }
}

/// `[[services]]` keys and the label each came from (`label lookout.policy`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layer {
    pub values: Map<String, Value>,
    pub sources: BTreeMap<String, String>,
}

impl Layer {
    fn set(&mut self, key: &str, value: impl Into<String>, label: &str) {
        self.values
            .insert(key.to_owned(), Value::String(value.into()));
        self.sources
            .insert(key.to_owned(), format!("label {label}"));
    }

    fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }
}

/// A value that is not a service key, with the label it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub label: String,
}

/// Everything a container's labels say to lookout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSettings {
    /// From `lookout.*`.
    pub own: Layer,
    /// From Watchtower's, What's Up Docker's and Diun's labels.
    pub foreign: Layer,
    /// `lookout.action`, else what a foreign label means (monitor-only → notify).
    pub action: Option<Sourced<Action>>,
    /// `lookout.enable`, else `…watchtower.enable`, `wud.watch`, `diun.enable`.
    pub enable: Option<Sourced<bool>>,
    /// Watchtower's `…scope`: which lookout (`discovery.scope`) watches the container.
    pub scope: Option<Sourced<String>>,
    /// Containers or services to update before this one, each with the label that named it
    /// (`lookout.depends_on`, Watchtower's `…depends-on`); see [`crate::discovery::depends`].
    pub depends_on: Vec<Sourced<String>>,
    /// `wud.display.name`: how pages and messages name the service.
    pub display_name: Option<String>,
    /// Labels of two tools that disagree: `lookout.policy = semver` beside
    /// `wud.watch.digest = true`. lookout's own win; `lookout doctor` lists these.
    pub conflicts: Vec<String>,
    /// Foreign labels read but without an equivalent (`diun.max_tags`), for `lookout doctor`.
    pub ignored: Vec<String>,
    /// Labels whose value is wrong, or `lookout.*` labels lookout does not know.
    pub problems: Vec<Problem>,
}

/// Sorts a container's labels into what they say to lookout.
pub fn read(labels: &HashMap<String, String>) -> LabelSettings {
    let mut out = LabelSettings::default();
    let mut sorted: Vec<(&String, &String)> = labels.iter().collect();
    sorted.sort();
    for (label, value) in &sorted {
        let Some(key) = label.strip_prefix(PREFIX) else {
            continue;
        };
        read_own(&mut out, label, key, value);
    }
    for (label, value) in &sorted {
        if let Some(key) = label.strip_prefix(WATCHTOWER) {
            read_watchtower(&mut out, label, key, value);
        } else if let Some(key) = label.strip_prefix("wud.") {
            read_wud(&mut out, label, key, value);
        } else if let Some(key) = label.strip_prefix("diun.") {
            read_diun(&mut out, label, key, value);
        }
    }
    out
}

fn read_own(out: &mut LabelSettings, label: &str, key: &str, value: &str) {
    if SERVICE_KEYS.contains(&key) {
        out.own.set(key, value, label);
        return;
    }
    match key {
        "enable" => match truth(value) {
            Some(b) => {
                out.enable = Some(Sourced {
                    value: b,
                    label: label.to_owned(),
                })
            }
            None => problem(
                out,
                label,
                format!("expected true or false, found {value:?}"),
            ),
        },
        "action" => match Action::parse(value) {
            Some(a) => {
                out.action = Some(Sourced {
                    value: a,
                    label: label.to_owned(),
                })
            }
            None => problem(
                out,
                label,
                format!("{value:?} is not one of {}", Action::NAMES.join(", ")),
            ),
        },
        "depends_on" => depends_on(out, label, value),
        _ => {
            let mut valid: Vec<&str> = SERVICE_KEYS.iter().chain(OTHER_KEYS).copied().collect();
            valid.sort_unstable();
            let hint = super::fields::closest(key, &valid)
                .map(|k| format!("did you mean {PREFIX}{k}? "))
                .unwrap_or_default();
            problem(
                out,
                label,
                format!(
                    "unknown label; {hint}lookout's labels are {}",
                    valid
                        .iter()
                        .map(|k| format!("{PREFIX}{k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
}

fn read_watchtower(out: &mut LabelSettings, label: &str, key: &str, value: &str) {
    match key {
        "enable" => foreign_enable(out, label, value),
        // Watchtower checks but does not update; without a pull lookout's check is the same.
        "monitor-only" | "no-pull" => {
            if truth(value) == Some(true) {
                foreign_action(out, label, Action::Notify);
            }
        }
        "depends-on" => depends_on(out, label, value),
        "scope" => {
            if out.scope.is_none() {
                out.scope = Some(Sourced {
                    value: value.trim().to_owned(),
                    label: label.to_owned(),
                });
            }
        }
        _ => out.ignored.push(label.to_owned()),
    }
}

fn read_wud(out: &mut LabelSettings, label: &str, key: &str, value: &str) {
    match key {
        "watch" => foreign_enable(out, label, value),
        "tag.include" => foreign_key(out, "tag_regex", value, label),
        "tag.exclude" => foreign_key(out, "tag_exclude", value, label),
        "watch.digest" => {
            if truth(value) == Some(true) {
                foreign_key(out, "policy", "digest", label);
            }
        }
        "display.name" => out.display_name = Some(value.to_owned()),
        _ => out.ignored.push(label.to_owned()),
    }
}

fn read_diun(out: &mut LabelSettings, label: &str, key: &str, value: &str) {
    match key {
        "enable" => foreign_enable(out, label, value),
        // Diun reports every new tag of the repository; lookout reads that as "follow the
        // newest version", which it can also update to.
        "watch_repo" => {
            if truth(value) == Some(true) {
                foreign_key(out, "policy", "semver", label);
            }
        }
        // Diun's lists are `;`-separated regexes: any one matching is enough.
        "include_tags" => foreign_key(out, "tag_regex", &any_of(value), label),
        "exclude_tags" => foreign_key(out, "tag_exclude", &any_of(value), label),
        _ => out.ignored.push(label.to_owned()),
    }
}

/// A foreign label's value for a service key: recorded as a conflict when lookout's own label
/// or an earlier foreign label already set it differently.
fn foreign_key(out: &mut LabelSettings, key: &str, value: &str, label: &str) {
    let clash = |layer: &Layer| {
        layer
            .values
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| *v != value)
            .map(|v| {
                format!(
                    "{} = {v:?}",
                    layer.sources[key].trim_start_matches("label ")
                )
            })
    };
    if let Some(winner) = clash(&out.own).or_else(|| clash(&out.foreign)) {
        out.conflicts.push(format!(
            "{label} = {value:?} disagrees with {winner}, which wins"
        ));
    }
    if !out.own.has(key) && !out.foreign.has(key) {
        out.foreign.set(key, value, label);
    }
}

fn foreign_enable(out: &mut LabelSettings, label: &str, value: &str) {
    let Some(b) = truth(value) else {
        problem(
            out,
            label,
            format!("expected true or false, found {value:?}"),
        );
        return;
    };
    match &out.enable {
        Some(e) if e.value != b => out.conflicts.push(format!(
            "{label} = {value:?} disagrees with {} = {}, which wins",
            e.label, e.value
        )),
        Some(_) => {}
        None => {
            out.enable = Some(Sourced {
                value: b,
                label: label.to_owned(),
            })
        }
    }
}

fn foreign_action(out: &mut LabelSettings, label: &str, action: Action) {
    match &out.action {
        Some(a) if a.value != action => out.conflicts.push(format!(
            "{label} means {} but {} = {}, which wins",
            action.as_str(),
            a.label,
            a.value.as_str()
        )),
        Some(_) => {}
        None => {
            out.action = Some(Sourced {
                value: action,
                label: label.to_owned(),
            })
        }
    }
}

fn problem(out: &mut LabelSettings, label: &str, message: String) {
    out.problems.push(Problem {
        path: format!("label {label}"),
        message,
    });
}

/// The label conventions' truth values (`true`, `false`, case-insensitive, and `1`/`0`,
/// `yes`/`no`, `on`/`off` as in the configuration file).
fn truth(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A comma-separated list, trimmed, empty parts dropped.
/// Each name of a `depends_on` label, with the label; a leading `/` (Docker's container name
/// form, which Watchtower accepts) is dropped.
fn depends_on(out: &mut LabelSettings, label: &str, value: &str) {
    for name in list(value) {
        let name = name.trim_start_matches('/').to_owned();
        if !name.is_empty() && !out.depends_on.iter().any(|d| d.value == name) {
            out.depends_on.push(Sourced {
                value: name,
                label: label.to_owned(),
            });
        }
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Diun's `;`-separated regexes as one regex that matches when any does.
fn any_of(value: &str) -> String {
    let parts: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    match parts.as_slice() {
        [one] => (*one).to_owned(),
        many => many
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|"),
    }
}

/// The layers stacked: for each key, the first layer that sets it wins, and says where it came
/// from.
pub fn merge(layers: &[&Layer]) -> Layer {
    let mut out = Layer::default();
    for layer in layers {
        for (key, value) in &layer.values {
            if !out.values.contains_key(key) {
                out.values.insert(key.clone(), value.clone());
                if let Some(source) = layer.sources.get(key) {
                    out.sources.insert(key.clone(), source.clone());
                }
            }
        }
    }
    out
}

/// A service built from `base` (the keys discovery knows: `name`, `image`, `compose_project`,
/// `compose_service`, …) and `layer` (settings from labels), validated with the rules of the
/// configuration file. Every problem names the container and, for a key a label gave, the
/// label: `container web-1, label lookout.policy: "newest" is not one of …`.
pub fn service_from_labels(
    container: &str,
    base: &Map<String, Value>,
    layer: &Layer,
    config: &Config,
) -> Result<ServiceSpec, Vec<Problem>> {
    let defaults = ServiceDefaults {
        health_timeout: config.health_timeout,
        health_stable: config.health_stable,
        cleanup: config.cleanup,
        pin_digest: config.pin_digest,
    };
    let mut map = base.clone();
    for (key, value) in &layer.values {
        map.insert(key.clone(), value.clone());
    }
    // Label values are literal: nothing of lookout's environment is substituted into them.
    let no_env = |_: &str| None;
    let ctx = Ctx::new(&no_env);
    let path = format!("container {container}");
    let spec = ServiceSpec::from_object(Obj::new(&ctx, path.clone(), &map), &defaults);
    let problems: Vec<Problem> = ctx
        .problems
        .into_inner()
        .into_iter()
        .map(|p| {
            let key = p
                .path
                .strip_prefix(&format!("{path}."))
                .map(|k| k.split(['.', '[']).next().unwrap_or(k).to_owned());
            let path = match key.as_deref().and_then(|k| layer.sources.get(k)) {
                Some(source) => format!("{path}, {source}"),
                None => p.path,
            };
            Problem {
                path,
                message: p.message,
            }
        })
        .collect();
    match spec {
        Some(spec) if problems.is_empty() => Ok(spec),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn defaults() -> Config {
        crate::config::validate(&serde_json::json!({}), &|_| None).unwrap()
    }

    fn base() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("name".into(), "web".into());
        m.insert("image".into(), "nginx:1.27.0".into());
        m.insert("compose_project".into(), "site".into());
        m.insert("compose_service".into(), "web".into());
        m
    }

    #[test]
    fn own_labels_are_service_keys_with_their_source() {
        let s = read(&labels(&[
            ("lookout.action", "update"),
            ("lookout.policy", "semver"),
            ("lookout.update_level", "minor"),
            ("lookout.health_timeout", "90s"),
            ("lookout.depends_on", "db, cache"),
            ("org.opencontainers.image.source", "https://example.com"),
        ]));
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.action.as_ref().map(|a| a.value), Some(Action::Update));
        assert_eq!(s.own.sources["policy"], "label lookout.policy");
        let names: Vec<&str> = s.depends_on.iter().map(|d| d.value.as_str()).collect();
        assert_eq!(names, ["db", "cache"]);
        assert!(s.depends_on.iter().all(|d| d.label == "lookout.depends_on"));
        let spec = service_from_labels("site-web-1", &base(), &s.own, &defaults()).unwrap();
        assert_eq!(spec.policy_spec.policy.map(|p| p.as_str()), Some("semver"));
        assert_eq!(spec.health_timeout, std::time::Duration::from_secs(90));
        assert_eq!(spec.compose_project.as_deref(), Some("site"));
    }

    #[test]
    fn a_bad_label_names_the_container_the_label_and_the_choices() {
        let s = read(&labels(&[
            ("lookout.policy", "newest"),
            ("lookout.health_timeout", "forever"),
            ("lookout.acton", "update"),
            ("lookout.action", "sometimes"),
        ]));
        let problems: Vec<String> = s.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(
            problems[0],
            "label lookout.action: \"sometimes\" is not one of update, notify, ignore"
        );
        assert!(
            problems[1].starts_with(
                "label lookout.acton: unknown label; did you mean lookout.action? lookout's labels are"
            ),
            "{problems:?}"
        );
        assert!(problems[1].contains("lookout.action"), "{problems:?}");
        let e = service_from_labels("site-web-1", &base(), &s.own, &defaults()).unwrap_err();
        let e: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert!(
            e.iter().any(
                |p| p.starts_with("container site-web-1, label lookout.policy: ")
                    && p.contains("semver")
            ),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|p| p.starts_with("container site-web-1, label lookout.health_timeout: ")),
            "{e:?}"
        );
    }

    #[test]
    fn label_values_are_literal_not_lookouts_environment() {
        let s = read(&labels(&[("lookout.tag_pattern", "${HOME}-*")]));
        let spec = service_from_labels("c", &base(), &s.own, &defaults());
        // `${HOME}` is not read from lookout's environment: the unset variable leaves the key out.
        let spec = spec.unwrap();
        assert_ne!(
            spec.policy_spec.tag_pattern.as_deref(),
            std::env::var("HOME")
                .ok()
                .map(|h| format!("{h}-*"))
                .as_deref()
        );
    }

    #[test]
    fn foreign_labels_table() {
        // (labels, key or field, value, source)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (
                &[("wud.tag.include", r"^\d+\.\d+$")],
                "tag_regex",
                r"^\d+\.\d+$",
                "label wud.tag.include",
            ),
            (
                &[("wud.tag.exclude", "rc")],
                "tag_exclude",
                "rc",
                "label wud.tag.exclude",
            ),
            (
                &[("wud.watch.digest", "true")],
                "policy",
                "digest",
                "label wud.watch.digest",
            ),
            (
                &[("diun.watch_repo", "true")],
                "policy",
                "semver",
                "label diun.watch_repo",
            ),
            (
                &[("diun.include_tags", r"^\d+$;^latest$")],
                "tag_regex",
                r"(?:^\d+$)|(?:^latest$)",
                "label diun.include_tags",
            ),
            (
                &[("diun.exclude_tags", "-rc")],
                "tag_exclude",
                "-rc",
                "label diun.exclude_tags",
            ),
        ];
        for (pairs, key, value, source) in cases {
            let s = read(&labels(pairs));
            assert_eq!(
                s.foreign.values.get(*key).and_then(Value::as_str),
                Some(*value),
                "{pairs:?}"
            );
            assert_eq!(
                s.foreign.sources.get(*key).map(String::as_str),
                Some(*source),
                "{pairs:?}"
            );
            assert!(s.own.values.is_empty());
        }
    }

    #[test]
    fn watchtower_labels_mean_enable_notify_dependencies_and_scope() {
        let s = read(&labels(&[
            ("com.centurylinklabs.watchtower.enable", "false"),
            ("com.centurylinklabs.watchtower.monitor-only", "true"),
            ("com.centurylinklabs.watchtower.depends-on", "db,/proxy"),
            ("com.centurylinklabs.watchtower.scope", "prod"),
            (
                "com.centurylinklabs.watchtower.lifecycle.pre-update",
                "/x.sh",
            ),
        ]));
        assert_eq!(s.enable.map(|e| e.value), Some(false));
        assert_eq!(s.action.map(|a| a.value), Some(Action::Notify));
        let names: Vec<&str> = s.depends_on.iter().map(|d| d.value.as_str()).collect();
        assert_eq!(names, ["db", "proxy"]);
        assert_eq!(
            s.depends_on[0].label,
            "com.centurylinklabs.watchtower.depends-on"
        );
        assert_eq!(s.scope.map(|x| x.value).as_deref(), Some("prod"));
        assert_eq!(
            s.ignored,
            ["com.centurylinklabs.watchtower.lifecycle.pre-update"]
        );
        let no_pull = read(&labels(&[(
            "com.centurylinklabs.watchtower.no-pull",
            "true",
        )]));
        assert_eq!(no_pull.action.map(|a| a.value), Some(Action::Notify));
        let wud = read(&labels(&[
            ("wud.watch", "false"),
            ("wud.display.name", "Web"),
        ]));
        assert_eq!(wud.enable.map(|e| e.value), Some(false));
        assert_eq!(wud.display_name.as_deref(), Some("Web"));
    }

    #[test]
    fn lookouts_own_labels_win_and_the_disagreement_is_recorded() {
        let s = read(&labels(&[
            ("lookout.policy", "semver"),
            ("wud.watch.digest", "true"),
            ("lookout.enable", "true"),
            ("com.centurylinklabs.watchtower.enable", "false"),
            ("lookout.action", "update"),
            ("com.centurylinklabs.watchtower.monitor-only", "true"),
        ]));
        assert_eq!(s.own.values["policy"], "semver");
        assert!(!s.foreign.has("policy"));
        assert_eq!(s.enable.as_ref().map(|e| e.value), Some(true));
        assert_eq!(s.action.as_ref().map(|a| a.value), Some(Action::Update));
        assert_eq!(s.conflicts.len(), 3, "{:?}", s.conflicts);
        assert!(
            s.conflicts.contains(
                &"wud.watch.digest = \"digest\" disagrees with lookout.policy = \"semver\", which wins".to_owned()
            ),
            "{:?}",
            s.conflicts
        );
    }

    #[test]
    fn merge_takes_each_key_from_the_first_layer_that_sets_it() {
        let s = read(&labels(&[
            ("lookout.policy", "semver"),
            ("wud.tag.include", r"^\d+$"),
        ]));
        let mut config = Layer::default();
        config.values.insert("policy".into(), "glob".into());
        config.values.insert("tag_regex".into(), "^v".into());
        config.values.insert("cleanup".into(), true.into());
        config.sources.insert("policy".into(), "config".into());
        config.sources.insert("tag_regex".into(), "config".into());
        config.sources.insert("cleanup".into(), "config".into());
        let merged = merge(&[&s.own, &config, &s.foreign]);
        assert_eq!(merged.values["policy"], "semver");
        assert_eq!(merged.sources["policy"], "label lookout.policy");
        assert_eq!(merged.values["tag_regex"], "^v");
        assert_eq!(merged.sources["tag_regex"], "config");
        assert_eq!(merged.values["cleanup"], true);
    }
}
