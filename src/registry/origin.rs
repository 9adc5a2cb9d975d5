//! Where credentials may go: an origin is (scheme, host, port), and a registry's credentials
//! are sent to its own origin only.
//!
//! - Requests lookout builds itself (manifests, tag pages, blobs) carry `Authorization` only
//!   when their URL has the registry's origin; a tag list's `Link` or Docker Hub's `next` that
//!   points to another origin is refused ([`same`]).
//! - HTTP redirects (blob storage) are followed to other origins, and reqwest drops
//!   `Authorization` when the origin changes; [`redirect_policy`] also refuses HTTPS → plain
//!   HTTP unless the target is loopback or the registry is configured `insecure`.
//! - A bearer token realm gets the basic credentials only when it is the registry's own
//!   origin, HTTPS, or loopback ([`may_send_credentials`]): Docker Hub's realm is
//!   `https://auth.docker.io`, another host, so only HTTPS will do.

use std::fmt;

use reqwest::Url;

/// (scheme, host, port) of a URL, the unit credentials belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    pub fn of(url: &Url) -> Self {
        Self {
            scheme: url.scheme().to_ascii_lowercase(),
            host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
            port: url.port_or_known_default(),
        }
    }

    pub(crate) fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.host)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Whether `a` and `b` have the same origin.
pub fn same(a: &Url, b: &Url) -> bool {
    Origin::of(a) == Origin::of(b)
}

/// `link` (a `Link` or `next` URL, relative or absolute) resolved against `current`, when it
/// stays on `home`'s origin; else why it is refused, for the caller's error.
pub(crate) fn follow_on_origin(current: &Url, link: &str, home: &Url) -> Result<Url, String> {
    let next = current
        .join(link)
        .map_err(|e| format!("{:?} is not a URL: {e}", super::grammar::shown(link)))?;
    if !same(&next, home) {
        tracing::warn!(home = %Origin::of(home), next = %Origin::of(&next), "refused a next-page link to another origin");
        return Err(format!(
            "points to another origin ({}); lookout does not follow it, so what it sends to {} goes nowhere else",
            Origin::of(&next),
            Origin::of(home)
        ));
    }
    Ok(next)
}

/// Whether the basic credentials of the registry at `registry` may be sent to `target` (a
/// token realm): the registry's own origin, any HTTPS origin, or a loopback host.
pub(crate) fn may_send_credentials(registry: &Url, target: &Url) -> bool {
    let to = Origin::of(target);
    to == Origin::of(registry) || to.is_https() || to.is_loopback()
}

/// Whether a host is loopback (`localhost`, 127.0.0.0/8, `::1`), which Docker allows over plain
/// HTTP without being told. Accepts `host`, `host:port` and `[v6]:port`.
pub fn is_loopback(host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// At most this many redirects per request.
const MAX_REDIRECTS: usize = 5;

/// Follows up to five redirects, to any origin (reqwest drops `Authorization`, `Cookie` and
/// `Proxy-Authorization` when the origin changes), but never from HTTPS to plain HTTP unless
/// the target is loopback or the registry is `insecure`.
pub(crate) fn redirect_policy(insecure: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let Some(from) = attempt.previous().last().map(Origin::of) else {
            return attempt.follow();
        };
        let to = Origin::of(attempt.url());
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!(
                "more than {MAX_REDIRECTS} redirects (the last to {to})"
            ));
        }
        if let Some(refusal) = downgrade_refusal(&from, &to, insecure) {
            tracing::warn!(from = %from, to = %to, "refused a registry redirect from HTTPS to plain HTTP");
            return attempt.error(refusal);
        }
        if from != to {
            tracing::debug!(from = %from, to = %to, "following a registry redirect to another origin, without credentials");
        }
        attempt.follow()
    })
}

/// Why a redirect from `from` to `to` is refused, if it is.
fn downgrade_refusal(from: &Origin, to: &Origin, insecure: bool) -> Option<String> {
    (from.is_https() && !to.is_https() && !insecure && !to.is_loopback()).then(|| {
        format!(
            "refused a redirect from {from} to plain-HTTP {to}: lookout does not downgrade HTTPS \
             (set registry_config.insecure = true only for a registry that must use plain HTTP)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn loopback_hosts_are_recognised_with_and_without_ports() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "ghcr.io",
            "10.0.0.1:5000",
            "registry.local:5000",
            "[::2]:5000",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn an_origin_is_scheme_host_and_port() {
        assert!(same(
            &url("https://r.example/v2/"),
            &url("https://R.example:443/x")
        ));
        assert!(!same(&url("https://r.example/"), &url("http://r.example/")));
        assert!(!same(
            &url("https://r.example/"),
            &url("https://r.example:8443/")
        ));
        assert!(!same(
            &url("https://r.example/"),
            &url("https://evil.example/")
        ));
        assert_eq!(
            Origin::of(&url("http://127.0.0.1:5000/v2/")).to_string(),
            "http://127.0.0.1:5000"
        );
    }

    #[test]
    fn next_page_links_are_followed_on_the_same_origin_only() {
        let home = url("https://r.example/v2/");
        let page = url("https://r.example/v2/a/tags/list?n=2");
        assert_eq!(
            follow_on_origin(&page, "/v2/a/tags/list?last=b&n=2", &home)
                .unwrap()
                .as_str(),
            "https://r.example/v2/a/tags/list?last=b&n=2"
        );
        assert_eq!(
            follow_on_origin(&page, "?last=b", &home).unwrap().as_str(),
            "https://r.example/v2/a/tags/list?last=b"
        );
        for elsewhere in [
            "https://evil.example/v2/a/tags/list?last=b",
            "http://r.example/v2/a/tags/list?last=b",
            "//evil.example/x",
            "https://r.example:444/v2/",
        ] {
            let e = follow_on_origin(&page, elsewhere, &home).unwrap_err();
            assert!(e.contains("another origin"), "{elsewhere}: {e}");
        }
        assert!(follow_on_origin(&page, "http://[::1", &home).is_err());
    }

    #[test]
    fn credentials_go_to_a_realm_only_over_https_unless_same_origin_or_loopback() {
        let hub = url("https://registry-1.docker.io/v2/");
        assert!(may_send_credentials(
            &hub,
            &url("https://auth.docker.io/token")
        ));
        assert!(!may_send_credentials(
            &hub,
            &url("http://auth.docker.io/token")
        ));
        let plain = url("http://r.internal:5000/v2/");
        assert!(may_send_credentials(
            &plain,
            &url("http://r.internal:5000/token")
        ));
        assert!(!may_send_credentials(
            &plain,
            &url("http://auth.internal/token")
        ));
        assert!(may_send_credentials(
            &plain,
            &url("http://127.0.0.1:9/token")
        ));
    }

    #[test]
    fn https_is_never_downgraded_except_to_loopback_or_when_insecure() {
        let https = Origin::of(&url("https://r.example/"));
        let http = Origin::of(&url("http://blobs.example/"));
        let local = Origin::of(&url("http://127.0.0.1:9000/"));
        assert!(downgrade_refusal(&https, &http, false).is_some());
        assert!(downgrade_refusal(&https, &http, true).is_none());
        assert!(downgrade_refusal(&https, &local, false).is_none());
        assert!(downgrade_refusal(&http, &https, false).is_none());
        assert!(
            downgrade_refusal(&https, &Origin::of(&url("https://s3.example/")), false).is_none()
        );
    }
}
