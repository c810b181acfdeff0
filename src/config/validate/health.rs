//! `upstreams.<name>.health_check` (active probes) and `upstreams.<name>.circuit_breaker`
//! (passive ejection): every value checked here, so the running health checker never meets a
//! setting it cannot act on.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::V;
use crate::config::file::{CircuitBreakerFile, HealthCheckFile};
use crate::config::runtime::{CircuitBreaker, HealthCheck, Probe};

/// Probes more often than this would load the targets more than they tell.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_THRESHOLD: u32 = 100;

pub(super) fn health_check(v: &mut V, p: &str, h: &Spanned<HealthCheckFile>) -> HealthCheck {
    let p = format!("{p}.health_check");
    let f = &h.value;
    let probe = match f.probe.as_ref().map(|t| (t, t.value.as_str())) {
        None | Some((_, "http")) => {
            let path = match &f.path {
                None => "/".to_owned(),
                Some(path) => {
                    if let Err(e) = probe_path(&path.value) {
                        v.issues.at(format!("{p}.path"), path, e);
                    }
                    path.value.clone()
                }
            };
            Probe::Http { path }
        }
        Some((_, "tcp")) => {
            if let Some(path) = &f.path {
                v.issues.at(
                    format!("{p}.path"),
                    path,
                    "only `type: http` probes a path; remove it or set `type: http`",
                );
            }
            Probe::Tcp
        }
        Some((t, other)) => {
            v.issues.at(
                format!("{p}.type"),
                t,
                format!("`{other}` is not a probe type (use `http` or `tcp`)"),
            );
            Probe::Tcp
        }
    };
    let interval = v.duration(
        &format!("{p}.interval"),
        &f.interval,
        Duration::from_secs(5),
    );
    if let Some(i) = &f.interval
        && interval < MIN_INTERVAL
    {
        v.issues
            .at(format!("{p}.interval"), i, "must be at least 100ms");
    }
    let timeout = v.duration(&format!("{p}.timeout"), &f.timeout, Duration::from_secs(1));
    if timeout.is_zero() || timeout > interval {
        let message = format!(
            "must be above 0 and at most `interval` ({}ms): a probe ends before the next one starts",
            interval.as_millis()
        );
        match &f.timeout {
            Some(t) => v.issues.at(format!("{p}.timeout"), t, message),
            None => v.issues.at(
                format!("{p}.timeout"),
                h,
                format!("the default `1s` {message}; set `timeout`"),
            ),
        }
    }
    HealthCheck {
        probe,
        interval,
        timeout,
        healthy_threshold: threshold(
            v,
            &format!("{p}.healthy_threshold"),
            &f.healthy_threshold,
            2,
        ),
        unhealthy_threshold: threshold(
            v,
            &format!("{p}.unhealthy_threshold"),
            &f.unhealthy_threshold,
            3,
        ),
    }
}

fn threshold(v: &mut V, path: &str, value: &Option<Spanned<u32>>, default: u32) -> u32 {
    match value {
        None => default,
        Some(n) if (1..=MAX_THRESHOLD).contains(&n.value) => n.value,
        Some(n) => {
            v.issues.at(path, n, "must be between 1 and 100");
            default
        }
    }
}

