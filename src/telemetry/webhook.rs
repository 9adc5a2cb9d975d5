//! Webhook payloads, signatures and delivery.
//!
//! [`super::Telemetry::emit`] renders the body once per endpoint and hands it to that endpoint's
//! bounded queue without waiting; when the queue is full the delivery is dropped and counted. A
//! worker per endpoint ([`Deliveries::run`]) posts each body with a timeout and retries
//! connection errors, timeouts, 429 and 5xx answers with exponential backoff. A retry sends the
//! same bytes, so the same `id` and signature.

use std::future::Future;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{Event, EventKind, Metrics};
use crate::secret::Secret;

/// One webhook endpoint. `Debug` shows the URL as scheme and host only: the rest is often the
/// credential.
#[derive(Clone)]
pub struct WebhookSpec {
    pub url: String,
    /// The events sent to it; `None` sends all.
    pub events: Option<Vec<EventKind>>,
    /// Signs each body with HMAC-SHA256 (`X-Lookout-Signature: sha256=…`).
    pub secret: Option<Secret>,
    pub format: WebhookFormat,
    /// Limit for one delivery attempt.
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("url", &crate::redact::redact_url(&self.url))
            .field("events", &self.events)
            .field("secret", &self.secret)
            .field("format", &self.format)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The payload shape an endpoint receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// lookout's JSON event (with the Docker Auto-Updater's `event` field).
    Generic,
    /// A Slack incoming-webhook message (`text` and `blocks`).
    Slack,
    /// A Discord webhook message (`content` and `embeds`).
    Discord,
}

impl WebhookFormat {
    pub(crate) const NAMES: &'static [&'static str] = &["generic", "slack", "discord"];

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "generic" | "json" => Some(Self::Generic),
            "slack" => Some(Self::Slack),
            "discord" => Some(Self::Discord),
            _ => None,
        }
    }
}

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "X-Lookout-Signature";

/// `sha256=<hex of HMAC-SHA256(secret, body)>`, the value of [`SIGNATURE_HEADER`].
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The event's stable id: a hash of what identifies the occurrence (host, kind, service,
/// old and new image and digest, start time), written as a UUID. The same occurrence, sent
/// again or reported again after a restart, has the same id; receivers can drop repeats.
pub fn event_id(host: &str, event: &Event) -> Option<String> {
    let kind = event.kind()?;
    let u = event.update()?;
    let mut h = Sha256::new();
    for part in [
        host,
        kind.as_str(),
        &u.service,
        &u.old_image,
        &u.new_image,
        u.old_digest.as_deref().unwrap_or(""),
        u.new_digest.as_deref().unwrap_or(""),
        &u.started_at.as_nanosecond().to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let d = hex(&h.finalize()[..16]);
    Some(format!(
        "{}-{}-{}-{}-{}",
        &d[0..8],
        &d[8..12],
        &d[12..16],
        &d[16..20],
        &d[20..32]
    ))
}

/// The body an endpoint of `format` receives for `event`, or `None` for events webhooks do not
/// hear about. `at` is when the event was emitted.
pub fn payload(format: WebhookFormat, event: &Event, host: &str, at: Timestamp) -> Option<Value> {
    let kind = event.kind()?;
    let u = event.update()?;
    let id = event_id(host, event)?;
    let stage = match event {
        Event::UpdateFailed { stage, .. } => Some(stage.as_str()),
        _ => None,
    };
    let generic = json!({
        "id": id,
        "type": kind.as_str(),
        "event": kind.seed_name(),
        "timestamp": at.to_string(),
        "host": host,
        "service": u.service,
        "compose_service": u.compose_service,
        "compose_file": u.compose_file.display().to_string(),
        "old_image": u.old_image,
        "new_image": u.new_image,
        "old_digest": u.old_digest,
        "new_digest": u.new_digest,
        "started_at": u.started_at.to_string(),
        "duration_seconds": u.duration.map(|d| d.as_secs_f64()),
        "stage": stage,
        "reason": reason(event),
    });
    let summary = summary(event, kind, host)?;
    Some(match format {
        WebhookFormat::Generic => generic,
        WebhookFormat::Slack => json!({
            "text": summary,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                    "`{}` in {} · host {} · id {}",
                    u.compose_service, u.compose_file.display(), host, id
                )}]},
            ],
        }),
        WebhookFormat::Discord => {
            let mut fields = vec![
                json!({"name": "Service", "value": u.service, "inline": true}),
                json!({"name": "Host", "value": host, "inline": true}),
                json!({"name": "From", "value": u.old_image, "inline": false}),
                json!({"name": "To", "value": u.new_image, "inline": false}),
            ];
            if let Some(reason) = reason(event) {
                fields.push(
                    json!({"name": "Reason", "value": truncate(&reason, 1000), "inline": false}),
                );
            }
            json!({
                "content": summary,
                "embeds": [{
                    "title": format!("{}: {}", u.service, kind.as_str()),
                    "color": colour(kind),
                    "fields": fields,
                    "footer": {"text": format!("id {id}")},
                    "timestamp": at.to_string(),
                }],
            })
        }
    })
}

