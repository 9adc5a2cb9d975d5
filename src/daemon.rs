//! `lookout run`: the daemon. Checks on schedule, changes things only inside maintenance windows
//! and when not paused, serves the HTTP API and push hooks, and tells systemd how it is doing.
//!
//! Wiring only: the scheduler ([`crate::schedule`]), the engine ([`crate::engine`]), the API
//! ([`crate::api`]) and telemetry do the work. The daemon builds none of its world: [`serve`]
//! takes the engine (over any container runtime and compose), the bound listener, the
//! scheduler's clock, the reload requests and the shutdown future as [`Parts`], as mini-redis's
//! server takes its listener and shutdown. `lookout run` builds them in `src/cli/run.rs`; the
//! in-process tests build them from fakes (`tests/daemon_fakes.rs`).
//!
//! What waits for what: checks take no lock, so passes asked for by the schedule, the API and
//! push hooks may run side by side; each update and rollback takes the engine's update lock (one
//! change at a time on the host) and never waits for a check of another service. A scheduled
//! pass that comes due while another pass over every service runs is skipped and counted. Push
//! hooks are coalesced per service ([`Coalescer`]): a burst runs one check of the services using
//! the pushed repository.
//!
//! Signals: `SIGTERM`/`SIGINT` cancel the checks in flight, start no new update, let a running
//! update finish or roll back (bounded by its timeouts), stop the API and webhook deliveries
//! (each given a few seconds), and exit 0; every step is already in the state file. `SIGHUP`
//! reloads and validates the configuration, keeping the old one (and saying why) when the new
//! one is invalid.
//!
//! A panic anywhere below is a bug, but never the end of the daemon: it is logged, the service
//! whose check or update it interrupted fails (see [`crate::engine::pipeline`]), and the rest
//! goes on.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing
    )
)]

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use jiff::Timestamp;
use tokio::sync::{mpsc, watch};

use crate::api::model::{
    CheckBody, FailedCandidateView, HistoryOutcome, HistoryView, ImageOrigin, Origin, RollbackView,
    ServiceDetails, ServiceView, WindowView,
};
use crate::api::{self, ApiConfig, ApiError, Backend, PushedRepository};
use crate::config::{Config, ServiceSpec};
use crate::engine::pipeline::panic_message;
use crate::engine::{Engine, PassOptions, RollbackError, ServiceOutcome, ServiceResult, lock};
use crate::notify;
use crate::reference::ImageRef;
use crate::registry::RequestStats;
use crate::runtime::{Compose, ContainerRuntime};
use crate::schedule::{CheckFn, Clock, Coalescer, Schedule, Scheduler, WindowDecision, Windows};
use crate::state::{ChangeKind, ChangeOutcome};
use crate::telemetry::{Deliveries, Event, InstallRequest};

/// How long a push hook's check waits for more hooks of the same push.
pub(crate) const HOOK_DEBOUNCE: Duration = Duration::from_secs(1);
/// How long the API server gets to finish its requests at shutdown.
const API_GRACE: Duration = Duration::from_secs(3);
/// How long queued webhooks get to go out at shutdown.
const DELIVERY_GRACE: Duration = Duration::from_secs(3);
/// How long the page's service view waits for the registry to say where an image comes from.
const ORIGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The running daemon, as the API sees it.
pub struct Daemon<R: ContainerRuntime, C: Compose> {
    engine: Engine<R, C>,
    /// Held by a pass over every service (scheduled, or `POST /api/v1/check` without names); a
    /// scheduled pass that finds it held is skipped and counted. Nothing else waits for it.
    full_pass: tokio::sync::Mutex<()>,
    /// The last report per service, for `GET /api/v1/services`.
    last: Mutex<HashMap<String, ServiceOutcome>>,
    /// Registry request counts already turned into metrics.
    seen_requests: Mutex<RequestStats>,
    /// Push hooks, turned into one check per service and burst.
    hooks: Arc<Coalescer>,
    /// When the scheduler runs the next pass, as it plans it.
    next_check: watch::Receiver<Option<Timestamp>>,
    /// Told the services whose view changed, once it has (the page redraws them).
    changes: tokio::sync::broadcast::Sender<Vec<String>>,
}

