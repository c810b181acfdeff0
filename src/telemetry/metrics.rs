//! Prometheus metrics, registered once in the default registry (which `/metrics` serves).

use std::sync::OnceLock;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec,
};

pub struct Metrics {
    pub requests_total: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub refusals: IntCounterVec,
    pub pii_leaks: IntCounterVec,
    pub connections_closed: IntCounterVec,
    pub config_loaded_at: IntGauge,
    pub access_log_dropped: IntCounterVec,
    /// 1 while the state backend answers, by backend.
    pub state_backend_up: IntGaugeVec,
    /// Failed state operations, by backend and operation.
    pub state_errors: IntCounterVec,
    /// Webhooks stored and not yet acknowledged (fleet-wide on a shared backend).
    pub webhook_queue_depth: IntGauge,
    pub webhook_queue_oldest_age: IntGauge,
    /// Webhooks in the dead-letter state (fleet-wide on a shared backend).
    pub webhook_dead_letter_depth: IntGauge,
    /// Webhooks this process moved to the dead-letter state.
    pub webhook_dead_lettered: IntCounter,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

// Names and labels below are constants: registering them can only fail on a programming error
// (a duplicate name), never on input, so failing loudly at first use is right.
const STATIC: &str = "static metric definition";

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register_int_counter_vec!(Opts::new(name, help), labels).expect(STATIC)
        };
        Metrics {
            requests_total: counter(
                "requests_total",
                "Requests answered, by route and status",
                &["route", "status"],
            ),
            request_duration: register_histogram_vec!(
                HistogramOpts::new("request_duration_seconds", "Request latency by route").buckets(
                    vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0
                    ]
                ),
                &["route"]
            )
            .expect(STATIC),
            upstream_errors: counter(
                "upstream_errors_total",
                "Upstream failures by upstream and kind",
                &["upstream", "kind"],
            ),
            config_reloads: counter(
                "config_reloads_total",
                "Config reloads by outcome (applied, rejected)",
                &["outcome"],
            ),
            auth_failures: counter(
                "auth_failures_total",
                "Authentication/authorization refusals by route and reason",
                &["route", "reason"],
            ),
            refusals: counter(
                "requests_refused_total",
                "Requests refused before the upstream, by route and code",
                &["route", "code"],
            ),
            pii_leaks: counter(
                "pii_leak_detected_total",
                "Personal data found leaving on a route not cleared for it, by route and kind",
                &["route", "kind"],
            ),
            connections_closed: counter(
                "connections_closed_total",
                "Connections the gateway closed without an answer, by listener and reason \
                 (over_cap: connection caps; head_timeout: request head too slow)",
                &["listener", "reason"],
            ),
            access_log_dropped: counter(
                "access_log_dropped_total",
                "Access-log lines lost instead of slowing requests down, by reason \
                 (queue_full: the sink fell behind; write_error: the sink refused a batch; \
                 encode_error: a record could not be encoded)",
                &["reason"],
            ),
            state_backend_up: register_int_gauge_vec!(
                "state_backend_up",
                "1 while the state backend (embedded or postgres) answers, 0 while it does not",
                &["backend"]
            )
            .expect(STATIC),
            state_errors: counter(
                "state_errors_total",
                "Failed state operations, by backend and operation",
                &["backend", "op"],
            ),
            webhook_queue_depth: register_int_gauge!(
                "webhook_queue_depth",
                "Accepted webhooks not yet acknowledged by the order service (all replicas on a shared backend)"
            )
            .expect(STATIC),
            webhook_queue_oldest_age: register_int_gauge!(
                "webhook_queue_oldest_age_seconds",
                "Age of the oldest webhook not yet acknowledged by the order service (0 when empty)"
            )
            .expect(STATIC),
            webhook_dead_letter_depth: register_int_gauge!(
                "webhook_dead_letter_depth",
                "Webhooks given up on after webhooks.dead_letter_after and kept in the dead-letter state"
            )
            .expect(STATIC),
            webhook_dead_lettered: register_int_counter!(
                "webhook_dead_lettered_total",
                "Webhooks this gateway moved to the dead-letter state"
            )
            .expect(STATIC),
            config_loaded_at: register_int_gauge!(
                "config_loaded_timestamp_seconds",
                "Unix time the running config was applied"
            )
            .expect(STATIC),
        }
    })
}

/// Text exposition of the default registry.
pub fn render() -> String {
    let _ = metrics();
    prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .unwrap_or_default()
}