/// The event's reason as receivers see it: redacted, since it may quote a registry's or
/// compose's error.
fn reason(event: &Event) -> Option<String> {
    event
        .reason()
        .map(|r| crate::redact::redact(r).into_owned())
}

fn colour(kind: EventKind) -> u32 {
    match kind {
        EventKind::UpdateAvailable | EventKind::UpdateStarted => 0x3498db,
        EventKind::Updated => 0x2ecc71,
        EventKind::RolledBack => 0xf39c12,
        EventKind::UpdateFailed => 0xe74c3c,
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// One line a person reads in a chat.
fn summary(event: &Event, kind: EventKind, host: &str) -> Option<String> {
    let u = event.update()?;
    let took = u
        .duration
        .map(|d| format!(" in {}s", d.as_secs()))
        .unwrap_or_default();
    Some(match kind {
        EventKind::UpdateAvailable => format!(
            "{}: update available on {host}: {} → {}",
            u.service, u.old_image, u.new_image
        ),
        EventKind::UpdateStarted => format!(
            "{}: updating on {host}: {} → {}",
            u.service, u.old_image, u.new_image
        ),
        EventKind::Updated => format!(
            "{}: updated on {host}{took}: {} → {}",
            u.service, u.old_image, u.new_image
        ),
        EventKind::RolledBack => format!(
            "{}: rolled back on {host} to {} ({})",
            u.service,
            u.old_image,
            reason(event).unwrap_or_default()
        ),
        EventKind::UpdateFailed => format!(
            "{}: update to {} failed on {host} ({})",
            u.service,
            u.new_image,
            reason(event).unwrap_or_default()
        ),
    })
}

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait before the second attempt; it doubles for each further one.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// A body on its way to one endpoint.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub id: String,
    pub kind: EventKind,
    pub body: Vec<u8>,
}

/// One endpoint's queue and settings, on the emitting side.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub spec: WebhookSpec,
    pub tx: mpsc::Sender<Delivery>,
}

/// The delivery workers, one per endpoint. Run them with [`Deliveries::run`].
#[must_use = "webhooks are only delivered while Deliveries::run runs"]
pub struct Deliveries {
    workers: Vec<Worker>,
    channels: Vec<super::channels::deliver::ChannelWorker>,
    installs: Option<mpsc::Receiver<super::InstallRequest>>,
}

struct Worker {
    spec: WebhookSpec,
    rx: mpsc::Receiver<Delivery>,
    retry: Retry,
    metrics: Metrics,
}

impl Deliveries {
    pub(crate) fn new(
        endpoints: Vec<(WebhookSpec, mpsc::Receiver<Delivery>)>,
        channels: Vec<super::channels::deliver::ChannelWorker>,
        installs: Option<mpsc::Receiver<super::InstallRequest>>,
        retry: Retry,
        metrics: &Metrics,
    ) -> Self {
        Self {
            channels,
            installs,
            workers: endpoints
                .into_iter()
                .map(|(spec, rx)| Worker {
                    spec,
                    rx,
                    retry,
                    metrics: metrics.clone(),
                })
                .collect(),
        }
    }

    /// The install commands MQTT channels hear (`install = true`), for the daemon to run;
    /// `None` when no channel listens or they were taken already.
    pub fn take_install_requests(&mut self) -> Option<mpsc::Receiver<super::InstallRequest>> {
        self.installs.take()
    }

