//! Notification channels: ntfy, Gotify, Telegram, Teams, Matrix, Pushover, Slack-compatible
//! hooks (Slack, Mattermost, Rocket.Chat), Discord and generic JSON endpoints, each a
//! `[[notify]]` entry or a shoutrrr URL ([`shoutrrr::parse`]).
//!
//! Each service is a plain value ([`Service`]) that turns a [`Message`] into the HTTP requests
//! its API documents ([`Service::requests`], pure); [`deliver`] sends them through the same
//! bounded per-channel queues, timeouts and retries as the webhooks. Email goes out over SMTP
//! ([`email`]) with the same queue and retries; MQTT ([`mqtt`]) keeps a connection to its
//! broker and publishes each service's state for Home Assistant.

pub mod deliver;
pub mod discord;
pub mod email;
pub mod generic;
pub mod gotify;
pub mod matrix;
pub mod mqtt;
pub mod ntfy;
pub mod pushover;
pub mod shoutrrr;
pub mod slack;
pub mod teams;
pub mod telegram;
pub mod template;

use std::time::Duration;

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::{Event, EventKind};
use crate::secret::Secret;

/// One notification target, as configured.
#[derive(Debug, Clone)]
pub enum Service {
    Ntfy(ntfy::Ntfy),
    Gotify(gotify::Gotify),
    Telegram(telegram::Telegram),
    Teams(teams::Teams),
    Matrix(matrix::Matrix),
    Pushover(pushover::Pushover),
    /// Slack, Mattermost and Rocket.Chat incoming webhooks.
    Slack(slack::SlackHook),
    Discord(discord::Discord),
    Generic(generic::Generic),
    Email(email::Email),
    Mqtt(mqtt::Mqtt),
}

impl Service {
    /// The service's name: the default channel name and the `service` key's value.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ntfy(_) => "ntfy",
            Self::Gotify(_) => "gotify",
            Self::Telegram(_) => "telegram",
            Self::Teams(_) => "teams",
            Self::Matrix(_) => "matrix",
            Self::Pushover(_) => "pushover",
            Self::Slack(s) => s.flavor.name(),
            Self::Discord(_) => "discord",
            Self::Generic(_) => "generic",
            Self::Email(_) => "email",
            Self::Mqtt(_) => "mqtt",
        }
    }

    /// Why lookout cannot deliver to this service as configured, if it cannot: said at load
    /// time so that no configured channel stays silent.
    pub(crate) fn undeliverable(&self) -> Option<String> {
        match self {
            Self::Matrix(m) => m.undeliverable(),
            _ => None,
        }
    }

    /// The requests that deliver `message`, in order. Pure.
    pub fn requests(&self, message: &Message) -> Vec<Prepared> {
        match self {
            Self::Ntfy(s) => vec![s.request(message)],
            Self::Gotify(s) => vec![s.request(message)],
            Self::Telegram(s) => s.requests(message),
            Self::Teams(s) => vec![s.request(message)],
            Self::Matrix(s) => s.requests(message),
            Self::Pushover(s) => vec![s.request(message)],
            Self::Slack(s) => vec![s.request(message)],
            Self::Discord(s) => vec![s.request(message)],
            Self::Generic(s) => vec![s.request(message)],
            // Not HTTP: delivered by `deliver` itself.
            Self::Email(_) | Self::Mqtt(_) => Vec::new(),
        }
    }
}

/// Per-event messages, or one summary per pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyMode {
    Event,
    /// The messages of a pass are collected and sent as one when it ends; those that come
    /// while no pass runs are sent `wait` after the first of them.
    Summary {
        wait: Duration,
    },
}

/// One `[[notify]]` entry.
#[derive(Debug, Clone)]
pub struct NotifySpec {
    /// The channel's name: the `channel` label of its metrics and the name in log lines.
    pub name: String,
    pub service: Service,
    /// The events sent; `None` sends all.
    pub events: Option<Vec<EventKind>>,
    pub mode: NotifyMode,
    /// Limit for one request attempt.
    pub timeout: Duration,
    /// The operator's title and body templates, checked at load time.
    pub templates: template::Templates,
}

/// How bad the news is; services map it to a priority or a colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Success,
    Warning,
    Error,
}

impl Severity {
    pub fn of(kind: EventKind) -> Self {
        match kind {
            EventKind::UpdateAvailable | EventKind::UpdateStarted => Self::Info,
            EventKind::Updated => Self::Success,
            EventKind::RolledBack => Self::Warning,
            EventKind::UpdateFailed => Self::Error,
        }
    }

    /// `#rrggbb`.
    pub fn colour(self) -> &'static str {
        match self {
            Self::Info => "#3498db",
            Self::Success => "#2ecc71",
            Self::Warning => "#f39c12",
            Self::Error => "#e74c3c",
        }
    }
}

/// What a person reads: a title, a plain-text body and labelled facts (service, host, from,
/// to, reason, where to look). Every text in it is already redacted.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Stable across retries: the event's id, or a hash of a summary's event ids.
    pub id: String,
    /// The event, or the worst event of a summary.
    pub kind: EventKind,
    pub severity: Severity,
    pub title: String,
    pub body: String,
    pub facts: Vec<(String, String)>,
    pub at: Timestamp,
    /// For generic endpoints: lookout's JSON event (or, for a summary, the list of them).
    pub event_json: serde_json::Value,
}

