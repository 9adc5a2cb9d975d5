//! Delivery to notification channels: one bounded queue and one worker per channel, so a
//! slow or failing channel never delays another; each request is sent with the webhooks'
//! timeout and retries ([`crate::telemetry::webhook`]) and counted in
//! `lookout_notify_deliveries_total{channel, result}`. Email goes out over SMTP
//! ([`super::email`]) with the same retries; an MQTT channel keeps its own connection
//! ([`super::mqtt::Worker`]).
//!
//! A channel in summary mode collects its messages and sends one when a pass is over (or,
//! for what happens outside a pass, such as a rollback asked for through the API, once
//! `summary_wait` has passed without a pass running).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::matrix::Matrix;
use super::mqtt::InstallRequest;
use super::{Message, Method, NotifyMode, NotifySpec, Service};
use crate::secret::Secret;
use crate::telemetry::event::{Event, PassService};
use crate::telemetry::webhook::{Retry, USER_AGENT, send_with_retries};
use crate::telemetry::{EventKind, Metrics};

/// What a channel's worker is told.
#[derive(Debug, Clone)]
pub(crate) enum Note {
    /// An update event and its message.
    Event(Arc<Event>, Message),
    /// A pass begins.
    PassStarted,
    /// A pass is over.
    Pass(Arc<Vec<PassService>>),
}

/// One channel's queue, on the emitting side.
#[derive(Debug)]
pub(crate) struct ChannelQueue {
    pub spec: NotifySpec,
    pub tx: mpsc::Sender<Note>,
}

impl ChannelQueue {
    /// Whether the worker wants to hear when passes start and end.
    pub(crate) fn wants_passes(&self) -> bool {
        matches!(self.spec.mode, NotifyMode::Summary { .. })
            || matches!(self.spec.service, Service::Mqtt(_))
    }
}

/// One channel's worker.
pub(crate) struct ChannelWorker {
    pub spec: NotifySpec,
    pub rx: mpsc::Receiver<Note>,
    pub retry: Retry,
    pub metrics: Metrics,
    pub host: String,
    /// Matrix room aliases resolved so far.
    pub room_ids: HashMap<String, String>,
    /// The access token a Matrix password login gave.
    pub matrix_token: Option<Secret>,
    /// The configured services (MQTT publishes a state and discovery document for each).
    pub services: Vec<String>,
    /// Where MQTT install commands go (the daemon takes them).
    pub installs: Option<mpsc::Sender<InstallRequest>>,
}

/// The longest a summary waits for a pass to end.
const MAX_HOLD: Duration = Duration::from_secs(3600);

impl ChannelWorker {
    pub(crate) async fn run(mut self, client: reqwest::Client) {
        if let Service::Mqtt(mqtt) = &self.spec.service {
            let worker = super::mqtt::Worker {
                name: self.spec.name.clone(),
                mqtt: mqtt.clone(),
                host: self.host.clone(),
                services: self.services.clone(),
                rx: self.rx,
                installs: self.installs.take(),
                metrics: self.metrics.clone(),
                timeout: self.spec.timeout,
            };
            return worker.run().await;
        }
        match self.spec.mode {
            NotifyMode::Event => {
                while let Some(note) = self.rx.recv().await {
                    if let Note::Event(_, message) = note {
                        self.deliver(&client, &message).await;
                    }
                }
            }
            NotifyMode::Summary { wait } => self.summaries(&client, wait).await,
        }
    }

    /// Summary mode: the messages of a pass, sent as one when it ends.
    async fn summaries(&mut self, client: &reqwest::Client, wait: Duration) {
        let mut pending: Vec<Message> = Vec::new();
        let mut running: usize = 0;
        let mut first_at: Option<Instant> = None;
        let wanted = |kind: EventKind, events: &Option<Vec<EventKind>>| match events {
            // Every summary says what was updated, rolled back, failed or found; that an
            // update started is only said when asked for by name.
            None => kind != EventKind::UpdateStarted,
            Some(list) => list.contains(&kind),
        };
        loop {
            let deadline = first_at.map(|t| t + if running == 0 { wait } else { MAX_HOLD });
            let note = match deadline {
                Some(d) => tokio::select! {
                    note = self.rx.recv() => note,
                    () = tokio::time::sleep_until(d) => {
                        self.flush(client, &mut pending).await;
                        first_at = None;
                        continue;
                    }
                },
                None => self.rx.recv().await,
            };
            match note {
                None => {
                    self.flush(client, &mut pending).await;
                    return;
                }
                Some(Note::Event(_, m)) => {
                    if !wanted(m.kind, &self.spec.events) {
                        continue;
                    }
                    pending.push(m);
                    first_at.get_or_insert_with(Instant::now);
                    if pending.len() >= MAX_SUMMARY_EVENTS {
                        self.flush(client, &mut pending).await;
                        first_at = None;
                    }
                }
                Some(Note::PassStarted) => running = running.saturating_add(1),
                Some(Note::Pass(_)) => {
                    running = running.saturating_sub(1);
                    if running == 0 {
                        self.flush(client, &mut pending).await;
                        first_at = None;
                    }
                }
            }
        }
    }

