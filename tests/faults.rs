//! Fault tests on the real Docker engine: lookout is stopped with `kill -9` at every step of an
//! update (the `failpoints` feature makes it wait at a named point), then a fresh lookout runs.
//! Whatever step the first one died at, the service ends healthy on exactly one of the two
//! images, the compose file holds exactly the old or the new bytes, and the state file says
//! which. A state folder that cannot be written stops an update before it changes anything.

#![cfg(feature = "failpoints")]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::engine::{COMPOSE_TAGGED, Flavor, HEALTHY, Project, UNHEALTHY};
use crate::util::run;

/// The line a lookout built with `failpoints` prints on stderr when it stops at a failpoint.
const REACHED: &str = "lookout failpoint reached:";

/// How long the first lookout may take to reach its failpoint (it pulls and runs `up`).
const REACH_TIMEOUT: Duration = Duration::from_secs(120);

/// Which image the service ends on after the fresh run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// 1.0.0, the image it ran before; the candidate is blocked.
    Old,
    /// 1.1.0, the candidate.
    New,
}

/// The project a case starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// `image: …:1.0.0` with the semver policy; the candidate is `1.1.0` and the update edits
    /// the compose file.
    Semver,
    /// `image: …:latest` following its digest; the candidate is a new push of `latest`, the
    /// compose file never changes and the update moves the local `latest` tag.
    Latest,
}

impl Setup {
    fn compose(self) -> &'static str {
        match self {
            Setup::Semver => COMPOSE_TAGGED,
            Setup::Latest => COMPOSE_LATEST,
        }
    }

    fn tags(self) -> (&'static str, &'static str) {
        match self {
            Setup::Semver => ("1.0.0", "1.1.0"),
            Setup::Latest => ("latest", "latest"),
        }
    }
}

const COMPOSE_LATEST: &str = "services:\n  app:\n    image: {image}:latest\n    network_mode: none\n    restart: \"no\"\n    labels:\n      lookout.test: \"{label}\"\n";

/// What one kill -9 case must end in.
struct Expect {
    setup: Setup,
    /// Dockerfile lines of the candidate 1.1.0 (`HEALTHY` or `UNHEALTHY`).
    candidate: &'static str,
    /// The journal step `lookout status` shows as in flight after the kill (`None`: no
    /// `IN FLIGHT` line, the journal was not written yet).
    in_flight: Option<&'static str>,
    /// The recovery decision the fresh lookout prints for the service (`None`: nothing to
    /// recover).
    recovery: Option<&'static str>,
    /// The result of the fresh run's pass, after recovery.
    pass: &'static str,
    end: End,
    /// The outcomes of the service's history after the fresh run, oldest first.
    history: &'static [&'static str],
}

/// A lookout that is killed (SIGKILL) and reaped when dropped, also when the test fails.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `lookout update --json` with `LOOKOUT_FAILPOINT=failpoint` until it says it reached the
/// failpoint, then kills it with SIGKILL (`Child::kill` on Unix). Returns its stderr so far.
fn run_until_killed(p: &Project, failpoint: &str) -> String {
    let mut child =
        Spawned(p.spawn_lookout(&["update", "--json"], &[("LOOKOUT_FAILPOINT", failpoint)]));
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + REACH_TIMEOUT;
    let mut seen = String::new();
    let marker = format!("{REACHED} {failpoint}");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.trim_end() == marker {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "lookout did not reach failpoint {failpoint} within {}s; stderr:\n{seen}",
                REACH_TIMEOUT.as_secs()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.0.wait().unwrap();
                panic!(
                    "lookout exited ({status}) before reaching failpoint {failpoint}; stderr:\n{seen}"
                );
            }
        }
    }
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
    reader.join().unwrap();
    seen
}

/// Every container of compose service `app` (running or not): `(id, state)`.
fn containers(p: &Project) -> Vec<(String, String)> {
    let out = run(Command::new("docker").args([
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={}", p.project_name()),
        "--filter",
        "label=com.docker.compose.service=app",
        "--format",
        "{{.ID}} {{.State}}",
    ]));
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, state)| (id.to_owned(), state.to_owned()))
        .collect()
}

