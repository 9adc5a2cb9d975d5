//! Tag policies: from a repository's tags, choose the tag a service should run.
//!
//! A [`Policy`] is compiled once from a [`PolicySpec`] (the configuration's words) and then
//! answers [`Policy::select`] for any tag list: move to a tag, stay and follow the digest, or
//! nothing is better than what runs. Pure: no I/O, no clock. The rules are documented on each
//! kind below and in the README; tests in this module pin every one of them.

mod natural;
mod taglist;
mod version;

use std::cmp::Ordering;
use std::fmt;

use globset::{Glob, GlobMatcher};
use regex::Regex;

pub use natural::natural_cmp;
pub use taglist::{TagListError, parse_tag_list};
pub use version::VersionTag;

/// One tag of a repository, with the time it was pushed when the registry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    /// Unix seconds.
    pub pushed: Option<i64>,
}

impl Tag {
    pub fn new(name: impl Into<String>, pushed: Option<i64>) -> Self {
        Self {
            name: name.into(),
            pushed,
        }
    }
}

/// Signatures, attestations and SBOMs stored as tags, and digest-named tags, are never run.
pub(crate) fn is_artifact_tag(tag: &str) -> bool {
    tag.ends_with(".sig")
        || tag.ends_with(".att")
        || tag.ends_with(".sbom")
        || tag.starts_with("sha256-")
}

/// How a service chooses its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Stay on the same tag and follow its digest.
    Digest,
    /// The greatest version of the same shape as the current tag.
    Semver,
    /// The matching tag pushed last (`tag_pattern`, globset syntax, whole tag).
    Glob,
    /// The matching tag pushed last, or with the greatest `version` capture (`tag_regex`).
    Regex,
}

impl PolicyKind {
    pub(crate) const NAMES: &'static [&'static str] = &["digest", "semver", "glob", "regex"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "digest" => Some(Self::Digest),
            "semver" => Some(Self::Semver),
            "glob" => Some(Self::Glob),
            "regex" => Some(Self::Regex),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Digest => "digest",
            Self::Semver => "semver",
            Self::Glob => "glob",
            Self::Regex => "regex",
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a semver policy may move from the current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum UpdateLevel {
    /// Any greater version.
    #[default]
    Major,
    /// The same first part.
    Minor,
    /// The same first and second parts.
    Patch,
}

impl UpdateLevel {
    pub(crate) const NAMES: &'static [&'static str] = &["major", "minor", "patch"];

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "major" => Some(Self::Major),
            "minor" => Some(Self::Minor),
            "patch" => Some(Self::Patch),
            _ => None,
        }
    }

    /// How many leading parts must stay equal.
    fn fixed_parts(self) -> usize {
        match self {
            Self::Major => 0,
            Self::Minor => 1,
            Self::Patch => 2,
        }
    }
}

/// The policy settings as the configuration (or the command line) gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PolicySpec {
    pub policy: Option<PolicyKind>,
    pub tag_pattern: Option<String>,
    pub tag_regex: Option<String>,
    /// Tags matching this regex (searched) are never candidates, whatever the policy.
    pub tag_exclude: Option<String>,
    pub semver_pattern: Option<String>,
    pub semver_range: Option<String>,
    pub update_level: Option<UpdateLevel>,
    pub prerelease: Option<bool>,
}

/// One thing wrong with a [`PolicySpec`]: the field and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    pub field: &'static str,
    pub message: String,
}

/// A compiled policy, ready to select.
#[derive(Debug, Clone)]
pub struct Policy {
    kind: PolicyKind,
    tag_pattern: Option<GlobMatcher>,
    tag_regex: Option<Regex>,
    tag_exclude: Option<Regex>,
    /// Whether `tag_regex` has a named group `version` to order by.
    regex_version: bool,
    semver_pattern: Option<GlobMatcher>,
    /// The literal text `semver_pattern` starts with: `v` for `v*`.
    semver_prefix: String,
    semver_range: Option<semver::VersionReq>,
    update_level: UpdateLevel,
    prerelease: bool,
}

/// What a policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagChoice {
    /// Move to this tag.
    Update(String),
    /// Stay on the current tag and follow its digest.
    FollowDigest,
    /// Nothing is better than the current tag.
    NoUpdate,
}

/// The decision, how many tags competed for it, and why, in words for logs and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub outcome: TagChoice,
    /// Tags that passed the policy's filters (and shape, for semver), the current one included.
    pub candidates: usize,
    pub reason: String,
}

