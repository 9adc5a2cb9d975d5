//! The checks behind the `cargo fuzz` targets in `fuzz/`, one function per target.
//!
//! Each function takes the fuzzer's bytes, feeds them to lookout's own parsers and editors and
//! panics when a property lookout promises does not hold. The fuzz targets are one line each;
//! `tests/fuzz_regressions.rs` runs the same functions over the committed corpora and over every
//! input that once failed, so the normal test suite keeps them honest. Not part of lookout's API.

use crate::reference::ImageRef;

/// Lossy UTF-8: every input reaches the parser, invalid bytes as U+FFFD.
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Image references: parsing never panics, and a parsed reference prints in forms that parse
/// back to the same reference.
pub fn reference(data: &[u8]) {
    let input = text(data);
    let _ = crate::reference::is_digest(&input);
    let partial = ImageRef::parse_partial(&input);
    let Ok(r) = ImageRef::parse(&input) else {
        assert!(
            partial.is_err(),
            "parse refused {input:?}, parse_partial took it"
        );
        return;
    };
    assert!(
        partial.is_ok(),
        "parse took {input:?}, parse_partial refused it"
    );
    assert!(
        !r.registry().is_empty() && !r.repository().is_empty(),
        "{input:?} → {r:?}"
    );
    assert!(
        r.tag().is_some() || r.digest().is_some(),
        "{input:?}: no tag, no digest"
    );
    let full = r.to_string();
    assert!(
        !full.contains(|c: char| c.is_whitespace() || c.is_control()),
        "{input:?} prints as {full:?}"
    );
    for form in [full.clone(), r.familiar()] {
        let again = ImageRef::parse(&form)
            .unwrap_or_else(|e| panic!("{input:?} prints as {form:?}, which does not parse: {e}"));
        assert_eq!(again, r, "{input:?} → {form:?} reads differently");
    }
    if let Some(tag) = r.tag() {
        let retagged = ImageRef::parse(&r.with_tag(tag).to_string()).expect("same tag parses");
        assert_eq!(retagged.tag(), Some(tag));
    }
}

/// Splits off the first line: the fuzzer's settings for the text that follows.
fn header(input: &str) -> (&str, &str) {
    input.split_once('\n').unwrap_or((input, ""))
}

/// Tag lists and policy selection. The input is policy settings, one `key=value` a line
/// (`policy`, `tag_pattern`, `tag_regex`, `semver_pattern`, `semver_range`, `update_level`,
/// `prerelease`, `current`), a line `---`, then a tag list in the fixtures' format.
///
/// Compiling never panics; a selection never panics, names a tag from the list (never an
/// artifact tag, never the current one), and does not depend on the order of the list.
pub fn tag_policy(data: &[u8]) {
    use crate::policy::{Policy, PolicyKind, PolicySpec, TagChoice, UpdateLevel, is_artifact_tag};

    let input = text(data);
    let (settings, list) = match input.split_once("\n---\n") {
        Some((s, l)) => (s, l),
        None => ("", &*input),
    };
    let Ok(tags) = crate::policy::parse_tag_list(list) else {
        return;
    };
    for t in &tags {
        assert!(
            !t.name.is_empty() && !t.name.contains(char::is_whitespace),
            "tag list gave {:?}",
            t.name
        );
    }
    let mut spec = PolicySpec::default();
    let mut current = tags
        .first()
        .map_or("latest", |t| t.name.as_str())
        .to_owned();
    for line in settings.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.to_owned();
        match key {
            "policy" => spec.policy = PolicyKind::parse(&value),
            "tag_pattern" => spec.tag_pattern = Some(value),
            "tag_regex" => spec.tag_regex = Some(value),
            "semver_pattern" => spec.semver_pattern = Some(value),
            "semver_range" => spec.semver_range = Some(value),
            "update_level" => spec.update_level = UpdateLevel::parse(&value),
            "prerelease" => spec.prerelease = Some(value == "true"),
            "current" => current = value,
            _ => {}
        }
    }
    let Ok(policy) = Policy::compile(&spec) else {
        return;
    };
    let selection = policy.select(&current, &tags);
    assert!(
        selection.candidates <= tags.len(),
        "{} candidates from {} tags",
        selection.candidates,
        tags.len()
    );
    if let TagChoice::Update(chosen) = &selection.outcome {
        assert!(
            tags.iter().any(|t| &t.name == chosen),
            "chose {chosen:?}, which is not in the list"
        );
        assert!(
            !is_artifact_tag(chosen),
            "chose the artifact tag {chosen:?}"
        );
        assert_ne!(chosen, &current, "an update to the tag that runs");
    }
    if let Some(tag) = selection.selected(&current) {
        assert!(tag == current || tags.iter().any(|t| t.name == tag));
    }
    let mut reordered = tags.clone();
    reordered.reverse();
    let reversed = policy.select(&current, &reordered);
    reordered.sort_by(|a, b| a.name.cmp(&b.name).then(a.pushed.cmp(&b.pushed)));
    let sorted = policy.select(&current, &reordered);
    for other in [reversed, sorted] {
        assert_eq!(
            (&other.outcome, other.candidates),
            (&selection.outcome, selection.candidates),
            "the choice depends on the order of the tag list"
        );
    }
}