impl Message {
    /// The message for one event, or `None` for events channels do not hear about.
    pub(crate) fn for_event(event: &Event, host: &str, at: Timestamp) -> Option<Self> {
        let kind = event.kind()?;
        let u = event.update()?;
        let id = super::event_id(host, event)?;
        let reason = event
            .reason()
            .map(|r| crate::redact::redact(r).into_owned());
        let (title, body) = match kind {
            EventKind::UpdateAvailable => (
                format!("{}: update available", u.service),
                format!("{} → {} on {host}", u.old_image, u.new_image),
            ),
            EventKind::UpdateStarted => (
                format!("{}: updating", u.service),
                format!("{} → {} on {host}", u.old_image, u.new_image),
            ),
            EventKind::Updated => (
                format!("{}: updated", u.service),
                format!(
                    "{} → {} on {host}{}",
                    u.old_image,
                    u.new_image,
                    u.duration
                        .map(|d| format!(" in {}s", d.as_secs()))
                        .unwrap_or_default()
                ),
            ),
            EventKind::RolledBack => (
                format!("{}: rolled back", u.service),
                format!(
                    "{} did not pass; {} runs again on {host}: {}",
                    u.new_image,
                    u.old_image,
                    reason.as_deref().unwrap_or("")
                ),
            ),
            EventKind::UpdateFailed => (
                format!("{}: update failed", u.service),
                format!(
                    "{} → {} failed on {host}: {}",
                    u.old_image,
                    u.new_image,
                    reason.as_deref().unwrap_or("")
                ),
            ),
        };
        let mut facts = vec![
            ("Service".to_owned(), u.service.clone()),
            ("Host".to_owned(), host.to_owned()),
            ("From".to_owned(), u.old_image.clone()),
            ("To".to_owned(), u.new_image.clone()),
        ];
        if let Some(reason) = &reason {
            facts.push(("Reason".to_owned(), reason.clone()));
        }
        facts.push((
            "Where".to_owned(),
            format!(
                "service {} in {} (`lookout status` on {host})",
                u.compose_service,
                u.compose_file.display()
            ),
        ));
        let event_json = super::payload(super::WebhookFormat::Generic, event, host, at)?;
        Some(Self {
            id,
            kind,
            severity: Severity::of(kind),
            title,
            body,
            facts,
            at,
            event_json,
        })
    }

    /// One message for several: the title counts what happened, the body has one line each.
    /// `None` for an empty list.
    pub fn summary(messages: &[Message], host: &str) -> Option<Self> {
        let worst = messages.iter().max_by_key(|m| m.severity)?;
        let mut counts: Vec<(EventKind, usize)> = Vec::new();
        for m in messages {
            match counts.iter_mut().find(|(k, _)| *k == m.kind) {
                Some((_, n)) => *n += 1,
                None => counts.push((m.kind, 1)),
            }
        }
        let said: Vec<String> = counts
            .iter()
            .map(|(k, n)| format!("{n} {}", k.as_str().replace('_', " ")))
            .collect();
        let title = format!("lookout on {host}: {}", said.join(", "));
        let body = messages
            .iter()
            .map(|m| format!("{}: {}", m.title, m.body))
            .collect::<Vec<_>>()
            .join("\n");
        let mut h = Sha256::new();
        for m in messages {
            h.update(m.id.as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        let id = digest
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Some(Self {
            id: format!("summary-{id}"),
            kind: worst.kind,
            severity: worst.severity,
            title,
            body,
            facts: vec![("Host".to_owned(), host.to_owned())],
            at: worst.at,
            event_json: serde_json::json!({
                "type": "summary",
                "host": host,
                "events": messages.iter().map(|m| m.event_json.clone()).collect::<Vec<_>>(),
            }),
        })
    }

    /// The body and where to look, as plain text (for services that show the title apart).
    pub(crate) fn plain_body(&self) -> String {
        let mut out = self.body.clone();
        for (k, v) in self.facts.iter().filter(|(k, _)| k == "Where") {
            out.push_str(&format!("\n{k}: {v}"));
        }
        out
    }

    /// Title, body and where to look, as plain text.
    pub fn plain(&self) -> String {
        format!("{}\n{}", self.title, self.plain_body())
    }
}

/// An HTTP method a channel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
}

/// One request, ready to send. The URL and headers may carry credentials: `Debug` shows the
/// URL's scheme and host and the header names only.
#[derive(Clone, PartialEq)]
pub struct Prepared {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, Secret)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("method", &self.method)
            .field("url", &crate::redact::redact_url(&self.url))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl Prepared {
    /// A JSON POST.
    pub fn json(url: impl Into<String>, body: &serde_json::Value) -> Self {
        Self {
            method: Method::Post,
            url: url.into(),
            headers: vec![("Content-Type".to_owned(), Secret::new("application/json"))],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), Secret::new(value)));
        self
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
}

/// Which server certificates a TLS channel (email, MQTT) accepts: the system's roots, plus
/// the certificates of `ca_file`; none is checked with `skip_verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsTrust {
    /// PEM certificates trusted besides the system's (a private CA, a self-signed server).
    pub ca_file: Option<std::path::PathBuf>,
    /// Accept any certificate and name: only for a server the operator trusts otherwise.
    pub skip_verify: bool,
}

impl TlsTrust {
    /// The bytes of `ca_file` (at most 1 MiB), or why they cannot be read.
    pub(crate) fn read_ca(&self) -> Result<Vec<u8>, String> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        use std::io::Read;
        const MAX: u64 = 1024 * 1024;
        let mut out = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX + 1).read_to_end(&mut out))
            .map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
        if out.len() as u64 > MAX {
            return Err(format!("tls_ca_file {}: larger than 1 MiB", path.display()));
        }
        Ok(out)
    }
}

/// `s` with `&`, `<`, `>` and `"` written as HTML entities.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The base of an HTTP(S) URL, without a trailing `/`.
pub(crate) fn trim_base(url: &str) -> &str {
    url.trim_end_matches('/')
}

#[cfg(test)]
mod tests;
