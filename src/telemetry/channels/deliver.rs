//! Delivery to notification channels: one bounded queue and one worker per channel, so a
//! slow or failing channel never delays another; each request is sent with the webhooks'
//! timeout and retries ([`crate::telemetry::webhook`]) and counted in
//! `lookout_notify_deliveries_total{channel, result}`.

use std::time::Duration;

use tokio::sync::mpsc;

use std::collections::HashMap;

use super::matrix::Matrix;
use super::{Message, Method, NotifyMode, NotifySpec, Service};
use crate::telemetry::Metrics;
use crate::telemetry::webhook::{Retry, USER_AGENT, send_with_retries};

/// One channel's queue, on the emitting side.
#[derive(Debug)]
pub(crate) struct ChannelQueue {
    pub spec: NotifySpec,
    pub tx: mpsc::Sender<Message>,
}

/// One channel's worker.
pub(crate) struct ChannelWorker {
    pub spec: NotifySpec,
    pub rx: mpsc::Receiver<Message>,
    pub retry: Retry,
    pub metrics: Metrics,
    pub host: String,
    /// Matrix room aliases resolved so far.
    pub room_ids: HashMap<String, String>,
}

impl ChannelWorker {
    pub(crate) async fn run(mut self, client: reqwest::Client) {
        match self.spec.mode {
            NotifyMode::Event => {
                while let Some(message) = self.rx.recv().await {
                    self.deliver(&client, &message).await;
                }
            }
            NotifyMode::Summary { wait } => {
                while let Some(first) = self.rx.recv().await {
                    let (batch, open) = collect(&mut self.rx, first, wait).await;
                    if let Some(summary) = Message::summary(&batch, &self.host) {
                        self.deliver(&client, &summary).await;
                    }
                    if !open {
                        return;
                    }
                }
            }
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

    async fn deliver(&mut self, client: &reqwest::Client, message: &Message) {
        let message = &self.spec.templates.apply(message);
        let resolved;
        let service = match &self.spec.service {
            Service::Matrix(m) if m.rooms.iter().any(|r| !r.starts_with('!')) => {
                let m = m.clone();
                resolved = Service::Matrix(self.resolve_rooms(client, &m).await);
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
                    tracing::warn!(channel = %self.spec.name, service = self.spec.service.name(), id = %message.id, error = %error, "notification delivery failed");
                }
            }
        }
    }
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

/// `first` and every message that follows it with less than `wait` between two; `false` when
/// the queue closed.
async fn collect(
    rx: &mut mpsc::Receiver<Message>,
    first: Message,
    wait: Duration,
) -> (Vec<Message>, bool) {
    let mut batch = vec![first];
    while batch.len() < MAX_SUMMARY_EVENTS {
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(m)) => batch.push(m),
            Ok(None) => return (batch, false),
            Err(_) => return (batch, true),
        }
    }
    (batch, true)
}

/// A summary holds at most this many events; more make another summary.
const MAX_SUMMARY_EVENTS: usize = 200;
