//! `lookout check`: ask the registries about every enabled service once, and show the result.
//!
//! Until the runtime module reads what runs from Docker, the running reference is the
//! configured image; the candidate's digests are shown, not yet compared with a local image.
//! A registry that fails fails its services only; the exit code is 1 when any did.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::registry::{CheckCycle, Registries, RegistryOptions, ServiceCheck, check_service};

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
    let services: Vec<_> = config.services.iter().filter(|s| s.enabled).collect();
    let results = runtime.block_on(futures_util::future::join_all(
        services.iter().map(|s| check_service(&cycle, s, &s.image)),
    ));
    let failed = results.iter().filter(|r| r.is_err()).count();
    let stats = registries.stats();
    if json {
        let items: Vec<serde_json::Value> = services
            .iter()
            .zip(&results)
            .map(|(s, r)| match r {
                Ok(c) => check_json(c),
                Err(e) => serde_json::json!({
                    "service": s.name, "running": s.image.to_string(), "error": e.to_string(),
                }),
            })
            .collect();
        let requests: u64 = stats.requests.values().sum();
        writeln!(
            out,
            "{}",
            serde_json::json!({"services": items, "failed": failed, "requests": requests})
        )?;
    } else {
        for (s, r) in services.iter().zip(&results) {
            writeln!(out, "{}", s.name)?;
            writeln!(out, "  running:   {}", s.image)?;
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
