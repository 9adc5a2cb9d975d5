//! The `tracing` subscriber: plain or JSON lines, the same events and fields either way.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// A log level name as operators write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub(crate) const NAMES: &'static [&'static str] = &["trace", "debug", "info", "warn", "error"];

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "trace" => Some(Self::Trace),
            "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warn" | "warning" => Some(Self::Warn),
            "error" => Some(Self::Error),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

impl LogFormat {
    pub(crate) const NAMES: &'static [&'static str] = &["plain", "json"];

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "plain" | "text" => Some(Self::Plain),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// The subscriber lookout logs through, writing to `writer` without colours. lookout's own
/// events are kept from `level` up; other crates' from `warn` up. `format` only picks the
/// formatter.
pub fn subscriber<W>(level: LogLevel, format: LogFormat, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    build(level, format, writer, false)
}

fn build<W>(
    level: LogLevel,
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::new(format!("warn,lookout={}", level.as_str()));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(crate::redact::MakeRedacting(writer))
        .with_ansi(ansi && format == LogFormat::Plain);
    let layer: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Plain => layer.boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    Registry::default().with(layer).with(filter)
}

/// Installs [`subscriber`] writing to stderr as the global default, with colours when stderr is
/// a terminal. Fails when a global subscriber is already set.
pub fn init_logging(level: LogLevel, format: LogFormat) -> Result<(), LoggingError> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing::subscriber::set_global_default(build(level, format, std::io::stderr, ansi))
        .map_err(|_| LoggingError::AlreadySet)
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("logging is already set up in this process")]
    AlreadySet,
}