/// Everything the daemon runs with, built by its caller: `lookout run` builds it from the
/// configuration file, Docker and the signals (`src/cli/run.rs`); tests build it from fakes.
pub struct Parts<R: ContainerRuntime, C: Compose> {
    /// Started, with interrupted updates already finished ([`recover`]).
    pub engine: Engine<R, C>,
    /// The engine's webhook deliveries, run until shutdown.
    pub deliveries: Deliveries,
    /// Where the HTTP API listens, already bound.
    pub listener: tokio::net::TcpListener,
    pub api: ApiConfig,
    /// When to run scheduled passes.
    pub schedule: Schedule,
    /// Run a pass as soon as the daemon starts.
    pub first_check_at_start: bool,
    /// The scheduler's clock.
    pub clock: Arc<dyn Clock>,
    pub reload: Reload,
}

/// Where reloads come from: one message per request (`lookout run` sends one per SIGHUP), and
/// how to read the new configuration. When `requests` closes, no more reloads come.
pub struct Reload {
    pub requests: mpsc::Receiver<()>,
    /// Reads and validates the configuration anew; an error keeps the one in force.
    pub load: Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>,
}

impl<R: ContainerRuntime, C: Compose> Parts<R, C> {
    /// The parts for `config` as `lookout run` takes them from it (API secrets, schedule, first
    /// check), around an engine, its deliveries and a bound listener.
    pub fn new(
        config: &Config,
        engine: Engine<R, C>,
        deliveries: Deliveries,
        listener: tokio::net::TcpListener,
        clock: Arc<dyn Clock>,
        reload: Reload,
    ) -> Self {
        Self {
            api: ApiConfig {
                token: config.api_token.clone(),
                hook_secret: config.hook_secret.clone(),
                web: config.web.clone(),
            },
            schedule: Schedule::from_config(config, &jiff::tz::TimeZone::system()),
            first_check_at_start: config.first_check_at_start,
            engine,
            deliveries,
            listener,
            clock,
            reload,
        }
    }
}

/// Finishes the updates an earlier lookout left in the journal, logging each; a panic is logged
/// and leaves the journal entries for the next start. The caller does this before it binds the
/// listener, so nothing is served while an interrupted update is put right.
pub async fn recover<R: ContainerRuntime, C: Compose>(engine: &Engine<R, C>) {
    match AssertUnwindSafe(engine.recover()).catch_unwind().await {
        Ok(recovered) => {
            for r in recovered {
                tracing::warn!(service = %r.service, decision = ?r.decision, detail = %r.detail, "interrupted update finished at start");
            }
        }
        Err(panic) => tracing::error!(
            panic = %panic_message(&*panic),
            "finishing interrupted updates hit a bug; their journal entries stay for the next start or an operator"
        ),
    }
}

