//! `GET /api/v1/events`: every typed event as it is emitted, as Server-Sent Events. The events
//! are the ones [`crate::telemetry::Telemetry::emit`] turns into log lines, metrics and
//! webhooks, so the stream, the logs and the webhooks never disagree; the page listens to it.
//!
//! Each message is `event: <name>` and `data: <one line of JSON>` ([`LiveEvent`]). Per-request
//! registry counts (`registry_request`) are left out: `/metrics` counts them. Besides the typed
//! events, `event: changed` names the services whose view (`GET /api/v1/services/{name}`)
//! changed, once it has: a pass records its results when it ends, after its events, so a
//! client redraws on `changed` and not on the events themselves. A listener that
//! falls more than a thousand events behind gets `event: lagged` (reload what you show), and
//! every 15 s a comment keeps proxies from closing a quiet stream. At most
//! [`super::Limits::max_streams`] streams are open at once; the stream ends when the server
//! stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use super::{S, error, read_denied};
use crate::telemetry::Event;

/// One message of the stream.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct LiveEvent {
    /// `check_finished`, `check_skipped`, `update_available`, `update_started`, `updated`,
    /// `rolled_back`, `update_failed`, `state_restored`, `rate_limit`, `pass_started`,
    /// `pass_finished`; and `changed`.
    pub event: &'static str,
    /// When it was sent (RFC 3339).
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `up_to_date`, `update_available` or `failed`, for `check_finished`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The step that failed, for `update_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Requests left at the registry, for `rate_limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// The services whose view changed, for `changed` (empty: all of them); those a pass
    /// looked at, for `pass_finished`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
}

/// The stream's message for `event`, or `None` for events it leaves out. Pure.
pub(crate) fn live(event: &Event, at: jiff::Timestamp) -> Option<LiveEvent> {
    let mut e = LiveEvent {
        event: "",
        at: at.to_string(),
        service: None,
        result: None,
        old_image: None,
        new_image: None,
        reason: None,
        stage: None,
        registry: None,
        remaining: None,
        services: None,
    };
    match event {
        Event::CheckFinished {
            service,
            result,
            update_available,
            ..
        } => {
            e.event = "check_finished";
            e.service = Some(service.clone());
            e.result = Some(result.as_str());
            e.new_image = update_available.as_ref().map(|n| n.image.clone());
        }
        Event::CheckSkipped => e.event = "check_skipped",
        Event::StateRestored { .. } => e.event = "state_restored",
        Event::RegistryRequest { .. } => return None,
        Event::PassStarted => e.event = "pass_started",
        // The views hold a pass's results a moment later: `changed` follows.
        Event::PassFinished { services } => {
            e.event = "pass_finished";
            e.services = Some(services.iter().map(|p| p.service.clone()).collect());
        }
        Event::RateLimit {
            registry,
            remaining,
        } => {
            e.event = "rate_limit";
            e.registry = Some(registry.clone());
            e.remaining = Some(*remaining);
        }
        Event::UpdateAvailable(_)
        | Event::UpdateStarted(_)
        | Event::Updated(_)
        | Event::RolledBack { .. }
        | Event::UpdateFailed { .. } => {
            let kind = event.kind()?;
            let u = event.update()?;
            e.event = kind.as_str();
            e.service = Some(u.service.clone());
            e.old_image = Some(u.old_image.clone());
            e.new_image = Some(u.new_image.clone());
            e.reason = event.reason().map(str::to_owned);
            if let Event::UpdateFailed { stage, .. } = event {
                e.stage = Some(stage.as_str());
            }
        }
    }
    Some(e)
}

fn message(e: &LiveEvent) -> SseEvent {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".to_owned());
    SseEvent::default().event(e.event).data(data)
}

/// What one stream listens to.
struct Listen {
    events: tokio::sync::broadcast::Receiver<Event>,
    changes: tokio::sync::broadcast::Receiver<Vec<String>>,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The stream's place under `max_streams`.
    _permit: tokio::sync::OwnedSemaphorePermit,
    hello: bool,
}

