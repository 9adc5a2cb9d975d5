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
