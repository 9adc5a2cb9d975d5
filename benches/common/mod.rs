//! What the benchmarks share (benches cannot use `tests/util`): a loopback registry (Debian's
//! `docker-registry`, plain HTTP) and a pusher of tiny one-layer images over the distribution
//! API. Each bench uses part of it.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

/// A running `docker-registry` serving plain HTTP on a loopback port; killed when dropped.
pub(crate) struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub(crate) host: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a registry in a new temporary folder; `extra` is appended to its configuration
/// (e.g. a `notifications:` section).
pub(crate) fn start_registry(extra: &str) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let host = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n{extra}",
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

pub(crate) fn digest_of(bytes: &[u8]) -> String {
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

/// Pushes `repo:tag`, a one-layer image (not runnable: its layer is a line of text); returns
/// its manifest's digest.
pub(crate) async fn push(client: &reqwest::Client, host: &str, repo: &str, tag: &str) -> String {
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
    let digest = digest_of(manifest.as_bytes());
    let r = client
        .put(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", media)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    digest
}

/// A TCP port free on loopback now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
