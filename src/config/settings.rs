//! What the configuration gives the modules it configures.
//!
//! The schedule and telemetry know nothing of [`Config`]: they take plain values. These
//! constructors, defined here on their types, read those values from a validated
//! configuration, so imports run one way (config → schedule, telemetry).

use jiff::tz::TimeZone;

use super::{Config, ServiceSpec};
use crate::schedule::{Schedule, ScheduleKind, Windows};
use crate::telemetry::{Retry, TelemetrySettings, hostname};

impl Windows {
    /// The windows that apply to `service`: its own `maintenance_window`, `maintenance_days`
    /// and `timezone` where set, else the global ones; `local` is the zone used when neither
    /// names one (the system's zone, read once at start).
    pub(crate) fn for_service(config: &Config, service: &ServiceSpec, local: &TimeZone) -> Self {
        Self {
            ranges: service
                .maintenance_window
                .clone()
                .or_else(|| config.maintenance_window.clone())
                .unwrap_or_default(),
            days: service.maintenance_days.or(config.maintenance_days),
            tz: service
                .timezone
                .clone()
                .or_else(|| config.timezone.clone())
                .unwrap_or_else(|| local.clone()),
        }
    }
}

impl Schedule {
    /// The schedule the configuration asks for; `local` is the zone used when none is set.
    pub fn from_config(config: &Config, local: &TimeZone) -> Self {
        let kind = match &config.schedule {
            Some(expr) => ScheduleKind::Cron(
                Box::new(expr.clone()),
                config.timezone.clone().unwrap_or_else(|| local.clone()),
            ),
            None => ScheduleKind::Interval(config.check_interval),
        };
        Self {
            kind,
            jitter: config.check_jitter,
        }
    }
}

impl TelemetrySettings {
    /// Settings for `config`, on this host.
    pub fn from_config(config: &Config) -> Self {
        let mut registries: Vec<String> = config
            .services
            .iter()
            .map(|s| s.image.registry().to_owned())
            .collect();
        registries.sort();
        registries.dedup();
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            host: hostname(),
            services: config.services.iter().map(|s| s.name.clone()).collect(),
            registries,
            webhooks: config.webhooks.clone(),
            notify: config.notify.clone(),
            queue_capacity: 256,
            retry: Retry::default(),
        }
    }
}
