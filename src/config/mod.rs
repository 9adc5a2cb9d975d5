//! The one configuration schema: read from TOML or JSON, checked as a whole.
//!
//! [`load`] reads a file and the environment; [`parse`] and [`validate`] are pure. The Docker
//! Auto-Updater's `updater_config.json` loads unchanged and means the same. Settings can be
//! overridden by `LOOKOUT_*` environment variables and by the seed's `.env` names
//! (`CHECK_INTERVAL`, …); `LOOKOUT_*` wins over the seed's name, and both win over the file.
//! Validation reports every problem at once, each with its path and the valid choices.
//!
//! Every duration and count has a valid range ([`limits`]), so no configured value can make
//! lookout's arithmetic overflow. Messages never contain a secret: secret keys' values are never
//! quoted, webhook URLs are shown as scheme and host, syntax errors give the line and column
//! without the line's text, and every problem passes through [`redact`] with the secrets read.

pub mod discovery;
mod fields;
mod files;
pub mod labels;
mod notify;
mod settings;
mod web;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use serde_json::{Map, Value};

use fields::{Ctx, Obj};
pub use fields::{Problem, SubstituteError, format_duration, parse_duration, substitute};
pub use files::{MAX_FILE_BYTES, read_file, read_text};

use crate::policy::{Policy, PolicyKind, PolicySpec, UpdateLevel};
use crate::redact;
use crate::reference::ImageRef;
use crate::schedule::{CronExpr, TimeRange, WeekdaySet, parse_windows};
use crate::secret::Secret;
use crate::telemetry::{LogFormat, LogLevel, NotifySpec, WebhookFormat, WebhookSpec};
pub use discovery::DiscoverySettings;
pub use notify::WATCHTOWER_URLS;
pub use web::WebSettings;

/// Where lookout looks for its configuration when none is given.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/lookout/lookout.toml";
pub use crate::state::DEFAULT_STATE_FILE;
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:9100";

/// The valid range of every duration and count setting. Values outside are refused at
/// validation with the range in the message, so any sum or product lookout forms from them
/// (`compose_timeout + health_timeout`, an `Instant` plus a timeout) stays far from overflow.
pub mod limits {
    use std::ops::RangeInclusive;
    use std::time::Duration;

    const fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }
    const MINUTE: u64 = 60;
    const HOUR: u64 = 3600;
    const DAY: u64 = 86_400;

    pub const CHECK_INTERVAL: RangeInclusive<Duration> = secs(10)..=secs(30 * DAY);
    pub(crate) const CHECK_JITTER: RangeInclusive<Duration> = secs(0)..=secs(DAY);
    pub(crate) const HEALTH_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(6 * HOUR);
    pub(crate) const HEALTH_STABLE: RangeInclusive<Duration> = secs(0)..=secs(HOUR);
    pub const COMPOSE_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(HOUR);
    pub(crate) const CHECK_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(HOUR);
    pub(crate) const WEBHOOK_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(5 * MINUTE);
    pub(crate) const SUMMARY_WAIT: RangeInclusive<Duration> = secs(1)..=secs(HOUR);
    pub(crate) const STATE_BACKUPS: RangeInclusive<u64> = 0..=1000;
    pub(crate) const UPDATE_CONCURRENCY: RangeInclusive<u64> = 1..=64;
    pub const PORT: RangeInclusive<u64> = 1..=65_535;
}

/// The kind of registry a service's image lives in, which picks the adapter that talks to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistryKind {
    DockerHub,
    Ecr,
    Gcr,
    Oci,
}

impl RegistryKind {
    pub(crate) const NAMES: &'static [&'static str] = &["docker_hub", "ecr", "gcr", "oci"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "docker_hub" => Some(Self::DockerHub),
            "ecr" => Some(Self::Ecr),
            "gcr" => Some(Self::Gcr),
            "oci" => Some(Self::Oci),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DockerHub => "docker_hub",
            Self::Ecr => "ecr",
            Self::Gcr => "gcr",
            Self::Oci => "oci",
        }
    }

    /// The kind a registry host implies: `*.dkr.ecr.*.amazonaws.com` is ECR, `gcr.io`,
    /// `*.gcr.io` and `*-docker.pkg.dev` are Google, `docker.io` is Docker Hub, anything else
    /// speaks the OCI distribution API.
    pub fn infer(host: &str) -> Self {
        let name = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        let ecr = name.contains(".dkr.ecr.")
            && (name.ends_with(".amazonaws.com") || name.ends_with(".amazonaws.com.cn"));
        if ecr {
            Self::Ecr
        } else if name == "gcr.io" || name.ends_with(".gcr.io") || name.ends_with("-docker.pkg.dev")
        {
            Self::Gcr
        } else if name == "docker.io" || name == "index.docker.io" || name == "registry-1.docker.io"
        {
            Self::DockerHub
        } else {
            Self::Oci
        }
    }
}

impl fmt::Display for RegistryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service's `registry_config`: credentials and connection settings for its registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySettings {
    /// AWS region (ECR); taken from the host when absent.
    pub region: Option<String>,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<Secret>,
    pub aws_session_token: Option<Secret>,
    /// An API endpoint other than the public one (ECR private endpoints, tests).
    pub endpoint_url: Option<String>,
    /// Google Cloud project (informational; the image path carries it).
    pub project_id: Option<String>,
    /// A Google service-account key file.
    pub service_account_path: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Speak plain HTTP to this registry (loopback registries are always allowed plain HTTP).
    pub insecure: bool,
    /// A PEM file of extra CA certificates to trust for this registry.
    pub ca_file: Option<PathBuf>,
}

