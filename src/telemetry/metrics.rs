//! The Prometheus metrics, in a registry of lookout's own.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric lookout exports. Cheap to clone (the metrics are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub(crate) updates: IntCounterVec,
    pub(crate) rollbacks: IntCounterVec,
    pub(crate) update_failures: IntCounterVec,
    pub(crate) state_restores: IntCounter,
    pub(crate) checks: IntCounterVec,
    pub(crate) checks_skipped: IntCounter,
    pub(crate) registry_requests: IntCounterVec,
    pub(crate) ratelimit_remaining: IntGaugeVec,
    pub(crate) update_available: IntGaugeVec,
    pub(crate) last_check: Gauge,
    pub(crate) check_duration: Histogram,
    pub(crate) update_duration: Histogram,
    pub(crate) webhook_deliveries: IntCounterVec,
    pub(crate) notify_deliveries: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Results counted by `lookout_webhook_deliveries_total{result}`.
pub(super) const DELIVERY_RESULTS: &[&str] = &["delivered", "retried", "failed", "dropped"];
/// Results counted by `lookout_updates_total{service,result}`.
pub(super) const UPDATE_RESULTS: &[&str] = &["updated", "rolled_back", "failed"];

impl Metrics {
    /// Registers every metric; `services` get their per-service series at zero from the start.
    pub fn new(version: &str, services: &[String]) -> Self {
        Self::with_channels(version, services, &[])
    }

    /// [`Metrics::new`], and the notification `channels` with their series at zero.
    pub(crate) fn with_channels(version: &str, services: &[String], channels: &[String]) -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(m.clone())).expect("unique");
            m
        };
        let counter = |name: &str, help: &str| {
            let m = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(m.clone())).expect("unique");
            m
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(m.clone())).expect("unique");
            m
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let m = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            registry.register(Box::new(m.clone())).expect("unique");
            m
        };
        let m = Self {
            updates: counter_vec(
                "lookout_updates_total",
                "Updates that ended, by service and result (updated, rolled_back, failed).",
                &["service", "result"],
            ),
            rollbacks: counter_vec(
                "lookout_rollbacks_total",
                "Updates rolled back to the previous image.",
                &["service"],
            ),
            update_failures: counter_vec(
                "lookout_update_failures_total",
                "Updates that failed, by the step that failed.",
                &["service", "stage"],
            ),
            state_restores: counter(
                "lookout_state_restores_total",
                "Times the state file was restored from a backup or started afresh.",
            ),
            checks: counter_vec(
                "lookout_checks_total",
                "Service checks, by result (up_to_date, update_available, failed).",
                &["result"],
            ),
            checks_skipped: counter(
                "lookout_checks_skipped_total",
                "Due checks skipped because the previous check still ran.",
            ),
            registry_requests: counter_vec(
                "lookout_registry_requests_total",
                "Requests to registries, by registry host, method and HTTP status (error: no answer).",
                &["registry", "method", "status"],
            ),
            ratelimit_remaining: gauge_vec(
                "lookout_registry_ratelimit_remaining",
                "Requests a registry says are left in its rate limit.",
                &["registry"],
            ),
            update_available: gauge_vec(
                "lookout_update_available",
                "1 when the last check found a newer image for the service, else 0.",
                &["service"],
            ),
            last_check: {
                let g = Gauge::new(
                    "lookout_last_check_timestamp_seconds",
                    "When the last service check finished (Unix time).",
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique");
                g
            },
            check_duration: histogram(
                "lookout_check_duration_seconds",
                "How long one service check took.",
                vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
            ),
            update_duration: histogram(
                "lookout_update_duration_seconds",
                "How long an update took, from start to healthy or rolled back.",
                vec![1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0],
            ),
            webhook_deliveries: counter_vec(
                "lookout_webhook_deliveries_total",
                "Webhook deliveries, by result (delivered, retried, failed, dropped).",
                &["result"],
            ),
            notify_deliveries: counter_vec(
                "lookout_notify_deliveries_total",
                "Notification requests, by channel and result (delivered, retried, failed, dropped).",
                &["channel", "result"],
            ),
            registry: registry.clone(),
        };
        let build_info = gauge_vec(
            "lookout_build_info",
            "Always 1; the version label says which lookout runs.",
            &["version"],
        );
        build_info.with_label_values(&[version]).set(1);
        for result in DELIVERY_RESULTS {
            m.webhook_deliveries.with_label_values(&[*result]);
        }
        for channel in channels {
            for result in DELIVERY_RESULTS {
                m.notify_deliveries
                    .with_label_values(&[channel.as_str(), result]);
            }
        }
        for result in super::CheckResult::NAMES {
            m.checks.with_label_values(&[*result]);
        }
        for service in services {
            m.add_service(service);
        }
        m
    }

    /// A service's series, at zero.
    pub(crate) fn add_service(&self, service: &str) {
        self.update_available.with_label_values(&[service]).set(0);
        self.rollbacks.with_label_values(&[service]);
        for result in UPDATE_RESULTS {
            self.updates.with_label_values(&[service, result]);
        }
    }

    /// All metrics in the Prometheus text format, for `/metrics`.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# error encoding metrics: {e}\n"))
    }

    /// The content type of [`Metrics::render`]'s output.
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";
}
