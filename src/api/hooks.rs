//! Registry push hooks: `POST /hooks/{source}` starts an immediate check of the services that use
//! the pushed repository.
//!
//! Each delivery is authenticated the strongest way its sender allows, before its payload is
//! parsed:
//! - **signed** (`X-Lookout-Signature` from any sender; GitHub's `X-Hub-Signature-256`, which
//!   GitHub deliveries must carry): the header is checked before the body is read (well-formed,
//!   timestamp within ±5 min), then the HMAC over the raw body, in constant time. Reading a body
//!   before it is authenticated takes one of a few permits, so strangers cannot make lookout
//!   hold many bodies.
//! - **static secret** in a header (`X-Lookout-Hook-Secret` or `Authorization: Bearer`), for
//!   senders that can only add fixed headers (distribution); checked before the body is read.
//! - **static secret in the URL** (`/hooks/dockerhub/SECRET` or `?secret=`), from Docker Hub
//!   only: it can neither sign nor add headers. The secret is never logged.
//!
//! Replays are refused where the sender gives something to recognise them by: GitHub's
//! `X-GitHub-Delivery`, the signature itself, distribution's event ids and timestamps, Docker
//! Hub's `pushed_at`. distribution retries every answer that is not 2xx for ever, so its stale or
//! replayed events are answered 202 and ignored rather than refused.
//!
//! Without a `hook_secret` configured, hooks are off.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use jiff::Timestamp;
use serde_json::json;

use super::payload::{self, PushedRepository, Source};
use super::signature::{
    self, GITHUB_HEADER, GitHubSignature, LOOKOUT_HEADER, LookoutSignature, SignatureError,
};
use super::{Limits, S, error, every_minute, same_secret};

/// How a delivery proved it comes from someone who knows `hook_secret`.
enum Auth {
    /// A static secret, compared before the body is read.
    Secret,
    /// Checked once the body is read.
    Lookout(LookoutSignature),
    GitHub(GitHubSignature),
}

pub(super) async fn hook(
    State(s): State<S>,
    Path(source): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let url_secret = q.get("secret").map(String::as_str);
    handle(&s, &source, url_secret, &headers, body).await
}

pub(super) async fn hook_with_secret(
    State(s): State<S>,
    Path((source, secret)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&s, &source, Some(&secret), &headers, body).await
}

async fn handle(
    s: &S,
    source: &str,
    url_secret: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let Some(secret) = &s.config.hook_secret else {
        return error(
            StatusCode::FORBIDDEN,
            "push hooks are off: set hook_secret in the configuration to enable them",
        );
    };
    let Some(source) = Source::from_path(source) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown hook source; use /hooks/dockerhub, /hooks/registry or /hooks/github",
        );
    };
    let secret = secret.expose().as_bytes();
    let now = Timestamp::now();
    let auth = match authenticate(source, url_secret, headers, secret, now) {
        Ok(auth) => auth,
        Err(why) => return refused(source, StatusCode::UNAUTHORIZED, why),
    };

    // A body whose sender is not known yet takes a permit, so unauthenticated senders can make
    // lookout hold only a few bodies at once.
    let permit = match auth {
        Auth::Secret => None,
        Auth::Lookout(_) | Auth::GitHub(_) => match s.unverified_bodies.clone().try_acquire_owned()
        {
            Ok(permit) => Some(permit),
            Err(_) => {
                return refused(
                    source,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many hook deliveries are being read; retry later".into(),
                );
            }
        },
    };
    let body = match read_body(body, headers, &s.limits).await {
        Ok(body) => body,
        Err((status, why)) => return refused(source, status, why),
    };
    let verified = match &auth {
        Auth::Secret => Ok(()),
        Auth::Lookout(sig) => sig.verify(secret, &body),
        Auth::GitHub(sig) => sig.verify(secret, &body),
    };
    drop(permit);
    if let Err(e) = verified {
        return refused(source, StatusCode::UNAUTHORIZED, e.to_string());
    }

    // A signed delivery is one delivery: the same one again is a replay.
    let delivery_key = match &auth {
        Auth::Secret => None,
        Auth::Lookout(sig) => Some(sig.replay_key()),
        Auth::GitHub(sig) => Some(match header_str(headers, "x-github-delivery") {
            Some(id) => [b"github:".as_slice(), id.as_bytes()].concat(),
            None => sig.replay_key(),
        }),
    };
    if let Some(key) = delivery_key
        && !lock(&s.replays).first_time(&key)
    {
        return refused(
            source,
            StatusCode::CONFLICT,
            "this delivery was already accepted (a replay); send a new one".into(),
        );
    }

    let github_event = header_str(headers, "x-github-event");
    if source == Source::GitHub && github_event == Some("ping") {
        return (StatusCode::OK, Json(json!({ "ping": "ok" }))).into_response();
    }
    let parsed = match payload::parse(source, github_event, &body) {
        Ok(p) => p,
        Err(e) => return refused(source, StatusCode::BAD_REQUEST, e.to_string()),
    };

    // Each push again, where the payload dates or names it.
    let (mut stale, mut replayed) = (0usize, 0usize);
    let mut repositories: Vec<PushedRepository> = Vec::new();
    {
        let mut replays = lock(&s.replays);
        for push in parsed.pushes {
            if push.at.is_some_and(|at| !signature::fresh(at, now)) {
                stale += 1;
                continue;
            }
            let r = &push.repository;
            let key = match source {
                Source::Distribution => push.id.as_ref().map(|id| format!("registry:{id}")),
                Source::DockerHub => push.at.map(|at| {
                    let tag = r.tag.as_deref().unwrap_or("");
                    format!("dockerhub:{}:{tag}:{at}", r.repository)
                }),
                Source::GitHub => None,
            };
            if key.is_some_and(|k| !replays.first_time(k.as_bytes())) {
                replayed += 1;
                continue;
            }
            repositories.push(push.repository);
        }
    }
    if repositories.is_empty() && stale + replayed > 0 && source != Source::Distribution {
        let why = if stale > 0 {
            format!(
                "the push is older than {} s (or dated in the future); lookout checks it at the next scheduled check",
                signature::WINDOW.as_secs()
            )
        } else {
            "this push was already delivered (a replay)".to_owned()
        };
        return refused(source, StatusCode::CONFLICT, why);
    }

    let services = if repositories.is_empty() {
        Vec::new()
    } else {
        s.backend.pushed(&repositories)
    };
    tracing::info!(
        source = source.as_str(),
        repositories = repositories.len(),
        skipped = parsed.skipped,
        stale,
        replayed,
        services = ?services,
        "push hook"
    );
    let mut answer = json!({ "checking": services });
    if stale > 0 {
        answer["stale"] = stale.into();
    }
    if replayed > 0 {
        answer["replayed"] = replayed.into();
    }
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

