//! Selecting over 100,000 tags: the real histories of 18 official images, repeated with shifted
//! versions until the list holds 100,000 tags (variants, pre-releases and all).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lookout::policy::{Policy, PolicyKind, PolicySpec, Tag, parse_tag_list};

const TARGET: usize = 100_000;

fn tags() -> Vec<Tag> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tags");
    let mut base = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        base.extend(parse_tag_list(&std::fs::read_to_string(path).unwrap()).unwrap());
    }
    let mut out = Vec::with_capacity(TARGET);
    'fill: for round in 0.. {
        for t in &base {
            if out.len() == TARGET {
                break 'fill;
            }
            let name = if round == 0 {
                t.name.clone()
            } else {
                format!("{}{round}.{}", "r", t.name)
            };
            out.push(Tag::new(name, t.pushed.map(|p| p + round)));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let tags = tags();
    assert_eq!(tags.len(), TARGET);
    let cases = [
        (
            "semver",
            PolicySpec {
                policy: Some(PolicyKind::Semver),
                ..Default::default()
            },
            "1.25.3-alpine",
        ),
        (
            "semver_from_latest",
            PolicySpec {
                semver_pattern: Some("v*".into()),
                ..Default::default()
            },
            "latest",
        ),
        (
            "prerelease",
            PolicySpec {
                prerelease: Some(true),
                ..Default::default()
            },
            "v3.0.0-rc1",
        ),
        (
            "glob",
            PolicySpec {
                tag_pattern: Some("*-alpine".into()),
                ..Default::default()
            },
            "1.25.3-alpine",
        ),
        (
            "regex_version",
            PolicySpec {
                tag_regex: Some(r"^(?P<version>\d+\.\d+\.\d+)-alpine$".into()),
                ..Default::default()
            },
            "1.25.3-alpine",
        ),
    ];
    let mut group = c.benchmark_group("select_100k_tags");
    for (name, spec, current) in cases {
        let policy = Policy::compile(&spec).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| policy.select(black_box(current), black_box(&tags)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