    /// Delivers queued events until `shutdown` resolves or every [`super::Telemetry`] handle is
    /// gone and the queues are empty. Deliveries still queued at shutdown are not sent.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        crate::tls::install_crypto_provider();
        let client = match reqwest::Client::builder().build() {
            Ok(c) => c,
            Err(error) => {
                tracing::error!(%error, "cannot create the HTTP client for webhooks; no webhook or notification will be sent");
                return;
            }
        };
        let mut set = tokio::task::JoinSet::new();
        for worker in self.workers {
            set.spawn(worker.run(client.clone()));
        }
        for worker in self.channels {
            set.spawn(worker.run(client.clone()));
        }
        tokio::select! {
            () = shutdown => set.abort_all(),
            () = async { while set.join_next().await.is_some() {} } => {}
        }
    }
}

impl Worker {
    async fn run(mut self, client: reqwest::Client) {
        while let Some(delivery) = self.rx.recv().await {
            self.deliver(&client, &delivery).await;
        }
    }

    async fn deliver(&self, client: &reqwest::Client, d: &Delivery) {
        let signature = self
            .spec
            .secret
            .as_ref()
            .map(|s| signature(s.expose().as_bytes(), &d.body));
        let counter = &self.metrics.webhook_deliveries;
        let sent = send_with_retries(
            &self.retry,
            self.spec.timeout,
            || {
                let mut request = client
                    .post(&self.spec.url)
                    .timeout(self.spec.timeout)
                    .header("Content-Type", "application/json")
                    .header("User-Agent", USER_AGENT)
                    .header("X-Lookout-Event", d.kind.as_str())
                    .header("X-Lookout-Delivery", &d.id)
                    .body(d.body.clone());
                if let Some(sig) = &signature {
                    request = request.header(SIGNATURE_HEADER, sig);
                }
                request
            },
            || counter.with_label_values(&["retried"]).inc(),
        )
        .await;
        match sent {
            Ok(attempt) => {
                counter.with_label_values(&["delivered"]).inc();
                tracing::debug!(id = %d.id, event = d.kind.as_str(), attempt, "webhook delivered");
            }
            Err(error) => {
                counter.with_label_values(&["failed"]).inc();
                tracing::warn!(
                    id = %d.id,
                    event = d.kind.as_str(),
                    endpoint = %redact(&self.spec.url),
                    error = %error,
                    "webhook delivery failed"
                );
            }
        }
    }
}

/// The `User-Agent` of every delivery.
pub(crate) const USER_AGENT: &str = concat!("lookout/", env!("CARGO_PKG_VERSION"));

/// Sends the request `build` makes until it succeeds, at most `retry.attempts` times:
/// connection errors, timeouts, 429 and 5xx answers are retried with exponential backoff
/// (`on_retry` runs before each wait); other answers end it. The attempt that succeeded, or
/// what went wrong last (never the URL: it may be the credential).
pub(crate) async fn send_with_retries(
    retry: &Retry,
    timeout: Duration,
    build: impl Fn() -> reqwest::RequestBuilder,
    on_retry: impl Fn(),
) -> Result<u32, String> {
    let mut backoff = retry.first_backoff;
    let mut last_error = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        match build().send().await {
            Ok(r) if r.status().is_success() => return Ok(attempt),
            Ok(r) if !(r.status().is_server_error() || r.status().as_u16() == 429) => {
                return Err(format!("HTTP {}", r.status().as_u16()));
            }
            Ok(r) => last_error = format!("HTTP {}", r.status().as_u16()),
            Err(e) if e.is_timeout() => {
                last_error = format!("no answer within {}s", timeout.as_secs_f64())
            }
            Err(e) if e.is_connect() => last_error = "cannot connect".to_owned(),
            Err(_) => last_error = "request failed".to_owned(),
        }
        if attempt < retry.attempts {
            on_retry();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(retry.max_backoff);
        }
    }
    Err(last_error)
}

/// The scheme and host of a URL: webhook URLs often carry a token in their path.
pub(crate) fn redact(url: &str) -> String {
    crate::redact::redact_url(url)
}
