use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use super::*;

fn berlin() -> TimeZone {
    TimeZone::get("Europe/Berlin").unwrap()
}

/// `2025-01-06T03:00` in `tz`, or an exact `2025-10-26T02:30+01:00[Europe/Berlin]`.
fn instant(s: &str, tz: &TimeZone) -> Timestamp {
    if s.contains('[') {
        s.parse::<jiff::Zoned>().unwrap().timestamp()
    } else {
        tz.to_ambiguous_timestamp(s.parse::<DateTime>().unwrap())
            .compatible()
            .unwrap()
    }
}

fn local(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%a %Y-%m-%d %H:%M %:z")
        .to_string()
}

/// Windows `ranges` (empty: whole day) on `days` in Europe/Berlin; at `at`, a change needing
/// `needed_min` minutes gets `expect`: `open until …`, `wait …` or `never`.
fn check(ranges: &str, days: Option<&str>, at: &str, needed_min: u64, expect: &str) {
    let tz = berlin();
    let w = Windows {
        ranges: if ranges.is_empty() {
            Vec::new()
        } else {
            parse_windows(ranges).unwrap()
        },
        days: days.map(|d| WeekdaySet::parse(d).unwrap()),
        tz: tz.clone(),
    };
    let now = instant(at, &tz);
    let got = match w.may_change_now(now, Duration::from_secs(needed_min * 60)) {
        WindowDecision::Allowed { closes: Some(c) } => format!("open until {}", local(c, &tz)),
        WindowDecision::Allowed { closes: None } => "always".to_owned(),
        WindowDecision::WaitUntil(t) => format!("wait {}", local(t, &tz)),
        WindowDecision::NoWindowLongEnough => "never".to_owned(),
    };
    assert_eq!(
        got, expect,
        "{ranges:?} {days:?} at {at} needing {needed_min}m"
    );
    // is_open and next_open agree with the decision.
    let open = w.is_open(now);
    if needed_min == 0 {
        assert_eq!(open, got.starts_with("open"), "is_open at {at}");
    }
    if got.starts_with("open") {
        assert!(open, "open at {at}");
        assert_eq!(w.next_open(now), Some(now));
    }
    if let WindowDecision::WaitUntil(t) =
        w.may_change_now(now, Duration::from_secs(needed_min * 60))
    {
        assert!(
            w.is_open(t),
            "the window it waits for is open at {}",
            local(t, &tz)
        );
        assert!(w.next_open(now).unwrap() <= t);
    }
}

