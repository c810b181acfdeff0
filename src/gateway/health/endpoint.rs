//! One address of one upstream target, with what the active probes and the circuit breaker say
//! about it, and the ticket ([`Attempt`]) a request holds while it uses it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge};

use super::breaker::{Admit, Breaker, Change};
use super::probe_health::ProbeHealth;
use crate::config::{CircuitBreaker, HealthCheck, Target};
use crate::telemetry::metrics::metrics;

pub struct Endpoint {
    pub upstream: Arc<str>,
    pub target: Target,
    pub addr: SocketAddr,
    /// `addr` as text, made once: the access log names it on every proxied request.
    pub addr_text: Arc<str>,
    /// Whether answers count for the breaker, or only connects.
    count_5xx: bool,
    /// Probes pass and the breaker is closed: the lock-free fast path of [`Endpoint::admit`].
    up: AtomicBool,
    state: Mutex<EndpointState>,
    gauge: IntGauge,
    ejections: IntCounter,
    probes_passed: IntCounter,
    probes_failed: IntCounter,
}

struct EndpointState {
    probe: ProbeHealth,
    breaker: Breaker,
    /// Whether this endpoint adds 1 to the `upstream_target_healthy` gauge right now (several
    /// addresses of one host-name target share the gauge).
    counted: bool,
    /// Replaced by a reload or a DNS change: an in-flight request may still report on it, but
    /// it no longer counts in the gauge.
    retired: bool,
}

impl Endpoint {
    pub fn new(
        upstream: &Arc<str>,
        target: &Target,
        addr: SocketAddr,
        check: Option<&HealthCheck>,
        breaker: &CircuitBreaker,
    ) -> Self {
        let label = target.to_string();
        let m = metrics();
        let gauge = m
            .upstream_target_healthy
            .with_label_values(&[&**upstream, &label]);
        gauge.inc();
        let probe = match check {
            Some(c) => ProbeHealth::new(c.healthy_threshold, c.unhealthy_threshold),
            None => ProbeHealth::new(1, 1),
        };
        Self {
            upstream: upstream.clone(),
            target: target.clone(),
            addr,
            addr_text: Arc::from(addr.to_string()),
            count_5xx: breaker.count_5xx,
            up: AtomicBool::new(true),
            state: Mutex::new(EndpointState {
                probe,
                breaker: Breaker::new(breaker.failures, breaker.cool_down),
                counted: true,
                retired: false,
            }),
            gauge,
            ejections: m
                .upstream_target_ejections
                .with_label_values(&[&**upstream, &label]),
            probes_passed: m.upstream_health_checks.with_label_values(&[
                &**upstream,
                &label,
                "pass",
            ]),
            probes_failed: m.upstream_health_checks.with_label_values(&[
                &**upstream,
                &label,
                "fail",
            ]),
        }
    }

    /// Whether a request may use this endpoint now (may make it the half-open trial).
    pub fn admit(&self, now: Instant) -> Admit {
        if self.up.load(Ordering::Acquire) {
            return Admit::Yes;
        }
        self.update(|s| {
            if s.probe.healthy() {
                s.breaker.admit(now)
            } else {
                Admit::No
            }
        })
    }

    /// Up now, as the gauge shows it.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// When this endpoint may take traffic again, roughly, while it is out.
    pub fn next_chance(&self, now: Instant, probe_interval: Option<Duration>) -> Option<Instant> {
        let s = self.state.lock();
        match (s.probe.healthy(), probe_interval) {
            (false, Some(every)) => Some(now + every),
            (false, None) => None,
            (true, _) => s.breaker.next_chance(now),
        }
    }

