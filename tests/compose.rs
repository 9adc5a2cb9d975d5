//! The compose editor against real compose files, edge cases and the file system.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lookout::compose::{
    ComposeError, EditOptions, ImageSite, PlanOptions, Quote, locate, plan_project_image_with_env,
    plan_set_image, plan_set_image_with_env, restore, set_image, set_image_command,
};
use lookout::engine::update::with_tag;
use proptest::prelude::*;
use serde_yaml_ng::Value;

const NEW: &str = "registry.example:5000/team/app:2.0.1";

fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose/awesome-compose");
    let mut files: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// Applies `<<` merge keys innermost first, as compose does (a merged mapping that merges another
/// brings both); `Value::apply_merge` leaves such a nested `<<` in place.
fn merge_keys(v: &mut Value) {
    match v {
        Value::Mapping(map) => {
            map.values_mut().for_each(merge_keys);
            let sources = match map.remove("<<") {
                Some(Value::Mapping(m)) => vec![m],
                Some(Value::Sequence(items)) => items
                    .into_iter()
                    .map(|i| match i {
                        Value::Mapping(m) => m,
                        other => panic!("merge of {other:?}"),
                    })
                    .collect(),
                Some(other) => panic!("merge of {other:?}"),
                None => Vec::new(),
            };
            for source in sources {
                for (k, val) in source {
                    map.entry(k).or_insert(val);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(merge_keys),
        Value::Tagged(t) => merge_keys(&mut t.value),
        _ => {}
    }
}

/// Each service's `image` as an independent parser reads it (merge keys applied).
fn images(text: &str) -> Vec<(String, Option<String>, bool)> {
    let mut doc: Value = serde_yaml_ng::from_str(text).unwrap();
    merge_keys(&mut doc);
    doc["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let image = v.get("image").and_then(Value::as_str).map(str::to_string);
            (
                k.as_str().unwrap().to_string(),
                image,
                v.get("build").is_some(),
            )
        })
        .collect()
}

#[test]
fn every_awesome_compose_image_changes_alone() {
    let files = corpus();
    assert!(files.len() >= 35, "the corpus is there: {}", files.len());
    let (mut edited, mut build_only) = (0, 0);
    for path in &files {
        let text = fs::read_to_string(path).unwrap();
        let before = images(&text);
        for (service, image, has_build) in &before {
            let what = format!("{} / {service}", path.display());
            let Some(image) = image else {
                let e = set_image(&text, service, NEW, &EditOptions::default()).unwrap_err();
                assert!(*has_build, "{what}: no image and no build");
                assert!(matches!(e, ComposeError::BuildOnly { .. }), "{what}: {e}");
                build_only += 1;
                continue;
            };
            let Ok(ImageSite::Inline { span, .. }) = locate(&text, service) else {
                panic!("{what}: expected an inline image");
            };
            let edit = set_image(&text, service, NEW, &EditOptions::default()).unwrap();
            // Byte for byte: everything before and after the value token is unchanged.
            let tail = text.len() - span.end;
            assert_eq!(&edit.text[..span.start], &text[..span.start], "{what}");
            assert_eq!(
                &edit.text[edit.text.len() - tail..],
                &text[span.end..],
                "{what}"
            );
            assert_eq!(edit.old_value, *image, "{what}");
            // Exactly one line differs.
            let changed: Vec<_> = text
                .split('\n')
                .zip(edit.text.split('\n'))
                .filter(|(a, b)| a != b)
                .collect();
            assert_eq!(changed.len(), 1, "{what}: {changed:?}");
            assert_eq!(text.split('\n').count(), edit.text.split('\n').count());
            // And an independent parser sees only that service's image change.
            let after = images(&edit.text);
            for ((name, old, _), (_, new, _)) in before.iter().zip(&after) {
                let expect = if name == service {
                    Some(NEW)
                } else {
                    old.as_deref()
                };
                assert_eq!(new.as_deref(), expect, "{what}: service {name}");
            }
            edited += 1;
        }
    }
    // Every service of the corpus was tried: 47 have an image, the rest only `build:`.
    assert_eq!((edited, build_only), (47, 34));
}

/// Every compose file under tests/fixtures/compose except the awesome-compose samples (the
/// self-hosted corpus, see its README), sorted by path.
fn self_hosted_corpus() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose");
    let mut files = Vec::new();
    for entry in fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.ends_with("awesome-compose") {
            walk(&path, &mut files);
        }
    }
    files.sort();
    files
}

/// Checks one edit: only the value's bytes differ, and the independent parser sees exactly the
/// images of `edit.services` change.
fn check_edit(
    what: &str,
    text: &str,
    span: &std::ops::Range<usize>,
    edit: &lookout::compose::Edit,
) {
    let tail = text.len() - span.end;
    assert_eq!(&edit.text[..span.start], &text[..span.start], "{what}");
    assert_eq!(
        &edit.text[edit.text.len() - tail..],
        &text[span.end..],
        "{what}"
    );
    assert_eq!(
        text.split('\n').count(),
        edit.text.split('\n').count(),
        "{what}"
    );
    let before = images(text);
    let after = images(&edit.text);
    assert_eq!(before.len(), after.len(), "{what}");
    for ((name, old, _), (_, new, _)) in before.iter().zip(&after) {
        let expect = if edit.services.contains(name) {
            Some(NEW)
        } else {
            old.as_deref()
        };
        assert_eq!(new.as_deref(), expect, "{what}: service {name}");
    }
}

