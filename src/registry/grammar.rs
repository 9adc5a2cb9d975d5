//! The grammar remote data must follow before lookout uses it: tags, digests, media types.
//!
//! A registry is untrusted input. A tag that is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` is
//! skipped (and counted in [`super::RequestStats::skipped_tags`]), so no newline, escape
//! sequence or `?` reaches a manifest URL or the terminal. A digest is `sha256:` with 64 or
//! `sha512:` with 128 lowercase hex digits, as the OCI image spec registers them; content
//! fetched by digest must hash to it. Anything else from a registry that lookout shows in an
//! error goes through [`shown`] first.

use sha2::Digest as _;

pub use crate::reference::MAX_TAG_LEN;

/// Whether `tag` is a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (the rule is
/// [`crate::reference::tag_problem`]).
pub(crate) fn is_valid_tag(tag: &str) -> bool {
    crate::reference::tag_problem(tag).is_none()
}

/// The digest algorithms lookout accepts from a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn prefix(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }
}

/// The algorithm of a well-formed digest (`sha256:` + 64 or `sha512:` + 128 lowercase hex
/// digits), else `None`.
pub(crate) fn parse_digest(digest: &str) -> Option<Algorithm> {
    // The shape is the reference grammar's; of its algorithms lookout can hash two.
    if !crate::reference::is_digest(digest) {
        return None;
    }
    match digest.split_once(':')?.0 {
        "sha256" => Some(Algorithm::Sha256),
        "sha512" => Some(Algorithm::Sha512),
        _ => None,
    }
}

/// `algorithm:<hex>` of `bytes`.
pub fn digest_of(algorithm: Algorithm, bytes: &[u8]) -> String {
    let hash: Vec<u8> = match algorithm {
        Algorithm::Sha256 => sha2::Sha256::digest(bytes).to_vec(),
        Algorithm::Sha512 => sha2::Sha512::digest(bytes).to_vec(),
    };
    let mut s = String::with_capacity(136);
    s.push_str(algorithm.prefix());
    s.push(':');
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Whether `bytes` hash to `digest` (which must be well-formed).
pub(crate) fn matches_digest(digest: &str, bytes: &[u8]) -> bool {
    parse_digest(digest).is_some_and(|a| digest_of(a, bytes) == digest)
}

/// Whether `media_type` looks like `type/subtype` (RFC 6838 characters, at most 255 bytes,
/// parameters after `;` already cut off).
pub(crate) fn is_media_type(media_type: &str) -> bool {
    let name = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    media_type.len() <= 255
        && media_type
            .split_once('/')
            .is_some_and(|(t, sub)| name(t) && name(sub))
}

/// A remote string as it may appear in a message: control characters escaped, at most 80
/// characters, so a hostile answer can neither spoof lines nor flood the log.
pub(crate) fn shown(remote: &str) -> String {
    const MAX: usize = 80;
    let mut out: String = remote
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if remote.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_distribution_grammar() {
        for ok in ["latest", "1.27.3", "v1_2-rc.1", "_x", "A", &"a".repeat(128)] {
            assert!(is_valid_tag(ok), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a b",
            "1.0\n",
            "x?y",
            "x/y",
            "x:y",
            "\u{1b}[31mred",
            "nul\0",
            "é",
            &"a".repeat(129),
        ] {
            assert!(!is_valid_tag(bad), "{bad:?}");
        }
    }

    #[test]
    fn digests_name_a_known_algorithm_and_the_right_number_of_lowercase_hex_digits() {
        let s256 = digest_of(Algorithm::Sha256, b"");
        assert_eq!(
            s256,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(parse_digest(&s256), Some(Algorithm::Sha256));
        let s512 = digest_of(Algorithm::Sha512, b"x");
        assert_eq!(parse_digest(&s512), Some(Algorithm::Sha512));
        assert!(matches_digest(&s512, b"x") && !matches_digest(&s512, b"y"));
        for bad in [
            "sha256:zzz",
            "sha256:",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            &s256.to_uppercase(),
            &format!("{s256}0"),
            &s256[..70],
            "sha256",
            &format!("sha384:{}", "a".repeat(96)),
        ] {
            assert_eq!(parse_digest(bad), None, "{bad}");
        }
    }

    #[test]
    fn remote_text_in_messages_is_escaped_and_short() {
        assert_eq!(shown("a\nb\u{1b}"), "a\\nb\\u{1b}");
        let long = "x".repeat(500);
        assert_eq!(shown(&long).chars().count(), 81);
        assert!(is_media_type("application/vnd.oci.image.index.v1+json"));
        assert!(!is_media_type("application"));
        assert!(!is_media_type("a/b c"));
        assert!(!is_media_type(&format!("a/{}", "b".repeat(300))));
    }
}
