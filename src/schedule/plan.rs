//! When the next check is due.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// A validated cron expression: five fields (`minute hour day month weekday`) or six with
/// seconds first; names such as `mon` and `jan`, and `@hourly`/`@daily`-style shorthands.
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    cron: croner::Cron,
}

impl CronExpr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let text = s.trim().to_owned();
        croner::Cron::from_str(&text)
            .map(|cron| Self { text, cron })
            .map_err(|e| {
                format!("{s:?} is not a cron expression ({e}): write five fields \"minute hour day month weekday\", e.g. \"*/30 * * * *\" or \"0 3 * * mon-fri\"")
            })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `after` that matches, in `tz`.
    pub(crate) fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let zoned = after.to_zoned(tz.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }
}

impl FromStr for CronExpr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.text)
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// What makes a check due.
#[derive(Debug, Clone)]
pub enum ScheduleKind {
    /// Every so long.
    Interval(Duration),
    /// At the times a cron expression matches, read in a time zone.
    Cron(Box<CronExpr>, TimeZone),
}

/// When checks run: a kind plus a random delay of up to `jitter` added to each due time, so
/// that many lookouts do not ask a registry at the same second.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub jitter: Duration,
}

impl Schedule {
    pub fn interval(every: Duration, jitter: Duration) -> Self {
        Self {
            kind: ScheduleKind::Interval(every),
            jitter,
        }
    }

    pub fn cron(expr: CronExpr, tz: TimeZone, jitter: Duration) -> Self {
        Self {
            kind: ScheduleKind::Cron(Box::new(expr), tz),
            jitter,
        }
    }

    /// The next due time after `after`: `after + interval`, or the next cron match, plus a
    /// uniformly random jitter in `[0, jitter]`. Never earlier than the un-jittered time.
    /// `None` when a cron expression never matches again, or the interval reaches past the end
    /// of time.
    pub(crate) fn next_run(&self, after: Timestamp, rng: &mut fastrand::Rng) -> Option<Timestamp> {
        let base = match &self.kind {
            ScheduleKind::Interval(every) => after
                .checked_add(SignedDuration::try_from(*every).ok()?)
                .ok()?,
            ScheduleKind::Cron(expr, tz) => expr.next_after(after, tz)?,
        };
        let jitter_ms = u64::try_from(self.jitter.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 {
            0
        } else {
            rng.u64(0..=jitter_ms)
        };
        // A jitter too large to add (it is bounded in the configuration) leaves the base time.
        Some(
            base.checked_add(SignedDuration::from_millis(
                i64::try_from(extra).unwrap_or(i64::MAX),
            ))
            .unwrap_or(base),
        )
    }
}
