//! `lookout run`: the daemon. Checks on schedule, changes things only inside maintenance windows
//! and when not paused, serves the HTTP API and push hooks, and tells systemd how it is doing.
//!
//! Wiring only: the scheduler ([`crate::schedule`]), the engine ([`crate::engine`]), the API
//! ([`crate::api`]) and telemetry do the work. One pass runs at a time: a scheduled pass that
//! comes due while another runs is skipped and counted; a pass asked for through the API or a
//! push hook waits for the running one.
//!
//! Signals: `SIGTERM`/`SIGINT` stop new work, let a running update finish or roll back (bounded by
//! its timeouts), and exit 0; every step is already in the state file. `SIGHUP` reloads and
//! validates the configuration, keeping the old one (and saying why) when the new one is invalid.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::api::{self, ApiConfig, Backend, PushedRepository};
use crate::config::{self, Config};
use crate::engine::{Engine, PassOptions, ServiceOutcome};
use crate::notify;
use crate::registry::RequestStats;
use crate::runtime::Docker;
use crate::schedule::{Schedule, Scheduler, SystemClock};
use crate::state::Outcome;
use crate::telemetry::{self, Event};

/// The running daemon, as the API sees it.
pub struct Daemon {
    engine: Engine<Docker>,
    config_path: PathBuf,
    /// One pass at a time.
    pass_lock: tokio::sync::Mutex<()>,
    /// The last report per service, for `GET /api/v1/services`.
    last: Mutex<HashMap<String, ServiceOutcome>>,
    /// Registry request counts already turned into metrics.
    seen_requests: Mutex<RequestStats>,
    /// This daemon, for work that outlives an API request (a hook-triggered pass).
    me: Weak<Daemon>,
}

/// Runs the daemon until `shutdown` resolves (the CLI passes SIGTERM/SIGINT).
pub async fn run(
    config_path: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = config::load(config_path)?;
    if telemetry::init_logging(config.log_level, config.log_format).is_err() {
        tracing::debug!("logging was already set up");
    }
    for w in &config.warnings {
        tracing::warn!(problem = %w, "configuration");
    }
    let listen = config.listen;
    let api_config = ApiConfig {
        token: config.api_token.clone(),
        hook_secret: config.hook_secret.clone(),
    };
    let local = jiff::tz::TimeZone::system();
    let schedule = Schedule::from_config(&config, &local);
    let first_at_start = config.first_check_at_start;

    let (engine, deliveries) = Engine::start(config).await.context("cannot start")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let deliveries = tokio::spawn(deliveries.run(std::future::pending()));

    for r in engine.recover().await {
        tracing::warn!(service = %r.service, decision = ?r.decision, detail = %r.detail, "interrupted update finished at start");
    }
    let daemon = Arc::new_cyclic(|me| Daemon {
        engine,
        config_path: config_path.to_owned(),
        pass_lock: tokio::sync::Mutex::new(()),
        last: Mutex::new(HashMap::new()),
        seen_requests: Mutex::new(RequestStats::default()),
        me: me.clone(),
    });

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} (setting `listen` / `metrics_port`)")
        })?;
    tracing::info!(%listen, "HTTP API and /metrics listening");
    let router = api::router(daemon.clone(), api_config);
    let api_task = tokio::spawn(api::serve(listener, router, stopped(stop_rx.clone())));

    let _ = notify::ready();
    if let Some(every) = notify::watchdog_interval() {
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every / 2);
            loop {
                tokio::select! {
                    _ = tick.tick() => { let _ = notify::watchdog(); }
                    _ = rx.wait_for(|stop| *stop) => break,
                }
            }
        });
    }
    let reload = tokio::spawn(reload_on_sighup(daemon.clone(), stop_rx.clone()));

    // Shutdown: stop the scheduler from starting passes; a running pass is awaited by it.
    let (sched_tx, sched_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = sched_tx.send(true);
    });
    let scheduler = Scheduler::new(schedule, SystemClock, first_at_start, fastrand::Rng::new());
    let d = daemon.clone();
    let report = scheduler
        .run(
            stopped(sched_rx),
            || {
                let d = d.clone();
                async move { d.scheduled_pass().await }
            },
            || daemon.engine.telemetry.emit(Event::CheckSkipped),
        )
        .await;
    tracing::info!(
        passes = report.started,
        skipped = report.skipped,
        "stopping"
    );
    let _ = notify::stopping();
    // A pass asked for through the API may still run: wait for it.
    drop(daemon.pass_lock.lock().await);
    let _ = stop_tx.send(true);
    let _ = api_task.await;
    reload.abort();
    drop(daemon);
    let _ = tokio::time::timeout(Duration::from_secs(5), deliveries).await;
    Ok(())
}