/// One service lookout keeps up to date.
///
/// Built from a plain key/value object ([`ServiceSpec::from_object`]), so the same rules apply
/// whether the object came from the configuration file or, later, from container labels.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The name lookout knows the service by (state, metrics, API).
    pub name: String,
    /// The image reference the service runs, as configured.
    pub image: ImageRef,
    /// The compose file that defines the service (any of the project's `-f` files). Optional
    /// when `compose_project` names the project: lookout learns its files from its containers.
    pub compose_file: Option<PathBuf>,
    /// The compose project's name (`com.docker.compose.project`, what `-p` or `name:` gave).
    pub compose_project: Option<String>,
    /// A standalone container (started by `docker run`, not compose), by name: the service
    /// is this container instead of a compose service.
    pub container: Option<String>,
    /// The service's name inside the compose file (defaults to `name`).
    pub compose_service: String,
    /// The Docker Swarm service this is (`swarm_service`): checked from the service spec's
    /// image and updated through Swarm's rolling update (`engine::swarm`). Exclusive with
    /// `compose_file` and `compose_project`.
    pub swarm_service: Option<String>,
    /// The stack file the Swarm service was deployed from (`stack_file`, `docker stack deploy
    /// -c FILE`): an update changes the service's image there too, with the compose editor, so
    /// the next `stack deploy` keeps it. Only with `swarm_service`.
    pub stack_file: Option<PathBuf>,
    /// Update every service whose image the same value decides (a shared variable or anchor)
    /// together, rolling all back when one fails.
    pub group: bool,
    pub registry_type: RegistryKind,
    /// Shared, like the policy: most services have no registry settings of their own.
    pub registry: Arc<RegistrySettings>,
    pub enabled: bool,
    /// The policy as configured, and compiled: each distinct one once per configuration, shared
    /// by every service that has it (see `fields::Ctx::policy`).
    pub policy_spec: Arc<PolicySpec>,
    pub policy: Arc<Policy>,
    pub health_timeout: Duration,
    pub health_stable: Duration,
    /// An HTTP URL that must answer 2xx before the update counts as healthy.
    pub probe_url: Option<String>,
    /// Write `repo:tag@sha256:…` into the compose file.
    pub pin_digest: bool,
    /// Remove the image the service left after a successful update.
    pub cleanup: bool,
    /// Service-specific maintenance windows (the global ones apply when absent).
    pub maintenance_window: Option<Vec<TimeRange>>,
    /// Service-specific days for the windows (the global ones apply when absent).
    pub maintenance_days: Option<WeekdaySet>,
    /// Service-specific time zone for the windows (the global one applies when absent).
    pub timezone: Option<TimeZone>,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub check_interval: Duration,
    pub health_timeout: Duration,
    pub health_stable: Duration,
    pub compose_timeout: Duration,
    /// The longest one service's check (registry requests included) may take.
    pub check_timeout: Duration,
    /// Updates (with their health gates) of independent services that may run at once; 1
    /// runs them one at a time. Services of one compose file are never updated at once.
    pub update_concurrency: usize,
    pub state_file: PathBuf,
    pub state_backups: u64,
    pub state_backup_dir: Option<PathBuf>,
    /// Use a fallback state location when `state_file`'s folder is not writable.
    pub state_fallback: bool,
    /// Address of the HTTP API and `/metrics`.
    pub listen: SocketAddr,
    /// The operator allows a `listen` address beyond loopback without `api_token`.
    pub listen_without_token: bool,
    pub api_token: Option<Secret>,
    /// Secret for registry push hooks (`/hooks/{source}`); hooks are off without it.
    pub hook_secret: Option<Secret>,
    /// The seed's single webhook URL (also the last of [`Config::webhooks`]).
    pub webhook_url: Option<Secret>,
    pub maintenance_window: Option<Vec<TimeRange>>,
    /// Days of the week the windows apply on (`None`: every day).
    pub maintenance_days: Option<WeekdaySet>,
    /// The time zone of windows and the cron `schedule` (`None`: the system's local zone).
    pub timezone: Option<TimeZone>,
    /// A cron expression; when set, checks follow it instead of `check_interval`.
    pub schedule: Option<CronExpr>,
    /// Up to this much random delay is added to each due check.
    pub check_jitter: Duration,
    /// Run a check as soon as lookout starts.
    pub first_check_at_start: bool,
    /// Every webhook endpoint, `webhook_url` (generic format, all events) last.
    pub webhooks: Vec<WebhookSpec>,
    /// Notification channels: `[[notify]]`, then `WATCHTOWER_NOTIFICATION_URL`'s URLs.
    pub notify: Vec<NotifySpec>,
    pub pause_updates: bool,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub cleanup: bool,
    pub pin_digest: bool,
    pub services: Vec<ServiceSpec>,
    /// The web page (`[web]`).
    pub web: WebSettings,
    /// Watching the host's containers by their labels (`[discovery]`).
    pub discovery: DiscoverySettings,
    /// The keys each `[[services]]` entry sets, by service name: where an entry and a
    /// discovered service's labels both set something, the entry wins field by field.
    pub service_keys: std::collections::HashMap<String, Vec<String>>,
    /// `[swarm] enabled`: add every Swarm service of a manager engine.
    pub swarm: SwarmMode,
    /// Things worth knowing that are not errors (an unset `${VAR}`).
    pub warnings: Vec<Problem>,
}

