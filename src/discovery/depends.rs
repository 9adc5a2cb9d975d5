//! Which services of a pass a `lookout.depends_on` label (or Watchtower's
//! `com.centurylinklabs.watchtower.depends-on`) names, so that the labelled service's update
//! waits for theirs. Pure: the pass's services and the host's containers come in, the waits and
//! the warnings go out; `plan_updates` (`src/engine/pass.rs`) orders the pass with them.
//!
//! A name (comma-separated, a leading `/` dropped) matches each service of the pass that
//!
//! - has a container of that name (Watchtower's meaning: a standalone container, or a compose
//!   service by one of its containers, `shop-db-1`);
//! - is called so by lookout (`shop-db` for a discovered compose service, a standalone
//!   container's name, a `[[services]]` entry's `name`);
//! - is a compose service of that name in the labelled service's own project (`db`).
//!
//! A name that matches none of the pass's services but is a container, a compose service of the
//! same project or a service lookout knows (left out of this pass by `--only`, excluded by a
//! label, stopped) orders nothing and says nothing. A name lookout does not know at all orders
//! nothing either, and is reported: the container, the label and the value, so the operator can
//! fix the typo. It never fails the service or any other.

// The names come from container labels: no panic on what they hold.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::collections::HashSet;

use crate::config::labels::Sourced;
use crate::runtime::{ContainerSummary, LABEL_PROJECT, LABEL_SERVICE};

/// The label compose (v2) gives each container with its service's `depends_on`:
/// `db:service_started:false,cache:service_healthy:true`.
pub const LABEL_COMPOSE_DEPENDS_ON: &str = "com.docker.compose.depends_on";

/// The services a compose container's `com.docker.compose.depends_on` label names, so a
/// discovered project's updates follow its own `depends_on` as a configured compose file's do.
/// Those names mean a compose service of the same project only, and one that is not on the host
/// is no warning (compose wrote it, not the operator).
pub fn compose_depends_on(
    labels: &std::collections::HashMap<String, String>,
) -> Vec<Sourced<String>> {
    let Some(value) = labels.get(LABEL_COMPOSE_DEPENDS_ON) else {
        return Vec::new();
    };
    value
        .split(',')
        .filter_map(|part| part.split(':').next())
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| Sourced {
            value: name.to_owned(),
            label: LABEL_COMPOSE_DEPENDS_ON.to_owned(),
        })
        .collect()
}

/// One service of a pass, as a `depends_on` name can match it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// lookout's name for it.
    pub name: &'a str,
    /// (project, service) when it is a compose service whose project is known.
    pub compose: Option<(&'a str, &'a str)>,
    /// The names of its containers (a standalone container's own name).
    pub containers: &'a [String],
    /// The container whose labels configure it, for messages.
    pub labelled: &'a str,
    /// What its labels name to update first.
    pub depends_on: &'a [Sourced<String>],
}

/// What the host has that a name may mean without being one of the pass's services.
#[derive(Debug, Clone, Default)]
pub struct Known<'a> {
    /// Every listed container's name.
    pub containers: HashSet<&'a str>,
    /// Every listed compose container's (project, service).
    pub compose: HashSet<(&'a str, &'a str)>,
    /// Every service lookout knows (configured and discovered, in this pass or not).
    pub services: HashSet<&'a str>,
}

impl<'a> Known<'a> {
    /// The containers of one container list, and the services' names.
    pub fn of(listed: &'a [ContainerSummary], services: impl IntoIterator<Item = &'a str>) -> Self {
        let mut known = Self {
            services: services.into_iter().collect(),
            ..Self::default()
        };
        for c in listed {
            known.containers.insert(c.name.as_str());
            if let (Some(p), Some(s)) = (c.labels.get(LABEL_PROJECT), c.labels.get(LABEL_SERVICE)) {
                known.compose.insert((p.as_str(), s.as_str()));
            }
        }
        known
    }

    fn has(&self, name: &str, project: Option<&str>) -> bool {
        self.containers.contains(name)
            || self.services.contains(name)
            || project.is_some_and(|p| self.compose.contains(&(p, name)))
    }
}

