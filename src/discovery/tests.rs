use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::{Config, validate};
use crate::runtime::{ContainerState, ContainerSummary};

fn config(doc: serde_json::Value) -> Config {
    validate(&doc, &|_| None).unwrap_or_else(|e| panic!("{e:?}"))
}

fn container(name: &str, state: ContainerState, labels: &[(&str, &str)]) -> ContainerSummary {
    ContainerSummary {
        id: format!("id-{name}"),
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        image_id: format!("sha256:{}", "ab".repeat(32)),
        state,
    }
}

fn compose(name: &str, project: &str, service: &str, extra: &[(&str, &str)]) -> ContainerSummary {
    let mut labels = vec![
        (LABEL_PROJECT, project),
        (LABEL_SERVICE, service),
        (LABEL_ONEOFF, "False"),
    ];
    labels.extend_from_slice(extra);
    container(name, ContainerState::Running, &labels)
}

fn refs(listed: &[ContainerSummary], image: &str) -> HashMap<String, String> {
    listed
        .iter()
        .map(|c| (c.id.clone(), image.to_owned()))
        .collect()
}

fn any_path(p: &Path) -> Option<PathBuf> {
    Some(p.to_owned())
}

fn run(listed: &[ContainerSummary], image: &str, config: &Config) -> Discovery {
    resolve(
        groups(listed, config.discovery.include_stopped),
        &refs(listed, image),
        config,
        &any_path,
    )
}

fn on() -> Config {
    config(serde_json::json!({"discovery": {}}))
}

#[test]
fn compose_containers_group_by_project_and_service_and_others_stand_alone() {
    let listed = [
        compose("shop-web-2", "shop", "web", &[]),
        compose("shop-web-1", "shop", "web", &[]),
        compose("shop-db-1", "shop", "db", &[]),
        compose("blog-web-1", "blog", "web", &[]),
        compose("shop-web-run-1", "shop", "web", &[(LABEL_ONEOFF, "True")]),
        container("proxy", ContainerState::Running, &[]),
        container("old", ContainerState::Exited, &[]),
    ];
    let d = run(&listed, "nginx:1.27.0", &on());
    let names: Vec<&str> = d.found.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["proxy", "blog-web", "shop-db", "shop-web"]);
    let web = d.get("shop-web").unwrap();
    assert_eq!(web.containers, ["shop-web-1", "shop-web-2"]);
    assert_eq!(web.container, "shop-web-1");
    assert_eq!(web.spec.compose_project.as_deref(), Some("shop"));
    assert_eq!(web.spec.compose_service, "web");
    assert_eq!(web.spec.container, None);
    assert_eq!(web.action, Action::Notify);
    assert_eq!(web.action_source, "discovery.default_action");
    let proxy = d.get("proxy").unwrap();
    assert_eq!(proxy.spec.container.as_deref(), Some("proxy"));
    assert_eq!(proxy.spec.compose_project, None);
    assert_eq!(
        d.unmanaged,
        [Left {
            container: "shop-web-run-1".into(),
            reason: "made by `compose run`: a one-off container, not a service's".into()
        }]
    );
    // Stopped containers count only when asked.
    let stopped = config(serde_json::json!({"discovery": {"include_stopped": true}}));
    assert!(run(&listed, "nginx:1.27.0", &stopped).get("old").is_some());
}