#[test]
fn maintenance_windows() {
    let seed = "02:00-04:00,14:00-15:30";
    // 2025-01-06 is a Monday.
    check(
        seed,
        None,
        "2025-01-06T03:00",
        30,
        "open until Mon 2025-01-06 04:00 +01:00",
    );
    check(
        seed,
        None,
        "2025-01-06T02:00",
        0,
        "open until Mon 2025-01-06 04:00 +01:00",
    );
    check(
        seed,
        None,
        "2025-01-06T04:00",
        0,
        "wait Mon 2025-01-06 14:00 +01:00",
    );
    check(
        seed,
        None,
        "2025-01-06T01:59",
        0,
        "wait Mon 2025-01-06 02:00 +01:00",
    );
    // Not enough time left in this window: wait for one that is long enough.
    check(
        seed,
        None,
        "2025-01-06T03:45",
        30,
        "wait Mon 2025-01-06 14:00 +01:00",
    );
    check(
        seed,
        None,
        "2025-01-06T03:45",
        120,
        "wait Tue 2025-01-07 02:00 +01:00",
    );
    check(seed, None, "2025-01-06T12:00", 121, "never");
    // Crossing midnight.
    let night = "22:00-02:00";
    check(
        night,
        None,
        "2025-01-06T23:00",
        60,
        "open until Tue 2025-01-07 02:00 +01:00",
    );
    check(
        night,
        None,
        "2025-01-07T01:30",
        10,
        "open until Tue 2025-01-07 02:00 +01:00",
    );
    check(
        night,
        None,
        "2025-01-07T01:30",
        60,
        "wait Tue 2025-01-07 22:00 +01:00",
    );
    check(
        night,
        None,
        "2025-01-07T12:00",
        0,
        "wait Tue 2025-01-07 22:00 +01:00",
    );
    // Touching windows merge into one.
    check(
        "22:00-00:00,00:00-01:00",
        None,
        "2025-01-06T23:30",
        60,
        "open until Tue 2025-01-07 01:00 +01:00",
    );
    // Weekdays: a window crossing midnight belongs to the day it starts on.
    check(
        night,
        Some("mon-fri"),
        "2025-01-11T01:00",
        30,
        "open until Sat 2025-01-11 02:00 +01:00",
    );
    check(
        night,
        Some("mon-fri"),
        "2025-01-11T23:00",
        0,
        "wait Mon 2025-01-13 22:00 +01:00",
    );
    check(
        night,
        Some("mon-fri"),
        "2025-01-13T01:00",
        0,
        "wait Mon 2025-01-13 22:00 +01:00",
    );
    check(
        night,
        Some("fri-mon"),
        "2025-01-13T23:00",
        0,
        "open until Tue 2025-01-14 02:00 +01:00",
    );
    check(
        night,
        Some("fri-mon"),
        "2025-01-14T23:00",
        0,
        "wait Fri 2025-01-17 22:00 +01:00",
    );
    // Days without ranges: whole days.
    check(
        "",
        Some("sat,sun"),
        "2025-01-10T12:00",
        0,
        "wait Sat 2025-01-11 00:00 +01:00",
    );
    check(
        "",
        Some("sat,sun"),
        "2025-01-12T23:00",
        30,
        "open until Mon 2025-01-13 00:00 +01:00",
    );
    check(
        "",
        Some("sat,sun"),
        "2025-01-12T23:00",
        120,
        "wait Sat 2025-01-18 00:00 +01:00",
    );
    check("", None, "2025-01-12T23:00", 100_000, "always");
    // Spring forward in Berlin (2025-03-30, 02:00 → 03:00): 02:00-04:00 is open 03:00-04:00.
    check(
        "02:00-04:00",
        None,
        "2025-03-30T01:00",
        30,
        "wait Sun 2025-03-30 03:00 +02:00",
    );
    check(
        "02:00-04:00",
        None,
        "2025-03-30T01:00",
        90,
        "wait Mon 2025-03-31 02:00 +02:00",
    );
    check(
        "02:00-04:00",
        None,
        "2025-03-30T03:30",
        30,
        "open until Sun 2025-03-30 04:00 +02:00",
    );
    check(
        "01:30-02:30",
        None,
        "2025-03-30T01:45",
        0,
        "open until Sun 2025-03-30 03:30 +02:00",
    );
    // Fall back (2025-10-26, 03:00 → 02:00): 02:00-04:00 is open for three hours.
    check(
        "02:00-04:00",
        None,
        "2025-10-26T01:30",
        150,
        "wait Sun 2025-10-26 02:00 +02:00",
    );
    check(
        "02:00-04:00",
        None,
        "2025-10-26T02:30+01:00[Europe/Berlin]",
        60,
        "open until Sun 2025-10-26 04:00 +01:00",
    );
    check(
        "02:00-04:00",
        None,
        "2025-10-26T02:30+02:00[Europe/Berlin]",
        150,
        "open until Sun 2025-10-26 04:00 +01:00",
    );
    check(
        "02:00-04:00",
        Some("sun"),
        "2025-10-26T04:00",
        0,
        "wait Sun 2025-11-02 02:00 +01:00",
    );
}