/// Runs the daemon on `parts` until `shutdown` resolves (`lookout run` passes SIGTERM/SIGINT):
/// scheduled passes, the API on the listener, reloads, systemd notifications; then the orderly
/// stop described in the module documentation.
pub async fn serve<R, C>(
    parts: Parts<R, C>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    R: ContainerRuntime + 'static,
    C: Compose + 'static,
{
    let Parts {
        engine,
        mut deliveries,
        listener,
        api: api_config,
        schedule,
        first_check_at_start: first_at_start,
        clock,
        reload,
    } = parts;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let installs = deliveries.take_install_requests();
    let deliveries = tokio::spawn(deliveries.run(std::future::pending()));
    let (next_tx, next_rx) = watch::channel(None);

    let daemon = Arc::new_cyclic(|me: &Weak<Daemon<R, C>>| {
        let me = me.clone();
        let check: CheckFn = Box::new(move |service| {
            let me = me.clone();
            Box::pin(async move {
                if let Some(daemon) = me.upgrade() {
                    daemon.hook_pass(service).await;
                }
            })
        });
        Daemon {
            engine,
            full_pass: tokio::sync::Mutex::new(()),
            last: Mutex::new(HashMap::new()),
            seen_requests: Mutex::new(RequestStats::default()),
            hooks: Coalescer::new(HOOK_DEBOUNCE, check),
            next_check: next_rx,
            changes: tokio::sync::broadcast::channel(256).0,
        }
    });

    let router = api::router_until(daemon.clone(), api_config, stop_rx.clone());
    let mut api_task = tokio::spawn(api::serve(listener, router, stopped(stop_rx.clone())));

    let _ = notify::ready();
    if let Some(every) = notify::watchdog_interval() {
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(
                every
                    .checked_div(2)
                    .unwrap_or(every)
                    .max(Duration::from_millis(1)),
            );
            loop {
                tokio::select! {
                    _ = tick.tick() => { let _ = notify::watchdog(); }
                    _ = rx.wait_for(|stop| *stop) => break,
                }
            }
        });
    }
    let reload = tokio::spawn(reload_on_request(daemon.clone(), reload, stop_rx.clone()));
    let events = {
        let d = daemon.clone();
        tokio::spawn(async move {
            crate::discovery::events::follow(&d.engine.runtime, || d.rediscovered()).await;
        })
    };
    let installs =
        installs.map(|rx| tokio::spawn(install_on_request(daemon.clone(), rx, stop_rx.clone())));

    // Shutdown: cancel the checks in flight, start no new update, and stop the scheduler from
    // starting passes (a running one returns once its checks are cancelled and an update in
    // progress is done).
    let (sched_tx, sched_rx) = watch::channel(false);
    let stopping = daemon.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.engine.stop();
        stopping.hooks.stop();
        let _ = sched_tx.send(true);
    });
    let scheduler =
        Scheduler::new(schedule, clock, first_at_start, fastrand::Rng::new()).telling(next_tx);
    let d = daemon.clone();
    let report = scheduler
        .run(
            stopped(sched_rx),
            || {
                let d = d.clone();
                async move {
                    if let Err(panic) = AssertUnwindSafe(d.scheduled_pass()).catch_unwind().await
                    {
                        tracing::error!(panic = %panic_message(&*panic), "a scheduled pass hit a bug; the next one runs as planned");
                    }
                }
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
    daemon.engine.stop();
    daemon.hooks.stop();
    // An update or rollback asked for through the API or a hook may still run: wait for it.
    // Holding the lock, none starts while the rest shuts down.
    let quiet = daemon.engine.quiesce().await;
    let _ = stop_tx.send(true);
    if tokio::time::timeout(API_GRACE, &mut api_task)
        .await
        .is_err()
    {
        tracing::warn!(
            grace = API_GRACE.as_secs(),
            "the HTTP API did not finish its requests in time; closing its connections"
        );
        api_task.abort();
    }
    reload.abort();
    events.abort();
    if let Some(installs) = installs {
        installs.abort();
    }
    drop(quiet);
    drop(daemon);
    if tokio::time::timeout(DELIVERY_GRACE, deliveries)
        .await
        .is_err()
    {
        tracing::warn!(
            grace = DELIVERY_GRACE.as_secs(),
            "webhooks still queued were not all delivered before the end"
        );
    }
    Ok(())
}

/// Panics are logged like every other failure (the JSON formatter included), with where they
/// happened; the task they hit ends, the daemon does not. `lookout run` sets this up once
/// logging is.
pub(crate) fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            panic = %panic_message(info.payload()),
            %location,
            "lookout hit a bug; the work it interrupted failed and the daemon goes on — please report it"
        );
    }));
}

/// Reloads the configuration at each request until the requests end or the daemon stops; an
/// invalid configuration (or a bug reading it) keeps the one in force.
async fn reload_on_request<R: ContainerRuntime, C: Compose>(
    daemon: Arc<Daemon<R, C>>,
    mut reload: Reload,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            request = reload.requests.recv() => {
                if request.is_none() {
                    return;
                }
                let _ = notify::reloading();
                match std::panic::catch_unwind(AssertUnwindSafe(|| (reload.load)())) {
                    Ok(Ok(new)) => {
                        tracing::info!(services = new.services.len(), "configuration reloaded");
                        daemon.engine.reload(new);
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "the new configuration is invalid; keeping the one in force"),
                    Err(_) => tracing::error!("reading the new configuration hit a bug; keeping the one in force"),
                }
                let _ = notify::ready();
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Runs the install commands MQTT channels hear, one after another, until the daemon stops.
async fn install_on_request<R: ContainerRuntime, C: Compose>(
    daemon: Arc<Daemon<R, C>>,
    mut requests: mpsc::Receiver<InstallRequest>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { return };
                if let Err(panic) = AssertUnwindSafe(daemon.install(&request)).catch_unwind().await {
                    tracing::error!(panic = %panic_message(&*panic), "an install command hit a bug; the daemon goes on");
                }
            }
            () = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
    }
}

