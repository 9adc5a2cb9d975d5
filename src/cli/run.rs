//! `lookout run`: builds the daemon's world from the configuration file, Docker and the
//! process's signals, and hands it to [`crate::daemon::serve`].

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config;
use crate::daemon::{self, Parts, Reload};
use crate::engine::Engine;
use crate::schedule::SystemClock;
use crate::telemetry;

use super::EXIT_OK;

/// The daemon, until SIGTERM or SIGINT: load the configuration, set up logging, start the
/// engine, finish interrupted updates, bind the API's listener, turn SIGHUP into reloads.
pub(super) fn run(config_path: &Path) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing the work in progress"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: finishing the work in progress"),
            }
        };
        let config = config::load(config_path)?;
        if telemetry::init_logging(config.log_level, config.log_format).is_err() {
            tracing::debug!("logging was already set up");
        }
        daemon::log_panics();
        for w in &config.warnings {
            tracing::warn!(problem = %w, "configuration");
        }
        let listen = config.listen;
        let (engine, deliveries) = Engine::start(config.clone())
            .await
            .context("cannot start")?;
        daemon::recover(&engine).await;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| {
                format!("cannot listen on {listen} (setting `listen` / `metrics_port`)")
            })?;
        tracing::info!(%listen, "HTTP API and /metrics listening");
        let path = config_path.to_owned();
        let reload = Reload {
            requests: sighup(),
            load: Box::new(move || Ok(config::load(&path)?)),
        };
        let parts = Parts::new(
            &config,
            engine,
            deliveries,
            listener,
            Arc::new(SystemClock),
            reload,
        );
        daemon::serve(parts, shutdown).await?;
        Ok(EXIT_OK)
    })
}

/// One message per SIGHUP; closed at once when SIGHUP cannot be listened for.
fn sighup() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    // A reload already waiting covers this one too.
                    if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                        return;
                    }
                }
            });
        }
        Err(_) => tracing::warn!("cannot listen for SIGHUP; reload by restarting"),
    }
    rx
}