#[test]
fn weekday_sets() {
    let check = |s: &str, want: Result<&str, &str>| {
        let got = WeekdaySet::parse(s).map(|d| d.to_string());
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{s:?}"),
            (Err(e), Err(w)) => assert!(e.contains(w), "{s:?}: {e}"),
            (got, want) => panic!("{s:?}: got {got:?}, want {want:?}"),
        }
    };
    check("mon-fri", Ok("mon,tue,wed,thu,fri"));
    check("sat,sun", Ok("sat,sun"));
    check("Fri-Mon", Ok("mon,fri,sat,sun"));
    check("monday, Wednesday", Ok("mon,wed"));
    check("tues", Ok("tue"));
    check("mon-sun", Ok("mon,tue,wed,thu,fri,sat,sun"));
    check("mo", Err("is not a list of days"));
    check("mon-", Err("is not a list of days"));
    check("funday", Err("mon, tue, wed"));
}

#[test]
fn next_runs() {
    let tz = berlin();
    let check = |schedule: &Schedule, after: &str, want: &str| {
        let mut rng = fastrand::Rng::with_seed(7);
        let got = schedule.next_run(instant(after, &tz), &mut rng).unwrap();
        assert_eq!(local(got, &tz), want, "after {after}");
    };
    let hourly = Schedule::interval(Duration::from_secs(3600), Duration::ZERO);
    check(&hourly, "2025-01-06T03:00", "Mon 2025-01-06 04:00 +01:00");
    // An interval counts real time: across the spring change 01:30 + 1h is 03:30 local.
    check(&hourly, "2025-03-30T01:30", "Sun 2025-03-30 03:30 +02:00");
    let nightly = Schedule::cron(
        CronExpr::parse("0 3 * * *").unwrap(),
        tz.clone(),
        Duration::ZERO,
    );
    check(&nightly, "2025-03-29T04:00", "Sun 2025-03-30 03:00 +02:00");
    check(&nightly, "2025-01-06T03:00", "Tue 2025-01-07 03:00 +01:00");
    let weekdays = Schedule::cron(
        CronExpr::parse("*/30 9-17 * * mon-fri").unwrap(),
        tz.clone(),
        Duration::ZERO,
    );
    check(&weekdays, "2025-01-10T17:45", "Mon 2025-01-13 09:00 +01:00");
    check(&weekdays, "2025-01-10T09:10", "Fri 2025-01-10 09:30 +01:00");
}

#[test]
fn jitter_stays_within_its_bound_and_spreads() {
    let s = Schedule::interval(Duration::from_secs(600), Duration::from_secs(60));
    let start = Timestamp::UNIX_EPOCH;
    let mut rng = fastrand::Rng::with_seed(1);
    let offsets: Vec<i64> = (0..200)
        .map(|_| s.next_run(start, &mut rng).unwrap().as_millisecond() - 600_000)
        .collect();
    assert!(
        offsets.iter().all(|&o| (0..=60_000).contains(&o)),
        "{offsets:?}"
    );
    let distinct: std::collections::HashSet<_> = offsets.iter().collect();
    assert!(
        distinct.len() > 150,
        "jitter hardly varies: {}",
        distinct.len()
    );
}

#[test]
fn cron_expressions_are_checked() {
    assert!(CronExpr::parse("*/5 * * * *").is_ok());
    assert!(
        CronExpr::parse("0 0 3 * * *").is_ok(),
        "six fields with seconds"
    );
    let e = CronExpr::parse("every day").unwrap_err();
    assert!(e.contains("is not a cron expression"), "{e}");
    assert!(CronExpr::parse("61 * * * *").is_err());
}

/// Runs a scheduler for `run_for` of paused tokio time with ticks that take `tick_takes`;
/// returns the report and the minutes after start at which ticks began.
async fn run_scheduler(
    every_min: u64,
    first_at_start: bool,
    tick_takes: Duration,
    run_for: Duration,
) -> (RunReport, Vec<i64>, u64) {
    let start = Timestamp::UNIX_EPOCH;
    let clock = TokioClock::starting_at(start);
    let schedule = Schedule::interval(Duration::from_secs(every_min * 60), Duration::ZERO);
    let scheduler = Scheduler::new(schedule, clock, first_at_start, fastrand::Rng::with_seed(3));
    let ticks = Rc::new(RefCell::new(Vec::new()));
    let mut skips = 0;
    let report = scheduler
        .run(
            tokio::time::sleep(run_for),
            || {
                let ticks = ticks.clone();
                async move {
                    ticks
                        .borrow_mut()
                        .push(clock.now().duration_since(start).as_secs() / 60);
                    tokio::time::sleep(tick_takes).await;
                }
            },
            || skips += 1,
        )
        .await;
    let ticks = ticks.borrow().clone();
    (report, ticks, skips)
}

