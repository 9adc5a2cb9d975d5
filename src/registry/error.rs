//! Why a registry question has no answer. Every message names the registry and repository, and
//! the HTTP status when there was one; none contains a secret.

use std::fmt;
use std::time::Duration;

/// A failed registry lookup. Clone, so a tag list shared by many services can share its failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registry {registry}, repository {repository}: {kind}")]
pub struct RegistryError {
    pub registry: String,
    pub repository: String,
    pub kind: ErrorKind,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The registry answered with a status lookout cannot use.
    Status {
        /// What was asked: `HEAD manifest 1.2`, `GET tag list`.
        what: String,
        status: u16,
        /// The registry's own error code or message, when it gave one.
        detail: String,
    },
    /// The tag or digest does not exist.
    NotFound { what: String },
    /// Credentials are missing or wrong.
    Auth { message: String },
    /// Still rate limited (HTTP 429) after waiting; or told to wait longer than lookout will.
    RateLimited { retry_after: Option<Duration> },
    /// Connection refused, DNS or TLS, after retries.
    Unreachable { what: String, message: String },
    /// No complete answer in time: one attempt's timeout, a request's deadline (retries and
    /// waits included), or a service check's deadline.
    TimedOut { what: String, after: Duration },
    /// An answer beyond one of lookout's limits: a body's size, a tag list's size, tag count or
    /// pages. Nothing of it is used.
    TooLarge {
        /// `the answer to GET manifest 1.2`, `the tag list`.
        what: String,
        /// `4 MiB`, `100000 tags`.
        limit: String,
    },
    /// An answer that does not follow the protocol.
    Protocol { message: String },
    /// The adapter cannot be set up (CA file, credential helper, cloud credentials).
    Setup { message: String },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status {
                what,
                status,
                detail,
            } => {
                write!(f, "{what} failed with HTTP {status}")?;
                if !detail.is_empty() {
                    write!(f, " ({detail})")?;
                }
                Ok(())
            }
            Self::NotFound { what } => write!(f, "{what}: not found (HTTP 404)"),
            Self::Auth { message } => write!(f, "authentication failed: {message}"),
            Self::RateLimited {
                retry_after: Some(d),
            } => write!(
                f,
                "rate limited (HTTP 429); the registry asks to wait {}s",
                d.as_secs()
            ),
            Self::RateLimited { retry_after: None } => {
                write!(f, "rate limited (HTTP 429) after retrying")
            }
            Self::Unreachable { what, message } => write!(f, "{what}: cannot reach it: {message}"),
            Self::TimedOut { what, after } => write!(
                f,
                "{what}: no complete answer within {}; the registry is slow or stalls",
                seconds(*after)
            ),
            Self::TooLarge { what, limit } => write!(
                f,
                "{what} exceeds lookout's limit of {limit}; refused (a registry that sends this much is broken or hostile)"
            ),
            Self::Protocol { message } => write!(f, "unexpected answer: {message}"),
            Self::Setup { message } => write!(f, "{message}"),
        }
    }
}

/// `30s`, `1.5s`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl ErrorKind {
    pub(crate) fn too_large(what: impl Into<String>, limit: impl Into<String>) -> Self {
        Self::TooLarge {
            what: what.into(),
            limit: limit.into(),
        }
    }

    pub fn protocol(message: impl Into<String>) -> Self {
        Self::Protocol {
            message: message.into(),
        }
    }

    pub fn setup(message: impl Into<String>) -> Self {
        Self::Setup {
            message: message.into(),
        }
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self::Auth {
            message: message.into(),
        }
    }

    /// The error for this registry and repository.
    pub fn at(self, registry: &str, repository: &str) -> RegistryError {
        RegistryError {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            kind: self,
        }
    }
}
