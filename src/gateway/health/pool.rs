//! The live state of one upstream: its endpoints (every resolved address of every target) with
//! their health, round robin over the ones that may take traffic, and its active probes.
//!
//! A pool outlives a reload that leaves the upstream's targets, TLS, `health_check` and
//! `circuit_breaker` as they were (timeouts and retries may change: they are read from the
//! snapshot's upstream per request); otherwise the reload starts a fresh pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::future::join_all;
use http::StatusCode;
use parking_lot::Mutex;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;

use super::breaker::Admit;
use super::endpoint::{Attempt, Endpoint};
use super::probe::Prober;
use crate::config::{CircuitBreaker, HealthCheck, Target, Upstream, UpstreamTls};
use crate::error::GatewayError;

/// What a pool's state depends on: a reload that changes any of it starts a fresh pool.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PoolSpec {
    targets: Vec<Target>,
    tls: Option<UpstreamTls>,
    health_check: Option<HealthCheck>,
    circuit_breaker: CircuitBreaker,
}

impl PoolSpec {
    fn of(up: &Upstream) -> Self {
        Self {
            targets: up.targets.clone(),
            tls: up.tls.clone(),
            health_check: up.health_check.clone(),
            circuit_breaker: up.circuit_breaker.clone(),
        }
    }
}

pub struct Pool {
    pub name: Arc<str>,
    spec: PoolSpec,
    ca: Option<Arc<[WrappedX509]>>,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    /// Pingora's pool partition for this upstream's connections (see [`Pool::peer`]), hashed
    /// once here rather than per request.
    group_key: u64,
    cursor: AtomicUsize,
    prober: Option<Prober>,
    /// Serialises endpoint-list rebuilds (start, reload and the resolver may race).
    sync_lock: Mutex<()>,
    /// When the next probe round is due; `None`: at once.
    next_round: Mutex<Option<Instant>>,
    probing: AtomicBool,
}

/// The peer a request goes to, and its ticket for reporting the outcome.
pub struct Selected {
    pub peer: HttpPeer,
    pub attempt: Attempt,
}

impl Pool {
    pub fn new(up: &Upstream, ca: Option<Arc<[WrappedX509]>>) -> Result<Self, String> {
        let prober = up
            .health_check
            .as_ref()
            .map(|hc| Prober::new(up, hc, ca.clone()))
            .transpose()?;
        Ok(Self {
            name: up.name.as_str().into(),
            spec: PoolSpec::of(up),
            ca,
            endpoints: ArcSwap::from_pointee(Vec::new()),
            group_key: pool_group(&up.name),
            cursor: AtomicUsize::new(0),
            prober,
            sync_lock: Mutex::new(()),
            next_round: Mutex::new(None),
            probing: AtomicBool::new(false),
        })
    }

    /// Whether this pool's state still describes `up` after a reload.
    pub fn serves(&self, up: &Upstream) -> bool {
        self.spec == PoolSpec::of(up)
    }

    pub fn has_probes(&self) -> bool {
        self.prober.is_some()
    }

    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// Rebuilds the endpoint list from the targets' current addresses, keeping the state of
    /// every address that stays.
    pub fn sync(&self, addrs_of: impl Fn(&Target) -> Vec<SocketAddr>) {
        let _guard = self.sync_lock.lock();
        let old = self.endpoints.load_full();
        let mut next: Vec<Arc<Endpoint>> = Vec::new();
        for target in &self.spec.targets {
            for addr in addrs_of(target) {
                if next.iter().any(|e| e.target == *target && e.addr == addr) {
                    continue;
                }
                let kept = old
                    .iter()
                    .find(|e| e.target == *target && e.addr == addr)
                    .cloned();
                next.push(kept.unwrap_or_else(|| {
                    Arc::new(Endpoint::new(
                        &self.name,
                        target,
                        addr,
                        self.spec.health_check.as_ref(),
                        &self.spec.circuit_breaker,
                    ))
                }));
            }
        }
        let unchanged =
            next.len() == old.len() && next.iter().zip(old.iter()).all(|(a, b)| Arc::ptr_eq(a, b));
        if unchanged {
            return;
        }
        for gone in old
            .iter()
            .filter(|e| !next.iter().any(|n| Arc::ptr_eq(n, e)))
        {
            gone.retire();
        }
        self.endpoints.store(Arc::new(next));
    }

    /// The pool left the running config: its endpoints stop counting in the gauges.
    pub fn retire(&self) {
        for e in self.endpoints.load().iter() {
            e.retire();
        }
    }

