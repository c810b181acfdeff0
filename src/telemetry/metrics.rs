//! Prometheus metrics. Every gateway metric lives in one registry whose namespace makes each name
//! `tiktok_gateway_<name>`; `/metrics` serves it together with the standard `process_*` metrics
//! (CPU, memory, file descriptors, start time), which keep their conventional names.

use std::sync::OnceLock;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The prefix of every gateway metric (`tiktok_gateway_requests_total`).
pub const NAMESPACE: &str = "tiktok_gateway";

/// The label value of requests no route matched.
pub const NO_ROUTE: &str = "(none)";

/// The gateway's registry: what is registered here is exported with the [`NAMESPACE`] prefix.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        // A literal, valid prefix: this cannot fail.
        Registry::new_custom(Some(NAMESPACE.to_owned()), None).unwrap_or_default()
    })
}

/// Registers `collector` in the gateway's registry; a duplicate (a second gateway in one
/// process, as in tests) is logged and the first registration stays.
pub fn register(collector: Box<dyn prometheus::core::Collector>, name: &str) {
    if let Err(e) = registry().register(collector) {
        tracing::debug!(metric = name, error = %e, "metric not registered again");
    }
}

pub struct Metrics {
    pub requests_total: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    /// From the first upstream attempt to the response head (proxied) or the whole answer (the
    /// gateway's own calls), by upstream and outcome.
    pub upstream_duration: HistogramVec,
    /// One TikTok API exchange, by endpoint (the route) and outcome.
    pub tiktok_duration: HistogramVec,
    pub config_reloads: IntCounterVec,
    pub tls_reloads: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub refusals: IntCounterVec,
    pub pii_leaks: IntCounterVec,
    pub connections_closed: IntCounterVec,
    /// Dependency errors the dependency recovered from itself (not logged as errors).
    pub dependency_recovered_events: IntCounterVec,
    pub config_loaded_at: IntGauge,
    pub access_log_dropped: IntCounterVec,
    /// Spans lost instead of slowing requests down, by reason.
    pub trace_spans_dropped: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub upstream_target_healthy: IntGaugeVec,
    pub upstream_target_ejections: IntCounterVec,
    pub upstream_health_checks: IntCounterVec,
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
    /// Audit records that could not be written at once, by reason.
    pub audit_write_failures: IntCounterVec,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

// Names and labels below are constants: building them can only fail on a programming error,
// never on input, so failing loudly at first use is right.
const STATIC: &str = "static metric definition";

/// Latency buckets, seconds: from sub-millisecond local answers to slow upstreams.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect(STATIC);
    register(Box::new(vec.clone()), name);
    vec
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect(STATIC);
    register(Box::new(vec.clone()), name);
    vec
}

fn single_gauge(name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).expect(STATIC);
    register(Box::new(gauge.clone()), name);
    gauge
}