/// Why a configuration could not be used. Messages name the file; they never contain secrets
/// (a syntax error gives the line and column, not the line).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid {format}: {message}")]
    Syntax {
        path: PathBuf,
        format: Format,
        message: String,
    },
    #[error("configuration file {path} has {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The syntax a configuration file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Toml => "TOML",
            Self::Json => "JSON",
        })
    }
}

impl Format {
    /// `.json` files (and text starting with `{`) are JSON; everything else is TOML.
    pub(crate) fn detect(path: &Path, text: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Self::Json,
            Some("toml") => Self::Toml,
            _ if text.trim_start().starts_with('{') => Self::Json,
            _ => Self::Toml,
        }
    }
}

/// Reads, parses and validates the configuration file at `path`, with the process environment.
/// The file must be a regular file of at most [`MAX_FILE_BYTES`]. Every secret value it holds is
/// [remembered](redact::remember), so that nothing lookout prints later shows it.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read_text(path, MAX_FILE_BYTES).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let env = |name: &str| std::env::var(name).ok();
    let (result, secrets) = from_text_with_secrets(path, &text, &env);
    for secret in &secrets {
        redact::remember(secret);
    }
    let config = result?;
    let problems = check_stack_files(&config);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        });
    }
    Ok(config)
}

/// The files `stack_file` names, read when the configuration is loaded (`validate` reads no
/// files): each is a regular compose file that defines the service its `swarm_service` is.
fn check_stack_files(config: &Config) -> Vec<Problem> {
    config
        .services
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let (file, swarm) = (s.stack_file.as_deref()?, s.swarm_service.as_deref()?);
            crate::compose::stack::check(file, swarm)
                .err()
                .map(|message| Problem {
                    path: format!("services[{i}].stack_file"),
                    message,
                })
        })
        .collect()
}

/// Parses and validates `text` (named `path` in messages), with `env` as the environment.
pub fn from_text(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    from_text_with_secrets(path, text, env).0
}

/// [`from_text`], and the secret values the text holds (also when it is invalid).
fn from_text_with_secrets(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Result<Config, ConfigError>, Vec<String>) {
    let format = Format::detect(path, text);
    let doc = match parse(text, format) {
        Ok(doc) => doc,
        Err(message) => {
            let error = ConfigError::Syntax {
                path: path.to_owned(),
                format,
                message,
            };
            return (Err(error), secrets_in_text(text));
        }
    };
    let (config, secrets) = validate_with_secrets(doc, env);
    let config = config.map_err(|problems| ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    });
    (config, secrets)
}