/// A probe path is sent as written: origin form (`/...`), nothing a request line cannot carry.
fn probe_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` must start with `/`"));
    }
    path.parse::<http::uri::PathAndQuery>()
        .map(|_| ())
        .map_err(|_| format!("`{path}` is not a valid request path"))
}

pub(super) fn circuit_breaker(
    v: &mut V,
    p: &str,
    c: Option<&Spanned<CircuitBreakerFile>>,
) -> CircuitBreaker {
    let defaults = CircuitBreaker::default();
    let Some(c) = c else {
        return defaults;
    };
    let p = format!("{p}.circuit_breaker");
    let f = &c.value;
    let failures = match &f.failures {
        None => defaults.failures,
        Some(n) if n.value <= 1000 => n.value,
        Some(n) => {
            v.issues.at(
                format!("{p}.failures"),
                n,
                "must be between 0 (off) and 1000",
            );
            defaults.failures
        }
    };
    let cool_down = v.duration(&format!("{p}.cool_down"), &f.cool_down, defaults.cool_down);
    if let Some(d) = &f.cool_down
        && cool_down < MIN_INTERVAL
    {
        v.issues
            .at(format!("{p}.cool_down"), d, "must be at least 100ms");
    }
    if failures == 0 {
        // Settings of a breaker that never opens would be accepted and ignored.
        if let Some(d) = &f.cool_down {
            v.issues.at(
                format!("{p}.cool_down"),
                d,
                "has no effect with `failures: 0` (the breaker is off)",
            );
        }
        if let Some(b) = &f.count_5xx {
            v.issues.at(
                format!("{p}.count_5xx"),
                b,
                "has no effect with `failures: 0` (the breaker is off)",
            );
        }
    }
    CircuitBreaker {
        failures,
        cool_down,
        count_5xx: f.count_5xx.as_ref().is_some_and(|b| b.value),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{CircuitBreaker, ConfigError, GatewayConfig, HealthCheck, Probe};

    fn load(upstream: &str) -> Result<GatewayConfig, ConfigError> {
        let yaml = format!(
            "listeners:\n  plain: {{ address: \"127.0.0.1:8080\" }}\n\
             upstreams:\n  orders:\n{upstream}\n\
             routes:\n  - {{ name: r, listener: plain, match: {{ path_prefix: / }}, auth: none, upstream: orders }}\n"
        );
        crate::config::load_str(&yaml, Path::new("."), Path::new("t.yaml"))
    }

    fn errors(upstream: &str) -> String {
        load(upstream).expect_err("refused").to_string()
    }

    #[test]
    fn defaults_and_explicit_settings() {
        let c = load("    targets: [\"127.0.0.1:9001\"]").unwrap();
        let up = &c.upstreams["orders"];
        assert_eq!(up.health_check, None);
        assert_eq!(up.circuit_breaker, CircuitBreaker::default());

        let c = load("    targets: [\"127.0.0.1:9001\"]\n    health_check: {}\n").unwrap();
        assert_eq!(
            c.upstreams["orders"].health_check,
            Some(HealthCheck {
                probe: Probe::Http { path: "/".into() },
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
                healthy_threshold: 2,
                unhealthy_threshold: 3,
            })
        );

        let c = load(
            "    targets: [\"127.0.0.1:9001\"]\n\
             \x20   health_check: { type: tcp, interval: 2s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 5 }\n\
             \x20   circuit_breaker: { failures: 7, cool_down: 30s, count_5xx: true }\n",
        )
        .unwrap();
        let up = &c.upstreams["orders"];
        let hc = up.health_check.as_ref().unwrap();
        assert_eq!(hc.probe, Probe::Tcp);
        assert_eq!(hc.interval, Duration::from_secs(2));
        assert_eq!(hc.timeout, Duration::from_millis(500));
        assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (1, 5));
        assert_eq!(
            up.circuit_breaker,
            CircuitBreaker {
                failures: 7,
                cool_down: Duration::from_secs(30),
                count_5xx: true
            }
        );
    }

    #[test]
    fn every_bad_setting_is_refused_with_its_path() {
        let cases = [
            (
                "health_check: { type: udp }",
                "upstreams.orders.health_check.type: `type` must be one of `http` or `tcp`, found `udp`",
            ),
            (
                "health_check: { type: tcp, path: /healthz }",
                "upstreams.orders.health_check.path: only `type: http` probes a path",
            ),
            (
                "health_check: { path: healthz }",
                "upstreams.orders.health_check.path: `healthz` must start with `/`",
            ),
            (
                "health_check: { path: \"/a b\" }",
                "upstreams.orders.health_check.path: `/a b` is not a valid request path",
            ),
            (
                "health_check: { interval: 10ms }",
                "upstreams.orders.health_check.interval: must be at least 100ms",
            ),
            (
                "health_check: { interval: 1s, timeout: 2s }",
                "upstreams.orders.health_check.timeout: must be above 0 and at most `interval` (1000ms)",
            ),
            (
                "health_check: { interval: 500ms }",
                "upstreams.orders.health_check.timeout: the default `1s` must be above 0",
            ),
            (
                "health_check: { healthy_threshold: 0 }",
                "upstreams.orders.health_check.healthy_threshold: must be between 1 and 100",
            ),
            (
                "health_check: { unhealthy_threshold: 101 }",
                "upstreams.orders.health_check.unhealthy_threshold: must be between 1 and 100",
            ),
            (
                "circuit_breaker: { failures: 1001 }",
                "upstreams.orders.circuit_breaker.failures: must be between 0 (off) and 1000",
            ),
            (
                "circuit_breaker: { cool_down: 5ms }",
                "upstreams.orders.circuit_breaker.cool_down: must be at least 100ms",
            ),
            (
                "circuit_breaker: { failures: 0, cool_down: 5s }",
                "upstreams.orders.circuit_breaker.cool_down: has no effect with `failures: 0`",
            ),
            (
                "circuit_breaker: { failures: 0, count_5xx: true }",
                "upstreams.orders.circuit_breaker.count_5xx: has no effect with `failures: 0`",
            ),
            (
                "health_check: { intervall: 5s }",
                "upstreams.orders.health_check.intervall: unknown key `intervall` (hint: did you mean `interval`?)",
            ),
        ];
        for (setting, want) in cases {
            let got = errors(&format!(
                "    targets: [\"127.0.0.1:9001\"]\n    {setting}\n"
            ));
            assert!(got.contains(want), "{setting}: {got}");
        }
    }

    #[test]
    fn a_breaker_can_be_turned_off() {
        let c = load("    targets: [\"127.0.0.1:9001\"]\n    circuit_breaker: { failures: 0 }\n")
            .unwrap();
        assert_eq!(c.upstreams["orders"].circuit_breaker.failures, 0);
    }
}
