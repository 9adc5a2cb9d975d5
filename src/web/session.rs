//! Logins of the page: the API token, typed once into the login form, is exchanged for a
//! session cookie, so the token itself never sits in the browser.
//!
//! - The cookie (`lookout_session`) holds 256 random bits; lookout keeps only their SHA-256, in
//!   memory (a restart logs everyone out). It is `HttpOnly`, `SameSite=Strict`, limited to the
//!   page's path, lasts `[web] session_ttl`, and is `Secure` when the request came over TLS: from
//!   a trusted proxy (`[web] trusted_proxies`) saying `X-Forwarded-Proto: https`.
//! - Every form carries a CSRF token. A session has its own; before login, the login form's
//!   token is also set as a cookie (`lookout_csrf`, double submit). A post whose token does not
//!   match, or whose `Origin` is another site, is refused (403) before anything is done.
//! - Logging out forgets the session and clears the cookie.
//!
//! At most [`MAX_SESSIONS`] sessions live at once; the one closest to its end makes room.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};

use crate::config::WebSettings;

pub(crate) const SESSION_COOKIE: &str = "lookout_session";
pub(crate) const CSRF_COOKIE: &str = "lookout_csrf";
/// Sessions kept at once.
pub(crate) const MAX_SESSIONS: usize = 1000;

/// A logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The token every form of this session must carry.
    pub csrf: String,
}

struct Entry {
    session: Session,
    expires: Instant,
}

/// The page's sessions.
pub(crate) struct Sessions {
    ttl: Duration,
    /// Keyed by the SHA-256 (hex) of the cookie's value.
    map: Mutex<HashMap<String, Entry>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// 256 random bits from the operating system, as hex. `None` if it has none to give.
pub(crate) fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn digest(value: &str) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(value.as_bytes()))
}

impl Sessions {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session: (the cookie's value, the session).
    pub(crate) fn create(&self) -> Option<(String, Session)> {
        let id = random_token()?;
        let session = Session {
            csrf: random_token()?,
        };
        let now = Instant::now();
        let mut map = lock(&self.map);
        map.retain(|_, e| e.expires > now);
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            digest(&id),
            Entry {
                session: session.clone(),
                expires: now + self.ttl,
            },
        );
        Some((id, session))
    }

