//! Table tests for every selection rule, property tests, and cases over real tag histories.

use super::*;
use proptest::prelude::*;

fn spec() -> PolicySpec {
    PolicySpec::default()
}

fn tags(list: &[&str]) -> Vec<Tag> {
    list.iter().map(|t| Tag::new(*t, None)).collect()
}

fn pushed(list: &[(&str, i64)]) -> Vec<Tag> {
    list.iter().map(|(t, p)| Tag::new(*t, Some(*p))).collect()
}

/// Selects with `spec` and checks the chosen tag (`None`: no update).
fn check(spec: &PolicySpec, current: &str, tags: &[Tag], expect: Option<&str>) {
    let policy = Policy::compile(spec).unwrap_or_else(|p| panic!("{spec:?}: {p:?}"));
    let sel = policy.select(current, tags);
    let got = match &sel.outcome {
        TagChoice::Update(t) => Some(t.as_str()),
        TagChoice::NoUpdate | TagChoice::FollowDigest => None,
    };
    assert_eq!(
        got, expect,
        "current {current:?} with {spec:?}: {}",
        sel.reason
    );
}

fn semver() -> PolicySpec {
    PolicySpec {
        policy: Some(PolicyKind::Semver),
        ..spec()
    }
}

#[test]
fn semver_keeps_the_shape() {
    let list = tags(&[
        "1.25.3-alpine",
        "1.27.0-alpine",
        "1.27.0",
        "1.27-alpine",
        "1.26.9-alpine",
        "latest",
        "1.28.0-alpine3.20",
        "1.27.1-perl",
    ]);
    check(&semver(), "1.25.3-alpine", &list, Some("1.27.0-alpine"));
    check(&semver(), "1.27.0-alpine", &list, None);
    check(&semver(), "1.27-alpine", &list, None);
    check(
        &semver(),
        "1.20",
        &tags(&["1.20", "1.21", "1.21.1", "2.0-alpine"]),
        Some("1.21"),
    );
    check(
        &semver(),
        "8.1-apache",
        &tags(&["8.1-apache", "8.5-apache", "8.5-fpm", "8.10"]),
        Some("8.5-apache"),
    );
    check(
        &semver(),
        "alpine3.19",
        &tags(&["alpine3.19", "alpine3.20", "alpine3", "3.21"]),
        Some("alpine3.20"),
    );
    check(
        &semver(),
        "v1.0.0",
        &tags(&["v1.0.0", "v1.2.0", "1.9.0", "v2.0"]),
        Some("v1.2.0"),
    );
    check(
        &semver(),
        "release-1.0",
        &tags(&["release-1.0", "release-1.10", "release-1.9"]),
        Some("release-1.10"),
    );
}

#[test]
fn semver_compares_parts_as_integers() {
    check(
        &semver(),
        "1.9.0",
        &tags(&["1.9.0", "1.10.0", "1.09.1"]),
        Some("1.10.0"),
    );
    check(&semver(), "1", &tags(&["1", "10", "9", "2"]), Some("10"));
    check(
        &semver(),
        "1.0.0",
        &tags(&["1.0.0", "99999999999999999999.0.0", "2.0.0"]),
        Some("99999999999999999999.0.0"),
    );
}

#[test]
fn semver_update_level() {
    let list = tags(&["1.2.3", "1.2.9", "1.3.0", "2.0.0"]);
    let level = |l| PolicySpec {
        update_level: Some(l),
        ..spec()
    };
    check(&level(UpdateLevel::Major), "1.2.3", &list, Some("2.0.0"));
    check(&level(UpdateLevel::Minor), "1.2.3", &list, Some("1.3.0"));
    check(&level(UpdateLevel::Patch), "1.2.3", &list, Some("1.2.9"));
    check(&level(UpdateLevel::Patch), "1.2.9", &list, None);
}

#[test]
fn semver_range_pads_to_three_parts() {
    let list = tags(&["1.2", "1.5", "2.0", "2.1"]);
    let range = |r: &str| PolicySpec {
        semver_range: Some(r.into()),
        ..spec()
    };
    check(&range(">=1.2, <2"), "1.2", &list, Some("1.5"));
    check(&range("^2"), "1.2", &list, Some("2.1"));
    check(&range("<1.3"), "1.2", &list, None);
}

