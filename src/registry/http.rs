//! The one place registry HTTP requests go through.
//!
//! [`Transport::send`] holds a per-host permit, sends, reads the body incrementally up to the
//! caller's cap, retries 5xx, connection errors and timeouts with exponential backoff and
//! jitter, waits for a 429's `Retry-After` (up to a bound), records `ratelimit-remaining`, and
//! counts every attempt by (registry, method, status) in [`RequestStats`].
//!
//! Two clocks bound every request: each attempt, from connecting to the last body byte, has
//! `request_timeout`; the whole request — waiting for a permit, every attempt, backoff and
//! `Retry-After` waits — has `request_deadline`. A registry that drips bytes fails within the
//! deadline whatever it does. The reqwest client (timeouts, TLS, CA file, redirect rules) is
//! built here too.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{ErrorKind, RegistryOptions, lock, origin};
use crate::error_chain::error_chain;

/// How failed requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait before the first retry; doubled for each further one, with ±50% jitter.
    pub base_delay: Duration,
    /// The longest `Retry-After` lookout waits for; a longer one fails the request at once.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// The longest single backoff wait, however many attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The longest any configured timeout or deadline is taken to be, so that adding it to the
/// clock can never overflow.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Of an error answer (4xx, 5xx) lookout reads at most this much, for the registry's message.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// Requests made, by (registry, method, status); `status` is `error` when no answer came.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestCount {
    pub registry: String,
    pub method: String,
    pub status: String,
}

/// A snapshot of every registry request so far and the last rate-limit headers seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestStats {
    pub requests: BTreeMap<RequestCount, u64>,
    /// `ratelimit-remaining` by registry, from the last response that had it.
    pub ratelimit_remaining: BTreeMap<String, u64>,
    /// `ratelimit-limit` by registry.
    pub ratelimit_limit: BTreeMap<String, u64>,
    /// Tags a registry listed that are not tags by the distribution grammar, by registry:
    /// skipped, never shown or put in a URL.
    pub skipped_tags: BTreeMap<String, u64>,
}

impl RequestStats {
    /// Requests to `registry` in all.
    pub fn total(&self, registry: &str) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| k.registry == registry)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests to `registry` with `method` and `status`.
    pub fn count(&self, registry: &str, method: &str, status: &str) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| k.registry == registry && k.method == method && k.status == status)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A response read whole, within the cap the caller gave.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A failed send.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No answer (connection, DNS, TLS), after retries.
    Unreachable(String),
    /// Still 429 after waiting, or told to wait longer than lookout will.
    RateLimited(Option<Duration>),
    /// No complete answer within this long (an attempt's timeout or the request's deadline).
    TimedOut(Duration),
    /// The answer's body is larger than this many bytes.
    TooLarge(usize),
    /// Refused by lookout's own rules (a redirect that downgrades HTTPS).
    Refused(String),
}

impl SendError {
    pub(crate) fn into_kind(self, what: &str) -> ErrorKind {
        match self {
            Self::Unreachable(message) => ErrorKind::Unreachable {
                what: what.to_owned(),
                message,
            },
            Self::RateLimited(retry_after) => ErrorKind::RateLimited { retry_after },
            Self::TimedOut(after) => ErrorKind::TimedOut {
                what: what.to_owned(),
                after,
            },
            Self::TooLarge(limit) => ErrorKind::TooLarge {
                what: format!("the answer to {what}"),
                limit: bytes_text(limit),
            },
            Self::Refused(message) => ErrorKind::protocol(format!("{what}: {message}")),
        }
    }
}