impl<R: ContainerRuntime, C: Compose> Daemon<R, C> {
    /// An install command from MQTT: a pass of that one service, as the API's update runs it,
    /// but honouring maintenance windows and pause (the pass holds the candidate and says why).
    async fn install(&self, request: &InstallRequest) {
        let config = self.engine.config();
        if !config.services.iter().any(|s| s.name == request.service) {
            tracing::warn!(service = %request.service, channel = %request.channel, "install command for a service lookout does not know; ignored");
            return;
        }
        let opts = PassOptions {
            only: vec![request.service.clone()],
            dry_run: false,
            actor: "mqtt".into(),
            paused: self.paused(&config),
            held: self.held(),
            respect_windows: true,
        };
        for o in self.pass(&opts).await {
            tracing::info!(service = %o.service, result = o.result.as_str(), reason = o.reason.as_deref().unwrap_or(""), "install command done");
        }
    }

    fn paused(&self, config: &Config) -> bool {
        config.pause_updates || lock(&self.engine.store).state().paused
    }

    /// The services paused one by one.
    fn held(&self) -> Vec<String> {
        lock(&self.engine.store).state().paused_services()
    }

    /// A pass on schedule: every service, inside windows, unless paused. Skipped (and counted)
    /// while another pass over every service runs.
    async fn scheduled_pass(&self) {
        let Ok(_guard) = self.full_pass.try_lock() else {
            // A pass over every service asked for through the API runs; this one would only
            // repeat it.
            self.engine.telemetry.emit(Event::CheckSkipped);
            return;
        };
        let config = self.engine.config();
        let opts = PassOptions {
            only: Vec::new(),
            dry_run: false,
            actor: "schedule".into(),
            paused: self.paused(&config),
            held: self.held(),
            respect_windows: true,
        };
        self.pass(&opts).await;
    }

    /// Container events came (a `compose up`, a container removed or renamed): discovery
    /// again, and a check of the services that are new.
    async fn rediscovered(&self) {
        if self.engine.is_stopping() {
            return;
        }
        let work = async {
            let names = |d: &crate::discovery::Discovery| -> std::collections::BTreeSet<String> {
                d.found.iter().map(|f| f.name.clone()).collect()
            };
            let before = names(&self.engine.discovered());
            let new = self.engine.rediscover().await;
            if new.is_empty() {
                // Most events (a container an update recreates) change no service: the page
                // is told only of services that are gone, never "everything changed".
                let gone: Vec<String> = before
                    .difference(&names(&self.engine.discovered()))
                    .cloned()
                    .collect();
                if !gone.is_empty() {
                    self.changed(gone);
                }
                return;
            }
            tracing::info!(services = ?new, "new containers: checking their services");
            let config = self.engine.config();
            let opts = PassOptions {
                only: new,
                dry_run: false,
                actor: "discovery".into(),
                paused: self.paused(&config),
                held: self.held(),
                respect_windows: true,
            };
            self.pass(&opts).await;
        };
        if let Err(panic) = AssertUnwindSafe(work).catch_unwind().await {
            tracing::error!(panic = %panic_message(&*panic), "looking at new containers hit a bug; the next check looks again");
        }
    }

    /// The check a push hook asked for, of one service.
    async fn hook_pass(&self, service: String) {
        let config = self.engine.config();
        let opts = PassOptions {
            only: vec![service],
            dry_run: false,
            actor: "hook".into(),
            paused: self.paused(&config),
            held: self.held(),
            respect_windows: true,
        };
        self.pass(&opts).await;
    }

    /// Runs a pass and remembers its results.
    async fn pass(&self, opts: &PassOptions) -> Vec<ServiceOutcome> {
        let outcomes = self.engine.pass(opts).await;
        self.sync_registry_metrics();
        {
            let mut last = lock(&self.last);
            for o in &outcomes {
                last.insert(o.service.clone(), o.clone());
            }
        }
        self.changed(outcomes.iter().map(|o| o.service.clone()).collect());
        outcomes
    }

