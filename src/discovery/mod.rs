//! Discovery: the services lookout finds on the host, configured by their containers' labels.
//!
//! Over the one container list a pass makes, [`groups`] sorts the containers into compose
//! services (by `com.docker.compose.project` and `…service`) and standalone containers (every
//! other one, a service named after the container), and says why the rest are left out. Once the
//! caller knows the image reference each group's container was created with (`Config.Image`,
//! inspected once per container), [`resolve`] turns each group into a service: policy from the
//! labels through [`crate::config::labels`], an explicit `[[services]]` entry naming the same
//! compose service or container winning field by field, then lookout's own labels, then the
//! labels of Watchtower, What's Up Docker and Diun. A bad label fails only its own service.
//!
//! Pure: the container list and image references come in, services and reasons go out.

// Container lists and labels come from the engine: no panic on what they hold.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing
    )
)]

pub mod depends;
pub mod events;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::labels::{self, Action, LabelSettings, Layer};
use crate::config::{Config, ServiceSpec};
use crate::policy::Policy;
use crate::runtime::compose_labels;
use crate::runtime::view::{ImageRefs, PassView};
use crate::runtime::{
    ContainerRuntime, ContainerState, ContainerSummary, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE,
};

/// What a discovered service is on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// A compose service: every container of (project, service).
    Compose { project: String, service: String },
    /// A container started by `docker run`.
    Standalone { container: String },
}

/// Containers that make one service, before their image is known.
#[derive(Debug, Clone)]
pub struct Group {
    pub kind: Kind,
    /// The container whose labels and image speak for the group: the first running one by
    /// name (the first by name when none runs).
    pub container: ContainerSummary,
    /// Every container of the group, by name.
    pub containers: Vec<String>,
}

/// A container discovery does not watch, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Left {
    pub container: String,
    pub reason: String,
}

/// The containers sorted into groups, and those left out before looking at labels.
#[derive(Debug, Clone, Default)]
pub struct Grouped {
    pub groups: Vec<Group>,
    /// Containers lookout cannot manage (a `compose run` one-off, a stopped one).
    pub unmanaged: Vec<Left>,
}

/// The label Swarm gives each task's container: the service it belongs to.
pub const SWARM_SERVICE_LABEL: &str = "com.docker.swarm.service.name";

/// Sorts the listed containers into compose services and standalone containers. Stopped
/// containers count only with `include_stopped`.
pub fn groups(listed: &[ContainerSummary], include_stopped: bool) -> Grouped {
    let mut out = Grouped::default();
    let mut compose: BTreeMap<(String, String), Vec<&ContainerSummary>> = BTreeMap::new();
    let mut sorted: Vec<&ContainerSummary> = listed.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for c in sorted {
        let label = |k: &str| {
            c.labels
                .get(k)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let running = c.state == ContainerState::Running;
        if !running && !include_stopped {
            continue;
        }
        if label(LABEL_ONEOFF).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            out.unmanaged.push(Left {
                container: c.name.clone(),
                reason: "made by `compose run`: a one-off container, not a service's".into(),
            });
            continue;
        }
        if let Some(service) = label(SWARM_SERVICE_LABEL) {
            out.unmanaged.push(Left {
                container: c.name.clone(),
                reason: format!(
                    "a task of Swarm service {service:?}: lookout updates the Swarm service, \
                     never its tasks (on a manager, see [swarm])"
                ),
            });
            continue;
        }
        match (label(LABEL_PROJECT), label(LABEL_SERVICE)) {
            (Some(project), Some(service)) => compose
                .entry((project.to_owned(), service.to_owned()))
                .or_default()
                .push(c),
            (Some(_), None) => out.unmanaged.push(Left {
                container: c.name.clone(),
                reason: format!("it has a `{LABEL_PROJECT}` label but no `{LABEL_SERVICE}`"),
            }),
            _ => out.groups.push(Group {
                kind: Kind::Standalone {
                    container: c.name.clone(),
                },
                container: c.clone(),
                containers: vec![c.name.clone()],
            }),
        }
    }
    for ((project, service), members) in compose {
        let Some(first) = members
            .iter()
            .find(|c| c.state == ContainerState::Running)
            .or(members.first())
        else {
            continue;
        };
        out.groups.push(Group {
            kind: Kind::Compose { project, service },
            container: (*first).clone(),
            containers: members.iter().map(|c| c.name.clone()).collect(),
        });
    }
    out
}