/// What the project planner edits in a compose file for a service that `set_image` alone does
/// not edit: a literal part beside `${VAR}`s, or an image reached through `extends:`.
struct PlannerEdit {
    /// The edited file, relative to the folder of the file the service is in.
    file: PathBuf,
    /// The image value before, when the edit is in the service's own file.
    literal_of: Option<String>,
    services: Vec<String>,
}

impl PlannerEdit {
    fn line(&self, service: &str, group: String) -> String {
        let how = if self.services.len() > 1 {
            format!("as a group: {group}")
        } else {
            "alone".to_owned()
        };
        match &self.literal_of {
            Some(template) => format!("  {service}: edited {how}, the literal part of {template}"),
            None => format!(
                "  {service}: edited {how}, in {} through `extends:`",
                self.file.display()
            ),
        }
    }
}

/// Runs the project planner on `service` of the corpus file at `path` as a one-file project
/// (files its `extends:` name are read beside it; no env file; nothing in the environment),
/// aiming at its current reference with tag 2.0.1 (or [`NEW`] when there is none to read).
/// When it edits a compose file, checks that exactly one run of bytes on one line changes and
/// that the independent parser sees only images change, all to the one value written; when it
/// changes a variable, that the env file it creates holds that one line. `None` unless it edits
/// a compose file.
fn planned_edit(
    path: &Path,
    service: &str,
    image: Option<&str>,
    scratch: &Path,
) -> Option<PlannerEdit> {
    let what = format!("{} / {service}", path.display());
    let new_image = image
        .and_then(|t| lookout::compose::interpolate(t, |_| None).ok())
        .filter(|current| !current.is_empty())
        .map_or_else(|| NEW.to_owned(), |current| with_tag(&current, "2.0.1"));
    let group = EditOptions {
        allow_anchor_group: true,
        ..EditOptions::default()
    };
    let plan = plan_project_image_with_env(
        &[path.to_path_buf()],
        scratch,
        &[],
        service,
        &new_image,
        &group,
        |_| None,
    )
    .ok()?;
    assert!(plan.services().iter().any(|s| s == service), "{what}");
    let new = String::from_utf8(plan.new_bytes().to_vec()).unwrap();
    if plan.target().starts_with(scratch) {
        assert!(plan.created(), "{what}");
        let (name, value) = new.strip_suffix('\n').unwrap().split_once('=').unwrap();
        assert!(
            !name.is_empty() && !value.is_empty() && !value.contains('\n'),
            "{what}: {new:?}"
        );
        return None;
    }
    let old = String::from_utf8(plan.previous_bytes().to_vec()).unwrap();
    assert_eq!(old, fs::read_to_string(plan.target()).unwrap(), "{what}");
    let prefix = old
        .bytes()
        .zip(new.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = old
        .bytes()
        .rev()
        .zip(new.bytes().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = suffix.min(old.len().min(new.len()) - prefix);
    assert!(
        !old[prefix..old.len() - suffix].contains('\n')
            && !new[prefix..new.len() - suffix].contains('\n'),
        "{what}: one line changes"
    );
    let before = images(&old);
    let after = images(&new);
    assert_eq!(before.len(), after.len(), "{what}");
    let changed: Vec<&Option<String>> = before
        .iter()
        .zip(&after)
        .filter(|((_, a, _), (_, b, _))| a != b)
        .map(|(_, (_, b, _))| b)
        .collect();
    assert!(!changed.is_empty(), "{what}: an image changes");
    assert!(
        changed.iter().all(|b| *b == changed[0]),
        "{what}: to one value"
    );
    let dir = path.parent().unwrap();
    Some(PlannerEdit {
        file: plan.target().strip_prefix(dir).unwrap().to_path_buf(),
        literal_of: (plan.target() == path).then(|| image.unwrap_or_default().to_owned()),
        services: plan.services().to_vec(),
    })
}

/// Tries every service of every self-hosted corpus file: an own image is edited alone, a shared
/// one as a group (and refused without the group option), anything else is refused with its
/// reason — unless the project planner, which also edits a literal tag beside `${VAR}`s and
/// follows `extends:` into the files beside, edits it (see [`planned_edit`]). The outcome of each file is pinned in the snapshot `corpus_outcomes`, so a service
/// that stops being editable, or a reason that changes, fails the test.
#[test]
fn every_self_hosted_service_is_edited_exactly_or_refused_with_a_reason() {
    let files = self_hosted_corpus();
    assert!(files.len() >= 50, "the corpus is there: {}", files.len());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose");
    let group = EditOptions {
        allow_anchor_group: true,
        ..EditOptions::default()
    };
    let mut report = String::new();
    let (mut total, mut alone, mut grouped) = (0, 0, 0);
    // The project directory of the planner's one-file projects: it has no `.env`.
    let scratch = tempfile::tempdir().unwrap();
    for path in &files {
        let name = path.strip_prefix(&root).unwrap().display().to_string();
        let text = fs::read_to_string(path).unwrap();
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
        if !doc.get("services").is_some_and(Value::is_mapping) {
            let e = locate(&text, "any").unwrap_err();
            report.push_str(&format!("{name}: refused: {e}\n"));
            continue;
        }
        let services = images(&text);
        let mut lines = Vec::new();
        let (mut file_alone, mut file_grouped) = (0, 0);
        // A group is listed in full the first time, then by its size.
        let mut seen: Vec<Vec<String>> = Vec::new();
        let shared = |seen: &mut Vec<Vec<String>>, group: &[String]| {
            if seen.iter().any(|g| g == group) {
                format!("the same {} services", group.len())
            } else {
                seen.push(group.to_vec());
                group.join(", ")
            }
        };
        for (service, image, _) in &services {
            let what = format!("{name} / {service}");
            total += 1;
            match locate(&text, service) {
                Ok(ImageSite::Inline { span, value, .. }) => {
                    assert_eq!(Some(&value), image.as_ref(), "{what}: both parsers read it");
                    let edit = set_image(&text, service, NEW, &EditOptions::default()).unwrap();
                    assert_eq!(edit.services, std::slice::from_ref(service), "{what}");
                    check_edit(&what, &text, &span, &edit);
                    file_alone += 1;
                }
                Ok(ImageSite::Anchor {
                    anchor,
                    span,
                    value,
                    services: sharing,
                    ..
                }) => {
                    assert_eq!(Some(&value), image.as_ref(), "{what}: both parsers read it");
                    let e = set_image(&text, service, NEW, &EditOptions::default()).unwrap_err();
                    assert!(
                        matches!(e, ComposeError::AnchorShared { .. }),
                        "{what}: {e}"
                    );
                    let edit = set_image(&text, service, NEW, &group).unwrap();
                    assert_eq!(edit.services, sharing, "{what}");
                    check_edit(&what, &text, &span, &edit);
                    lines.push(format!(
                        "  {service}: group through {anchor}: {}",
                        shared(&mut seen, &sharing)
                    ));
                    file_grouped += 1;
                }
                Ok(ImageSite::Variable {
                    template,
                    name: variable,
                    services: sharing,
                    ..
                }) => {
                    assert_eq!(
                        Some(&template),
                        image.as_ref(),
                        "{what}: both parsers read it"
                    );
                    let e = set_image(&text, service, NEW, &EditOptions::default()).unwrap_err();
                    assert!(
                        matches!(e, ComposeError::ImageInVariable { .. }),
                        "{what}: {e}"
                    );
                    match planned_edit(path, service, image.as_deref(), scratch.path()) {
                        Some(plan) => {
                            let group = plan.services.len() > 1;
                            lines.push(plan.line(service, shared(&mut seen, &plan.services)));
                            if group {
                                file_grouped += 1
                            } else {
                                file_alone += 1
                            }
                        }
                        None => lines.push(format!(
                            "  {service}: in variable {variable} ({template}), used by {}",
                            shared(&mut seen, &sharing)
                        )),
                    }
                }
                Ok(ImageSite::Template {
                    template,
                    variables,
                    ..
                }) => {
                    assert_eq!(
                        Some(&template),
                        image.as_ref(),
                        "{what}: both parsers read it"
                    );
                    let e = set_image(&text, service, NEW, &EditOptions::default()).unwrap_err();
                    assert!(
                        matches!(e, ComposeError::ImageInVariable { .. }),
                        "{what}: {e}"
                    );
                    match planned_edit(path, service, image.as_deref(), scratch.path()) {
                        Some(plan) => {
                            let group = plan.services.len() > 1;
                            lines.push(plan.line(service, shared(&mut seen, &plan.services)));
                            if group {
                                file_grouped += 1
                            } else {
                                file_alone += 1
                            }
                        }
                        None => lines.push(format!(
                            "  {service}: in one of the variables {} ({template})",
                            variables.join(", ")
                        )),
                    }
                }
                Err(e) => {
                    let again =
                        set_image(&text, service, NEW, &EditOptions::default()).unwrap_err();
                    assert_eq!(again.to_string(), e.to_string(), "{what}");
                    match planned_edit(path, service, image.as_deref(), scratch.path()) {
                        Some(plan) => {
                            let group = plan.services.len() > 1;
                            lines.push(plan.line(service, shared(&mut seen, &plan.services)));
                            if group {
                                file_grouped += 1
                            } else {
                                file_alone += 1
                            }
                        }
                        None => lines.push(format!("  {service}: refused: {e}")),
                    }
                }
            }
        }
        alone += file_alone;
        grouped += file_grouped;
        report.push_str(&format!(
            "{name}: {} services, {file_alone} edited alone, {file_grouped} as a group\n",
            services.len()
        ));
        for line in lines {
            report.push_str(&line);
            report.push('\n');
        }
    }
    report.push_str(&format!(
        "total: {} files, {total} services, {alone} edited alone, {grouped} as a group\n",
        files.len()
    ));
    insta::assert_snapshot!("corpus_outcomes", report);
}

/// The getsentry/self-hosted file (59 services, multi-line flow lists, nested merge keys): every
/// service is reachable, and an edit of one changes only its value. (The `]` left of its items
/// that made an earlier parser refuse a newer version of this file is in the unit tests of
/// `src/compose/yaml.rs`.)
#[test]
fn the_sentry_file_is_read_whole() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/compose/sentry/docker-compose.yml");
    let text = fs::read_to_string(path).unwrap();
    assert_eq!(images(&text).len(), 59);
    for (service, _, _) in images(&text) {
        assert!(
            !matches!(
                locate(&text, &service),
                Err(ComposeError::InvalidYaml { .. })
            ),
            "{service}"
        );
    }
    let edit = set_image(&text, "clickhouse", NEW, &EditOptions::default()).unwrap();
    assert_eq!(edit.old_value, "clickhouse-self-hosted-local");
    let edit = set_image(&text, "postgres", NEW, &EditOptions::default()).unwrap();
    assert_eq!(
        edit.text,
        text.replace("image: \"postgres:14.11\"", &format!("image: \"{NEW}\""))
    );
}

/// Sets `service`'s image to `nginx:1.27` with `opts`; `expect` is the new text or `error: …`.
fn check_with(input: &str, service: &str, opts: &EditOptions, expect: &str) {
    let got = match set_image(input, service, "nginx:1.27", opts) {
        Ok(edit) => edit.text,
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(got, expect, "input:\n{input}");
}

fn check(input: &str, service: &str, expect: &str) {
    check_with(input, service, &EditOptions::default(), expect);
}

#[test]
fn edits_keep_layout_quotes_and_comments() {
    check(
        "services:\n  web:\n    image: nginx:1.25 # pinned\n",
        "web",
        "services:\n  web:\n    image: nginx:1.27 # pinned\n",
    );
    check(
        "services:\n  web:\n    image: 'nginx:1.25'\n",
        "web",
        "services:\n  web:\n    image: 'nginx:1.27'\n",
    );
    check(
        "services:\n  web:\n    image: \"nginx:1.25\"   # c \"x\"\n",
        "web",
        "services:\n  web:\n    image: \"nginx:1.27\"   # c \"x\"\n",
    );
    check(
        "services:\r\n  web:\r\n    image: nginx\r\n  db:\r\n    image: nginx\r\n",
        "db",
        "services:\r\n  web:\r\n    image: nginx\r\n  db:\r\n    image: nginx:1.27\r\n",
    );
    check(
        "services:\n    web: {image: nginx, ports: ['80:80']}\n",
        "web",
        "services:\n    web: {image: nginx:1.27, ports: ['80:80']}\n",
    );
    check(
        "services: {web: {image: nginx}}\n",
        "web",
        "services: {web: {image: nginx:1.27}}\n",
    );
    check(
        "services:\n  web:\n    image:\n      nginx:1.25\n",
        "web",
        "services:\n  web:\n    image:\n      nginx:1.27\n",
    );
    check(
        "services:\n  web:\n    image: !!str nginx:1.25\n",
        "web",
        "services:\n  web:\n    image: !!str nginx:1.27\n",
    );
    check(
        "services:\n  web:\n    image: nginx:1.27\n",
        "web",
        "services:\n  web:\n    image: nginx:1.27\n",
    );
    // Multi-byte text before the value must not shift the edit.
    check(
        "# Ünïcödé ✓ 日本語 🚀\nservices:\n  wéb:\n    labels: {note: \"ça va 👍\"}\n    image: nginx:1.25\n",
        "wéb",
        "# Ünïcödé ✓ 日本語 🚀\nservices:\n  wéb:\n    labels: {note: \"ça va 👍\"}\n    image: nginx:1.27\n",
    );
}

#[test]
fn own_image_wins_over_a_merged_one() {
    check(
        "x-base: &base\n  image: redis\nservices:\n  a:\n    <<: *base\n    image: redis:7\n  b:\n    <<: *base\n",
        "a",
        "x-base: &base\n  image: redis\nservices:\n  a:\n    <<: *base\n    image: nginx:1.27\n  b:\n    <<: *base\n",
    );
}

#[test]
fn shared_images_are_refused_unless_the_group_is_allowed() {
    let merged = "x-base: &base\n  image: redis:6\nservices:\n  a:\n    <<: *base\n  b:\n    <<: *base\n  c:\n    image: redis:6\n";
    check(
        merged,
        "a",
        "error: service \"a\": its image is shared through &base with b; updating it changes \
         them all. Allow group updates (allow_anchor_group, `--allow-anchor-group`) to update \
         them together, or give \"a\" its own `image:`",
    );
    let group = EditOptions {
        allow_anchor_group: true,
        ..EditOptions::default()
    };
    check_with(
        merged,
        "b",
        &group,
        "x-base: &base\n  image: nginx:1.27\nservices:\n  a:\n    <<: *base\n  b:\n    <<: *base\n  c:\n    image: redis:6\n",
    );
    let aliased = "services:\n  a:\n    image: &img redis:6\n  b:\n    image: *img\n";
    check(
        aliased,
        "b",
        "error: service \"b\": its image is shared through &img with a; updating it changes \
         them all. Allow group updates (allow_anchor_group, `--allow-anchor-group`) to update \
         them together, or give \"b\" its own `image:`",
    );
    check_with(
        aliased,
        "a",
        &group,
        "services:\n  a:\n    image: &img nginx:1.27\n  b:\n    image: *img\n",
    );
    // A service defined as an alias of another shares everything with it.
    check_with(
        "services:\n  a: &a\n    image: redis\n  b: *a\n",
        "a",
        &EditOptions::default(),
        "error: service \"a\": its image is shared through &a with b; updating it changes them \
         all. Allow group updates (allow_anchor_group, `--allow-anchor-group`) to update them \
         together, or give \"a\" its own `image:`",
    );
    // The anchored scalar is also used outside any image: never changed silently.
    check_with(
        "services:\n  a:\n    image: &img redis:6\n    environment:\n      IMG: *img\n",
        "a",
        &group,
        "error: refusing to write: services.a.environment.IMG would change",
    );
}

#[test]
fn refusals_say_what_is_wrong() {
    check(
        "services:\n  web:\n    image: nginx\n  db:\n    image: postgres\n",
        "api",
        "error: no service \"api\"; the services are: web, db",
    );
    check(
        "services:\n  app:\n    build: .\n",
        "app",
        "error: service \"app\" has only `build:` and no `image:`, so there is no image to update",
    );
    check(
        "services:\n  web:\n    image: [nginx\n",
        "web",
        "error: not valid YAML at line 4, column 1: while parsing a flow sequence, did not find expected ',' or ']'",
    );
    check(
        "services:\n  web:\n    image: |\n      nginx\n",
        "web",
        "error: service \"web\": lookout does not edit this image value: its `image:` value on line 3 \
         is a block scalar (`|` or `>`); write it on one line",
    );
    check(
        "services:\n  web:\n    image: ${WEB_IMAGE:-nginx}\n",
        "web",
        "error: service \"web\": the image is \"${WEB_IMAGE:-nginx}\"; its value lives in \
         variable WEB_IMAGE, in the env file, not in the compose file",
    );
    check(
        "services:\n  web:\n    image: ${REG}/web:${TAG}\n",
        "web",
        "error: service \"web\": the image is \"${REG}/web:${TAG}\"; its value lives in \
         variable REG or TAG, in the env file, not in the compose file",
    );
    check(
        "version: '3'\n",
        "web",
        "error: not a compose file: it has no `services:` mapping",
    );
    check(
        "services:\n  a:\n    image: x\n---\nservices: {}\n",
        "a",
        "error: not valid YAML at line 4, column 1: a compose file holds one YAML document, \
         found a second",
    );
}

#[test]
fn locate_reports_each_kind_of_site() {
    let text = "services:\n  a:\n    image: \"nginx:1\"\n  b:\n    image: postgres:${PG_TAG:-16}\n  c:\n    image: ${PG_TAG}\n";
    assert_eq!(
        locate(text, "a").unwrap(),
        ImageSite::Inline {
            span: 26..35,
            quote: Quote::Double,
            value: "nginx:1".into()
        }
    );
    assert_eq!(&text[26..35], "\"nginx:1\"");
    let ImageSite::Variable {
        name,
        default,
        services,
        template,
        ..
    } = locate(text, "b").unwrap()
    else {
        panic!("variable site expected");
    };
    assert_eq!(
        (name.as_str(), default.as_deref(), template.as_str()),
        ("PG_TAG", Some("16"), "postgres:${PG_TAG:-16}")
    );
    assert_eq!(services, ["b", "c"]);
}

#[test]
fn digest_pinning_writes_and_replaces_the_digest() {
    let digest = format!("sha256:{}", "0a".repeat(32));
    let opts = EditOptions {
        pin_digest: Some(digest.clone()),
        ..EditOptions::default()
    };
    let old = format!(
        "services:\n  web:\n    image: nginx:1.25@sha256:{}\n",
        "ff".repeat(32)
    );
    check_with(
        &old,
        "web",
        &opts,
        &format!("services:\n  web:\n    image: nginx:1.27@{digest}\n"),
    );
    // Without pinning a stale digest does not survive either: the whole value is replaced.
    check(&old, "web", "services:\n  web:\n    image: nginx:1.27\n");
}

// ---- Snapshots: the diff an operator sees for the cases people ask about. ----

fn scratch(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// The diff with the folder name replaced and `\r` made visible.
fn plan_diff(dir: &Path, service: &str, image: &str, opts: &PlanOptions) -> String {
    let plan =
        plan_set_image_with_env(&dir.join("compose.yaml"), service, image, opts, |_| None).unwrap();
    plan.unified_diff()
        .replace(&dir.display().to_string(), "PROJECT")
        .replace('\r', "\\r")
}

#[test]
fn snapshot_quoted_and_commented() {
    let dir = scratch(&[(
        "compose.yaml",
        "# Production stack. Keep comments!\nservices:\n  web:\n    # the front door\n    image: 'nginx:1.25-alpine' # bump with lookout\n    ports: [\"80:80\"]\n  cache:\n    image: \"redis:7.2\"\n",
    )]);
    let opts = PlanOptions::default();
    insta::assert_snapshot!(
        "quoted_single_commented",
        plan_diff(dir.path(), "web", "nginx:1.27-alpine", &opts)
    );
    insta::assert_snapshot!(
        "quoted_double",
        plan_diff(dir.path(), "cache", "redis:7.4", &opts)
    );
}

#[test]
fn snapshot_anchor_group() {
    let dir = scratch(&[(
        "compose.yaml",
        "x-worker: &worker\n  image: ghcr.io/acme/worker:3.1 # shared\n  restart: unless-stopped\n\nservices:\n  mail:\n    <<: *worker\n    command: mail\n  jobs:\n    <<: *worker\n    command: jobs\n",
    )]);
    let opts = PlanOptions {
        edit: EditOptions {
            allow_anchor_group: true,
            ..EditOptions::default()
        },
        ..PlanOptions::default()
    };
    insta::assert_snapshot!(
        "anchor_group",
        plan_diff(dir.path(), "jobs", "ghcr.io/acme/worker:3.2", &opts)
    );
}

#[test]
fn snapshot_variable_in_env_file() {
    let dir = scratch(&[
        (
            "compose.yaml",
            "services:\n  db:\n    image: postgres:${PG_TAG:-16}\n",
        ),
        (
            ".env",
            "# database\nexport PG_TAG=\"16.4\" # major 16\nOTHER=x\n",
        ),
    ]);
    insta::assert_snapshot!(
        "variable_env_file",
        plan_diff(dir.path(), "db", "postgres:17.0", &PlanOptions::default())
    );
    let compose = fs::read_to_string(dir.path().join("compose.yaml")).unwrap();
    assert!(compose.contains("${PG_TAG:-16}"), "compose file untouched");
}

#[test]
fn snapshot_crlf() {
    let dir = scratch(&[(
        "compose.yaml",
        "services:\r\n  web:\r\n    image: nginx:1.25 # crlf\r\n    restart: always\r\n",
    )]);
    insta::assert_snapshot!(
        "crlf",
        plan_diff(dir.path(), "web", "nginx:1.27", &PlanOptions::default())
    );
}

// ---- Files on disk. ----

#[test]
fn apply_writes_keeps_mode_and_can_be_restored() {
    let text = "services:\n  web:\n    image: nginx:1.25\n";
    let dir = scratch(&[("compose.yaml", text)]);
    let path = dir.path().join("compose.yaml");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let plan = plan_set_image(&path, "web", "nginx:1.27", &PlanOptions::default()).unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        text,
        "planning writes nothing"
    );
    plan.apply().unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "services:\n  web:\n    image: nginx:1.27\n"
    );
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(plan.previous_bytes(), text.as_bytes());
    restore(&path, plan.previous_bytes(), plan.new_bytes()).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    // A second rollback (say, after a crash mid-rollback) finds the old bytes and is done.
    restore(&path, plan.previous_bytes(), plan.new_bytes()).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

#[test]
fn a_file_changed_on_disk_is_not_written() {
    let dir = scratch(&[("compose.yaml", "services:\n  web:\n    image: nginx:1.25\n")]);
    let path = dir.path().join("compose.yaml");
    let plan = plan_set_image(&path, "web", "nginx:1.27", &PlanOptions::default()).unwrap();
    let edited_by_operator = "services:\n  web:\n    image: nginx:1.25 # hold\n";
    fs::write(&path, edited_by_operator).unwrap();
    let e = plan.apply().unwrap_err();
    assert!(matches!(e, ComposeError::ChangedOnDisk { .. }), "{e}");
    assert!(e.to_string().contains("retried next cycle"), "{e}");
    assert_eq!(fs::read_to_string(&path).unwrap(), edited_by_operator);
    // Restoring over bytes lookout did not write is refused the same way.
    let e = restore(&path, plan.previous_bytes(), plan.new_bytes()).unwrap_err();
    assert!(matches!(e, ComposeError::ChangedOnDisk { .. }), "{e}");
}

#[test]
fn set_image_command_prints_then_writes() {
    let dir = scratch(&[("compose.yaml", "services:\n  web:\n    image: nginx:1.25\n")]);
    let path = dir.path().join("compose.yaml");
    let opts = PlanOptions::default();
    let diff = set_image_command(&path, "web", "nginx:1.27", false, &opts).unwrap();
    assert!(
        diff.contains("-    image: nginx:1.25\n+    image: nginx:1.27\n"),
        "{diff}"
    );
    assert!(fs::read_to_string(&path).unwrap().contains("nginx:1.25"));
    set_image_command(&path, "web", "nginx:1.27", true, &opts).unwrap();
    assert!(fs::read_to_string(&path).unwrap().contains("nginx:1.27"));
    let again = set_image_command(&path, "web", "nginx:1.27", true, &opts).unwrap();
    assert_eq!(again, "", "nothing left to change");

    let e = set_image_command(&path, "api", "x:1", false, &opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: no service \"api\"; the services are: web",
            path.display()
        )
    );
}

#[test]
fn variables_edit_the_project_env_file() {
    let compose = "services:\n  web:\n    image: ${WEB_IMAGE}\n  db:\n    image: postgres:${TAG}\n  db2:\n    image: postgres:${TAG}\n";
    let dir = scratch(&[
        ("compose.yaml", compose),
        (".env", "WEB_IMAGE=nginx:1.25\r\nTAG=16\r\n"),
    ]);
    let path = dir.path().join("compose.yaml");
    let plan = plan_set_image_with_env(&path, "web", "nginx:1.27", &PlanOptions::default(), |_| {
        None
    })
    .unwrap();
    assert_eq!(plan.target(), dir.path().join(".env"));
    plan.apply().unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join(".env")).unwrap(),
        "WEB_IMAGE=nginx:1.27\r\nTAG=16\r\n"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), compose);

    // TAG feeds two services: a group update or nothing.
    let e = plan_set_image_with_env(&path, "db", "postgres:17", &PlanOptions::default(), |_| {
        None
    })
    .unwrap_err();
    assert!(
        matches!(e.kind(), ComposeError::VariableShared { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("db2"), "{e}");

    // A variable set in lookout's environment wins over the file: refused, with the reason.
    let e = plan_set_image_with_env(&path, "web", "nginx:1.28", &PlanOptions::default(), |n| {
        (n == "WEB_IMAGE").then(|| "nginx:1".to_string())
    })
    .unwrap_err();
    assert!(
        matches!(e.kind(), ComposeError::VariableFromEnvironment { .. }),
        "{e}"
    );

    // An image that does not fit the template is refused.
    let group = PlanOptions {
        edit: EditOptions {
            allow_anchor_group: true,
            ..EditOptions::default()
        },
        ..PlanOptions::default()
    };
    let e = plan_set_image_with_env(&path, "db", "mysql:8", &group, |_| None).unwrap_err();
    assert!(
        matches!(e.kind(), ComposeError::TemplateMismatch { .. }),
        "{e}"
    );
    let plan = plan_set_image_with_env(&path, "db", "postgres:17", &group, |_| None).unwrap();
    assert_eq!(plan.services(), ["db", "db2"]);
}

#[test]
fn a_missing_env_file_is_created_and_a_restore_removes_it() {
    let dir = scratch(&[(
        "compose.yaml",
        "services:\n  web:\n    image: ${WEB_IMAGE:-nginx:1.25}\n",
    )]);
    let path = dir.path().join("compose.yaml");
    let plan = plan_set_image_with_env(&path, "web", "nginx:1.27", &PlanOptions::default(), |_| {
        None
    })
    .unwrap();
    let env = dir.path().join(".env");
    assert_eq!(plan.target(), env);
    assert!(plan.created());
    assert_eq!(plan.new_bytes(), b"WEB_IMAGE=nginx:1.27\n");
    plan.apply().unwrap();
    assert_eq!(fs::read_to_string(&env).unwrap(), "WEB_IMAGE=nginx:1.27\n");
    plan.restore().unwrap();
    assert!(
        !env.exists(),
        "the rollback removes the file lookout created"
    );

    // An env file the configuration names must exist: compose would refuse to start.
    let opts = PlanOptions {
        env_file: Some(dir.path().join("site.env")),
        ..PlanOptions::default()
    };
    let e = plan_set_image_with_env(&path, "web", "nginx:1.27", &opts, |_| None).unwrap_err();
    assert!(
        matches!(e.kind(), ComposeError::EnvFileMissing { .. }),
        "{e}"
    );
}

#[test]
fn an_image_built_from_several_variables_changes_the_one_that_holds_the_tag() {
    let compose = "services:\n  web:\n    image: ${REGISTRY:-docker.io}/org/app:${APP_TAG:-1.4}\n";
    // The env file sets the registry but not the tag: the tag gets a line of its own.
    let env = "# site settings\nREGISTRY=registry.example:5000\n";
    let dir = scratch(&[("compose.yaml", compose), (".env", env)]);
    let path = dir.path().join("compose.yaml");
    let opts = PlanOptions::default();
    let plan = plan_set_image_with_env(
        &path,
        "web",
        "registry.example:5000/org/app:1.5",
        &opts,
        |_| None,
    )
    .unwrap();
    assert_eq!(plan.target(), dir.path().join(".env"));
    assert_eq!(
        String::from_utf8_lossy(plan.new_bytes()),
        "# site settings\nREGISTRY=registry.example:5000\nAPP_TAG=1.5\n"
    );
    plan.apply().unwrap();
    // Now the tag has a line, which the next update edits in place.
    let plan = plan_set_image_with_env(
        &path,
        "web",
        "registry.example:5000/org/app:1.6",
        &opts,
        |_| None,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(plan.new_bytes()),
        "# site settings\nREGISTRY=registry.example:5000\nAPP_TAG=1.6\n"
    );
    // What runs already: nothing to write.
    let plan = plan_set_image_with_env(
        &path,
        "web",
        "registry.example:5000/org/app:1.5",
        &opts,
        |_| None,
    )
    .unwrap();
    assert!(plan.is_noop());
    // A change no single variable holds is refused, saying why.
    let e = plan_set_image_with_env(&path, "web", "ghcr.io/org/app:2.0", &opts, |_| None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no single one of its variables (REGISTRY, APP_TAG)"),
        "{e}"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), compose);
}

