//! `lookout update`, `lookout rollback` and `lookout status`: operations on the configured
//! services, through the same engine the daemon uses.

use std::io::Write;
use std::path::Path;

use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;

use crate::engine::{
    Engine, PassOptions, RollbackError, ServiceOutcome, ServiceResult, StartError, UpdateResult,
};
use crate::runtime::Docker;
use crate::state::{self, ChangeOutcome, State};

use super::{EXIT_CANNOT_START, EXIT_FAILURE, EXIT_OK, EXIT_ROLLED_BACK, EXIT_USAGE};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Starts the engine and finishes any update an earlier lookout left half done. Webhooks are
/// delivered while the command runs; [`finish`] gives queued ones a moment to go out.
async fn engine(config_path: &Path) -> anyhow::Result<(Engine<Docker>, JoinHandle<()>)> {
    let config = super::load_config(config_path)?;
    let (engine, deliveries) = Engine::start(config).await?;
    let deliveries = tokio::spawn(deliveries.run(std::future::pending()));
    for r in engine.recover().await {
        super::print_error(format_args!(
            "recovered {}: {:?}: {}",
            r.service, r.decision, r.detail
        ));
    }
    Ok((engine, deliveries))
}

/// The exit code of a command whose engine did not start, after saying why.
fn not_started(e: &anyhow::Error) -> u8 {
    super::print_error(format_args!("error: {e:#}"));
    if e.downcast_ref::<StartError>().is_some() {
        EXIT_CANNOT_START
    } else {
        EXIT_FAILURE
    }
}

/// The exit code of a pass: 1 when any service failed, else 3 when any rolled back, else 0.
fn pass_exit_code(outcomes: &[ServiceOutcome]) -> u8 {
    let any = |r: ServiceResult| outcomes.iter().any(|o| o.result == r);
    if outcomes
        .iter()
        .any(|o| o.result.is_problem() && o.result != ServiceResult::RolledBack)
    {
        EXIT_FAILURE
    } else if any(ServiceResult::RolledBack) {
        EXIT_ROLLED_BACK
    } else {
        EXIT_OK
    }
}

/// Closes the engine and waits (at most 10 s) for queued webhooks.
async fn finish(engine: Engine<Docker>, deliveries: JoinHandle<()>) {
    drop(engine);
    let _ = tokio::time::timeout(Duration::from_secs(10), deliveries).await;
}

/// `lookout update [SERVICE…] [--dry-run] [--json]`: one pass now.
pub(super) fn update(
    config_path: &Path,
    services: Vec<String>,
    dry_run: bool,
    ignore_window: bool,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    runtime()?.block_on(async {
        let (engine, deliveries) = match engine(config_path).await {
            Ok(started) => started,
            Err(e) => return Ok(not_started(&e)),
        };
        // Discovered services are known once discovery has looked.
        engine.rediscover().await;
        let config = engine.config();
        if let Some(name) = services.iter().find(|n| engine.service(n).is_none()) {
            let known: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
            super::print_error(format_args!(
                "error: no service {name:?} in {}; configured: {}",
                config_path.display(),
                known.join(", ")
            ));
            return Ok(EXIT_USAGE);
        }
        let (paused, held) = {
            let store = engine.store.lock().expect("state lock");
            (
                config.pause_updates || store.state().paused,
                store.state().paused_services(),
            )
        };
        let opts = PassOptions {
            only: services,
            dry_run,
            actor: "cli".into(),
            paused,
            held,
            respect_windows: !ignore_window,
        };
        let outcomes = engine.pass(&opts).await;
        finish(engine, deliveries).await;
        print_outcomes(&outcomes, json, out)?;
        Ok(pass_exit_code(&outcomes))
    })
}

