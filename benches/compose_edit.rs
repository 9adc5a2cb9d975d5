//! How long the compose editor takes on a large (~1 MB) compose file: locating a service's image,
//! and the full edit (locate, replace, verify with a second parse).

use std::fmt::Write;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lookout::compose::{EditOptions, locate, set_image};

/// A compose file of about `target_bytes`: services with comments, quotes, merge keys, lists.
fn big_compose(target_bytes: usize) -> (String, String) {
    let mut out = String::from(
        "# Generated for the benchmark: many services, comments, anchors.\n\
         x-common: &common\n  restart: unless-stopped\n  logging:\n    driver: json-file\n\n\
         services:\n",
    );
    let mut n = 0;
    while out.len() < target_bytes {
        let quote = ["", "'", "\""][n % 3];
        write!(
            out,
            "  # Service number {n}: façade für Ünïcode ✓\n  svc-{n}:\n    <<: *common\n    \
             image: {quote}registry.example:5000/team/app-{n}:1.{n}.0{quote} # pinned by lookout\n    \
             environment:\n      - MODE=production\n      - INDEX={n}\n    ports:\n      - \"{}:80\"\n    \
             labels: {{team: platform, tier: \"{}\"}}\n\n",
            10000 + n % 50000,
            n % 7
        )
        .unwrap();
        n += 1;
    }
    (out, format!("svc-{}", n - 1))
}

fn bench(c: &mut Criterion) {
    let (text, last) = big_compose(1 << 20);
    let opts = EditOptions::default();
    let mut group = c.benchmark_group(format!("compose_1MiB_{}_services", last));
    group.sample_size(10);
    group.bench_function("locate", |b| {
        b.iter(|| locate(black_box(&text), black_box(&last)).unwrap())
    });
    group.bench_function("set_image", |b| {
        b.iter(|| {
            set_image(
                black_box(&text),
                black_box(&last),
                "registry.example:5000/team/app:9.9.9",
                &opts,
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