    /// Tells live listeners that the views of `services` changed (empty: all).
    fn changed(&self, services: Vec<String>) {
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(services);
        }
    }

    /// Turns the registry layer's request counts since the last call into telemetry events.
    fn sync_registry_metrics(&self) {
        let now = self.engine.registries.stats();
        let mut seen = lock(&self.seen_requests);
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

    fn service_view(&self, config: &Config, name: &str) -> Option<ServiceView> {
        let spec = config.services.iter().find(|s| s.name == name)?;
        let discovered = self.engine.discovered();
        let found = discovered.get(name);
        let last = lock(&self.last).get(name).cloned();
        let now = self.engine.now();
        let next_check = (*self.next_check.borrow()).map(|t| t.to_string());
        let store = lock(&self.engine.store);
        let all = store.state();
        let state = all.services.get(name);
        let service_paused = state.is_some_and(|s| s.paused);
        let paused = config.pause_updates || all.paused || service_paused;
        let in_flight = all.journal.iter().any(|e| e.intent.service == name);
        let failed = state.and_then(|s| s.failed_candidate.as_ref());
        // After an update or an up-to-date check, `to` is what runs: no candidate is left.
        let candidate = last
            .as_ref()
            .filter(|l| !matches!(l.result, ServiceResult::Updated | ServiceResult::UpToDate))
            .and_then(|l| l.to.clone());
        let blocked = failed.and_then(|f| {
            let tag = f.version.tag.as_deref()?;
            ImageRef::parse(&format!("{}:{tag}", f.version.image))
                .ok()
                .map(|r| r.familiar())
        });
        let rolled_back_at = state
            .and_then(|s| s.history.last())
            .filter(|h| {
                matches!(
                    h.outcome,
                    ChangeOutcome::RolledBack { .. } | ChangeOutcome::RollbackFailed { .. }
                )
            })
            .map(|h| h.finished_at);
        let status = crate::web::status::status(&crate::web::status::Facts {
            updating: in_flight,
            paused,
            last: last.as_ref().map(|l| l.result),
            candidate: candidate.clone(),
            blocked,
            rolled_back_at,
            now: Some(now),
        });
        let running = state.and_then(|s| s.running.as_ref());
        Some(ServiceView {
            name: spec.name.clone(),
            compose_file: spec.compose_file.as_ref().map(|f| f.display().to_string()),
            compose_service: spec.compose_service.clone(),
            policy: spec.policy.kind().as_str().to_owned(),
            policy_source: crate::discovery::policy_source(spec, found),
            origin: match found {
                Some(f) if f.configured.is_none() => Origin::Discovered,
                _ => Origin::Configured,
            },
            display_name: found.and_then(|f| f.display_name.clone()),
            enabled: spec.enabled,
            image: spec.image.familiar(),
            registry: spec.image.registry().to_owned(),
            running: running.map(ToString::to_string),
            running_digest: running.map(|r| r.digest.clone()),
            available: candidate,
            last_check: state.and_then(|s| s.last_check).map(|t| t.to_string()),
            last_update: state.and_then(|s| s.last_update).map(|t| t.to_string()),
            next_check,
            failed_candidate: failed.map(|f| FailedCandidateView {
                version: f.version.to_string(),
                reason: f.reason.clone(),
                at: Some(f.at.to_string()),
            }),
            last_result: last,
            in_flight,
            paused,
            service_paused,
            window: window_view(
                &Windows::for_service(config, spec, &jiff::tz::TimeZone::system()),
                now,
            ),
            status,
        })
    }

    /// What the page shows of where the running image and the candidate come from, asked of
    /// the registry within [`ORIGIN_TIMEOUT`].
    async fn origins(
        &self,
        spec: &ServiceSpec,
        running: Option<ImageRef>,
        candidate: Option<ImageRef>,
    ) -> (Option<ImageOrigin>, Option<ImageOrigin>, Option<String>) {
        let registry = match self.engine.registries.for_service(spec) {
            Ok(r) => r,
            Err(e) => return (None, None, Some(e.to_string())),
        };
        let ask = |image: Option<ImageRef>| {
            let registry = registry.clone();
            async move {
                match image {
                    None => Ok(None),
                    Some(image) => registry.origin(&image).await,
                }
            }
        };
        let both = async { tokio::join!(ask(running), ask(candidate)) };
        match tokio::time::timeout(ORIGIN_TIMEOUT, both).await {
            Ok((r, c)) => {
                let error = r
                    .as_ref()
                    .err()
                    .or(c.as_ref().err())
                    .map(ToString::to_string);
                (r.ok().flatten(), c.ok().flatten(), error)
            }
            Err(_) => (
                None,
                None,
                Some(format!(
                    "the registry did not say within {}s",
                    ORIGIN_TIMEOUT.as_secs()
                )),
            ),
        }
    }
}

