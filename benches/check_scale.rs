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
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use lookout::registry::{CheckCycle, Registries, RegistryOptions, check_service};
use sha2::Digest as _;

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

fn start_registry(dir: tempfile::TempDir) -> Registry {
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
    let registry = start_registry(tempfile::tempdir().unwrap());
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
                async move { push(client, host, &repo, tag).await }
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
