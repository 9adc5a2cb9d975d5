//! Replacing the bytes of one image value in compose text, and proving nothing else changed.
//!
//! [`set_image`] writes the new reference into the value's token in its own quote style, then
//! checks the result twice: the bytes outside the token are identical, and a second, independent
//! YAML parser (`serde_yaml_ng`, merge keys applied innermost first, as compose applies them) reads
//! the same document except for the image
//! of the intended services (and, for a shared anchor, its definition under an `x-` key).

use std::ops::Range;

use serde_yaml_ng::Value;

use super::locate::{ImageScalar, Project, image_scalar, locate_in};
use super::{ComposeError, ImageSite, Quote};
use crate::reference::{self, ImageRef};

/// How [`set_image`] may edit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EditOptions {
    /// Update every service that shares the image through an anchor, alias, merge key or
    /// variable, as one group. Without it such an edit is refused.
    pub allow_anchor_group: bool,
    /// Pin the image: write `repo:tag@sha256:…` with this digest (`sha256:<64 hex>`). Any digest
    /// already in the new or current value is replaced.
    pub pin_digest: Option<String>,
}

/// The result of a pure edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The whole new text.
    pub text: String,
    /// Bytes of the old value token that were replaced.
    pub span: Range<usize>,
    pub old_value: String,
    pub new_value: String,
    /// Every service whose image changes (the target, and its group when allowed).
    pub services: Vec<String>,
}

impl Edit {
    /// True when the value already was the new one and the text is unchanged.
    pub fn is_noop(&self) -> bool {
        self.old_value == self.new_value
    }
}

/// Sets `service`'s image to `new_image` in compose `text`. Pure: returns the new text.
///
/// Refuses (never guesses) when the image lives in a variable (edit the env file instead: see
/// [`super::plan_set_image`]), when it is shared with other services and
/// [`EditOptions::allow_anchor_group`] is off, or when the result would read differently in any
/// other way.
pub fn set_image(
    text: &str,
    service: &str,
    new_image: &str,
    opts: &EditOptions,
) -> Result<Edit, ComposeError> {
    let new_value = image_value(new_image, opts.pin_digest.as_deref())?;
    let project = Project::parse(text)?;
    match locate_in(&project, service)? {
        ImageSite::Inline { .. } | ImageSite::Anchor { .. } => {}
        ImageSite::Variable { template, name, .. } => {
            return Err(ComposeError::ImageInVariable {
                service: service.to_string(),
                template,
                variable: name,
            });
        }
        ImageSite::Template {
            template,
            variables,
            ..
        } => {
            return Err(ComposeError::ImageInVariable {
                service: service.to_string(),
                template,
                variable: variables.join(" or "),
            });
        }
    }
    replace_value(
        text,
        service,
        image_scalar(&project, service)?,
        new_value,
        opts,
    )
}

/// Writes `new_value` as `service`'s image value as it is: a value with `${VAR}`s whose
/// literal part changed (see [`super::interp::solve`]). The bytes and re-parse checks are
/// [`set_image`]'s.
pub(crate) fn set_image_value(
    text: &str,
    service: &str,
    new_value: &str,
    opts: &EditOptions,
) -> Result<Edit, ComposeError> {
    let project = Project::parse(text)?;
    let scalar = image_scalar(&project, service)?;
    replace_value(text, service, scalar, new_value.to_owned(), opts)
}

/// Replaces the token of `scalar` by `new_value` in its own quote style, refusing a value other
/// services read unless the group is allowed, and proves nothing else changed.
fn replace_value(
    text: &str,
    service: &str,
    scalar: ImageScalar,
    new_value: String,
    opts: &EditOptions,
) -> Result<Edit, ComposeError> {
    let ImageScalar {
        span,
        quote,
        value: old_value,
        readers: services,
        anchor,
    } = scalar;
    if services.len() > 1 && !opts.allow_anchor_group {
        return Err(ComposeError::AnchorShared {
            service: service.to_string(),
            anchor,
            others: services.into_iter().filter(|s| s != service).collect(),
        });
    }
    if old_value == new_value {
        return Ok(Edit {
            text: text.to_string(),
            span,
            old_value,
            new_value,
            services,
        });
    }
    let token = render(&new_value, quote);
    let mut out = String::with_capacity(text.len() + token.len());
    out.push_str(&text[..span.start]);
    out.push_str(&token);
    out.push_str(&text[span.end..]);
    verify(text, &out, &span, &token, &old_value, &new_value, &services)?;
    Ok(Edit {
        text: out,
        span,
        old_value,
        new_value,
        services,
    })
}