/// The maintenance window as the page shows it at `now`. Pure.
fn window_view(windows: &Windows, now: Timestamp) -> WindowView {
    if windows.is_unrestricted() {
        return WindowView {
            always: true,
            open: true,
            closes_at: None,
            opens_at: None,
        };
    }
    let (open, closes_at, opens_at) = match windows.may_change_now(now, Duration::ZERO) {
        WindowDecision::Allowed { closes } => (true, closes, None),
        WindowDecision::WaitUntil(at) => (false, None, Some(at)),
        WindowDecision::NoWindowLongEnough => (false, None, None),
    };
    WindowView {
        always: false,
        open,
        closes_at: closes_at.map(|t| t.to_string()),
        opens_at: opens_at.map(|t| t.to_string()),
    }
}

fn history_view(name: &str, h: &crate::state::HistoryEntry) -> HistoryView {
    let (result, reason) = match &h.outcome {
        ChangeOutcome::Committed => ("committed", None),
        ChangeOutcome::RolledBack { reason } => ("rolled_back", Some(reason.clone())),
        ChangeOutcome::RollbackFailed { reason } => ("rollback_failed", Some(reason.clone())),
        ChangeOutcome::Abandoned { reason } => ("abandoned", Some(reason.clone())),
    };
    HistoryView {
        service: name.to_owned(),
        kind: match h.kind {
            ChangeKind::Update => "update",
            ChangeKind::Rollback => "rollback",
        }
        .to_owned(),
        actor: h.actor.clone(),
        from: h.from.to_string(),
        to: h.to.to_string(),
        started_at: h.started_at.to_string(),
        finished_at: h.finished_at.to_string(),
        duration_ms: h.duration_ms,
        outcome: HistoryOutcome {
            result: result.to_owned(),
            reason,
        },
    }
}