async fn reload_on_sighup(daemon: Arc<Daemon>, mut stop: watch::Receiver<bool>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload by restarting");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = notify::reloading();
                match config::load(&daemon.config_path) {
                    Ok(new) => {
                        tracing::info!(services = new.services.len(), "configuration reloaded");
                        daemon.engine.reload(new);
                    }
                    Err(e) => tracing::error!(error = %e, "the new configuration is invalid; keeping the one in force"),
                }
                let _ = notify::ready();
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

impl Daemon {
    fn paused(&self, config: &Config) -> bool {
        config.pause_updates || self.engine.store.lock().expect("state lock").state().paused
    }

    /// A pass on schedule: every service, inside windows, unless paused.
    async fn scheduled_pass(&self) {
        let Ok(_guard) = self.pass_lock.try_lock() else {
            // An API- or hook-triggered pass runs; this one would only repeat it.
            self.engine.telemetry.emit(Event::CheckSkipped);
            return;
        };
        let config = self.engine.config();
        let opts = PassOptions {
            only: Vec::new(),
            dry_run: false,
            actor: "schedule".into(),
            paused: self.paused(&config),
            respect_windows: true,
        };
        self.pass_locked(&opts).await;
    }

    /// Runs a pass while holding the pass lock, and remembers its results.
    async fn pass_locked(&self, opts: &PassOptions) -> Vec<ServiceOutcome> {
        let outcomes = self.engine.pass(opts).await;
        self.sync_registry_metrics();
        let mut last = self.last.lock().expect("last lock");
        for o in &outcomes {
            last.insert(o.service.clone(), o.clone());
        }
        outcomes
    }

    async fn pass(&self, opts: PassOptions) -> Vec<ServiceOutcome> {
        let _guard = self.pass_lock.lock().await;
        self.pass_locked(&opts).await
    }

    /// Turns the registry layer's request counts since the last call into telemetry events.
    fn sync_registry_metrics(&self) {
        let now = self.engine.registries.stats();
        let mut seen = self.seen_requests.lock().expect("stats lock");
        for (key, count) in &now.requests {
            let before = seen.requests.get(key).copied().unwrap_or(0);
            for _ in before..*count {
                self.engine.telemetry.emit(Event::RegistryRequest {
                    registry: key.registry.clone(),
                    method: key.method.clone(),
                    status: key.status.parse().ok(),
                });
            }
        }
        for (registry, remaining) in &now.ratelimit_remaining {
            if seen.ratelimit_remaining.get(registry) != Some(remaining) {
                self.engine.telemetry.emit(Event::RateLimit {
                    registry: registry.clone(),
                    remaining: *remaining,
                });
            }
        }
        *seen = now;
    }

    fn service_view(&self, config: &Config, name: &str) -> Option<Value> {
        let spec = config.services.iter().find(|s| s.name == name)?;
        let store = self.engine.store.lock().expect("state lock");
        let state = store.state().services.get(name);
        let last = self.last.lock().expect("last lock").get(name).cloned();
        Some(json!({
            "name": spec.name,
            "compose_file": spec.compose_file,
            "compose_service": spec.compose_service,
            "policy": spec.policy.kind().as_str(),
            "enabled": spec.enabled,
            "running": state.and_then(|s| s.running.as_ref()).map(ToString::to_string),
            "available": last.as_ref().and_then(|l| l.to.clone()),
            "last_check": state.and_then(|s| s.last_check).map(|t| t.to_string()),
            "last_update": state.and_then(|s| s.last_update).map(|t| t.to_string()),
            "failed_candidate": state.and_then(|s| s.failed_candidate.as_ref()).map(|f| json!({"version": f.version.to_string(), "reason": f.reason})),
            "last_result": last,
            "in_flight": store.state().journal.iter().any(|e| e.intent.service == name),
        }))
    }
}

#[async_trait]
impl Backend for Daemon {
    fn metrics(&self) -> String {
        self.sync_registry_metrics();
        self.engine.telemetry.render_metrics()
    }

    async fn ready(&self) -> Result<(), String> {
        self.engine
            .runtime
            .version()
            .await
            .map_err(|e| format!("Docker: {e}"))?;
        let dir = self
            .engine
            .store
            .lock()
            .expect("state lock")
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let probe = dir.join(format!(".lookout-ready-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .map_err(|e| format!("state folder {} is not writable: {e}", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    fn services(&self) -> Vec<Value> {
        let config = self.engine.config();
        config
            .services
            .iter()
            .filter_map(|s| self.service_view(&config, &s.name))
            .collect()
    }

    fn service(&self, name: &str) -> Option<Value> {
        self.service_view(&self.engine.config(), name)
    }

    fn history(&self) -> Vec<Value> {
        let store = self.engine.store.lock().expect("state lock");
        let mut all: Vec<Value> = store
            .state()
            .services
            .iter()
            .flat_map(|(name, s)| {
                s.history.iter().map(move |h| {
                    json!({
                        "service": name,
                        "kind": h.kind,
                        "actor": h.actor,
                        "from": h.from.to_string(),
                        "to": h.to.to_string(),
                        "started_at": h.started_at.to_string(),
                        "finished_at": h.finished_at.to_string(),
                        "duration_ms": h.duration_ms,
                        "outcome": match &h.outcome {
                            Outcome::Committed => json!({"result": "committed"}),
                            Outcome::RolledBack { reason } => json!({"result": "rolled_back", "reason": reason}),
                            Outcome::RollbackFailed { reason } => json!({"result": "rollback_failed", "reason": reason}),
                            Outcome::Abandoned { reason } => json!({"result": "abandoned", "reason": reason}),
                        },
                    })
                })
            })
            .collect();
        all.sort_by(|a, b| b["finished_at"].as_str().cmp(&a["finished_at"].as_str()));
        all
    }

    async fn check(&self, only: Vec<String>) -> Result<Value, String> {
        let config = self.engine.config();
        let opts = PassOptions {
            only,
            dry_run: false,
            actor: "api".into(),
            paused: self.paused(&config),
            respect_windows: true,
        };
        let outcomes = self.pass(opts).await;
        Ok(json!({ "services": outcomes }))
    }

    /// An operator's explicit update: now, whatever the windows and pause say.
    async fn update(&self, service: &str) -> Result<Value, String> {
        let opts = PassOptions {
            only: vec![service.to_owned()],
            dry_run: false,
            actor: "api".into(),
            paused: false,
            respect_windows: false,
        };
        let outcomes = self.pass(opts).await;
        outcomes
            .into_iter()
            .next()
            .map(|o| json!(o))
            .ok_or_else(|| format!("no service {service:?}"))
    }

    async fn rollback(&self, service: &str) -> Result<Value, String> {
        let _guard = self.pass_lock.lock().await;
        let report = self.engine.rollback(service, "api").await?;
        Ok(json!({
            "service": report.service,
            "from": report.from,
            "to": report.to,
            "result": report.result.as_str(),
            "reason": report.result.reason(),
            "duration": report.duration.as_secs_f64(),
        }))
    }

    fn set_paused(&self, paused: bool) -> Result<(), String> {
        self.engine
            .store
            .lock()
            .expect("state lock")
            .set_paused(paused, jiff::Timestamp::now())
            .map_err(|e| e.to_string())?;
        tracing::info!(
            paused,
            "updates {} through the API",
            if paused { "paused" } else { "resumed" }
        );
        Ok(())
    }

    /// Starts a pass of the services using a pushed repository, without waiting for it.
    fn pushed(&self, repositories: &[PushedRepository]) -> Vec<String> {
        let config = self.engine.config();
        let names: Vec<String> = config
            .services
            .iter()
            .filter(|s| {
                repositories.iter().any(|r| {
                    r.repository == s.image.repository()
                        && r.registry
                            .as_deref()
                            .is_none_or(|host| same_registry(host, s.image.registry()))
                })
            })
            .map(|s| s.name.clone())
            .collect();
        if let Some(daemon) = self.me.upgrade().filter(|_| !names.is_empty()) {
            let only = names.clone();
            let paused = self.paused(&config);
            tokio::spawn(async move {
                let opts = PassOptions {
                    only,
                    dry_run: false,
                    actor: "hook".into(),
                    paused,
                    respect_windows: true,
                };
                daemon.pass(opts).await;
            });
        }
        names
    }
}

/// `docker.io` is also known as `index.docker.io` and `registry-1.docker.io`; hosts compare
/// without case.
fn same_registry(a: &str, b: &str) -> bool {
    let norm = |h: &str| {
        let h = h.to_ascii_lowercase();
        match h.as_str() {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
            _ => h,
        }
    };
    norm(a) == norm(b)
}
