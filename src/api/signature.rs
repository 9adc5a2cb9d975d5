//! Hook authentication that does not trust the network: HMAC signatures over the raw body,
//! checked in constant time, timestamps checked against a window, and a bounded memory of
//! deliveries already seen. Pure: the clock comes in as a value.
//!
//! Two signature schemes:
//! - GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
//! - lookout's own `X-Lookout-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`,
//!   for any sender that can compute a header (a CI job, a relay in front of a registry). The
//!   timestamp is signed too, so a captured delivery stops working after [`WINDOW`].

use std::collections::{HashSet, VecDeque};

use hmac::{Hmac, KeyInit, Mac};
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

/// How far a delivery's timestamp may be from lookout's clock, either way.
pub(crate) const WINDOW: SignedDuration = SignedDuration::from_secs(5 * 60);

/// lookout's signature header, for senders that can compute one.
pub(crate) const LOOKOUT_HEADER: &str = "x-lookout-signature";
/// GitHub's signature header.
pub(crate) const GITHUB_HEADER: &str = "x-hub-signature-256";

/// Why a signature was refused. Messages say what to fix, never quote a secret or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    #[error(
        "{header} is malformed: expected `t=<unix seconds>,v1=<64 hex digits of HMAC-SHA256(hook_secret, \"<t>.<body>\")>`"
    )]
    MalformedLookout { header: &'static str },
    #[error("{header} is malformed: expected `sha256=<64 hex digits>`")]
    MalformedGitHub { header: &'static str },
    #[error(
        "the signature timestamp is {seconds} s away from lookout's clock (allowed: ±{} s); check both clocks, and sign each delivery when it is sent",
        WINDOW.as_secs()
    )]
    Stale { seconds: i64 },
    #[error("the signature does not match the body: sign the exact bytes sent, with hook_secret")]
    Mismatch,
}

/// A parsed `X-Lookout-Signature`: its timestamp and the signatures it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LookoutSignature {
    pub t: i64,
    v1: Vec<[u8; 32]>,
}

impl LookoutSignature {
    /// Parses the header value: comma-separated `key=value` pairs; `t` once, `v1` up to four
    /// times (a sender rotating its secret), other keys ignored.
    pub(crate) fn parse(header: &str) -> Result<Self, SignatureError> {
        let bad = SignatureError::MalformedLookout {
            header: LOOKOUT_HEADER,
        };
        let mut t = None;
        let mut v1 = Vec::new();
        for part in header.split(',').take(16) {
            match part.trim().split_once('=') {
                Some(("t", value)) if t.is_none() => {
                    t = Some(value.parse::<i64>().map_err(|_| bad.clone())?);
                }
                Some(("v1", value)) if v1.len() < 4 => v1.push(hex32(value).ok_or(bad.clone())?),
                Some(_) => {}
                None => return Err(bad),
            }
        }
        match t {
            Some(t) if !v1.is_empty() => Ok(Self { t, v1 }),
            _ => Err(bad),
        }
    }

    /// Checked before the body is read: a delivery outside the window is refused unread.
    pub(crate) fn fresh(&self, now: Timestamp) -> Result<(), SignatureError> {
        within_window(self.t, now)
    }

    /// Checked over the raw body, in constant time.
    pub(crate) fn verify(&self, secret: &[u8], body: &[u8]) -> Result<(), SignatureError> {
        let mut mac = hmac(secret);
        mac.update(self.t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        // Every candidate is compared, so the time does not say which one matched.
        let matched = self.v1.iter().fold(subtle::Choice::from(0), |acc, v| {
            acc | subtle::ConstantTimeEq::ct_eq(&expected[..], &v[..])
        });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// What identifies this delivery for the replay memory.
    pub(crate) fn replay_key(&self) -> Vec<u8> {
        let mut key = b"lookout:".to_vec();
        key.extend(self.v1.iter().flatten());
        key
    }
}

/// The value of `X-Lookout-Signature` for `body` sent at `t` (unix seconds).
pub fn sign_lookout(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = hmac(secret);
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex(&mac.finalize().into_bytes()))
}

/// A parsed `X-Hub-Signature-256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitHubSignature([u8; 32]);

impl GitHubSignature {
    pub(crate) fn parse(header: &str) -> Result<Self, SignatureError> {
        header
            .trim()
            .strip_prefix("sha256=")
            .and_then(hex32)
            .map(Self)
            .ok_or(SignatureError::MalformedGitHub {
                header: GITHUB_HEADER,
            })
    }

    /// Checked over the raw body, in constant time (`Mac::verify_slice`).
    pub(crate) fn verify(&self, secret: &[u8], body: &[u8]) -> Result<(), SignatureError> {
        let mut mac = hmac(secret);
        mac.update(body);
        mac.verify_slice(&self.0)
            .map_err(|_| SignatureError::Mismatch)
    }