/// What `serde_yaml_ng` (an independent YAML parser, merge keys applied) reads in compose text.
fn yaml(text: &str) -> Option<serde_yaml_ng::Value> {
    let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).ok()?;
    merge_keys(&mut v, 0)?;
    Some(v)
}

/// Applies `<<` merge keys innermost first, as compose does: a merged mapping that itself merges
/// another brings both (`Value::apply_merge` leaves such a nested `<<` in place). `None` for a
/// merge of something other than mappings, or nesting deeper than serde_yaml_ng reads.
fn merge_keys(v: &mut serde_yaml_ng::Value, depth: usize) -> Option<()> {
    use serde_yaml_ng::Value;
    if depth > 128 {
        return None;
    }
    let next = depth.saturating_add(1);
    match v {
        Value::Mapping(map) => {
            for (_, child) in map.iter_mut() {
                merge_keys(child, next)?;
            }
            let sources = match map.remove("<<") {
                None => Vec::new(),
                Some(Value::Mapping(m)) => vec![m],
                Some(Value::Sequence(items)) => items
                    .into_iter()
                    .map(|i| match i {
                        Value::Mapping(m) => Some(m),
                        _ => None,
                    })
                    .collect::<Option<_>>()?,
                Some(_) => return None,
            };
            for source in sources {
                for (k, val) in source {
                    map.entry(k).or_insert(val);
                }
            }
            Some(())
        }
        Value::Sequence(items) => items.iter_mut().try_for_each(|i| merge_keys(i, next)),
        Value::Tagged(t) => merge_keys(&mut t.value, next),
        _ => Some(()),
    }
}

/// The `services.NAME` entry of a parsed compose file, whatever scalar type its key has.
fn service_entry<'v>(
    doc: &'v mut serde_yaml_ng::Value,
    name: &str,
) -> Option<&'v mut serde_yaml_ng::Value> {
    let services = doc.get_mut("services")?.as_mapping_mut()?;
    services.iter_mut().find_map(|(k, v)| {
        let key = match k {
            serde_yaml_ng::Value::String(s) => s.clone(),
            other => serde_yaml_ng::to_string(other).ok()?.trim_end().to_owned(),
        };
        (key == name).then_some(v)
    })
}

/// The document without its top-level `x-` extension keys, which compose ignores (anchors
/// shared by several services usually live there).
fn without_extensions(mut doc: serde_yaml_ng::Value) -> serde_yaml_ng::Value {
    if let Some(map) = doc.as_mapping_mut() {
        map.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
    }
    doc
}

