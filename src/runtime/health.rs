//! The health gate: after `compose up`, is the service's new container healthy on the new image?
//!
//! The rules, in the order [`judge`] applies them to each container of the service:
//!
//! 1. The container must run the expected image id, else [`GateFailure::WrongImage`].
//! 2. It must not have exited ([`GateFailure::Exited`]) or restarted since the gate first saw
//!    it ([`GateFailure::Restarted`]: a higher restart count, a new start time, or `restarting`).
//! 3. With a `HEALTHCHECK`: it must become `healthy`; `unhealthy` fails at once
//!    ([`GateFailure::Unhealthy`], with the last check's output).
//!    Without one: it must stay `running` for the stable period (`health_stable`).
//! 4. With a probe URL: the URL must answer 2xx once the container passed the rules above.
//! 5. All of that within `health_timeout`, else [`GateFailure::TimedOut`] (or
//!    [`GateFailure::Probe`] when only the probe was missing).
//!
//! [`judge`] is pure; [`wait_healthy`] polls the runtime with `tokio::time`, so tests can pause
//! time.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing
    )
)]

use std::collections::HashMap;
use std::time::Duration;

use super::{ContainerInfo, ContainerRuntime, ContainerState, Health};
use crate::error_chain::error_chain;

/// How long to wait, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateOptions {
    /// Give up after this long (`health_timeout`, default 180 s).
    pub timeout: Duration,
    /// A container without a healthcheck must run this long unchanged (`health_stable`,
    /// default 10 s).
    pub stable: Duration,
    /// An HTTP URL that must answer 2xx.
    pub probe_url: Option<String>,
    /// Time between two looks at the container.
    pub poll: Duration,
}

impl Default for GateOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(180),
            stable: Duration::from_secs(10),
            probe_url: None,
            poll: Duration::from_secs(1),
        }
    }
}

/// The outcome of one HTTP probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// The URL answered 2xx.
    Ok { status: u16 },
    /// Another status, or no answer; `detail` says which.
    Failed { detail: String },
}

/// One look at one container, with the probe's answer at that moment when there is a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub container: ContainerInfo,
    /// `None` when no probe is configured or none was tried yet.
    pub probe: Option<ProbeResult>,
}

/// What [`judge`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(GateFailure),
    /// Not there yet; the text says what is awaited, for logs and the timeout message.
    KeepWaiting(String),
}

/// Why an update did not pass the health gate. The engine rolls back on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateFailure {
    #[error("the container became unhealthy; last healthcheck: {log}")]
    Unhealthy { log: String },
    #[error("the container exited{}", code.map_or_else(String::new, |c| format!(" with code {c}")))]
    Exited { code: Option<i64> },
    #[error("the container restarted (restart count {count})")]
    Restarted { count: u64 },
    #[error("the container runs image {found}, not the expected {expected}")]
    WrongImage { expected: String, found: String },
    #[error("the service has no container")]
    NoContainer,
    #[error("not healthy after {}s: {last}", waited.as_secs())]
    TimedOut { waited: Duration, last: String },
    #[error("probe {url} did not answer 2xx: {detail}")]
    Probe { url: String, detail: String },
}

/// Decides from the latest look at a container (`now`), the first look after `up` (`first`)
/// and the time since the gate started, whether the container passed, failed or needs more
/// time. Pure.
pub fn judge(
    now: &Observation,
    first: &ContainerInfo,
    elapsed: Duration,
    expected_image_id: &str,
    opts: &GateOptions,
) -> Verdict {
    let c = &now.container;
    if !same_image(&c.image_id, expected_image_id) {
        return Verdict::Fail(GateFailure::WrongImage {
            expected: expected_image_id.to_owned(),
            found: c.image_id.clone(),
        });
    }
    match c.state {
        ContainerState::Exited | ContainerState::Dead => {
            return Verdict::Fail(GateFailure::Exited { code: c.exit_code });
        }
        ContainerState::Restarting => {
            return Verdict::Fail(GateFailure::Restarted {
                count: c.restart_count,
            });
        }
        _ => {}
    }
    if c.restart_count != first.restart_count
        || (first.started_at.is_some() && c.started_at != first.started_at)
    {
        return Verdict::Fail(GateFailure::Restarted {
            count: c.restart_count,
        });
    }

    // Has the container itself passed? `Err` says what it still waits for.
    let container_ok: Result<(), String> = if c.state != ContainerState::Running {
        Err(format!("{} is {}", c.name, c.state))
    } else if c.has_healthcheck {
        match c.health {
            Some(Health::Healthy) => Ok(()),
            Some(Health::Unhealthy) => {
                return Verdict::Fail(GateFailure::Unhealthy {
                    log: c
                        .health_log
                        .clone()
                        .unwrap_or_else(|| "(no healthcheck output)".into()),
                });
            }
            Some(Health::Starting) | None => Err(format!("{}: health is starting", c.name)),
        }
    } else if elapsed >= opts.stable {
        Ok(())
    } else {
        Err(format!(
            "{} running without healthcheck for {}s of the {}s stable period",
            c.name,
            elapsed.as_secs(),
            opts.stable.as_secs()
        ))
    };

    let waiting_for = match (container_ok, &opts.probe_url) {
        (Ok(()), None) => return Verdict::Pass,
        (Ok(()), Some(url)) => match &now.probe {
            Some(ProbeResult::Ok { .. }) => return Verdict::Pass,
            Some(ProbeResult::Failed { detail }) => {
                if elapsed >= opts.timeout {
                    return Verdict::Fail(GateFailure::Probe {
                        url: redact_url(url),
                        detail: detail.clone(),
                    });
                }
                format!("probe {}: {detail}", redact_url(url))
            }
            None => format!("probe {} not tried yet", redact_url(url)),
        },
        (Err(waiting), _) => waiting,
    };
    if elapsed >= opts.timeout {
        Verdict::Fail(GateFailure::TimedOut {
            waited: elapsed,
            last: waiting_for,
        })
    } else {
        Verdict::KeepWaiting(waiting_for)
    }
}

