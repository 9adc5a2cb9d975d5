//! Maintenance windows: when changes are allowed.
//!
//! A window is a daily local time range (`02:00-04:00`; `22:00-02:00` crosses midnight) on some
//! days of the week, in one time zone. A window that crosses midnight belongs to the day it
//! starts on: `22:00-02:00` on `fri` is open from Friday 22:00 to Saturday 02:00. Local times
//! that a daylight saving change skips or repeats resolve as most software does ("compatible"):
//! a start in the skipped hour moves forward by the gap, and a repeated time means its first
//! occurrence. So on the spring change in Europe/Berlin `02:00-04:00` is open 03:00-04:00 (one
//! hour), and on the autumn change it is open for three hours.

use std::fmt;
use std::time::Duration;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// A daily time range `HH:MM-HH:MM` in minutes after midnight; `end < start` crosses midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_minute: u16,
    pub end_minute: u16,
}

/// Parses `02:00-04:00,14:00-15:30`.
pub fn parse_windows(s: &str) -> Result<Vec<TimeRange>, String> {
    let clock = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        if h < 24 && m < 60 && t.trim().len() == 5 {
            h.checked_mul(60)?.checked_add(m)
        } else {
            None
        }
    };
    s.split(',')
        .map(|part| {
            let (a, b) = part.split_once('-').ok_or(())?;
            match (clock(a), clock(b)) {
                (Some(start_minute), Some(end_minute)) if start_minute != end_minute => {
                    Ok(TimeRange { start_minute, end_minute })
                }
                _ => Err(()),
            }
        })
        .collect::<Result<_, ()>>()
        .map_err(|()| {
            format!("{s:?} is not a list of windows: write HH:MM-HH:MM[,HH:MM-HH:MM…], e.g. \"02:00-04:00,14:00-15:30\"")
        })
}

/// A set of days of the week.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WeekdaySet(u8);

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl WeekdaySet {
    pub(crate) const ALL: Self = Self(0x7f);
    pub(crate) const EMPTY: Self = Self(0);

    pub fn with(self, day: Weekday) -> Self {
        Self(self.0 | 1 << day.to_monday_zero_offset())
    }

    pub fn contains(self, day: Weekday) -> bool {
        self.0 & 1 << day.to_monday_zero_offset() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses `mon-fri`, `sat,sun`, `fri-mon` (wrapping), `mon-wed,fri`; full names (`monday`)
    /// and any letter case are accepted.
    pub fn parse(s: &str) -> Result<Self, String> {
        let day = |t: &str| -> Option<u8> {
            let t = t.trim().to_ascii_lowercase();
            DAY_NAMES
                .iter()
                .position(|d| {
                    t == *d
                        || (t.len() > 3 && t.starts_with(d) && full_name(d).starts_with(t.as_str()))
                })
                .map(|i| i as u8)
        };
        let mut set = Self::EMPTY;
        for part in s.split(',') {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (Some(a), Some(b)) = (day(a), day(b)) else {
                return Err(format!(
                    "{s:?} is not a list of days: write days such as \"mon-fri\" or \"sat,sun\", using {}",
                    DAY_NAMES.join(", ")
                ));
            };
            let mut d = a;
            loop {
                set.0 |= 1 << d;
                if d == b {
                    break;
                }
                d = d.saturating_add(1) % 7;
            }
        }
        Ok(set)
    }
}

fn full_name(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

impl fmt::Display for WeekdaySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = (0..7)
            .filter(|i| self.0 & 1 << i != 0)
            .filter_map(|i| DAY_NAMES.get(i).copied())
            .collect();
        f.write_str(&days.join(","))
    }
}

impl fmt::Debug for WeekdaySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeekdaySet({self})")
    }
}

/// What [`Windows::may_change_now`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowDecision {
    /// Start now. `closes` is when the current window closes (`None`: no windows configured).
    Allowed { closes: Option<Timestamp> },
    /// Wait: the next window long enough for the update opens then.
    WaitUntil(Timestamp),
    /// No window in the next two weeks is long enough for the update.
    NoWindowLongEnough,
}

/// When changes are allowed: daily ranges on some days in one time zone.
///
/// No ranges means the whole day; no days means every day; neither means always.
#[derive(Debug, Clone)]
pub struct Windows {
    pub ranges: Vec<TimeRange>,
    pub days: Option<WeekdaySet>,
    pub tz: TimeZone,
}