/// The compose locator and editor. The first line is `SERVICE<TAB>NEW_IMAGE<TAB>OPTIONS`
/// (options: `group` allows anchor groups, `pin` pins a digest); the rest is the compose text.
///
/// Locating and editing never panic. A located image is what an independent YAML parser reads
/// as the service's image. An edit either refuses or changes exactly the value's bytes: the
/// bytes outside the value stay, and the document reads as before except for the image of the
/// services the edit names, which reads as the new value.
pub fn compose_edit(data: &[u8]) {
    use crate::compose::{EditOptions, ImageSite, locate, set_image};

    tolerate_yaml_parser_panics();

    let input = text(data);
    let (first, compose) = header(&input);
    let mut fields = first.split('\t');
    let service = fields.next().unwrap_or_default();
    let image = fields
        .next()
        .unwrap_or("registry.example:5000/team/app:2.0.1");
    let options = fields.next().unwrap_or_default();
    let opts = EditOptions {
        allow_anchor_group: options.contains("group"),
        pin_digest: options
            .contains("pin")
            .then(|| format!("sha256:{}", "ab".repeat(32))),
    };
    let _ = crate::compose::dependencies(compose);

    let site = locate(compose, service);
    if let Ok(site) = &site {
        let (span, value) = match site {
            ImageSite::Inline { span, value, .. } | ImageSite::Anchor { span, value, .. } => {
                (span, value)
            }
            ImageSite::Variable { span, template, .. }
            | ImageSite::Template { span, template, .. } => (span, template),
        };
        assert!(
            span.start < span.end && compose.get(span.clone()).is_some(),
            "span {span:?} is not a part of the {} bytes of text",
            compose.len()
        );
        if let Some(mut doc) = yaml(compose) {
            let read = service_entry(&mut doc, service)
                .and_then(|s| s.get("image"))
                .and_then(|i| i.as_str())
                .map(str::to_owned);
            if let Some(read) = read {
                assert_eq!(
                    &read, value,
                    "lookout and serde_yaml_ng read different images"
                );
            }
        }
    }

    let Ok(edit) = set_image(compose, service, image, &opts) else {
        return;
    };
    assert!(site.is_ok(), "set_image edited what locate refused");
    assert!(
        edit.services.iter().any(|s| s == service),
        "{:?}",
        edit.services
    );
    if edit.is_noop() {
        assert_eq!(edit.text, compose, "a no-op edit changed the text");
        return;
    }
    let span = edit.span.clone();
    let tail = compose.len() - span.end;
    assert!(
        edit.text.len() >= span.start + tail
            && edit.text.as_bytes()[..span.start] == compose.as_bytes()[..span.start]
            && edit.text.as_bytes()[edit.text.len() - tail..] == compose.as_bytes()[span.end..],
        "bytes outside the value changed"
    );
    let before = yaml(compose).expect("an edited file read as YAML before the edit");
    let after = yaml(&edit.text).expect("an edited file reads as YAML");
    let mut expected = without_extensions(before);
    for s in &edit.services {
        let entry = service_entry(&mut expected, s).expect("an edited service exists");
        entry["image"] = serde_yaml_ng::Value::String(edit.new_value.clone());
    }
    assert!(
        without_extensions(after) == expected,
        "the edit changed more than the image of {:?}",
        edit.services
    );
    match locate(&edit.text, service) {
        Ok(ImageSite::Inline { value, .. } | ImageSite::Anchor { value, .. }) => {
            assert_eq!(
                value, edit.new_value,
                "the edited file locates another value"
            );
        }
        other => panic!("the edited file does not locate the new image: {other:?}"),
    }
}

