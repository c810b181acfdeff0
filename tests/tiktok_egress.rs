//! TikTok signed egress end to end: internal callers send plain requests naming a shop; the
//! gateway injects credentials, signs the exact bytes and calls the TikTok sandbox, which checks
//! everything TikTok checks with its own, independent verifier.

// The sandboxes these tests run against exist only with the `demo` feature (a default one).
#![cfg(feature = "demo")]

mod common;

use std::time::Duration;

use common::{ApiKey, Auth, Config, Listener, Route, TestGateway, TikTok, Upstream, free_port};
use tiktok_gateway::sandbox::tiktok::{self as sandbox, SandboxConfig, SandboxRate};

const US: &str = "7494049642642441621";
const BR: &str = "7495540735365777507";
const KEY_ALL: &str = "key-for-all-shops-0001";
const KEY_US: &str = "key-for-us-shop-only-01";

fn config(port: u16, sb: &SandboxConfig, base: &str, (rate, burst): (&str, u32)) -> Config {
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
        .upstream(Upstream::tiktok("tiktok_api", base))
        .tiktok(TikTok::sandbox("main", sb, base).pacing(rate, burst))
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

/// `pacing`: the gateway's outbound budget, `(rate, burst)`.
async fn setup(rate: Option<SandboxRate>, pacing: (&str, u32)) -> Setup {
    let mut sb = SandboxConfig::example(7);
    sb.rate = rate;
    let sandbox = sandbox::spawn(sb.clone()).await.unwrap();
    let port = free_port();
    let base = sandbox.base_url();
    let gw = TestGateway::with(&config(port, &sb, &base, pacing));
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