#[test]
fn semver_from_a_non_version_tag() {
    let list = tags(&[
        "latest",
        "1.0.0",
        "1.2.0",
        "1.3",
        "2.0.0-alpine",
        "v9.0.0",
        "release-3.0.0",
    ]);
    check(&semver(), "latest", &list, Some("1.2.0"));
    check(&semver(), "staging-old", &list, Some("1.2.0"));
    let pat = |p: &str| PolicySpec {
        semver_pattern: Some(p.into()),
        ..spec()
    };
    check(&pat("v*"), "latest", &list, Some("v9.0.0"));
    check(&pat("release-*"), "latest", &list, Some("release-3.0.0"));
    check(&pat("2*"), "latest", &list, None); // prefix "" and glob `2*`: 2.0.0-alpine has a suffix
    check(&pat("1*"), "latest", &list, Some("1.2.0"));
}

#[test]
fn semver_pattern_and_filters_apply_before_semver() {
    let list = tags(&["v1.0.0", "v1.1.0", "v2.0.0", "v1.2.0-rc1"]);
    let s = PolicySpec {
        semver_pattern: Some("v1.*".into()),
        ..spec()
    };
    check(&s, "v1.0.0", &list, Some("v1.1.0"));
    let s = PolicySpec {
        policy: Some(PolicyKind::Semver),
        tag_regex: Some("^v1\\.0".into()),
        ..spec()
    };
    check(&s, "v1.0.0", &list, None);
    let s = PolicySpec {
        policy: Some(PolicyKind::Semver),
        tag_pattern: Some("v[12].0.0".into()),
        ..spec()
    };
    check(&s, "v1.0.0", &list, Some("v2.0.0"));
}

#[test]
fn artifact_tags_are_never_candidates() {
    let list = tags(&[
        "1.0.0",
        "2.0.0.sig",
        "2.0.0.att",
        "2.0.0.sbom",
        "sha256-abc.sig",
        "1.1.0",
    ]);
    check(&semver(), "1.0.0", &list, Some("1.1.0"));
    let g = PolicySpec {
        tag_pattern: Some("*".into()),
        ..spec()
    };
    let p = pushed(&[("a", 1), ("b.sig", 9), ("sha256-1234", 9), ("c.att", 9)]);
    check(&g, "a", &p, None);
}

#[test]
fn prerelease_follows_semver_precedence_exactly() {
    let pre = PolicySpec {
        prerelease: Some(true),
        ..spec()
    };
    // rc10 sorts below rc2: alphanumeric identifiers compare as ASCII strings.
    check(
        &pre,
        "1.0.0-rc1",
        &tags(&["1.0.0-rc1", "1.0.0-rc2", "1.0.0-rc10"]),
        Some("1.0.0-rc2"),
    );
    check(
        &pre,
        "1.0.0-rc.1",
        &tags(&["1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.10"]),
        Some("1.0.0-rc.10"),
    );
    check(
        &pre,
        "1.0.0-rc.1",
        &tags(&["1.0.0-rc.1", "1.0.0", "1.0.0-rc.2"]),
        Some("1.0.0"),
    );
    check(
        &pre,
        "1.0.0",
        &tags(&["1.0.0", "1.0.1-beta", "1.0.0-rc.9"]),
        Some("1.0.1-beta"),
    );
    // Build metadata does not count for precedence.
    check(&pre, "1.0.0+1", &tags(&["1.0.0+1", "1.0.0+2"]), None);
    // Same prefix only; strict SemVer only (two parts or a leading zero are not SemVer).
    check(
        &pre,
        "v1.0.0-beta",
        &tags(&["v1.0.0-beta", "1.5.0", "v1.1", "v01.2.0", "v1.0.0"]),
        Some("v1.0.0"),
    );
    // A suffix that is a valid prerelease is a prerelease, so `-alpine` can move to a release.
    check(
        &pre,
        "1.25.3-alpine",
        &tags(&["1.25.3-alpine", "1.27.0", "1.27.0-alpine"]),
        Some("1.27.0"),
    );
    let patch = PolicySpec {
        prerelease: Some(true),
        update_level: Some(UpdateLevel::Patch),
        ..spec()
    };
    check(
        &patch,
        "1.0.0-rc.1",
        &tags(&["1.0.0-rc.1", "1.0.5-rc.1", "1.1.0"]),
        Some("1.0.5-rc.1"),
    );
    let from_latest = PolicySpec {
        prerelease: Some(true),
        semver_pattern: Some("v*".into()),
        ..spec()
    };
    check(
        &from_latest,
        "latest",
        &tags(&["latest", "v1.0.0", "v2.0.0-rc.1", "1.0.0"]),
        Some("v2.0.0-rc.1"),
    );
}

