//! Redaction: the one function every message passes through before lookout prints or logs it.
//!
//! Secrets are first kept out of messages where the messages are made: a [`crate::secret::Secret`]
//! prints `***`, the configuration never quotes the value of a secret key, and a webhook URL is
//! shown as its scheme and host. [`redact`] is the net under that, for text that comes from
//! elsewhere (a registry's error, compose's stderr, a library's message). In any text it masks
//! - every secret value the configuration held ([`remember`]);
//! - in URLs: the userinfo (`https://***@host`), query values (except a few harmless names such as
//!   `n`, `last` and `scope`), the whole path of chat webhooks (Slack, Discord, Teams, Google
//!   Chat, Telegram, ntfy) and any other path segment that looks like a token;
//! - the value after a secret-looking key: `password=…`, `api_token = "…"`, `"secret": "…"`,
//!   `Authorization: …` and `Bearer …`.
//!
//! [`Writer`] applies it line by line to a stream (the CLI's stdout); [`MakeRedacting`] to every
//! log line. [`redact_with`] is the pure core, given the secrets to mask.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::{self, Write};
use std::sync::{LazyLock, PoisonError, RwLock};

use regex::{Captures, Regex};

/// What a masked value becomes.
pub(crate) const MASK: &str = "***";

/// Shorter values are not remembered: masking every `true` or `admin` would garble messages, and
/// the configuration never prints a secret's value in the first place.
const MIN_REMEMBERED_LEN: usize = 6;
/// A bound on the remembered values, whatever reloads bring.
const MAX_REMEMBERED: usize = 1024;

static KNOWN: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Remembers `secret` so that [`redact`] masks it wherever it appears, for the life of the
/// process. The configuration calls it for every secret value it reads.
pub(crate) fn remember(secret: &str) {
    if secret.chars().count() < MIN_REMEMBERED_LEN || secret == MASK {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(PoisonError::into_inner);
    if known.len() < MAX_REMEMBERED && !known.contains(secret) {
        known.insert(secret.to_owned());
    }
}

/// `text` with every secret masked: the remembered values, URL credentials and tokens, and the
/// values of secret-looking keys.
pub fn redact(text: &str) -> Cow<'_, str> {
    let known = KNOWN.read().unwrap_or_else(PoisonError::into_inner);
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    redact_with(text, &known)
}

/// [`redact`] with `secrets` as the values to mask (values shorter than six characters are
/// ignored, as [`remember`] does). Pure.
pub fn redact_with<'t>(text: &'t str, secrets: &[&str]) -> Cow<'t, str> {
    let mut out = Cow::Borrowed(text);
    let mut secrets: Vec<&str> = secrets
        .iter()
        .copied()
        .filter(|s| s.chars().count() >= MIN_REMEMBERED_LEN && *s != MASK)
        .collect();
    // The longest first, so that a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        if out.contains(secret) {
            out = Cow::Owned(out.replace(secret, MASK));
        }
    }
    out = apply(out, &URL, |c| redact_url_parts(&c[1], &c[2]));
    out = apply(out, &AUTHORIZATION, |c| format!("{}{}{MASK}", &c[1], &c[2]));
    out = apply(out, &BEARER, |c| format!("{} {MASK}", &c[1]));
    out = apply(out, &ESCAPED_JSON_PAIR, |c| {
        format!("\\\"{}\\\"{}\\\"{MASK}\\\"", &c[1], &c[2])
    });
    out = apply(out, &JSON_PAIR, |c| {
        format!("\"{}\"{}\"{MASK}\"", &c[1], &c[2])
    });
    out = apply(out, &KEY_VALUE, |c| {
        let value = &c[3];
        if is_harmless(value) {
            c[0].to_owned()
        } else {
            let (open, close) = quotes(value);
            format!("{}{}{open}{MASK}{close}", &c[1], &c[2])
        }
    });
    out
}

/// A URL for a log line or message when its path and query may be the credential (a webhook):
/// scheme and host only, `https://hooks.slack.com/…`.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host: String = host
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect();
    format!("{scheme}{host}/…")
}

/// A secret-looking key: anything with password, secret, token, api key, credential or private
/// key in its name, and `auth` (Docker's `config.json`).
const KEY: &str = r"[A-Za-z0-9_.\-]*(?i:password|passwd|secret|token|api[_\-]?key|credential|private[_\-]?key)[A-Za-z0-9_.\-]*|(?i:auth)";

