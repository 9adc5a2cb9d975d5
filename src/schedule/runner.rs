//! The check loop: run at each due time, never two at once.

use std::future::Future;
use std::pin::{Pin, pin};
use std::time::Duration;

use super::{Clock, Schedule};

/// How a [`Scheduler::run`] went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Checks started.
    pub started: u64,
    /// Due times that arrived while a check was still running, and were skipped.
    pub skipped: u64,
}

/// Runs a check at each due time of a [`Schedule`].
#[derive(Debug)]
pub struct Scheduler<C> {
    schedule: Schedule,
    clock: C,
    first_at_start: bool,
    rng: fastrand::Rng,
    /// Told each next due time, for those who show it (the web page).
    next: Option<tokio::sync::watch::Sender<Option<jiff::Timestamp>>>,
}

impl<C: Clock> Scheduler<C> {
    /// `first_at_start`: run a check as soon as [`Scheduler::run`] starts, not only at the first
    /// due time. `rng` draws the jitter; tests pass a seeded one.
    pub fn new(schedule: Schedule, clock: C, first_at_start: bool, rng: fastrand::Rng) -> Self {
        Self {
            schedule,
            clock,
            first_at_start,
            rng,
            next: None,
        }
    }

    /// Sends each next due time (`None`: none is due) to `next` as it is planned.
    pub fn telling(mut self, next: tokio::sync::watch::Sender<Option<jiff::Timestamp>>) -> Self {
        self.next = Some(next);
        self
    }

    /// Runs `tick()` at each due time until `shutdown` resolves. A due time that arrives while
    /// the previous tick still runs is skipped, `on_skip()` is called, and the tick goes on: runs
    /// never stack. After `shutdown`, a tick that is running is awaited (an update is not cut
    /// short); no new one starts. Sleeps through tokio time, so it runs under
    /// `tokio::time::pause()`. The next due time counts from the previous due time, or from now
    /// if that is already past (after a suspend), so missed runs are not made up in a burst.
    pub async fn run<F, Fut, S>(
        mut self,
        shutdown: impl Future<Output = ()>,
        mut tick: F,
        mut on_skip: S,
    ) -> RunReport
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
        S: FnMut(),
    {
        let mut report = RunReport::default();
        let mut shutdown = pin!(shutdown);
        let mut running: Option<Pin<Box<Fut>>> = None;
        let now = self.clock.now();
        let mut due = if self.first_at_start {
            Some(now)
        } else {
            self.schedule.next_run(now, &mut self.rng)
        };
        if let Some(next) = &self.next {
            next.send_replace(due);
        }
        loop {
            let wait = due.map_or(Duration::MAX, |d| {
                Duration::try_from(d.duration_since(self.clock.now())).unwrap_or(Duration::ZERO)
            });
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = async {
                    match running.as_mut() {
                        Some(tick) => tick.await,
                        None => std::future::pending().await,
                    }
                }, if running.is_some() => {
                    running = None;
                }
                () = tokio::time::sleep(wait), if due.is_some() => {
                    let Some(this) = due else { continue };
                    if running.is_some() {
                        report.skipped = report.skipped.saturating_add(1);
                        on_skip();
                    } else {
                        report.started = report.started.saturating_add(1);
                        running = Some(Box::pin(tick()));
                    }
                    let now = self.clock.now();
                    due = self
                        .schedule
                        .next_run(this, &mut self.rng)
                        .filter(|next| *next > now)
                        .or_else(|| self.schedule.next_run(now, &mut self.rng));
                    if let Some(next) = &self.next {
                        next.send_replace(due);
                    }
                    if due.is_none() {
                        tracing::warn!(schedule = ?self.schedule.kind, "no further check is due on this schedule; checks run only when asked for (API, hooks)");
                    }
                }
            }
        }
        if let Some(tick) = running {
            tick.await;
        }
        report
    }
}