/// Env files. The first line is `NAME<TAB>VALUE`; the rest is the env file.
///
/// Parsing never panics and gives spans inside the text. Setting a variable either refuses or
/// changes exactly that value's bytes, and every other entry reads as before.
pub fn env_file(data: &[u8]) {
    use crate::compose::{Quote, add_env_var, parse_env, set_env_var};

    let input = text(data);
    let (first, env) = header(&input);
    let (name, value) = first.split_once('\t').unwrap_or((first, "nginx:1.27"));
    let entries = parse_env(env);
    let mut last_line = 0;
    for e in &entries {
        let raw = env
            .get(e.span.clone())
            .unwrap_or_else(|| panic!("span {:?} of {:?} outside the text", e.span, e.name));
        if e.quote != Quote::Double && !e.multiline {
            assert_eq!(raw, e.value, "the value of {:?} is not its bytes", e.name);
        }
        assert!(e.line > last_line, "line numbers go back at {:?}", e.name);
        last_line = e.line;
    }
    if let Ok(out) = add_env_var(env, name, value)
        && !entries.iter().any(|e| e.name == name)
    {
        // Added: every byte before kept, and the file reads as before plus the one entry.
        assert!(
            out.starts_with(env),
            "adding {name:?} changed the bytes before"
        );
        let after = parse_env(&out);
        assert_eq!(after.len(), entries.len() + 1, "adding {name:?}: entries");
        let added = after.last().map(|e| (e.name.as_str(), e.value.as_str()));
        assert_eq!(added, Some((name, value)), "adding {name:?}: the new entry");
    }
    let Ok(out) = set_env_var(env, name, value) else {
        return;
    };
    let matching: Vec<_> = entries.iter().filter(|e| e.name == name).collect();
    let [entry] = matching[..] else {
        panic!("set {name:?}, defined {} times", matching.len());
    };
    let expected = format!(
        "{}{value}{}",
        &env[..entry.span.start],
        &env[entry.span.end..]
    );
    assert_eq!(out, expected, "bytes outside the value of {name:?} changed");
    let after = parse_env(&out);
    assert_eq!(after.len(), entries.len(), "the number of entries changed");
    for (a, b) in entries.iter().zip(&after) {
        assert_eq!(a.name, b.name);
        let want = if a.name == name { value } else { &a.value };
        assert_eq!(
            &b.value, want,
            "the value of {:?} reads differently",
            a.name
        );
    }
}

/// The longest duration a valid configuration may hold: far beyond any useful setting, and far
/// from where `Instant + Duration` overflows, so deadline arithmetic on it cannot panic.
const MAX_SANE_DURATION: std::time::Duration =
    std::time::Duration::from_secs(100 * 365 * 24 * 3600);

/// Configuration text (TOML, or JSON when it starts with `{`) through the real parse and
/// validate path, with a small fixed environment and no file I/O.
///
/// Never panics, every error prints, and every duration a valid configuration holds is bounded.
pub fn config(data: &[u8]) {
    let input = text(data);
    let env = |name: &str| match name {
        "FUZZ_IMAGE" => Some("nginx:1.27".to_owned()),
        "FUZZ_SECRET" => Some("s3cr3t".to_owned()),
        "FUZZ_EMPTY" => Some(String::new()),
        _ => None,
    };
    let path = std::path::Path::new("lookout.conf");
    let config = match crate::config::from_text(path, &input, &env) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = format!("{config:?}");
    let mut durations = vec![
        ("check_interval", config.check_interval),
        ("health_timeout", config.health_timeout),
        ("health_stable", config.health_stable),
        ("compose_timeout", config.compose_timeout),
        ("check_jitter", config.check_jitter),
    ];
    for s in &config.services {
        durations.push(("services.health_timeout", s.health_timeout));
        durations.push(("services.health_stable", s.health_stable));
    }
    for w in &config.webhooks {
        durations.push(("webhooks.timeout", w.timeout));
    }
    for (field, d) in durations {
        assert!(
            d <= MAX_SANE_DURATION,
            "{field} = {d:?} validates; durations past {MAX_SANE_DURATION:?} must be refused"
        );
    }
}

