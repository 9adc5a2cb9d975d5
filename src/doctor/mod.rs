//! `lookout doctor`: is this host ready for lookout? One line per check, each failure with what
//! to do about it.
//!
//! [`run`] probes the environment the way the daemon would use it — the configuration (and
//! whether the HTTP API it sets is open to the network), Docker, compose, the state folder, the
//! time zone and the maintenance windows, and every enabled service's compose file, container
//! and registry — and returns a list of [`Check`]s. It changes nothing: the state lock is not
//! taken (a running daemon holds it), the only file written is a temporary one in the state
//! folder to prove it writable, and each registry gets one `HEAD` of a manifest.
//!
//! One file per area, each with a `probe_*` that looks (I/O) and pure `*_check` functions that
//! turn what was found into a [`Check`] with its fix text: `config` (with the API exposure),
//! `docker`, `compose` (the program and each compose file), `service` (containers, and the
//! per-service order), `registry`, `state`, `time`. `report` turns the list into text, JSON and
//! the exit code. Secrets never reach a check: registry and config errors carry none, and
//! credentials are described by their user name only.

mod compose;
mod config;
mod discovery;
mod docker;
mod registry;
mod report;
mod service;
mod state;
mod time;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

pub(crate) use report::{Check, exit_code, render_json, render_text};

use crate::config::{Config, ServiceSpec};
use crate::registry::{Registries, RegistryOptions, RetryPolicy};

/// Where the probes look; [`Options::from_env`] is what `lookout doctor` uses.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// `LOOKOUT_COMPOSE_BINARY`: the compose program to use instead of detecting one.
    pub compose_binary: Option<PathBuf>,
    /// `DOCKER_HOST`, for messages (the Docker client reads it itself).
    pub docker_host: String,
    pub registry: RegistryOptions,
}

impl Options {
    pub(crate) fn from_env() -> Self {
        Self {
            compose_binary: std::env::var_os("LOOKOUT_COMPOSE_BINARY").map(PathBuf::from),
            docker_host: std::env::var("DOCKER_HOST")
                .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned()),
            registry: RegistryOptions {
                // One quick answer is what a doctor needs; the daemon retries longer.
                request_timeout: Duration::from_secs(15),
                retry: RetryPolicy {
                    attempts: 2,
                    ..RetryPolicy::default()
                },
                ..RegistryOptions::default()
            },
        }
    }
}

/// Runs every check against the configuration at `config_path`: the configuration first (if it
/// does not load, that is the only check), then the host, then each enabled service.
pub(crate) async fn run(config_path: &Path, options: &Options) -> Vec<Check> {
    let config = match crate::config::load(config_path) {
        Ok(c) => c,
        Err(e) => return vec![config::config_failure(config_path, &e)],
    };
    let mut checks = vec![
        config::config_check(config_path, &config),
        config::api_check(config::ApiExposure::of(&config)),
    ];

    let (docker, compose) = tokio::join!(
        docker::probe_docker(&options.docker_host),
        compose::probe_compose(options.compose_binary.as_deref(), config.compose_timeout),
    );
    checks.push(docker::docker_check(
        &options.docker_host,
        docker.as_ref().map(|(d, v)| (v.as_str(), d.api_version())),
    ));
    checks.push(compose::compose_check(
        options.compose_binary.as_deref(),
        compose
            .as_ref()
            .map(|c| (c.flavor(), c.version(), c.program())),
    ));
    checks.push(state::state_check(&state::probe_state(&config)));
    checks.extend(time_checks(&config));

    let registries = Registries::new(options.registry.clone());
    let services: Vec<&ServiceSpec> = config.services.iter().filter(|s| s.enabled).collect();
    let docker = docker.as_ref().ok().map(|(d, _)| d);
    checks.extend(service::service_checks(&services, docker, compose.as_ref(), &registries).await);
    if let (true, Some(docker)) = (config.discovery.enabled, docker) {
        match crate::discovery::scan(docker, &config).await {
            Ok(found) => checks.extend(discovery::discovery_checks(&found)),
            Err(e) => checks.push(Check::fail(
                "discovery",
                e,
                "lookout lists the engine's containers to discover services; check Docker above",
            )),
        }
    }
    checks
}

/// The time zone, the schedule and the maintenance windows, against this host's zone and clock.
fn time_checks(config: &Config) -> Vec<Check> {
    let system = TimeZone::try_system().map_err(|e| e.to_string());
    let local = system.clone().unwrap_or(TimeZone::UTC);
    let mut checks = vec![time::timezone_check(
        config.timezone.as_ref(),
        system,
        time::uses_local_zone(config),
    )];
    checks.extend(time::schedule_checks(config, &local, Timestamp::now()));
    checks
}

/// `lookout doctor [--json]`: runs the checks and writes the report to `out`; returns the exit
/// code.
pub(crate) fn command(
    config_path: &Path,
    json: bool,
    out: &mut dyn io::Write,
) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let checks = runtime.block_on(run(config_path, &Options::from_env()));
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&render_json(&checks))?
        )?;
    } else {
        write!(out, "{}", render_text(&checks))?;
    }
    Ok(exit_code(&checks))
}

/// The folder a file is in (`.` for a bare file name); `None` for `/`.
fn folder_of(file: &Path) -> Option<&Path> {
    file.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::config::{self, ServiceSpec};

    /// Service `web` (image `ghcr.io/acme/web:1.2`, compose file `/srv/web/compose.yaml`) with
    /// the extra keys in `toml`.
    pub(crate) fn spec(toml: &str) -> ServiceSpec {
        let text = format!(
            "[[services]]\nname = \"web\"\nimage = \"ghcr.io/acme/web:1.2\"\ncompose_file = \"/srv/web/compose.yaml\"\n{toml}"
        );
        let doc = config::parse(&text, config::Format::Toml).unwrap();
        config::validate(&doc, &|_| None)
            .unwrap()
            .services
            .remove(0)
    }
}