/// The local image id `reference` points to.
fn image_id(reference: &str) -> String {
    run(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", reference]))
        .trim()
        .to_owned()
}

/// Sets up `app` on a healthy old image, pushes the candidate, kills a lookout at `failpoint`,
/// runs a fresh one and checks the end state against `expect`.
fn check(failpoint: &str, expect: Expect) {
    let (old_tag, new_tag) = expect.setup.tags();
    let mut p = Project::new(
        &format!("faults-{failpoint}-{:?}", expect.setup),
        Flavor::V2,
        expect.setup.compose(),
        match expect.setup {
            Setup::Semver => "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
            Setup::Latest => "image = \"{image}:latest\"\n",
        },
    );
    let id_old = p.push(old_tag, HEALTHY);
    p.up();
    let old_bytes = std::fs::read(&p.compose_file).unwrap();
    let new_bytes = p
        .read(&p.compose_file)
        .replace(&format!(":{old_tag}'"), &format!(":{new_tag}'"))
        .into_bytes();
    // A different image even when the Dockerfile lines are the same.
    let id_new = p.push(new_tag, &format!("{}\nLABEL build=new", expect.candidate));
    assert_ne!(id_old, id_new);
    assert_eq!(
        old_bytes == new_bytes,
        expect.setup == Setup::Latest,
        "only a semver update edits the compose file"
    );

    let killed_stderr = run_until_killed(&p, failpoint);

    // While nothing runs, `lookout status` shows the update the dead process left.
    let (code, status, stderr) = p.lookout(&["status"]);
    assert_eq!(code, 0, "lookout status: {status}\n{stderr}");
    let in_flight: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("IN FLIGHT:"))
        .collect();
    match expect.in_flight {
        None => assert!(in_flight.is_empty(), "{failpoint}: {status}"),
        Some(step) => {
            assert_eq!(in_flight.len(), 1, "{failpoint}: {status}");
            let line = in_flight[0];
            assert!(
                line.starts_with(&format!("IN FLIGHT: app {}:{old_tag}@", p.repo))
                    && line.contains(&format!(" → {}:{new_tag}@", p.repo))
                    && line.contains(&format!(", step {step} since "))
                    && line.ends_with(&format!("({})", p.compose_file.display())),
                "{failpoint}: expected step {step} in {line:?}"
            );
        }
    }

    // A fresh lookout finishes the interrupted update, then does a normal pass.
    let (code, stdout, stderr) = p.lookout(&["update", "--json"]);
    let context = format!(
        "{failpoint}: exit {code}\n--- killed run stderr:\n{killed_stderr}--- fresh run stdout:\n{stdout}\n--- fresh run stderr:\n{stderr}"
    );
    let reports: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON from lookout update ({e}); {context}"));
    assert_eq!(code, 0, "{context}");
    let recovered: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("recovered app: "))
        .collect();
    match expect.recovery {
        None => assert!(recovered.is_empty(), "{context}"),
        Some(decision) => assert!(
            recovered.len() == 1
                && recovered[0].starts_with(&format!("recovered app: {decision}: ")),
            "expected recovery {decision}; {context}"
        ),
    }
    assert_eq!(reports[0]["result"], expect.pass, "{context}");
    if expect.pass == "update_available" {
        let reason = reports[0]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("failed before"),
            "held as blocked; {context}"
        );
    }

    // Exactly one container, running and healthy, on exactly one of the two images.
    let all = containers(&p);
    assert_eq!(all.len(), 1, "one container for app: {all:?}; {context}");
    let (_, image, health) = p.running();
    assert_eq!(health, "running/healthy", "{context}");
    let (want_id, want_bytes, want_tag) = match expect.end {
        End::Old => (&id_old, &old_bytes, old_tag),
        End::New => (&id_new, &new_bytes, new_tag),
    };
    assert_eq!(
        &image, want_id,
        "runs the {:?} image; {context}",
        expect.end
    );
    let file = std::fs::read(&p.compose_file).unwrap();
    assert!(
        &file == want_bytes,
        "the compose file holds the {:?} bytes; it holds:\n{}\n{context}",
        expect.end,
        String::from_utf8_lossy(&file)
    );
    // The tag the compose file names points to the image that runs (for `latest`, the update
    // moved it and a rollback must have moved it back).
    assert_eq!(
        image_id(&format!("{}:{want_tag}", p.repo)),
        *want_id,
        "{context}"
    );

    // The state file agrees: nothing in flight, the running image and the history.
    let state = p.state();
    assert_eq!(state["journal"], serde_json::json!([]), "{state}");
    let app = &state["services"]["app"];
    assert_eq!(app["running"]["tag"], want_tag, "{state}");
    let history: Vec<&str> = app["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["outcome"]["result"].as_str().unwrap())
        .collect();
    assert_eq!(history, expect.history, "{state}");
    let last = app["history"].as_array().unwrap().last().unwrap();
    match expect.end {
        End::New => {
            assert_eq!(last["to"]["tag"], new_tag, "{state}");
            assert_eq!(last["to"]["digest"], app["running"]["digest"], "{state}");
            assert_eq!(app["failed_candidate"], serde_json::Value::Null, "{state}");
        }
        End::Old => {
            assert_eq!(last["from"]["tag"], old_tag, "{state}");
            assert_eq!(last["from"]["digest"], app["running"]["digest"], "{state}");
            let failed = &app["failed_candidate"]["version"];
            assert_eq!(failed["digest"], last["to"]["digest"], "{state}");
            assert_ne!(failed["digest"], app["running"]["digest"], "{state}");
        }
    }
}