/// For each target (by index), the targets its `depends_on` names (sorted, never itself); and
/// a warning for each name that matches nothing lookout knows.
pub fn waits(targets: &[Target<'_>], known: &Known<'_>) -> (Vec<Vec<usize>>, Vec<String>) {
    let mut warnings = Vec::new();
    let on = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let project = t.compose.map(|(p, _)| p);
            let mut on: Vec<usize> = Vec::new();
            for dep in t.depends_on {
                let name = dep.value.as_str();
                let from_compose = dep.label == LABEL_COMPOSE_DEPENDS_ON;
                let means = |other: &Target<'_>| {
                    if from_compose {
                        same_project(other, name, project)
                    } else {
                        matches(other, name, project)
                    }
                };
                let matched: Vec<usize> = targets
                    .iter()
                    .enumerate()
                    .filter(|&(j, other)| j != i && means(other))
                    .map(|(j, _)| j)
                    .collect();
                if matched.is_empty()
                    && !from_compose
                    && !known.has(name, project)
                    && !matches(t, name, project)
                {
                    warnings.push(format!(
                        "container {}, label {} names {name:?}, which is no container or service \
                         on this host; {}'s update does not wait for it (a name is a container's \
                         name, a lookout service's name or a compose service of the same project)",
                        t.labelled, dep.label, t.name
                    ));
                }
                on.extend(matched);
            }
            on.sort_unstable();
            on.dedup();
            on
        })
        .collect();
    (on, warnings)
}

/// Whether `name`, written on a service of compose project `project`, means `target`.
fn matches(target: &Target<'_>, name: &str, project: Option<&str>) -> bool {
    target.name == name
        || target.containers.iter().any(|c| c == name)
        || same_project(target, name, project)
}