/// Parses TOML or JSON into one document shape. The message of a syntax error gives the line,
/// the column and what is wrong, never the text of the line (it may hold a password).
pub fn parse(text: &str, format: Format) -> Result<Value, String> {
    let message = match format {
        Format::Json => match serde_json::from_str(text) {
            Ok(v) => return Ok(v),
            // serde_json's messages name the place, never the text.
            Err(e) => e.to_string(),
        },
        Format::Toml => match toml::from_str::<Value>(text) {
            Ok(v) => return Ok(v),
            Err(e) => {
                let what = e
                    .message()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
                match e.span() {
                    Some(span) => {
                        let (line, column) = line_and_column(text, span.start);
                        format!("line {line}, column {column}: {what}")
                    }
                    None => what,
                }
            }
        },
    };
    let secrets = secrets_in_text(text);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    Err(redact::redact_with(&message, &secrets).into_owned())
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = (0..=offset.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

/// The values of secret-looking keys in raw configuration text (`password = "…"`,
/// `"api_token": "…"`, an unterminated one too), found line by line: what a syntax error must
/// not show, since the document never parsed.
fn secrets_in_text(text: &str) -> Vec<String> {
    static ASSIGNMENT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(?i)"?[a-z0-9_.\-]*(?:password|secret|token|url)[a-z0-9_.\-]*"?\s*[=:]\s*["']([^"'\r\n]+)"#,
        )
        .expect("assignment pattern")
    });
    ASSIGNMENT
        .captures_iter(text)
        .map(|c| c[1].trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Global settings that environment variables may override: (key, seed `.env` name).
/// Each may also be set as `LOOKOUT_<KEY>`, which wins over the seed's name.
pub(crate) const ENV_OVERRIDES: &[(&str, Option<&str>)] = &[
    ("check_interval", Some("CHECK_INTERVAL")),
    ("health_timeout", Some("HEALTH_TIMEOUT")),
    ("health_stable", Some("HEALTH_STABLE")),
    ("compose_timeout", Some("COMPOSE_TIMEOUT")),
    ("check_timeout", None),
    ("update_concurrency", None),
    ("state_file", None),
    ("state_backups", Some("STATE_BACKUPS")),
    ("state_backup_dir", Some("STATE_BACKUP_DIR")),
    ("state_fallback", None),
    ("listen", None),
    ("listen_without_token", None),
    ("metrics_port", Some("METRICS_PORT")),
    ("api_token", None),
    ("hook_secret", None),
    ("webhook_url", Some("WEBHOOK_URL")),
    ("maintenance_window", Some("MAINTENANCE_WINDOW")),
    ("maintenance_days", None),
    ("timezone", None),
    ("schedule", None),
    ("check_jitter", None),
    ("first_check_at_start", None),
    ("pause_updates", Some("PAUSE_UPDATES")),
    ("log_level", Some("LOG_LEVEL")),
    ("log_format", Some("LOG_FORMAT")),
    ("cleanup", None),
    ("pin_digest", None),
];

/// Validates a parsed document into a [`Config`], or lists every problem.
pub fn validate(doc: &Value, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<Problem>> {
    validate_with_secrets(doc.clone(), env).0
}

/// [`validate`], and every secret value the document holds. Each problem and warning is passed
/// through [`redact::redact_with`] with those values.
fn validate_with_secrets(
    doc: Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Result<Config, Vec<Problem>>, Vec<String>) {
    let ctx = Ctx::new(env);
    let Value::Object(file_map) = doc else {
        let problem = Problem {
            path: "(top level)".into(),
            message: "expected a table / object of settings".into(),
        };
        return (Err(vec![problem]), Vec::new());
    };
    // Environment overrides become ordinary string values, so they are checked like the file's.
    // The document is taken, not copied: for 10,000 services its tree is several megabytes.
    let mut map = file_map;
    let mut overridden = Vec::new();
    for (key, seed) in ENV_OVERRIDES {
        let lookout_name = format!("LOOKOUT_{}", key.to_ascii_uppercase());
        let found = env(&lookout_name)
            .map(|v| (lookout_name.clone(), v))
            .or_else(|| seed.and_then(|s| env(s).map(|v| (s.to_owned(), v))));
        if let Some((name, value)) = found
            .map(|(n, v)| (n, strip_inline_comment(&v)))
            .filter(|(_, v)| !v.is_empty())
        {
            map.insert((*key).to_owned(), Value::String(value));
            overridden.push((*key, name));
        }
    }
    let taken: Vec<&str> = overridden.iter().map(|(k, _)| *k).collect();
    let watchtower = discovery::watchtower_env(env, &mut map, &taken, &mut |name, message| {
        ctx.warn(name, message);
    });
    overridden.extend(watchtower);
    let config = read_config(&ctx, &map);
    let secrets = ctx.secrets.into_inner();
    let masks: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let clean = |mut p: Problem| {
        p.message = redact::redact_with(&p.message, &masks).into_owned();
        p
    };
    let mut problems: Vec<Problem> = ctx.problems.into_inner().into_iter().map(clean).collect();
    for p in &mut problems {
        if let Some((_, name)) = overridden.iter().find(|(k, _)| p.path == *k) {
            p.path = format!("{} (from environment variable {name})", p.path);
        }
    }
    let result = match config {
        Some(mut c) if problems.is_empty() => {
            c.warnings = ctx.warnings.into_inner().into_iter().map(clean).collect();
            Ok(c)
        }
        _ => Err(problems),
    };
    (result, secrets)
}

/// `INFO   # DEBUG|INFO` → `INFO`: systemd's `EnvironmentFile=` keeps such comments in the value,
/// and the seed's `.env` has them.
fn strip_inline_comment(value: &str) -> String {
    let b = value.as_bytes();
    let cut = (1..b.len()).find(|&i| b[i] == b'#' && matches!(b[i - 1], b' ' | b'\t'));
    let value = cut.map_or(value, |i| &value[..i]);
    value.trim().to_owned()
}

/// Reads the top-level settings in a fixed order (so problems are listed in that order), then
/// the services, then reports the keys nobody asked for.
fn read_config(ctx: &Ctx<'_>, map: &Map<String, Value>) -> Option<Config> {
    let mut top = Obj::new(ctx, String::new(), map);
    let timing = read_timing(&mut top);
    let state = read_state_settings(&mut top);
    let api = read_api(&mut top, map);
    let webhook_url = top.url("webhook_url", true);
    let when = read_when(&mut top, timing.check_interval);
    let webhooks = read_webhooks(&mut top, webhook_url.as_deref());
    let notify = notify::read_notify(&mut top);
    let pause_updates = top.bool("pause_updates").unwrap_or(false);
    let log_level = top
        .choice("log_level", LogLevel::NAMES, LogLevel::parse)
        .unwrap_or(LogLevel::Info);
    let log_format = top
        .choice("log_format", LogFormat::NAMES, LogFormat::parse)
        .unwrap_or(LogFormat::Plain);
    let cleanup = top.bool("cleanup").unwrap_or(false);
    let pin_digest = top.bool("pin_digest").unwrap_or(false);
    let defaults = ServiceDefaults {
        health_timeout: timing.health_timeout,
        health_stable: timing.health_stable,
        cleanup,
        pin_digest,
    };
    let service_keys = service_keys(map);
    let services = read_services(&mut top, &defaults);
    let web = web::read_web(&mut top);
    let discovery = discovery::read_discovery(&mut top);
    let swarm = read_swarm(&mut top);
    top.finish();
    Some(Config {
        check_interval: timing.check_interval,
        health_timeout: timing.health_timeout,
        health_stable: timing.health_stable,
        compose_timeout: timing.compose_timeout,
        check_timeout: timing.check_timeout,
        update_concurrency: timing.update_concurrency,
        state_file: state.file,
        state_backups: state.backups,
        state_backup_dir: state.backup_dir,
        state_fallback: state.fallback,
        listen: api.listen,
        listen_without_token: api.listen_without_token,
        api_token: api.api_token,
        hook_secret: api.hook_secret,
        webhook_url: webhook_url.map(Secret::new),
        maintenance_window: when.maintenance_window,
        maintenance_days: when.maintenance_days,
        timezone: when.timezone,
        schedule: when.schedule,
        check_jitter: when.check_jitter,
        first_check_at_start: when.first_check_at_start,
        webhooks,
        notify,
        pause_updates,
        log_level,
        log_format,
        cleanup,
        pin_digest,
        service_keys: services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    s.name.clone(),
                    service_keys.get(i).cloned().unwrap_or_default(),
                )
            })
            .collect(),
        services,
        web,
        discovery,
        swarm,
        warnings: Vec::new(),
    })
}