/// `WWW-Authenticate` challenges and the token service's answers. The input is tried as a header
/// as it is; its first two lines are also written into a `Bearer` challenge (quoted, escaped),
/// which must read back exactly; and the whole input is tried as a token answer.
pub fn www_authenticate(data: &[u8]) {
    use crate::registry::auth::{Challenge, parse_challenge, parse_token};

    let input = text(data);
    let _ = parse_challenge(&input);

    let mut lines = input.splitn(3, '\n');
    let realm = lines.next().unwrap_or_default();
    let service = lines.next().unwrap_or_default();
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let header = format!(
        "Bearer realm=\"{}\",service=\"{}\",scope=\"repository:team/app:pull,push\"",
        quote(realm),
        quote(service)
    );
    match parse_challenge(&header) {
        Some(Challenge::Bearer {
            realm: r,
            service: Some(s),
            ..
        }) if r == realm && s == service => {}
        other => panic!("{header:?} reads as {other:?}"),
    }

    let now = std::time::Instant::now();
    if let Ok(token) = parse_token(data, now) {
        assert!(!token.value.expose().is_empty(), "an empty token");
        assert!(token.renew_at > now, "a token to renew before it arrived");
    }
}

/// libyaml-safer still has inputs it panics on (a `TODO` branch of its scanner, found by the
/// `compose_edit` target). The span parser catches those panics and refuses the file as invalid
/// YAML (`src/compose/yaml.rs`), which is the behaviour this target checks; but libFuzzer's panic
/// hook aborts on any panic, caught or not. So panics raised inside libyaml-safer are let through
/// to that `catch_unwind` silently, and every other panic still reaches the previous hook.
fn tolerate_yaml_parser_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_parser = info
                .location()
                .is_some_and(|l| l.file().contains("libyaml-safer"));
            if !in_parser {
                previous(info);
            }
        }));
    });
}

/// `Link` headers of paginated tag lists. The input is tried as a header as it is; its first two
/// lines are also written as a `prev` and a `next` link, and the `next` one must come back.
pub fn link_header(data: &[u8]) {
    use crate::registry::oci::next_link;

    let input = text(data);
    if let Some(url) = next_link(&input) {
        assert!(input.contains(&url), "{url:?} is not in {input:?}");
    }
    let mut lines = input.splitn(3, '\n');
    let clean = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace() && !"<>,;".contains(*c))
            .collect::<String>()
    };
    let prev = clean(lines.next().unwrap_or_default());
    let next = clean(lines.next().unwrap_or_default());
    let header = format!("<{prev}>; rel=\"prev\", <{next}>; rel=\"next\"");
    assert_eq!(next_link(&header), Some(next), "{header:?}");
}

/// Registry push hook payloads. The first line names the source (`dockerhub`, `registry`,
/// `github`, …, and for GitHub the event after a space); the rest is the body. Reading never
/// panics; it returns at most `MAX_PUSHES` pushes, each a valid reference; a Docker Hub payload
/// names one repository on Docker Hub.
pub fn hook_payload(data: &[u8]) {
    use crate::api::payload::{self, MAX_PUSHES, Source};
    let (first, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let first = String::from_utf8_lossy(first);
    let (source, event) = first.split_once(' ').unwrap_or((&first, ""));
    let Some(source) = Source::from_path(source) else {
        return;
    };
    let Ok(found) = payload::parse(source, Some(event), body) else {
        return;
    };
    assert!(
        found.pushes.len() <= MAX_PUSHES,
        "{} pushes",
        found.pushes.len()
    );
    if source == Source::DockerHub {
        assert_eq!(found.pushes.len(), 1, "{found:?}");
        assert_eq!(
            found.pushes[0].repository.registry.as_deref(),
            Some("docker.io")
        );
    }
    for p in &found.pushes {
        let r = &p.repository;
        // A push that names no registry names a repository path on any registry; its first
        // component may hold a `.` (`a.b/c`), which without a host would read as one.
        let host = r.registry.as_deref().unwrap_or("registry.invalid");
        let name = format!("{host}/{}", r.repository);
        assert!(
            crate::reference::ImageRef::parse(&name).is_ok(),
            "a pushed repository that is no reference: {name:?}"
        );
    }
}