/// `scheme://rest`: the rest ends at whitespace, a quote, `<`, `>`, a backtick or a backslash.
static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\b([A-Za-z][A-Za-z0-9+.\-]*)://([^\s"'<>`\\]*)"#).expect("URL pattern")
});
static AUTHORIZATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b((?:proxy-)?authorization)(\s*[:=]\s*"?(?:[A-Za-z]+\s+)?)[^\s",;]+"#)
        .expect("authorization pattern")
});
static BEARER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{16,}").expect("bearer pattern")
});
static JSON_PAIR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r#""({KEY})"(\s*:\s*)"(?:[^"\\]|\\.)*""#)).expect("JSON pair pattern")
});
/// The same inside a JSON string (a JSON log line quoting a message that holds JSON).
static ESCAPED_JSON_PAIR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"\\"({KEY})\\"(\s*:\s*)\\"(?:[^"\\]|\\[^"])*\\""#
    ))
    .expect("escaped JSON pair pattern")
});
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"\b({KEY})(\s*=\s*)(\\?"[^"]*"|'[^']*'|[^\s&,;"'\\]+)"#
    ))
    .expect("key=value pattern")
});

fn apply<'t>(
    text: Cow<'t, str>,
    re: &Regex,
    replace: impl Fn(&Captures<'_>) -> String,
) -> Cow<'t, str> {
    let replaced = match re.replace_all(&text, |c: &Captures<'_>| replace(c)) {
        Cow::Borrowed(_) => None,
        Cow::Owned(s) => Some(s),
    };
    replaced.map_or(text, Cow::Owned)
}

/// Values after a secret-looking key that are not secrets: a `${VAR}` reference, a boolean, an
/// already masked value, nothing.
fn is_harmless(value: &str) -> bool {
    let inner = value.trim_matches(['"', '\'', '\\']);
    let reference = inner
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .is_some_and(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    let word = inner.trim_end_matches([')', ']', '}', '.', ':']);
    reference || word.is_empty() || word == MASK || word == "true" || word == "false"
}

/// The quotes around a value, kept so that the masked text reads the same way.
fn quotes(value: &str) -> (&str, &str) {
    for q in ["\\\"", "\"", "'"] {
        if value.len() >= 2 * q.len() && value.starts_with(q) && value.ends_with(q) {
            return (q, q);
        }
    }
    ("", "")
}

/// Query parameters whose values are never secrets and help to read an error.
const HARMLESS_QUERY: &[&str] = &[
    "last",
    "n",
    "service",
    "scope",
    "page",
    "page_size",
    "ordering",
    "name",
    "tag",
    "digest",
    "mount",
    "from",
];

/// Hosts whose URL path is the credential.
fn is_chat_webhook(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host.as_str(), |(h, _)| h);
    matches!(
        host,
        "hooks.slack.com"
            | "discord.com"
            | "discordapp.com"
            | "canary.discord.com"
            | "ptb.discord.com"
            | "outlook.office.com"
            | "chat.googleapis.com"
            | "api.telegram.org"
            | "ntfy.sh"
    ) || host.ends_with(".webhook.office.com")
}

/// shoutrrr schemes whose host is itself part of the credential (a Slack token part, a
/// Teams group id, a Pushover user key, a Discord webhook id): all after the scheme is masked.
const SHOUTRRR_OPAQUE: &[&str] = &["slack", "teams", "pushover", "discord"];
/// shoutrrr schemes whose path (a topic, token or room) is the credential.
const SHOUTRRR_PATH_SECRET: &[&str] = &[
    "ntfy",
    "gotify",
    "telegram",
    "matrix",
    "mattermost",
    "rocketchat",
    "generic",
    "generic+https",
    "generic+http",
];

fn redact_url_parts(scheme: &str, rest: &str) -> String {
    let lower = scheme.to_ascii_lowercase();
    if SHOUTRRR_OPAQUE.contains(&lower.as_str()) && !rest.is_empty() {
        return format!("{scheme}://{MASK}");
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let mut out = format!("{scheme}://");
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => {
            out.push_str(MASK);
            out.push('@');
            host
        }
        None => authority,
    };
    out.push_str(host);
    if (is_chat_webhook(host) || SHOUTRRR_PATH_SECRET.contains(&lower.as_str())) && path.len() > 1 {
        out.push('/');
        out.push_str(MASK);
    } else {
        let path: Vec<&str> = path
            .split('/')
            .map(|segment| if token_like(segment) { MASK } else { segment })
            .collect();
        out.push_str(&path.join("/"));
    }
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if HARMLESS_QUERY.contains(&k.to_ascii_lowercase().as_str()) => {
                    pair.to_owned()
                }
                Some((k, _)) => format!("{k}={MASK}"),
                None if token_like(pair) => MASK.to_owned(),
                None => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if fragment.is_some_and(|f| !f.is_empty()) {
        out.push('#');
        out.push_str(MASK);
    }
    out
}

