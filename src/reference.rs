//! Image references, parsed and normalised the way Docker does.
//!
//! `nginx` is `docker.io/library/nginx:latest`; `registry:5000/team/app:1.2` names a registry with
//! a port; `repo:tag@sha256:…` carries both a tag and a digest. The grammar follows
//! distribution's `reference` package (the one the Docker CLI uses): the first path component is
//! a registry host only when it contains `.` or `:`, is `localhost`, or has upper-case letters;
//! path components are lower-case; a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; a digest is
//! `sha256:`, `sha384:` or `sha512:` with 64, 96 or 128 lower-case hex digits (go-digest's
//! registered algorithms); a port is a number from 1 to 65535. Every reference lookout takes —
//! configuration, container labels, `compose set-image` — goes through [`ImageRef::parse`], so
//! every place refuses the same inputs with the same messages. Pure: no I/O.

use std::fmt;

/// The registry Docker uses when a reference names none.
pub(crate) const DOCKER_HUB: &str = "docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const MAX_NAME_LEN: usize = 255;
/// The longest tag the distribution spec allows.
pub const MAX_TAG_LEN: usize = 128;
/// Messages quote at most this many characters of the input.
const MAX_QUOTED: usize = 200;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a string is not an image reference. Each message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error(
        "image reference {input:?}: repository name {path:?} must be lower-case (Docker rejects upper-case letters in repository names)"
    )]
    UpperCase { input: String, path: String },
    #[error(
        "image reference {input:?}: invalid path component {component:?} (use lower-case letters, digits and single separators `.`, `_`, `__` or `-`)"
    )]
    InvalidComponent { input: String, component: String },
    #[error("image reference {input:?}: invalid registry host {host:?}: {reason}")]
    InvalidRegistry {
        input: String,
        host: String,
        reason: &'static str,
    },
    #[error(
        "image reference {input:?}: invalid tag {tag:?}: {reason} (a tag is 1 to 128 characters from `A-Za-z0-9_.-` and does not start with `.` or `-`)"
    )]
    InvalidTag {
        input: String,
        tag: String,
        reason: &'static str,
    },
    #[error(
        "image reference {input:?}: invalid digest {digest:?}: {reason} (expected sha256: and 64, sha384: and 96, or sha512: and 128 lower-case hex digits)"
    )]
    InvalidDigest {
        input: String,
        digest: String,
        reason: &'static str,
    },
    #[error("image reference {input:?}: repository name is longer than {MAX_NAME_LEN} characters")]
    TooLong { input: String },
}

impl ImageRef {
    /// Parses and normalises `input`. A reference with neither tag nor digest gets `latest`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let mut r = Self::parse_partial(input)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".to_owned());
        }
        Ok(r)
    }

    /// Parses without adding the implicit `latest` tag (a repository name, or `repo@digest`).
    pub(crate) fn parse_partial(input: &str) -> Result<Self, ReferenceError> {
        if input.trim().is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                validate_digest(input, d)?;
                (rest, Some(d.to_owned()))
            }
            None => (input, None),
        };
        // A tag follows the last `:` that comes after the last `/` (a `:` before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let split = last_slash + i;
                let tag = &rest[split + 1..];
                validate_tag(input, tag)?;
                (&rest[..split], Some(tag.to_owned()))
            }
            None => (rest, None),
        };
        let (registry, path) = split_registry(name);
        let registry = match registry {
            Some(host) => {
                validate_host(input, host)?;
                if host == LEGACY_DOCKER_HUB {
                    DOCKER_HUB.to_owned()
                } else {
                    host.to_owned()
                }
            }
            None => DOCKER_HUB.to_owned(),
        };
        for component in path.split('/') {
            if valid_component(component) {
                continue;
            }
            // As Docker does: a name that would be valid in lower case is "must be lower-case".
            if valid_component(&component.to_ascii_lowercase()) {
                return Err(ReferenceError::UpperCase {
                    input: quoted(input),
                    path: quoted(path),
                });
            }
            return Err(ReferenceError::InvalidComponent {
                input: quoted(input),
                component: quoted(component),
            });
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong {
                input: quoted(input),
            });
        }
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host, with port when given: `docker.io`, `registry:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry: `library/nginx`, `team/app`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:…`) when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at another tag, without a digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same reference pinned to `digest` (the tag, if any, is kept for readers).
    #[cfg(test)]
    pub fn with_digest(&self, digest: &str) -> Self {
        Self {
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }

    /// The short form Docker prints: `nginx:1.27`, `team/app:1`, `ghcr.io/o/r@sha256:…`. It
    /// parses back to the same reference: `docker.io/` stays when the path would otherwise read
    /// as a host (`docker.io/a.b/c`), `library/` when more than one component follows it.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_HUB {
            let path = match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest,
                _ => &self.repository,
            };
            if split_registry(path).0.is_some() {
                self.name()
            } else {
                path.to_owned()
            }
        } else {
            self.name()
        };
        self.with_suffix(name)
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(digest);
        }
        s
    }
}