    async fn flush(&mut self, client: &reqwest::Client, pending: &mut Vec<Message>) {
        let batch = std::mem::take(pending);
        if let Some(summary) = Message::summary(&batch, &self.host) {
            self.deliver(client, &summary).await;
        }
    }

    fn count(&self, result: &str) {
        self.count_as(&self.spec.name, result);
    }

    fn count_as(&self, channel: &str, result: &str) {
        self.metrics
            .notify_deliveries
            .with_label_values(&[channel, result])
            .inc();
    }

    /// `m` with its room aliases replaced by their ids, looked up once and kept; an alias that
    /// cannot be resolved is left out of this delivery, counted as failed and logged.
    async fn resolve_rooms(&mut self, client: &reqwest::Client, m: &Matrix) -> Matrix {
        let mut out = m.clone();
        out.rooms.clear();
        for room in &m.rooms {
            if room.starts_with('!') {
                out.rooms.push(room.clone());
                continue;
            }
            if let Some(id) = self.room_ids.get(room) {
                out.rooms.push(id.clone());
                continue;
            }
            match resolve_alias(client, m, room, self.spec.timeout).await {
                Ok(id) => {
                    self.room_ids.insert(room.clone(), id.clone());
                    out.rooms.push(id);
                }
                Err(error) => {
                    self.count("failed");
                    tracing::warn!(channel = %self.spec.name, alias = %room, error = %error, "cannot resolve the Matrix room alias; not sent there");
                }
            }
        }
        out
    }

    /// `m` ready to send: logged in with its password when it has a user (the token kept
    /// until a delivery fails), its room aliases resolved. `None` when the login failed.
    async fn matrix_ready(&mut self, client: &reqwest::Client, m: &Matrix) -> Option<Matrix> {
        let mut m = m.clone();
        if let Some(user) = m.user.take() {
            let token = match &self.matrix_token {
                Some(t) => t.clone(),
                None => match matrix_login(client, &m, &user, &self.retry, self.spec.timeout).await
                {
                    Ok(t) => {
                        crate::redact::remember(t.expose());
                        self.matrix_token = Some(t.clone());
                        t
                    }
                    Err(error) => {
                        self.count("failed");
                        tracing::warn!(channel = %self.spec.name, error = %error, "Matrix password login failed; not sent");
                        return None;
                    }
                },
            };
            m.access_token = token;
        }
        if m.rooms.iter().any(|r| !r.starts_with('!')) {
            m = self.resolve_rooms(client, &m).await;
        }
        Some(m)
    }

    async fn deliver_email(&self, e: &super::email::Email, message: &Message) {
        let mail = match e.mail(message) {
            Ok(mail) => mail,
            Err(error) => {
                self.count("failed");
                tracing::warn!(channel = %self.spec.name, service = "email", id = %message.id, error = %error, "notification not sent");
                return;
            }
        };
        let sent = with_retries(
            &self.retry,
            || e.send(mail.clone(), self.spec.timeout),
            |error| error.transient,
            || self.count("retried"),
        )
        .await;
        match sent {
            Ok(attempt) => {
                self.count("delivered");
                tracing::debug!(channel = %self.spec.name, service = "email", id = %message.id, attempt, "notification delivered");
            }
            Err(error) => {
                self.count("failed");
                tracing::warn!(channel = %self.spec.name, service = "email", id = %message.id, error = %error.message, "notification delivery failed");
            }
        }
    }