fn single_counter(name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect(STATIC);
    register(Box::new(counter.clone()), name);
    counter
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let vec = HistogramVec::new(opts, labels).expect(STATIC);
    register(Box::new(vec.clone()), name);
    vec
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let config_loaded_at = IntGauge::new(
            "config_loaded_timestamp_seconds",
            "Unix time the running config was applied",
        )
        .expect(STATIC);
        register(
            Box::new(config_loaded_at.clone()),
            "config_loaded_timestamp_seconds",
        );
        let build_info = IntGaugeVec::new(
            Opts::new(
                "build_info",
                "Always 1; the labels say which build is running",
            ),
            &["version"],
        )
        .expect(STATIC);
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        register(Box::new(build_info.clone()), "build_info");
        register_process_metrics();
        Metrics {
            requests_total: counter(
                "requests_total",
                "Requests answered, by route and status (route=\"(none)\": no route matched)",
                &["route", "status"],
            ),
            request_duration: histogram(
                "request_duration_seconds",
                "Request latency by route",
                &["route"],
            ),
            upstream_errors: counter(
                "upstream_errors_total",
                "Upstream failures by upstream and kind",
                &["upstream", "kind"],
            ),
            upstream_duration: histogram(
                "upstream_duration_seconds",
                "Time spent on the upstream by upstream and outcome (2xx..5xx by the answer's \
                 status; connect, timeout, protocol when there was none)",
                &["upstream", "outcome"],
            ),
            tiktok_duration: histogram(
                "tiktok_request_duration_seconds",
                "One TikTok API exchange by endpoint (the route) and outcome (ok, api_error, \
                 throttled, token_expired, http_error, timeout, unavailable)",
                &["endpoint", "outcome"],
            ),
            config_reloads: counter(
                "config_reloads_total",
                "Config reloads by outcome (applied, rejected)",
                &["outcome"],
            ),
            tls_reloads: counter(
                "tls_reloads_total",
                "TLS certificate / key / client-CA reloads by listener and outcome (applied, \
                 rejected: the listener kept its previous material)",
                &["listener", "outcome"],
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
            dependency_recovered_events: counter(
                "dependency_recovered_events_total",
                "Errors a dependency logged and recovered from itself, counted instead of logged \
                 (upstream_pool_reuse_race: Pingora connected anew instead of reusing an idle \
                 upstream connection)",
                &["event"],
            ),
            access_log_dropped: counter(
                "access_log_dropped_total",
                "Access-log lines lost instead of slowing requests down, by reason \
                 (queue_full: the sink fell behind; write_error: the sink refused a batch)",
                &["reason"],
            ),
            trace_spans_dropped: counter(
                "trace_spans_dropped_total",
                "Trace spans not exported, by reason (queue_full: the exporter fell behind; \
                 export_failed: the collector did not take a batch)",
                &["reason"],
            ),
            config_loaded_at,
            build_info,
            upstream_target_healthy: gauge(
                "upstream_target_healthy",
                "1 while an upstream target takes traffic (probes pass, breaker closed), 0 \
                 while it is skipped; a host-name target counts each resolved address",
                &["upstream", "target"],
            ),
            upstream_target_ejections: counter(
                "upstream_target_ejections_total",
                "Times a target's circuit breaker opened (consecutive failures, or a failed \
                 half-open trial)",
                &["upstream", "target"],
            ),
            upstream_health_checks: counter(
                "upstream_health_checks_total",
                "Active probes of upstream targets, by result (pass, fail)",
                &["upstream", "target", "result"],
            ),
            state_backend_up: gauge(
                "state_backend_up",
                "1 while the state backend (embedded or postgres) answers, 0 while it does not",
                &["backend"],
            ),
            state_errors: counter(
                "state_errors_total",
                "Failed state operations, by backend and operation",
                &["backend", "op"],
            ),
            webhook_queue_depth: single_gauge(
                "webhook_queue_depth",
                "Accepted webhooks not yet acknowledged by the order service (all replicas on a \
                 shared backend)",
            ),
            webhook_queue_oldest_age: single_gauge(
                "webhook_queue_oldest_age_seconds",
                "Age of the oldest webhook not yet acknowledged by the order service (0 when \
                 empty)",
            ),
            webhook_dead_letter_depth: single_gauge(
                "webhook_dead_letter_depth",
                "Webhooks given up on after webhooks.dead_letter_after and kept in the \
                 dead-letter state",
            ),
            webhook_dead_lettered: single_counter(
                "webhook_dead_lettered_total",
                "Webhooks this gateway moved to the dead-letter state",
            ),
            audit_write_failures: counter(
                "audit_write_failures_total",
                "Audit records not written at once, by reason (queue_full: the record was lost \
                 because the writer fell behind; store_error: an append failed and is retried)",
                &["reason"],
            ),
        }
    })
}

/// The standard `process_*` metrics, in the default registry so they keep their usual names.
fn register_process_metrics() {
    #[cfg(target_os = "linux")]
    {
        let collector = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = prometheus::default_registry().register(Box::new(collector)) {
            tracing::debug!(error = %e, "process metrics not registered again");
        }
    }
}

/// The `outcome` label of an upstream answer with `status`.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Text exposition: the gateway's registry, then the process metrics.
pub fn render() -> String {
    let _ = metrics();
    let mut families = registry().gather();
    families.extend(prometheus::gather());
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_metric_is_prefixed_and_build_info_is_set() {
        metrics()
            .requests_total
            .with_label_values(&[NO_ROUTE, "404"])
            .inc();
        let text = render();
        assert!(text.contains(&format!(
            "tiktok_gateway_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("tiktok_gateway_requests_total{route=\"(none)\",status=\"404\"}"));
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(
                line.starts_with("tiktok_gateway_") || line.starts_with("process_"),
                "unprefixed metric: {line}"
            );
        }
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"));
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(404), "4xx");
    }
}