impl Listen {
    /// The next message; `None` ends the stream (the server stops).
    async fn next(&mut self) -> Option<SseEvent> {
        if std::mem::take(&mut self.hello) {
            return Some(SseEvent::default().event("hello").data("{}"));
        }
        let lagged = |missed: u64| {
            SseEvent::default()
                .event("lagged")
                .data(format!("{{\"missed\":{missed}}}"))
        };
        loop {
            tokio::select! {
                got = self.events.recv() => match got {
                    Ok(event) => {
                        if let Some(e) = live(&event, jiff::Timestamp::now()) {
                            return Some(message(&e));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => return Some(lagged(missed)),
                    Err(RecvError::Closed) => return None,
                },
                got = self.changes.recv() => match got {
                    Ok(services) => return Some(message(&changed(services, jiff::Timestamp::now()))),
                    Err(RecvError::Lagged(missed)) => return Some(lagged(missed)),
                    Err(RecvError::Closed) => return None,
                },
                _ = self.stopping.wait_for(|stop| *stop) => return None,
            }
        }
    }
}

/// The `changed` message for `services`. Pure.
pub(crate) fn changed(services: Vec<String>, at: jiff::Timestamp) -> LiveEvent {
    LiveEvent {
        event: "changed",
        at: at.to_string(),
        service: None,
        result: None,
        old_image: None,
        new_image: None,
        reason: None,
        stage: None,
        registry: None,
        remaining: None,
        services: Some(services),
    }
}

/// Live events, as Server-Sent Events.
#[utoipa::path(get, path = "/api/v1/events", tag = "lookout",
    responses(
        (status = 200, description = "`text/event-stream`: one `event:`/`data:` message per event; `data` is a LiveEvent in JSON", content_type = "text/event-stream", body = LiveEvent),
        (status = 401, description = "No or a wrong bearer token", body = super::model::ErrorBody),
        (status = 503, description = "Too many streams are open", body = super::model::ErrorBody),
    ))]
pub(crate) async fn stream(State(s): State<S>, headers: HeaderMap) -> Response {
    if let Some(r) = read_denied(&s, &headers) {
        return r;
    }
    let Ok(permit) = s.streams.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live event streams are open; retry later",
        );
    };
    let listen = Listen {
        events: s.backend.subscribe(),
        changes: s.backend.changes(),
        stopping: s.stopping.clone(),
        _permit: permit,
        hello: true,
    };
    let events = futures_util::stream::unfold(listen, |mut l| async move {
        let next = l.next().await?;
        Some((Ok::<_, Infallible>(next), l))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // Proxies (nginx) buffer answers unless told not to.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{CheckResult, Stage, UpdateInfo};

    fn info() -> UpdateInfo {
        UpdateInfo {
            service: "web".into(),
            compose_service: "web".into(),
            compose_file: "/srv/app/compose.yaml".into(),
            old_image: "nginx:1.27.3".into(),
            new_image: "nginx:1.27.4".into(),
            old_digest: None,
            new_digest: None,
            started_at: jiff::Timestamp::UNIX_EPOCH,
            duration: None,
        }
    }

    #[test]
    fn each_event_becomes_one_message_but_registry_requests() {
        let at = jiff::Timestamp::UNIX_EPOCH;
        let check = live(
            &Event::CheckFinished {
                service: "web".into(),
                result: CheckResult::UpdateAvailable,
                update_available: Some(crate::telemetry::NewerImage {
                    image: "nginx:1.27.4".into(),
                    digest: None,
                }),
                duration: Duration::from_millis(10),
            },
            at,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&check).unwrap(),
            serde_json::json!({"event": "check_finished", "at": "1970-01-01T00:00:00Z", "service": "web", "result": "update_available", "new_image": "nginx:1.27.4"})
        );
        let failed = live(
            &Event::UpdateFailed {
                update: info(),
                stage: Stage::Health,
                reason: "unhealthy".into(),
            },
            at,
        )
        .unwrap();
        assert_eq!(
            (failed.event, failed.stage, failed.reason.as_deref()),
            ("update_failed", Some("health"), Some("unhealthy"))
        );
        assert_eq!(live(&Event::Updated(info()), at).unwrap().event, "updated");
        assert_eq!(
            live(&Event::UpdateStarted(info()), at).unwrap().event,
            "update_started"
        );
        assert_eq!(
            live(
                &Event::RolledBack {
                    update: info(),
                    reason: "x".into()
                },
                at
            )
            .unwrap()
            .event,
            "rolled_back"
        );
        assert!(
            live(
                &Event::RegistryRequest {
                    registry: "r".into(),
                    method: "GET".into(),
                    status: Some(200)
                },
                at
            )
            .is_none()
        );
        let rate = live(
            &Event::RateLimit {
                registry: "docker.io".into(),
                remaining: 7,
            },
            at,
        )
        .unwrap();
        assert_eq!((rate.event, rate.remaining), ("rate_limit", Some(7)));
    }
}
