//! Rate limits end to end, through the real gateway: burst then 429 with the IETF headers, keys
//! isolating callers, `X-Forwarded-For` believed only from trusted proxies, and the Redis fleet
//! backend (`REDIS_URL`; skipped, saying why, when unset): two gateways sharing one budget
//! within 1% over 10 s, and a Redis outage played through a relay (local fallback, fail-open,
//! fail-closed, then shared limiting resuming). A Redis that cannot be reached at all needs no
//! server, so the local fallback and fail-closed are also tested against a dead port.
//!
//! Counts are checked with slack for the tokens that refill while a burst is being sent; no
//! assertion depends on how fast the machine is beyond that.

// The sandboxes these tests run against exist only with the `demo` feature (a default one).
#![cfg(feature = "demo")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{
    ApiKey, Auth, Config, LimitKey, Listener, RateLimit, RateLimits, Relay, Route, TestGateway,
    Upstream, free_port, http_client, redis_url, split_redis_url, unique_name,
};
use tiktok_gateway::sandbox::orders::OrderService;

const KEY_A: &str = "tgw-test-rate-key-a-5e1d7c9b3a";
const KEY_B: &str = "tgw-test-rate-key-b-8f2e4a6c0d";

/// One plaintext loopback listener (and a metrics one when asked), two API keys and an open
/// route; `extra` adds its routes, its `rate_limits` and its `trusted_proxies`.
fn config(port: u16, metrics: Option<u16>, orders: SocketAddr, extra: &Config) -> Config {
    let mut c = Config::new()
        .version("rl-t1")
        .listener(Listener::plain("plain", port))
        .api_key(ApiKey::new("alpha", KEY_A, &[]))
        .api_key(ApiKey::new("beta", KEY_B, &[]))
        .upstream(Upstream::new("orders", orders).timeouts("500ms", "2s"))
        .route(Route::prefix("open", "plain", "/open/").upstream("orders"))
        .routes(extra.routes.clone());
    if let Some(m) = metrics {
        c = c.listener(Listener::plain("metrics", m));
    }
    c.rate_limits = extra.rate_limits.clone();
    c.trusted_proxies = extra.trusted_proxies.clone();
    c
}

/// Three locally limited routes: by route, by API key, by client IP.
fn local_routes() -> Config {
    Config::new()
        .route(
            Route::prefix("burst", "plain", "/burst/")
                .rate_limit(RateLimit::new(LimitKey::Route, "2/s", 4))
                .upstream("orders"),
        )
        .route(
            Route::prefix("keyed", "plain", "/keyed/")
                .auth(Auth::api_key())
                .rate_limit(RateLimit::new(LimitKey::ApiKey, "1/m", 3))
                .upstream("orders"),
        )
        .route(
            Route::prefix("byip", "plain", "/ip/")
                .rate_limit(RateLimit::new(LimitKey::ClientIp, "1/m", 2))
                .upstream("orders"),
        )
}

/// `routes` on the Redis backend `limits`.
fn on_redis(routes: &[Route], limits: RateLimits) -> Config {
    Config::new().routes(routes.to_vec()).rate_limits(limits)
}

struct Setup {
    /// Kept alive for the test; dropping it stops the gateway.
    _gw: TestGateway,
    orders: OrderService,
    port: u16,
    metrics: Option<u16>,
}

async fn setup(extra: &Config) -> Setup {
    start(extra, None).await
}

/// As [`setup`], with a metrics listener.
async fn setup_with_metrics(extra: &Config) -> Setup {
    start(extra, Some(free_port())).await
}