/// Whether `target` is compose service `name` of `project`.
fn same_project(target: &Target<'_>, name: &str, project: Option<&str>) -> bool {
    matches!((target.compose, project), (Some((p, s)), Some(mine)) if p == mine && s == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(names: &[&str], label: &str) -> Vec<Sourced<String>> {
        names
            .iter()
            .map(|n| Sourced {
                value: (*n).to_owned(),
                label: label.to_owned(),
            })
            .collect()
    }

    fn target<'a>(
        name: &'a str,
        compose: Option<(&'a str, &'a str)>,
        containers: &'a [String],
        depends_on: &'a [Sourced<String>],
    ) -> Target<'a> {
        Target {
            name,
            compose,
            containers,
            labelled: name,
            depends_on,
        }
    }

    const OWN: &str = "lookout.depends_on";
    const WATCHTOWER: &str = "com.centurylinklabs.watchtower.depends-on";

    #[test]
    fn a_name_matches_a_container_a_service_name_or_a_compose_service_of_the_same_project() {
        let db = &["shop-db-1".to_owned(), "shop-db-2".to_owned()];
        let web = &["shop-web-1".to_owned()];
        let proxy = &["proxy".to_owned()];
        let other_db = &["blog-db-1".to_owned()];
        let by_project = dep(&["db"], OWN);
        let by_container = dep(&["shop-db-2"], WATCHTOWER);
        let by_name = dep(&["shop-web"], OWN);
        let none: Vec<Sourced<String>> = Vec::new();
        // (what, the pass's services, what each waits for)
        type Case<'a> = (&'a str, Vec<Target<'a>>, Vec<Vec<usize>>);
        let cases: Vec<Case<'_>> = vec![
            (
                "a compose service of the same project, not another project's",
                vec![
                    target("shop-web", Some(("shop", "web")), web, &by_project),
                    target("shop-db", Some(("shop", "db")), db, &none),
                    target("blog-db", Some(("blog", "db")), other_db, &none),
                ],
                vec![vec![1], vec![], vec![]],
            ),
            (
                "a container's name (Watchtower's meaning), a replica's too",
                vec![
                    target("proxy", None, proxy, &by_container),
                    target("shop-db", Some(("shop", "db")), db, &none),
                ],
                vec![vec![1], vec![]],
            ),
            (
                "a lookout service name, from a standalone container",
                vec![
                    target("shop-web", Some(("shop", "web")), web, &none),
                    target("proxy", None, proxy, &by_name),
                ],
                vec![vec![], vec![0]],
            ),
            (
                "a standalone container has no project: `db` is no compose service of its own",
                vec![
                    target("proxy", None, proxy, &by_project),
                    target("shop-db", Some(("shop", "db")), db, &none),
                ],
                vec![vec![], vec![]],
            ),
        ];
        let known = Known {
            containers: ["shop-db-1", "shop-db-2", "shop-web-1", "proxy", "blog-db-1"]
                .into_iter()
                .collect(),
            compose: [("shop", "db"), ("shop", "web"), ("blog", "db")]
                .into_iter()
                .collect(),
            services: ["shop-web", "shop-db", "blog-db", "proxy"]
                .into_iter()
                .collect(),
        };
        for (what, targets, expect) in cases {
            let (on, _) = waits(&targets, &known);
            assert_eq!(on, expect, "{what}");
        }
    }

    #[test]
    fn an_unknown_name_orders_nothing_and_is_reported_with_the_container_label_and_value() {
        let app = vec!["app".to_owned()];
        let db = vec!["db".to_owned()];
        let depends = dep(&["db", "dbb"], WATCHTOWER);
        let none: Vec<Sourced<String>> = Vec::new();
        let targets = [
            Target {
                name: "app",
                compose: None,
                containers: &app,
                labelled: "app",
                depends_on: &depends,
            },
            Target {
                name: "db",
                compose: None,
                containers: &db,
                labelled: "db",
                depends_on: &none,
            },
        ];
        let known = Known {
            containers: ["app", "db"].into_iter().collect(),
            ..Known::default()
        };
        let (on, warnings) = waits(&targets, &known);
        assert_eq!(on, vec![vec![1], vec![]], "the known name still orders");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let w = &warnings[0];
        assert!(
            w.contains("container app, label com.centurylinklabs.watchtower.depends-on")
                && w.contains("\"dbb\""),
            "{w}"
        );
    }

    #[test]
    fn a_known_name_outside_the_pass_orders_nothing_and_says_nothing() {
        let web = vec!["shop-web-1".to_owned()];
        // `db` is excluded by a label (it is listed, but no service of the pass); `cache` is a
        // service `--only` left out; `self` is the service itself.
        let depends = dep(&["db", "cache", "shop-web-1"], OWN);
        let targets = [Target {
            name: "shop-web",
            compose: Some(("shop", "web")),
            containers: &web,
            labelled: "shop-web-1",
            depends_on: &depends,
        }];
        let listed: Vec<ContainerSummary> =
            [("shop-db-1", "shop", "db"), ("shop-web-1", "shop", "web")]
                .iter()
                .map(|(name, project, service)| ContainerSummary {
                    id: (*name).to_owned(),
                    name: (*name).to_owned(),
                    labels: [
                        (LABEL_PROJECT.to_owned(), (*project).to_owned()),
                        (LABEL_SERVICE.to_owned(), (*service).to_owned()),
                    ]
                    .into_iter()
                    .collect(),
                    image_id: String::new(),
                    state: crate::runtime::ContainerState::Running,
                })
                .collect();
        let known = Known::of(&listed, ["shop-web", "cache"]);
        let (on, warnings) = waits(&targets, &known);
        assert_eq!(on, vec![Vec::<usize>::new()]);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn compose_s_own_depends_on_label_orders_within_the_project_only_and_never_warns() {
        let labels: std::collections::HashMap<String, String> = [(
            LABEL_COMPOSE_DEPENDS_ON.to_owned(),
            "db:service_started:false,gone:service_healthy:true".to_owned(),
        )]
        .into_iter()
        .collect();
        let depends = compose_depends_on(&labels);
        let names: Vec<&str> = depends.iter().map(|d| d.value.as_str()).collect();
        assert_eq!(names, ["db", "gone"]);
        let web = ["shop-web-1".to_owned()];
        let db = ["shop-db-1".to_owned()];
        // A standalone container called `db` is not the project's db.
        let lone = ["db".to_owned()];
        let none: Vec<Sourced<String>> = Vec::new();
        let targets = [
            target("shop-web", Some(("shop", "web")), &web, &depends),
            target("db", None, &lone, &none),
            target("shop-db", Some(("shop", "db")), &db, &none),
        ];
        let (on, warnings) = waits(&targets, &Known::default());
        assert_eq!(on, vec![vec![2], vec![], vec![]]);
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
