//! `lookout compose set-image`: the compose editor by hand, as a diff or a write.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::compose::{EditOptions, PlanOptions, set_image_command};

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Change one service's image, printing the unified diff (and writing it with --write).
    SetImage(SetImageArgs),
}

#[derive(Debug, Args)]
pub struct SetImageArgs {
    /// The compose file.
    #[arg(long, short)]
    pub file: PathBuf,
    /// The service whose image to change.
    #[arg(long, short)]
    pub service: String,
    /// The new image reference, e.g. nginx:1.27.1-alpine.
    #[arg(long, short)]
    pub image: String,
    /// Apply the change (atomically). Without it, only the diff is printed.
    #[arg(long)]
    pub write: bool,
    /// The project's env file holding ${VAR} values (default: .env beside the compose file).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Also change every service that shares the value through an anchor or variable.
    #[arg(long)]
    pub allow_anchor_group: bool,
    /// Pin the digest: write repo:tag@DIGEST.
    #[arg(long, value_name = "sha256:…")]
    pub pin_digest: Option<String>,
}

pub(super) fn run(cmd: &ComposeCommand, out: &mut dyn Write) -> anyhow::Result<u8> {
    let ComposeCommand::SetImage(args) = cmd;
    let opts = PlanOptions {
        edit: EditOptions {
            allow_anchor_group: args.allow_anchor_group,
            pin_digest: args.pin_digest.clone(),
        },
        env_file: args.env_file.clone(),
    };
    match set_image_command(&args.file, &args.service, &args.image, args.write, &opts) {
        Ok(diff) if diff.is_empty() => {
            super::print_error(format_args!(
                "{}: service {:?} already uses {}; nothing to change",
                args.file.display(),
                args.service,
                args.image
            ));
            Ok(0)
        }
        Ok(diff) => {
            out.write_all(diff.as_bytes())?;
            if args.write {
                eprintln!("written");
            }
            Ok(0)
        }
        Err(e) => {
            super::print_error(format_args!("error: {e}"));
            Ok(super::EXIT_FAILURE)
        }
    }
}
