//! Rate limits end to end, through the real gateway: burst then 429 with the IETF headers, keys
//! isolating callers, `X-Forwarded-For` believed only from trusted proxies, and the Redis fleet
//! backend (shared budget across two gateways; local fallback when Redis is unreachable).
//!
//! Counts are checked with slack for the tokens that refill while a burst is being sent; no
//! assertion depends on how fast the machine is beyond that.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::{TestGateway, free_port, http_client};
use tiktok_gateway::sandbox::orders::OrderService;

const KEY_A: &str = "tgw-test-rate-key-a-5e1d7c9b3a";
const KEY_B: &str = "tgw-test-rate-key-b-8f2e4a6c0d";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// One plaintext loopback listener; `extra` is appended at the top level.
fn config(dir: &Path, port: u16, orders: SocketAddr, routes: &str, extra: &str) -> String {
    format!(
        r#"version: "rl-t1"
listeners:
  plain:
    address: "127.0.0.1:{port}"
identity:
  api_keys:
    - name: alpha
      sha256: "{a}"
    - name: beta
      sha256: "{b}"
upstreams:
  orders:
    targets: ["{orders}"]
    timeouts: {{ connect: 500ms, read: 2s }}
routes:
  - name: open
    listener: plain
    match: {{ path_prefix: /open/ }}
    auth: none
    upstream: orders
{routes}
logging:
  access_log: {log}
{extra}
"#,
        a = sha256_hex(KEY_A),
        b = sha256_hex(KEY_B),
        log = dir.join("access.log").display(),
    )
}

const LOCAL_ROUTES: &str = r#"  - name: burst
    listener: plain
    match: { path_prefix: /burst/ }
    auth: none
    rate_limit: { key: route, rate: "2/s", burst: 4 }
    upstream: orders
  - name: keyed
    listener: plain
    match: { path_prefix: /keyed/ }
    auth: { api_key: true }
    rate_limit: { key: api_key, rate: "1/m", burst: 3 }
    upstream: orders
  - name: byip
    listener: plain
    match: { path_prefix: /ip/ }
    auth: none
    rate_limit: { key: client_ip, rate: "1/m", burst: 2 }
    upstream: orders
"#;

struct Setup {
    /// Kept alive for the test; dropping it stops the gateway.
    _gw: TestGateway,
    orders: OrderService,
    port: u16,
}

async fn setup(routes: &str, extra: &str) -> Setup {
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let addr = orders.addr();
    let gw = TestGateway::start(|dir| config(dir, port, addr, routes, extra));
    Setup {
        _gw: gw,
        orders,
        port,
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
    let s = setup(LOCAL_ROUTES, "").await;
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
    let s = setup(LOCAL_ROUTES, "").await;
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
    let s = setup(LOCAL_ROUTES, "").await;
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
    let s = setup(LOCAL_ROUTES, "trusted_proxies: [\"127.0.0.1/32\"]").await;
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

fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!("skipping: REDIS_URL is not set (CI sets it to the local Redis)");
            None
        }
    }
}

/// A route name no earlier run has used, so its Redis buckets start empty.
fn fresh_route(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn limited_route(name: &str, rate: &str, burst: u32) -> String {
    format!(
        r#"  - name: {name}
    listener: plain
    match: {{ path_prefix: /limited/ }}
    auth: none
    rate_limit: {{ key: route, rate: "{rate}", burst: {burst} }}
    upstream: orders
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_redis_limit() {
    let Some(url) = redis_url() else { return };
    const RATE: f64 = 20.0;
    const BURST: usize = 5;
    const RUN: Duration = Duration::from_secs(2);
    let route = fresh_route("fleet");
    let routes = limited_route(&route, "20/s", BURST as u32);
    let extra = format!("rate_limits: {{ backend: redis, url: \"{url}\" }}");
    let a = setup(&routes, &extra).await;
    let b = setup(&routes, &extra).await;

    let run = |base: String| {
        tokio::spawn(async move {
            let client = http_client();
            let (mut admitted, mut sent, mut other) = (0usize, 0usize, 0usize);
            let deadline = Instant::now() + RUN;
            while Instant::now() < deadline {
                let status = client
                    .get(format!("{base}/limited/x"))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                sent += 1;
                match status {
                    200 => admitted += 1,
                    429 => {}
                    _ => other += 1,
                }
            }
            (admitted, sent, other)
        })
    };
    let started = Instant::now();
    let (ha, hb) = (
        run(format!("http://127.0.0.1:{}", a.port)),
        run(format!("http://127.0.0.1:{}", b.port)),
    );
    let ((adm_a, sent_a, other_a), (adm_b, sent_b, other_b)) =
        (ha.await.unwrap(), hb.await.unwrap());
    let elapsed = started.elapsed().as_secs_f64();
    let total = adm_a + adm_b;
    let budget = RATE * elapsed + BURST as f64;
    eprintln!(
        "fleet: a {adm_a}/{sent_a}, b {adm_b}/{sent_b}, total {total} in {elapsed:.2}s (shared budget {budget:.0})"
    );
    assert_eq!(other_a + other_b, 0, "only 200 and 429 are expected");
    assert!(adm_a > 0 && adm_b > 0, "both gateways admitted some");
    // Small slack: a few percent and a couple of requests for timing at the edges.
    assert!(
        (total as f64) <= budget * 1.05 + 2.0,
        "{total} admitted across two gateways, above the shared budget {budget:.0}"
    );
    assert_eq!(a.orders.received_count(), adm_a);
    assert_eq!(b.orders.received_count(), adm_b);
    if sent_a + sent_b < 2 * budget as usize {
        eprintln!("note: too few requests were sent to tell a shared limit from two local ones");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_falls_back_to_local_limits() {
    // Needs no Redis: the point is that there is none.
    let dead = free_port();
    let route = fresh_route("fallback");
    let routes = limited_route(&route, "1/m", 3);
    let extra = format!(
        "rate_limits: {{ backend: redis, url: \"redis://127.0.0.1:{dead}\", on_backend_error: local }}"
    );
    let s = setup(&routes, &extra).await;
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