#[test]
fn a_variable_with_its_default_in_the_compose_file_gets_a_line_in_the_env_file() {
    let compose = "services:\n  web:\n    image: nginx:${WEB_TAG:-1.25}\n";
    let dir = scratch(&[("compose.yaml", compose), (".env", "OTHER=1")]);
    let path = dir.path().join("compose.yaml");
    let plan = plan_set_image_with_env(&path, "web", "nginx:1.27", &PlanOptions::default(), |_| {
        None
    })
    .unwrap();
    assert_eq!(plan.previous_bytes(), b"OTHER=1");
    assert_eq!(plan.new_bytes(), b"OTHER=1\nWEB_TAG=1.27\n");
}

// ---- Properties. ----

/// A compose file around service `target`, with garnish: comments (with multi-byte text),
/// blank lines, an indent width, a quote style and line endings.
fn garnished(image: &str, g: &Garnish) -> String {
    let nl = if g.crlf { "\r\n" } else { "\n" };
    let ind = " ".repeat(g.indent);
    let value = match g.quote {
        0 => image.to_string(),
        1 => format!("'{image}'"),
        _ => format!("\"{image}\""),
    };
    let mut out = String::new();
    out.push_str(&format!("# {}{nl}services:{nl}", g.comment));
    out.push_str(&format!(
        "{ind}before:{nl}{ind}{ind}image: \"{}\"{nl}",
        g.other
    ));
    out.push_str(&g.blank.repeat(g.blank_lines).replace('\n', nl));
    out.push_str(&format!("{ind}target: # {}{nl}", g.comment));
    out.push_str(&format!("{ind}{ind}labels: {{note: \"{}\"}}{nl}", g.other));
    out.push_str(&format!(
        "{ind}{ind}image:{}{value}{}{nl}",
        g.gap, g.trailer
    ));
    out.push_str(&format!("{ind}after:{nl}{ind}{ind}image: {image}{nl}"));
    out
}