    /// One active probe result.
    pub fn probed(&self, passed: bool, now: Instant) {
        if passed {
            self.probes_passed.inc();
        } else {
            self.probes_failed.inc();
        }
        let (flipped, closed) = self.update(|s| {
            let flipped = s.probe.observe(passed);
            let closed = passed && s.breaker.probe_passed(now) == Change::Closed;
            (flipped, closed)
        });
        if flipped && passed {
            tracing::info!(upstream = %self.upstream, target = %self.target, addr = %self.addr,
                "upstream target healthy again: active probes pass");
        } else if flipped {
            tracing::warn!(upstream = %self.upstream, target = %self.target, addr = %self.addr,
                "upstream target unhealthy: active probes fail; it is skipped until they pass");
        } else if closed {
            tracing::info!(upstream = %self.upstream, target = %self.target, addr = %self.addr,
                "upstream target re-admitted: a probe passed after the cool-down");
        }
    }

    fn succeeded(&self) {
        if self.update(|s| s.breaker.success()) == Change::Closed {
            tracing::info!(upstream = %self.upstream, target = %self.target, addr = %self.addr,
                "upstream target re-admitted: the half-open trial succeeded");
        }
    }

    fn failed(&self, now: Instant) {
        if self.update(|s| s.breaker.failure(now)) == Change::Opened {
            self.ejections.inc();
            tracing::warn!(upstream = %self.upstream, target = %self.target, addr = %self.addr,
                "upstream target ejected: circuit breaker open after consecutive failures");
        }
    }

    fn release_trial(&self) {
        self.update(|s| s.breaker.release_trial());
    }

    /// Stops counting in the gauge: the endpoint left its pool (reload or DNS change).
    pub fn retire(&self) {
        let mut s = self.state.lock();
        if s.counted {
            self.gauge.dec();
            s.counted = false;
        }
        s.retired = true;
    }

    /// Runs `f` on the state, then brings the fast-path flag and the gauge in line with it.
    fn update<R>(&self, f: impl FnOnce(&mut EndpointState) -> R) -> R {
        let mut s = self.state.lock();
        let out = f(&mut s);
        let up = s.probe.healthy() && s.breaker.is_closed();
        self.up.store(up, Ordering::Release);
        if !s.retired && up != s.counted {
            if up {
                self.gauge.inc();
            } else {
                self.gauge.dec();
            }
            s.counted = up;
        }
        out
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if self.state.get_mut().counted {
            self.gauge.dec();
        }
    }
}

/// A request's use of one endpoint. Its outcome feeds the breaker: a failed connect always
/// counts; with `count_5xx`, so does a 5xx answer or a failure after connecting. Dropped without
/// an outcome (the client went away), it frees the half-open trial for the next request.
pub struct Attempt {
    endpoint: Arc<Endpoint>,
    trial: bool,
    settled: bool,
}

impl Attempt {
    pub(super) fn new(endpoint: Arc<Endpoint>, trial: bool) -> Self {
        Self {
            endpoint,
            trial,
            settled: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr
    }

    /// [`Attempt::addr`] as text, shared with the endpoint.
    pub fn addr_text(&self) -> Arc<str> {
        self.endpoint.addr_text.clone()
    }

    pub fn connect_failed(&mut self) {
        self.settle(false);
    }

    /// Connected: that is the whole verdict unless answers count too.
    pub fn connected(&mut self) {
        if !self.endpoint.count_5xx {
            self.settle(true);
        }
    }

    /// The upstream answered with `status`.
    pub fn answered(&mut self, status: u16) {
        self.settle(!(self.endpoint.count_5xx && status >= 500));
    }

    /// The exchange failed after connecting (timeout, reset, bad response).
    pub fn failed_after_connect(&mut self) {
        self.settle(false);
    }

    fn settle(&mut self, ok: bool) {
        if self.settled {
            return;
        }
        self.settled = true;
        if ok {
            self.endpoint.succeeded();
        } else {
            self.endpoint.failed(Instant::now());
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled && self.trial {
            self.endpoint.release_trial();
        }
    }
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("addr", &self.endpoint.addr)
            .field("trial", &self.trial)
            .finish_non_exhaustive()
    }
}
