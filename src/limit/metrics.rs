//! Prometheus counters for rate limiting and TikTok pacing, registered once per process in the
//! gateway's registry (which the metrics listener serves, as `tiktok_gateway_<name>`). Registering lazily and only once keeps
//! repeated limiter construction (config reloads, tests) from failing on duplicates.
//!
//! Labels are route names, key kinds, backend names, shop ids and endpoint names: all bounded by
//! config. Never label with a key value (caller, IP, token).

use std::sync::OnceLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

pub(crate) struct LimitMetrics {
    /// `rate_limited_total{route,key_kind}`: requests refused by a limit.
    pub rate_limited: IntCounterVec,
    /// `rate_limit_backend_errors_total{backend}`: failed decisions on a shared backend.
    pub backend_errors: IntCounterVec,
    /// `rate_limit_backend_up{backend}`: 1 while the shared backend answers, 0 while falling back.
    pub backend_up: IntGaugeVec,
    /// `tiktok_outbound_throttled_total{shop,endpoint}`: 429 / 36009002 answers from TikTok.
    pub outbound_throttled: IntCounterVec,
    /// `tiktok_outbound_paced_total{shop,endpoint}`: calls the pacer held back before TikTok.
    pub outbound_paced: IntCounterVec,
}

pub(crate) fn metrics() -> &'static LimitMetrics {
    static METRICS: OnceLock<LimitMetrics> = OnceLock::new();
    METRICS.get_or_init(|| LimitMetrics {
        rate_limited: counter(
            "rate_limited_total",
            "Requests refused by a rate limit",
            &["route", "key_kind"],
        ),
        backend_errors: counter(
            "rate_limit_backend_errors_total",
            "Rate-limit decisions that failed on a shared backend",
            &["backend"],
        ),
        backend_up: gauge(
            "rate_limit_backend_up",
            "1 while the shared rate-limit backend answers, 0 while falling back",
            &["backend"],
        ),
        outbound_throttled: counter(
            "tiktok_outbound_throttled_total",
            "TikTok answers that throttled the gateway (HTTP 429 or code 36009002)",
            &["shop", "endpoint"],
        ),
        outbound_paced: counter(
            "tiktok_outbound_paced_total",
            "Outbound TikTok calls held back by the gateway's own pacing",
            &["shop", "endpoint"],
        ),
    })
}

// Names, help and labels are the literals above, never input: a failure here is a programming
// error caught by the test below, so `expect` states that invariant.
fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("literal counter definition is valid");
    register(Box::new(vec.clone()), name);
    vec
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec =
        IntGaugeVec::new(Opts::new(name, help), labels).expect("literal gauge definition is valid");
    register(Box::new(vec.clone()), name);
    vec
}

fn register(collector: Box<dyn prometheus::core::Collector>, name: &str) {
    crate::telemetry::metrics::register(collector, name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_and_is_exported() {
        let m = metrics();
        m.backend_errors.with_label_values(&["redis"]).inc();
        let again = metrics();
        assert!(again.backend_errors.with_label_values(&["redis"]).get() >= 1);
        let names: Vec<String> = crate::telemetry::metrics::registry()
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n == "tiktok_gateway_rate_limit_backend_errors_total")
        );
    }
}
