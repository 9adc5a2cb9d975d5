//! `lookout tags`: show which tag a policy chooses, from a live registry or a tag list file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::{RegistryKind, RegistrySettings};
use crate::policy::{Policy, PolicyKind, PolicySpec, Tag, UpdateLevel, parse_tag_list};
use crate::reference::ImageRef;
use crate::registry::{Registries, RegistryOptions};

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// Image whose live tags to list, e.g. `nginx:1.27` or `ghcr.io/org/app:v2`; its tag is
    /// the current one unless --current says otherwise.
    pub image: Option<String>,
    /// Read tags from FILE: lines `TAG[<TAB>PUSHED_UNIX_SECONDS]`, `#` comments.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// The tag that runs now (default: the image's tag).
    #[arg(long)]
    pub current: Option<String>,
    #[command(flatten)]
    pub policy: PolicyFlags,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The policy options, named as in the configuration.
#[derive(Debug, Args)]
pub struct PolicyFlags {
    /// digest, semver, glob or regex (default: from the other options, else digest).
    #[arg(long, value_parser = parse_policy)]
    pub policy: Option<PolicyKind>,
    /// Glob over the whole tag (globset syntax), e.g. 'staging-*'.
    #[arg(long)]
    pub tag_pattern: Option<String>,
    /// Regex searched in the tag; a named group `version` orders by version.
    #[arg(long)]
    pub tag_regex: Option<String>,
    /// Regex searched in the tag; matching tags are never candidates, e.g. '-rc'.
    #[arg(long)]
    pub tag_exclude: Option<String>,
    /// Glob filter applied before semver, e.g. 'v*'.
    #[arg(long)]
    pub semver_pattern: Option<String>,
    /// Version requirement on the first three parts, e.g. '>=1.2, <2'.
    #[arg(long)]
    pub semver_range: Option<String>,
    /// major, minor or patch.
    #[arg(long, value_parser = parse_level)]
    pub update_level: Option<UpdateLevel>,
    /// Strict SemVer 2.0 tags with prereleases, ordered by SemVer precedence.
    #[arg(long)]
    pub prerelease: bool,
}

fn parse_policy(s: &str) -> Result<PolicyKind, String> {
    PolicyKind::parse(s).ok_or_else(|| format!("not one of {}", PolicyKind::NAMES.join(", ")))
}

fn parse_level(s: &str) -> Result<UpdateLevel, String> {
    UpdateLevel::parse(s).ok_or_else(|| format!("not one of {}", UpdateLevel::NAMES.join(", ")))
}

impl PolicyFlags {
    pub(crate) fn spec(&self) -> PolicySpec {
        PolicySpec {
            policy: self.policy,
            tag_pattern: self.tag_pattern.clone(),
            tag_regex: self.tag_regex.clone(),
            tag_exclude: self.tag_exclude.clone(),
            semver_pattern: self.semver_pattern.clone(),
            semver_range: self.semver_range.clone(),
            update_level: self.update_level,
            prerelease: self.prerelease.then_some(true),
        }
    }
}