#[test]
fn glob_takes_the_tag_pushed_last() {
    let g = PolicySpec {
        tag_pattern: Some("staging-*".into()),
        ..spec()
    };
    let list = pushed(&[
        ("staging-aaa", 100),
        ("staging-bbb", 300),
        ("staging-ccc", 200),
        ("prod-x", 900),
    ]);
    check(&g, "staging-aaa", &list, Some("staging-bbb"));
    check(&g, "staging-bbb", &list, None);
    check(&g, "staging-old", &list, Some("staging-bbb")); // unlisted current tag: the newest wins
    check(&g, "latest", &list, Some("staging-bbb"));
    // Equal push times: natural version order breaks the tie.
    let tie = pushed(&[("build-9", 5), ("build-10", 5), ("build-8", 4)]);
    let b = PolicySpec {
        tag_pattern: Some("build-*".into()),
        ..spec()
    };
    check(&b, "build-8", &tie, Some("build-10"));
    // No push times at all: natural order alone.
    check(
        &b,
        "build-8",
        &tags(&["build-8", "build-10", "build-9"]),
        Some("build-10"),
    );
    // The glob matches the whole tag.
    let whole = PolicySpec {
        tag_pattern: Some("staging".into()),
        ..spec()
    };
    check(&whole, "x", &pushed(&[("staging-1", 1)]), None);
}

#[test]
fn regex_searches_and_orders_by_version_group() {
    let r = PolicySpec {
        tag_regex: Some("^staging-[a-f0-9]{7}$".into()),
        ..spec()
    };
    let list = pushed(&[
        ("staging-abc1234", 10),
        ("staging-def5678", 20),
        ("staging-zzz", 30),
        ("x-staging-0000000", 40),
    ]);
    check(&r, "staging-abc1234", &list, Some("staging-def5678"));
    // Unanchored regexes search: `staging` matches anywhere.
    let loose = PolicySpec {
        tag_regex: Some("staging".into()),
        ..spec()
    };
    check(&loose, "staging-abc1234", &list, Some("x-staging-0000000"));
    // With a `version` group, the capture's natural order wins over push time.
    let temurin = PolicySpec {
        tag_regex: Some(r"^17\.0\.(?P<version>\d+_\d+)-jdk$".into()),
        ..spec()
    };
    let builds = tags(&[
        "17.0.9_9-jdk",
        "17.0.10_7-jdk",
        "17.0.8.1_1-jdk",
        "17.0.10_7-jre",
        "21.0.1_12-jdk",
    ]);
    check(&temurin, "17.0.9_9-jdk", &builds, Some("17.0.10_7-jdk"));
    check(&temurin, "17.0.10_7-jdk", &builds, None);
    let late_old = pushed(&[("17.0.9_9-jdk", 900), ("17.0.10_7-jdk", 100)]);
    check(&temurin, "17.0.9_9-jdk", &late_old, Some("17.0.10_7-jdk"));
    // An unlisted current tag still competes by its version.
    check(&temurin, "17.0.11_1-jdk", &builds, None);
}