#[test]
fn labels_set_the_action_and_exclude_containers() {
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        serde_json::Value,
        Option<(Action, &'a str)>,
    );
    let cases: &[Case<'_>] = &[
        (
            &[],
            serde_json::json!({}),
            Some((Action::Notify, "discovery.default_action")),
        ),
        (
            &[],
            serde_json::json!({"default_action": "update"}),
            Some((Action::Update, "discovery.default_action")),
        ),
        (
            &[("lookout.action", "update")],
            serde_json::json!({}),
            Some((Action::Update, "label lookout.action")),
        ),
        (
            &[("com.centurylinklabs.watchtower.monitor-only", "true")],
            serde_json::json!({"default_action": "update"}),
            Some((
                Action::Notify,
                "label com.centurylinklabs.watchtower.monitor-only",
            )),
        ),
        (&[("lookout.action", "ignore")], serde_json::json!({}), None),
        (
            &[("com.centurylinklabs.watchtower.enable", "false")],
            serde_json::json!({}),
            None,
        ),
        (&[("wud.watch", "false")], serde_json::json!({}), None),
        (&[], serde_json::json!({"require_enable_label": true}), None),
        (
            &[("diun.enable", "true")],
            serde_json::json!({"require_enable_label": true}),
            Some((Action::Notify, "discovery.default_action")),
        ),
        (&[], serde_json::json!({"scope": "prod"}), None),
        (
            &[("com.centurylinklabs.watchtower.scope", "prod")],
            serde_json::json!({"scope": "prod"}),
            Some((Action::Notify, "discovery.default_action")),
        ),
        (
            &[("com.centurylinklabs.watchtower.scope", "dev")],
            serde_json::json!({"scope": "prod"}),
            None,
        ),
    ];
    for (labels, settings, expect) in cases {
        let c = config(serde_json::json!({ "discovery": settings }));
        let listed = [container("app", ContainerState::Running, labels)];
        let d = run(&listed, "nginx:1.27.0", &c);
        let got = d.get("app").map(|f| (f.action, f.action_source.as_str()));
        assert_eq!(got, *expect, "{labels:?} {settings}");
        assert_eq!(
            d.excluded.len(),
            usize::from(expect.is_none()),
            "{labels:?}"
        );
    }
}

#[test]
fn a_bad_label_fails_only_its_own_service_naming_container_label_and_choices() {
    let listed = [
        container(
            "good",
            ContainerState::Running,
            &[("lookout.policy", "semver")],
        ),
        container(
            "bad",
            ContainerState::Running,
            &[("lookout.policy", "newest")],
        ),
        container(
            "typo",
            ContainerState::Running,
            &[("lookout.acton", "update")],
        ),
    ];
    let d = run(&listed, "nginx:1.27.0", &on());
    let good = d.get("good").unwrap();
    assert!(good.problems.is_empty(), "{:?}", good.problems);
    assert_eq!(good.sources["policy"], "label lookout.policy");
    let bad = d.get("bad").unwrap();
    assert_eq!(bad.problems.len(), 1, "{:?}", bad.problems);
    assert!(
        bad.problems[0]
            .starts_with("container bad, label lookout.policy: \"newest\" is not one of")
            && bad.problems[0].contains("semver"),
        "{:?}",
        bad.problems
    );
    let typo = d.get("typo").unwrap();
    assert!(
        typo.problems[0].starts_with("container typo, label lookout.acton: unknown label"),
        "{:?}",
        typo.problems
    );
}

#[test]
fn an_explicit_entry_wins_field_by_field_then_lookouts_labels_then_foreign_ones() {
    let c = config(serde_json::json!({
        "discovery": {},
        "services": [{"name": "shop", "image": "nginx:1.27.0", "compose_project": "shop",
                      "compose_service": "web", "update_level": "patch",
                      "health_timeout": "60s"}]
    }));
    let listed = [compose(
        "shop-web-1",
        "shop",
        "web",
        &[
            ("lookout.update_level", "minor"),
            ("lookout.policy", "semver"),
            ("lookout.health_stable", "5s"),
            ("wud.tag.exclude", "-rc"),
            ("lookout.tag_exclude", "beta"),
        ],
    )];
    let d = run(&listed, "nginx:1.27.0", &c);
    let f = d.get("shop").unwrap();
    assert!(f.problems.is_empty(), "{:?}", f.problems);
    assert_eq!(f.configured.as_deref(), Some("shop"));
    assert_eq!(f.action, Action::Update);
    assert_eq!(f.action_source, "config");
    let p = &f.spec.policy_spec;
    assert_eq!(p.update_level, Some(crate::policy::UpdateLevel::Patch));
    assert_eq!(p.policy.map(|l| l.as_str()), Some("semver"));
    assert_eq!(p.tag_exclude.as_deref(), Some("beta"));
    assert_eq!(f.spec.health_timeout, std::time::Duration::from_secs(60));
    assert_eq!(f.spec.health_stable, std::time::Duration::from_secs(5));
    assert_eq!(f.sources["update_level"], "config");
    assert_eq!(f.sources["policy"], "label lookout.policy");
    assert_eq!(f.sources["tag_exclude"], "label lookout.tag_exclude");
    assert_eq!(
        f.conflicts,
        ["wud.tag.exclude = \"-rc\" disagrees with lookout.tag_exclude = \"beta\", which wins"]
    );
    // The entry is the pass's one service of that compose service.
    let services = d.services(&c);
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].name, "shop");
}

