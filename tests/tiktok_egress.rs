//! TikTok signed egress end to end: internal callers send plain requests naming a shop; the
//! gateway injects credentials, signs the exact bytes and calls the TikTok sandbox, which checks
//! everything TikTok checks with its own, independent verifier.

#![cfg(feature = "demo")]

mod common;

use std::time::Duration;

use common::{
    ApiKey, Auth, CircuitBreaker, Config, HealthCheck, Listener, Route, TestGateway, TikTok,
    Upstream, free_port,
};
use tiktok_gateway::sandbox::tiktok::{self as sandbox, SandboxConfig, SandboxRate};

const US: &str = "7494049642642441621";
const BR: &str = "7495540735365777507";
const KEY_ALL: &str = "key-for-all-shops-0001";
const KEY_US: &str = "key-for-us-shop-only-01";

/// `api`: where the gateway calls TikTok's API (the upstream and the app's `api_base`); `auth`:
/// its token host. `pacing`: the gateway's outbound budget, `(rate, burst)`.
fn config(
    port: u16,
    sb: &SandboxConfig,
    api: &str,
    auth: &str,
    (rate, burst): (&str, u32),
    api_upstream: impl FnOnce(Upstream) -> Upstream,
) -> Config {
    Config::new()
        .listener(Listener::plain("egress", port))
        .api_key(ApiKey::new(
            "all-shops",
            KEY_ALL,
            &["orders:read", "tiktok:shop:*"],
        ))
        .api_key(ApiKey::new(
            "us-only",
            KEY_US,
            &["orders:read", &format!("tiktok:shop:{US}")],
        ))
        .upstream(api_upstream(Upstream::tiktok("tiktok_api", api)))
        .tiktok(
            TikTok::sandbox("main", sb, auth)
                .api_base("main", api)
                .pacing(rate, burst),
        )
        .route(
            Route::prefix("tiktok", "egress", "/")
                .methods(&["GET", "POST", "PUT", "DELETE"])
                .auth(Auth::api_key().scopes(&["orders:read"]))
                .tiktok("main", Some("x-tiktok-shop-id"))
                .upstream("tiktok_api"),
        )
}

struct Setup {
    _gw: TestGateway,
    sandbox: sandbox::TikTokSandbox,
    port: u16,
}

async fn setup(rate: Option<SandboxRate>, pacing: (&str, u32)) -> Setup {
    setup_with(rate, pacing, |_| {}, str::to_owned, |u| u).await
}

