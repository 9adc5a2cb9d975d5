//! One typed event per thing that happens, turned into a log line, metrics and webhooks.
//!
//! Callers build an [`Event`] and hand it to [`Telemetry::emit`]; nothing else in lookout
//! increments a metric or sends a webhook, so the log, `/metrics` and the webhooks never
//! disagree. `emit` never waits: webhook bodies go to bounded per-endpoint queues that
//! [`Deliveries::run`] drains in the background; a full queue drops the delivery and counts it
//! as `lookout_webhook_deliveries_total{result="dropped"}`. Notification channels
//! ([`channels`], `[[notify]]`) get the event's [`Message`] through queues of their own,
//! counted as `lookout_notify_deliveries_total{channel, result}`.
//!
//! Metric labels take configured names only: a service or registry name that was not registered
//! in [`TelemetrySettings`] is counted as `other`.

pub mod channels;
mod event;
mod logging;
mod metrics;
mod webhook;

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

pub use event::{CheckResult, Event, EventKind, NewerImage, PassService, Stage, UpdateInfo};
pub use logging::{LogFormat, LogLevel, LoggingError, init_logging, subscriber};
pub use metrics::Metrics;
pub use webhook::{
    Deliveries, Retry, SIGNATURE_HEADER, WebhookFormat, WebhookSpec, event_id, payload, signature,
};

pub use channels::mqtt::InstallRequest;
pub use channels::{Message, NotifyMode, NotifySpec, Service};

use crate::schedule::Clock;
use channels::deliver::{ChannelQueue, ChannelWorker, Note};
use webhook::{Delivery, Endpoint, redact};

/// Install commands (MQTT) waiting for the daemon; more are dropped and logged.
const INSTALL_QUEUE: usize = 16;

/// The label value for names that were not configured.
pub const OTHER: &str = "other";
/// How many discovered services get metric series of their own beside the configured ones.
pub const MAX_DISCOVERED_SERVICES: usize = 5_000;

/// What [`Telemetry::new`] needs.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// `lookout_build_info{version}`.
    pub version: String,
    /// This machine's name, sent in webhooks.
    pub host: String,
    /// Configured service names: the only values of the `service` label.
    pub services: Vec<String>,
    /// Configured registry hosts: the only values of the `registry` label.
    pub registries: Vec<String>,
    pub webhooks: Vec<WebhookSpec>,
    /// Notification channels (`[[notify]]`).
    pub notify: Vec<NotifySpec>,
    /// Deliveries each endpoint's (and channel's) queue holds before new ones are dropped.
    pub queue_capacity: usize,
    pub retry: Retry,
}

/// This machine's host name (`uname -n`).
pub(crate) fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The handle every part of lookout emits events through. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    metrics: Metrics,
    /// The configured services, and those discovery found since (at most
    /// [`MAX_DISCOVERED_SERVICES`] more).
    services: std::sync::RwLock<HashSet<String>>,
    registries: HashSet<String>,
    configured_services: usize,
    host: String,
    clock: Arc<dyn Clock>,
    endpoints: Vec<Endpoint>,
    channels: Vec<ChannelQueue>,
    /// Every event, for live listeners (the API's `/api/v1/events` stream and the web page).
    live: tokio::sync::broadcast::Sender<Event>,
}

/// Events a live listener may fall behind by before it misses some (and is told so).
const LIVE_CAPACITY: usize = 1024;

impl Telemetry {
    /// The handle and the webhook workers; spawn `Deliveries::run` (it needs a tokio runtime).
    pub fn new(settings: TelemetrySettings, clock: Arc<dyn Clock>) -> (Self, Deliveries) {
        let names: Vec<String> = settings.notify.iter().map(|n| n.name.clone()).collect();
        let metrics = Metrics::with_channels(&settings.version, &settings.services, &names);
        let mut endpoints = Vec::new();
        let mut receivers = Vec::new();
        for spec in settings.webhooks {
            let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
            receivers.push((spec.clone(), rx));
            endpoints.push(Endpoint { spec, tx });
        }
        let mut channels = Vec::new();
        let mut channel_workers = Vec::new();
        let listens = |s: &NotifySpec| matches!(&s.service, Service::Mqtt(m) if m.install);
        let (install_tx, install_rx) = if settings.notify.iter().any(listens) {
            let (tx, rx) = mpsc::channel(INSTALL_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        for spec in settings.notify {
            let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
            channel_workers.push(ChannelWorker {
                installs: install_tx.clone().filter(|_| listens(&spec)),
                spec: spec.clone(),
                rx,
                retry: settings.retry,
                metrics: metrics.clone(),
                host: settings.host.clone(),
                room_ids: Default::default(),
                matrix_token: None,
                services: settings.services.clone(),
            });
            channels.push(ChannelQueue { spec, tx });
        }
        let deliveries = Deliveries::new(
            receivers,
            channel_workers,
            install_rx,
            settings.retry,
            &metrics,
        );
        let inner = Inner {
            metrics,
            configured_services: settings.services.len(),
            services: std::sync::RwLock::new(settings.services.into_iter().collect()),
            registries: settings.registries.into_iter().collect(),
            host: settings.host,
            clock,
            endpoints,
            channels,
            live: tokio::sync::broadcast::channel(LIVE_CAPACITY).0,
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            deliveries,
        )
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The metrics in the Prometheus text format, for `/metrics`.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }

    /// The host name webhooks carry.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// Logs `event`, updates the metrics, queues webhook deliveries and hands it to live
    /// listeners. Never waits.
    pub fn emit(&self, event: Event) {
        self.log(&event);
        self.count(&event);
        self.enqueue(&event);
        if self.inner.live.receiver_count() > 0 {
            // A listener that fell behind learns it from its receiver (`Lagged`).
            let _ = self.inner.live.send(event);
        }
    }

    /// Every event emitted from now on, as [`Telemetry::emit`] gets it.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.live.subscribe()
    }

    /// Services discovery found get metric series of their own, like configured ones (the
    /// host's containers bound them; beyond [`MAX_DISCOVERED_SERVICES`] more they count as
    /// `other`).
    pub fn add_services<'n>(&self, names: impl IntoIterator<Item = &'n str>) {
        let mut known = self
            .inner
            .services
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for name in names {
            if known.len() >= self.inner.configured_services + MAX_DISCOVERED_SERVICES {
                break;
            }
            if known.insert(name.to_owned()) {
                self.inner.metrics.add_service(name);
            }
        }
    }