/// Killed before anything was journaled: nothing to recover, the fresh pass updates.
#[test]
fn kill_after_pull() {
    check(
        "after_pull",
        Expect {
            setup: Setup::Semver,
            candidate: HEALTHY,
            in_flight: None,
            recovery: None,
            pass: "updated",
            end: End::New,
            history: &["committed"],
        },
    );
}

/// Journaled but nothing changed: the entry is dropped (not blaming the candidate) and the
/// fresh pass updates.
#[test]
fn kill_after_journal() {
    check(
        "after_journal",
        Expect {
            setup: Setup::Semver,
            candidate: HEALTHY,
            in_flight: Some("Planned"),
            recovery: Some("NothingToDo"),
            pass: "updated",
            end: End::New,
            history: &["abandoned", "committed"],
        },
    );
}

/// The file holds the new bytes but the old container runs: recovery restores the old bytes
/// (the candidate proved nothing, so it is not blocked) and the fresh pass updates.
#[test]
fn kill_after_file_write() {
    check(
        "after_file_write",
        Expect {
            setup: Setup::Semver,
            candidate: HEALTHY,
            in_flight: Some("FileWritten"),
            recovery: Some("RollBack"),
            pass: "updated",
            end: End::New,
            history: &["abandoned", "committed"],
        },
    );
}

/// The new container was started: recovery runs the health gate, finds it healthy on the
/// expected image and commits; the pass finds nothing newer.
#[test]
fn kill_after_up() {
    check(
        "after_up",
        Expect {
            setup: Setup::Semver,
            candidate: HEALTHY,
            in_flight: Some("ContainerStarted"),
            recovery: Some("Commit"),
            pass: "up_to_date",
            end: End::New,
            history: &["committed"],
        },
    );
}

/// Killed while waiting for a healthy candidate: recovery's own health gate passes; commit.
#[test]
fn kill_during_health_gate_of_a_healthy_candidate() {
    check(
        "during_health_gate",
        Expect {
            setup: Setup::Semver,
            candidate: HEALTHY,
            in_flight: Some("HealthGate"),
            recovery: Some("Commit"),
            pass: "up_to_date",
            end: End::New,
            history: &["committed"],
        },
    );
}

/// Killed while waiting for an unhealthy candidate: recovery's health gate fails, which proves
/// the candidate bad: it rolls back and blocks it, and the pass does not try it again.
#[test]
fn kill_during_health_gate_of_an_unhealthy_candidate() {
    check(
        "during_health_gate",
        Expect {
            setup: Setup::Semver,
            candidate: UNHEALTHY,
            in_flight: Some("HealthGate"),
            recovery: Some("RollBack"),
            pass: "update_available",
            end: End::Old,
            history: &["rolled_back"],
        },
    );
}