impl Selection {
    /// The tag the service should run: the new one, the current one for the digest policy when
    /// the registry lists it, or `None`.
    pub fn selected<'a>(&'a self, current: &'a str) -> Option<&'a str> {
        match &self.outcome {
            TagChoice::Update(tag) => Some(tag),
            TagChoice::FollowDigest if self.candidates > 0 => Some(current),
            _ => None,
        }
    }
}

impl Policy {
    /// Resolves the policy kind and compiles its patterns, reporting every problem at once.
    ///
    /// Resolution: an explicit `policy` wins; else any semver option means semver; else
    /// `tag_regex` means regex; else `tag_pattern` means glob; else digest.
    pub fn compile(spec: &PolicySpec) -> Result<Self, Vec<PolicyProblem>> {
        let kind = spec.kind();
        let mut problems = Vec::new();
        let patterns = Patterns::compile(spec, &mut problems);
        check_settings(spec, kind, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        let regex_version = patterns
            .tag_regex
            .as_ref()
            .is_some_and(|re| re.capture_names().flatten().any(|n| n == "version"));
        Ok(Self {
            kind,
            tag_pattern: patterns.tag_pattern,
            tag_regex: patterns.tag_regex,
            tag_exclude: patterns.tag_exclude,
            regex_version,
            semver_prefix: spec
                .semver_pattern
                .as_deref()
                .map(literal_prefix)
                .unwrap_or_default(),
            semver_pattern: patterns.semver_pattern,
            semver_range: patterns.semver_range,
            update_level: spec.update_level.unwrap_or_default(),
            prerelease: spec.prerelease.unwrap_or(false),
        })
    }

    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// Chooses the tag to run, given the tag that runs now and the repository's tags.
    pub fn select(&self, current: &str, tags: &[Tag]) -> Selection {
        let eligible: Vec<&Tag> = tags
            .iter()
            .filter(|t| !is_artifact_tag(&t.name) && self.passes_filters(&t.name))
            .collect();
        match self.kind {
            PolicyKind::Digest => {
                let listed = tags.iter().any(|t| t.name == current);
                Selection {
                    outcome: TagChoice::FollowDigest,
                    candidates: usize::from(listed),
                    reason: if listed {
                        format!("digest policy: stays on {current:?} and follows its digest")
                    } else {
                        format!(
                            "digest policy: stays on {current:?}, which the registry does not list"
                        )
                    },
                }
            }
            PolicyKind::Semver if self.prerelease => self.select_strict_semver(current, &eligible),
            PolicyKind::Semver => self.select_semver(current, &eligible),
            PolicyKind::Glob | PolicyKind::Regex => self.select_newest(current, &eligible),
        }
    }

    /// `tag_pattern`, `tag_regex`, `tag_exclude` and `semver_pattern` all filter, whatever the
    /// kind.
    fn passes_filters(&self, tag: &str) -> bool {
        self.tag_pattern.as_ref().is_none_or(|g| g.is_match(tag))
            && self.tag_regex.as_ref().is_none_or(|r| r.is_match(tag))
            && self.tag_exclude.as_ref().is_none_or(|r| !r.is_match(tag))
            && self.semver_pattern.as_ref().is_none_or(|g| g.is_match(tag))
    }

    fn in_range(&self, version: Option<semver::Version>) -> bool {
        match (&self.semver_range, version) {
            (None, _) => true,
            (Some(req), Some(v)) => req.matches(&v),
            (Some(_), None) => false,
        }
    }

    fn select_semver(&self, current: &str, eligible: &[&Tag]) -> Selection {
        let cur = VersionTag::parse(current);
        let fits = |v: &VersionTag<'_>| match &cur {
            Some(c) => {
                c.same_shape(v)
                    && c.parts[..self.update_level.fixed_parts().min(c.parts.len())]
                        .iter()
                        .zip(&v.parts)
                        .all(|(a, b)| natural::int_cmp(a, b) == Ordering::Equal)
            }
            None => v.prefix == self.semver_prefix && v.parts.len() == 3 && v.suffix.is_empty(),
        };
        let candidates: Vec<(&Tag, VersionTag<'_>)> = eligible
            .iter()
            .filter_map(|t| VersionTag::parse(&t.name).map(|v| (*t, v)))
            .filter(|(_, v)| fits(v) && self.in_range(v.padded_semver()))
            .collect();
        let best = candidates.iter().max_by(|(ta, a), (tb, b)| {
            a.cmp_parts(b)
                .then_with(|| ta.pushed.cmp(&tb.pushed))
                .then_with(|| tie(ta, tb))
        });
        let n = candidates.len();
        let shape = match &cur {
            Some(c) => format!(
                "shaped like {current:?} (prefix {:?}, {} numeric parts, suffix {:?}{})",
                c.prefix,
                c.parts.len(),
                c.suffix,
                match self.update_level {
                    UpdateLevel::Major => String::new(),
                    level => format!(", update_level {level:?}").to_lowercase(),
                }
            ),
            None => format!(
                "of the form {:?}N.N.N ({current:?} is not a version tag)",
                self.semver_prefix
            ),
        };
        match (best, &cur) {
            (Some((t, v)), Some(c)) if v.cmp_parts(c) == Ordering::Greater => Selection {
                outcome: TagChoice::Update(t.name.clone()),
                candidates: n,
                reason: format!("{:?} is the greatest of {n} tags {shape}", t.name),
            },
            (Some((t, _)), None) => Selection {
                outcome: TagChoice::Update(t.name.clone()),
                candidates: n,
                reason: format!("{:?} is the greatest of {n} tags {shape}", t.name),
            },
            _ => Selection {
                outcome: TagChoice::NoUpdate,
                candidates: n,
                reason: format!("no tag {shape} is greater than {current:?} ({n} candidates)"),
            },
        }
    }

    /// `prerelease = true`: the current tag's prefix + a strict SemVer 2.0 version, ordered by
    /// SemVer precedence (build metadata ignored, prerelease identifiers compared as the spec
    /// says: `1.0.0-rc10` < `1.0.0-rc2`).
    fn select_strict_semver(&self, current: &str, eligible: &[&Tag]) -> Selection {
        let split = |tag: &str| -> Option<(usize, semver::Version)> {
            let at = tag.find(|c: char| c.is_ascii_digit())?;
            semver::Version::parse(&tag[at..]).ok().map(|v| (at, v))
        };
        let cur = split(current);
        let prefix = match &cur {
            Some((at, _)) => &current[..*at],
            None => self.semver_prefix.as_str(),
        };
        let fixed = self.update_level.fixed_parts();
        let same_lead = |a: &semver::Version, b: &semver::Version| {
            (fixed < 1 || a.major == b.major) && (fixed < 2 || a.minor == b.minor)
        };
        let candidates: Vec<(&Tag, semver::Version)> = eligible
            .iter()
            .filter_map(|t| {
                split(&t.name)
                    .filter(|(at, _)| &t.name[..*at] == prefix)
                    .map(|(_, v)| (*t, v))
            })
            .filter(|(_, v)| cur.as_ref().is_none_or(|(_, c)| same_lead(c, v)))
            .filter(|(_, v)| self.in_range(Some(semver::Version::new(v.major, v.minor, v.patch))))
            .collect();
        let best = candidates.iter().max_by(|(ta, a), (tb, b)| {
            a.cmp_precedence(b)
                .then_with(|| ta.pushed.cmp(&tb.pushed))
                .then_with(|| tie(ta, tb))
        });
        let n = candidates.len();
        match (best, &cur) {
            (Some((t, v)), Some((_, c))) if v.cmp_precedence(c) == Ordering::Greater => Selection {
                outcome: TagChoice::Update(t.name.clone()),
                candidates: n,
                reason: format!(
                    "{:?} has the highest SemVer precedence of {n} tags {prefix:?}+SemVer, prereleases included",
                    t.name
                ),
            },
            (Some((t, _)), None) => Selection {
                outcome: TagChoice::Update(t.name.clone()),
                candidates: n,
                reason: format!(
                    "{:?} has the highest SemVer precedence of {n} tags {prefix:?}+SemVer ({current:?} is not SemVer)",
                    t.name
                ),
            },
            _ => Selection {
                outcome: TagChoice::NoUpdate,
                candidates: n,
                reason: format!(
                    "no tag {prefix:?}+SemVer has higher precedence than {current:?} ({n} candidates)"
                ),
            },
        }
    }

    /// Glob and regex: the tag pushed last wins (natural order breaks ties); with a `version`
    /// group in `tag_regex`, the greatest capture in natural order wins (push time breaks ties).
    /// The current tag competes when the registry lists it; with a `version` group it competes
    /// by its version even when the registry no longer lists it.
    fn select_newest(&self, current: &str, eligible: &[&Tag]) -> Selection {
        let unlisted_current;
        let mut competing: Vec<&Tag> = eligible.to_vec();
        if self.regex_version
            && !competing.iter().any(|t| t.name == current)
            && self.passes_filters(current)
        {
            unlisted_current = Tag::new(current, None);
            competing.push(&unlisted_current);
        }
        let version_of = |t: &Tag| -> Option<String> {
            let re = self.tag_regex.as_ref().filter(|_| self.regex_version)?;
            re.captures(&t.name)?
                .name("version")
                .map(|m| m.as_str().to_owned())
        };
        let key_cmp = |a: &&Tag, b: &&Tag| {
            if self.regex_version {
                let (va, vb) = (
                    version_of(a).unwrap_or_default(),
                    version_of(b).unwrap_or_default(),
                );
                natural_cmp(&va, &vb)
                    .then_with(|| a.pushed.cmp(&b.pushed))
                    .then_with(|| tie(a, b))
            } else {
                a.pushed.cmp(&b.pushed).then_with(|| tie(a, b))
            }
        };
        let best = competing.iter().copied().max_by(key_cmp);
        let n = eligible.len();
        let filter = self.describe_filters();
        let order = if self.regex_version {
            "greatest version"
        } else {
            "pushed last"
        };
        match best {
            Some(t) if t.name != current => Selection {
                outcome: TagChoice::Update(t.name.clone()),
                candidates: n,
                reason: format!(
                    "{:?} is the {order} of {n} tags matching {filter}{}",
                    t.name,
                    pushed(t)
                ),
            },
            _ => Selection {
                outcome: TagChoice::NoUpdate,
                candidates: n,
                reason: if n == 0 {
                    format!("no tag matches {filter}")
                } else {
                    format!("{current:?} is already the {order} of {n} tags matching {filter}")
                },
            },
        }
    }

    fn describe_filters(&self) -> String {
        let mut parts = Vec::new();
        if let Some(g) = &self.tag_pattern {
            parts.push(format!("tag_pattern {:?}", g.glob().glob()));
        }
        if let Some(r) = &self.tag_regex {
            parts.push(format!("tag_regex {:?}", r.as_str()));
        }
        if let Some(g) = &self.semver_pattern {
            parts.push(format!("semver_pattern {:?}", g.glob().glob()));
        }
        parts.join(" and ")
    }
}

/// The last tie-break: natural order, then plain bytes, so the answer never depends on the
/// order the registry listed the tags in.
fn tie(a: &Tag, b: &Tag) -> Ordering {
    natural_cmp(&a.name, &b.name).then_with(|| a.name.cmp(&b.name))
}

fn pushed(t: &Tag) -> String {
    match t.pushed.and_then(|s| jiff::Timestamp::from_second(s).ok()) {
        Some(ts) => format!(" (pushed {})", ts.strftime("%Y-%m-%d %H:%M:%SZ")),
        None => String::new(),
    }
}

impl PolicySpec {
    /// Whether a setting only policy "semver" reads is given.
    fn has_semver_option(&self) -> bool {
        self.semver_pattern.is_some()
            || self.semver_range.is_some()
            || self.update_level.is_some()
            || self.prerelease.is_some()
    }