#[derive(Debug)]
struct Garnish {
    comment: String,
    other: String,
    indent: usize,
    quote: u8,
    crlf: bool,
    gap: String,
    trailer: String,
    blank: String,
    blank_lines: usize,
}

fn garnish() -> impl Strategy<Value = Garnish> {
    (
        "[a-zé日本🚀 #:]{0,20}",
        "[a-zé日本🚀 ]{0,12}",
        1usize..5,
        0u8..3,
        any::<bool>(),
        "[ ]{1,4}",
        prop_oneof![
            Just(String::new()),
            Just("  # keep".to_string()),
            Just(" #ü".to_string())
        ],
        prop_oneof![Just("\n".to_string()), Just("  # note ✓\n".to_string())],
        0usize..3,
    )
        .prop_map(
            |(comment, other, indent, quote, crlf, gap, trailer, blank, blank_lines)| Garnish {
                comment,
                other,
                indent,
                quote,
                crlf,
                gap,
                trailer,
                blank,
                blank_lines,
            },
        )
}

proptest! {
    #[test]
    fn garnish_around_a_service_never_moves_the_edit(
        g in garnish(),
        old in "[a-z]{1,8}(/[a-z]{1,8})?:[0-9]{1,2}\\.[0-9]{1,2}",
        new in "[a-z]{1,8}(/[a-z0-9]{1,8})?:[0-9a-z][0-9a-z.-]{0,9}",
    ) {
        let text = garnished(&old, &g);
        let edit = set_image(&text, "target", &new, &EditOptions::default()).unwrap();
        // The same file written with the new value from the start, except the `after` service.
        let expected = garnished(&new, &g);
        let after_line = |t: &str| t.rfind("after:").unwrap();
        prop_assert_eq!(&edit.text[..after_line(&edit.text)], &expected[..after_line(&expected)]);
        prop_assert_eq!(&edit.text[after_line(&edit.text)..], &text[after_line(&text)..]);
    }
}
