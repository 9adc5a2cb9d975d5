//! One check cycle of 200 services over 40 repositories against a local registry (Debian's
//! `docker-registry` on loopback, started here): wall time per cycle, and the registry requests
//! one cycle makes (printed once; it must be 40 tag lists + 40 digest HEADs).
//!
//! Benches cannot use `tests/util`, so this file has its own small registry starter and pusher.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use lookout::registry::{CheckCycle, Registries, RegistryOptions, check_service};
use sha2::Digest as _;

const SERVICES: usize = 200;
const REPOS: usize = 40;

struct Registry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry() -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("storage").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry is missing: run tests/run");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&host).is_err() {
        assert!(Instant::now() < deadline, "the registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        child,
        host,
        _dir: dir,
    }
}

fn digest_of(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

async fn blob(client: &reqwest::Client, host: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = digest_of(bytes);
    let r = client
        .post(format!("http://{host}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let location = if location.starts_with('/') {
        format!("http://{host}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = client
        .put(format!("{location}{sep}digest={digest}"))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    digest
}

/// Pushes `repo:tag`, a one-layer image.
async fn push(client: &reqwest::Client, host: &str, repo: &str, tag: &str) {
    let content = format!("{repo}:{tag}");
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest_of(content.as_bytes())]}})
    .to_string();
    let config_digest = blob(client, host, repo, config.as_bytes()).await;
    let layer_digest = blob(client, host, repo, content.as_bytes()).await;
    let media = "application/vnd.docker.distribution.manifest.v2+json";
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": media,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": content.len(), "digest": layer_digest}]})
    .to_string();
    let r = client
        .put(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", media)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

fn bench(c: &mut Criterion) {
    let registry = start_registry();
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