/// Checks a new image reference by Docker's grammar (the one [`ImageRef`] parses: lower-case
/// repository, tag `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, `algorithm:hex` digest) and adds the
/// digest to pin, if any. The reference is written as given, not normalised.
pub(crate) fn image_value(image: &str, pin_digest: Option<&str>) -> Result<String, ComposeError> {
    ImageRef::parse_partial(image)?;
    let Some(digest) = pin_digest else {
        return Ok(image.to_string());
    };
    if let Some(reason) = reference::digest_problem(digest) {
        return Err(ComposeError::InvalidImage {
            image: image.to_string(),
            reason: format!(
                "the digest to pin {digest:?} is not a digest: {reason} (expected sha256: and 64 lower-case hex digits)"
            ),
        });
    }
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    Ok(format!("{without_digest}@{digest}"))
}

/// The new token in the quote style of the old one. A plain value that YAML would read as
/// something other than this text (a number, `true`, `null`…) is double-quoted instead.
fn render(value: &str, quote: Quote) -> String {
    match quote {
        Quote::Plain if plain_is_string(value) => value.to_string(),
        Quote::Single => format!("'{}'", value.replace('\'', "''")),
        Quote::Plain | Quote::Double => {
            format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
        }
    }
}

fn plain_is_string(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    let special = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", ".inf", ".nan",
    ];
    !special.contains(&lower.as_str())
        && value.parse::<f64>().is_err()
        && !value.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c))
        && !value.contains(": ")
        && !value.contains(" #")
        && !value.ends_with(':')
}

/// Proves that `after` differs from `before` only by the intended image value.
fn verify(
    before: &str,
    after: &str,
    span: &Range<usize>,
    token: &str,
    old_value: &str,
    new_value: &str,
    services: &[String],
) -> Result<(), ComposeError> {
    let fail = |detail: String| Err(ComposeError::VerifyFailed { detail });
    if after.as_bytes()[..span.start] != before.as_bytes()[..span.start]
        || after.as_bytes()[span.start + token.len()..] != before.as_bytes()[span.end..]
    {
        return fail("bytes outside the image value would change".into());
    }
    let parse = |text: &str| -> Result<Value, String> {
        let mut v: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        apply_merge_keys(&mut v, 0)?;
        Ok(v)
    };
    let old = match parse(before) {
        Ok(v) => v,
        Err(e) => return fail(format!("the file does not read as YAML: {e}")),
    };
    let new = match parse(after) {
        Ok(v) => v,
        Err(e) => return fail(format!("the edited file would not read as YAML: {e}")),
    };
    let mut diffs = Vec::new();
    diff(&old, &new, &mut Vec::new(), &mut diffs);
    let mut changed_services = Vec::new();
    for (path, a, b) in &diffs {
        let is_image_change = a.as_str() == Some(old_value) && b.as_str() == Some(new_value);
        let where_ = path.join(".");
        match path.as_slice() {
            [top, s, key] if top == "services" && key == "image" && is_image_change => {
                if !services.contains(s) {
                    return fail(format!("the image of service {s:?} would change too"));
                }
                changed_services.push(s.clone());
            }
            [top, ..] if top.starts_with("x-") && is_image_change => {}
            _ => return fail(format!("{where_} would change")),
        }
    }
    for s in services {
        if !changed_services.contains(s) {
            return fail(format!(
                "the image of service {s:?} would not read {new_value:?}"
            ));
        }
    }
    Ok(())
}

