//! Upstream target health end to end on proxied routes: active probes take a dead or failing
//! target out and bring it back, the circuit breaker ejects a target that stops accepting
//! connections and re-admits it once it recovers, every target down is a fast, clear 503, health
//! survives a reload that leaves the upstream as it was, and `/metrics` shows it all.
//! (TikTok egress and webhook delivery pick their targets the same way: see `tiktok_egress.rs`
//! and `webhooks.rs`.)

#![cfg(feature = "demo")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    CircuitBreaker, Config, HealthCheck, Listener, Route, TestGateway, Upstream, free_port,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP target that answers every request with its name and closes the connection (so
/// every request is a fresh connect, and a stopped target refuses the next one). `/healthz`
/// answers with a status the test sets.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    /// Requests other than health probes.
    hits: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
    healthz: Arc<AtomicU16>,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl Target {
    async fn start(name: &'static str) -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut t = Target {
            name,
            addr,
            hits: Arc::default(),
            probes: Arc::default(),
            healthz: Arc::new(AtomicU16::new(200)),
            accept: None,
        };
        t.serve(listener);
        t
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (name, hits, probes, healthz) = (
            self.name,
            self.hits.clone(),
            self.probes.clone(),
            self.healthz.clone(),
        );
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (hits, probes, healthz) = (hits.clone(), probes.clone(), healthz.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    let (status, body) = if head.starts_with(b"GET /healthz ") {
                        probes.fetch_add(1, Ordering::SeqCst);
                        (healthz.load(Ordering::SeqCst), "probe")
                    } else {
                        hits.fetch_add(1, Ordering::SeqCst);
                        (200, name)
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        }));
    }

    /// Stops listening: connections are refused from now on.
    async fn stop(&mut self) {
        if let Some(t) = self.accept.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same address.
    async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(t) = self.accept.take() {
            t.abort();
        }
    }
}

/// A loopback address nothing listens on.
fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

struct Ports {
    plain: u16,
    metrics: u16,
}

fn base(p: &Ports) -> Config {
    Config::new()
        .listener(Listener::plain("plain", p.plain))
        .listener(Listener::plain("metrics", p.metrics))
}