/// `4 MiB`, `512 KiB`, `100 bytes`.
pub(crate) fn bytes_text(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n % KIB == 0 {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// Why one attempt failed.
enum AttemptError {
    Http(reqwest::Error),
    TimedOut,
    /// A 2xx answer (of this status) larger than the cap.
    TooLarge(StatusCode),
}

pub(crate) struct Transport {
    retry: RetryPolicy,
    timeout: Duration,
    deadline: Duration,
    max_per_host: usize,
    resolve: Vec<(String, SocketAddr)>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    stats: Mutex<RequestStats>,
}

impl Transport {
    pub(crate) fn new(options: &RegistryOptions) -> Self {
        let timeout = options
            .request_timeout
            .clamp(Duration::from_millis(1), MAX_WAIT);
        Self {
            retry: options.retry.clone(),
            timeout,
            deadline: options.request_deadline.clamp(timeout, MAX_WAIT),
            max_per_host: options.max_per_host.max(1),
            resolve: options.resolve.clone(),
            limits: Mutex::new(HashMap::new()),
            stats: Mutex::new(RequestStats::default()),
        }
    }

    /// The longest one request may take, retries and waits included.
    pub(crate) fn deadline(&self) -> Duration {
        self.deadline
    }

    /// A client with the request timeout, TLS verification on, `ca_file`'s certificates
    /// trusted besides the system's, and the redirect rules of [`origin::redirect_policy`].
    pub(crate) fn client(
        &self,
        ca_file: Option<&Path>,
        insecure: bool,
    ) -> Result<reqwest::Client, ErrorKind> {
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("lookout/", env!("CARGO_PKG_VERSION")))
            .redirect(origin::redirect_policy(insecure));
        for (name, addr) in &self.resolve {
            builder = builder.resolve(name, *addr);
        }
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ErrorKind::setup(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ErrorKind::setup(format!(
                    "CA file {} is not PEM certificates: {e}",
                    path.display()
                ))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        builder
            .build()
            .map_err(|e| ErrorKind::setup(format!("cannot set up HTTP client: {e}")))
    }

    pub(crate) fn stats(&self) -> RequestStats {
        lock(&self.stats).clone()
    }

    /// Counts `n` tags of `registry` skipped for not being tags.
    pub(crate) fn record_skipped_tags(&self, registry: &str, n: u64) {
        let mut stats = lock(&self.stats);
        let count = stats.skipped_tags.entry(registry.to_owned()).or_default();
        *count = count.saturating_add(n);
    }

    fn permit_pool(&self, host: &str) -> Arc<Semaphore> {
        lock(&self.limits)
            .entry(host.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_host)))
            .clone()
    }

    /// Counts one request of `registry`; `status` `None` means no answer came.
    pub(crate) fn record(&self, registry: &str, method: &str, status: Option<u16>) {
        let key = RequestCount {
            registry: registry.to_owned(),
            method: method.to_owned(),
            status: status.map_or_else(|| "error".to_owned(), |s| s.to_string()),
        };
        let mut stats = lock(&self.stats);
        let count = stats.requests.entry(key).or_default();
        *count = count.saturating_add(1);
    }

    fn record_rate_limit(&self, registry: &str, headers: &HeaderMap) {
        let value = |name: &str| {
            let v = headers.get(name)?.to_str().ok()?;
            // `76;w=21600`: the number before the window.
            v.split(';').next()?.trim().parse::<u64>().ok()
        };
        let (remaining, limit) = (value("ratelimit-remaining"), value("ratelimit-limit"));
        if remaining.is_none() && limit.is_none() {
            return;
        }
        let mut stats = lock(&self.stats);
        if let Some(n) = remaining {
            stats.ratelimit_remaining.insert(registry.to_owned(), n);
        }
        if let Some(n) = limit {
            stats.ratelimit_limit.insert(registry.to_owned(), n);
        }
    }

    /// Sends `request` for `registry` (the label requests are counted under), retrying as the
    /// policy says, reading at most `max_body` bytes of a 2xx answer. Any status comes back as
    /// a [`Reply`] except a 429 that outlasts the retries.
    pub(crate) async fn send(
        &self,
        registry: &str,
        client: &reqwest::Client,
        request: reqwest::Request,
        max_body: usize,
    ) -> Result<Reply, SendError> {
        let attempts = self.retry.attempts.max(1);
        self.send_attempts(registry, client, request, max_body, attempts, true)
            .await
    }

    /// Like [`Self::send`] with one attempt, and a 429 returned as an answer: for clients that
    /// retry and throttle themselves (the AWS SDK).
    pub(crate) async fn send_once(
        &self,
        registry: &str,
        client: &reqwest::Client,
        request: reqwest::Request,
        max_body: usize,
    ) -> Result<Reply, SendError> {
        self.send_attempts(registry, client, request, max_body, 1, false)
            .await
    }

    async fn send_attempts(
        &self,
        registry: &str,
        client: &reqwest::Client,
        request: reqwest::Request,
        max_body: usize,
        attempts: u32,
        wait_on_429: bool,
    ) -> Result<Reply, SendError> {
        let deadline = later(self.deadline);
        let url = request.url();
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        );
        let pool = self.permit_pool(&host);
        let method = request.method().clone();
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let last = attempt >= attempts;
            let this = request.try_clone().ok_or_else(|| {
                SendError::Unreachable("a request with a streaming body cannot be sent".into())
            })?;
            let Ok(permit) = tokio::time::timeout_at(deadline, pool.acquire()).await else {
                tracing::debug!(
                    registry,
                    "registry request waited its whole deadline for a connection slot"
                );
                self.record(registry, method.as_str(), None);
                return Err(SendError::TimedOut(self.deadline));
            };
            let attempt_ends = deadline.min(later(self.timeout));
            let result =
                tokio::time::timeout_at(attempt_ends, read_reply(client, this, &method, max_body))
                    .await
                    .unwrap_or(Err(AttemptError::TimedOut));
            drop(permit);
            let reply = match result {
                Ok(reply) => reply,
                Err(AttemptError::TooLarge(status)) => {
                    // Nothing to retry: the registry would send the same again.
                    self.record(registry, method.as_str(), Some(status.as_u16()));
                    return Err(SendError::TooLarge(max_body));
                }
                Err(AttemptError::Http(e)) if e.is_redirect() => {
                    self.record(registry, method.as_str(), None);
                    return Err(SendError::Refused(error_chain(&e)));
                }
                Err(e) => {
                    self.record(registry, method.as_str(), None);
                    let error = match e {
                        AttemptError::Http(e) if !e.is_timeout() => {
                            SendError::Unreachable(error_chain(&e))
                        }
                        _ if Instant::now() >= deadline => SendError::TimedOut(self.deadline),
                        _ => SendError::TimedOut(self.timeout),
                    };
                    if last || !self.sleep_before_retry(attempt, deadline).await {
                        return Err(error);
                    }
                    tracing::debug!(registry, attempt, error = ?error, "registry request failed; retrying");
                    continue;
                }
            };
            self.record(registry, method.as_str(), Some(reply.status.as_u16()));
            self.record_rate_limit(registry, &reply.headers);
            if reply.status == StatusCode::TOO_MANY_REQUESTS && wait_on_429 {
                let asked = retry_after(&reply.headers);
                let wait = asked.unwrap_or_else(|| self.backoff(attempt));
                let past_deadline = later(wait) >= deadline;
                if asked.is_some_and(|w| w > self.retry.max_retry_after) || past_deadline || last {
                    return Err(SendError::RateLimited(asked));
                }
                tracing::info!(
                    registry,
                    wait_s = wait.as_secs_f64(),
                    "registry rate limit (HTTP 429); waiting as asked"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            if reply.status.is_server_error()
                && !last
                && self.sleep_before_retry(attempt, deadline).await
            {
                tracing::debug!(
                    registry,
                    status = reply.status.as_u16(),
                    attempt,
                    "registry server error; retrying"
                );
                continue;
            }
            return Ok(reply);
        }
    }

    /// Waits the backoff before retry `attempt + 1`; `false` (without waiting) when that would
    /// pass the deadline.
    async fn sleep_before_retry(&self, attempt: u32, deadline: Instant) -> bool {
        let wait = self.backoff(attempt);
        if later(wait) >= deadline {
            return false;
        }
        tokio::time::sleep(wait).await;
        true
    }

    /// `base_delay · 2^(attempt-1)`, at most [`MAX_BACKOFF`], times a random factor in
    /// [0.5, 1.5).
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        let exp = self
            .retry
            .base_delay
            .checked_mul(factor)
            .unwrap_or(MAX_BACKOFF)
            .min(MAX_BACKOFF);
        exp.mul_f64(0.5 + fastrand::f64())
    }
}

