//! The page's templates (MiniJinja, HTML auto-escaped) and assets, embedded in the binary.

use std::sync::OnceLock;

use minijinja::Environment;

pub(crate) const CSS: &str = include_str!("assets/app.css");
pub(crate) const JS: &str = include_str!("assets/app.js");

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("index.html", include_str!("templates/index.html")),
    ("row.html", include_str!("templates/row.html")),
    ("service.html", include_str!("templates/service.html")),
    ("login.html", include_str!("templates/login.html")),
    ("message.html", include_str!("templates/message.html")),
    ("job.html", include_str!("templates/job.html")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        env.add_filter("short_time", short_time);
        env.add_filter("tag_of", tag_of);
        env.add_filter("seg", seg);
        env.add_filter("iso", iso);
        for (name, source) in TEMPLATES {
            // The templates are part of the binary; a broken one fails the unit tests.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "a page template does not parse");
            }
        }
        env
    })
}

/// Renders `name` with `ctx`; a failure is a bug, logged and shown as a short text.
pub(crate) fn render(name: &str, ctx: &serde_json::Value) -> Result<String, String> {
    env()
        .get_template(name)
        .and_then(|t| t.render(minijinja::value::Serde(ctx)))
        .map_err(|e| {
            tracing::error!(template = name, error = %e, "rendering a page failed");
            format!("the page could not be rendered: {e}")
        })
}

/// The first 12 hex digits of the assets' SHA-256: their URLs change when they do.
pub(crate) fn asset_version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let d = Sha256::new()
            .chain_update(CSS.as_bytes())
            .chain_update(JS.as_bytes())
            .finalize();
        d.iter().take(6).map(|b| format!("{b:02x}")).collect()
    })
}

/// `2025-03-01T10:00:00.123Z` → `2025-03-01 10:00 UTC` (the script shows the browser's zone).
fn short_time(value: String) -> String {
    match value.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => value,
    }
}

/// One URL path segment: everything but unreserved characters percent-encoded, so the result
/// needs no HTML escaping.
fn seg(value: String) -> minijinja::Value {
    minijinja::Value::from_safe_string(segment(&value))
}

/// `value` as one URL path segment.
pub(crate) fn segment(value: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, SET).to_string()
}

/// An RFC 3339 time to the second, for `datetime` attributes.
fn iso(value: String) -> String {
    match value.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => value,
    }
}

/// `registry/repo:1.2.3@sha256:abcd…` → `1.2.3`; by digest only → `sha256:abcdef012345`.
pub(crate) fn tag_of(reference: String) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference.as_str(), None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag.to_owned(),
        None => digest.map(short_digest).unwrap_or_else(|| name.to_owned()),
    }
}

/// `sha256:` and the first 12 hex digits.
pub(crate) fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", hex.get(..12).unwrap_or(hex)),
        None => digest.get(..19).unwrap_or(digest).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn references_show_their_tag() {
        assert_eq!(
            tag_of("127.0.0.1:5000/e2e/app:1.0.0@sha256:abc".into()),
            "1.0.0"
        );
        assert_eq!(tag_of("docker.io/library/nginx:1.27".into()), "1.27");
        assert_eq!(
            tag_of("localhost:5000/app@sha256:0123456789abcdef0123".into()),
            "sha256:0123456789ab"
        );
        assert_eq!(
            short_time("2025-03-01T10:00:00.5Z".into()),
            "2025-03-01 10:00 UTC"
        );
        assert_eq!(short_time("soon".into()), "soon");
        assert_eq!(
            iso("2025-03-01T10:00:00.123456Z".into()),
            "2025-03-01T10:00:00Z"
        );
        assert_eq!(seg("a b/<c>".into()).to_string(), "a%20b%2F%3Cc%3E");
    }
}