/// Killed while rolling back a candidate that failed its health gate (the file is already
/// restored, the new container still runs): recovery finishes the rollback and blocks it.
#[test]
fn kill_during_rollback() {
    check(
        "during_rollback",
        Expect {
            setup: Setup::Semver,
            candidate: UNHEALTHY,
            in_flight: Some("RollingBack"),
            recovery: Some("RollBack"),
            pass: "update_available",
            end: End::Old,
            history: &["rolled_back"],
        },
    );
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    /// Mounts a `size` tmpfs at `dir`; `Err` with the reason when this host does not allow it.
    fn mount(dir: &'a Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(dir))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).output();
    }
}

/// Writes zeros into `path` until the file system is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = [0u8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                break;
            }
        }
    }
}

/// With the state folder full, `lookout update` cannot journal: it stops before touching the
/// compose file or the container, says which file it could not write, and the previous state
/// file stays as it was.
#[test]
fn a_full_state_folder_stops_the_update_before_it_changes_anything() {
    let mut p = Project::new(
        "faults-full-state",
        Flavor::V2,
        COMPOSE_TAGGED,
        "image = \"{image}:1.0.0\"\npolicy = \"semver\"\n",
    );
    let state_dir = p.scratch.join("state");
    let _tmpfs = Tmpfs::mount(&state_dir, "256k").unwrap_or_else(|reason| {
        panic!(
            "cannot mount a tmpfs at {}: {reason}. This test fills a small file system, which \
             needs root with CAP_SYS_ADMIN (as tests/run runs on CI)",
            state_dir.display()
        )
    });
    let id_old = p.push("1.0.0", HEALTHY);
    p.up();
    let report = p.update();
    assert_eq!(report["result"], "up_to_date", "{report}");
    let state_file = state_dir.join("state.json");
    let state_before = std::fs::read(&state_file).unwrap();
    let compose_before = std::fs::read(&p.compose_file).unwrap();
    let (container_before, _, _) = p.running();

    fill(&state_dir.join("filler"));
    assert!(
        std::fs::write(state_dir.join("probe"), b"x").is_err(),
        "the tmpfs is full"
    );
    let _ = std::fs::remove_file(state_dir.join("probe"));
    let listing = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let files_before = listing(&state_dir);

    p.push("1.1.0", HEALTHY);
    let (code, stdout, stderr) = p.lookout(&["update", "--json"]);
    let context = format!("exit {code}\n{stdout}\n{stderr}");
    assert_eq!(code, 1, "{context}");
    let reports: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let report = &reports[0];
    assert_eq!(report["result"], "failed", "{context}");
    assert_eq!(report["stage"], "journal", "{context}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("cannot write state file {}", state_file.display()))
            && reason.contains("No space left on device"),
        "{context}"
    );

    assert_eq!(std::fs::read(&p.compose_file).unwrap(), compose_before);
    let (container, image, health) = p.running();
    assert_eq!(
        (container.as_str(), image.as_str(), health.as_str()),
        (
            container_before.as_str(),
            id_old.as_str(),
            "running/healthy"
        ),
        "the old container was not touched"
    );
    assert_eq!(
        std::fs::read(&state_file).unwrap(),
        state_before,
        "state intact"
    );
    assert_eq!(
        listing(&state_dir),
        files_before,
        "no temp file left behind"
    );
}

/// The same for a digest-following `latest`: the compose file never changes, so when the
/// rollback is cut off only the local `latest` tag (still on the candidate) and the container
/// tell; recovery moves the tag back and recreates the old container.
#[test]
fn kill_during_rollback_of_a_latest_digest_update() {
    check(
        "during_rollback",
        Expect {
            setup: Setup::Latest,
            candidate: UNHEALTHY,
            in_flight: Some("RollingBack"),
            recovery: Some("RollBack"),
            pass: "update_available",
            end: End::Old,
            history: &["rolled_back"],
        },
    );
}