/// One attempt: send, then read the body — all of a 2xx answer up to `max_body` (more is
/// `TooLarge`), the first [`ERROR_BODY_BYTES`] of any other.
async fn read_reply(
    client: &reqwest::Client,
    request: reqwest::Request,
    method: &Method,
    max_body: usize,
) -> Result<Reply, AttemptError> {
    let mut resp = client.execute(request).await.map_err(AttemptError::Http)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let strict = status.is_success();
    let cap = if strict {
        max_body
    } else {
        max_body.min(ERROR_BODY_BYTES)
    };
    // A HEAD answer's Content-Length is the size of what a GET would send.
    if strict && *method != Method::HEAD && resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(AttemptError::TooLarge(status));
    }
    // One buffer of the announced length (nothing for a HEAD, or for an answer that announces
    // none), grown as chunks come and never past the cap; each chunk is dropped at once, so
    // memory never holds more than the cap plus the HTTP client's own read buffer. Reserving
    // the whole cap up front, even untouched, costs memory for good: each 4-8 MiB reservation
    // raises glibc's mmap threshold, and later answers then land in the heap and stay resident
    // (an idle daemon grew by 46 MiB over five updates).
    let announced = resp
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|_| *method != Method::HEAD);
    let mut body = Vec::with_capacity(announced.unwrap_or(0).min(cap));
    while let Some(chunk) = resp.chunk().await.map_err(AttemptError::Http)? {
        let room = cap.saturating_sub(body.len());
        if chunk.len() > room {
            if strict {
                return Err(AttemptError::TooLarge(status));
            }
            body.extend_from_slice(chunk.get(..room).unwrap_or_default());
            break;
        }
        if body.capacity().saturating_sub(body.len()) < chunk.len() {
            // Doubling, as a Vec would, but never past the cap.
            let want = body
                .len()
                .saturating_add(chunk.len())
                .max(body.len().saturating_mul(2))
                .min(cap);
            body.reserve_exact(want.saturating_sub(body.len()));
        }
        body.extend_from_slice(&chunk);
    }
    body.shrink_to_fit();
    Ok(Reply {
        status,
        headers,
        body: Bytes::from(body),
    })
}