/// How often lookout checks and how long each step may take.
struct Timing {
    check_interval: Duration,
    health_timeout: Duration,
    health_stable: Duration,
    compose_timeout: Duration,
    check_timeout: Duration,
    update_concurrency: usize,
}

fn read_timing(top: &mut Obj<'_, '_>) -> Timing {
    let check_interval = top
        .duration_in(
            "check_interval",
            limits::CHECK_INTERVAL,
            " (checks every few seconds burn registry rate limits: use registry push hooks for fast updates)",
        )
        .unwrap_or(Duration::from_secs(3600));
    let health_timeout = top
        .duration_in("health_timeout", limits::HEALTH_TIMEOUT, "")
        .unwrap_or(Duration::from_secs(180));
    let health_stable = top
        .duration_in("health_stable", limits::HEALTH_STABLE, "")
        .unwrap_or(Duration::from_secs(10));
    let compose_timeout = top
        .duration_in("compose_timeout", limits::COMPOSE_TIMEOUT, "")
        .unwrap_or(Duration::from_secs(120));
    let check_timeout = top
        .duration_in("check_timeout", limits::CHECK_TIMEOUT, "")
        .unwrap_or(DEFAULT_CHECK_TIMEOUT);
    let update_concurrency = top
        .uint_in("update_concurrency", limits::UPDATE_CONCURRENCY)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(1);
    Timing {
        check_interval,
        health_timeout,
        health_stable,
        compose_timeout,
        check_timeout,
        update_concurrency,
    }
}

/// Where the state file and its backups live.
struct StateSettings {
    file: PathBuf,
    backups: u64,
    backup_dir: Option<PathBuf>,
    fallback: bool,
}

fn read_state_settings(top: &mut Obj<'_, '_>) -> StateSettings {
    StateSettings {
        file: top
            .string("state_file")
            .map_or_else(|| PathBuf::from(DEFAULT_STATE_FILE), PathBuf::from),
        backups: top
            .uint_in("state_backups", limits::STATE_BACKUPS)
            .unwrap_or(5),
        backup_dir: top.string("state_backup_dir").map(PathBuf::from),
        fallback: top.bool("state_fallback").unwrap_or(false),
    }
}

/// The HTTP API's address and the secrets that guard it.
struct ApiSettings {
    listen: SocketAddr,
    listen_without_token: bool,
    api_token: Option<Secret>,
    hook_secret: Option<Secret>,
}

/// Reads `listen`, `metrics_port`, `listen_without_token`, `api_token` and `hook_secret`, and
/// refuses an API reachable from other hosts without a token, and short tokens. `map` is the
/// raw document, to tell an empty `api_token` from a missing one.
fn read_api(top: &mut Obj<'_, '_>, map: &Map<String, Value>) -> ApiSettings {
    let ctx = top.ctx;
    let mut listen: SocketAddr = DEFAULT_LISTEN
        .parse()
        .expect("default listen address parses");
    if let Some(s) = top.string("listen") {
        match s.parse() {
            Ok(addr) => listen = addr,
            Err(_) => ctx.problem(
                top.at("listen"),
                format!("{s:?} is not an address such as \"127.0.0.1:9100\""),
            ),
        }
    }
    if let Some(port) = top.uint_in("metrics_port", limits::PORT) {
        listen.set_port(u16::try_from(port).unwrap_or(DEFAULT_PORT));
    }
    let listen_without_token = top.bool("listen_without_token").unwrap_or(false);
    let api_token = top.secret("api_token");
    if api_token.is_none() && !listen_without_token && !is_loopback(listen) {
        let why = if map.get("api_token").is_some_and(|v| !v.is_null()) {
            "api_token is empty (is the environment variable it names set?)"
        } else {
            "no api_token is set"
        };
        ctx.problem(
            top.at("listen"),
            format!(
                "{listen} is reachable from other hosts and {why}: anyone who can \
                 reach it reads the API and /metrics and can send hooks. Set api_token = \
                 \"${{LOOKOUT_API_TOKEN}}\" with a long random value in LOOKOUT_API_TOKEN \
                 (openssl rand -hex 32), or listen on 127.0.0.1, or allow it knowingly with \
                 listen_without_token = true (environment: LOOKOUT_LISTEN_WITHOUT_TOKEN=true)"
            ),
        );
    }
    if api_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
        ctx.problem(
            top.at("api_token"),
            "is shorter than 16 characters; use a long random token (e.g. `openssl rand -hex 32`)",
        );
    }
    let hook_secret = top.secret("hook_secret");
    if hook_secret.as_ref().is_some_and(|t| t.expose().len() < 16) {
        ctx.problem(
            top.at("hook_secret"),
            "is shorter than 16 characters; use a long random secret (e.g. `openssl rand -hex 32`)",
        );
    }
    ApiSettings {
        listen,
        listen_without_token,
        api_token,
        hook_secret,
    }
}