    /// Picks the next endpoint that may take traffic, round robin. A retry names the address
    /// that just failed (`previous`): it is taken again only when nothing else may. When no
    /// endpoint may, the answer is a fast 503, never a connect to a target known to be down.
    pub fn select(
        &self,
        up: &Upstream,
        previous: Option<SocketAddr>,
    ) -> Result<Selected, GatewayError> {
        let endpoints = self.endpoints.load();
        if endpoints.is_empty() {
            return Err(GatewayError::bad_gateway(
                "upstream_unresolved",
                "the upstream has no resolved address",
            ));
        }
        let n = endpoints.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let order = (0..n)
            .map(|i| &endpoints[start.wrapping_add(i) % n])
            .filter(|e| Some(e.addr) != previous)
            .chain(endpoints.iter().filter(|e| Some(e.addr) == previous));
        for endpoint in order {
            let trial = match endpoint.admit(now) {
                Admit::Yes => false,
                Admit::Trial => true,
                Admit::No => continue,
            };
            return Ok(Selected {
                peer: self.peer(up, endpoint.addr),
                attempt: Attempt::new(endpoint.clone(), trial),
            });
        }
        let interval = self.prober.as_ref().map(|p| p.interval);
        let retry = endpoints
            .iter()
            .filter_map(|e| e.next_chance(now, interval))
            .min()
            .map(|at| at.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(1));
        Err(GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_healthy_upstream",
            "every target of the upstream is down (failing health checks or ejected); retry later",
        )
        .with_header("retry-after", retry.as_secs().max(1).to_string()))
    }

    /// The connection to `addr` as traffic makes it: the upstream's TLS, trust anchors and
    /// timeouts, in the upstream's own pool partition.
    fn peer(&self, up: &Upstream, addr: SocketAddr) -> HttpPeer {
        let (tls, sni) = match &up.tls {
            Some(t) => (true, t.sni.clone()),
            None => (false, String::new()),
        };
        let mut peer = HttpPeer::new(addr, tls, sni);
        // Pingora's connection pool keys on address, SNI and verify flags but not on the trust
        // anchors: without this, a connection verified under one upstream's `ca` could be
        // lent to another upstream at the same address that trusts a different CA.
        peer.group_key = self.group_key;
        peer.options.connection_timeout = Some(up.connect_timeout);
        peer.options.total_connection_timeout = Some(up.connect_timeout * 2);
        peer.options.read_timeout = Some(up.read_timeout);
        peer.options.write_timeout = Some(up.write_timeout);
        peer.options.idle_timeout = Some(up.idle_timeout);
        peer.options.ca = self.ca.clone();
        peer
    }

    /// Whether a probe round should start now (and marks it started).
    pub fn round_due(&self, now: Instant) -> bool {
        if self.prober.is_none() || self.probing.load(Ordering::Acquire) {
            return false;
        }
        let due = self.next_round.lock().is_none_or(|at| at <= now);
        if due {
            self.probing.store(true, Ordering::Release);
        }
        due
    }

    /// When the next round is due, if this pool probes and no round is running.
    pub fn next_round(&self) -> Option<Instant> {
        if self.prober.is_none() || self.probing.load(Ordering::Acquire) {
            return None;
        }
        Some(self.next_round.lock().unwrap_or_else(Instant::now))
    }

    /// Probes every endpoint once, concurrently; the next round is due one interval after this
    /// one started.
    pub async fn probe_round(&self) {
        let Some(prober) = &self.prober else {
            return;
        };
        let started = Instant::now();
        let endpoints = self.endpoints.load_full();
        join_all(endpoints.iter().map(|e| async move {
            let result = prober.probe(&e.target, e.addr).await;
            if let Err(reason) = &result {
                tracing::debug!(upstream = %self.name, target = %e.target, addr = %e.addr,
                    reason = %reason, "health probe failed");
            }
            e.probed(result.is_ok(), Instant::now());
        }))
        .await;
        *self.next_round.lock() = Some(started + prober.interval);
        self.probing.store(false, Ordering::Release);
    }
}

