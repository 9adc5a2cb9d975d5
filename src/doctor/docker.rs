//! Docker: the engine answers at `DOCKER_HOST`, and which API version it speaks.

use std::fmt::Write as _;
use std::time::Duration;

use super::report::Check;
use crate::runtime::{Docker, RuntimeError};

/// How long a Docker request may take before the engine counts as unreachable.
pub(super) const DOCKER_TIMEOUT: Duration = Duration::from_secs(15);

/// Connects and asks the engine's version, within [`DOCKER_TIMEOUT`].
pub(super) async fn probe_docker(host: &str) -> Result<(Docker, String), RuntimeError> {
    let probe = async {
        let docker = Docker::connect().await?;
        let version = docker.version().await?;
        Ok((docker, version))
    };
    tokio::time::timeout(DOCKER_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| {
            Err(RuntimeError::Connect {
                host: host.to_owned(),
                detail: format!("no answer within {}s", DOCKER_TIMEOUT.as_secs()),
            })
        })
}

/// `found` is the engine's API version and the one lookout speaks with it.
pub(super) fn docker_check(host: &str, found: Result<(&str, String), &RuntimeError>) -> Check {
    match found {
        Ok((engine, speaks)) => {
            let mut detail = format!("reachable at {host}, API {engine}");
            if speaks != engine {
                let _ = write!(detail, " (lookout speaks {speaks})");
            }
            Check::pass("docker", detail)
        }
        Err(e @ RuntimeError::Connect { .. }) => Check::fail(
            "docker",
            e.to_string(),
            format!(
                "is dockerd running (`systemctl status docker`)? Is lookout's user in the docker \
                 group, or the socket mounted into its container (-v /var/run/docker.sock:/var/run/docker.sock)? \
                 Is DOCKER_HOST right (now {host})?"
            ),
        ),
        Err(e) => Check::fail(
            "docker",
            e.to_string(),
            "the engine answered but refused; if a socket proxy sits in between, let it pass \
             /version, /containers, /images and /images/create",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_failures_say_what_to_check() {
        let connect = RuntimeError::Connect {
            host: "unix:///nonexistent.sock".into(),
            detail: "No such file or directory".into(),
        };
        let c = docker_check("unix:///nonexistent.sock", Err(&connect));
        assert!(c.is_failure());
        let fix = c.fix().unwrap();
        assert!(
            fix.contains("is dockerd running") && fix.contains("docker group"),
            "{fix}"
        );
        assert!(
            fix.contains("DOCKER_HOST right (now unix:///nonexistent.sock)"),
            "{fix}"
        );

        let c = docker_check("unix:///var/run/docker.sock", Ok(("1.41", "1.41".into())));
        assert_eq!(
            c.detail(),
            "reachable at unix:///var/run/docker.sock, API 1.41"
        );
        let c = docker_check("tcp://d:2375", Ok(("1.47", "1.45".into())));
        assert_eq!(
            c.detail(),
            "reachable at tcp://d:2375, API 1.47 (lookout speaks 1.45)"
        );
    }
}