impl fmt::Display for ImageRef {
    /// The full normalised form: `docker.io/library/nginx:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.name()))
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits off the registry host the way Docker's `splitDockerDomain` does.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `s` for a message: whole when short, else its first characters and `…`.
fn quoted(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A host (`[a-zA-Z0-9-]` labels joined by `.`, or a bracketed IPv6 address), optional `:port`.
fn validate_host(input: &str, host: &str) -> Result<(), ReferenceError> {
    let bad = |reason| ReferenceError::InvalidRegistry {
        input: quoted(input),
        host: quoted(host),
        reason,
    };
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
        if addr.is_empty() || addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address inside `[…]`"));
        }
        match after {
            "" => (None, None),
            p => (
                None,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("only `:port` may follow `]`"))?,
                ),
            ),
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if !name.split('.').all(label_ok) {
            return Err(bad(
                "a host name is labels of letters, digits and inner `-`, joined by `.`",
            ));
        }
    }
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65_535).contains(&p));
        if !ok {
            return Err(bad("the port must be a number from 1 to 65535"));
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
fn validate_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    match tag_problem(tag) {
        None => Ok(()),
        Some(reason) => Err(ReferenceError::InvalidTag {
            input: quoted(input),
            tag: quoted(tag),
            reason,
        }),
    }
}

/// What is wrong with `tag` by the tag grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, or `None`
/// for a valid tag. The one tag rule: the registry layer skips tags it refuses.
pub(crate) fn tag_problem(tag: &str) -> Option<&'static str> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if tag.is_empty() {
        Some("it is empty")
    } else if tag.len() > MAX_TAG_LEN {
        Some("it is longer than 128 characters")
    } else if !tag.starts_with(word) {
        Some("it starts with `.` or `-`")
    } else if tag.contains(':') {
        Some("it contains `:` (a reference has one tag, after the last `:`)")
    } else if !tag.chars().all(|c| word(c) || c == '.' || c == '-') {
        Some("it contains a character other than `A-Za-z0-9_.-`")
    } else {
        None
    }
}

fn validate_digest(input: &str, digest: &str) -> Result<(), ReferenceError> {
    match digest_problem(digest) {
        None => Ok(()),
        Some(reason) => Err(ReferenceError::InvalidDigest {
            input: quoted(input),
            digest: quoted(digest),
            reason,
        }),
    }
}

/// What is wrong with `digest` (`algorithm:hex`), or `None` when it is well formed: a
/// registered algorithm with its exact number of lower-case hex digits.
pub(crate) fn digest_problem(digest: &str) -> Option<&'static str> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Some("it has no `algorithm:`");
    };
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Some("the algorithm is not sha256, sha384 or sha512"),
    };
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Some("the digits are not lower-case hex")
    } else if hex.len() != want {
        Some("the number of hex digits does not fit the algorithm")
    } else {
        None
    }
}