#[test]
fn digest_stays_on_the_same_tag() {
    let policy = Policy::compile(&spec()).unwrap();
    assert_eq!(policy.kind(), PolicyKind::Digest);
    let sel = policy.select("latest", &tags(&["latest", "2.0"]));
    assert_eq!(sel.outcome, TagChoice::FollowDigest);
    assert_eq!(sel.selected("latest"), Some("latest"));
    let gone = policy.select("latest", &tags(&["2.0"]));
    assert_eq!(gone.selected("latest"), None);
}

#[test]
fn policy_resolution() {
    let kind = |s: PolicySpec| Policy::compile(&s).unwrap().kind();
    assert_eq!(kind(spec()), PolicyKind::Digest);
    assert_eq!(
        kind(PolicySpec {
            tag_pattern: Some("a*".into()),
            ..spec()
        }),
        PolicyKind::Glob
    );
    assert_eq!(
        kind(PolicySpec {
            tag_regex: Some("a".into()),
            tag_pattern: Some("a*".into()),
            ..spec()
        }),
        PolicyKind::Regex
    );
    assert_eq!(
        kind(PolicySpec {
            semver_pattern: Some("v*".into()),
            tag_regex: Some("a".into()),
            ..spec()
        }),
        PolicyKind::Semver
    );
    assert_eq!(
        kind(PolicySpec {
            update_level: Some(UpdateLevel::Minor),
            ..spec()
        }),
        PolicyKind::Semver
    );
    assert_eq!(
        kind(PolicySpec {
            prerelease: Some(false),
            ..spec()
        }),
        PolicyKind::Semver
    );
    assert_eq!(
        kind(PolicySpec {
            policy: Some(PolicyKind::Glob),
            tag_pattern: Some("a*".into()),
            tag_regex: Some("a".into()),
            ..spec()
        }),
        PolicyKind::Glob
    );
}

#[test]
fn compile_reports_every_problem() {
    let bad = PolicySpec {
        policy: Some(PolicyKind::Glob),
        tag_regex: Some("(".into()),
        semver_range: Some(">=banana".into()),
        semver_pattern: Some("[".into()),
        ..spec()
    };
    let problems = Policy::compile(&bad).unwrap_err();
    let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        ["semver_pattern", "tag_regex", "semver_range", "tag_pattern"],
        "{problems:#?}"
    );
    let digest_with_pattern = PolicySpec {
        policy: Some(PolicyKind::Digest),
        tag_pattern: Some("x".into()),
        ..spec()
    };
    assert_eq!(
        Policy::compile(&digest_with_pattern).unwrap_err()[0].field,
        "tag_pattern"
    );
    let regex_without = PolicySpec {
        policy: Some(PolicyKind::Regex),
        ..spec()
    };
    assert!(
        Policy::compile(&regex_without).unwrap_err()[0]
            .message
            .contains("needs a tag_regex")
    );
}

// ---- Real tag histories (tests/fixtures/tags, from the official-images history) ----

