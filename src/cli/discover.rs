//! `lookout discover [--json]`: what discovery finds on this host — each service with where
//! each of its settings comes from, the containers left out and why — and the `[[services]]`
//! TOML that configures the same services, to paste into the configuration file.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::json;

use crate::discovery::{self, Discovery, Found, Kind};
use crate::runtime::Docker;

pub(super) fn run(config_path: &Path, json: bool, out: &mut dyn Write) -> anyhow::Result<u8> {
    let config = match super::load_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            super::print_error(e);
            return Ok(super::EXIT_FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let found = runtime.block_on(async {
        let docker = Docker::connect().await.map_err(|e| e.to_string())?;
        discovery::scan(&docker, &config).await
    });
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            super::print_error(format_args!("error: {e}"));
            return Ok(super::EXIT_CANNOT_START);
        }
    };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&as_json(&found))?)?;
    } else {
        if !config.discovery.enabled {
            writeln!(
                out,
                "discovery is off in {} ([discovery] enabled = true turns it on); it would find:",
                config_path.display()
            )?;
        }
        write_text(&found, out)?;
    }
    Ok(if found.found.iter().any(|f| !f.problems.is_empty()) {
        super::EXIT_FAILURE
    } else {
        super::EXIT_OK
    })
}

/// `compose service web of project shop` or `standalone container proxy`.
pub(super) fn what(kind: &Kind) -> String {
    match kind {
        Kind::Compose { project, service } => {
            format!("compose service {service} of project {project}")
        }
        Kind::Standalone { container } => format!("standalone container {container}"),
    }
}

/// Each setting that is not a default: `policy = semver (label lookout.policy)`.
pub(super) fn settings(f: &Found) -> Vec<(String, String, String)> {
    let mut out = vec![(
        "action".to_owned(),
        f.action.as_str().to_owned(),
        f.action_source.clone(),
    )];
    for (key, source) in &f.sources {
        let value = f
            .values
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| "(from the configured entry)".to_owned());
        out.push((key.clone(), value, source.clone()));
    }
    out
}

fn write_text(d: &Discovery, out: &mut dyn Write) -> anyhow::Result<()> {
    for f in &d.found {
        writeln!(out, "{}: {}", f.name, what(&f.kind))?;
        writeln!(out, "  containers: {}", f.containers.join(", "))?;
        writeln!(out, "  image:      {}", f.spec.image.familiar())?;
        if let Some(display) = &f.display_name {
            writeln!(out, "  shown as:   {display}")?;
        }
        if !f.depends_on.is_empty() {
            let names: Vec<String> = f
                .depends_on
                .iter()
                .map(|d| format!("{} ({})", d.value, d.label))
                .collect();
            writeln!(out, "  depends on: {}", names.join(", "))?;
        }
        if let Some(entry) = &f.configured {
            writeln!(
                out,
                "  configured: [[services]] {entry:?} wins where it sets a key"
            )?;
        }
        for (key, value, source) in settings(f) {
            writeln!(out, "  {key} = {value}  ({source})")?;
        }
        writeln!(out, "  everything else: default")?;
        for p in &f.problems {
            writeln!(out, "  PROBLEM: {p}")?;
        }
        for c in &f.conflicts {
            writeln!(out, "  conflict: {c}")?;
        }
        for i in &f.ignored {
            writeln!(out, "  ignored label: {i} (no lookout equivalent)")?;
        }
    }
    for l in &d.excluded {
        writeln!(out, "excluded {}: {}", l.container, l.reason)?;
    }
    for l in &d.unmanaged {
        writeln!(out, "cannot manage {}: {}", l.container, l.reason)?;
    }
    writeln!(
        out,
        "{} service(s), {} excluded, {} lookout cannot manage",
        d.found.len(),
        d.excluded.len(),
        d.unmanaged.len()
    )?;
    let entries: Vec<String> = d
        .found
        .iter()
        .filter(|f| f.configured.is_none() && f.problems.is_empty())
        .map(discovery::toml_entry)
        .collect();
    if !entries.is_empty() {
        writeln!(
            out,
            "\n# The same services as configuration (paste into the configuration file; an entry wins over labels):"
        )?;
        for e in entries {
            writeln!(out, "{e}")?;
        }
    }
    Ok(())
}

fn as_json(d: &Discovery) -> serde_json::Value {
    let services: Vec<serde_json::Value> = d
        .found
        .iter()
        .map(|f| {
            let settings: serde_json::Map<String, serde_json::Value> = settings(f)
                .into_iter()
                .map(|(k, v, s)| (k, json!({"value": v, "source": s})))
                .collect();
            json!({
                "name": f.name,
                "what": f.kind,
                "containers": f.containers,
                "image": f.spec.image.familiar(),
                "action": f.action.as_str(),
                "settings": settings,
                "configured": f.configured,
                "problems": f.problems,
                "conflicts": f.conflicts,
                "ignored": f.ignored,
                "depends_on": f.depends_on.iter().map(|d| &d.value).collect::<Vec<_>>(),
                "display_name": f.display_name,
                "toml": (f.configured.is_none() && f.problems.is_empty())
                    .then(|| discovery::toml_entry(f)),
            })
        })
        .collect();
    json!({"services": services, "excluded": d.excluded, "unmanaged": d.unmanaged})
}