    async fn deliver(&mut self, client: &reqwest::Client, message: &Message) {
        let message = &self.spec.templates.apply(message);
        let resolved;
        let service = match &self.spec.service {
            Service::Email(e) => {
                let e = e.clone();
                self.deliver_email(&e, message).await;
                return;
            }
            Service::Matrix(m) => {
                let m = m.clone();
                let Some(ready) = self.matrix_ready(client, &m).await else {
                    return;
                };
                resolved = Service::Matrix(ready);
                &resolved
            }
            other => other,
        };
        for request in service.requests(message) {
            let timeout = self.spec.timeout;
            let sent = send_with_retries(
                &self.retry,
                timeout,
                || {
                    let mut r = match request.method {
                        Method::Post => client.post(&request.url),
                        Method::Put => client.put(&request.url),
                    }
                    .timeout(timeout)
                    .header("User-Agent", USER_AGENT)
                    .body(request.body.clone());
                    for (name, value) in &request.headers {
                        r = r.header(name.as_str(), value.expose());
                    }
                    r
                },
                || self.count_as(&self.spec.name, "retried"),
            )
            .await;
            match sent {
                Ok(attempt) => {
                    self.count("delivered");
                    tracing::debug!(channel = %self.spec.name, service = self.spec.service.name(), id = %message.id, attempt, "notification delivered");
                }
                Err(error) => {
                    self.count("failed");
                    // A token that no longer works is replaced by a new login next time.
                    self.matrix_token = None;
                    tracing::warn!(channel = %self.spec.name, service = self.spec.service.name(), id = %message.id, error = %error, "notification delivery failed");
                }
            }
        }
    }
}

/// `f` until it succeeds, fails for good (`transient` says no) or `retry.attempts` are used,
/// with the webhooks' backoff; `on_retry` runs before each wait. The attempt that succeeded,
/// or the last error.
async fn with_retries<T, E, Fut>(
    retry: &Retry,
    f: impl Fn() -> Fut,
    transient: impl Fn(&E) -> bool,
    on_retry: impl Fn(),
) -> Result<u32, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = retry.first_backoff;
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(_) => return Ok(attempt),
            Err(e) if attempt >= retry.attempts.max(1) || !transient(&e) => return Err(e),
            Err(_) => {
                on_retry();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(retry.max_backoff);
                attempt += 1;
            }
        }
    }
}

/// Logs in to the homeserver with `user`'s password (`m.access_token` holds it):
/// `POST /_matrix/client/v3/login` with `m.login.password`, answered with an `access_token`.
/// Connection failures, 429 and 5xx are retried; the answer is read up to 64 KiB.
async fn matrix_login(
    client: &reqwest::Client,
    m: &Matrix,
    user: &str,
    retry: &Retry,
    timeout: Duration,
) -> Result<Secret, String> {
    let body = m.login_body(user).to_string();
    let mut backoff = retry.first_backoff;
    let mut attempt = 1;
    let answer = loop {
        let sent = client
            .post(m.login_url())
            .timeout(timeout)
            .header("User-Agent", USER_AGENT)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let retryable = match &sent {
            Ok(r) => r.status().is_server_error() || r.status().as_u16() == 429,
            Err(_) => true,
        };
        if !retryable || attempt >= retry.attempts.max(1) {
            break sent;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(retry.max_backoff);
        attempt += 1;
    };
    let r = answer.map_err(|e| {
        if e.is_timeout() {
            "no answer in time".to_owned()
        } else {
            "request failed".to_owned()
        }
    })?;
    if !r.status().is_success() {
        return Err(format!(
            "HTTP {} (is the user and password right?)",
            r.status().as_u16()
        ));
    }
    let body = read_capped(r, 64 * 1024).await?;
    super::matrix::access_token_of(&body).ok_or_else(|| "answer has no access_token".to_owned())
}

async fn read_capped(mut r: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|_| "answer cut off".to_owned())? {
        if body.len().saturating_add(chunk.len()) > max {
            return Err(format!("answer larger than {} KiB", max / 1024));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The room id of `alias`, from the homeserver's directory. The answer is read up to 64 KiB.
async fn resolve_alias(
    client: &reqwest::Client,
    m: &Matrix,
    alias: &str,
    timeout: Duration,
) -> Result<String, String> {
    const MAX_ANSWER: usize = 64 * 1024;
    let mut r = client
        .get(m.alias_url(alias))
        .timeout(timeout)
        .header("User-Agent", USER_AGENT)
        .header(
            "Authorization",
            format!("Bearer {}", m.access_token.expose()),
        )
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "no answer in time".to_owned()
            } else {
                "request failed".to_owned()
            }
        })?;
    if !r.status().is_success() {
        return Err(format!("HTTP {}", r.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|_| "answer cut off".to_owned())? {
        if body.len().saturating_add(chunk.len()) > MAX_ANSWER {
            return Err("answer larger than 64 KiB".to_owned());
        }
        body.extend_from_slice(&chunk);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| "answer is not JSON".to_owned())?;
    match value.get("room_id").and_then(|v| v.as_str()) {
        Some(id) if id.starts_with('!') && id.len() <= 255 && !id.chars().any(char::is_control) => {
            Ok(id.to_owned())
        }
        _ => Err("answer has no room_id".to_owned()),
    }
}

/// A summary holds at most this many events; more make another summary.
const MAX_SUMMARY_EVENTS: usize = 200;
