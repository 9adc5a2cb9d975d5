//! Credentials, the `WWW-Authenticate` challenge, and bearer tokens cached per scope.
//!
//! A registry answers an unauthenticated request with 401 and a challenge: `Basic realm=…`, or
//! `Bearer realm="https://auth…/token",service="…",scope="repository:r:pull"`. For Bearer, the
//! client asks the realm for a token (with basic credentials when it has them) and sends it as
//! `Authorization: Bearer`. Tokens are kept per scope until shortly before they expire.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;

use super::ErrorKind;
use crate::secret::Secret;

/// What lookout presents to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    Basic { username: String, password: Secret },
}

impl Credential {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Basic {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// `Basic base64(user:password)`, or `None` for anonymous.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Self::Anonymous => None,
            Self::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()))
            )),
        }
    }
}

/// Where an adapter gets its credential each time it needs one (cloud adapters mint
/// short-lived passwords; the others return a fixed one).
#[async_trait]
pub(crate) trait CredentialSource: Send + Sync {
    async fn credential(&self) -> Result<Credential, ErrorKind>;
}

#[async_trait]
impl CredentialSource for Credential {
    async fn credential(&self) -> Result<Credential, ErrorKind> {
        Ok(self.clone())
    }
}

/// The scheme a registry asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value: `Bearer realm="…",service="…",scope="…"` or `Basic …`.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
    })
}

/// `k="v",k2=v2` with quoted values that may hold commas (scopes do: `pull,push`).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
}

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub value: Secret,
    pub renew_at: Instant,
}

/// The token service's answer (distribution's token spec; Docker Hub's auth service; OAuth2).
/// `expires_in` is read leniently: anything but a plain number of seconds is ignored.
#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
}

/// A token without `expires_in` lasts this long, as the token specification says.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// Whatever a token service says, a token is used at most this long before asking again.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The longest token lookout keeps (tokens are sent in headers; a megabyte is no token).
const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Reads a token response. Tokens are renewed 10% (at most 30 s) before they expire; a
/// response without a usable `expires_in` lasts 60 s, and none is kept longer than a day.
pub(crate) fn parse_token(body: &[u8], now: Instant) -> Result<Token, ErrorKind> {
    let r: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        ErrorKind::auth(format!(
            "the token service's answer is not the JSON of a token: {e}"
        ))
    })?;
    let value = r
        .token
        .filter(|t| !t.is_empty())
        .or(r.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ErrorKind::auth("the token service's answer has no token"))?;
    if value.len() > MAX_TOKEN_LEN
        || !value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(ErrorKind::auth(
            "the token service's token is not a bearer token (too long, or characters a header cannot carry)",
        ));
    }
    let lifetime = lifetime(r.expires_in.as_ref());
    let margin = lifetime
        .checked_div(10)
        .unwrap_or_default()
        .min(Duration::from_secs(30));
    Ok(Token {
        value: Secret::new(value),
        renew_at: now
            .checked_add(lifetime.saturating_sub(margin))
            .unwrap_or(now),
    })
}

/// `expires_in` as a lifetime between 1 s and a day; absent, negative, fractional nonsense or
/// not a number means the 60 s default.
fn lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    let Some(v) = expires_in else {
        return DEFAULT_LIFETIME;
    };
    let secs = v
        .as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse::<u64>().ok()));
    match secs {
        Some(s) => Duration::from_secs(s).clamp(Duration::from_secs(1), MAX_LIFETIME),
        None => {
            tracing::debug!(expires_in = %super::grammar::shown(&v.to_string()), "token answer with an unusable expires_in; using 60 s");
            DEFAULT_LIFETIME
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_challenges_registries_send() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://ghcr.io/token",scope="repository:o/r:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: None
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="lookout-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn tokens_expire_a_little_early_and_default_to_sixty_seconds() {
        let now = Instant::now();
        let t = parse_token(br#"{"token":"abc","expires_in":300}"#, now).unwrap();
        assert_eq!(t.value.expose(), "abc");
        assert_eq!(t.renew_at, now + Duration::from_secs(270));
        let t = parse_token(br#"{"access_token":"xyz"}"#, now).unwrap();
        assert_eq!(t.renew_at, now + Duration::from_secs(54));
        assert!(parse_token(br#"{"expires_in":3}"#, now).is_err());
    }

    #[test]
    fn no_expires_in_can_overflow_the_clock() {
        let now = Instant::now();
        let renew = |expires_in: &str| {
            let body = format!(r#"{{"token":"abc","expires_in":{expires_in}}}"#);
            parse_token(body.as_bytes(), now).unwrap().renew_at - now
        };
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(renew("18446744073709551615"), day - Duration::from_secs(30));
        assert_eq!(renew("1e300"), Duration::from_secs(54));
        assert_eq!(
            renew("123456789012345678901234567890"),
            Duration::from_secs(54)
        );
        assert_eq!(renew("-1"), Duration::from_secs(54));
        assert_eq!(renew("-9223372036854775808"), Duration::from_secs(54));
        assert_eq!(renew("\"soon\""), Duration::from_secs(54));
        assert_eq!(renew("\"300\""), Duration::from_secs(270));
        assert_eq!(renew("null"), Duration::from_secs(54));
        assert_eq!(renew("[]"), Duration::from_secs(54));
        assert_eq!(
            renew("0"),
            Duration::from_secs(1) - Duration::from_millis(100)
        );
        assert_eq!(renew("2.5"), Duration::from_secs(54));
    }

    #[test]
    fn a_token_must_be_something_a_header_can_carry() {
        let now = Instant::now();
        assert!(parse_token(br#"{"token":"a\nb"}"#, now).is_err());
        assert!(parse_token(br#"{"token":"a b"}"#, now).is_err());
        let huge = format!(r#"{{"token":"{}"}}"#, "a".repeat(70_000));
        assert!(parse_token(huge.as_bytes(), now).is_err());
        // An empty `token` falls back to `access_token`, as OAuth2 servers answer.
        let t = parse_token(br#"{"token":"","access_token":"x"}"#, now).unwrap();
        assert_eq!(t.value.expose(), "x");
    }

    #[test]
    fn a_basic_credential_never_prints_its_password() {
        let c = Credential::basic("me", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic_header().unwrap(), "Basic bWU6aHVudGVyMg==");
    }
}
