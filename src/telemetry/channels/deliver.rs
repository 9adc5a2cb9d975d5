//! Delivery to notification channels: one bounded queue and one worker per channel, so a
//! slow or failing channel never delays another; each request is sent with the webhooks'
//! timeout and retries ([`crate::telemetry::webhook`]) and counted in
//! `lookout_notify_deliveries_total{channel, result}`.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{Message, Method, NotifyMode, NotifySpec};
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
        self.metrics
            .notify_deliveries
            .with_label_values(&[self.spec.name.as_str(), result])
            .inc();
    }

    async fn deliver(&self, client: &reqwest::Client, message: &Message) {
        let message = &self.spec.templates.apply(message);
        for request in self.spec.service.requests(message) {
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
                || self.count("retried"),
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