fn print_outcomes(
    outcomes: &[ServiceOutcome],
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(outcomes)?)?;
        return Ok(());
    }
    if outcomes.is_empty() {
        writeln!(out, "no services configured")?;
    }
    for o in outcomes {
        let change = match (&o.from, &o.to) {
            (Some(from), Some(to)) => format!(" {from} → {to}"),
            (Some(from), None) => format!(" {from}"),
            _ => String::new(),
        };
        writeln!(
            out,
            "{}: {}{change} ({:.1}s){}",
            o.service,
            o.result.as_str().replace('_', " "),
            o.duration.as_secs_f64(),
            o.reason
                .as_deref()
                .map(|r| format!("\n    {r}"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// `lookout rollback SERVICE`.
pub(super) fn rollback(
    config_path: &Path,
    service: &str,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    runtime()?.block_on(async {
        let (engine, deliveries) = match engine(config_path).await {
            Ok(started) => started,
            Err(e) => return Ok(not_started(&e)),
        };
        let result = engine.rollback(service, "cli").await;
        finish(engine, deliveries).await;
        match result {
            Ok(report) => {
                writeln!(
                    out,
                    "{}: {} {} → {} ({:.1}s)",
                    report.service,
                    report.result.as_str().replace('_', " "),
                    report.from,
                    report.to,
                    report.duration.as_secs_f64()
                )?;
                if let Some(reason) = report.result.reason() {
                    writeln!(out, "    {reason}")?;
                }
                Ok(match report.result {
                    UpdateResult::Updated => EXIT_OK,
                    UpdateResult::RolledBack { .. } => EXIT_ROLLED_BACK,
                    UpdateResult::Failed { .. } | UpdateResult::RollbackFailed { .. } => {
                        EXIT_FAILURE
                    }
                })
            }
            Err(e) => {
                super::print_error(format_args!("error: cannot roll back {service:?}: {e}"));
                Ok(match e {
                    RollbackError::UnknownService(_) => EXIT_USAGE,
                    _ => EXIT_FAILURE,
                })
            }
        }
    })
}

/// `lookout status [--json]`: reads the state file without taking its lock, so it works while
/// the daemon runs.
pub(super) fn status(config_path: &Path, json: bool, out: &mut dyn Write) -> anyhow::Result<u8> {
    let config = super::load_config(config_path)?;
    let path = &config.state_file;
    let state = match std::fs::read_to_string(path) {
        Ok(text) => {
            state::parse(&text).with_context(|| format!("state file {}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read state file {}", path.display()));
        }
    };
    if json {
        writeln!(out, "{}", state::render(&state))?;
        return Ok(EXIT_OK);
    }
    writeln!(out, "state: {}", path.display())?;
    // What discovery finds now (read-only: one container list and inspections), for the
    // discovered services and the sources of their settings; without Docker, the state's.
    let discovered = if config.discovery.enabled {
        runtime()?
            .block_on(async {
                let docker = Docker::connect().await.map_err(|e| e.to_string())?;
                crate::discovery::scan(&docker, &config).await
            })
            .map_err(|e| super::print_error(format_args!("discovery: {e}")))
            .ok()
    } else {
        None
    };
    let found = |name: &str| discovered.as_ref().and_then(|d| d.get(name));
    // Configured services first, then the discovered ones (found now, or known from the state).
    let mut names: Vec<(String, &str)> = config
        .services
        .iter()
        .map(|s| (s.name.clone(), if s.enabled { "" } else { " [disabled]" }))
        .collect();
    if config.discovery.enabled {
        let mut others: std::collections::BTreeSet<String> = state
            .services
            .keys()
            .filter(|n| !config.services.iter().any(|s| &s.name == *n))
            .cloned()
            .collect();
        if let Some(d) = &discovered {
            others.extend(
                d.found
                    .iter()
                    .filter(|f| f.configured.is_none())
                    .map(|f| f.name.clone()),
            );
        }
        names.extend(others.into_iter().map(|n| (n, " [discovered]")));
    }
    for (name, tag) in &names {
        let name = name.as_str();
        let s = state.services.get(name);
        let running = s
            .and_then(|s| s.running.as_ref())
            .map_or_else(|| "(not checked yet)".to_owned(), ToString::to_string);
        writeln!(out, "{name}: {running}{tag}")?;
        if let Some(f) = found(name) {
            let settings: Vec<String> = super::discover::settings(f)
                .into_iter()
                .map(|(k, v, source)| format!("{k} = {v} ({source})"))
                .collect();
            writeln!(
                out,
                "    {}: {}; else default",
                super::discover::what(&f.kind),
                settings.join(", ")
            )?;
            for p in &f.problems {
                writeln!(out, "    PROBLEM:     {p}")?;
            }
        } else if config.services.iter().any(|c| c.name == name) {
            writeln!(out, "    settings:    config; else default")?;
        }
        if let Some(s) = s {
            if let Some(t) = s.last_check {
                writeln!(out, "    last check:  {t}")?;
            }
            if let Some(t) = s.last_update {
                writeln!(out, "    last update: {t}")?;
            }
            if let Some(f) = &s.failed_candidate {
                writeln!(out, "    blocked:     {} ({})", f.version, f.reason)?;
            }
            if let Some(h) = s.history.last() {
                let result = match &h.outcome {
                    ChangeOutcome::Committed => "committed".to_owned(),
                    ChangeOutcome::RolledBack { reason } => format!("rolled back: {reason}"),
                    ChangeOutcome::RollbackFailed { reason } => {
                        format!("ROLLBACK FAILED: {reason}")
                    }
                    ChangeOutcome::Abandoned { reason } => format!("abandoned: {reason}"),
                };
                writeln!(out, "    last change: {} → {} ({result})", h.from, h.to)?;
            }
        }
    }
    for entry in &state.journal {
        writeln!(
            out,
            "IN FLIGHT: {} {} → {}, step {:?} since {} ({})",
            entry.intent.service,
            entry.intent.from,
            entry.intent.to,
            entry.step,
            entry.step_at,
            entry.intent.file.path.display()
        )?;
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(results: &[ServiceResult]) -> Vec<ServiceOutcome> {
        results
            .iter()
            .enumerate()
            .map(|(i, r)| ServiceOutcome::new(&format!("s{i}"), *r))
            .collect()
    }

    #[test]
    fn a_pass_exits_1_on_any_failure_else_3_on_a_rollback_else_0() {
        use ServiceResult::*;
        let cases: &[(&[ServiceResult], u8)] = &[
            (&[], EXIT_OK),
            (&[UpToDate, Updated, UpdateAvailable, Skipped], EXIT_OK),
            (&[Updated, RolledBack], EXIT_ROLLED_BACK),
            (&[RolledBack, CheckFailed], EXIT_FAILURE),
            (&[RolledBack, Failed], EXIT_FAILURE),
            (&[RollbackFailed], EXIT_FAILURE),
        ];
        for (results, code) in cases {
            assert_eq!(pass_exit_code(&outcomes(results)), *code, "{results:?}");
        }
    }

    #[test]
    fn results_serialise_as_their_snake_case_names() {
        use ServiceResult::*;
        for r in [
            UpToDate,
            UpdateAvailable,
            Updated,
            RolledBack,
            Failed,
            RollbackFailed,
            CheckFailed,
            Skipped,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        let json = serde_json::to_value(&outcomes(&[RolledBack])[0]).unwrap();
        assert_eq!(json["result"], "rolled_back", "{json}");
    }
}