/// As [`setup`]; `gateway_view` changes what the gateway is configured with (not the sandbox),
/// `api` maps the sandbox's base URL to the one the gateway calls TikTok's API at (its token
/// host stays the sandbox's).
async fn setup_with(
    rate: Option<SandboxRate>,
    pacing: (&str, u32),
    gateway_view: impl FnOnce(&mut SandboxConfig),
    api: impl FnOnce(&str) -> String,
    api_upstream: impl FnOnce(Upstream) -> Upstream,
) -> Setup {
    let mut sb = SandboxConfig::example(7);
    sb.rate = rate;
    let sandbox = sandbox::spawn(sb.clone()).await.unwrap();
    let port = free_port();
    let base = sandbox.base_url();
    gateway_view(&mut sb);
    let api = api(&base);
    let gw = TestGateway::with(&config(port, &sb, &api, &base, pacing, api_upstream));
    Setup {
        _gw: gw,
        sandbox,
        port,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn url(s: &Setup, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", s.port)
}

async fn json(res: reqwest::Response) -> (u16, serde_json::Value) {
    let status = res.status().as_u16();
    let body = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_calls_pass_tiktoks_checks() {
    let s = setup(None, ("100/s", 100)).await;
    let ids = s.sandbox.state().order_ids(US);
    let (a, b) = (&ids[0], &ids[1]);

    // GET with ids=a,b
    let res = client()
        .get(url(&s, &format!("/order/202309/orders?ids={a},{b}")))
        .header("x-api-key", KEY_ALL)
        .header("x-tiktok-shop-id", US)
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["data"]["orders"].as_array().unwrap().len(), 2);

    // POST search; the next page token holds `+`, `/` and `=`.
    let res = client()
        .post(url(&s, "/order/202309/orders/search?page_size=5"))
        .header("x-api-key", KEY_ALL)
        .header("x-tiktok-shop-id", US)
        .header("content-type", "application/json")
        .body(r#"{"order_status":"AWAITING_SHIPMENT"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["next_page_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        token.contains(['+', '/', '=']),
        "sandbox tokens are awkward on purpose: {token}"
    );
    let encoded: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let res = client()
        .post(url(
            &s,
            &format!("/order/202309/orders/search?page_size=5&page_token={encoded}"),
        ))
        .header("x-api-key", KEY_ALL)
        .header("x-tiktok-shop-id", US)
        .header("content-type", "application/json")
        .body(r#"{"order_status":"AWAITING_SHIPMENT"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_eq!(
        (status, &body["code"]),
        (200, &serde_json::json!(0)),
        "{body}"
    );

    // A path where shop_cipher must be omitted.
    let res = client()
        .get(url(&s, "/authorization/202309/shops"))
        .header("x-api-key", KEY_ALL)
        .header("x-tiktok-shop-id", US)
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_eq!(
        (status, &body["code"]),
        (200, &serde_json::json!(0)),
        "{body}"
    );

    // Multipart upload: the body is not signed, the boundary survives.
    let boundary = "XyZbOuNdArY";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNG fake bytes\r\n--{boundary}--\r\n"
    );
    let res = client()
        .post(url(&s, "/product/202309/images/upload"))
        .header("x-api-key", KEY_ALL)
        .header("x-tiktok-shop-id", US)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_eq!(
        (status, &body["code"]),
        (200, &serde_json::json!(0)),
        "{body}"
    );

    let counters = s.sandbox.state().counters();
    assert_eq!(counters.total_rejected(), 0, "{counters:?}");
    // Callers never see credentials: nothing TikTok-secret came back in any response header.
    for r in s.sandbox.state().records() {
        assert!(r.query.as_deref().unwrap_or("").contains("sign="));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_credentials_are_replaced_and_foreign_shops_refused() {
    let s = setup(None, ("100/s", 100)).await;
    let ids = s.sandbox.state().order_ids(US);
    let res = client()
        .get(url(
            &s,
            &format!("/order/202309/orders?ids={}&app_key=evil&sign=deadbeef&access_token=stolen&timestamp=1", ids[0]),
        ))
        .header("x-api-key", KEY_ALL)
        .header("x-tiktok-shop-id", US)
        .header("x-tts-access-token", "TTP_forged")
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_eq!(
        (status, &body["code"]),
        (200, &serde_json::json!(0)),
        "{body}"
    );
    let rec = s.sandbox.state().records().pop().unwrap();
    let q = rec.query.unwrap_or_default();
    assert!(
        !q.contains("evil") && !q.contains("deadbeef") && !q.contains("stolen"),
        "{q}"
    );
    assert!(
        rec.headers
            .iter()
            .all(|(k, v)| k != "x-tts-access-token" || v != "TTP_forged")
    );
    assert!(
        rec.headers
            .iter()
            .all(|(k, _)| k != "x-api-key" && k != "authorization")
    );

    // A caller without the shop's scope: refused, and nothing is sent to TikTok.
    let before = s.sandbox.state().request_count();
    let res = client()
        .get(url(&s, "/order/202309/orders?ids=1"))
        .header("x-api-key", KEY_US)
        .header("x-tiktok-shop-id", BR)
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "shop_forbidden");
    // An unknown shop and a missing shop header are refused too.
    let res = client()
        .get(url(&s, "/order/202309/orders?ids=1"))
        .header("x-api-key", KEY_ALL)
        .header("x-tiktok-shop-id", "123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let (_, body) = json(res).await;
    assert_eq!(body["error"]["code"], "unknown_shop", "{body}");
    let res = client()
        .get(url(&s, "/order/202309/orders?ids=1"))
        .header("x-api-key", KEY_ALL)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let (_, body) = json(res).await;
    assert_eq!(body["error"]["code"], "shop_required", "{body}");
    // Repeated query keys are refused before signing.
    let res = client()
        .get(url(&s, "/order/202309/orders?ids=1&ids=2"))
        .header("x-api-key", KEY_ALL)
        .header("x-tiktok-shop-id", US)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let (_, body) = json(res).await;
    assert_eq!(body["error"]["code"], "bad_query", "{body}");
    assert_eq!(
        s.sandbox.state().request_count(),
        before,
        "nothing reached TikTok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_refreshed_and_the_call_retried_once() {
    let s = setup(None, ("100/s", 100)).await;
    let ids = s.sandbox.state().order_ids(US);
    assert_eq!(s.sandbox.state().expire_access_tokens(US), 1);
    let res = client()
        .get(url(&s, &format!("/order/202309/orders?ids={}", ids[0])))
        .header("x-api-key", KEY_ALL)
        .header("x-tiktok-shop-id", US)
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_eq!(
        (status, &body["code"]),
        (200, &serde_json::json!(0)),
        "{body}"
    );
    let records = s.sandbox.state().records();
    let paths: Vec<(String, i64)> = records.iter().map(|r| (r.path.clone(), r.code)).collect();
    assert!(
        paths
            .iter()
            .any(|(p, c)| p.starts_with("/order/") && *c == 105002),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|(p, _)| p == "/api/v2/token/refresh"),
        "{paths:?}"
    );
    assert_eq!(paths.last().map(|(_, c)| *c), Some(0), "{paths:?}");
}

/// Refresh calls that reached the sandbox's token host.
fn refresh_calls(s: &Setup) -> usize {
    s.sandbox
        .state()
        .records()
        .iter()
        .filter(|r| r.path == "/api/v2/token/refresh")
        .count()
}

async fn get_order(s: &Setup, id: &str) -> reqwest::Response {
    client()
        .get(url(s, &format!("/order/202309/orders?ids={id}")))
        .header("x-api-key", KEY_ALL)
        .header("x-tiktok-shop-id", US)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_refreshes_back_off_while_the_token_host_refuses() {
    // The gateway holds a refresh token TikTok no longer honours: every refresh fails.
    let s = setup_with(
        None,
        ("100/s", 100),
        |sb| {
            let us = sb.shops.iter_mut().find(|shop| shop.id == US).unwrap();
            us.refresh_token = tiktok_gateway::config::Secret::new("TTP_revoked_refresh_0001");
        },
        str::to_owned,
        |u| u,
    )
    .await;
    let ids = s.sandbox.state().order_ids(US);
    assert_eq!(s.sandbox.state().expire_access_tokens(US), 1);

    // Five requests meet `105002` at once, then five more one after another, all within the
    // back-off (60 s) after the first failed refresh.
    let burst = (0..5).map(|_| get_order(&s, &ids[0]));
    let mut answers = futures::future::join_all(burst).await;
    for _ in 0..5 {
        answers.push(get_order(&s, &ids[0]).await);
    }
    let mut retry_after = 0;
    for res in answers {
        if res.headers().contains_key("retry-after") {
            retry_after += 1;
        }
        let (status, body) = json(res).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "token_refresh_failed", "{body}");
    }
    assert_eq!(
        refresh_calls(&s),
        1,
        "one refresh attempt per back-off interval"
    );
    assert!(retry_after >= 5, "back-off answers carry Retry-After");
    let expired = s
        .sandbox
        .state()
        .counters()
        .rejected_for(sandbox::RejectReason::ExpiredToken);
    assert_eq!(expired, 10, "each request called TikTok once, never twice");
}

/// A relay in front of the sandbox's API that holds the first request it receives until
/// released: that request, signed with the old token, reaches TikTok after the token was
/// replaced. Its target is set once the sandbox runs.
struct HoldingRelay {
    base: String,
    target: std::sync::Arc<parking_lot::Mutex<String>>,
    arrived: tokio::sync::oneshot::Receiver<()>,
    release: tokio::sync::oneshot::Sender<()>,
}

type Gate = (
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
);

struct RelayState {
    target: std::sync::Arc<parking_lot::Mutex<String>>,
    client: reqwest::Client,
    gate: parking_lot::Mutex<Option<Gate>>,
}

async fn relay(
    axum::extract::State(r): axum::extract::State<std::sync::Arc<RelayState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let gate = r.gate.lock().take();
    if let Some((arrived, release)) = gate {
        let _ = arrived.send(());
        let _ = release.await;
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let target = r.target.lock().clone();
    let mut out = r
        .client
        .request(parts.method, format!("{target}{path}"))
        .body(body);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
            out = out.header(name, value);
        }
    }
    let res = out.send().await.unwrap();
    let mut answer = axum::response::Response::builder().status(res.status());
    if let Some(ct) = res.headers().get("content-type") {
        answer = answer.header("content-type", ct);
    }
    answer
        .body(axum::body::Body::from(res.bytes().await.unwrap()))
        .unwrap()
}

async fn holding_relay() -> HoldingRelay {
    // Built before the gateway installs its TLS provider: the same one (ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
    let (release, release_rx) = tokio::sync::oneshot::channel();
    let target = std::sync::Arc::new(parking_lot::Mutex::new(String::new()));
    let state = std::sync::Arc::new(RelayState {
        target: target.clone(),
        client: client(),
        gate: parking_lot::Mutex::new(Some((arrived_tx, release_rx))),
    });
    let app = axum::Router::new().fallback(relay).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    HoldingRelay {
        base,
        target,
        arrived,
        release,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_answer_for_an_already_replaced_token_does_not_refresh_again() {
    let relay = holding_relay().await;
    // API calls go through the relay; refreshes straight to the sandbox's token host.
    let s = setup_with(
        None,
        ("100/s", 100),
        |_| {},
        |base| {
            *relay.target.lock() = base.to_owned();
            relay.base.clone()
        },
        |u| u,
    )
    .await;
    let ids = s.sandbox.state().order_ids(US);
    assert_eq!(s.sandbox.state().expire_access_tokens(US), 1);

    // Request B is signed with the old token and held on its way to TikTok.
    let late = tokio::spawn({
        let url = url(&s, &format!("/order/202309/orders?ids={}", ids[1]));
        async move {
            client()
                .get(url)
                .header("x-api-key", KEY_ALL)
                .header("x-tiktok-shop-id", US)
                .send()
                .await
                .unwrap()
        }
    });
    relay.arrived.await.unwrap();
    // Request A meets `105002`, refreshes (one call) and succeeds with the new token.
    let (status, body) = json(get_order(&s, &ids[0]).await).await;
    assert_eq!(
        (status, &body["code"]),
        (200, &serde_json::json!(0)),
        "{body}"
    );
    assert_eq!(refresh_calls(&s), 1);

    // B now reaches TikTok with the replaced token and meets `105002` too: it is retried with
    // the current token, and the new refresh token is not spent on a second refresh.
    relay.release.send(()).unwrap();
    let (status, body) = json(late.await.unwrap()).await;
    assert_eq!(
        (status, &body["code"]),
        (200, &serde_json::json!(0)),
        "{body}"
    );
    assert_eq!(
        refresh_calls(&s),
        1,
        "a stale 105002 started another refresh"
    );
    let expired = s
        .sandbox
        .state()
        .counters()
        .rejected_for(sandbox::RejectReason::ExpiredToken);
    assert_eq!(expired, 2, "A and B each met 105002 once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_backs_off_and_answers_429_without_exceeding_tiktoks_rate() {
    // TikTok allows 2/s per shop; the gateway's own budget is higher, so TikTok's 429 is what
    // teaches it to back off.
    let s = setup(
        Some(SandboxRate {
            per_second: 2.0,
            burst: 2,
        }),
        ("50/s", 50),
    )
    .await;
    let ids = s.sandbox.state().order_ids(US);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let res = client()
            .get(url(&s, &format!("/order/202309/orders?ids={}", ids[0])))
            .header("x-api-key", KEY_ALL)
            .header("x-tiktok-shop-id", US)
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            assert!(res.headers().contains_key("retry-after"));
        }
        statuses.push(res.status().as_u16());
    }
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 2,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 5,
        "{statuses:?}"
    );
    let counters = s.sandbox.state().counters();
    // After TikTok's first 429 the gateway stops sending: TikTok saw at most a couple of throttled calls.
    assert!(
        counters.rejected_for(sandbox::RejectReason::Throttled) <= 2,
        "the gateway kept hammering a throttled shop: {counters:?}"
    );
    assert!(
        s.sandbox.state().request_count() < 12,
        "the gateway answered some 429s itself"
    );
}

/// The egress route's upstream has a dead target next to TikTok: the active probes take it out,
/// and every signed call reaches TikTok with none failing (no retries, no breaker to hide it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_skips_a_target_its_health_checks_found_dead() {
    let dead = format!("127.0.0.1:{}", free_port());
    let s = setup_with(
        None,
        ("100/s", 100),
        |_| {},
        str::to_owned,
        |mut u| {
            // The dead target first, where it would be picked before the live one.
            u.targets.insert(0, dead.clone());
            u.retries(0)
                .health_check(HealthCheck::tcp().every("200ms", "200ms"))
                .circuit_breaker(CircuitBreaker {
                    failures: Some(0),
                    ..CircuitBreaker::default()
                })
        },
    )
    .await;
    let gauge = tiktok_gateway::telemetry::metrics::metrics()
        .upstream_target_healthy
        .with_label_values(&["tiktok_api", &dead]);
    for _ in 0..100 {
        if gauge.get() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gauge.get(), 0, "the probes found the dead target");

    let ids = s.sandbox.state().order_ids(US);
    let before = s.sandbox.state().request_count();
    for i in 0..10 {
        let res = client()
            .get(url(&s, &format!("/order/202309/orders?ids={}", ids[0])))
            .header("x-api-key", KEY_ALL)
            .header("x-tiktok-shop-id", US)
            .send()
            .await
            .unwrap();
        let (status, body) = json(res).await;
        assert_eq!(
            (status, &body["code"]),
            (200, &serde_json::json!(0)),
            "call {i}: {body}"
        );
    }
    assert_eq!(s.sandbox.state().request_count() - before, 10);
}
