//! The command line: clap definitions and one handler per subcommand.
//!
//! The only module that prints to stdout. Exit codes are the `EXIT_*` constants below (the
//! README's "Exit codes" table lists them).
//!
//! Everything it prints passes through [`crate::redact`]: stdout through a redacting writer,
//! errors through [`print_error`], log lines through the redacting log writer.

mod check;
mod compose;
mod discover;
mod ops;
mod run;
mod tags;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::redact;
use crate::telemetry;

/// The command did what it was asked; every service it touched is fine.
pub(crate) const EXIT_OK: u8 = 0;
/// The command ran and found a problem or failed: an invalid configuration, a failed lookup or
/// check, a failed update or rollback. Also any error not listed below.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// The command line is wrong: an unknown flag or argument, or a service name not in the
/// configuration.
pub(crate) const EXIT_USAGE: u8 = 2;
/// `lookout update` / `lookout rollback`: a change was tried, failed its health gate and was
/// rolled back; the service runs its previous image. Only when nothing worse (code 1) happened.
pub const EXIT_ROLLED_BACK: u8 = 3;
/// lookout could not start working on this host: Docker does not answer, or the state file is
/// locked by another lookout or cannot be opened. Nothing was checked or changed.
pub(crate) const EXIT_CANNOT_START: u8 = 4;

#[derive(Debug, Parser)]
#[command(
    name = "lookout",
    version,
    about = "Keeps compose services on the newest image their owners allow: health-gated, with automatic rollback."
)]
pub struct Cli {
    /// Configuration file (TOML, or JSON such as the Docker Auto-Updater's updater_config.json).
    #[arg(long, short, global = true, env = "LOOKOUT_CONFIG", default_value = config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List an image's live tags and show which one the policy chooses (or read a tag list file).
    Tags(tags::TagsArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Edit compose files the way lookout does: one value, every other byte kept.
    #[command(subcommand)]
    Compose(compose::ComposeCommand),
    /// Run the daemon: check on schedule, update inside maintenance windows.
    Run,
    /// Check every configured service once and show what could be updated.
    Check(JsonFlag),
    /// Run one update pass now (all enabled services, or the ones named).
    Update {
        /// Services to update (configured names); default: all.
        services: Vec<String>,
        /// Check and report what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Update now even outside the maintenance windows.
        #[arg(long)]
        ignore_window: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show what runs, what failed, and any update in flight.
    Status(JsonFlag),
    /// Return a service to the image it ran before its last update.
    Rollback {
        /// The service's configured name.
        service: String,
    },
    /// Check the environment: Docker, compose, files, registries, state folder.
    Doctor(JsonFlag),
    /// Show what discovery finds on this host, where each setting comes from, and the
    /// configuration to paste.
    Discover(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file and list every problem at once (default: --config).
    Validate {
        /// The file to check.
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = redact::Writer::new(stdout.lock());
    let code = match run(cli, &mut out) {
        Ok(code) => code,
        Err(e) => {
            let _ = out.flush();
            print_error(format_args!("error: {e:#}"));
            EXIT_FAILURE
        }
    };
    let _ = out.flush();
    ExitCode::from(code)
}

/// Writes one message to stderr, redacted: the way every command reports an error.
pub(crate) fn print_error(message: impl std::fmt::Display) {
    eprintln!("{}", redact::redact(&message.to_string()));
}

/// Runs one parsed command, writing its report to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    match cli.command {
        Command::Tags(args) => tags::run(&args, out),
        Command::Config(ConfigCommand::Validate { file }) => {
            validate(&file.unwrap_or(cli.config), out)
        }
        Command::Compose(cmd) => compose::run(&cmd, out),
        Command::Run => run::run(&cli.config),
        Command::Check(flags) => check::run(&cli.config, flags.json, out),
        Command::Update {
            services,
            dry_run,
            ignore_window,
            json,
        } => ops::update(&cli.config, services, dry_run, ignore_window, json, out),
        Command::Status(JsonFlag { json }) => ops::status(&cli.config, json, out),
        Command::Rollback { service } => ops::rollback(&cli.config, &service, out),
        Command::Doctor(JsonFlag { json }) => crate::doctor::command(&cli.config, json, out),
        Command::Discover(JsonFlag { json }) => discover::run(&cli.config, json, out),
    }
}

/// Reads the configuration at `path` and starts the command's log with its `log_level` and
/// `log_format` (`LOG_LEVEL`, `LOG_FORMAT` and `LOOKOUT_*` included): the one logger of a
/// one-shot command, set up once the configuration is known. What goes wrong before that is
/// printed through [`print_error`], not logged.
pub(crate) fn load_config(path: &std::path::Path) -> Result<config::Config, config::ConfigError> {
    let config = config::load(path)?;
    if let Err(e) = telemetry::init_logging(config.log_level, config.log_format) {
        print_error(format_args!(
            "warning: {e}; log lines keep the earlier settings"
        ));
    }
    Ok(config)
}

fn validate(path: &std::path::Path, out: &mut dyn Write) -> anyhow::Result<u8> {
    match config::load(path) {
        Ok(c) => {
            for w in &c.warnings {
                writeln!(out, "warning: {w}")?;
            }
            let enabled = c.services.iter().filter(|s| s.enabled).count();
            writeln!(
                out,
                "{}: valid ({} service(s), {enabled} enabled; check every {}s)",
                path.display(),
                c.services.len(),
                c.check_interval.as_secs()
            )?;
            Ok(EXIT_OK)
        }
        Err(e) => {
            print_error(e);
            Ok(EXIT_FAILURE)
        }
    }
}