/// A path segment that looks like a credential: 40 or more token characters; a UUID; or 16 or
/// more that mix letters and digits without word separators (or with both cases).
fn token_like(segment: &str) -> bool {
    let b = segment.as_bytes();
    if b.len() < 16
        || !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.~+=%".contains(c))
    {
        return false;
    }
    if b.len() >= 40 || is_uuid(segment) {
        return true;
    }
    let digit = b.iter().any(u8::is_ascii_digit);
    let lower = b.iter().any(u8::is_ascii_lowercase);
    let upper = b.iter().any(u8::is_ascii_uppercase);
    let separator = b.iter().any(|c| b"-_.".contains(c));
    digit && (lower || upper) && (!separator || (lower && upper))
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// A stream whose every line passes through [`redact`] before it reaches `inner`. Text without a
/// final newline is written on [`Write::flush`] and when the writer is dropped.
pub struct Writer<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }

    fn write_redacted(&mut self, bytes: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(bytes);
        self.inner.write_all(redact(&text).as_bytes())
    }
}

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Only the new bytes are searched for the last line end: a long line written in many
        // small pieces (`--json` output through serde) stays linear, not quadratic.
        let before = self.pending.len();
        self.pending.extend_from_slice(buf);
        if let Some(end) = buf.iter().rposition(|&b| b == b'\n') {
            let lines: Vec<u8> = self.pending.drain(..=before + end).collect();
            self.write_redacted(&lines)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.write_redacted(&rest)?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for Writer<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// A `tracing` writer factory whose writers redact: each log event is formatted whole, then
/// passes through [`redact`] when its writer is dropped.
#[derive(Debug, Clone)]
pub(crate) struct MakeRedacting<M>(pub M);

impl<'a, M> tracing_subscriber::fmt::MakeWriter<'a> for MakeRedacting<M>
where
    M: tracing_subscriber::fmt::MakeWriter<'a>,
{
    type Writer = Writer<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Writer::new(self.0.make_writer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, want: &str) {
        assert_eq!(redact_with(input, &[]), want, "input {input:?}");
        assert_eq!(
            redact_with(want, &[]),
            want,
            "redacting twice changes nothing"
        );
    }

    #[test]
    fn url_credentials_and_tokens() {
        let cases = [
            (
                "POST https://user:hunter2@example.com:8443/hook failed",
                "POST https://***@example.com:8443/hook failed",
            ),
            (
                "https://hooks.slack.com/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX",
                "https://hooks.slack.com/***",
            ),
            (
                "url=https://discord.com/api/webhooks/1234567890/abcDEF-ghi_jkl",
                "url=https://discord.com/***",
            ),
            (
                "https://acme.webhook.office.com/webhookb2/x@y/IncomingWebhook/z/w",
                "https://acme.webhook.office.com/***",
            ),
            (
                "https://chat.googleapis.com/v1/spaces/AAA/messages?key=k123&token=t456",
                "https://chat.googleapis.com/***?key=***&token=***",
            ),
            (
                "http://127.0.0.1:5000/v2/team/app/tags/list?n=100&last=1.2",
                "http://127.0.0.1:5000/v2/team/app/tags/list?n=100&last=1.2",
            ),
            (
                "https://auth.example.com/token?service=registry&scope=repository:a:pull&account=bob",
                "https://auth.example.com/token?service=registry&scope=repository:a:pull&account=***",
            ),
            (
                "https://example.com/hooks/0123456789abcdef0123456789abcdef/x",
                "https://example.com/hooks/***/x",
            ),
            (
                "https://webhook.site/550e8400-e29b-41d4-a716-446655440000",
                "https://webhook.site/***",
            ),
            (
                "https://example.com/a#access_token=zzz",
                "https://example.com/a#***",
            ),
            // Not secrets: registry paths, tags, digests, sockets.
            (
                "http://r:5000/v2/my-service-2024-production/manifests/1.27.0-alpine3.19-perl",
                "http://r:5000/v2/my-service-2024-production/manifests/1.27.0-alpine3.19-perl",
            ),
            (
                "https://ghcr.io/v2/o/r/manifests/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "https://ghcr.io/v2/o/r/manifests/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
            ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
            // shoutrrr URLs.
            (
                "slack://T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX?channel=ops",
                "slack://***",
            ),
            (
                "bad URL pushover://shoutrrr:apiToken@userKey/?devices=a",
                "bad URL pushover://***",
            ),
            (
                "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=@c",
                "telegram://***@telegram?chats=***",
            ),
            (
                "gotify://gotify.example.com/path/AzyoeNS.D4iJLVa/?priority=1",
                "gotify://gotify.example.com/***?priority=***",
            ),
            (
                "ntfy://ntfy.example.org/private-topic",
                "ntfy://ntfy.example.org/***",
            ),
            (
                "docker.io/library/nginx:1.27",
                "docker.io/library/nginx:1.27",
            ),
        ];
        for (input, want) in cases {
            check(input, want);
        }
    }

    #[test]
    fn values_of_secret_keys() {
        let cases = [
            ("password=hunter2 user=bob", "password=*** user=bob"),
            ("POSTGRES_PASSWORD=s3cret", "POSTGRES_PASSWORD=***"),
            (
                "registry_password = \"hunter2\" # x",
                "registry_password = \"***\" # x",
            ),
            ("api_token = 'abc'", "api_token = '***'"),
            (
                r#"{"auth":"dXNlcjpwYXNz","email":"a@b"}"#,
                r#"{"auth":"***","email":"a@b"}"#,
            ),
            (
                r#"{"hook_secret": "x\"y", "n": 1}"#,
                r#"{"hook_secret": "***", "n": 1}"#,
            ),
            (
                r#"{"message":"bad password=\"hunter2\" here"}"#,
                r#"{"message":"bad password=\"***\" here"}"#,
            ),
            (
                "Authorization: Basic dXNlcjpwYXNz",
                "Authorization: Basic ***",
            ),
            (
                "got 401 with Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc",
                "got 401 with Bearer ***",
            ),
            (
                "WWW-Authenticate: Bearer realm=\"https://auth.docker.io/token\"",
                "WWW-Authenticate: Bearer realm=\"https://auth.docker.io/token\"",
            ),
            // References, booleans and explanations stay readable.
            (
                "set api_token = \"${LOOKOUT_API_TOKEN}\" or listen_without_token = true (LOOKOUT_LISTEN_WITHOUT_TOKEN=true)",
                "set api_token = \"${LOOKOUT_API_TOKEN}\" or listen_without_token = true (LOOKOUT_LISTEN_WITHOUT_TOKEN=true)",
            ),
            (
                "api_token: is shorter than 16 characters",
                "api_token: is shorter than 16 characters",
            ),
            (
                "services[0].registry_config.password: expected a string",
                "services[0].registry_config.password: expected a string",
            ),
        ];
        for (input, want) in cases {
            check(input, want);
        }
    }

    #[test]
    fn known_secrets_are_masked_anywhere() {
        let got = redact_with(
            "compose said: cannot log in with pa55-w0rd-x as bob (pa55)",
            &["pa55-w0rd-x", "pa55"],
        );
        assert_eq!(got, "compose said: cannot log in with *** as bob (pa55)");
        // The longer secret first, so no part of it survives.
        let got = redact_with("xx abcdef-ghijkl yy", &["abcdef", "abcdef-ghijkl"]);
        assert_eq!(got, "xx *** yy");
        remember("remembered-secret-value");
        assert_eq!(redact("a remembered-secret-value b"), "a *** b");
    }

    #[test]
    fn text_without_secrets_is_borrowed() {
        let text = "services[1].image: image reference \"Nginx\" must be lower-case";
        assert!(matches!(redact_with(text, &[]), Cow::Borrowed(_)));
    }

    #[test]
    fn the_writer_redacts_whole_lines_split_across_writes() {
        let mut out = Vec::new();
        {
            let mut w = Writer::new(&mut out);
            w.write_all(b"first https://u:p@h").unwrap();
            w.write_all(b"ost/x line\npassword=").unwrap();
            w.write_all(b"hunter2").unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "first https://***@host/x line\npassword=***"
        );
    }

    #[test]
    fn the_writer_gives_the_same_lines_whatever_the_size_of_the_writes() {
        let text = "a https://u:p@host/x\npassword=hunter2 b\nc\n\nlast token=abc";
        let whole: String = text
            .split_inclusive('\n')
            .map(|line| redact_with(line, &[]).into_owned())
            .collect();
        for size in [1, 2, 3, 7, 64] {
            let mut out = Vec::new();
            {
                let mut w = Writer::new(&mut out);
                for piece in text.as_bytes().chunks(size) {
                    w.write_all(piece).unwrap();
                }
            }
            assert_eq!(
                String::from_utf8(out).unwrap(),
                whole,
                "writes of {size} bytes"
            );
        }
    }

    #[test]
    fn webhook_urls_show_scheme_and_host_only() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_url("http://user:pw@host:8080/x?token=1"),
            "http://host:8080/…"
        );
    }
}