/// A pool partition per upstream name.
fn pool_group(upstream: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    upstream.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{CircuitBreaker, Target, Upstream};
    use crate::telemetry::metrics::metrics;

    fn upstream(name: &str, ports: &[u16], breaker: CircuitBreaker) -> Upstream {
        Upstream {
            name: name.into(),
            targets: ports
                .iter()
                .map(|p| Target {
                    host: "127.0.0.1".into(),
                    port: *p,
                })
                .collect(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            tls: None,
            retries: 1,
            health_check: None,
            circuit_breaker: breaker,
        }
    }

    fn pool_of(up: &Upstream) -> Pool {
        let pool = Pool::new(up, None).unwrap();
        pool.sync(|t| vec![SocketAddr::new([127, 0, 0, 1].into(), t.port)]);
        pool
    }

    fn healthy(upstream: &str, port: u16) -> i64 {
        metrics()
            .upstream_target_healthy
            .with_label_values(&[upstream, &format!("127.0.0.1:{port}")])
            .get()
    }

    fn breaker(failures: u32, cool_down: Duration) -> CircuitBreaker {
        CircuitBreaker {
            failures,
            cool_down,
            count_5xx: false,
        }
    }

    #[test]
    fn round_robin_skips_an_ejected_target_until_its_trial_succeeds() {
        let up = upstream(
            "unit-rr",
            &[1001, 1002],
            breaker(2, Duration::from_millis(200)),
        );
        let pool = pool_of(&up);
        let mut seen = HashMap::new();
        for i in 0..4 {
            let s = pool.select(&up, None).unwrap();
            *seen.entry(s.attempt.addr().port()).or_insert(0) += 1;
            assert_eq!(
                s.peer._address.to_string(),
                s.attempt.addr().to_string(),
                "{i}"
            );
        }
        assert_eq!(seen[&1001], 2);
        assert_eq!(seen[&1002], 2);
        assert_eq!((healthy("unit-rr", 1001), healthy("unit-rr", 1002)), (1, 1));

        // Two failed connects to 1001 open its breaker.
        for _ in 0..2 {
            let mut s = loop {
                let s = pool.select(&up, None).unwrap();
                if s.attempt.addr().port() == 1001 {
                    break s;
                }
            };
            s.attempt.connect_failed();
        }
        assert_eq!(healthy("unit-rr", 1001), 0);
        let ejections = metrics()
            .upstream_target_ejections
            .with_label_values(&["unit-rr", "127.0.0.1:1001"])
            .get();
        assert_eq!(ejections, 1);
        for _ in 0..10 {
            assert_eq!(pool.select(&up, None).unwrap().attempt.addr().port(), 1002);
        }

        // After the cool-down one request tries 1001; while it is out, others do not.
        std::thread::sleep(Duration::from_millis(250));
        let mut trial = loop {
            let s = pool.select(&up, None).unwrap();
            if s.attempt.addr().port() == 1001 {
                break s;
            }
        };
        for _ in 0..10 {
            assert_eq!(pool.select(&up, None).unwrap().attempt.addr().port(), 1002);
        }
        trial.attempt.connected();
        assert_eq!(healthy("unit-rr", 1001), 1);
        let ports: Vec<u16> = (0..4)
            .map(|_| pool.select(&up, None).unwrap().attempt.addr().port())
            .collect();
        assert!(ports.contains(&1001) && ports.contains(&1002), "{ports:?}");
    }

    #[test]
    fn a_trial_dropped_without_an_outcome_lets_the_next_request_try() {
        let up = upstream("unit-drop", &[1003], breaker(1, Duration::from_millis(100)));
        let pool = pool_of(&up);
        pool.select(&up, None).unwrap().attempt.connect_failed();
        assert_eq!(
            pool.select(&up, None).err().unwrap().code,
            "no_healthy_upstream"
        );
        std::thread::sleep(Duration::from_millis(150));
        let trial = pool.select(&up, None).unwrap();
        assert!(pool.select(&up, None).is_err(), "one trial at a time");
        drop(trial);
        assert!(
            pool.select(&up, None).is_ok(),
            "the vanished trial's slot is free"
        );
    }

    #[test]
    fn every_target_down_is_a_fast_503_with_retry_after() {
        let up = upstream(
            "unit-down",
            &[1004, 1005],
            breaker(1, Duration::from_secs(30)),
        );
        let pool = pool_of(&up);
        for _ in 0..2 {
            pool.select(&up, None).unwrap().attempt.connect_failed();
        }
        let e = pool.select(&up, None).err().unwrap();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "no_healthy_upstream");
        let retry: u64 = e
            .headers
            .iter()
            .find(|(n, _)| *n == "retry-after")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap();
        assert!((29..=30).contains(&retry), "{retry}");
    }

    #[test]
    fn answers_count_only_with_count_5xx() {
        let up = upstream("unit-5xx-off", &[1006], breaker(1, Duration::from_secs(30)));
        let pool = pool_of(&up);
        let mut s = pool.select(&up, None).unwrap();
        s.attempt.connected();
        s.attempt.answered(503);
        assert!(pool.select(&up, None).is_ok(), "a 503 does not count");

        let mut b = breaker(1, Duration::from_secs(30));
        b.count_5xx = true;
        let up = upstream("unit-5xx-on", &[1007], b);
        let pool = pool_of(&up);
        let mut s = pool.select(&up, None).unwrap();
        s.attempt.connected();
        s.attempt.answered(404);
        assert!(
            pool.select(&up, None).is_ok(),
            "a 4xx is the caller's problem"
        );
        let mut s = pool.select(&up, None).unwrap();
        s.attempt.connected();
        s.attempt.answered(502);
        assert!(pool.select(&up, None).is_err(), "a 5xx counts");
    }

    #[test]
    fn a_resync_keeps_the_state_of_addresses_that_stay() {
        let up = upstream(
            "unit-sync",
            &[1008, 1009],
            breaker(1, Duration::from_secs(30)),
        );
        let pool = pool_of(&up);
        loop {
            let mut s = pool.select(&up, None).unwrap();
            if s.attempt.addr().port() == 1008 {
                s.attempt.connect_failed();
                break;
            }
        }
        pool.sync(|t| vec![SocketAddr::new([127, 0, 0, 1].into(), t.port)]);
        for _ in 0..4 {
            assert_eq!(pool.select(&up, None).unwrap().attempt.addr().port(), 1009);
        }
        // The pool leaves the config: its targets no longer count as healthy.
        assert_eq!(healthy("unit-sync", 1009), 1);
        pool.retire();
        assert_eq!(healthy("unit-sync", 1009), 0);
    }
}