/// When checks run and when changes are allowed.
struct When {
    maintenance_window: Option<Vec<TimeRange>>,
    maintenance_days: Option<WeekdaySet>,
    timezone: Option<TimeZone>,
    schedule: Option<CronExpr>,
    check_jitter: Duration,
    first_check_at_start: bool,
}

/// Reads the windows, the time zone, the cron `schedule` and the jitter, whose default
/// depends on the schedule and on `check_interval`.
fn read_when(top: &mut Obj<'_, '_>, check_interval: Duration) -> When {
    let maintenance_window = windows(top, "maintenance_window");
    let maintenance_days = weekdays(top, "maintenance_days");
    let timezone = timezone(top, "timezone");
    let schedule = top.string("schedule").and_then(|s| {
        CronExpr::parse(&s)
            .map_err(|e| top.ctx.problem(top.at("schedule"), e))
            .ok()
    });
    let check_jitter = top
        .duration_in("check_jitter", limits::CHECK_JITTER, "")
        .unwrap_or_else(|| {
            if schedule.is_some() {
                Duration::ZERO
            } else {
                (check_interval / 10).min(Duration::from_secs(300))
            }
        });
    When {
        maintenance_window,
        maintenance_days,
        timezone,
        schedule,
        check_jitter,
        first_check_at_start: top.bool("first_check_at_start").unwrap_or(true),
    }
}

/// The `webhooks` endpoints, and the seed's single `webhook_url` (generic format, all events)
/// last.
fn read_webhooks(top: &mut Obj<'_, '_>, webhook_url: Option<&str>) -> Vec<WebhookSpec> {
    let mut webhooks: Vec<WebhookSpec> = top
        .objects("webhooks")
        .into_iter()
        .filter_map(read_webhook)
        .collect();
    if let Some(url) = webhook_url {
        webhooks.push(WebhookSpec {
            url: url.to_owned(),
            events: None,
            secret: None,
            format: WebhookFormat::Generic,
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
        });
    }
    webhooks
}

/// The keys of each `[[services]]` entry, in file order.
fn service_keys(map: &Map<String, Value>) -> Vec<Vec<String>> {
    let Some(Value::Array(items)) = map.get("services") else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| match item {
            Value::Object(o) => o
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k.clone())
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// Every service that reads cleanly, and a problem for each name used twice.
fn read_services(top: &mut Obj<'_, '_>, defaults: &ServiceDefaults) -> Vec<ServiceSpec> {
    let ctx = top.ctx;
    let objects = top.objects("services");
    // Sized once: a service is about a kilobyte, and a doubling Vec of 10,000 would hold
    // twice that and copy it while it grows.
    let mut services = Vec::with_capacity(objects.len());
    let mut seen = std::collections::HashMap::with_capacity(objects.len());
    for (i, obj) in objects.into_iter().enumerate() {
        let Some(s) = ServiceSpec::from_object(obj, defaults) else {
            continue;
        };
        if let Some(first) = seen.insert(s.name.clone(), i) {
            ctx.problem(
                format!("services[{i}].name"),
                format!(
                    "{:?} is already the name of services[{first}]; names must be unique",
                    s.name
                ),
            );
        }
        services.push(s);
    }
    services
}

fn windows(obj: &mut Obj<'_, '_>, key: &'static str) -> Option<Vec<TimeRange>> {
    let s = obj.string(key)?;
    parse_windows(&s)
        .map_err(|e| obj.ctx.problem(obj.at(key), e))
        .ok()
}

/// Days of the week: `"mon-fri"`, `"sat,sun"` or `["mon", "tue"]`.
fn weekdays(obj: &mut Obj<'_, '_>, key: &'static str) -> Option<WeekdaySet> {
    let list = string_list(obj, key)?;
    match WeekdaySet::parse(&list.join(",")) {
        Ok(set) if !set.is_empty() => Some(set),
        Ok(_) => {
            obj.ctx
                .problem(obj.at(key), "names no day; leave it out for every day");
            None
        }
        Err(e) => {
            obj.ctx.problem(obj.at(key), e);
            None
        }
    }
}

/// An IANA time zone name; `"local"` means the system's zone (the same as leaving it out).
fn timezone(obj: &mut Obj<'_, '_>, key: &'static str) -> Option<TimeZone> {
    let name = obj.string(key)?;
    if name.trim().eq_ignore_ascii_case("local") {
        return None;
    }
    TimeZone::get(name.trim())
        .map_err(|_| {
            obj.ctx.problem(
                obj.at(key),
                format!("{name:?} is not an IANA time zone: write a name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\", or \"local\""),
            )
        })
        .ok()
}

/// A list of strings, or one comma-separated string (as environment variables bring it).
fn string_list(obj: &mut Obj<'_, '_>, key: &'static str) -> Option<Vec<String>> {
    match obj.get(key)? {
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.trim().to_owned()),
                    other => obj.ctx.problem(
                        format!("{}[{i}]", obj.at(key)),
                        format!("expected a string, found {other}"),
                    ),
                }
            }
            Some(out)
        }
        Value::String(_) => obj.string(key).map(|s| {
            s.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        }),
        other => {
            obj.ctx.problem(
                obj.at(key),
                format!("expected a list of strings, found {other}"),
            );
            None
        }
    }
}

/// How long one webhook delivery attempt may take unless the endpoint says otherwise.
/// How long one service's check may take, unless `check_timeout` says otherwise.
pub(crate) const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

