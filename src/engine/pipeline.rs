//! How one pass moves its services from check to change, and what keeps one service's trouble
//! from becoming everyone's.
//!
//! - Checks run in parallel (at most `parallel` at once), without any lock. Each has an overall
//!   deadline (`check_timeout`); a check that panics, times out or is cancelled becomes that
//!   service's failure, never the pass's or the process's.
//! - A service whose check found a change applies it as soon as its own check is done and the
//!   services it must follow (`depends_on` in the same compose file, or named by its
//!   `lookout.depends_on` label; see `after`) have finished:
//!   it never waits for the check of an unrelated service.
//! - Applying a change goes through the engine's [`UpdateGate`]: at most `update_concurrency`
//!   changes at once on the host (1 unless configured), whichever pass (schedule, API, hook)
//!   asked for them, never two of one compose file at once, and none while a rollback or a
//!   recovery runs. A change's own rollback is part of the change, so it never waits for
//!   another service's health gate. A panic while applying becomes that service's failure and
//!   gives its place back.
//! - [`Stop`]: once lookout is stopping, checks in flight are dropped (their requests with them),
//!   and a change not yet started does not start. A change already running is never cut short:
//!   it finishes or rolls back under its own timeouts.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{Mutex, OwnedMutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{Semaphore, SemaphorePermit, watch};
use tokio::time::Instant;

use super::pass::{ServiceOutcome, ServiceResult};

/// Tells work in progress that lookout is stopping. Set once, never cleared.
#[derive(Debug)]
pub struct Stop(watch::Sender<bool>);

impl Default for Stop {
    fn default() -> Self {
        Self(watch::Sender::new(false))
    }
}

impl Stop {
    /// From now on, checks in flight are cancelled and no change starts.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [`Stop::stop`] was called (at once if it already was).
    pub async fn stopped(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so this only returns once the flag is set.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

/// Who may apply a change now, for every pass and rollback of one engine.
#[derive(Debug)]
pub(crate) struct UpdateGate {
    /// Shared by each change; exclusive for a rollback, a recovery and shutdown.
    exclusive: RwLock<()>,
    /// `update_concurrency` places.
    slots: Semaphore,
    /// One lock per compose file: its services' changes run one at a time.
    files: std::sync::Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
}

/// A change's place at the gate, given back when dropped.
pub(crate) struct ChangeGuard<'a> {
    _shared: RwLockReadGuard<'a, ()>,
    _slot: Option<SemaphorePermit<'a>>,
    _file: OwnedMutexGuard<()>,
}

impl UpdateGate {
    /// A gate that lets `concurrency` changes (at least 1) run at once.
    pub(crate) fn new(concurrency: usize) -> Self {
        Self {
            exclusive: RwLock::new(()),
            slots: Semaphore::new(concurrency.max(1)),
            files: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Waits until no change runs, and lets none start while the guard is held.
    pub(crate) async fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.exclusive.write().await
    }

    /// Waits for the compose file `file` to be free, then for a place, then for no rollback to
    /// run. (Always in this order, so two waits never hold what the other needs.)
    pub(crate) async fn change(&self, file: &Path) -> ChangeGuard<'_> {
        let lock = super::lock(&self.files)
            .entry(file.to_owned())
            .or_default()
            .clone();
        let file = lock.lock_owned().await;
        // The semaphore is never closed; without a permit the change still runs.
        let slot = self.slots.acquire().await.ok();
        let shared = self.exclusive.read().await;
        ChangeGuard {
            _shared: shared,
            _slot: slot,
            _file: file,
        }
    }
}

/// What a service's check found.
pub(crate) enum Checked<W> {
    /// Nothing to apply: this is the service's outcome.
    Done(ServiceOutcome),
    /// A change to apply. `report` is the outcome so far (from, to, digest); it becomes the
    /// outcome when the change cannot run.
    Apply { report: ServiceOutcome, work: W },
}

/// What the pipeline needs to know of a service: its name, for the outcomes it writes itself.
pub trait Service {
    fn name(&self) -> &str;
}

impl Service for crate::config::ServiceSpec {
    fn name(&self) -> &str {
        &self.name
    }
}

impl<T: Service + ?Sized> Service for &T {
    fn name(&self) -> &str {
        (**self).name()
    }
}

/// How to run the services of one pass.
pub(crate) struct Pipeline<'a> {
    /// For each service (by index), the services whose check and change must be finished
    /// before its own change starts. Indices must point to earlier services of a `depends_on`
    /// order, so the waits cannot form a cycle; an index that points nowhere is ignored.
    pub after: &'a [Vec<usize>],
    /// For each service (by index), the compose file whose changes run one at a time.
    pub files: &'a [PathBuf],
    /// Checks at once.
    pub parallel: usize,
    /// The longest one service's check may take.
    pub check_timeout: Duration,
    /// Passed by every change: how many at once, one per compose file.
    pub gate: &'a UpdateGate,
    pub stop: &'a Stop,
}