#[async_trait]
impl<R: ContainerRuntime + 'static, C: Compose + 'static> Backend for Daemon<R, C> {
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
        let dir = lock(&self.engine.store)
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        crate::durable::probe_writable(&dir)
            .map_err(|e| format!("state folder {} is not writable: {e}", dir.display()))?;
        Ok(())
    }

    fn services(&self) -> Vec<ServiceView> {
        let config = self.engine.config();
        config
            .services
            .iter()
            .filter_map(|s| self.service_view(&config, &s.name))
            .collect()
    }

    fn service(&self, name: &str) -> Option<ServiceView> {
        self.service_view(&self.engine.config(), name)
    }

    async fn details(&self, name: &str) -> Option<ServiceDetails> {
        let config = self.engine.config();
        let spec = config.services.iter().find(|s| s.name == name)?;
        let (running, history) = {
            let store = lock(&self.engine.store);
            let state = store.state().services.get(name);
            let running = state
                .and_then(|s| s.running.as_ref())
                .and_then(|r| ImageRef::parse(&format!("{}@{}", r.image, r.digest)).ok());
            let mut history: Vec<HistoryView> = state
                .map(|s| s.history.iter().map(|h| history_view(name, h)).collect())
                .unwrap_or_default();
            history.reverse();
            (running, history)
        };
        let candidate = self
            .service_view(&config, name)
            .and_then(|v| v.available)
            .and_then(|to| ImageRef::parse(&to).ok());
        let (running_origin, candidate_origin, origin_error) =
            self.origins(spec, running, candidate).await;
        let rate_limit_remaining = self
            .engine
            .registries
            .stats()
            .ratelimit_remaining
            .get(spec.image.registry())
            .copied();
        Some(ServiceDetails {
            history,
            rate_limit_remaining,
            running_origin,
            candidate_origin,
            origin_error,
        })
    }

    fn paused(&self) -> bool {
        self.paused(&self.engine.config())
    }

    fn history(&self) -> Vec<HistoryView> {
        let store = lock(&self.engine.store);
        let mut all: Vec<(Timestamp, HistoryView)> = store
            .state()
            .services
            .iter()
            .flat_map(|(name, s)| {
                s.history
                    .iter()
                    .map(move |h| (h.finished_at, history_view(name, h)))
            })
            .collect();
        all.sort_by_key(|h| std::cmp::Reverse(h.0));
        all.into_iter().map(|(_, h)| h).collect()
    }

    async fn check(&self, only: Vec<String>, actor: &str) -> Result<CheckBody, ApiError> {
        // A pass over every service makes a scheduled pass due meanwhile skip; it waits for
        // nothing itself.
        let _full = if only.is_empty() {
            self.full_pass.try_lock().ok()
        } else {
            None
        };
        let config = self.engine.config();
        let opts = PassOptions {
            only,
            dry_run: false,
            actor: actor.into(),
            paused: self.paused(&config),
            held: self.held(),
            respect_windows: true,
        };
        let services = self.pass(&opts).await;
        Ok(CheckBody { services })
    }

    /// An operator's explicit update: now, whatever the windows and pause say.
    async fn update(&self, service: &str, actor: &str) -> Result<ServiceOutcome, ApiError> {
        let opts = PassOptions {
            only: vec![service.to_owned()],
            dry_run: false,
            actor: actor.into(),
            paused: false,
            held: Vec::new(),
            respect_windows: false,
        };
        let outcomes = self.pass(&opts).await;
        outcomes
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::NotFound(format!("no service {service:?}")))
    }

    /// Waits for an update or rollback in progress, never for a check.
    async fn rollback(&self, service: &str, actor: &str) -> Result<RollbackView, ApiError> {
        let report = self
            .engine
            .rollback(service, actor)
            .await
            .map_err(rollback_error)?;
        Ok(RollbackView {
            service: report.service,
            from: report.from,
            to: report.to,
            result: report.result.as_str().to_owned(),
            reason: report.result.reason().map(str::to_owned),
            duration: report.duration.as_secs_f64(),
        })
    }

    fn set_paused(&self, paused: bool) -> Result<(), ApiError> {
        lock(&self.engine.store)
            .set_paused(paused, self.engine.now())
            .map_err(|e| ApiError::Internal(format!("cannot record the pause: {e}")))?;
        tracing::info!(
            paused,
            "updates {} through the API",
            if paused { "paused" } else { "resumed" }
        );
        self.changed(Vec::new());
        Ok(())
    }

    fn set_service_paused(&self, service: &str, paused: bool) -> Result<(), ApiError> {
        lock(&self.engine.store)
            .set_service_paused(service, paused, self.engine.now())
            .map_err(|e| ApiError::Internal(format!("cannot record the pause: {e}")))?;
        tracing::info!(
            service,
            paused,
            "updates of one service {}",
            if paused { "paused" } else { "resumed" }
        );
        self.changed(vec![service.to_owned()]);
        Ok(())
    }

    fn unblock(&self, service: &str) -> Result<Option<String>, ApiError> {
        let cleared = lock(&self.engine.store)
            .clear_failed_candidate(service, self.engine.now())
            .map_err(|e| ApiError::Internal(format!("cannot record the change: {e}")))?;
        if let Some(f) = &cleared {
            tracing::info!(service, candidate = %f.version, "failed candidate unblocked");
        }
        self.changed(vec![service.to_owned()]);
        Ok(cleared.map(|f| f.version.to_string()))
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.engine.telemetry.subscribe()
    }

    fn changes(&self) -> tokio::sync::broadcast::Receiver<Vec<String>> {
        self.changes.subscribe()
    }

    /// Queues a check of each service using a pushed repository, without waiting for it. A
    /// burst of hooks for one repository runs one check per service (see [`Coalescer`]).
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
        for name in &names {
            let queued = self.hooks.push(name);
            tracing::debug!(service = %name, ?queued, "push hook");
        }
        names
    }
}

/// The API's answer to a rollback that did not start.
fn rollback_error(e: RollbackError) -> ApiError {
    let message = e.to_string();
    match e {
        RollbackError::UnknownService(_) => ApiError::NotFound(message),
        RollbackError::NothingToRollBack(_)
        | RollbackError::Stopping(_)
        | RollbackError::NotRunning { .. } => ApiError::Conflict(message),
        RollbackError::BadReference(_) => ApiError::Invalid(message),
        RollbackError::Runtime(_) => ApiError::Unavailable(message),
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