#[test]
fn containers_lookout_cannot_manage_say_why() {
    let mut by_id = container("by-id", ContainerState::Running, &[]);
    by_id.image_id = format!("sha256:{}", "cd".repeat(32));
    let listed = [
        by_id,
        container("no-image", ContainerState::Running, &[]),
        compose(
            "gone-web-1",
            "gone",
            "web",
            &[
                ("com.docker.compose.project.working_dir", "/srv/gone"),
                (
                    "com.docker.compose.project.config_files",
                    "/srv/gone/compose.yaml",
                ),
            ],
        ),
    ];
    let mut image_refs = HashMap::new();
    image_refs.insert("id-by-id".to_owned(), "cdcdcdcdcdcdcdcd".to_owned());
    image_refs.insert("id-gone-web-1".to_owned(), "nginx:1.27.0".to_owned());
    let d = resolve(groups(&listed, false), &image_refs, &on(), &|p: &Path| {
        (!p.starts_with("/srv/gone")).then(|| p.to_owned())
    });
    assert!(d.found.is_empty(), "{:?}", d.found);
    let why: HashMap<&str, &str> = d
        .unmanaged
        .iter()
        .map(|l| (l.container.as_str(), l.reason.as_str()))
        .collect();
    assert!(
        why["by-id"].starts_with("its image is given only by ID"),
        "{why:?}"
    );
    assert!(
        why["no-image"].starts_with("it has no image reference"),
        "{why:?}"
    );
    assert!(
        why["gone-web-1"].starts_with("its compose file /srv/gone/compose.yaml is gone"),
        "{why:?}"
    );
}

#[test]
fn a_name_used_twice_leaves_the_second_out() {
    let c = config(serde_json::json!({
        "discovery": {},
        "services": [{"name": "proxy", "image": "nginx:1.27.0", "compose_file": "/x/compose.yaml"}]
    }));
    let listed = [
        container("proxy", ContainerState::Running, &[]),
        container("a-b", ContainerState::Running, &[]),
        compose("a-b-1", "a", "b", &[]),
    ];
    let d = run(&listed, "nginx:1.27.0", &c);
    let names: Vec<&str> = d.found.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a-b"]);
    assert_eq!(d.unmanaged.len(), 2, "{:?}", d.unmanaged);
    assert!(
        d.unmanaged
            .iter()
            .all(|l| l.reason.contains("is already used"))
    );
}

#[test]
fn the_policy_source_is_the_label_the_entry_or_the_default_for_check_and_the_api_alike() {
    let listed = [
        container(
            "own",
            ContainerState::Running,
            &[("lookout.policy", "semver")],
        ),
        container(
            "wud",
            ContainerState::Running,
            &[("wud.tag.include", r"^\d+\.\d+$")],
        ),
        container(
            "both",
            ContainerState::Running,
            &[("lookout.policy", "semver"), ("wud.tag.include", r"^\d+$")],
        ),
        container("plain", ContainerState::Running, &[]),
        container(
            "pinned",
            ContainerState::Running,
            &[("wud.tag.include", "^1$")],
        ),
    ];
    let config = config(serde_json::json!({
        "discovery": {},
        "services": [
            {"name": "entry", "container": "pinned", "image": "nginx:1.27.0", "policy": "semver"},
            {"name": "alone", "compose_file": "/srv/x/compose.yaml", "compose_service": "x",
             "image": "nginx:1.27.0", "semver_range": "^1"},
            {"name": "bare", "compose_file": "/srv/y/compose.yaml", "compose_service": "y",
             "image": "nginx:1.27.0"},
        ],
    }));
    let d = run(&listed, "nginx:1.27.0", &config);
    let services = d.services(&config);
    let source = |name: &str| {
        let spec = services.iter().find(|s| s.name == name).unwrap();
        policy_source(spec, d.get(name))
    };
    assert_eq!(source("own"), "label lookout.policy");
    assert_eq!(source("wud"), "label wud.tag.include");
    assert_eq!(
        source("both"),
        "label lookout.policy",
        "the policy key first"
    );
    assert_eq!(source("plain"), "default");
    // The entry's policy key wins over the container's label.
    assert_eq!(source("entry"), "config");
    // Configured services discovery did not find.
    assert_eq!(source("alone"), "config");
    assert_eq!(source("bare"), "default");
}