/// Decides from the headers (and the URL secret) alone, before any of the body is read.
fn authenticate(
    source: Source,
    url_secret: Option<&str>,
    headers: &HeaderMap,
    secret: &[u8],
    now: Timestamp,
) -> Result<Auth, String> {
    if let Some(value) = headers.get(LOOKOUT_HEADER) {
        let sig = value
            .to_str()
            .map_err(|_| SignatureError::MalformedLookout {
                header: LOOKOUT_HEADER,
            })
            .and_then(LookoutSignature::parse)
            .map_err(|e| e.to_string())?;
        sig.fresh(now).map_err(|e| e.to_string())?;
        return Ok(Auth::Lookout(sig));
    }
    if source == Source::GitHub {
        let value = header_str(headers, GITHUB_HEADER).ok_or_else(|| {
            format!("GitHub deliveries must be signed: set the webhook's secret to hook_secret ({GITHUB_HEADER} is missing)")
        })?;
        return GitHubSignature::parse(value)
            .map(Auth::GitHub)
            .map_err(|e| e.to_string());
    }
    let in_header = header_str(headers, "x-lookout-hook-secret").or_else(|| {
        header_str(headers, header::AUTHORIZATION.as_str())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
    });
    let given = match (in_header, url_secret) {
        (Some(given), _) => given,
        (None, Some(given)) if source == Source::DockerHub => given,
        (None, Some(_)) => {
            return Err("a secret in the URL is accepted from Docker Hub only; send it as the X-Lookout-Hook-Secret header, or sign deliveries with X-Lookout-Signature".into());
        }
        (None, None) => {
            return Err("missing hook secret: send the X-Lookout-Hook-Secret header or sign with X-Lookout-Signature (Docker Hub: /hooks/dockerhub/<hook_secret>)".into());
        }
    };
    if same_secret(given.as_bytes(), secret) {
        Ok(Auth::Secret)
    } else {
        Err("wrong hook secret".into())
    }
}

/// The body, within the size cap and the read deadline.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limits: &Limits,
) -> Result<Bytes, (StatusCode, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("hook bodies are limited to {} bytes", limits.max_body),
        )
    };
    let announced =
        header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limits.max_body as u64) {
        return Err(too_large());
    }
    let read = Limited::new(body, limits.max_body).collect();
    match tokio::time::timeout(limits.body_read_timeout, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err((StatusCode::BAD_REQUEST, "the body could not be read".into())),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {:?}",
                limits.body_read_timeout
            ),
        )),
    }
}

/// An answer refusing a delivery; the reason is logged at most once a minute, without the
/// request's URL or body.
fn refused(source: Source, status: StatusCode, why: String) -> Response {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    if every_minute(&LAST) {
        tracing::warn!(source = source.as_str(), status = status.as_u16(), reason = %why, "push hook refused (further refusals this minute are not logged)");
    } else {
        tracing::debug!(source = source.as_str(), status = status.as_u16(), reason = %why, "push hook refused");
    }
    let mut response = error(status, why);
    if !status.is_success() {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