fn fixture(image: &str) -> Vec<Tag> {
    let path = format!(
        "{}/tests/fixtures/tags/{image}.tsv",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    taglist::parse_tag_list(&text).unwrap()
}

/// Expected answers derived by hand from the fixture files (`grep`, `sort -V`, push times).
#[test]
fn real_tag_histories() {
    let level = |l| PolicySpec {
        update_level: Some(l),
        ..spec()
    };
    let cases: Vec<(&str, PolicySpec, &str, Option<&str>)> = vec![
        ("nginx", semver(), "1.25.3-alpine", Some("1.31.4-alpine")),
        ("nginx", semver(), "1.25-alpine", Some("1.31-alpine")),
        ("nginx", semver(), "alpine3.19", Some("alpine3.24")),
        (
            "nginx",
            PolicySpec {
                semver_range: Some(">=1.25, <1.26".into()),
                ..spec()
            },
            "1.25.0",
            Some("1.25.5"),
        ),
        ("postgres", level(UpdateLevel::Minor), "15.4", Some("15.19")),
        ("postgres", semver(), "16-alpine", Some("18-alpine")),
        ("node", level(UpdateLevel::Patch), "18.0.0", None),
        ("node", semver(), "latest", Some("26.7.0")),
        (
            "python",
            semver(),
            "3.11.4-slim-bookworm",
            Some("3.14.7-slim-bookworm"),
        ),
        ("redis", semver(), "7.2.4", Some("8.10.1")),
        ("traefik", semver(), "v2.10", Some("v3.7")),
        (
            "traefik",
            PolicySpec {
                prerelease: Some(true),
                update_level: Some(UpdateLevel::Patch),
                ..spec()
            },
            "v3.0.0-rc1",
            Some("v3.0.4"),
        ),
        (
            "traefik",
            PolicySpec {
                prerelease: Some(true),
                ..spec()
            },
            "v3.0.0-rc1",
            Some("v3.7.11"),
        ),
        (
            "rabbitmq",
            PolicySpec {
                tag_regex: Some(r"^(?P<version>3\.\d+\.\d+)-management$".into()),
                ..spec()
            },
            "3.12.0-management",
            Some("3.13.7-management"),
        ),
        ("httpd", level(UpdateLevel::Minor), "2.4.50", Some("2.4.68")),
        // Push-time order: 1.27-alpine and 1.27.0-alpine were first seen together; natural order
        // puts `1.27.0-alpine` last (`.` sorts after `-`).
        (
            "golang",
            PolicySpec {
                tag_pattern: Some("1.2*-alpine".into()),
                ..spec()
            },
            "1.25.13-alpine",
            Some("1.27.0-alpine"),
        ),
    ];
    for (image, spec, current, expect) in &cases {
        check(spec, current, &fixture(image), *expect);
    }
}

#[test]
fn every_fixture_selects_without_panicking() {
    let dir = format!("{}/tests/fixtures/tags", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let image = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let list = fixture(&image);
        assert!(list.len() > 10, "{image} has tags");
        for current in ["latest", &list[0].name, &list[list.len() / 2].name] {
            for spec in [
                semver(),
                PolicySpec {
                    prerelease: Some(true),
                    ..spec()
                },
                PolicySpec {
                    tag_pattern: Some("*".into()),
                    ..spec()
                },
            ] {
                let sel = Policy::compile(&spec).unwrap().select(current, &list);
                if let TagChoice::Update(t) = &sel.outcome {
                    assert!(
                        list.iter().any(|x| &x.name == t),
                        "{image}: {t} comes from the list"
                    );
                }
            }
        }
    }
}

// ---- Properties ----

fn version_tag() -> impl Strategy<Value = String> {
    (
        0u32..4,
        0u32..12,
        0u32..12,
        prop::sample::select(vec!["", "-alpine"]),
    )
        .prop_map(|(a, b, c, s)| format!("{a}.{b}.{c}{s}"))
}

proptest! {
    /// The selection is never smaller than any other candidate of the same shape.
    #[test]
    fn semver_selection_is_maximal(list in prop::collection::vec(version_tag(), 1..40), cur in version_tag()) {
        let tags: Vec<Tag> = list.iter().map(|t| Tag::new(t.clone(), None)).collect();
        let policy = Policy::compile(&semver()).unwrap();
        let c = VersionTag::parse(&cur).unwrap();
        match policy.select(&cur, &tags).outcome {
            TagChoice::Update(t) => {
                let chosen = VersionTag::parse(&t).unwrap();
                prop_assert!(chosen.same_shape(&c));
                prop_assert_eq!(chosen.cmp_parts(&c), Ordering::Greater);
                for other in &list {
                    let o = VersionTag::parse(other).unwrap();
                    if o.same_shape(&c) {
                        prop_assert_ne!(o.cmp_parts(&chosen), Ordering::Greater, "{} > {}", other, t);
                    }
                }
            }
            _ => {
                for other in &list {
                    let o = VersionTag::parse(other).unwrap();
                    prop_assert!(!(o.same_shape(&c) && o.cmp_parts(&c) == Ordering::Greater), "{} was better than {}", other, cur);
                }
            }
        }
    }

    /// Adding a tag older than every other (smaller version / earlier push) never changes the answer.
    #[test]
    fn adding_an_older_tag_changes_nothing(
        list in prop::collection::vec((version_tag(), 10i64..1000), 1..30),
        cur in version_tag(),
        old_suffix in prop::sample::select(vec!["", "-alpine"]),
    ) {
        let tags: Vec<Tag> = list.iter().map(|(t, p)| Tag::new(t.clone(), Some(*p))).collect();
        // Major version 0 with minor/patch 0 is below every generated tag except 0.0.0 itself.
        let older = Tag::new(format!("0.0.0{old_suffix}"), Some(0));
        let mut more = tags.clone();
        more.push(older);
        for spec in [semver(), PolicySpec { tag_pattern: Some("*".into()), ..spec() }] {
            let policy = Policy::compile(&spec).unwrap();
            prop_assert_eq!(policy.select(&cur, &tags).outcome, policy.select(&cur, &more).outcome);
        }
    }

    /// The order the registry lists tags in never changes the answer.
    #[test]
    fn order_does_not_matter(list in prop::collection::vec((version_tag(), 0i64..5), 1..30), cur in version_tag()) {
        let tags: Vec<Tag> = list.iter().map(|(t, p)| Tag::new(t.clone(), Some(*p))).collect();
        let mut rev = tags.clone();
        rev.reverse();
        for spec in [semver(), PolicySpec { tag_pattern: Some("*".into()), ..spec() }] {
            let policy = Policy::compile(&spec).unwrap();
            prop_assert_eq!(policy.select(&cur, &tags).outcome, policy.select(&cur, &rev).outcome);
        }
    }

    /// Natural order is a total order consistent with itself.
    #[test]
    fn natural_order_is_antisymmetric(a in "[a-c0-9._-]{0,8}", b in "[a-c0-9._-]{0,8}") {
        prop_assert_eq!(natural_cmp(&a, &b), natural_cmp(&b, &a).reverse());
    }
}

#[test]
fn tag_exclude_removes_tags_from_every_policy() {
    let list = tags(&["1.2.0", "1.3.0-rc1", "1.3.0", "1.4.0-rc1", "1.4.0-beta"]);
    let exclude = |policy: PolicyKind, pattern: Option<&str>| PolicySpec {
        policy: Some(policy),
        tag_exclude: Some("-(rc|beta)".into()),
        tag_pattern: pattern.map(str::to_owned),
        ..spec()
    };
    // semver keeps the shape anyway; the exclusion also holds for glob's "pushed last".
    check(
        &exclude(PolicyKind::Semver, None),
        "1.2.0",
        &list,
        Some("1.3.0"),
    );
    let pushed = pushed(&[("1.3.0", 1), ("1.4.0-rc1", 3), ("1.4.0-beta", 2)]);
    check(
        &exclude(PolicyKind::Glob, Some("1.*")),
        "1.2.0",
        &pushed,
        Some("1.3.0"),
    );
    let bad = PolicySpec {
        tag_exclude: Some("(".into()),
        ..semver()
    };
    let problems = Policy::compile(&bad).unwrap_err();
    assert_eq!(problems[0].field, "tag_exclude");
}

#[test]
fn a_deeply_nested_regex_is_refused_not_compiled() {
    // The fuzz corpus held a tag_regex of hundreds of nested groups that overflowed a test
    // thread's stack while it compiled.
    let deep = format!("{}x{}", "(".repeat(200), ")".repeat(200));
    for field in ["tag_regex", "tag_exclude"] {
        let spec = PolicySpec {
            tag_regex: (field == "tag_regex").then(|| deep.clone()),
            tag_exclude: (field == "tag_exclude").then(|| deep.clone()),
            ..semver()
        };
        let problems = Policy::compile(&spec).unwrap_err();
        assert_eq!(problems[0].field, field);
        assert!(
            problems[0].message.contains("not a valid regex"),
            "{problems:?}"
        );
    }
    let shallow = PolicySpec {
        tag_regex: Some(format!("{}x{}", "(".repeat(10), ")".repeat(10))),
        ..semver()
    };
    assert!(Policy::compile(&shallow).is_ok());
}