    pub(crate) fn replay_key(&self) -> Vec<u8> {
        [b"github-signature:".as_slice(), &self.0].concat()
    }
}

/// Whether unix time `t` is within [`WINDOW`] of `now`.
pub(crate) fn within_window(t: i64, now: Timestamp) -> Result<(), SignatureError> {
    let seconds = t.saturating_sub(now.as_second());
    if seconds.unsigned_abs() <= WINDOW.as_secs().unsigned_abs() {
        Ok(())
    } else {
        Err(SignatureError::Stale { seconds })
    }
}

/// Whether `t` is within [`WINDOW`] of `now`.
pub(crate) fn fresh(t: Timestamp, now: Timestamp) -> bool {
    within_window(t.as_second(), now).is_ok()
}

/// Deliveries already accepted, to refuse the same one twice: the newest [`Replays::CAPACITY`]
/// keys, each kept as a SHA-256 so memory does not depend on what senders put in ids. Only
/// authenticated deliveries are remembered, so a stranger cannot push real ones out.
#[derive(Debug, Default)]
pub(crate) struct Replays {
    seen: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl Replays {
    pub(crate) const CAPACITY: usize = 4096;

    /// Remembers `key`; `false` when it was already remembered (a replay).
    pub(crate) fn first_time(&mut self, key: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(key).into();
        if !self.seen.insert(digest) {
            return false;
        }
        self.order.push_back(digest);
        if self.order.len() > Self::CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        true
    }
}

fn hmac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"hook-secret-0123456789";

    #[test]
    fn github_signatures_match_github_s_documented_example() {
        // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
        let sig = GitHubSignature::parse(
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )
        .unwrap();
        assert_eq!(
            sig.verify(b"It's a Secret to Everybody", b"Hello, World!"),
            Ok(())
        );
        assert_eq!(
            sig.verify(b"It's a Secret to Everybody", b"Hello, World?"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            sig.verify(b"another secret", b"Hello, World!"),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            "",
            "sha256=",
            "sha1=757107ea",
            "sha256=zz",
            &format!("sha256={}", "0".repeat(63)),
        ] {
            assert!(GitHubSignature::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lookout_signatures_cover_timestamp_and_body() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let t = now.as_second();
        let header = sign_lookout(SECRET, t, b"{\"events\":[]}");
        let sig = LookoutSignature::parse(&header).unwrap();
        assert_eq!(sig.fresh(now), Ok(()));
        assert_eq!(sig.verify(SECRET, b"{\"events\":[]}"), Ok(()));
        assert_eq!(
            sig.verify(SECRET, b"{\"events\":[1]}"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            sig.verify(b"wrong secret", b"{\"events\":[]}"),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = header.replace(&format!("t={t}"), &format!("t={}", t + 1));
        assert_eq!(
            LookoutSignature::parse(&moved)
                .unwrap()
                .verify(SECRET, b"{\"events\":[]}"),
            Err(SignatureError::Mismatch)
        );
        // Extra keys are ignored; a second v1 (secret rotation) may match.
        let rotated = format!(
            "t={t}, v0=abc, v1={}, {}",
            "0".repeat(64),
            &header[header.find("v1=").unwrap()..]
        );
        assert_eq!(
            LookoutSignature::parse(&rotated)
                .unwrap()
                .verify(SECRET, b"{\"events\":[]}"),
            Ok(())
        );
        for bad in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "garbage",
            &format!("v1={}", "0".repeat(64)),
        ] {
            assert!(LookoutSignature::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stale_timestamps_are_refused_both_ways() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let t = now.as_second();
        assert_eq!(within_window(t - 300, now), Ok(()));
        assert_eq!(within_window(t + 300, now), Ok(()));
        assert_eq!(
            within_window(t - 301, now),
            Err(SignatureError::Stale { seconds: -301 })
        );
        assert_eq!(
            within_window(t + 301, now),
            Err(SignatureError::Stale { seconds: 301 })
        );
        assert!(within_window(i64::MIN, now).is_err());
        assert!(within_window(i64::MAX, now).is_err());
        let msg = within_window(t - 3600, now).unwrap_err().to_string();
        assert!(msg.contains("-3600 s") && msg.contains("±300 s"), "{msg}");
    }

    #[test]
    fn replays_are_remembered_within_a_bound() {
        let mut r = Replays::default();
        assert!(r.first_time(b"github:1"));
        assert!(!r.first_time(b"github:1"));
        assert!(r.first_time(b"github:2"));
        for i in 0..Replays::CAPACITY {
            assert!(r.first_time(format!("k{i}").as_bytes()));
        }
        assert_eq!(r.order.len(), Replays::CAPACITY);
        assert_eq!(r.seen.len(), Replays::CAPACITY);
        assert!(
            r.first_time(b"github:1"),
            "the oldest keys are forgotten first"
        );
        assert!(!r.first_time(b"k4095"), "the newest are kept");
    }
}
