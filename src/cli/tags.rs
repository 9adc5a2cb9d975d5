//! `lookout tags`: show which tag a policy chooses, from a tag list file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::policy::{Policy, PolicyKind, PolicySpec, UpdateLevel, parse_tag_list};

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// Image whose live tags to list (needs registry access; use --from-file for a tag list).
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
    pub fn spec(&self) -> PolicySpec {
        PolicySpec {
            policy: self.policy,
            tag_pattern: self.tag_pattern.clone(),
            tag_regex: self.tag_regex.clone(),
            semver_pattern: self.semver_pattern.clone(),
            semver_range: self.semver_range.clone(),
            update_level: self.update_level,
            prerelease: self.prerelease.then_some(true),
        }
    }
}

pub fn run(args: &TagsArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
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
        eprintln!(
            "lookout tags IMAGE: live registry lookups are not yet implemented in this version; use --from-file FILE"
        );
        return Ok(super::EXIT_USAGE);
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
