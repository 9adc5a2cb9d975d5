//! The one place registry HTTP requests go through.
//!
//! [`Transport::send`] holds a per-host permit, sends, retries 5xx and connection errors with
//! exponential backoff and jitter, waits for a 429's `Retry-After` (up to a bound), reads the
//! body, records `ratelimit-remaining`, and counts every attempt by (registry, method, status)
//! in [`RequestStats`]. The reqwest client (timeout, TLS, CA file) is built here too.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;

use super::{ErrorKind, RegistryOptions};

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

/// A response read whole (registry answers lookout asks for are small: manifests, tag pages).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A failed send: no answer, or still 429 after waiting.
#[derive(Debug)]
pub enum SendError {
    Unreachable(String),
    RateLimited(Option<Duration>),
}

impl SendError {
    pub fn into_kind(self, what: &str) -> ErrorKind {
        match self {
            Self::Unreachable(message) => ErrorKind::Unreachable {
                what: what.to_owned(),
                message,
            },
            Self::RateLimited(retry_after) => ErrorKind::RateLimited { retry_after },
        }
    }
}

pub struct Transport {
    retry: RetryPolicy,
    timeout: Duration,
    max_per_host: usize,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    stats: Mutex<RequestStats>,
}

impl Transport {
    pub fn new(options: &RegistryOptions) -> Self {
        Self {
            retry: options.retry.clone(),
            timeout: options.request_timeout,
            max_per_host: options.max_per_host.max(1),
            limits: Mutex::new(HashMap::new()),
            stats: Mutex::new(RequestStats::default()),
        }
    }

    /// A client with the request timeout, TLS verification on, and `ca_file`'s certificates
    /// trusted besides the system's.
    pub fn client(&self, ca_file: Option<&Path>) -> Result<reqwest::Client, ErrorKind> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("lookout/", env!("CARGO_PKG_VERSION")))
            // Redirects (blob storage) go to other hosts; follow a few, never to plain HTTP
            // from HTTPS (reqwest refuses to send auth headers across hosts).
            .redirect(reqwest::redirect::Policy::limited(5));
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

    pub fn stats(&self) -> RequestStats {
        self.stats.lock().expect("stats lock").clone()
    }

    fn permit_pool(&self, host: &str) -> Arc<Semaphore> {
        self.limits
            .lock()
            .expect("limits lock")
            .entry(host.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_host)))
            .clone()
    }

    fn record(&self, registry: &str, method: &Method, status: Option<StatusCode>) {
        let key = RequestCount {
            registry: registry.to_owned(),
            method: method.as_str().to_owned(),
            status: status.map_or_else(|| "error".to_owned(), |s| s.as_u16().to_string()),
        };
        *self
            .stats
            .lock()
            .expect("stats lock")
            .requests
            .entry(key)
            .or_default() += 1;
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
        let mut stats = self.stats.lock().expect("stats lock");
        if let Some(n) = remaining {
            stats.ratelimit_remaining.insert(registry.to_owned(), n);
        }
        if let Some(n) = limit {
            stats.ratelimit_limit.insert(registry.to_owned(), n);
        }
    }

    /// Sends `request` for `registry` (the label requests are counted under), retrying as the
    /// policy says. Any status comes back as a [`Reply`] except a 429 that outlasts the retries.
    pub async fn send(
        &self,
        registry: &str,
        client: &reqwest::Client,
        request: reqwest::Request,
    ) -> Result<Reply, SendError> {
        let host = request.url().host_str().unwrap_or_default().to_owned()
            + &request
                .url()
                .port()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
        let pool = self.permit_pool(&host);
        let method = request.method().clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.attempts;
            let this = request
                .try_clone()
                .expect("registry requests have no streaming body");
            let permit = pool.acquire().await.expect("semaphore is never closed");
            let result = match client.execute(this).await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    resp.bytes().await.map(|body| Reply {
                        status,
                        headers,
                        body,
                    })
                }
                Err(e) => Err(e),
            };
            drop(permit);
            let reply = match result {
                Ok(reply) => reply,
                Err(e) => {
                    self.record(registry, &method, None);
                    if last {
                        return Err(SendError::Unreachable(error_chain(&e)));
                    }
                    tracing::debug!(registry, error = %error_chain(&e), attempt, "registry request failed; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    continue;
                }
            };
            self.record(registry, &method, Some(reply.status));
            self.record_rate_limit(registry, &reply.headers);
            if reply.status == StatusCode::TOO_MANY_REQUESTS {
                let wait = retry_after(&reply.headers);
                match wait {
                    Some(w) if w > self.retry.max_retry_after => {
                        return Err(SendError::RateLimited(Some(w)));
                    }
                    _ if last => return Err(SendError::RateLimited(wait)),
                    _ => {}
                }
                let wait = wait.unwrap_or_else(|| self.backoff(attempt));
                tracing::info!(
                    registry,
                    wait_s = wait.as_secs_f64(),
                    "registry rate limit (HTTP 429); waiting as asked"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            if reply.status.is_server_error() && !last {
                tracing::debug!(
                    registry,
                    status = reply.status.as_u16(),
                    attempt,
                    "registry server error; retrying"
                );
                tokio::time::sleep(self.backoff(attempt)).await;
                continue;
            }
            return Ok(reply);
        }
    }

    /// `base_delay · 2^(attempt-1)`, times a random factor in [0.5, 1.5).
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.retry.base_delay * 2u32.saturating_pow(attempt.saturating_sub(1).min(10));
        exp.mul_f64(0.5 + jitter())
    }
}

/// A number in [0, 1) that differs between calls and processes (xorshift seeded from the clock).
fn jitter() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    Some(Duration::try_from(when - now).unwrap_or_default())
}

/// A reqwest error with its causes (`error sending request: connection refused`).
fn error_chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let xs: Vec<f64> = (0..100).map(|_| jitter()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(xs.windows(2).any(|w| w[0] != w[1]));
    }
}