#[tokio::test(start_paused = true)]
async fn scheduler_runs_on_time() {
    let (report, ticks, skips) = run_scheduler(
        10,
        true,
        Duration::from_secs(5),
        Duration::from_secs(35 * 60),
    )
    .await;
    assert_eq!(ticks, [0, 10, 20, 30]);
    assert_eq!((report.started, report.skipped, skips), (4, 0, 0));

    let (report, ticks, _) = run_scheduler(
        10,
        false,
        Duration::from_secs(5),
        Duration::from_secs(35 * 60),
    )
    .await;
    assert_eq!(ticks, [10, 20, 30]);
    assert_eq!(report.started, 3);
}

#[tokio::test(start_paused = true)]
async fn overlapping_checks_are_skipped_and_counted() {
    // Each check takes 25 minutes; due every 10: 0 runs, 10 and 20 are skipped, 30 runs,
    // 40 is skipped, and shutdown comes at 45 while the check from 30 still runs.
    let begun = tokio::time::Instant::now();
    let (report, ticks, skips) = run_scheduler(
        10,
        true,
        Duration::from_secs(25 * 60),
        Duration::from_secs(45 * 60),
    )
    .await;
    assert_eq!(ticks, [0, 30]);
    assert_eq!((report.started, report.skipped, skips), (2, 3, 3));
    // The check that was running at shutdown was allowed to finish (at 55 minutes).
    assert_eq!(begun.elapsed(), Duration::from_secs(55 * 60));
}

#[test]
fn no_duration_or_window_panics_or_overflows() {
    let now = Timestamp::UNIX_EPOCH;
    let mut rng = fastrand::Rng::with_seed(5);
    // An interval past the end of time: no next run, no panic.
    assert_eq!(
        Schedule::interval(Duration::MAX, Duration::ZERO).next_run(now, &mut rng),
        None
    );
    // A huge jitter leaves the base time.
    let hourly = Schedule::interval(Duration::from_secs(3600), Duration::MAX);
    let next = hourly.next_run(now, &mut rng).unwrap();
    assert!(next.as_second() >= 3600, "{next}");
    // Windows: an update needing forever never fits; a range outside the day matches nothing.
    let tz = berlin();
    let w = Windows {
        ranges: parse_windows("02:00-04:00").unwrap(),
        days: None,
        tz: tz.clone(),
    };
    assert_eq!(
        w.may_change_now(instant("2025-01-06T03:00", &tz), Duration::MAX),
        WindowDecision::NoWindowLongEnough
    );
    let broken = Windows {
        ranges: vec![super::TimeRange {
            start_minute: u16::MAX,
            end_minute: 5000,
        }],
        days: None,
        tz,
    };
    assert_eq!(
        broken.may_change_now(now, Duration::from_secs(60)),
        WindowDecision::NoWindowLongEnough
    );
    assert!(!broken.is_open(now));
}

#[tokio::test(start_paused = true)]
async fn a_schedule_with_no_next_run_waits_for_shutdown_without_panicking() {
    let schedule = Schedule::interval(Duration::MAX, Duration::ZERO);
    let clock = TokioClock::starting_at(Timestamp::UNIX_EPOCH);
    let scheduler = Scheduler::new(schedule, clock, true, fastrand::Rng::with_seed(3));
    let report = scheduler
        .run(
            tokio::time::sleep(Duration::from_secs(3600)),
            || async {},
            || {},
        )
        .await;
    assert_eq!((report.started, report.skipped), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn tokio_clock_follows_paused_time() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(Timestamp::UNIX_EPOCH));
    tokio::time::advance(Duration::from_secs(90)).await;
    assert_eq!(clock.now().as_second(), 90);
}