/// Applies `<<` merge keys the way compose does: innermost first, so a mapping merged from one
/// that itself merges another gets both (`serde_yaml_ng`'s own `apply_merge` leaves such a nested
/// `<<` unmerged). A mapping's own keys win, then the merged mappings in order.
fn apply_merge_keys(v: &mut Value, depth: usize) -> Result<(), String> {
    if depth > 128 {
        return Err("merge keys nest more than 128 levels deep".into());
    }
    let next = depth.saturating_add(1);
    match v {
        Value::Mapping(map) => {
            for (_, child) in map.iter_mut() {
                apply_merge_keys(child, next)?;
            }
            let Some(merge) = map.remove("<<") else {
                return Ok(());
            };
            let sources = match merge {
                Value::Mapping(m) => vec![m],
                Value::Sequence(items) => items
                    .into_iter()
                    .map(|item| match item {
                        Value::Mapping(m) => Ok(m),
                        _ => Err("a `<<` list holds something other than mappings".to_string()),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err("`<<` merges something other than a mapping".into()),
            };
            for source in sources {
                for (k, val) in source {
                    if !map.contains_key(&k) {
                        map.insert(k, val);
                    }
                }
            }
            Ok(())
        }
        Value::Sequence(items) => items.iter_mut().try_for_each(|i| apply_merge_keys(i, next)),
        Value::Tagged(t) => apply_merge_keys(&mut t.value, next),
        _ => Ok(()),
    }
}

/// Collects `(path, before, after)` for every place where two YAML values differ.
fn diff(a: &Value, b: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value, Value)>) {
    match (a, b) {
        (Value::Mapping(ma), Value::Mapping(mb)) => {
            for (k, va) in ma {
                path.push(key_text(k));
                match mb.get(k) {
                    Some(vb) => diff(va, vb, path, out),
                    None => out.push((path.clone(), va.clone(), Value::Null)),
                }
                path.pop();
            }
            for (k, vb) in mb {
                if !ma.contains_key(k) {
                    path.push(key_text(k));
                    out.push((path.clone(), Value::Null, vb.clone()));
                    path.pop();
                }
            }
        }
        (Value::Sequence(sa), Value::Sequence(sb)) if sa.len() == sb.len() => {
            for (i, (va, vb)) in sa.iter().zip(sb).enumerate() {
                path.push(i.to_string());
                diff(va, vb, path, out);
                path.pop();
            }
        }
        _ if a == b => {}
        _ => out.push((path.clone(), a.clone(), b.clone())),
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_values() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(image_value("nginx:1.27", None).unwrap(), "nginx:1.27");
        assert_eq!(
            image_value("nginx:1.27", Some(&d)).unwrap(),
            format!("nginx:1.27@{d}")
        );
        assert_eq!(
            image_value(&format!("nginx:1.26@sha256:{}", "cd".repeat(32)), Some(&d)).unwrap(),
            format!("nginx:1.26@{d}")
        );
        for (bad, says) in [
            ("nginx 1", "invalid path component"),
            ("${X}", "invalid path component"),
            ("NGINX:1.27", "must be lower-case"),
            ("x:y:z:1", "it contains `:`"),
            ("nginx:1.27/../x", "the port must be a number"),
            ("library/../x:1", "invalid path component \"..\""),
            ("nginx:-1", "starts with `.` or `-`"),
            ("nginx@sha256:abc", "invalid digest"),
            ("", "empty"),
        ] {
            let e = image_value(bad, None).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        let e = image_value("nginx", Some("sha256:xyz"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"sha256:xyz\" is not a digest"), "{e}");
    }

    #[test]
    fn nested_merge_keys_are_applied_innermost_first() {
        // `b` merges `&mid`, which merges `&base`: its image comes from two merges down.
        let text = "x-base: &base\n  image: redis:6\nx-mid: &mid\n  <<: *base\n  restart: always\nservices:\n  a:\n    image: nginx\n  b:\n    <<: *mid\n";
        let edit = set_image(text, "b", "redis:7", &EditOptions::default()).unwrap();
        assert_eq!(edit.text, text.replace("redis:6", "redis:7"));
        let mut v: Value = serde_yaml_ng::from_str(text).unwrap();
        apply_merge_keys(&mut v, 0).unwrap();
        assert_eq!(v["services"]["b"]["image"].as_str(), Some("redis:6"));
        assert_eq!(v["services"]["b"]["restart"].as_str(), Some("always"));
        assert!(v["services"]["b"].get("<<").is_none());
    }

    #[test]
    fn plain_values_that_yaml_reads_otherwise_are_quoted() {
        assert_eq!(render("nginx:1", Quote::Plain), "nginx:1");
        assert_eq!(render("1.5", Quote::Plain), "\"1.5\"");
        assert_eq!(render("null", Quote::Plain), "\"null\"");
        assert_eq!(render("a", Quote::Single), "'a'");
    }
}