fn read_webhook(mut o: Obj<'_, '_>) -> Option<WebhookSpec> {
    let present = o.get("url").is_some();
    let url = o.url("url", true);
    if !present {
        o.ctx.problem(o.at("url"), "is required");
    }
    let events = notify::events(&mut o);
    let secret = o.secret("secret");
    let format = o
        .choice("format", WebhookFormat::NAMES, WebhookFormat::parse)
        .unwrap_or(WebhookFormat::Generic);
    let timeout = o
        .duration_in("timeout", limits::WEBHOOK_TIMEOUT, "")
        .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT);
    o.finish();
    Some(WebhookSpec {
        url: url?,
        events,
        secret,
        format,
        timeout,
    })
}

/// The port used when a configured one cannot be (never: ports are validated to 1-65535).
const DEFAULT_PORT: u16 = 9100;

/// Whether only this host can reach `addr`: 127.0.0.0/8 and ::1 (also as `::ffff:127.x.y.z`).
fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Global settings a service inherits unless it sets its own.
struct ServiceDefaults {
    health_timeout: Duration,
    health_stable: Duration,
    cleanup: bool,
    pin_digest: bool,
}

impl ServiceSpec {
    /// Reads one service from a key/value object; problems go to the object's context.
    fn from_object(mut o: Obj<'_, '_>, defaults: &ServiceDefaults) -> Option<Self> {
        let name = o.string("name");
        if name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty() || n.contains(char::is_control))
        {
            o.ctx.problem(
                o.at("name"),
                "must be a non-empty name without control characters",
            );
        }
        let image_text = o.string("image");
        let image = image_text.as_deref().and_then(|s| {
            ImageRef::parse(s)
                .map_err(|e| o.ctx.problem(o.at("image"), e.to_string()))
                .ok()
        });
        let compose_file = o.string("compose_file").map(PathBuf::from);
        let compose_project = o.string("compose_project");
        if compose_project
            .as_deref()
            .is_some_and(|p| p.trim().is_empty() || p.contains(char::is_control))
        {
            o.ctx.problem(
                o.at("compose_project"),
                "must be the compose project's name, as `docker compose ls` shows it",
            );
        }
        let container = o.string("container");
        if container
            .as_deref()
            .is_some_and(|c| c.trim().is_empty() || c.contains(char::is_control))
        {
            o.ctx.problem(
                o.at("container"),
                "must be the container's name, as `docker ps` shows it",
            );
        }
        if container.is_some() {
            for (key, set) in [
                ("compose_file", compose_file.is_some()),
                ("compose_project", compose_project.is_some()),
                ("compose_service", o.get("compose_service").is_some()),
            ] {
                if set {
                    o.ctx.problem(
                        o.at("container"),
                        format!(
                            "a standalone container is not a compose service: set container or \
                             {key}, not both"
                        ),
                    );
                }
            }
        }
        let compose_service = o.string("compose_service");
        let swarm_service = o.string("swarm_service");
        if swarm_service
            .as_deref()
            .is_some_and(|p| p.trim().is_empty() || p.contains(char::is_control))
        {
            o.ctx.problem(
                o.at("swarm_service"),
                "must be the Swarm service's name, as `docker service ls` shows it",
            );
        }
        if swarm_service.is_some() && (compose_file.is_some() || compose_project.is_some()) {
            o.ctx.problem(
                o.at("swarm_service"),
                "a Swarm service has no compose file or project: set swarm_service, or \
                 compose_file/compose_project, not both",
            );
        }
        let stack_file = o.string("stack_file").map(PathBuf::from);
        if stack_file.is_some() && swarm_service.is_none() {
            o.ctx.problem(
                o.at("stack_file"),
                "is the file a Swarm service was deployed from with `docker stack deploy -c`; \
                 set swarm_service too (as `docker service ls` names it: STACK_SERVICE)",
            );
        }
        if stack_file
            .as_deref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            o.ctx
                .problem(o.at("stack_file"), "is empty; give the stack file's path");
        }
        if swarm_service.is_some() && container.is_some() {
            o.ctx.problem(
                o.at("swarm_service"),
                "a Swarm service is not a standalone container: set swarm_service or \
                 container, not both",
            );
        }
        let group = o.bool("group").unwrap_or(false);
        let registry_type = o.choice("registry_type", RegistryKind::NAMES, RegistryKind::parse);
        let enabled = o.bool("enabled").unwrap_or(true);
        let policy_spec = PolicySpec {
            policy: o.choice("policy", PolicyKind::NAMES, PolicyKind::parse),
            tag_pattern: o.string("tag_pattern"),
            tag_regex: o.string("tag_regex"),
            tag_exclude: o.string("tag_exclude"),
            semver_pattern: o.string("semver_pattern"),
            semver_range: o.string("semver_range"),
            update_level: o.choice("update_level", UpdateLevel::NAMES, UpdateLevel::parse),
            prerelease: o.bool("prerelease"),
        };
        let compiled = o
            .ctx
            .policy(policy_spec)
            .map_err(|problems| {
                for p in problems {
                    o.ctx.problem(o.at(p.field), p.message);
                }
            })
            .ok();
        let registry = o
            .object("registry_config")
            .map_or_else(no_registry_settings, |r| {
                Arc::new(read_registry_settings(r))
            });
        let health_timeout = o
            .duration_in("health_timeout", limits::HEALTH_TIMEOUT, "")
            .unwrap_or(defaults.health_timeout);
        let health_stable = o
            .duration_in("health_stable", limits::HEALTH_STABLE, "")
            .unwrap_or(defaults.health_stable);
        if health_stable > health_timeout {
            o.ctx.problem(
                o.path.clone(),
                format!(
                    "health_stable ({}) is longer than health_timeout ({}): a container without a \
                     healthcheck could never pass the health gate; make health_stable shorter",
                    format_duration(health_stable),
                    format_duration(health_timeout)
                ),
            );
        }
        let probe_url = o.url("probe_url", false);
        let pin_digest = o.bool("pin_digest").unwrap_or(defaults.pin_digest);
        let cleanup = o.bool("cleanup").unwrap_or(defaults.cleanup);
        let maintenance_window = windows(&mut o, "maintenance_window");
        let maintenance_days = weekdays(&mut o, "maintenance_days");
        let timezone = timezone(&mut o, "timezone");

        for (key, present) in [("name", name.is_some()), ("image", image_text.is_some())] {
            if !present {
                o.ctx.problem(o.at(key), "is required");
            }
        }
        if compose_file.is_none()
            && compose_project.is_none()
            && container.is_none()
            && swarm_service.is_none()
        {
            o.ctx.problem(
                o.at("compose_file"),
                "is required unless compose_project names the service's compose project, or \
                 container a standalone container",
            );
        }
        if let Some(img) = &image
            && img.tag().is_none()
        {
            o.ctx.problem(o.at("image"), format!("{:?} pins a digest without a tag; give the tag to follow, e.g. \"repo:1.2@sha256:…\"", image_text.unwrap_or_default()));
        }
        o.finish();
        let image = image?;
        let name = name?;
        let (policy_spec, policy) = compiled?;
        Some(Self {
            compose_service: compose_service.unwrap_or_else(|| name.clone()),
            swarm_service,
            stack_file,
            name,
            registry_type: registry_type.unwrap_or_else(|| RegistryKind::infer(image.registry())),
            image,
            compose_file,
            compose_project,
            container,
            group,
            registry,
            enabled,
            policy_spec,
            policy,
            health_timeout,
            health_stable,
            probe_url,
            pin_digest,
            cleanup,
            maintenance_window,
            maintenance_days,
            timezone,
        })
    }
}