fn ports() -> Ports {
    Ports {
        plain: free_port(),
        metrics: free_port(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(p: &Ports, path: &str) -> (u16, String) {
    let res = client()
        .get(format!("http://127.0.0.1:{}{path}", p.plain))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The value of one series on `/metrics`, if it is there (`name` without the namespace).
async fn metric(p: &Ports, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let name = format!("tiktok_gateway_{name}");
    let name = name.as_str();
    let text = client()
        .get(format!("http://127.0.0.1:{}/metrics", p.metrics))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn healthy(p: &Ports, upstream: &str, target: SocketAddr) -> Option<f64> {
    metric(
        p,
        "upstream_target_healthy",
        &[("upstream", upstream), ("target", &target.to_string())],
    )
    .await
}

/// Waits (bounded) until `upstream_target_healthy` of `target` is `want`.
async fn wait_healthy(p: &Ports, upstream: &str, target: SocketAddr, want: f64) {
    for _ in 0..100 {
        if healthy(p, upstream, target).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{upstream} {target}: upstream_target_healthy never became {want} (is {:?})",
        healthy(p, upstream, target).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_is_probed_out_and_every_request_reaches_the_live_one() {
    let live = Target::start("live").await;
    let dead = dead_addr();
    let p = ports();
    // No retries and no breaker: only the active probes can keep requests off the dead target.
    let _gw = TestGateway::with(
        &base(&p)
            .upstream(
                Upstream::new("hc-two", live.addr)
                    .target(dead)
                    .retries(0)
                    .health_check(HealthCheck::http("/healthz").every("200ms", "200ms"))
                    .circuit_breaker(CircuitBreaker {
                        failures: Some(0),
                        ..CircuitBreaker::default()
                    }),
            )
            .route(Route::prefix("two", "plain", "/").upstream("hc-two")),
    );
    wait_healthy(&p, "hc-two", dead, 0.0).await;
    assert_eq!(healthy(&p, "hc-two", live.addr).await, Some(1.0));

    let before = live.hits();
    for i in 0..20 {
        let (status, body) = get(&p, &format!("/orders/{i}")).await;
        assert_eq!((status, body.as_str()), (200, "live"), "request {i}");
    }
    assert_eq!(
        live.hits() - before,
        20,
        "every request reached the live target"
    );

    // The probes are real: the live target saw GETs of the configured path, and both results
    // are counted.
    assert!(live.probes.load(Ordering::SeqCst) > 0);
    let checks = |target: SocketAddr, result: &'static str| {
        let target = target.to_string();
        let p = &p;
        async move {
            metric(
                p,
                "upstream_health_checks_total",
                &[
                    ("upstream", "hc-two"),
                    ("target", &target),
                    ("result", result),
                ],
            )
            .await
            .unwrap_or(0.0)
        }
    };
    assert!(checks(live.addr, "pass").await >= 1.0);
    assert!(checks(dead, "fail").await >= 1.0);
    assert_eq!(checks(dead, "pass").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_failing_its_health_endpoint_is_skipped_until_it_passes_again() {
    let a = Target::start("a").await;
    let b = Target::start("b").await;
    let p = ports();
    let _gw = TestGateway::with(
        &base(&p)
            .upstream(
                Upstream::new("hc-flap", a.addr)
                    .target(b.addr)
                    .health_check(
                        HealthCheck::http("/healthz")
                            .every("150ms", "150ms")
                            .thresholds(2, 2),
                    ),
            )
            .route(Route::prefix("flap", "plain", "/").upstream("hc-flap")),
    );
    wait_healthy(&p, "hc-flap", b.addr, 1.0).await;

    // 503 on the health endpoint (the target still answers traffic): out after two probes.
    b.healthz.store(503, Ordering::SeqCst);
    wait_healthy(&p, "hc-flap", b.addr, 0.0).await;
    let before = b.hits();
    for i in 0..10 {
        let (status, body) = get(&p, &format!("/x/{i}")).await;
        assert_eq!((status, body.as_str()), (200, "a"), "request {i}");
    }
    assert_eq!(b.hits(), before, "an unhealthy target gets no traffic");

    // Healthy again after two passing probes, and back in the rotation.
    b.healthz.store(200, Ordering::SeqCst);
    wait_healthy(&p, "hc-flap", b.addr, 1.0).await;
    let mut bodies = Vec::new();
    for i in 0..4 {
        let (status, body) = get(&p, &format!("/y/{i}")).await;
        assert_eq!(status, 200);
        bodies.push(body);
    }
    assert!(bodies.iter().any(|b| b == "b"), "{bodies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_refuses_connections_is_ejected_and_readmitted_after_it_recovers() {
    let a = Target::start("a").await;
    let mut b = Target::start("b").await;
    let p = ports();
    // No active probes: only what requests see. One retry covers a failed connect.
    let _gw = TestGateway::with(
        &base(&p)
            .upstream(
                Upstream::new("cb-two", a.addr)
                    .target(b.addr)
                    .retries(1)
                    .circuit_breaker(CircuitBreaker::new(2, "1s")),
            )
            .route(Route::prefix("two", "plain", "/").upstream("cb-two")),
    );
    for i in 0..4 {
        assert_eq!(get(&p, &format!("/warm/{i}")).await.0, 200);
    }
    assert!(b.hits() > 0, "both targets take traffic at first");

    b.stop().await;
    let ejections = || async {
        metric(
            &p,
            "upstream_target_ejections_total",
            &[("upstream", "cb-two"), ("target", &b.addr.to_string())],
        )
        .await
        .unwrap_or(0.0)
    };
    assert_eq!(ejections().await, 0.0);
    // Requests keep succeeding (a failed connect goes on to the other target) while the
    // breaker counts the refused connects and opens.
    for i in 0..10 {
        let (status, body) = get(&p, &format!("/down/{i}")).await;
        assert_eq!((status, body.as_str()), (200, "a"), "request {i}");
    }
    assert!(ejections().await >= 1.0, "the breaker opened");
    assert_eq!(healthy(&p, "cb-two", b.addr).await, Some(0.0));

    // B comes back; after the cool-down one request tries it and it is re-admitted.
    b.restart().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = b.hits();
    let mut tries = 0;
    while b.hits() == before {
        tries += 1;
        assert!(tries <= 20, "B was never tried again after the cool-down");
        assert_eq!(get(&p, &format!("/back/{tries}")).await.0, 200);
    }
    assert_eq!(healthy(&p, "cb-two", b.addr).await, Some(1.0));
    let mut bodies = Vec::new();
    for i in 0..4 {
        bodies.push(get(&p, &format!("/again/{i}")).await.1);
    }
    assert!(bodies.iter().any(|x| x == "b"), "{bodies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_down_is_a_fast_clear_503_that_dials_nothing() {
    let (d1, d2, d3) = (dead_addr(), dead_addr(), dead_addr());
    let p = ports();
    let _gw = TestGateway::with(
        &base(&p)
            .upstream(
                Upstream::new("hc-down", d1)
                    .target(d2)
                    .health_check(HealthCheck::tcp().every("200ms", "200ms")),
            )
            .upstream(
                Upstream::new("cb-down", d3)
                    .retries(0)
                    .circuit_breaker(CircuitBreaker::new(1, "30s")),
            )
            .route(Route::prefix("probed", "plain", "/probed/").upstream("hc-down"))
            .route(Route::prefix("passive", "plain", "/passive/").upstream("cb-down")),
    );
    wait_healthy(&p, "hc-down", d1, 0.0).await;
    wait_healthy(&p, "hc-down", d2, 0.0).await;

    let errors = |upstream: &'static str, kind: &'static str| {
        let p = &p;
        async move {
            metric(
                p,
                "upstream_errors_total",
                &[("upstream", upstream), ("kind", kind)],
            )
            .await
            .unwrap_or(0.0)
        }
    };
    let res = client()
        .get(format!("http://127.0.0.1:{}/probed/x", p.plain))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_healthy_upstream", "{body}");
    assert!(body["error"]["request_id"].is_string());
    assert_eq!(errors("hc-down", "unavailable").await, 1.0);
    assert_eq!(
        errors("hc-down", "connect").await,
        0.0,
        "no target was dialled"
    );

    // Without probes: the first refused connect is the upstream's 502, and it opens the
    // breaker; the next request is answered at once without dialling.
    let (status, body) = get(&p, "/passive/1").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("upstream_unavailable"), "{body}");
    let (status, body) = get(&p, "/passive/2").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no_healthy_upstream"), "{body}");
    assert_eq!(errors("cb-down", "connect").await, 1.0);
    assert_eq!(errors("cb-down", "unavailable").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_survives_a_reload_that_leaves_the_upstream_unchanged() {
    let live = Target::start("live").await;
    let dead = dead_addr();
    let p = ports();
    let config = |version: &str, path: &str| {
        base(&p)
            .version(version)
            .upstream(
                Upstream::new("hc-reload", live.addr)
                    .target(dead)
                    .retries(0)
                    // Long enough that no probe runs during the test after the first one.
                    .health_check(HealthCheck::http(path).every("60s", "1s"))
                    .circuit_breaker(CircuitBreaker {
                        failures: Some(0),
                        ..CircuitBreaker::default()
                    }),
            )
            .route(Route::prefix("r", "plain", "/").upstream("hc-reload"))
    };
    let gw = TestGateway::with(&config("v1", "/healthz"));
    wait_healthy(&p, "hc-reload", dead, 0.0).await;
    let pool = gw.gateway.upstreams.pools()["hc-reload"].clone();

    let reload = |c: Config| {
        let yaml = c.render(gw.dir.path());
        let config =
            tiktok_gateway::config::load_str(&yaml, gw.dir.path(), &gw.config_path).expect("valid");
        gw.gateway.apply(config).expect("applied");
    };
    // Another version, the same upstream: the pool and what the probes found stay.
    reload(config("v2", "/healthz"));
    assert_eq!(gw.gateway.snapshot().config.version, "v2");
    assert!(Arc::ptr_eq(
        &pool,
        &gw.gateway.upstreams.pools()["hc-reload"]
    ));
    for i in 0..10 {
        let (status, body) = get(&p, &format!("/after/{i}")).await;
        assert_eq!((status, body.as_str()), (200, "live"), "request {i}");
    }
    assert_eq!(healthy(&p, "hc-reload", dead).await, Some(0.0));

    // A changed health check starts a fresh pool, probed at once.
    reload(config("v3", "/ready"));
    let fresh = gw.gateway.upstreams.pools()["hc-reload"].clone();
    assert!(!Arc::ptr_eq(&pool, &fresh));
    wait_healthy(&p, "hc-reload", dead, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_targets_are_probed_over_tls_with_the_upstreams_ca() {
    let pki = tempfile::tempdir().unwrap();
    let certs = tiktok_gateway::server::dev_certs::generate(pki.path()).unwrap();
    let upstream = common::TlsRecorder::start(&certs.server_cert, &certs.server_key).await;
    let p = ports();
    let check = || HealthCheck::http("/healthz").every("200ms", "200ms");
    let _gw = TestGateway::with(
        &base(&p)
            .upstream(
                Upstream::new("tls-trusted", upstream.addr)
                    .tls("localhost", Some(&certs.ca_cert))
                    .health_check(check()),
            )
            .upstream(
                Upstream::new("tls-untrusted", upstream.addr)
                    .tls("localhost", None)
                    .health_check(check()),
            )
            .route(Route::prefix("t", "plain", "/t/").upstream("tls-trusted"))
            .route(Route::prefix("u", "plain", "/u/").upstream("tls-untrusted")),
    );
    // The system roots do not know the private CA: that upstream's probe fails the handshake.
    wait_healthy(&p, "tls-untrusted", upstream.addr, 0.0).await;
    let passes = || async {
        metric(
            &p,
            "upstream_health_checks_total",
            &[
                ("upstream", "tls-trusted"),
                ("target", &upstream.addr.to_string()),
                ("result", "pass"),
            ],
        )
        .await
        .unwrap_or(0.0)
    };
    for _ in 0..50 {
        if passes().await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(passes().await >= 1.0);
    assert_eq!(healthy(&p, "tls-trusted", upstream.addr).await, Some(1.0));
    // Every probe that reached HTTP came over the verified connection, naming the SNI host.
    let probes: Vec<String> = upstream
        .received()
        .into_iter()
        .map(|r| r.head)
        .filter(|h| h.starts_with("GET /healthz "))
        .collect();
    assert!(!probes.is_empty());
    assert!(
        probes
            .iter()
            .all(|h| h.to_ascii_lowercase().contains("host: localhost")),
        "{probes:?}"
    );
    assert_eq!(get(&p, "/t/1").await.0, 200);
    let (status, body) = get(&p, "/u/1").await;
    assert_eq!(status, 503, "{body}");
}