/// A service discovery found.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub kind: Kind,
    /// The container whose labels configure it.
    pub container: String,
    pub containers: Vec<String>,
    pub action: Action,
    /// Where the action came from: `label lookout.action`, `discovery.default_action`,
    /// `config` (an explicit entry, updated as configured services are).
    pub action_source: String,
    /// The service as checked. When `problems` is not empty, the labels are left out of it and
    /// its check fails with them.
    pub spec: ServiceSpec,
    /// Bad labels: each names the container, the label and the valid choices.
    pub problems: Vec<String>,
    /// Where each setting that is not a default came from (`config`, `label lookout.policy`,
    /// `label wud.tag.include`); keys not here are defaults.
    pub sources: BTreeMap<String, String>,
    /// The `[[services]]` keys discovery derived (identity and labels), for `lookout discover`.
    pub values: Map<String, Value>,
    /// The name of the `[[services]]` entry merged in, when one names this service.
    pub configured: Option<String>,
    /// Labels of two tools that disagree (lookout's own win).
    pub conflicts: Vec<String>,
    /// Foreign labels read without an equivalent.
    pub ignored: Vec<String>,
    /// What its labels say to update first (`lookout.depends_on`, Watchtower's `…depends-on`),
    /// each name with its label; matched against a pass's services by [`depends::waits`].
    pub depends_on: Vec<labels::Sourced<String>>,
    /// `wud.display.name`.
    pub display_name: Option<String>,
}

/// Everything one discovery found.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub found: Vec<Found>,
    /// Containers left out by their labels or the `[discovery]` settings.
    pub excluded: Vec<Left>,
    /// Containers lookout cannot manage, and why.
    pub unmanaged: Vec<Left>,
}

impl Discovery {
    pub fn get(&self, name: &str) -> Option<&Found> {
        self.found.iter().find(|f| f.name == name)
    }

    /// The services of a pass: each configured one (merged with its containers' labels when
    /// discovery found it), then the discovered ones no entry names.
    pub fn services(&self, config: &Config) -> Vec<ServiceSpec> {
        let mut out: Vec<ServiceSpec> = config
            .services
            .iter()
            .map(|s| match self.get(&s.name) {
                Some(f) if f.configured.is_some() => f.spec.clone(),
                _ => s.clone(),
            })
            .collect();
        out.extend(
            self.found
                .iter()
                .filter(|f| f.configured.is_none())
                .map(|f| f.spec.clone()),
        );
        out
    }
}

/// The keys that make a service's tag policy, in the order [`policy_source`] asks them: the
/// policy itself first, then what implies or narrows it.
const POLICY_KEYS: &[&str] = &[
    "policy",
    "tag_regex",
    "tag_pattern",
    "semver_pattern",
    "semver_range",
    "update_level",
    "tag_exclude",
    "prerelease",
];

/// Where a service's tag policy came from, as `lookout check`, `lookout discover` and the API
/// (`policy_source`, the page) all say it: `label lookout.policy`, `label wud.tag.include`, …
/// for a label, `config` for its `[[services]]` entry, `default` when nothing set one. `found`
/// is what discovery found for the service, if it did.
pub fn policy_source(spec: &ServiceSpec, found: Option<&Found>) -> String {
    if let Some(f) = found {
        return POLICY_KEYS
            .iter()
            .find_map(|k| f.sources.get(*k).cloned())
            .unwrap_or_else(|| "default".to_owned());
    }
    let p = &spec.policy_spec;
    let configured = p.policy.is_some()
        || p.tag_regex.is_some()
        || p.tag_pattern.is_some()
        || p.semver_pattern.is_some()
        || p.semver_range.is_some()
        || p.update_level.is_some()
        || p.tag_exclude.is_some()
        || p.prerelease.is_some();
    if configured { "config" } else { "default" }.to_owned()
}

