//! `[web]`: the page the daemon serves at `/` (or under `base_path`).
//!
//! ```toml
//! [web]
//! enabled = true                 # serve the page (the API is served either way)
//! base_path = "/lookout"         # a reverse proxy's sub-path; "" (the default) for none
//! read_without_token = false     # with api_token set: read the page and the API without it
//! trusted_proxies = ["127.0.0.1/8", "::1"]  # whose X-Forwarded-Proto is believed
//! session_ttl = "12h"            # how long a login lasts
//! ```

use std::time::Duration;

use ipnet::IpNet;

use super::fields::Obj;
use super::string_list;

/// The web page's settings.
#[derive(Debug, Clone)]
pub struct WebSettings {
    pub enabled: bool,
    /// `""`, or a path such as `/lookout`: starts with `/`, does not end with one.
    pub base_path: String,
    /// With `api_token` set, the page and the API's reads are open without logging in.
    pub read_without_token: bool,
    /// Peers whose `X-Forwarded-Proto: https` makes the session cookie `Secure`.
    pub trusted_proxies: Vec<IpNet>,
    pub session_ttl: Duration,
}

/// How long a login lasts unless `session_ttl` says otherwise.
pub(crate) const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const SESSION_TTL: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(30 * 86_400);

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            base_path: String::new(),
            read_without_token: false,
            trusted_proxies: loopback(),
            session_ttl: DEFAULT_SESSION_TTL,
        }
    }
}

/// A reverse proxy on the same host is trusted unless the configuration says otherwise.
fn loopback() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Reads `[web]` (absent: the defaults).
pub(super) fn read_web(top: &mut Obj<'_, '_>) -> WebSettings {
    let mut settings = WebSettings::default();
    let Some(mut o) = top.object("web") else {
        return settings;
    };
    if let Some(enabled) = o.bool("enabled") {
        settings.enabled = enabled;
    }
    if let Some(path) = o.string("base_path") {
        match base_path(&path) {
            Ok(p) => settings.base_path = p,
            Err(why) => o.ctx.problem(o.at("base_path"), why),
        }
    }
    if let Some(open) = o.bool("read_without_token") {
        settings.read_without_token = open;
    }
    if let Some(list) = string_list(&mut o, "trusted_proxies") {
        let at = o.at("trusted_proxies");
        settings.trusted_proxies = list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                proxy(s)
                    .map_err(|why| o.ctx.problem(format!("{at}[{i}]"), why))
                    .ok()
            })
            .collect();
    }
    if let Some(ttl) = o.duration_in("session_ttl", SESSION_TTL, "") {
        settings.session_ttl = ttl;
    }
    o.finish();
    settings
}

/// `/lookout` as given, `/lookout/` without its slash, `""` and `/` as no sub-path.
fn base_path(s: &str) -> Result<String, String> {
    let trimmed = s.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let ok = trimmed.starts_with('/')
        && !trimmed.contains("//")
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'))
        && !trimmed.split('/').any(|seg| seg == "." || seg == "..");
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a URL path such as \"/lookout\": start with /, use letters, digits, \
             - _ . ~ and / between segments (the sub-path the reverse proxy forwards)"
        ))
    }
}

/// An address (`10.0.0.5`) or a network (`10.0.0.0/24`).
fn proxy(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("{s:?} is not an IP address or network such as \"10.0.0.5\" or \"10.0.0.0/24\"")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths() {
        for (given, want) in [
            ("", ""),
            ("/", ""),
            ("/lookout", "/lookout"),
            ("/lookout/", "/lookout"),
            ("/ops/lookout", "/ops/lookout"),
        ] {
            assert_eq!(base_path(given).as_deref(), Ok(want), "{given}");
        }
        for bad in [
            "lookout", "/a//b", "/a/../b", "/a b", "/a?x", "/a\"", "/<x>",
        ] {
            assert!(base_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proxies() {
        assert_eq!(proxy("10.0.0.5").unwrap().to_string(), "10.0.0.5/32");
        assert_eq!(proxy("10.0.0.0/24").unwrap().to_string(), "10.0.0.0/24");
        assert_eq!(proxy("::1").unwrap().to_string(), "::1/128");
        assert!(proxy("proxy.local").unwrap_err().contains("proxy.local"));
    }
}