    /// The session the request's cookie names, if it is alive.
    pub(crate) fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let key = digest(id);
        let mut map = lock(&self.map);
        match map.get(&key) {
            Some(e) if e.expires > Instant::now() => Some(e.session.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Forgets the request's session.
    pub(crate) fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            lock(&self.map).remove(&digest(id));
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether the browser reached lookout over TLS: a trusted proxy forwarded an HTTPS request.
pub(crate) fn over_tls(headers: &HeaderMap, peer: Option<SocketAddr>, web: &WebSettings) -> bool {
    let trusted = peer.is_some_and(|p| {
        let ip = p.ip().to_canonical();
        web.trusted_proxies.iter().any(|net| net.contains(&ip))
    });
    trusted
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: Duration,
    secure: bool,
) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// A `Set-Cookie` value that removes the cookie.
pub(crate) fn clear_cookie(name: &str, path: &str, secure: bool) -> String {
    set_cookie(name, "", path, Duration::ZERO, secure)
}

/// Why a form post is refused before anything is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The post comes from another site (`Origin` or `Sec-Fetch-Site` say so).
    CrossSite,
    /// No CSRF token, or not the expected one.
    Csrf,
}

/// Checks a form post: it comes from this site and carries `expected` as its `csrf` field.
pub(crate) fn check_post(
    headers: &HeaderMap,
    given: Option<&str>,
    expected: Option<&str>,
) -> Result<(), Refusal> {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return Err(Refusal::CrossSite);
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        // The Host the browser used (a proxy passes it on, or says it in X-Forwarded-Host).
        let host = headers
            .get("x-forwarded-host")
            .or_else(|| headers.get(header::HOST))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim);
        let origin_host = url::Url::parse(origin).ok().and_then(|u| {
            u.host_str().map(|h| {
                format!(
                    "{h}{}",
                    u.port().map(|p| format!(":{p}")).unwrap_or_default()
                )
            })
        });
        if origin == "null" || origin_host.as_deref() != host {
            return Err(Refusal::CrossSite);
        }
    }
    match (given, expected) {
        (Some(g), Some(e)) if crate::api::same_secret(g.as_bytes(), e.as_bytes()) => Ok(()),
        _ => Err(Refusal::Csrf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_removed() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (id, session) = sessions.create().unwrap();
        assert_eq!(id.len(), 64);
        let h = headers(&[("cookie", &format!("theme=dark; {SESSION_COOKIE}={id}"))]);
        assert_eq!(sessions.find(&h), Some(session));
        assert_eq!(
            sessions.find(&headers(&[("cookie", "lookout_session=nope")])),
            None
        );
        sessions.remove(&h);
        assert_eq!(sessions.find(&h), None);
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let sessions = Sessions::new(Duration::ZERO);
        let (id, _) = sessions.create().unwrap();
        assert_eq!(
            sessions.find(&headers(&[("cookie", &format!("{SESSION_COOKIE}={id}"))])),
            None
        );
        let sessions = Sessions::new(Duration::from_secs(60));
        for _ in 0..MAX_SESSIONS + 10 {
            sessions.create().unwrap();
        }
        assert_eq!(lock(&sessions.map).len(), MAX_SESSIONS);
    }

    #[test]
    fn cookies_are_strict_and_secure_behind_a_trusted_tls_proxy() {
        let web = WebSettings::default();
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let https = headers(&[("x-forwarded-proto", "https")]);
        assert!(over_tls(&https, Some(local), &web));
        assert!(!over_tls(&https, Some(remote), &web), "an untrusted peer");
        assert!(!over_tls(&headers(&[]), Some(local), &web));
        assert!(!over_tls(&https, None, &web));
        assert_eq!(
            set_cookie("a", "b", "/lookout/", Duration::from_secs(60), true),
            "a=b; Path=/lookout/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            clear_cookie("a", "/", false),
            "a=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn posts_need_the_token_and_this_site() {
        let same = headers(&[
            ("host", "ops.example:8443"),
            ("origin", "https://ops.example:8443"),
        ]);
        assert_eq!(check_post(&same, Some("t"), Some("t")), Ok(()));
        assert_eq!(check_post(&same, None, Some("t")), Err(Refusal::Csrf));
        assert_eq!(check_post(&same, Some("u"), Some("t")), Err(Refusal::Csrf));
        assert_eq!(check_post(&same, Some("t"), None), Err(Refusal::Csrf));
        let other = headers(&[
            ("host", "ops.example:8443"),
            ("origin", "https://evil.example"),
        ]);
        assert_eq!(
            check_post(&other, Some("t"), Some("t")),
            Err(Refusal::CrossSite)
        );
        let null = headers(&[("host", "ops.example"), ("origin", "null")]);
        assert_eq!(
            check_post(&null, Some("t"), Some("t")),
            Err(Refusal::CrossSite)
        );
        let fetch = headers(&[("sec-fetch-site", "cross-site")]);
        assert_eq!(
            check_post(&fetch, Some("t"), Some("t")),
            Err(Refusal::CrossSite)
        );
        // Without Origin (an older browser, curl), the token alone decides.
        assert_eq!(check_post(&headers(&[]), Some("t"), Some("t")), Ok(()));
        let proxied = headers(&[
            ("host", "127.0.0.1:9100"),
            ("x-forwarded-host", "ops.example"),
            ("origin", "https://ops.example"),
        ]);
        assert_eq!(check_post(&proxied, Some("t"), Some("t")), Ok(()));
    }
}