async fn start(extra: &Config, metrics: Option<u16>) -> Setup {
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let addr = orders.addr();
    let gw = TestGateway::with(&config(port, metrics, addr, extra));
    Setup {
        _gw: gw,
        orders,
        port,
        metrics,
    }
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// Checks a 429: JSON error, `Retry-After` in whole seconds, and both rate-limit headers.
async fn assert_limited(res: reqwest::Response, route: &str) {
    assert_eq!(res.status(), 429);
    let retry: u64 = header(&res, "retry-after")
        .parse()
        .expect("Retry-After secs");
    assert!(retry >= 1, "Retry-After {retry}");
    let policy = header(&res, "ratelimit-policy");
    assert!(policy.starts_with(&format!("\"{route}\";")), "{policy}");
    assert!(policy.contains("q=") && policy.contains("w="), "{policy}");
    let rl = header(&res, "ratelimit");
    assert!(rl.starts_with(&format!("\"{route}\";")), "{rl}");
    assert!(rl.contains("r=0"), "a refusal has nothing remaining: {rl}");
    assert!(
        header(&res, "content-type").starts_with("application/json"),
        "429 body is JSON"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
}

fn assert_allowed_headers(res: &reqwest::Response, route: &str) {
    let policy = header(res, "ratelimit-policy");
    assert!(policy.starts_with(&format!("\"{route}\";")), "{policy}");
    let rl = header(res, "ratelimit");
    assert!(rl.starts_with(&format!("\"{route}\";")), "{rl}");
    assert!(res.headers().get("retry-after").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_is_admitted_then_429_with_headers() {
    const RATE: f64 = 2.0;
    const BURST: usize = 4;
    const SENT: usize = 14;
    let s = setup(&local_routes()).await;
    let client = http_client();
    let started = Instant::now();
    let mut statuses = Vec::new();
    for i in 0..SENT {
        let res = client
            .get(s.url(&format!("/burst/{i}")))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
        match res.status().as_u16() {
            200 => assert_allowed_headers(&res, "burst"),
            429 => assert_limited(res, "burst").await,
            other => panic!("request {i}: unexpected {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    // Tokens refilled while the burst was sent are the only slack allowed.
    let refill = (RATE * elapsed).ceil() as usize;
    assert!(
        statuses[..BURST].iter().all(|s| *s == 200),
        "the burst is admitted: {statuses:?}"
    );
    assert!(
        admitted <= BURST + refill,
        "{admitted} admitted in {elapsed:.2}s: {statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(
        s.orders.received_count(),
        admitted,
        "refused requests reached the upstream"
    );

    // An unlimited route on the same gateway is untouched.
    let res = client.get(s.url("/open/1")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("ratelimit-policy").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_get_separate_budgets() {
    let s = setup(&local_routes()).await;
    let client = http_client();
    let send = |key: &'static str| {
        client
            .get(s.url("/keyed/1"))
            .header("x-api-key", key)
            .send()
    };
    for i in 0..3 {
        let res = send(KEY_A).await.unwrap();
        assert_eq!(res.status(), 200, "alpha #{i}");
        assert_allowed_headers(&res, "keyed");
    }
    assert_limited(send(KEY_A).await.unwrap(), "keyed").await;
    assert_eq!(s.orders.received_count(), 3);

    // Beta has its own, untouched budget.
    for i in 0..3 {
        let res = send(KEY_B).await.unwrap();
        assert_eq!(res.status(), 200, "beta #{i}");
    }
    assert_limited(send(KEY_B).await.unwrap(), "keyed").await;
    assert_limited(send(KEY_A).await.unwrap(), "keyed").await;
    assert_eq!(s.orders.received_count(), 6);

    // An unauthenticated caller is refused by auth before it can spend anyone's budget.
    let res = client.get(s.url("/keyed/1")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(s.orders.received_count(), 6);
}

async fn get_ip(client: &reqwest::Client, s: &Setup, xff: Option<&str>) -> reqwest::Response {
    let mut req = client.get(s.url("/ip/1"));
    if let Some(v) = xff {
        req = req.header("x-forwarded-for", v);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarded_for_from_an_untrusted_peer_does_not_change_the_key() {
    let s = setup(&local_routes()).await;
    let client = http_client();
    assert_eq!(get_ip(&client, &s, Some("203.0.113.1")).await.status(), 200);
    assert_eq!(get_ip(&client, &s, Some("203.0.113.2")).await.status(), 200);
    // Both counted against 127.0.0.1; a third "address" does not buy a fresh budget.
    for xff in [Some("203.0.113.3"), Some("198.51.100.7, 203.0.113.4"), None] {
        let res = get_ip(&client, &s, xff).await;
        assert_limited(res, "byip").await;
    }
    assert_eq!(s.orders.received_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_a_trusted_proxy_sets_the_key() {
    let s = setup(&local_routes().trusted_proxies(&["127.0.0.1/32"])).await;
    let client = http_client();
    for _ in 0..2 {
        assert_eq!(get_ip(&client, &s, Some("203.0.113.1")).await.status(), 200);
    }
    assert_limited(get_ip(&client, &s, Some("203.0.113.1")).await, "byip").await;
    // Another client behind the proxy has its own budget.
    assert_eq!(get_ip(&client, &s, Some("203.0.113.2")).await.status(), 200);
    // The right-most untrusted entry is the client: prepending the exhausted address does not
    // pick that key, and appending it is what a client cannot do through the proxy.
    assert_eq!(
        get_ip(&client, &s, Some("203.0.113.1, 203.0.113.3"))
            .await
            .status(),
        200
    );
    assert_limited(
        get_ip(&client, &s, Some("198.51.100.9, 203.0.113.1")).await,
        "byip",
    )
    .await;
    assert_eq!(s.orders.received_count(), 4);
}

// ---------------------------------------------------------------- Redis

/// The backend metrics (`rate_limit_backend_*{backend="redis"}`) are process-wide, shared by
/// every gateway this binary starts. Tests that build a Redis limiter or make one fail hold this
/// meanwhile, so a test reading those metrics sees only its own gateways' doing.
static BACKEND_METRICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BACKEND_ERRORS: &str = "tiktok_gateway_rate_limit_backend_errors_total{backend=\"redis\"}";
const BACKEND_UP: &str = "tiktok_gateway_rate_limit_backend_up{backend=\"redis\"}";

/// `REDIS_URL` and its split for a [`Relay`], or `None` (saying why) to skip.
fn redis_url_for_relay() -> Option<(String, impl Fn(SocketAddr) -> String)> {
    let url = redis_url()?;
    let split = split_redis_url(&url);
    if split.is_none() {
        common::env::skip("needs REDIS_URL as a plain redis:// URL (to relay it)");
    }
    split
}

/// A route name no earlier run has used, so its Redis buckets start empty.
fn fresh_route(prefix: &str) -> String {
    unique_name(prefix)
}

/// A route on `/limited/`, one limit keyed by the route itself.
fn limited_route(name: &str, rate: &str, burst: u32) -> Route {
    limited_route_at(name, "/limited/", LimitKey::Route, rate, burst)
}

fn limited_route_at(name: &str, path: &str, key: LimitKey, rate: &str, burst: u32) -> Route {
    Route::prefix(name, "plain", path)
        .rate_limit(RateLimit::new(key, rate, burst))
        .upstream("orders")
}

/// The route [`wait_until_shared`] probes: one request per `x-probe` value per minute.
fn probe_route(name: &str) -> Route {
    limited_route_at(
        name,
        "/probe/",
        LimitKey::Header("x-probe".into()),
        "1/m",
        1,
    )
}

/// Waits until both gateways decide on Redis; returns how many probes each admitted (they
/// reached its upstream). A fresh key spent on `first` is then refused by `second` only if both
/// asked Redis: either one deciding alone (local or fail-open fallback) finds the key untouched.
/// `first` is asked first so that its own fail-closed refusal cannot pass for sharing.
async fn wait_until_shared(
    client: &reqwest::Client,
    first: &Setup,
    second: &Setup,
    within: Duration,
) -> (usize, usize) {
    let started = Instant::now();
    let mut admitted = (0, 0);
    let mut n = 0;
    loop {
        n += 1;
        let key = format!("probe-{n}");
        let probe = |s: &Setup| {
            client
                .get(s.url("/probe/x"))
                .header("x-probe", key.as_str())
                .send()
        };
        let a = probe(first).await.unwrap().status().as_u16();
        let b = probe(second).await.unwrap().status().as_u16();
        for (status, count) in [(a, &mut admitted.0), (b, &mut admitted.1)] {
            assert!(matches!(status, 200 | 429), "a probe was answered {status}");
            *count += usize::from(status == 200);
        }
        if (a, b) == (200, 429) {
            return admitted;
        }
        assert!(
            started.elapsed() < within,
            "the gateways did not share a Redis limit within {within:?} ({n} probes)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `n` requests to `path`, the i-th to `gateways[i % len]`, checking that each is a 200 or
/// a 429 with the route's headers; returns the statuses.
async fn cycle(
    client: &reqwest::Client,
    gateways: &[&Setup],
    path: &str,
    n: usize,
    route: &str,
) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for i in 0..n {
        let res = client
            .get(gateways[i % gateways.len()].url(path))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
        match res.status().as_u16() {
            200 => assert_allowed_headers(&res, route),
            429 => assert_limited(res, route).await,
            other => panic!("request {i} to {path}: unexpected {other}"),
        }
    }
    statuses
}

/// One series of the gateway's `/metrics` (`None` while it has never been set).
async fn metric(s: &Setup, series: &str) -> Option<f64> {
    let port = s.metrics.expect("the gateway has a metrics listener");
    common::metrics_text(port)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// When, what and when answered, for one request of a paced run.
type Outcome = (Instant, u16, Instant);

/// Sends `n` requests to `url`, one every `period` whatever the answers' latency (open loop: a
/// request is dispatched on its tick, not after the previous answer).
async fn paced(url: String, n: usize, period: Duration) -> Vec<Outcome> {
    let client = http_client();
    let mut ticker = tokio::time::interval(period);
    let mut inflight = Vec::with_capacity(n);
    for _ in 0..n {
        ticker.tick().await;
        let (client, url) = (client.clone(), url.clone());
        inflight.push(tokio::spawn(async move {
            let sent = Instant::now();
            let status = match client.get(url).send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    // Read to the end so the connection goes back to the pool.
                    let _ = res.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            (sent, status, Instant::now())
        }));
    }
    let mut out = Vec::with_capacity(n);
    for h in inflight {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_admit_the_shared_limit_within_one_percent_over_ten_seconds() {
    let Some(url) = redis_url() else { return };
    const RATE: f64 = 50.0;
    // More than 1 so that GCRA keeps the time of a short stall of the client (a loaded machine)
    // as burst instead of forgetting it, which would put the count under the rate.
    const BURST: usize = 10;
    // Each gateway is offered 75/s for 10 s: 3x the limit together.
    const PER_GATEWAY: usize = 750;
    const PERIOD: Duration = Duration::from_micros(13_333);
    let route = fresh_route("fleet");
    let probe = fresh_route("fleet-probe");
    let routes = [
        limited_route(&route, "50/s", BURST as u32),
        probe_route(&probe),
    ];
    let extra = on_redis(&routes, RateLimits::redis(&url));
    let (a, b, probes) = {
        // The first limited request builds each limiter, which sets the backend gauge.
        let _metrics = BACKEND_METRICS.lock().await;
        let a = setup(&extra).await;
        let b = setup(&extra).await;
        // Both connected and deciding on Redis before the run: a slow first connection would
        // put a gateway on its local fallback for a retry interval, inside the measurement.
        let probes = wait_until_shared(&http_client(), &a, &b, Duration::from_secs(5)).await;
        (a, b, probes)
    };

    let (ra, rb) = (
        tokio::spawn(paced(a.url("/limited/x"), PER_GATEWAY, PERIOD)),
        tokio::spawn(paced(b.url("/limited/x"), PER_GATEWAY, PERIOD)),
    );
    let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());

    let all = || ra.iter().chain(&rb);
    let first_sent = all().map(|o| o.0).min().unwrap();
    let last_sent = all().map(|o| o.0).max().unwrap();
    let first_answered = all().map(|o| o.2).min().unwrap();
    let last_answered = all().map(|o| o.2).max().unwrap();
    // GCRA admits at most rate x (last decision - first decision) + burst. Redis decides each
    // request between its sending and its answer, so that span is at most `outer` (the honest
    // ceiling) and at least `inner` (the honest floor).
    let outer = (last_answered - first_sent).as_secs_f64();
    let inner = last_sent
        .saturating_duration_since(first_answered)
        .as_secs_f64();
    let admitted = |r: &[Outcome]| r.iter().filter(|o| o.1 == 200).count();
    let (adm_a, adm_b) = (admitted(&ra), admitted(&rb));
    let total = adm_a + adm_b;
    let ceiling = RATE * outer * 1.01 + BURST as f64;
    let floor = RATE * inner * 0.99;
    eprintln!(
        "fleet: a {adm_a}/{PER_GATEWAY}, b {adm_b}/{PER_GATEWAY}, total {total} over \
         {inner:.3}..{outer:.3}s (rate x span {:.0}..{:.0} + burst {BURST}; \
         asserted {floor:.1} <= total <= {ceiling:.1})",
        RATE * inner,
        RATE * outer,
    );
    let others: Vec<u16> = all()
        .map(|o| o.1)
        .filter(|s| !matches!(s, 200 | 429))
        .collect();
    assert!(others.is_empty(), "only 200 and 429 expected: {others:?}");
    assert!(adm_a > 0 && adm_b > 0, "both gateways got a share");
    assert!(
        total as f64 <= ceiling,
        "{total} admitted across two gateways, above the shared limit {ceiling:.1}"
    );
    assert!(
        total as f64 >= floor,
        "{total} admitted across two gateways, under the shared limit {floor:.1}"
    );
    assert_eq!(a.orders.received_count(), adm_a + probes.0);
    assert_eq!(b.orders.received_count(), adm_b + probes.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_falls_back_to_local_limits_then_shared_limiting_resumes() {
    let Some((target, via)) = redis_url_for_relay() else {
        return;
    };
    let _metrics = BACKEND_METRICS.lock().await;
    let relay = Relay::start(target).await;
    // 1/m: nothing refills during the test, so every count below is exact.
    let route = fresh_route("outage");
    let after = fresh_route("outage-after");
    let probe = fresh_route("outage-probe");
    let routes = [
        limited_route(&route, "1/m", 4),
        limited_route_at(&after, "/after/", LimitKey::Route, "1/m", 3),
        probe_route(&probe),
    ];
    // A short retry interval, set in YAML, keeps the recovery wait short.
    let extra = on_redis(
        &routes,
        RateLimits::redis(&via(relay.addr))
            .on_backend_error("local")
            .retry_interval("300ms"),
    );
    let a = setup_with_metrics(&extra).await;
    let b = setup(&extra).await;
    let client = http_client();
    let before = wait_until_shared(&client, &a, &b, Duration::from_secs(5)).await;

    // (a) Shared: taking turns, the two gateways spend one burst of 4 between them.
    let shared = cycle(&client, &[&a, &b], "/limited/x", 10, &route).await;
    assert_eq!(shared, [200, 200, 200, 200, 429, 429, 429, 429, 429, 429]);

    // (b) Redis unreachable: each gateway limits on its own, with a burst of its own (the
    // spent shared bucket no longer decides), and keeps serving.
    let errors_before = metric(&a, BACKEND_ERRORS).await.unwrap_or(0.0);
    relay.cut_and_wait().await;
    for s in [&a, &b] {
        let local = cycle(&client, &[s], "/limited/x", 6, &route).await;
        assert_eq!(local, [200, 200, 200, 200, 429, 429], "local fallback");
        let res = client.get(s.url("/open/1")).send().await.unwrap();
        assert_eq!(res.status(), 200, "still serving");
    }
    let errors_after = metric(&a, BACKEND_ERRORS).await.unwrap_or(0.0);
    assert!(
        errors_after >= errors_before + 2.0,
        "each gateway counts its failed decision: {errors_before} -> {errors_after}"
    );
    assert_eq!(
        metric(&a, BACKEND_UP).await,
        Some(0.0),
        "backend reported down"
    );

    // (c) Redis back: after the retry interval both decide on it again, and a fresh route's
    // single burst of 3 is shared (on local limiters each gateway would admit 3).
    relay.restore();
    let restored = Instant::now();
    let resumed = wait_until_shared(&client, &a, &b, Duration::from_secs(8)).await;
    eprintln!(
        "outage: shared limiting resumed {:.2}s after Redis came back",
        restored.elapsed().as_secs_f64()
    );
    assert_eq!(
        metric(&a, BACKEND_UP).await,
        Some(1.0),
        "backend reported up"
    );
    let again = cycle(&client, &[&a, &b], "/after/x", 6, &after).await;
    assert_eq!(again, [200, 200, 200, 429, 429, 429]);

    // Only admitted requests reached the upstreams: shared 2 each, local 4 each, after 2 + 1,
    // one open request each, and the probes.
    assert_eq!(
        a.orders.received_count(),
        2 + 4 + 2 + 1 + before.0 + resumed.0
    );
    assert_eq!(
        b.orders.received_count(),
        2 + 4 + 1 + 1 + before.1 + resumed.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_with_fail_open_admits_and_with_fail_closed_refuses() {
    let Some((target, via)) = redis_url_for_relay() else {
        return;
    };
    let _metrics = BACKEND_METRICS.lock().await;
    let relay = Relay::start(target).await;
    let opened = fresh_route("fail-open");
    let closed = fresh_route("fail-closed");
    let probe = fresh_route("fail-probe");
    let extra = |route: &str, mode: &str| {
        on_redis(
            &[limited_route(route, "1/m", 2), probe_route(&probe)],
            RateLimits::redis(&via(relay.addr)).on_backend_error(mode),
        )
    };
    let o = setup(&extra(&opened, "fail_open")).await;
    let c = setup(&extra(&closed, "fail_closed")).await;
    let client = http_client();
    let (probes_c, probes_o) = wait_until_shared(&client, &c, &o, Duration::from_secs(5)).await;

    // Redis up: it limits both.
    assert_eq!(
        cycle(&client, &[&o], "/limited/x", 3, &opened).await,
        [200, 200, 429]
    );
    assert_eq!(cycle(&client, &[&c], "/limited/x", 1, &closed).await, [200]);

    relay.cut_and_wait().await;
    // fail_open: everything is admitted, though the budget is spent (and a local fallback would
    // refuse after its burst of 2). The policy is still announced, but no remaining budget is
    // claimed while nothing is counted.
    for _ in 0..5 {
        let res = client.get(o.url("/limited/x")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(header(&res, "ratelimit-policy").starts_with(&format!("\"{opened}\";")));
        assert!(res.headers().get("ratelimit").is_none());
    }
    assert_eq!(o.orders.received_count(), 2 + 5 + probes_o);
    // fail_closed: everything is refused, though budget is left, with a 503 that tells an
    // outage from a caller over its limit, asking to retry after the retry interval (1 s);
    // nothing reaches the upstream.
    for _ in 0..3 {
        let res = client.get(c.url("/limited/x")).send().await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(header(&res, "retry-after"), "1");
        assert!(header(&res, "ratelimit-policy").starts_with(&format!("\"{closed}\";")));
        assert!(header(&res, "ratelimit").contains("r=0"));
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_unavailable");
    }
    assert_eq!(c.orders.received_count(), 1 + probes_c);
    let res = client.get(c.url("/open/1")).send().await.unwrap();
    assert_eq!(res.status(), 200, "unlimited routes are still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_falls_back_to_local_limits() {
    // Needs no Redis: the point is that there is none.
    let _metrics = BACKEND_METRICS.lock().await;
    let dead = free_port();
    let route = fresh_route("fallback");
    let routes = [limited_route(&route, "1/m", 3)];
    let extra = on_redis(
        &routes,
        RateLimits::redis(&format!("redis://127.0.0.1:{dead}")).on_backend_error("local"),
    );
    let s = setup(&extra).await;
    let client = http_client();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let res = client.get(s.url("/limited/x")).send().await.unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            assert_limited(res, &route).await;
        }
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429, 429, 429, 429],
        "the local fallback limits"
    );
    assert_eq!(s.orders.received_count(), 3);
    // Still serving.
    let res = client.get(s.url("/open/1")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_with_fail_closed_refuses_with_503() {
    // Needs no Redis: the point is that there is none.
    let _metrics = BACKEND_METRICS.lock().await;
    let dead = free_port();
    let route = fresh_route("fail-closed-dead");
    let routes = [limited_route(&route, "1/m", 3)];
    let extra = on_redis(
        &routes,
        RateLimits::redis(&format!("redis://127.0.0.1:{dead}")).on_backend_error("fail_closed"),
    );
    let s = setup(&extra).await;
    let client = http_client();
    // Budget is left (burst 3), yet nothing is admitted while the backend is unreachable: a 503
    // that tells an outage from a caller over its limit, asking to retry after the retry
    // interval (1 s by default).
    for i in 0..5 {
        let res = client.get(s.url("/limited/x")).send().await.unwrap();
        assert_eq!(res.status(), 503, "request {i}");
        assert_eq!(header(&res, "retry-after"), "1", "request {i}");
        assert!(header(&res, "ratelimit-policy").starts_with(&format!("\"{route}\";")));
        assert!(header(&res, "ratelimit").contains("r=0"));
        assert!(
            header(&res, "content-type").starts_with("application/json"),
            "503 body is JSON"
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "rate_limit_unavailable",
            "request {i}"
        );
    }
    assert_eq!(
        s.orders.received_count(),
        0,
        "nothing refused may reach the upstream"
    );
    // Unlimited routes are still served.
    let res = client.get(s.url("/open/1")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(s.orders.received_count(), 1);
}