    /// The policy named, else the one the other settings imply: a semver setting → semver, a
    /// `tag_regex` → regex, a `tag_pattern` → glob, nothing → digest.
    fn kind(&self) -> PolicyKind {
        self.policy.unwrap_or(if self.has_semver_option() {
            PolicyKind::Semver
        } else if self.tag_regex.is_some() {
            PolicyKind::Regex
        } else if self.tag_pattern.is_some() {
            PolicyKind::Glob
        } else {
            PolicyKind::Digest
        })
    }
}

/// A spec's patterns and version requirement, compiled.
/// How deeply groups, classes and repetitions may nest in `tag_regex` and `tag_exclude`.
const REGEX_NEST_LIMIT: u32 = 32;

struct Patterns {
    tag_pattern: Option<GlobMatcher>,
    semver_pattern: Option<GlobMatcher>,
    tag_regex: Option<Regex>,
    tag_exclude: Option<Regex>,
    semver_range: Option<semver::VersionReq>,
}

impl Patterns {
    /// Compiles each pattern the spec gives; one that does not compile is a problem (and
    /// `None`).
    fn compile(spec: &PolicySpec, problems: &mut Vec<PolicyProblem>) -> Self {
        let mut problem = |field, message: String| problems.push(PolicyProblem { field, message });
        let tag_pattern = spec.tag_pattern.as_deref().and_then(|p| match glob(p) {
            Ok(m) => Some(m),
            Err(e) => {
                problem("tag_pattern", format!("{p:?} is not a valid glob: {e}"));
                None
            }
        });
        let semver_pattern = spec.semver_pattern.as_deref().and_then(|p| match glob(p) {
            Ok(m) => Some(m),
            Err(e) => {
                problem("semver_pattern", format!("{p:?} is not a valid glob: {e}"));
                None
            }
        });
        // A bounded nesting depth: a hostile or mistyped pattern of hundreds of nested groups
        // is refused instead of exhausting a thread's stack while it compiles.
        let mut regex = |field, r: &str| match regex::RegexBuilder::new(r)
            .nest_limit(REGEX_NEST_LIMIT)
            .build()
        {
            Ok(re) => Some(re),
            Err(e) => {
                // The regex crate's message spans lines (pattern, caret, error); keep the error.
                let e = e.to_string();
                let e = e
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_owned();
                problem(field, format!("{r:?} is not a valid regex: {e}"));
                None
            }
        };
        let tag_regex = spec
            .tag_regex
            .as_deref()
            .and_then(|r| regex("tag_regex", r));
        let tag_exclude = spec
            .tag_exclude
            .as_deref()
            .and_then(|r| regex("tag_exclude", r));
        let semver_range =
            spec.semver_range
                .as_deref()
                .and_then(|r| match semver::VersionReq::parse(r) {
                    Ok(req) => Some(req),
                    Err(e) => {
                        problem(
                            "semver_range",
                            format!(
                                "{r:?} is not a version requirement ({e}); write e.g. \">=1.2, <2\""
                            ),
                        );
                        None
                    }
                });
        Self {
            tag_pattern,
            semver_pattern,
            tag_regex,
            tag_exclude,
            semver_range,
        }
    }
}

/// The problems of the spec's settings for policy `kind`: a glob or regex policy without its
/// pattern, a semver setting on another policy, a pattern that a digest policy ignores.
fn check_settings(spec: &PolicySpec, kind: PolicyKind, problems: &mut Vec<PolicyProblem>) {
    let mut problem = |field, message: String| problems.push(PolicyProblem { field, message });
    match kind {
        PolicyKind::Glob if spec.tag_pattern.is_none() => problem(
            "tag_pattern",
            "policy \"glob\" needs a tag_pattern such as \"staging-*\"".into(),
        ),
        PolicyKind::Regex if spec.tag_regex.is_none() => problem(
            "tag_regex",
            "policy \"regex\" needs a tag_regex such as \"^staging-[a-f0-9]{7}$\"".into(),
        ),
        PolicyKind::Digest | PolicyKind::Glob | PolicyKind::Regex if spec.has_semver_option() => {
            let field = if spec.semver_pattern.is_some() {
                "semver_pattern"
            } else if spec.semver_range.is_some() {
                "semver_range"
            } else if spec.update_level.is_some() {
                "update_level"
            } else {
                "prerelease"
            };
            problem(
                field,
                format!(
                    "only applies to policy \"semver\", not \"{kind}\"; remove it or set policy = \"semver\""
                ),
            );
        }
        PolicyKind::Digest if spec.tag_pattern.is_some() || spec.tag_regex.is_some() => {
            let field = if spec.tag_pattern.is_some() {
                "tag_pattern"
            } else {
                "tag_regex"
            };
            problem(
                field,
                "has no effect with policy \"digest\", which stays on the same tag; remove it or choose policy \"glob\", \"regex\" or \"semver\"".into(),
            );
        }
        _ => {}
    }
}

fn glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Glob::new(pattern).map(|g| g.compile_matcher())
}

/// The literal text a glob starts with, up to its first wildcard or digit: `v` for `v*`,
/// `release-` for `release-*`, nothing for `2*`.
fn literal_prefix(pattern: &str) -> String {
    pattern
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '[' | '{' | '\\') && !c.is_ascii_digit())
        .collect()
}

#[cfg(test)]
mod tests;
