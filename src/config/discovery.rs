//! `[discovery]`: lookout watches the containers it finds on the host, configured by their
//! labels (see [`super::labels`] and `crate::discovery`).
//!
//! ```toml
//! [discovery]
//! enabled = true                # watch the host's containers (absent section: off)
//! default_action = "notify"     # notify (check and report) or update; label lookout.action overrides
//! include_stopped = false       # also containers that do not run
//! require_enable_label = false  # only containers labelled lookout.enable=true (or a peer's enable)
//! scope = "prod"                # only containers whose …watchtower.scope label says this
//! ```

use serde_json::{Map, Value};

use super::fields::Obj;
use super::labels::Action;

/// What discovery watches and what it does by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverySettings {
    pub enabled: bool,
    /// What a discovered service does unless its label `lookout.action` says otherwise:
    /// [`Action::Notify`] or [`Action::Update`].
    pub default_action: Action,
    /// Stopped containers are watched too (their checks report; nothing runs to update).
    pub include_stopped: bool,
    /// Only containers with an enable label set to true (Watchtower's `--label-enable`).
    pub require_enable_label: bool,
    /// Only containers whose scope label names this scope (Watchtower's `--scope`); without it,
    /// every container whatever its scope.
    pub scope: Option<String>,
}

impl Default for DiscoverySettings {
    /// Off, as when the section is absent; the shipped configuration turns it on.
    fn default() -> Self {
        Self {
            enabled: false,
            default_action: Action::Notify,
            include_stopped: false,
            require_enable_label: false,
            scope: None,
        }
    }
}

/// The actions `default_action` may name (`ignore` is a per-container choice only).
const DEFAULT_ACTIONS: &[&str] = &["notify", "update"];

/// Reads `[discovery]` (absent: off).
pub(super) fn read_discovery(top: &mut Obj<'_, '_>) -> DiscoverySettings {
    let mut settings = DiscoverySettings::default();
    let Some(mut o) = top.object("discovery") else {
        return settings;
    };
    settings.enabled = o.bool("enabled").unwrap_or(true);
    if let Some(action) = o.choice("default_action", DEFAULT_ACTIONS, |s| {
        Action::parse(s).filter(|a| *a != Action::Ignore)
    }) {
        settings.default_action = action;
    }
    if let Some(b) = o.bool("include_stopped") {
        settings.include_stopped = b;
    }
    if let Some(b) = o.bool("require_enable_label") {
        settings.require_enable_label = b;
    }
    if let Some(scope) = o.string("scope") {
        let scope = scope.trim().to_owned();
        if !scope.is_empty() {
            settings.scope = Some(scope);
        }
    }
    o.finish();
    settings
}

/// Watchtower's environment variables that have a lookout equivalent: (variable, key,
/// `[discovery]` key or top-level). What a Watchtower container's environment says keeps its
/// meaning when lookout replaces it.
const WATCHTOWER_ENV: &[(&str, &str)] = &[
    ("WATCHTOWER_POLL_INTERVAL", "check_interval"),
    ("WATCHTOWER_SCHEDULE", "schedule"),
    ("WATCHTOWER_CLEANUP", "cleanup"),
    ("WATCHTOWER_LABEL_ENABLE", "discovery.require_enable_label"),
    ("WATCHTOWER_MONITOR_ONLY", "discovery.default_action"),
    ("WATCHTOWER_NO_PULL", "discovery.default_action"),
    ("WATCHTOWER_INCLUDE_STOPPED", "discovery.include_stopped"),
    ("WATCHTOWER_SCOPE", "discovery.scope"),
];

/// Watchtower's variables lookout reads but has no equivalent for: each set one is named in a
/// warning. (`WATCHTOWER_NOTIFICATION_URL` is read by `[[notify]]`.)
const WATCHTOWER_IGNORED: &[&str] = &[
    "WATCHTOWER_DEBUG",
    "WATCHTOWER_TRACE",
    "WATCHTOWER_RUN_ONCE",
    "WATCHTOWER_REMOVE_VOLUMES",
    "WATCHTOWER_INCLUDE_RESTARTING",
    "WATCHTOWER_REVIVE_STOPPED",
    "WATCHTOWER_NO_RESTART",
    "WATCHTOWER_NO_STARTUP_MESSAGE",
    "WATCHTOWER_TIMEOUT",
    "WATCHTOWER_ROLLING_RESTART",
    "WATCHTOWER_LIFECYCLE_HOOKS",
    "WATCHTOWER_HTTP_API_UPDATE",
    "WATCHTOWER_HTTP_API_TOKEN",
    "WATCHTOWER_HTTP_API_PERIODIC_POLLS",
    "WATCHTOWER_HTTP_API_METRICS",
    "WATCHTOWER_WARN_ON_HEAD_FAILURE",
    "WATCHTOWER_LABEL_TAKE_PRECEDENCE",
    "WATCHTOWER_NOTIFICATIONS",
    "WATCHTOWER_NOTIFICATIONS_LEVEL",
    "WATCHTOWER_NOTIFICATIONS_HOSTNAME",
    "WATCHTOWER_NOTIFICATIONS_DELAY",
    "WATCHTOWER_NOTIFICATION_TEMPLATE",
    "WATCHTOWER_NOTIFICATION_REPORT",
    "WATCHTOWER_NOTIFICATION_TITLE_TAG",
    "WATCHTOWER_NOTIFICATION_SKIP_TITLE",
];

