//! The cost of one check cycle at scale, against a local registry (Debian's `docker-registry`
//! on loopback, started here): 10,000 services over 1,000 repositories by default
//! (`CHECK_SCALE_SERVICES`, `CHECK_SCALE_REPOS`), once on the semver policy and once on the
//! digest policy. For each it prints the wall time of the cycle, the registry requests it made
//! by kind, and this process's peak RSS, and fails when a request count is not what the design
//! promises: semver, one tag list per repository and one `HEAD` per distinct candidate; digest,
//! one `HEAD` per distinct reference and nothing else.
//!
//! With `CHECK_SCALE_HOLD=SECONDS` it then keeps the registry up that long and prints the
//! `lookout check` command lines over the same services, to time the whole command from
//! outside (`farm-bench -- lookout check --json --config …`).
//!
//! `cargo bench --bench check_scale`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use lookout::registry::{CheckCycle, Registries, RegistryOptions, check_service};

mod common;
use common::{push, start_registry};

/// This process's peak resident set so far (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `services` services over `repos` repositories: semver services run 1.0.0 (candidate 1.1.0);
/// digest services run `latest` or `stable` by turns of `repos`.
fn config_text(host: &str, services: usize, repos: usize, semver: bool) -> String {
    let mut text = String::new();
    for i in 0..services {
        let repo = i % repos;
        let (tag, policy) = if semver {
            ("1.0.0", "policy = \"semver\"\n")
        } else if (i / repos) % 2 == 0 {
            ("latest", "")
        } else {
            ("stable", "")
        };
        text.push_str(&format!(
            "[[services]]\nname = \"svc{i}\"\nimage = \"{host}/scale/app{repo}:{tag}\"\ncompose_file = \"/c.yml\"\n{policy}\n"
        ));
    }
    text
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let services = env_or("CHECK_SCALE_SERVICES", 10_000);
    let repos = env_or("CHECK_SCALE_REPOS", 1_000);
    let registry = start_registry("");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pushing = Instant::now();
    runtime.block_on(async {
        let client = lookout::tls::client();
        let pushes = (0..repos).flat_map(|r| {
            ["1.0.0", "1.1.0", "latest", "stable"].map(move |t| (format!("scale/app{r}"), t))
        });
        futures_util::stream::iter(pushes)
            .for_each_concurrent(16, |(repo, tag)| {
                let (client, host) = (&client, &registry.host);
                async move {
                    push(client, host, &repo, tag).await;
                }
            })
            .await;
    });
    eprintln!(
        "check_scale: pushed {} images in {:.1} s",
        repos * 4,
        pushing.elapsed().as_secs_f64()
    );
    let before = peak_rss_mib();
    let dir = tempfile::tempdir().unwrap();
    let mut commands = Vec::new();
    for semver in [true, false] {
        let text = config_text(&registry.host, services, repos, semver);
        let path = dir
            .path()
            .join(if semver { "semver.toml" } else { "digest.toml" });
        std::fs::write(&path, &text).unwrap();
        commands.push(format!("lookout check --json --config {}", path.display()));
        let config = lookout::config::from_text(Path::new("scale.toml"), &text, &|_| None).unwrap();
        let registries = Arc::new(Registries::new(RegistryOptions {
            use_docker_config: false,
            ..RegistryOptions::default()
        }));
        let started = Instant::now();
        let ok = runtime.block_on(async {
            let cycle = CheckCycle::new(registries.clone());
            let results = futures_util::future::join_all(
                config
                    .services
                    .iter()
                    .map(|s| check_service(&cycle, s, &s.image)),
            )
            .await;
            results.iter().filter(|r| r.is_ok()).count()
        });
        let elapsed = started.elapsed();
        let stats = registries.stats();
        let (gets, heads) = (
            stats.count(&registry.host, "GET", "200"),
            stats.count(&registry.host, "HEAD", "200"),
        );
        let total = stats.total(&registry.host);
        eprintln!(
            "check_scale: {} policy, {services} services over {repos} repositories: one cycle {:.0} ms, {total} requests ({gets} GET, {heads} HEAD), peak RSS {:.1} MiB (before the cycles {before:.1} MiB)",
            if semver { "semver" } else { "digest" },
            elapsed.as_secs_f64() * 1000.0,
            peak_rss_mib(),
        );
        assert_eq!(ok, services, "every check succeeds");
        if semver {
            // One tag list per repository, one HEAD of 1.1.0 per repository.
            assert_eq!(
                (gets, heads, total),
                (repos as u64, repos as u64, 2 * repos as u64)
            );
        } else {
            // latest and stable of every repository (when there are services for both).
            let refs = repos.min(services) + services.saturating_sub(repos).min(repos);
            assert_eq!((gets, heads, total), (0, refs as u64, refs as u64));
        }
    }
    if let Some(hold) = std::env::var("CHECK_SCALE_HOLD")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        for c in &commands {
            eprintln!("check_scale: {c}");
        }
        std::thread::sleep(Duration::from_secs(hold));
    }
}