impl Pipeline<'_> {
    /// Checks every service with `check` and applies what it found with `apply`; `finished`
    /// is called with each service's outcome as soon as it is known. Returns the outcomes in
    /// service order, each with its own durations: `check_duration` the check's, `duration`
    /// the check's plus the change's (waits for other services are neither).
    pub(crate) async fn run<S, W, C, CF, A, AF, F>(
        &self,
        services: &[S],
        check: C,
        apply: A,
        finished: F,
    ) -> Vec<ServiceOutcome>
    where
        S: Service,
        C: Fn(&S) -> CF,
        CF: Future<Output = Checked<W>>,
        A: Fn(&S, ServiceOutcome, W) -> AF,
        AF: Future<Output = ServiceOutcome>,
        F: Fn(&S, &ServiceOutcome),
    {
        let limit = Semaphore::new(self.parallel.max(1));
        let done: Vec<watch::Sender<bool>> =
            services.iter().map(|_| watch::Sender::new(false)).collect();
        let runs = services
            .iter()
            .enumerate()
            .map(|(i, service)| self.one(i, service, &limit, &done, &check, &apply, &finished));
        futures_util::future::join_all(runs).await
    }

    #[allow(clippy::too_many_arguments)] // The parts of `run`, handed down.
    async fn one<S, W, C, CF, A, AF, F>(
        &self,
        i: usize,
        service: &S,
        limit: &Semaphore,
        done: &[watch::Sender<bool>],
        check: &C,
        apply: &A,
        finished: &F,
    ) -> ServiceOutcome
    where
        S: Service,
        C: Fn(&S) -> CF,
        CF: Future<Output = Checked<W>>,
        A: Fn(&S, ServiceOutcome, W) -> AF,
        AF: Future<Output = ServiceOutcome>,
        F: Fn(&S, &ServiceOutcome),
    {
        // Whatever happens below, the services that wait for this one are let go.
        let _done = MarkDone(done.get(i));
        let (check_time, checked) = {
            // The semaphore is never closed; without a permit the check still runs.
            let _permit = limit.acquire().await.ok();
            let started = Instant::now();
            // Boxed: a service's future is small until its check starts, so a pass of 10,000
            // services holds 10,000 small futures and only `parallel` big ones.
            let checked = Box::pin(self.check_one(service, check)).await;
            (started.elapsed(), checked)
        };
        let (mut outcome, update_time) = match checked {
            Checked::Done(outcome) => (outcome, Duration::ZERO),
            Checked::Apply { report, work } => {
                for &j in self.after.get(i).into_iter().flatten() {
                    if let Some(before) = done.get(j).filter(|_| j != i) {
                        let _ = before.subscribe().wait_for(|d| *d).await;
                    }
                }
                let file = self.files.get(i).map_or(Path::new(""), PathBuf::as_path);
                Box::pin(self.apply_one(service, file, report, work, apply)).await
            }
        };
        // Each span is measured where it runs: waits for a check slot, for dependencies and
        // for the update lock are no service's own time.
        outcome.check_duration = check_time;
        outcome.duration = check_time.saturating_add(update_time);
        if let Err(panic) =
            std::panic::catch_unwind(AssertUnwindSafe(|| finished(service, &outcome)))
        {
            tracing::error!(service = %service.name(), panic = %panic_message(&*panic), "reporting the outcome failed");
        }
        outcome
    }

    /// The check under its deadline, isolated from panics, cancelled when lookout stops.
    async fn check_one<S, W, C, CF>(&self, service: &S, check: &C) -> Checked<W>
    where
        S: Service,
        C: Fn(&S) -> CF,
        CF: Future<Output = Checked<W>>,
    {
        let name = service.name();
        let guarded = AssertUnwindSafe(async { check(service).await }).catch_unwind();
        let failed = |result: ServiceResult, reason: String| {
            tracing::warn!(service = %name, %reason, "check failed");
            Checked::Done(ServiceOutcome::new(name, result).with_reason(reason))
        };
        tokio::select! {
            biased;
            () = self.stop.stopped() => failed(ServiceResult::Skipped, "the check was cancelled: lookout is stopping".into()),
            result = tokio::time::timeout(self.check_timeout, guarded) => match result {
                Ok(Ok(checked)) => checked,
                Ok(Err(panic)) => failed(ServiceResult::CheckFailed, format!(
                    "lookout hit a bug while checking this service (panic: {}); the other services are not affected — please report it",
                    panic_message(&*panic)
                )),
                Err(_) => failed(ServiceResult::CheckFailed, format!(
                    "the check did not finish within check_timeout ({}); a registry may be slow or hanging; it is tried again at the next check",
                    seconds(self.check_timeout)
                )),
            },
        }
    }

    /// The change once the gate lets it through, isolated from panics; not started once
    /// lookout stops. Returns the outcome and how long the change ran (from when it got
    /// through).
    async fn apply_one<S, W, A, AF>(
        &self,
        service: &S,
        file: &Path,
        report: ServiceOutcome,
        work: W,
        apply: &A,
    ) -> (ServiceOutcome, Duration)
    where
        S: Service,
        A: Fn(&S, ServiceOutcome, W) -> AF,
        AF: Future<Output = ServiceOutcome>,
    {
        let held = |mut report: ServiceOutcome| {
            report.result = ServiceResult::UpdateAvailable;
            report.reason =
                Some("not started: lookout is stopping; the next start checks again".into());
            report
        };
        let _guard = tokio::select! {
            biased;
            () = self.stop.stopped() => return (held(report), Duration::ZERO),
            guard = self.gate.change(file) => guard,
        };
        if self.stop.is_stopping() {
            return (held(report), Duration::ZERO);
        }
        let fallback = report.clone();
        let started = Instant::now();
        let outcome = match AssertUnwindSafe(async { apply(service, report, work).await })
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            Err(panic) => {
                let reason = format!(
                    "lookout hit a bug while updating this service (panic: {}) — please report it",
                    panic_message(&*panic)
                );
                tracing::error!(service = %service.name(), %reason, "update failed");
                let mut outcome = fallback;
                outcome.result = ServiceResult::Failed;
                outcome.reason = Some(reason);
                outcome
            }
        };
        (outcome, started.elapsed())
    }
}

/// Sets its flag when dropped: when the service's future ends, normally or not.
struct MarkDone<'a>(Option<&'a watch::Sender<bool>>);

impl Drop for MarkDone<'_> {
    fn drop(&mut self) {
        if let Some(flag) = self.0 {
            flag.send_replace(true);
        }
    }
}

/// The text a panic was raised with.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