/// One Watchtower variable as lookout's setting: (key, value), or why it cannot be.
fn watchtower_value(name: &str, key: &str, value: &str) -> Result<(String, String), String> {
    let truth = |v: &str| match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("{name}={v:?} is not true or false")),
    };
    Ok(match name {
        // Watchtower's `--interval` is seconds.
        "WATCHTOWER_POLL_INTERVAL" => (key.to_owned(), value.trim().to_owned()),
        // Watchtower's cron has a seconds field first; lookout's starts with the minute.
        "WATCHTOWER_SCHEDULE" => {
            let fields: Vec<&str> = value.split_whitespace().collect();
            match fields.as_slice() {
                [seconds, rest @ ..] if rest.len() == 5 => {
                    if !matches!(*seconds, "0" | "*" | "00") {
                        return Err(format!(
                            "{name}={value:?} runs at second {seconds}; lookout schedules by the \
                             minute: set schedule = \"{}\" instead",
                            rest.join(" ")
                        ));
                    }
                    (key.to_owned(), rest.join(" "))
                }
                _ => (key.to_owned(), value.trim().to_owned()),
            }
        }
        "WATCHTOWER_MONITOR_ONLY" | "WATCHTOWER_NO_PULL" => {
            if !truth(value)? {
                return Err(String::new());
            }
            (key.to_owned(), "notify".to_owned())
        }
        _ => (key.to_owned(), value.trim().to_owned()),
    })
}