    fn service_label<'a>(&self, name: &'a str) -> &'a str {
        let known = self
            .inner
            .services
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.contains(name) { name } else { OTHER }
    }

    fn registry_label<'a>(&self, name: &'a str) -> &'a str {
        if self.inner.registries.contains(name) {
            name
        } else {
            OTHER
        }
    }

    fn count(&self, event: &Event) {
        let m = &self.inner.metrics;
        match event {
            Event::CheckFinished {
                service,
                result,
                update_available,
                duration,
            } => {
                m.checks.with_label_values(&[result.as_str()]).inc();
                m.check_duration.observe(duration.as_secs_f64());
                m.last_check
                    .set(self.inner.clock.now().as_millisecond() as f64 / 1000.0);
                if *result != CheckResult::Failed {
                    m.update_available
                        .with_label_values(&[self.service_label(service)])
                        .set(i64::from(update_available.is_some()));
                }
            }
            Event::CheckSkipped => m.checks_skipped.inc(),
            Event::UpdateAvailable(_) | Event::UpdateStarted(_) => {}
            Event::Updated(u) => {
                let service = self.service_label(&u.service);
                m.updates.with_label_values(&[service, "updated"]).inc();
                m.update_available.with_label_values(&[service]).set(0);
                if let Some(d) = u.duration {
                    m.update_duration.observe(d.as_secs_f64());
                }
            }
            Event::RolledBack { update: u, .. } => {
                let service = self.service_label(&u.service);
                m.updates.with_label_values(&[service, "rolled_back"]).inc();
                m.rollbacks.with_label_values(&[service]).inc();
                if let Some(d) = u.duration {
                    m.update_duration.observe(d.as_secs_f64());
                }
            }
            Event::UpdateFailed {
                update: u, stage, ..
            } => {
                let service = self.service_label(&u.service);
                m.updates.with_label_values(&[service, "failed"]).inc();
                m.update_failures
                    .with_label_values(&[service, stage.as_str()])
                    .inc();
            }
            Event::StateRestored { .. } => m.state_restores.inc(),
            Event::RegistryRequest {
                registry,
                method,
                status,
            } => {
                let method = match method.to_ascii_uppercase().as_str() {
                    "GET" => "GET",
                    "HEAD" => "HEAD",
                    "POST" => "POST",
                    _ => OTHER,
                };
                let status = match status {
                    Some(code @ 100..=599) => code.to_string(),
                    Some(_) => OTHER.to_owned(),
                    None => "error".to_owned(),
                };
                m.registry_requests
                    .with_label_values(&[self.registry_label(registry), method, &status])
                    .inc();
            }
            Event::RateLimit {
                registry,
                remaining,
            } => m
                .ratelimit_remaining
                .with_label_values(&[self.registry_label(registry)])
                .set(i64::try_from(*remaining).unwrap_or(i64::MAX)),
            Event::PassStarted | Event::PassFinished { .. } => {}
        }
    }

    /// Hands `event`'s message to every channel that wants it, and the start and end of
    /// passes to the channels that hear about them (summaries, MQTT), without waiting.
    fn notify(&self, event: &Event) {
        if self.inner.channels.is_empty() {
            return;
        }
        let pass_note = match event {
            Event::PassStarted => Some(Note::PassStarted),
            Event::PassFinished { services } => Some(Note::Pass(Arc::new(services.clone()))),
            _ => None,
        };
        if let Some(note) = pass_note {
            for channel in self.inner.channels.iter().filter(|c| c.wants_passes()) {
                self.offer(channel, note.clone(), "pass", "");
            }
            return;
        }
        let Some(kind) = event.kind() else { return };
        let Some(message) = Message::for_event(event, &self.inner.host, self.inner.clock.now())
        else {
            return;
        };
        let event = Arc::new(event.clone());
        for channel in &self.inner.channels {
            if channel
                .spec
                .events
                .as_ref()
                .is_some_and(|events| !events.contains(&kind))
            {
                continue;
            }
            let id = message.id.clone();
            self.offer(
                channel,
                Note::Event(event.clone(), message.clone()),
                kind.as_str(),
                &id,
            );
        }
    }

    fn offer(&self, channel: &ChannelQueue, note: Note, event: &str, id: &str) {
        if channel.tx.try_send(note).is_err() {
            self.inner
                .metrics
                .notify_deliveries
                .with_label_values(&[channel.spec.name.as_str(), "dropped"])
                .inc();
            tracing::warn!(
                id = %id,
                event,
                channel = %channel.spec.name,
                "notification queue full or closed; message dropped"
            );
        }
    }

    fn enqueue(&self, event: &Event) {
        self.notify(event);
        let Some(kind) = event.kind() else { return };
        if self.inner.endpoints.is_empty() {
            return;
        }
        let at = self.inner.clock.now();
        let host = &self.inner.host;
        let Some(id) = event_id(host, event) else {
            return;
        };
        for endpoint in &self.inner.endpoints {
            if endpoint
                .spec
                .events
                .as_ref()
                .is_some_and(|events| !events.contains(&kind))
            {
                continue;
            }
            let Some(body) = payload(endpoint.spec.format, event, host, at) else {
                continue;
            };
            let delivery = Delivery {
                id: id.clone(),
                kind,
                body: serde_json::to_vec(&body).expect("JSON values serialise"),
            };
            if endpoint.tx.try_send(delivery).is_err() {
                self.inner
                    .metrics
                    .webhook_deliveries
                    .with_label_values(&["dropped"])
                    .inc();
                tracing::warn!(
                    id = %id,
                    event = kind.as_str(),
                    endpoint = %redact(&endpoint.spec.url),
                    "webhook queue full or closed; delivery dropped"
                );
            }
        }
    }

    fn log(&self, event: &Event) {
        use tracing::{debug, error, info, warn};
        match event {
            Event::CheckFinished {
                service,
                result,
                update_available,
                duration,
            } => {
                let candidate = update_available.as_ref().map(|c| c.image.as_str());
                if *result == CheckResult::Failed {
                    warn!(event = "check_finished", service = %service, result = result.as_str(), duration_ms = duration.as_millis() as u64, "check failed");
                } else {
                    info!(event = "check_finished", service = %service, result = result.as_str(), candidate, duration_ms = duration.as_millis() as u64, "check finished");
                }
            }
            Event::CheckSkipped => {
                warn!(
                    event = "check_skipped",
                    "check skipped: the previous check still runs"
                )
            }
            Event::UpdateAvailable(u) => {
                info!(event = "update_available", service = %u.service, old_image = %u.old_image, new_image = %u.new_image, new_digest = u.new_digest.as_deref(), "update available")
            }
            Event::UpdateStarted(u) => {
                info!(event = "update_started", service = %u.service, compose_file = %u.compose_file.display(), old_image = %u.old_image, new_image = %u.new_image, "update started")
            }
            Event::Updated(u) => {
                info!(event = "updated", service = %u.service, old_image = %u.old_image, new_image = %u.new_image, new_digest = u.new_digest.as_deref(), duration_ms = u.duration.map(|d| d.as_millis() as u64), "updated")
            }
            Event::RolledBack { update: u, reason } => {
                warn!(event = "rolled_back", service = %u.service, old_image = %u.old_image, new_image = %u.new_image, reason = %reason, "rolled back")
            }
            Event::UpdateFailed {
                update: u,
                stage,
                reason,
            } => {
                error!(event = "update_failed", service = %u.service, new_image = %u.new_image, stage = stage.as_str(), reason = %reason, "update failed")
            }
            Event::StateRestored {
                from_backup,
                set_aside,
            } => {
                warn!(
                    event = "state_restored",
                    from_backup = from_backup.as_ref().map(|p| p.display().to_string()),
                    set_aside = set_aside.as_ref().map(|p| p.display().to_string()),
                    "state file restored"
                )
            }
            Event::RegistryRequest {
                registry,
                method,
                status,
            } => {
                debug!(event = "registry_request", registry = %registry, method = %method, status = *status, "registry request")
            }
            Event::RateLimit {
                registry,
                remaining,
            } => {
                debug!(event = "rate_limit", registry = %registry, remaining = *remaining, "registry rate limit")
            }
            Event::PassStarted => debug!(event = "pass_started", "pass started"),
            Event::PassFinished { services } => {
                debug!(
                    event = "pass_finished",
                    services = services.len(),
                    "pass finished"
                )
            }
        }
    }
}

/// The span one update attempt runs in.
pub fn update_span(service: &str, old_image: &str, new_image: &str) -> tracing::Span {
    tracing::info_span!("update", service = %service, old_image = %old_image, new_image = %new_image)
}

#[cfg(test)]
mod tests;