pub(super) fn run(args: &TagsArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let policy = match Policy::compile(&args.policy.spec()) {
        Ok(p) => p,
        Err(problems) => {
            for p in problems {
                eprintln!("error: --{}: {}", p.field.replace('_', "-"), p.message);
            }
            return Ok(super::EXIT_USAGE);
        }
    };
    let Some(file) = &args.from_file else {
        let Some(image) = &args.image else {
            eprintln!("error: give an IMAGE to list its live tags, or --from-file FILE");
            return Ok(super::EXIT_USAGE);
        };
        return live(image, args, &policy, out);
    };
    let Some(current) = args.current.clone() else {
        eprintln!("error: --current TAG is required with --from-file");
        return Ok(super::EXIT_USAGE);
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read tag list {}", file.display()))?;
    let tags = parse_tag_list(&text).with_context(|| format!("tag list {}", file.display()))?;
    let selection = policy.select(&current, &tags);
    let selected = selection.selected(&current);
    if args.json {
        let json = serde_json::json!({
            "current": current,
            "selected": selected,
            "policy": policy.kind().as_str(),
            "candidates": selection.candidates,
            "reason": selection.reason,
        });
        writeln!(out, "{json}")?;
    } else {
        writeln!(out, "current:    {current}")?;
        writeln!(out, "selected:   {}", selected.unwrap_or("(no update)"))?;
        writeln!(out, "policy:     {}", policy.kind())?;
        writeln!(
            out,
            "candidates: {} of {} tags",
            selection.candidates,
            tags.len()
        )?;
        writeln!(out, "why:        {}", selection.reason)?;
    }
    Ok(0)
}

/// Lists `image`'s live tags and shows what the policy chooses. Credentials come from Docker's
/// `config.json`; the registry kind is inferred from the host.
fn live(image: &str, args: &TagsArgs, policy: &Policy, out: &mut dyn Write) -> anyhow::Result<u8> {
    let image = match ImageRef::parse(image) {
        Ok(i) => i,
        Err(e) => {
            super::print_error(format_args!("error: {e}"));
            return Ok(super::EXIT_USAGE);
        }
    };
    let current = args
        .current
        .clone()
        .or_else(|| image.tag().map(str::to_owned))
        .unwrap_or_else(|| "latest".to_owned());
    let kind = RegistryKind::infer(image.registry());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let registries = Registries::new(RegistryOptions::default());
    let lookup = runtime.block_on(async {
        let registry = registries.get(kind, &image, &RegistrySettings::default())?;
        let mut tags = registry.tags(&image).await?;
        tags.sort_by(|a, b| crate::policy::natural_cmp(&a.name, &b.name));
        let selection = policy.select(&current, &tags);
        let digests = match selection.selected(&current) {
            Some(t) => Some(registry.digest(&image.with_tag(t)).await?),
            None => None,
        };
        Ok::<_, crate::registry::RegistryError>((tags, selection, digests))
    });
    let (tags, selection, digests) = match lookup {
        Ok(found) => found,
        Err(e) => {
            super::print_error(format_args!("error: {e}"));
            return Ok(super::EXIT_FAILURE);
        }
    };
    let selected = selection.selected(&current);
    let requests = registries.stats().requests.values().sum::<u64>();
    if args.json {
        let json = serde_json::json!({
            "image": image.to_string(),
            "registry_type": kind.as_str(),
            "tags": tags.iter().map(|t| serde_json::json!({"name": t.name, "pushed": t.pushed.map(rfc3339)})).collect::<Vec<_>>(),
            "current": current,
            "selected": selected,
            "digest": digests.as_ref().map(|d| &d.manifest),
            "platform_digest": digests.as_ref().and_then(|d| d.platform.as_ref()),
            "policy": policy.kind().as_str(),
            "candidates": selection.candidates,
            "reason": selection.reason,
            "requests": requests,
        });
        writeln!(out, "{json}")?;
        return Ok(0);
    }
    writeln!(out, "{} ({}): {} tags", image.name(), kind, tags.len())?;
    for Tag { name, pushed } in &tags {
        match pushed {
            Some(p) => writeln!(out, "  {name:<40} pushed {}", rfc3339(*p))?,
            None => writeln!(out, "  {name}")?,
        }
    }
    writeln!(out, "current:    {current}")?;
    writeln!(out, "selected:   {}", selected.unwrap_or("(no update)"))?;
    if let Some(d) = &digests {
        writeln!(out, "digest:     {}", d.manifest)?;
        if d.platform.as_deref() != Some(d.manifest.as_str()) {
            let platform = registries.options().platform.to_string();
            writeln!(
                out,
                "{platform}: {}",
                d.platform.as_deref().unwrap_or("(not in the index)")
            )?;
        }
    }
    writeln!(out, "policy:     {}", policy.kind())?;
    writeln!(
        out,
        "candidates: {} of {} tags",
        selection.candidates,
        tags.len()
    )?;
    writeln!(out, "why:        {}", selection.reason)?;
    writeln!(out, "requests:   {requests}")?;
    Ok(0)
}

/// Unix seconds as `2024-02-01T12:00:00Z`.
fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}
