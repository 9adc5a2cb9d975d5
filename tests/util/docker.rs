//! Tiny images built locally: `FROM scratch` plus a static busybox, labelled for cleanup.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Scratch, run};

/// Where Debian's `busybox-static` puts its binary (`tests/run` installs it).
const BUSYBOX: &str = "/bin/busybox";

/// An image built for one test; its tags are removed when it is dropped.
pub(crate) struct TestImage {
    /// Every `name:tag` this image got, removed on drop.
    pub tags: Vec<String>,
    /// The local image id (`sha256:…`).
    pub id: String,
}

impl TestImage {
    /// Builds `FROM scratch` + busybox with extra Dockerfile lines (e.g. `HEALTHCHECK …`, `CMD …`),
    /// a file `/version` holding `version`, and the label `lookout.test=<scratch id>`.
    pub(crate) fn build(scratch: &Scratch, tag: &str, version: &str, extra: &str) -> Self {
        let ctx = scratch.join(&format!("image-build-{}", tag.replace(['/', ':'], "_")));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::copy(busybox(), ctx.join("busybox")).unwrap();
        std::fs::write(ctx.join("version"), version).unwrap();
        let dockerfile = format!(
            // The label comes first so every intermediate image carries it too and
            // `remove_labelled` finds what a failed build left behind.
            "FROM scratch\nLABEL lookout.test={}\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             COPY version /version\nCMD [\"/bin/sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n{extra}\n",
            scratch.id
        );
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        // `--no-cache`: tests build in parallel and remove their images when done; a build that
        // reused another test's cached intermediate image fails when that test removes it
        // ("unknown parent image ID").
        let out = run(Command::new("docker")
            .args(["build", "-q", "--no-cache", "-t", tag])
            .arg(&ctx)
            .env("DOCKER_BUILDKIT", "0"));
        let id = out.trim().to_owned();
        Self {
            tags: vec![tag.to_owned()],
            id,
        }
    }

    /// Tags the image with another name (removed on drop too).
    pub(crate) fn tag(&mut self, tag: &str) {
        run(Command::new("docker").args(["tag", &self.id, tag]));
        self.tags.push(tag.to_owned());
    }

    /// Pushes `tag` and returns the digest the registry reports (`sha256:…`).
    pub(crate) fn push(&self, tag: &str) -> String {
        run(Command::new("docker").args(["push", "-q", tag]));
        repo_digest(tag).unwrap_or_else(|| panic!("{tag} has no repo digest after push"))
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let mut cmd = Command::new("docker");
        cmd.args(["rmi", "-f"]).args(&self.tags);
        let _ = cmd.output();
    }
}

/// The digest Docker recorded for `tag` when it was pushed or pulled, if any.
pub(crate) fn repo_digest(tag: &str) -> Option<String> {
    let repo = tag
        .rsplit_once(':')
        .map_or(tag, |(r, t)| if t.contains('/') { tag } else { r });
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{json .RepoDigests}}", tag])
        .output()
        .ok()?;
    let digests: Vec<String> = serde_json::from_slice(&out.stdout).ok()?;
    digests
        .iter()
        .find_map(|d| d.strip_prefix(&format!("{repo}@")).map(str::to_owned))
}

/// Removes every container and image labelled with this scratch's id (for tests that create
/// containers through compose, whose names the test does not know).
pub(crate) fn remove_labelled(scratch_id: &str) {
    let label = format!("label=lookout.test={scratch_id}");
    remove_listed(&["ps", "-aq", "--filter", &label], &["rm", "-f"]);
    remove_listed(&["images", "-aq", "--filter", &label], &["rmi", "-f"]);
}

/// Runs `docker LIST…` and, when it prints ids, `docker REMOVE… IDS`; errors are ignored (this
/// is cleanup, which must not fail a test).
fn remove_listed(list: &[&str], remove: &[&str]) {
    let Ok(out) = Command::new("docker").args(list).output() else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker").args(remove).args(&ids).output();
    }
}

fn busybox() -> PathBuf {
    let path = Path::new(BUSYBOX);
    assert!(
        path.exists(),
        "{BUSYBOX} is missing: run tests/run, which installs Debian's busybox-static"
    );
    path.to_path_buf()
}

/// A proxy in front of the Docker engine's socket that records the request line of every
/// Engine API call made through it (`GET /v1.45/containers/json?…`). Point `DOCKER_HOST` at
/// [`CountingDocker::host`]. Its threads end with the test process.
pub(crate) struct CountingDocker {
    pub socket: PathBuf,
    calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl CountingDocker {
    pub(crate) fn start(scratch: &Scratch) -> Self {
        use std::os::unix::net::{UnixListener, UnixStream};
        let socket = scratch.join("docker-proxy.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = calls.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                    return;
                };
                let (mut from_engine, mut to_client) =
                    (engine.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_engine, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Write);
                });
                let seen = seen.clone();
                std::thread::spawn(move || record_requests(client, engine, &seen));
            }
        });
        Self { socket, calls }
    }

    pub(crate) fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The request lines so far, without the API version prefix: `GET /containers/json?…`.
    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

/// Copies `client` to `engine`, recording each request line.
fn record_requests(
    mut client: std::os::unix::net::UnixStream,
    mut engine: std::os::unix::net::UnixStream,
    seen: &std::sync::Mutex<Vec<String>>,
) {
    use std::io::{Read, Write};
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if engine.write_all(&buf[..n]).is_err() {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 2);
            let mut words = line.split(' ');
            let (Some(method), Some(path)) = (words.next(), words.next()) else {
                continue;
            };
            if ["GET", "POST", "HEAD", "DELETE", "PUT"].contains(&method) && path.starts_with('/') {
                // `/v1.45/containers/json` → `/containers/json`.
                let path = match path.strip_prefix("/v") {
                    Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
                        rest.find('/').map_or(path, |i| &rest[i..])
                    }
                    _ => path,
                };
                seen.lock().unwrap().push(format!("{method} {path}"));
            }
        }
    }
    let _ = engine.shutdown(std::net::Shutdown::Write);
}