/// Whether `digest` is a well-formed digest (`sha256:` and 64 lower-case hex digits, or sha384,
/// sha512).
pub(crate) fn is_digest(digest: &str) -> bool {
    digest_problem(digest).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// `expect` is the full normalised form, or `Err(fragment of the message)`.
    fn check(input: &str, expect: Result<&str, &str>) {
        let got = ImageRef::parse(input);
        match (got, expect) {
            (Ok(r), Ok(want)) => assert_eq!(r.to_string(), want, "input {input:?}"),
            (Err(e), Err(fragment)) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(fragment),
                    "input {input:?}: {msg:?} lacks {fragment:?}"
                );
                assert!(
                    msg.contains(&format!("{input:?}"))
                        || input.trim().is_empty()
                        || input.chars().count() > MAX_QUOTED,
                    "message quotes input: {msg}"
                );
            }
            (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn normalises_like_docker() {
        let with_digest = format!("ghcr.io/o/r@{D}");
        let tag_and_digest = format!("docker.io/library/redis:7@{D}");
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("nginx", Ok("docker.io/library/nginx:latest")),
            ("nginx:1.27", Ok("docker.io/library/nginx:1.27")),
            ("library/nginx", Ok("docker.io/library/nginx:latest")),
            ("docker.io/nginx", Ok("docker.io/library/nginx:latest")),
            ("index.docker.io/nginx:1", Ok("docker.io/library/nginx:1")),
            ("bitnami/redis:7.2", Ok("docker.io/bitnami/redis:7.2")),
            (
                "registry:5000/team/app:1.2",
                Ok("registry:5000/team/app:1.2"),
            ),
            ("localhost/app", Ok("localhost/app:latest")),
            ("localhost:5000/app:v1", Ok("localhost:5000/app:v1")),
            ("127.0.0.1:5000/a/b/c:t", Ok("127.0.0.1:5000/a/b/c:t")),
            ("[::1]:5000/app:1", Ok("[::1]:5000/app:1")),
            ("ghcr.io/o/r", Ok("ghcr.io/o/r:latest")),
            (&with_digest, Ok(&with_digest)),
            (&format!("redis:7@{D}"), Ok(&tag_and_digest)),
            (
                "my-registry.example.com/a__b/c-d/e.f:tag_1.0-x",
                Ok("my-registry.example.com/a__b/c-d/e.f:tag_1.0-x"),
            ),
            ("a--b/c", Ok("docker.io/a--b/c:latest")),
            ("Example.com/app:1", Ok("Example.com/app:1")),
            ("foo_bar:TAG", Ok("docker.io/library/foo_bar:TAG")),
            // Errors, each quoting the input.
            ("", Err("empty")),
            ("Nginx", Err("must be lower-case")),
            ("ghcr.io/Owner/repo", Err("must be lower-case")),
            ("nginx:", Err("invalid tag")),
            ("nginx:-x", Err("invalid tag")),
            ("nginx:.x", Err("invalid tag")),
            ("nginx@sha256:abc", Err("invalid digest")),
            ("nginx@md5:0123", Err("invalid digest")),
            ("a/-b", Err("invalid path component")),
            ("a/b-", Err("invalid path component")),
            ("a/b..c", Err("invalid path component")),
            ("a/b___c", Err("invalid path component")),
            ("a//b", Err("invalid path component")),
            ("host:port/app", Err("invalid registry host")),
            ("-bad.host/app", Err("invalid registry host")),
            ("[::1/app", Err("invalid registry host")),
            // What `compose set-image` once accepted, and friends.
            ("NGINX:1.27", Err("must be lower-case")),
            ("x:y:z:1", Err("it contains `:`")),
            (
                "nginx:1.27/../x",
                Err("invalid registry host \"nginx:1.27\": the port must be a number"),
            ),
            ("nginx/../x", Err("invalid path component \"..\"")),
            ("nginx:1.27\n", Err("a character other than")),
            ("nginx:1.27 ", Err("a character other than")),
            ("nginx:1?x", Err("a character other than")),
            ("nginx:1\u{1b}[31m", Err("a character other than")),
            (" nginx", Err("invalid path component")),
            ("nginx@sha256", Err("no `algorithm:`")),
            (
                "nginx@SHA256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                Err("not sha256, sha384 or sha512"),
            ),
            (
                "nginx@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
                Err("not lower-case hex"),
            ),
            (
                "nginx@sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                Err("does not fit the algorithm"),
            ),
            ("registry:0/app", Err("from 1 to 65535")),
            ("registry:65536/app", Err("from 1 to 65535")),
            ("registry:/app", Err("from 1 to 65535")),
            ("[::g]:5000/app", Err("not an IPv6 address")),
            ("[::1]x/app", Err("only `:port`")),
            ("reg_istry.io/app", Err("invalid registry host")),
            ("   ", Err("empty")),
        ];
        for (input, expect) in cases {
            check(input, *expect);
        }
    }

    #[test]
    fn long_tags_and_names_are_bounded() {
        check(
            &format!("nginx:{}", "a".repeat(128)),
            Ok(&format!("docker.io/library/nginx:{}", "a".repeat(128))),
        );
        check(&format!("nginx:{}", "a".repeat(129)), Err("invalid tag"));
        check(&format!("x.io/{}", "a".repeat(260)), Err("longer than"));
        // A huge input is quoted in part only.
        let huge = format!("nginx:{}", "é".repeat(100_000));
        let msg = ImageRef::parse(&huge).unwrap_err().to_string();
        assert!(msg.len() < 2000, "{} bytes", msg.len());
    }

    #[test]
    fn digests_of_every_registered_algorithm() {
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        let sha384 = format!("sha384:{}", "0".repeat(96));
        for d in [D, &sha512, &sha384] {
            assert!(is_digest(d), "{d}");
            let r = ImageRef::parse(&format!("nginx:1@{d}")).unwrap();
            assert_eq!(r.digest(), Some(d));
        }
        for bad in ["", "sha256:", "md5:00", "sha256:abc", &format!("{D}0")] {
            assert!(!is_digest(bad), "{bad}");
        }
    }

    #[test]
    fn parts_and_short_form() {
        let r = ImageRef::parse("nginx:1.27").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("docker.io", "library/nginx", Some("1.27"))
        );
        assert_eq!(r.familiar(), "nginx:1.27");
        assert_eq!(r.with_tag("1.28").familiar(), "nginx:1.28");
        assert_eq!(r.with_digest(D).familiar(), format!("nginx:1.27@{D}"));
        let g = ImageRef::parse("ghcr.io/o/r:1").unwrap();
        assert_eq!(g.familiar(), "ghcr.io/o/r:1");
        assert_eq!(ImageRef::parse_partial("nginx").unwrap().tag(), None);
    }
}