/// Image ids compare with or without the `sha256:` prefix.
fn same_image(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.strip_prefix("sha256:").unwrap_or(s).to_owned();
    strip(a) == strip(b)
}

/// A URL without its `user:password@`, for messages.
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Waits until every container of `service` in compose project `project` passes [`judge`],
/// looking every `opts.poll`. Returns the first container (by name) that passed, or the first
/// failure. Docker API errors are retried until the timeout; they end as
/// [`GateFailure::TimedOut`] naming the last error.
pub async fn wait_healthy<R: ContainerRuntime>(
    rt: &R,
    project: &str,
    service: &str,
    expected_image_id: &str,
    opts: &GateOptions,
) -> Result<ContainerInfo, GateFailure> {
    let start = tokio::time::Instant::now();
    crate::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(opts.poll.max(Duration::from_secs(2)))
        .build()
        .map_err(|e| GateFailure::Probe {
            url: opts
                .probe_url
                .as_deref()
                .map(redact_url)
                .unwrap_or_default(),
            detail: e.to_string(),
        })?;
    let mut first_seen: HashMap<String, ContainerInfo> = HashMap::new();
    loop {
        let elapsed = start.elapsed();
        let containers = match rt.service_containers(project, service).await {
            Ok(containers) => containers,
            Err(e) => {
                let last = format!("cannot inspect the service's containers: {e}");
                tracing::debug!(project, service, %last, "health gate");
                if elapsed >= opts.timeout {
                    return Err(GateFailure::TimedOut {
                        waited: elapsed,
                        last,
                    });
                }
                tokio::time::sleep(opts.poll).await;
                continue;
            }
        };
        if containers.is_empty() {
            // Gone after being seen, or never there within the timeout.
            if !first_seen.is_empty() || elapsed >= opts.timeout {
                return Err(GateFailure::NoContainer);
            }
            tokio::time::sleep(opts.poll).await;
            continue;
        }

        let probe = match &opts.probe_url {
            Some(url)
                if containers
                    .iter()
                    .all(|c| c.state == ContainerState::Running) =>
            {
                Some(probe(&client, url).await)
            }
            _ => None,
        };
        let mut waiting = Vec::new();
        for container in &containers {
            let first = first_seen
                .entry(container.id.clone())
                .or_insert_with(|| container.clone());
            let now = Observation {
                container: container.clone(),
                probe: probe.clone(),
            };
            match judge(&now, first, elapsed, expected_image_id, opts) {
                Verdict::Pass => {}
                Verdict::Fail(failure) => {
                    tracing::debug!(project, service, container = %container.describe(), %failure, "health gate failed");
                    return Err(failure);
                }
                Verdict::KeepWaiting(why) => waiting.push(why),
            }
        }
        if waiting.is_empty()
            && let Some(passed) = containers.into_iter().next()
        {
            return Ok(passed);
        }
        tracing::debug!(project, service, waiting = %waiting.join("; "), "health gate");
        tokio::time::sleep(opts.poll).await;
    }
}

/// One GET of the probe URL.
async fn probe(client: &reqwest::Client, url: &str) -> ProbeResult {
    match client.get(url).send().await {
        Ok(response) if response.status().is_success() => ProbeResult::Ok {
            status: response.status().as_u16(),
        },
        Ok(response) => ProbeResult::Failed {
            detail: format!("HTTP {}", response.status()),
        },
        Err(e) => ProbeResult::Failed {
            detail: error_chain(&e.without_url()),
        },
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
