//! `/readyz` answers 503 with a JSON list of causes until the gateway can do its job (JWT issuers
//! have keys, the webhook queue takes writes, every TikTok shop has a usable token, Redis
//! answers where an outage would stop requests), and 200 once it can; `/healthz` stays a plain
//! liveness answer throughout.

#![cfg(feature = "demo")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    Config, JwtIssuer, Listener, RateLimits, Relay, Route, TestGateway, TikTok, Upstream, Webhooks,
    free_port, http_client, redis_url, split_redis_url, unique_name,
};
use serde_json::Value;
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::sandbox::idp::DevIdp;
use tiktok_gateway::sandbox::orders::OrderService;
use tiktok_gateway::sandbox::tiktok::{self as sandbox, SandboxConfig};

async fn get(port: u16, path: &str) -> (u16, Value) {
    let res = http_client()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// Polls `/readyz` until `done` holds for its answer (bounded); returns that answer.
async fn readyz_until(port: u16, what: &str, done: impl Fn(u16, &Value) -> bool) -> (u16, Value) {
    let mut last = (0, Value::Null);
    for _ in 0..150 {
        last = get(port, "/readyz").await;
        if done(last.0, &last.1) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never showed {what}; last: {} {}", last.0, last.1);
}

fn cause<'a>(body: &'a Value, list: &str, check: &str) -> Option<&'a str> {
    body[list]
        .as_array()?
        .iter()
        .find(|c| c["check"] == check)
        .and_then(|c| c["reason"].as_str())
}

fn checks(body: &Value) -> Vec<String> {
    body["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_jwt_issuer_has_keys() {
    let idp = DevIdp::start(Arc::new(SystemClock)).await.unwrap();
    idp.set_down(true);
    let orders = OrderService::spawn(None).await.unwrap();
    let (port, metrics) = (free_port(), free_port());
    let _gw = TestGateway::with(
        &Config::new()
            .listener(Listener::plain("plain", port))
            .listener(Listener::plain("metrics", metrics))
            .jwt(JwtIssuer::url("idp", &idp).refresh("1s"))
            .upstream(Upstream::new("orders", orders.addr()))
            .route(Route::prefix("orders", "plain", "/orders/").upstream("orders")),
    );
    let (status, body) = readyz_until(metrics, "the missing keys", |_, b| {
        cause(b, "causes", "jwt:idp") == Some("no signing keys loaded yet")
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    // Liveness is not readiness: the process is up.
    let (live, live_body) = get(metrics, "/healthz").await;
    assert_eq!((live, live_body["status"].as_str()), (200, Some("ok")));

    idp.set_down(false);
    let (status, body) = readyz_until(metrics, "ready", |s, _| s == 200).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["causes"], Value::Array(vec![]));
    assert_eq!(checks(&body), ["jwt:idp", "state_backend"]);
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_without_a_usable_token_keeps_the_gateway_not_ready() {
    const BR: &str = "7495540735365777507";
    let sb = SandboxConfig::example(9);
    let server = sandbox::spawn(sb.clone()).await.unwrap();
    // The gateway holds an expired access token for one shop, and no refresh token that works.
    let mut view = sb.clone();
    let now = sb.clock.unix_seconds();
    for shop in view.shops.iter_mut().filter(|s| s.id == BR) {
        shop.access_token_expires_at = now - 60;
        shop.refresh_token_expires_at = now - 30;
    }
    let metrics = free_port();
    let qdir = tempfile::tempdir().unwrap();
    let _gw = TestGateway::with(
        &Config::new()
            .listener(Listener::plain("metrics", metrics))
            .upstream(Upstream::tiktok("tiktok_api", &server.base_url()))
            .tiktok(TikTok::sandbox("main", &view, &server.base_url()))
            .webhooks(Webhooks::new("forward-secret").queue(&qdir.path().join("q.redb"))),
    );
    let (status, body) = readyz_until(metrics, "the shop's token", |_, b| {
        cause(b, "causes", &format!("tiktok_token:{BR}")).is_some_and(|r| r != "not checked yet")
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        cause(&body, "causes", &format!("tiktok_token:{BR}")),
        Some("access token expired and not refreshed yet")
    );
    let listed = checks(&body);
    for shop in &sb.shops {
        assert!(
            listed.contains(&format!("tiktok_token:{}", shop.id)),
            "{body}"
        );
        if shop.id != BR {
            assert!(
                cause(&body, "causes", &format!("tiktok_token:{}", shop.id)).is_none(),
                "a shop with a valid token is fine: {body}"
            );
        }
    }
    // The state store (webhook queue) answered its ping.
    assert!(listed.contains(&"state_backend".to_owned()), "{body}");
    assert!(cause(&body, "causes", "state_backend").is_none(), "{body}");
    assert_eq!(body["causes"].as_array().map(Vec::len), Some(1), "{body}");
}

/// A gateway limiting on Redis through a relay the test can cut.
async fn redis_gateway(url: &str, relay: &Relay, mode: &str) -> (TestGateway, u16) {
    let Some((_, rebuild)) = split_redis_url(url) else {
        panic!("REDIS_URL is not redis://host:port")
    };
    let metrics = free_port();
    let orders = OrderService::spawn(None).await.unwrap();
    let mut limits = RateLimits::redis(&rebuild(relay.addr)).on_backend_error(mode);
    limits.key_prefix = Some(unique_name("tgw-test:readyz"));
    let gw = TestGateway::with(
        &Config::new()
            .listener(Listener::plain("metrics", metrics))
            .listener(Listener::plain("plain", free_port()))
            .upstream(Upstream::new("orders", orders.addr()))
            .route(Route::prefix("orders", "plain", "/orders/").upstream("orders"))
            .rate_limits(limits),
    );
    (gw, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_does_not_answer_blocks_when_limits_fail_closed() {
    let Some(url) = redis_url() else { return };
    let Some((target, _)) = split_redis_url(&url) else {
        return;
    };
    let relay = Relay::start(target).await;
    let (_gw, metrics) = redis_gateway(&url, &relay, "fail_closed").await;
    readyz_until(metrics, "ready", |s, _| s == 200).await;

    relay.cut_and_wait().await;
    let (status, body) = readyz_until(metrics, "the Redis outage", |s, _| s == 503).await;
    assert!(
        cause(&body, "causes", "redis:rate_limits")
            .is_some_and(|r| r.starts_with("does not answer")),
        "{status} {body}"
    );
    let text = body.to_string();
    assert!(!text.contains("redis://"), "no URL in the answer: {text}");

    relay.restore();
    readyz_until(metrics, "ready again", |s, _| s == 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_a_local_fallback_is_degraded_not_unready() {
    let Some(url) = redis_url() else { return };
    let Some((target, _)) = split_redis_url(&url) else {
        return;
    };
    let relay = Relay::start(target).await;
    let (_gw, metrics) = redis_gateway(&url, &relay, "local").await;
    readyz_until(metrics, "ready", |s, _| s == 200).await;
    relay.cut_and_wait().await;
    let (status, body) = readyz_until(metrics, "the degraded Redis", |_, b| {
        cause(b, "degraded", "redis:rate_limits").is_some()
    })
    .await;
    assert_eq!(
        status, 200,
        "the local limiter keeps requests flowing: {body}"
    );
    assert_eq!(body["status"], "ready");
}