/// Now plus `wait` (at most [`MAX_WAIT`], so it cannot overflow the clock).
fn later(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait.min(MAX_WAIT)).unwrap_or(now)
}

/// `Retry-After` as seconds or an HTTP date; a date in the past is zero.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    Some(Duration::try_from(when.duration_since(now)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_never_overflows() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(
            "retry-after",
            "Thu, 31 Dec 9998 23:59:59 GMT".parse().unwrap(),
        );
        assert!(retry_after(&h).unwrap() > Duration::from_secs(3600 * 24 * 365 * 7000));
        // Beyond what a date can say: ignored, not a panic.
        h.insert(
            "retry-after",
            "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "18446744073709551615".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(u64::MAX)));
        for bad in ["soon", "-5", "1e9", "99999999999999999999999"] {
            h.insert("retry-after", bad.parse().unwrap());
            assert_eq!(retry_after(&h), None, "{bad}");
        }
    }

    #[test]
    fn backoff_is_bounded_whatever_the_attempt_and_base_delay() {
        let t = Transport::new(&RegistryOptions {
            retry: RetryPolicy {
                attempts: u32::MAX,
                base_delay: Duration::MAX,
                max_retry_after: Duration::MAX,
            },
            ..RegistryOptions::default()
        });
        for attempt in [0, 1, 2, 17, 64, u32::MAX] {
            let b = t.backoff(attempt);
            assert!(b < MAX_BACKOFF.mul_f64(1.5), "{attempt}: {b:?}");
        }
        let t = Transport::new(&RegistryOptions::default());
        let waits: Vec<Duration> = (0..50).map(|_| t.backoff(1)).collect();
        assert!(
            waits
                .iter()
                .all(|w| (Duration::from_millis(125)..Duration::from_millis(375)).contains(w))
        );
        assert!(waits.windows(2).any(|w| w[0] != w[1]), "jitter varies");
    }

    #[test]
    fn huge_timeouts_are_clamped_so_deadlines_never_overflow() {
        let t = Transport::new(&RegistryOptions {
            request_timeout: Duration::MAX,
            request_deadline: Duration::MAX,
            ..RegistryOptions::default()
        });
        assert_eq!(t.deadline(), MAX_WAIT);
        let _ = Instant::now() + t.deadline();
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes_text(4 * 1024 * 1024), "4 MiB");
        assert_eq!(bytes_text(64 * 1024), "64 KiB");
        assert_eq!(bytes_text(1000), "1000 bytes");
    }
}
