//! `lookout check`: ask the registries about every enabled service once, and show the result:
//! the configured ones, and with `[discovery]` the host's containers beside them, each with where
//! its settings came from.
//!
//! Until the runtime module reads what runs from Docker, the running reference is the
//! configured image; the candidate's digests are shown, not yet compared with a local image.
//! A registry that fails fails its services only; the exit code is 1 when any did.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use futures_util::StreamExt as _;

use crate::discovery::{self, Found};
use crate::reference::ImageRef;
use crate::registry::{CheckCycle, Registries, RegistryOptions, ServiceCheck, check_service};
use crate::runtime::Docker;

/// How many services' checks run at once (their registry requests are limited per host too).
const CHECKS_AT_ONCE: usize = 64;

pub(super) fn run(config_path: &Path, json: bool, out: &mut dyn Write) -> anyhow::Result<u8> {
    let config = match super::load_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            super::print_error(e);
            return Ok(super::EXIT_FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let registries = Arc::new(Registries::new(RegistryOptions::default()));
    let cycle = CheckCycle::new(registries.clone());
    // With discovery on, the host's containers too, each at the image it runs.
    let discovery = if config.discovery.enabled {
        let scanned = runtime.block_on(async {
            let docker = Docker::connect().await.map_err(|e| e.to_string())?;
            discovery::scan(&docker, &config).await
        });
        match scanned {
            Ok(d) => Some(d),
            Err(e) => {
                super::print_error(format_args!(
                    "error: discovery: {e}; checking the configured services only"
                ));
                None
            }
        }
    } else {
        None
    };
    let all: std::borrow::Cow<'_, [_]> = match &discovery {
        Some(d) => d.services(&config).into(),
        None => config.services.as_slice().into(),
    };
    let found = |name: &str| discovery.as_ref().and_then(|d| d.get(name));
    let services: Vec<_> = all.iter().filter(|s| s.enabled).collect();
    let running: Vec<ImageRef> = services
        .iter()
        .map(|s| {
            found(&s.name)
                .and_then(|f| f.values.get("image"))
                .and_then(|v| v.as_str())
                .and_then(|r| ImageRef::parse(r).ok())
                .unwrap_or_else(|| s.image.clone())
        })
        .collect();
    let results: Vec<Result<ServiceCheck, String>> = runtime.block_on(
        futures_util::stream::iter(services.iter().zip(&running).map(|(s, image)| async {
            match found(&s.name).filter(|f| !f.problems.is_empty()) {
                Some(f) => Err(f.problems.join("; ")),
                None => check_service(&cycle, s, image)
                    .await
                    .map_err(|e| e.to_string()),
            }
        }))
        // In order, CHECKS_AT_ONCE at a time: the registries' own per-host limits pace the
        // requests, and 10,000 services do not hold 10,000 checks in memory at once.
        .buffered(CHECKS_AT_ONCE)
        .collect::<Vec<_>>(),
    );
    let failed = results.iter().filter(|r| r.is_err()).count();
    let stats = registries.stats();
    if json {
        // One document, written a service at a time (one per line, so the redacting writer
        // holds a line, not the whole answer): the same keys, in serde_json's order, as a
        // `{"failed", "requests", "services"}` object would print.
        let requests: u64 = stats.requests.values().sum();
        write!(
            out,
            "{{\"failed\":{failed},\"requests\":{requests},\"services\":["
        )?;
        for (i, (s, r)) in services.iter().zip(&results).enumerate() {
            let mut item = match r {
                Ok(c) => check_json(c),
                Err(e) => serde_json::json!({
                    "service": s.name, "running": s.image.to_string(), "error": e,
                }),
            };
            item["settings"] = settings_json(found(&s.name));
            item["policy"] = serde_json::json!({
                "kind": s.policy.kind().as_str(),
                "source": discovery::policy_source(s, found(&s.name)),
            });
            let sep = if i == 0 { "" } else { "," };
            writeln!(out, "{sep}")?;
            serde_json::to_writer(&mut *out, &item)?;
        }
        writeln!(out, "]}}")?;
    } else {
        for ((s, r), image) in services.iter().zip(&results).zip(&running) {
            match found(&s.name) {
                Some(f) => writeln!(out, "{} ({})", s.name, super::discover::what(&f.kind))?,
                None => writeln!(out, "{} (configured)", s.name)?,
            }
            writeln!(out, "  running:   {image}")?;
            writeln!(
                out,
                "  policy:    {} ({})",
                s.policy.kind().as_str(),
                discovery::policy_source(s, found(&s.name))
            )?;
            if let Some(f) = found(&s.name) {
                let settings: Vec<String> = super::discover::settings(f)
                    .into_iter()
                    .map(|(k, v, source)| format!("{k} = {v} ({source})"))
                    .collect();
                writeln!(out, "  settings:  {}; else default", settings.join(", "))?;
            } else {
                writeln!(out, "  settings:  config; else default")?;
            }
            match r {
                Ok(c) => {
                    match &c.candidate {
                        Some(cand) => writeln!(out, "  candidate: {cand}")?,
                        None => writeln!(out, "  candidate: (none)")?,
                    }
                    if let Some(d) = &c.digests {
                        writeln!(out, "  digest:    {}", d.manifest)?;
                        writeln!(
                            out,
                            "  platform:  {}",
                            d.platform.as_deref().unwrap_or("(not in the index)")
                        )?;
                    }
                    writeln!(out, "  why:       {}", c.selection.reason)?;
                }
                Err(e) => writeln!(out, "  error:     {e}")?,
            }
        }
        let requests: u64 = stats.requests.values().sum();
        writeln!(
            out,
            "{} service(s) checked, {failed} failed, {requests} registry request(s)",
            services.len()
        )?;
    }
    Ok(if failed > 0 {
        super::EXIT_FAILURE
    } else {
        super::EXIT_OK
    })
}

/// Where each setting of a service came from: `config` for a configured one.
fn settings_json(found: Option<&Found>) -> serde_json::Value {
    match found {
        None => serde_json::json!({"source": "config"}),
        Some(f) => super::discover::settings(f)
            .into_iter()
            .map(|(k, v, source)| (k, serde_json::json!({"value": v, "source": source})))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

fn check_json(c: &ServiceCheck) -> serde_json::Value {
    serde_json::json!({
        "service": c.service,
        "running": c.running.to_string(),
        "candidate": c.candidate.as_ref().map(ToString::to_string),
        "digest": c.digests.as_ref().map(|d| &d.manifest),
        "media_type": c.digests.as_ref().map(|d| &d.media_type),
        "platform_digest": c.digests.as_ref().and_then(|d| d.platform.as_ref()),
        "tags": c.tags,
        "candidates": c.selection.candidates,
        "reason": c.selection.reason,
    })
}