/// `[swarm] enabled`: whether the services of a Swarm manager are discovered as lookout
/// services. Swarm services are *discovered* services: whichever mode, they are admitted by
/// `[discovery]`'s `scope` and `require_enable_label` and their labels (`lookout.enable`,
/// `lookout.action=ignore`), and updated only with `lookout.action=update` or
/// `discovery.default_action = "update"`, exactly as containers. A `[[services]]` entry with
/// `swarm_service` is always checked, whatever the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SwarmMode {
    /// The default: discover Swarm services when `[discovery]` is enabled and the engine is a
    /// manager (silently nothing on an engine that is not one).
    #[default]
    Auto,
    /// `true`: discover them even with `[discovery]` off, and warn when the engine is not a
    /// manager.
    On,
    /// `false`: only `[[services]]` with `swarm_service`.
    Off,
}

impl SwarmMode {
    /// Whether Swarm services are discovered under these discovery settings.
    pub fn discovers(self, discovery: &DiscoverySettings) -> bool {
        match self {
            SwarmMode::Auto => discovery.enabled,
            SwarmMode::On => true,
            SwarmMode::Off => false,
        }
    }
}

fn read_swarm(top: &mut Obj<'_, '_>) -> SwarmMode {
    let Some(mut o) = top.object("swarm") else {
        return SwarmMode::Auto;
    };
    let auto = matches!(o.get("enabled"), Some(Value::String(s)) if s.trim() == "auto");
    let mode = if auto {
        SwarmMode::Auto
    } else {
        match o.bool("enabled") {
            Some(true) => SwarmMode::On,
            Some(false) => SwarmMode::Off,
            None => SwarmMode::Auto,
        }
    };
    o.finish();
    mode
}

/// The registry settings of every service without a `registry_config`, shared.
pub(crate) fn no_registry_settings() -> Arc<RegistrySettings> {
    static NONE: std::sync::LazyLock<Arc<RegistrySettings>> =
        std::sync::LazyLock::new(Arc::default);
    NONE.clone()
}

fn read_registry_settings(mut o: Obj<'_, '_>) -> RegistrySettings {
    let s = RegistrySettings {
        region: o.string("region"),
        aws_access_key_id: o.string("aws_access_key_id"),
        aws_secret_access_key: o.secret("aws_secret_access_key"),
        aws_session_token: o.secret("aws_session_token"),
        endpoint_url: o.url("endpoint_url", false),
        project_id: o.string("project_id"),
        service_account_path: o.string("service_account_path").map(PathBuf::from),
        username: o.string("username"),
        password: o.secret("password"),
        insecure: o.bool("insecure").unwrap_or(false),
        ca_file: o.string("ca_file").map(PathBuf::from),
    };
    if s.aws_access_key_id.is_some() != s.aws_secret_access_key.is_some() {
        o.ctx.problem(o.path.clone(), "set both aws_access_key_id and aws_secret_access_key, or neither (to use the default AWS credential chain)");
    }
    if s.username.is_some() != s.password.is_some() {
        o.ctx
            .problem(o.path.clone(), "set both username and password, or neither");
    }
    o.finish();
    s
}

#[cfg(test)]
mod tests;
