//! Time: the zone windows and the cron schedule use, how checks are scheduled, and when each
//! service's next maintenance window opens. Pure: the zone and the time come in as values.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::report::Check;
use crate::config::Config;
use crate::schedule::Windows;

/// Whether any window or the cron schedule falls back to the system's zone.
pub(super) fn uses_local_zone(config: &Config) -> bool {
    if config.timezone.is_some() {
        return false;
    }
    config.schedule.is_some()
        || config.maintenance_window.is_some()
        || config.maintenance_days.is_some()
        || config.services.iter().any(|s| {
            s.timezone.is_none() && (s.maintenance_window.is_some() || s.maintenance_days.is_some())
        })
}

/// The configured zone, or that the system's can be determined when windows or the cron
/// schedule need it.
pub(super) fn timezone_check(
    configured: Option<&TimeZone>,
    system: Result<TimeZone, String>,
    needed: bool,
) -> Check {
    let name = "timezone";
    if let Some(tz) = configured {
        return Check::pass(
            name,
            format!("{} (configured)", tz.iana_name().unwrap_or("a fixed zone")),
        );
    }
    match system {
        Ok(tz) => Check::pass(
            name,
            format!(
                "system zone {}",
                tz.iana_name()
                    .unwrap_or("(from /etc/localtime, no IANA name)")
            ),
        ),
        Err(e) if needed => Check::warn(
            name,
            format!(
                "the system's time zone cannot be determined ({e}); maintenance windows and the schedule use UTC"
            ),
            "set `timezone` in the configuration (e.g. \"Europe/Berlin\"), or TZ, or mount /etc/localtime (in a container: -v /etc/localtime:/etc/localtime:ro)",
        ),
        Err(_) => Check::pass(
            name,
            "the system's zone is not known (UTC is used), and no window or cron schedule needs one",
        ),
    }
}

/// How checks are scheduled, and for each service whose changes are limited to windows, when
/// the next one opens.
pub(super) fn schedule_checks(config: &Config, local: &TimeZone, now: Timestamp) -> Vec<Check> {
    let tz = config.timezone.clone().unwrap_or_else(|| local.clone());
    let mut checks = vec![schedule_check(config, &tz, now)];
    for spec in config.services.iter().filter(|s| s.enabled) {
        let windows = Windows::for_service(config, spec, local);
        if windows.is_unrestricted() {
            continue;
        }
        checks.push(window_check(&spec.name, &windows, now));
    }
    checks
}

/// The cron schedule and when it fires next, or the interval.
fn schedule_check(config: &Config, tz: &TimeZone, now: Timestamp) -> Check {
    let Some(cron) = &config.schedule else {
        let jitter = if config.check_jitter.is_zero() {
            String::new()
        } else {
            format!(" (plus up to {}s jitter)", config.check_jitter.as_secs())
        };
        return Check::pass(
            "schedule",
            format!("a check every {}s{jitter}", config.check_interval.as_secs()),
        );
    };
    match cron.next_after(now, tz) {
        Some(next) => Check::pass(
            "schedule",
            format!(
                "cron {cron}; next check at {}",
                next.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M %Z")
            ),
        ),
        None => Check::fail(
            "schedule",
            format!("cron {cron} never fires"),
            "correct `schedule` (minute hour day-of-month month day-of-week)",
        ),
    }
}

/// When the next window of one service opens.
fn window_check(service: &str, windows: &Windows, now: Timestamp) -> Check {
    let name = format!("maintenance windows for {service}");
    match windows.next_open(now) {
        Some(at) if at == now => Check::pass(name, "a window is open now"),
        Some(at) => Check::pass(
            name,
            format!(
                "next window opens {}",
                at.to_zoned(windows.tz.clone())
                    .strftime("%Y-%m-%d %H:%M %Z")
            ),
        ),
        None => Check::warn(
            name,
            "no window opens in the next two weeks, so this service is never updated",
            "check maintenance_window and maintenance_days (no day selected?)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn timezone_outcomes() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let c = timezone_check(Some(&berlin), Err("no".into()), true);
        assert_eq!(
            (c.status(), c.detail()),
            ("PASS", "Europe/Berlin (configured)")
        );
        let c = timezone_check(None, Ok(berlin), true);
        assert_eq!(c.detail(), "system zone Europe/Berlin");
        let c = timezone_check(None, Err("no /etc/localtime".into()), true);
        assert_eq!(c.status(), "WARN");
        assert!(c.fix().unwrap().contains("set `timezone`"));
        let c = timezone_check(None, Err("no /etc/localtime".into()), false);
        assert_eq!(c.status(), "PASS");
    }

    fn config(text: &str) -> Config {
        let doc = config::parse(text, config::Format::Toml).unwrap();
        config::validate(&doc, &|_| None).unwrap()
    }

    #[test]
    fn the_local_zone_matters_only_to_windows_and_cron_without_a_zone() {
        let service =
            "[[services]]\nname = \"web\"\nimage = \"nginx:1\"\ncompose_file = \"/c.yaml\"\n";
        let check = |top: &str, extra: &str, want: bool| {
            let c = config(&format!("{top}{service}{extra}"));
            assert_eq!(uses_local_zone(&c), want, "{top:?} {extra:?}");
        };
        check("", "", false);
        check("maintenance_window = \"02:00-04:00\"\n", "", true);
        check("schedule = \"0 3 * * *\"\n", "", true);
        check("", "maintenance_window = \"02:00-04:00\"\n", true);
        check(
            "",
            "maintenance_window = \"02:00-04:00\"\ntimezone = \"UTC\"\n",
            false,
        );
        check(
            "timezone = \"UTC\"\nmaintenance_window = \"02:00-04:00\"\n",
            "maintenance_window = \"02:00-04:00\"\n",
            false,
        );
    }

    #[test]
    fn windows_say_when_they_open_next() {
        let config = config(
            "maintenance_window = \"02:00-04:00\"\ntimezone = \"UTC\"\ncheck_interval = \"5m\"\ncheck_jitter = \"0s\"\n\
             [[services]]\nname = \"web\"\nimage = \"nginx:1\"\ncompose_file = \"/c.yaml\"\n\
             [[services]]\nname = \"db\"\nimage = \"postgres:16\"\ncompose_file = \"/c.yaml\"\nmaintenance_window = \"11:00-13:00\"\n\
             [[services]]\nname = \"cache\"\nimage = \"redis:7\"\ncompose_file = \"/c.yaml\"\nmaintenance_window = \"00:00-01:00\"\nenabled = false\n",
        );
        let now: Timestamp = "2025-03-03T12:00:00Z".parse().unwrap();
        let checks = schedule_checks(&config, &TimeZone::UTC, now);
        let lines: Vec<(&str, &str, &str)> = checks
            .iter()
            .map(|c| (c.name.as_str(), c.status(), c.detail()))
            .collect();
        assert_eq!(
            lines,
            [
                ("schedule", "PASS", "a check every 300s"),
                (
                    "maintenance windows for web",
                    "PASS",
                    "next window opens 2025-03-04 02:00 UTC"
                ),
                ("maintenance windows for db", "PASS", "a window is open now"),
            ]
        );
    }
}
