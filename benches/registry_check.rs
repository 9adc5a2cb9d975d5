//! One check cycle of 200 services over 40 repositories against a local registry (Debian's
//! `docker-registry` on loopback, started here): wall time per cycle, and the registry requests
//! one cycle makes (printed once; it must be 40 tag lists + 40 digest HEADs).
//!
//! The registry and the pusher are `benches/common`'s.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use lookout::registry::{CheckCycle, Registries, RegistryOptions, check_service};

mod common;
use common::{push, start_registry};

const SERVICES: usize = 200;
const REPOS: usize = 40;

fn bench(c: &mut Criterion) {
    let registry = start_registry("");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = lookout::tls::client();
        for r in 0..REPOS {
            for t in ["1.0.0", "1.1.0", "1.2.0"] {
                push(&client, &registry.host, &format!("bench/app{r}"), t).await;
            }
        }
    });
    let mut text = String::new();
    for i in 0..SERVICES {
        text.push_str(&format!(
            "[[services]]\nname = \"svc{i}\"\nimage = \"{}/bench/app{}:1.{}.0\"\ncompose_file = \"/c.yml\"\npolicy = \"semver\"\n\n",
            registry.host,
            i % REPOS,
            i % 2
        ));
    }
    let config = lookout::config::from_text(Path::new("bench.toml"), &text, &|_| None).unwrap();
    let options = RegistryOptions {
        use_docker_config: false,
        ..RegistryOptions::default()
    };
    let cycle_once = |registries: Arc<Registries>| {
        let services = &config.services;
        async move {
            let cycle = CheckCycle::new(registries);
            let results = futures_util::future::join_all(
                services.iter().map(|s| check_service(&cycle, s, &s.image)),
            )
            .await;
            assert!(results.iter().all(Result::is_ok));
        }
    };

    // One cycle on a fresh client, to report what a cycle costs in requests and time.
    let registries = Arc::new(Registries::new(options.clone()));
    let started = Instant::now();
    runtime.block_on(cycle_once(registries.clone()));
    let elapsed = started.elapsed();
    let stats = registries.stats();
    eprintln!(
        "registry_check: {SERVICES} services over {REPOS} repositories: one cold cycle took {:.1} ms and made {} requests ({} tag lists, {} manifest HEADs), pulled nothing",
        elapsed.as_secs_f64() * 1000.0,
        stats.total(&registry.host),
        stats.count(&registry.host, "GET", "200"),
        stats.count(&registry.host, "HEAD", "200"),
    );

    let mut group = c.benchmark_group("registry_check");
    group.sample_size(20);
    group.bench_function("200_services_40_repos", |b| {
        // Each iteration is a new cycle (nothing shared between cycles but connections).
        let registries = Arc::new(Registries::new(options.clone()));
        b.iter(|| runtime.block_on(cycle_once(registries.clone())));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
