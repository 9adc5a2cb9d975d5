//! The shared test harness: a scratch folder per test, the real peers (a local registry, the
//! Docker engine) started on loopback, and cleanup that runs also when a test fails.
//!
//! Everything a test creates in Docker carries the label `lookout.test=<run id>` so it can be
//! found and removed; [`Scratch`] and [`LocalRegistry`] clean up in `Drop`.

#![allow(dead_code)] // Each area uses a different part of the harness.

pub(crate) mod browser;
pub(crate) mod compose;
pub(crate) mod daemon;
pub(crate) mod distribution;
pub(crate) mod docker;
pub(crate) mod fake_http;
pub(crate) mod fakes;
pub(crate) mod moto;
pub(crate) mod registry;
pub(crate) mod servers;
pub(crate) mod token;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) use docker::TestImage;
pub(crate) use registry::{LocalRegistry, RegistryAuth};

/// A folder of its own for one test, removed when the test ends (kept when `LOOKOUT_KEEP_SCRATCH`
/// is set, to look at after a failure).
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
    /// A unique id for this test run, used in labels and image names.
    pub id: String,
}

impl Scratch {
    pub(crate) fn new(test: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}-{}-{}",
            sanitize(test),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("lookout-{id}-"))
            .tempdir()
            .expect("create scratch folder");
        Self { dir, id }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating folders) and returns its path.
    pub(crate) fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("LOOKOUT_KEEP_SCRATCH").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("scratch kept at {}", kept.keep().display());
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Runs a command, panicking with its output when it fails; returns stdout.
pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `lookout` binary built for these tests.
pub(crate) fn lookout() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lookout"))
}

/// A file of the repository's `tests/fixtures`.
pub(crate) fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Polls `probe` every 100 ms until it gives a value; fails naming `what` after `timeout`.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Waits, in async code, until `cond` holds: polled every 10 ms, failing naming `what` after 10 s.
pub(crate) async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The value of one metric series (`name{labels}`) in what `t` renders; fails naming it when absent.
pub(crate) fn metric(t: &lookout::telemetry::Telemetry, series: &str) -> f64 {
    let text = t.render_metrics();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}