/// Puts Watchtower's environment variables with a lookout equivalent into `map`, over the file
/// as every environment override is (a `LOOKOUT_*` or seed variable for the same key wins),
/// returning (key, variable) for each used; warns for each set variable lookout ignores.
pub(super) fn watchtower_env(
    env: &dyn Fn(&str) -> Option<String>,
    map: &mut Map<String, Value>,
    taken: &[&str],
    warn: &mut dyn FnMut(&str, String),
) -> Vec<(&'static str, String)> {
    let mut used = Vec::new();
    for (name, key) in WATCHTOWER_ENV {
        let Some(value) = env(name).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        if taken.contains(key) {
            warn(
                name,
                format!("ignored: {key} is set by another environment variable, which wins"),
            );
            continue;
        }
        let (key, value) = match watchtower_value(name, key, &value) {
            Ok(kv) => kv,
            Err(why) if why.is_empty() => continue,
            Err(why) => {
                warn(name, format!("ignored: {why}"));
                continue;
            }
        };
        match key.strip_prefix("discovery.") {
            Some(sub) => {
                let section = map
                    .entry("discovery")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(section) = section {
                    // A value Watchtower's environment means as the file's boolean.
                    let v = match sub {
                        "require_enable_label" | "include_stopped" => {
                            Value::String(value.to_ascii_lowercase())
                        }
                        _ => Value::String(value),
                    };
                    section.insert(sub.to_owned(), v);
                }
            }
            None => {
                map.insert(key.clone(), Value::String(value));
            }
        }
        used.push((
            WATCHTOWER_ENV
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, k)| *k),
            (*name).to_owned(),
        ));
    }
    for name in WATCHTOWER_IGNORED {
        if env(name).is_some_and(|v| !v.trim().is_empty()) {
            warn(
                name,
                "ignored: lookout has no equivalent of this Watchtower setting (see the README's \
                 table)"
                    .to_owned(),
            );
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use crate::config::labels::Action;
    use crate::config::{Config, Problem, validate};

    fn load(doc: serde_json::Value) -> Result<Config, Vec<Problem>> {
        validate(&doc, &|_| None)
    }

    fn messages(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn discovery_is_off_without_the_section_and_on_with_it() {
        let none = load(serde_json::json!({})).unwrap();
        assert!(!none.discovery.enabled);
        let on = load(serde_json::json!({"discovery": {}})).unwrap();
        assert!(on.discovery.enabled);
        assert_eq!(on.discovery.default_action, Action::Notify);
        let all = load(serde_json::json!({"discovery": {
            "enabled": true, "default_action": "update", "include_stopped": true,
            "require_enable_label": true, "scope": " prod "}}))
        .unwrap();
        assert_eq!(all.discovery.default_action, Action::Update);
        assert!(all.discovery.include_stopped && all.discovery.require_enable_label);
        assert_eq!(all.discovery.scope.as_deref(), Some("prod"));
    }

    #[test]
    fn a_bad_discovery_setting_names_the_key_and_the_choices() {
        let e = load(serde_json::json!({"discovery": {"default_action": "ignore", "scoop": "x"}}))
            .unwrap_err();
        let e = messages(&e);
        assert!(
            e.iter()
                .any(|p| p == "discovery.default_action: \"ignore\" is not one of notify, update"),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|p| p.starts_with("discovery.scoop: unknown key; did you mean \"scope\"?")),
            "{e:?}"
        );
    }

    #[test]
    fn watchtower_variables_with_an_equivalent_are_read_and_the_others_warned_about() {
        let env = |name: &str| {
            match name {
                "WATCHTOWER_POLL_INTERVAL" => Some("300"),
                "WATCHTOWER_SCHEDULE" => Some("0 0 4 * * *"),
                "WATCHTOWER_LABEL_ENABLE" => Some("true"),
                "WATCHTOWER_CLEANUP" => Some("true"),
                "WATCHTOWER_MONITOR_ONLY" => Some("true"),
                "WATCHTOWER_INCLUDE_STOPPED" => Some("1"),
                "WATCHTOWER_ROLLING_RESTART" => Some("true"),
                "WATCHTOWER_DEBUG" => Some("true"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let c = validate(&serde_json::json!({}), &env).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(c.check_interval, std::time::Duration::from_secs(300));
        assert!(c.schedule.is_some());
        assert!(c.cleanup);
        assert!(c.discovery.enabled && c.discovery.require_enable_label);
        assert!(c.discovery.include_stopped);
        assert_eq!(c.discovery.default_action, Action::Notify);
        let warned: Vec<String> = messages(&c.warnings);
        assert_eq!(
            warned,
            [
                "WATCHTOWER_DEBUG: ignored: lookout has no equivalent of this Watchtower setting \
                 (see the README's table)",
                "WATCHTOWER_ROLLING_RESTART: ignored: lookout has no equivalent of this \
                 Watchtower setting (see the README's table)",
            ]
        );
        // LOOKOUT_ wins; a schedule at a second other than 0 is refused with lookout's cron.
        let env = |name: &str| {
            match name {
                "LOOKOUT_CHECK_INTERVAL" => Some("1h"),
                "WATCHTOWER_POLL_INTERVAL" => Some("300"),
                "WATCHTOWER_SCHEDULE" => Some("30 0 4 * * *"),
                "WATCHTOWER_MONITOR_ONLY" => Some("false"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let c = validate(&serde_json::json!({}), &env).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(c.check_interval, std::time::Duration::from_secs(3600));
        assert!(c.schedule.is_none());
        assert!(!c.discovery.enabled, "no variable asked for discovery");
        let warned = messages(&c.warnings);
        assert!(
            warned[0].starts_with("WATCHTOWER_POLL_INTERVAL: ignored: check_interval is set by"),
            "{warned:?}"
        );
        assert!(
            warned[1].contains("set schedule = \"0 4 * * *\" instead"),
            "{warned:?}"
        );
    }

    #[test]
    fn a_standalone_service_names_its_container_and_no_compose_keys() {
        let c = load(serde_json::json!({"services": [
            {"name": "proxy", "image": "traefik:3.1", "container": "proxy"}]}))
        .unwrap();
        assert_eq!(c.services[0].container.as_deref(), Some("proxy"));
        assert_eq!(c.service_keys["proxy"], ["container", "image", "name"]);
        let e = load(serde_json::json!({"services": [
            {"name": "p", "image": "traefik:3.1", "container": "proxy",
             "compose_project": "edge"},
            {"name": "q", "image": "traefik:3.1", "container": " "}]}))
        .unwrap_err();
        let e = messages(&e);
        assert!(
            e.contains(
                &"services[0].container: a standalone container is not a compose service: set \
                  container or compose_project, not both"
                    .to_owned()
            ),
            "{e:?}"
        );
        assert!(
            e.contains(
                &"services[1].container: must be the container's name, as `docker ps` shows it"
                    .to_owned()
            ),
            "{e:?}"
        );
        let e = load(serde_json::json!({"services": [{"name": "p", "image": "traefik:3.1"}]}))
            .unwrap_err();
        assert!(
            messages(&e)[0].contains("or container a standalone container"),
            "{e:?}"
        );
    }
}