/// Discovery over `view`'s one container list: each group's container inspected once (when the
/// view has not seen it before). Fails only when the list cannot be made.
pub(crate) async fn from_view<R: ContainerRuntime>(
    view: &PassView<'_, R>,
    config: &Config,
) -> Result<Discovery, String> {
    let listed = view.containers().await?;
    let mut grouped = groups(&listed, config.discovery.include_stopped);
    let mut refs = HashMap::new();
    for group in &mut grouped.groups {
        // A container shows its image's `LABEL`s among its own; those are not trusted for
        // policy, so only labels the container was given (compose's `labels:`, `--label`) stay.
        match view.image(&group.container.image_id).await {
            Ok(Some(image)) => {
                group.container.labels = own_labels(&group.container.labels, &image.labels);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(container = %group.container.name, error = %e, "discovery cannot inspect a container's image");
            }
        }
        match view.image_ref(&group.container.id).await {
            Ok(Some(r)) => {
                refs.insert(group.container.id.clone(), r);
            }
            // Removed since the list.
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(container = %group.container.name, error = %e, "discovery cannot inspect a container");
            }
        }
    }
    Ok(resolve(grouped, &refs, config, &|p| {
        std::fs::canonicalize(p).ok()
    }))
}

/// The labels of a container that its image does not carry with the same value.
pub fn own_labels(
    container: &HashMap<String, String>,
    image: &HashMap<String, String>,
) -> HashMap<String, String> {
    container
        .iter()
        .filter(|(k, v)| image.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Discovery once, outside the engine (`lookout discover`, `check`, `doctor`).
pub async fn scan<R: ContainerRuntime>(runtime: &R, config: &Config) -> Result<Discovery, String> {
    let refs = ImageRefs::default();
    from_view(&PassView::listing(runtime, &refs, true), config).await
}

/// The TOML of a `[[services]]` entry that configures `found` as discovery does: what a user
/// pastes into the configuration file to keep it whatever its labels become.
pub fn toml_entry(found: &Found) -> String {
    let mut entry = toml::Table::new();
    for (key, value) in &found.values {
        if let Some(s) = value.as_str() {
            entry.insert(key.clone(), toml::Value::String(s.to_owned()));
        }
    }
    let mut doc = toml::Table::new();
    doc.insert(
        "services".into(),
        toml::Value::Array(vec![toml::Value::Table(entry)]),
    );
    toml::to_string(&doc).unwrap_or_default()
}

/// The name of a discovered compose service: `project-service`.
pub fn compose_name(project: &str, service: &str) -> String {
    format!("{project}-{service}")
}

/// Turns groups into services. `image_refs` gives each container's `Config.Image` by id;
/// `canonical` resolves a configured `compose_file` as the container labels record paths.
pub fn resolve(
    grouped: Grouped,
    image_refs: &HashMap<String, String>,
    config: &Config,
    canonical: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Discovery {
    let settings = &config.discovery;
    let mut out = Discovery {
        unmanaged: grouped.unmanaged,
        ..Discovery::default()
    };
    let mut names: HashSet<String> = HashSet::new();
    for group in grouped.groups {
        let c = &group.container;
        let read = labels::read(&c.labels);
        let explicit = explicit_entry(config, &group, canonical);
        if explicit.is_none()
            && let Some(why) = excluded(&read, settings)
        {
            out.excluded.push(Left {
                container: c.name.clone(),
                reason: why,
            });
            continue;
        }
        let (action, action_source) = match (&read.action, explicit) {
            (Some(a), _) => (a.value, format!("label {}", a.label)),
            (None, Some(_)) => (Action::Update, "config".to_owned()),
            (None, None) => (
                settings.default_action,
                "discovery.default_action".to_owned(),
            ),
        };
        if action == Action::Ignore {
            out.excluded.push(Left {
                container: c.name.clone(),
                reason: format!("{action_source} = ignore"),
            });
            continue;
        }
        let image = match image_refs.get(&c.id).map(String::as_str) {
            None | Some("") => {
                out.unmanaged.push(Left {
                    container: c.name.clone(),
                    reason: "it has no image reference (Config.Image is empty)".into(),
                });
                continue;
            }
            Some(r) if by_id_only(r, &c.image_id) => {
                out.unmanaged.push(Left {
                    container: c.name.clone(),
                    reason: format!(
                        "its image is given only by ID ({r}): no repository or tag to follow; \
                         recreate it from a reference such as nginx:1.27"
                    ),
                });
                continue;
            }
            Some(r) => r.to_owned(),
        };
        if let Kind::Compose { .. } = &group.kind
            && let Ok(run) = compose_labels::read(&c.labels)
            && let Some(gone) = run.config_files.iter().find(|f| canonical(f).is_none())
            && explicit.is_none()
        {
            out.unmanaged.push(Left {
                container: c.name.clone(),
                reason: format!(
                    "its compose file {} is gone (or lookout cannot read it); when lookout runs \
                     in a container, mount the compose folders at the same path as on the host",
                    gone.display()
                ),
            });
            continue;
        }
        let name = match explicit {
            Some(spec) => spec.name.clone(),
            None => match &group.kind {
                Kind::Compose { project, service } => compose_name(project, service),
                Kind::Standalone { container } => container.clone(),
            },
        };
        let taken = explicit.is_none() && config.services.iter().any(|s| s.name == name);
        if taken || !names.insert(name.clone()) {
            out.unmanaged.push(Left {
                container: c.name.clone(),
                reason: format!(
                    "its service name {name:?} is already used; give the other one another name \
                     or configure this one with [[services]]"
                ),
            });
            continue;
        }
        let found = build(
            &group,
            &name,
            &image,
            read,
            explicit,
            config,
            action,
            action_source,
        );
        match found {
            Some(found) => out.found.push(found),
            None => out.unmanaged.push(Left {
                container: c.name.clone(),
                reason: format!("its image {image:?} is not a reference lookout can follow"),
            }),
        }
    }
    out
}

/// Why labels or settings exclude a container (or a Swarm service), if they do.
pub(crate) fn excluded(
    read: &LabelSettings,
    settings: &crate::config::DiscoverySettings,
) -> Option<String> {
    if let Some(e) = read.enable.as_ref().filter(|e| !e.value) {
        return Some(format!("label {} = false", e.label));
    }
    if settings.require_enable_label && read.enable.is_none() {
        return Some(
            "discovery.require_enable_label is set and it has no enable label \
             (lookout.enable=true)"
                .into(),
        );
    }
    if let Some(scope) = &settings.scope {
        let theirs = read.scope.as_ref().map(|s| s.value.as_str());
        if theirs != Some(scope.as_str()) {
            return Some(format!(
                "discovery.scope is {scope:?} and its scope label says {}",
                theirs.map_or_else(|| "nothing".to_owned(), |t| format!("{t:?}"))
            ));
        }
    }
    None
}

/// An image reference that is only an image ID (`sha256:…`, or a prefix of the ID's hex).
fn by_id_only(reference: &str, image_id: &str) -> bool {
    if let Some(hex) = reference.strip_prefix("sha256:") {
        return hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    let hex = image_id.trim_start_matches("sha256:");
    reference.len() >= 12
        && reference.chars().all(|c| c.is_ascii_hexdigit())
        && hex.starts_with(reference)
}

/// The `[[services]]` entry that names the same compose service or container.
fn explicit_entry<'c>(
    config: &'c Config,
    group: &Group,
    canonical: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Option<&'c ServiceSpec> {
    config.services.iter().find(|s| match &group.kind {
        Kind::Standalone { container } => s.container.as_deref() == Some(container.as_str()),
        Kind::Compose { project, service } => {
            if s.container.is_some() || &s.compose_service != service {
                return false;
            }
            if let Some(p) = &s.compose_project {
                return p == project;
            }
            let Some(file) = s.compose_file.as_deref().and_then(canonical) else {
                return false;
            };
            compose_labels::read(&group.container.labels).is_ok_and(|run| {
                run.config_files
                    .iter()
                    .any(|f| canonical(f).as_ref() == Some(&file))
            })
        }
    })
}

/// The service of one group.
#[allow(clippy::too_many_arguments)]
fn build(
    group: &Group,
    name: &str,
    image: &str,
    read: LabelSettings,
    explicit: Option<&ServiceSpec>,
    config: &Config,
    action: Action,
    action_source: String,
) -> Option<Found> {
    let container = group.container.name.clone();
    let mut base = Map::new();
    base.insert("name".into(), name.into());
    match &group.kind {
        Kind::Compose { project, service } => {
            base.insert("compose_project".into(), project.as_str().into());
            base.insert("compose_service".into(), service.as_str().into());
        }
        Kind::Standalone { container } => {
            base.insert("container".into(), container.as_str().into());
        }
    }
    base.insert(
        "image".into(),
        explicit
            .map_or_else(|| image.to_owned(), |e| e.image.to_string())
            .into(),
    );
    let configured_keys: Vec<String> = explicit
        .and_then(|e| config.service_keys.get(&e.name).cloned())
        .unwrap_or_default();
    let mut layer = labels::merge(&[&read.own, &read.foreign]);
    // Where an explicit entry sets a key, it wins: the labels' value is not used.
    layer.values.retain(|k, _| !configured_keys.contains(k));
    layer.sources.retain(|k, _| !configured_keys.contains(k));
    let mut problems: Vec<String> = read
        .problems
        .iter()
        .map(|p| format!("container {container}, {p}"))
        .collect();
    let labelled = labels::service_from_labels(&container, &base, &layer, config);
    let plain = || labels::service_from_labels(&container, &base, &Layer::default(), config);
    let mut spec = match labelled {
        Ok(spec) => spec,
        Err(ps) => {
            problems.extend(ps.iter().map(ToString::to_string));
            plain().ok()?
        }
    };
    if let Some(entry) = explicit {
        if problems.is_empty() {
            match overlay(entry, &spec, &layer) {
                Ok(merged) => spec = merged,
                Err(ps) => {
                    problems.extend(
                        ps.into_iter()
                            .map(|p| format!("container {container}, {p}")),
                    );
                    spec = entry.clone();
                }
            }
        } else {
            spec = entry.clone();
        }
    }
    let mut sources: BTreeMap<String, String> = configured_keys
        .iter()
        .map(|k| (k.clone(), "config".to_owned()))
        .collect();
    sources.extend(layer.sources.clone());
    let mut values = base;
    for (k, v) in &layer.values {
        values.insert(k.clone(), v.clone());
    }
    Some(Found {
        name: name.to_owned(),
        kind: group.kind.clone(),
        container,
        containers: group.containers.clone(),
        action,
        action_source,
        spec,
        problems,
        sources,
        values,
        configured: explicit.map(|e| e.name.clone()),
        conflicts: read.conflicts,
        ignored: read.ignored,
        depends_on: match &group.kind {
            // The labels' names, then compose's own `depends_on` for the project's order.
            Kind::Compose { .. } => read
                .depends_on
                .into_iter()
                .chain(depends::compose_depends_on(&group.container.labels))
                .collect(),
            Kind::Standalone { .. } => read.depends_on,
        },
        display_name: read.display_name,
    })
}

/// The explicit entry with each setting the labels give and the entry does not: field by
/// field, the tag policy compiled again from the merged options.
fn overlay(
    entry: &ServiceSpec,
    labelled: &ServiceSpec,
    layer: &Layer,
) -> Result<ServiceSpec, Vec<String>> {
    let mut out = entry.clone();
    for key in layer.values.keys() {
        let p = Arc::make_mut(&mut out.policy_spec);
        let l = &labelled.policy_spec;
        match key.as_str() {
            "policy" => p.policy = l.policy,
            "tag_pattern" => p.tag_pattern.clone_from(&l.tag_pattern),
            "tag_regex" => p.tag_regex.clone_from(&l.tag_regex),
            "tag_exclude" => p.tag_exclude.clone_from(&l.tag_exclude),
            "semver_pattern" => p.semver_pattern.clone_from(&l.semver_pattern),
            "semver_range" => p.semver_range.clone_from(&l.semver_range),
            "update_level" => p.update_level = l.update_level,
            "prerelease" => p.prerelease = l.prerelease,
            "health_timeout" => out.health_timeout = labelled.health_timeout,
            "health_stable" => out.health_stable = labelled.health_stable,
            "probe_url" => out.probe_url.clone_from(&labelled.probe_url),
            "pin_digest" => out.pin_digest = labelled.pin_digest,
            "cleanup" => out.cleanup = labelled.cleanup,
            "group" => out.group = labelled.group,
            "maintenance_window" => out
                .maintenance_window
                .clone_from(&labelled.maintenance_window),
            "maintenance_days" => out.maintenance_days = labelled.maintenance_days,
            "timezone" => out.timezone.clone_from(&labelled.timezone),
            _ => {}
        }
    }
    out.policy = Policy::compile(&out.policy_spec)
        .map(Arc::new)
        .map_err(|ps| {
            ps.into_iter()
                .map(|p| {
                    let source = layer
                        .sources
                        .get(p.field)
                        .map_or_else(|| "config".to_owned(), Clone::clone);
                    format!("{source} with the configured entry: {}", p.message)
                })
                .collect::<Vec<_>>()
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests;
