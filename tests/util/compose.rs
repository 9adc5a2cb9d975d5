//! Cleanup guards for tests that create containers through compose or with compose's labels.

use std::path::PathBuf;
use std::process::Command;

use super::docker::remove_labelled;
use super::{Scratch, run};

/// Removes every container and image labelled `lookout.test=<id>` when dropped, also when the
/// test panics.
pub(crate) struct Labelled(pub String);

impl Drop for Labelled {
    fn drop(&mut self) {
        remove_labelled(&self.0);
    }
}

/// Runs `compose down` for a project when dropped, then removes what carries the test's label.
pub(crate) struct ComposeDown {
    /// The compose command: `["docker", "compose"]` or `["/usr/bin/docker-compose"]`.
    pub command: Vec<String>,
    pub files: Vec<PathBuf>,
    pub project_dir: PathBuf,
    pub scratch_id: String,
}

impl Drop for ComposeDown {
    fn drop(&mut self) {
        let mut cmd = Command::new(&self.command[0]);
        cmd.args(&self.command[1..]).current_dir(&self.project_dir);
        for file in &self.files {
            cmd.arg("-f").arg(file);
        }
        let _ = cmd.args(["down", "--timeout", "1"]).output();
        remove_labelled(&self.scratch_id);
    }
}

/// Starts a detached container carrying compose's labels for `project`/`service` (and the test
/// label), as if compose had created it; `extra` goes before the image (`--restart`, `-p`, …).
/// Returns the container id.
pub(crate) fn run_as_service(
    scratch: &Scratch,
    project: &str,
    service: &str,
    image: &str,
    extra: &[&str],
) -> String {
    let out = run(Command::new("docker")
        .args(["run", "-d"])
        .args(["--label", &format!("com.docker.compose.project={project}")])
        .args(["--label", &format!("com.docker.compose.service={service}")])
        .args(["--label", "com.docker.compose.oneoff=False"])
        .args(["--label", &format!("lookout.test={}", scratch.id)])
        .args(extra)
        .arg(image));
    out.trim().to_owned()
}
