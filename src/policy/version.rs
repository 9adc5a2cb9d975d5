//! Version tags: `prefix` + `N(.N)*` + `suffix`, and their shape.
//!
//! The prefix is the (possibly empty) run of non-digit characters before the first digit: `v`,
//! `release-`, `cli-`, `alpine`. The suffix is empty or starts with `-`, `_`, `+` or `.`:
//! `1.25.3-alpine` has prefix ``, parts `[1, 25, 3]` and suffix `-alpine`. Two tags can replace
//! each other only when they have the same shape (prefix, number of parts, suffix).

use std::cmp::Ordering;

use super::natural::int_cmp;

/// A tag read as a version. Numeric parts stay strings so they compare as integers of any size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTag<'a> {
    pub prefix: &'a str,
    pub parts: Vec<&'a str>,
    pub suffix: &'a str,
}

impl<'a> VersionTag<'a> {
    /// Reads `tag` as a version tag, or `None` when it is not one (`latest`, `1.2a`, `main`).
    pub fn parse(tag: &'a str) -> Option<Self> {
        let start = tag.find(|c: char| c.is_ascii_digit())?;
        let prefix = &tag[..start];
        let bytes = tag.as_bytes();
        let mut parts = Vec::new();
        let mut i = start;
        loop {
            let part_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            parts.push(&tag[part_start..i]);
            // Another part only when a `.` is followed by a digit; otherwise `.` starts the suffix.
            if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
                i += 1;
            } else {
                break;
            }
        }
        let suffix = &tag[i..];
        if !(suffix.is_empty() || suffix.starts_with(['-', '_', '+', '.'])) {
            return None;
        }
        Some(Self {
            prefix,
            parts,
            suffix,
        })
    }

    /// Whether `other` has the same shape: same prefix, same number of parts, same suffix.
    pub(crate) fn same_shape(&self, other: &VersionTag<'_>) -> bool {
        self.prefix == other.prefix
            && self.parts.len() == other.parts.len()
            && self.suffix == other.suffix
    }

    /// Compares the numeric parts as integers, part by part.
    pub(crate) fn cmp_parts(&self, other: &VersionTag<'_>) -> Ordering {
        for (a, b) in self.parts.iter().zip(&other.parts) {
            let ord = int_cmp(a, b);
            if ord != Ordering::Equal {
                return ord;
            }
        }
        self.parts.len().cmp(&other.parts.len())
    }

    /// The first three parts padded with zeros, for `semver_range`; `None` when a part does not
    /// fit in a u64.
    pub(crate) fn padded_semver(&self) -> Option<semver::Version> {
        let mut nums = [0u64; 3];
        for (slot, part) in nums.iter_mut().zip(&self.parts) {
            *slot = part.parse().ok()?;
        }
        Some(semver::Version::new(nums[0], nums[1], nums[2]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(tag: &str, expect: Option<(&str, &[&str], &str)>) {
        let got = VersionTag::parse(tag).map(|v| (v.prefix, v.parts.clone(), v.suffix));
        let want = expect.map(|(p, n, s)| (p, n.to_vec(), s));
        assert_eq!(got, want, "tag {tag:?}");
    }

    #[test]
    fn reads_version_tags() {
        check("1.25.3-alpine", Some(("", &["1", "25", "3"], "-alpine")));
        check("8.1-apache", Some(("", &["8", "1"], "-apache")));
        check("alpine3.19", Some(("alpine", &["3", "19"], "")));
        check("v1.0.0", Some(("v", &["1", "0", "0"], "")));
        check("release-2024.05", Some(("release-", &["2024", "05"], "")));
        check("cli-1.2", Some(("cli-", &["1", "2"], "")));
        check("17", Some(("", &["17"], "")));
        check("1.2.3.beta", Some(("", &["1", "2", "3"], ".beta")));
        check("1.2.", Some(("", &["1", "2"], ".")));
        check("1.0.0+build.5", Some(("", &["1", "0", "0"], "+build.5")));
        check("17.0.10_7-jdk", Some(("", &["17", "0", "10"], "_7-jdk")));
        check("1.0.0-rc1", Some(("", &["1", "0", "0"], "-rc1")));
        check("latest", None);
        check("staging-old", None);
        check("1.2a", None);
        check("", None);
    }

    #[test]
    fn shape_and_order() {
        let a = VersionTag::parse("1.25.3-alpine").unwrap();
        let b = VersionTag::parse("1.27.0-alpine").unwrap();
        let c = VersionTag::parse("1.27-alpine").unwrap();
        let d = VersionTag::parse("1.27.0").unwrap();
        assert!(a.same_shape(&b));
        assert!(!a.same_shape(&c) && !a.same_shape(&d));
        assert_eq!(a.cmp_parts(&b), Ordering::Less);
        assert_eq!(
            VersionTag::parse("1.10")
                .unwrap()
                .cmp_parts(&VersionTag::parse("1.9").unwrap()),
            Ordering::Greater
        );
        assert_eq!(
            VersionTag::parse("2.1").unwrap().padded_semver(),
            Some(semver::Version::new(2, 1, 0))
        );
    }
}
