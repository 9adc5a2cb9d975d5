//! When lookout checks, and when it may change things.
//!
//! Everything here is a pure function of values, except [`Scheduler::run`] and [`Coalescer`],
//! which sleep through tokio time. The wall clock enters only through a [`Clock`]: [`SystemClock`] in the daemon,
//! [`TokioClock`] in tests, where it follows `tokio::time::pause()` / `advance()`.
//!
//! - [`Windows`]: maintenance windows (daily time ranges, days of the week, a time zone) and the
//!   decision [`Windows::may_change_now`]: may an update that needs this long start now, or when?
//! - [`Schedule`]: an interval with jitter or a cron expression in a time zone → the next run.
//! - [`Scheduler`]: the loop that runs a check at each due time and skips (and counts) a due time
//!   that arrives while the previous check still runs.
//! - [`Coalescer`]: push hooks turned into checks, one per service and burst.

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

mod clock;
mod coalesce;
mod plan;
mod runner;
mod window;

pub use clock::{Clock, SystemClock, TokioClock};
pub use coalesce::{CheckFn, Coalescer, Pushed};
pub use plan::{CronExpr, Schedule, ScheduleKind};
pub use runner::{RunReport, Scheduler};
pub use window::{TimeRange, WeekdaySet, WindowDecision, Windows, parse_windows};

#[cfg(test)]
mod tests;