/// How far ahead a window is looked for.
const HORIZON_DAYS: i32 = 15;

impl Windows {
    /// No restriction: changes are allowed at any time.
    pub fn always() -> Self {
        Self {
            ranges: Vec::new(),
            days: None,
            tz: TimeZone::UTC,
        }
    }

    /// Whether these windows allow changes at any time.
    pub(crate) fn is_unrestricted(&self) -> bool {
        self.ranges.is_empty() && self.days.is_none_or(|d| d == WeekdaySet::ALL)
    }

    /// Whether a window is open at `at`.
    #[cfg(test)]
    pub fn is_open(&self, at: Timestamp) -> bool {
        self.is_unrestricted()
            || self
                .intervals(at, 1)
                .iter()
                .any(|&(start, end)| start <= at && at < end)
    }

    /// `after` itself when a window is open then, else the instant the next window opens.
    /// `None` when no window opens within two weeks (no days selected).
    pub(crate) fn next_open(&self, after: Timestamp) -> Option<Timestamp> {
        if self.is_unrestricted() {
            return Some(after);
        }
        self.intervals(after, HORIZON_DAYS)
            .into_iter()
            .find(|&(_, end)| end > after)
            .map(|(start, _)| start.max(after))
    }

    /// May a change that takes up to `needed` (pull done, health timeout left) start at `now`?
    /// It may when a window is open and stays open for `needed`; otherwise it waits for the
    /// first window that is long enough.
    pub(crate) fn may_change_now(&self, now: Timestamp, needed: Duration) -> WindowDecision {
        if self.is_unrestricted() {
            return WindowDecision::Allowed { closes: None };
        }
        let needed = SignedDuration::try_from(needed).unwrap_or(SignedDuration::MAX);
        let intervals = self.intervals(now, HORIZON_DAYS);
        if let Some(&(_, end)) = intervals
            .iter()
            .find(|&&(start, end)| start <= now && now < end)
            && end.duration_since(now) >= needed
        {
            return WindowDecision::Allowed { closes: Some(end) };
        }
        intervals
            .into_iter()
            .find(|&(start, end)| start > now && end.duration_since(start) >= needed)
            .map_or(WindowDecision::NoWindowLongEnough, |(start, _)| {
                WindowDecision::WaitUntil(start)
            })
    }

    /// Open intervals `[start, end)` of windows that start on the local day before `from`
    /// through `days` days after it, sorted, with touching or overlapping ones merged.
    fn intervals(&self, from: Timestamp, days: i32) -> Vec<(Timestamp, Timestamp)> {
        let whole_day = [TimeRange {
            start_minute: 0,
            end_minute: 24 * 60,
        }];
        let ranges: &[TimeRange] = if self.ranges.is_empty() {
            &whole_day
        } else {
            &self.ranges
        };
        let first = self.tz.to_datetime(from).date();
        let mut out = Vec::new();
        for offset in -1..=days {
            let Ok(date) = first.checked_add(jiff::Span::new().days(offset)) else {
                continue;
            };
            if self.days.is_some_and(|d| !d.contains(date.weekday())) {
                continue;
            }
            for r in ranges {
                let end_date = if r.end_minute <= r.start_minute || r.end_minute >= 24 * 60 {
                    date.tomorrow()
                } else {
                    Ok(date)
                };
                let (Some(start), Some(end)) = (
                    self.instant(date, r.start_minute),
                    end_date
                        .ok()
                        .and_then(|d| self.instant(d, r.end_minute % (24 * 60))),
                ) else {
                    continue;
                };
                if start < end {
                    out.push((start, end));
                }
            }
        }
        out.sort();
        let mut merged: Vec<(Timestamp, Timestamp)> = Vec::with_capacity(out.len());
        for (start, end) in out {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    /// `minute` minutes after midnight of `date`, in the windows' zone; `None` for a minute
    /// outside the day (never a panic, whatever a `TimeRange` holds).
    fn instant(&self, date: Date, minute: u16) -> Option<Timestamp> {
        let hour = i8::try_from(minute / 60).ok()?;
        let minute = i8::try_from(minute % 60).ok()?;
        let time = jiff::civil::Time::new(hour, minute, 0, 0).ok()?;
        self.tz
            .to_ambiguous_timestamp(date.to_datetime(time))
            .compatible()
            .ok()
    }
}
