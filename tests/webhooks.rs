//! TikTok Shop webhooks end to end: verified over the raw body, stored durably, acknowledged,
//! delivered to the order service with the gateway's own proof, deduplicated, never lost.

// The sandboxes these tests run against exist only with the `demo` feature (a default one).
#![cfg(feature = "demo")]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{
    Auth, Config, Listener, Route, TestGateway, TikTok, Upstream, Webhooks, free_port, raw_http,
    status_of,
};
use tiktok_gateway::config::Secret;
use tiktok_gateway::sandbox::orders::{Behaviour, OrderService};
use tiktok_gateway::tiktok::proof;

const APP_KEY: &str = "abcdef";
const APP_SECRET: &str = "123";
const FORWARD_SECRET: &str = "order-service-shared-secret";
/// TikTok's published vector (TIKTOK.md).
const VECTOR_BODY: &str = r#"{"type":1,"tts_notification_id":"7380066284010030890","shop_id":"7495540735365777507","timestamp":1718305585,"data":{"is_on_hold_order":true,"order_id":"576653688135258178","order_status":"UNPAID","update_time":1718305585}}"#;
const VECTOR_SIG: &str = "5dec0f11ec2f6783b8deee53c9ffbf8d024302f7c7e7fa55a35d17629031ac05";

/// Both webhook routes, delivering to `orders` (an upstream named `orders`).
fn config(port: u16, orders: Upstream, queue: &Path) -> Config {
    Config::new()
        .listener(Listener::plain("public", port))
        .upstream(orders)
        .tiktok(
            TikTok::new()
                .app(TikTok::webhook_app("main", APP_KEY, APP_SECRET))
                .developer_app("dev", APP_SECRET, Some("5m")),
        )
        .webhooks(Webhooks::new(FORWARD_SECRET).queue(queue))
        .route(
            Route::exact("tiktok-webhooks", "public", "/webhooks/tiktok")
                .methods(&["POST"])
                .auth(Auth::tiktok_webhook("main"))
                .max_body("4KiB")
                .upstream("orders")
                .rewrite("/internal/tiktok/events"),
        )
        .route(
            Route::exact(
                "tiktok-developer-webhooks",
                "public",
                "/webhooks/tiktok-developers",
            )
            .methods(&["POST"])
            .auth(Auth::tiktok_developer_webhook("dev"))
            .upstream("orders")
            .rewrite("/internal/tiktok/developer-events"),
        )
}

fn sign(body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(APP_KEY.as_bytes());
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn post(port: u16, body: &str, auth: Option<&str>) -> u16 {
    status_of(&post_raw(port, body, auth).await)
}

/// As [`post`], returning the raw answer.
async fn post_raw(port: u16, body: &str, auth: Option<&str>) -> String {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /webhooks/tiktok HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_http(addr, req.as_bytes()).await
}

/// The `error.code` of a raw answer carrying the gateway's JSON error, if it is one.
fn error_code(raw: &str) -> Option<String> {
    let (_, body) = raw.split_once("\r\n\r\n")?;
    let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    v["error"]["code"].as_str().map(str::to_owned)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..150 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_webhook_is_forwarded_once_with_gateway_proof_and_replays_are_not() {
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let qdir = tempfile::tempdir().unwrap();
    let queue = qdir.path().join("queue.redb");
    let addr = orders.addr();
    let _gw = TestGateway::with(&config(port, Upstream::new("orders", addr), &queue));

    assert_eq!(
        sign(VECTOR_BODY),
        VECTOR_SIG,
        "test helper agrees with the published vector"
    );
    assert_eq!(post(port, VECTOR_BODY, Some(VECTOR_SIG)).await, 200);
    wait_until("delivery", || orders.received_count() == 1).await;
    let got = &orders.received()[0];
    assert_eq!(got.uri, "/internal/tiktok/events");
    assert_eq!(
        &got.body[..],
        VECTOR_BODY.as_bytes(),
        "raw bytes forwarded unchanged"
    );
    assert!(
        got.headers.get("authorization").is_none(),
        "TikTok's signature is not forwarded"
    );
    let ts = got.headers[proof::TIMESTAMP_HEADER].to_str().unwrap();
    let sig = got.headers[proof::SIGNATURE_HEADER].to_str().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let key = proof::ProofKey::new(&Secret::new(FORWARD_SECRET)).unwrap();
    key.verify(ts, sig, &got.body, now, 300)
        .expect("gateway proof verifies");

    // A replay (TikTok retrying) is acknowledged and not forwarded again.
    assert_eq!(post(port, VECTOR_BODY, Some(VECTOR_SIG)).await, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(orders.received_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_oversized_bodies_are_refused_and_never_forwarded() {
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let qdir = tempfile::tempdir().unwrap();
    let queue = qdir.path().join("queue.redb");
    let addr = orders.addr();
    let gw = TestGateway::with(&config(port, Upstream::new("orders", addr), &queue));

    let tampered = VECTOR_BODY.replace("UNPAID", "PAID");
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000));
    let cases: Vec<(&str, &str, Option<String>, u16, &str)> = vec![
        (
            "missing header",
            VECTOR_BODY,
            None,
            401,
            "invalid_signature",
        ),
        (
            "wrong signature",
            VECTOR_BODY,
            Some("0".repeat(64)),
            401,
            "invalid_signature",
        ),
        (
            "uppercase signature",
            VECTOR_BODY,
            Some(VECTOR_SIG.to_uppercase()),
            401,
            "invalid_signature",
        ),
        (
            "tampered body",
            &tampered,
            Some(VECTOR_SIG.to_string()),
            401,
            "invalid_signature",
        ),
        (
            "signed with another secret",
            VECTOR_BODY,
            Some(sign("other")),
            401,
            "invalid_signature",
        ),
        ("oversized", &big, Some(sign(&big)), 413, "body_too_large"),
    ];
    for (name, body, auth, want, code) in cases {
        let raw = post_raw(port, body, auth.as_deref()).await;
        assert_eq!(status_of(&raw), want, "{name}: {raw}");
        assert_eq!(error_code(&raw).as_deref(), Some(code), "{name}: {raw}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        orders.received_count(),
        0,
        "nothing refused may reach the order service"
    );
    let queue = &gw.gateway.tiktok.webhooks.as_ref().unwrap().queue;
    assert_eq!(queue.refresh_stats().await.unwrap().live, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_webhooks_survive_order_service_outage_and_gateway_restart_and_replays_after_it_are_not_forwarded()
 {
    let orders = OrderService::spawn(None).await.unwrap();
    orders.set_behaviour(Behaviour::Fail);
    let port = free_port();
    let qdir = tempfile::tempdir().unwrap();
    let queue = qdir.path().join("queue.redb");
    let addr = orders.addr();
    let gw = TestGateway::with(&config(port, Upstream::new("orders", addr), &queue));

    let bodies: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"type":1,"tts_notification_id":"n-{i}","shop_id":"1","timestamp":1718305585,"data":{{"order_id":"{i}"}}}}"#))
        .collect();
    for b in &bodies {
        assert_eq!(
            post(port, b, Some(&sign(b))).await,
            200,
            "TikTok gets its 200 while the order service is down"
        );
    }
    drop(gw); // restart: same queue file, new process state
    assert!(orders.received().iter().all(|r| r.status == 503));

    orders.set_behaviour(Behaviour::Ok);
    let port2 = free_port();
    let _gw2 = TestGateway::with(&config(port2, Upstream::new("orders", addr), &queue));
    let delivered = || {
        orders
            .received()
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect::<Vec<_>>()
    };
    wait_until("all 50 delivered", || delivered().len() >= 50).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for body in delivered() {
        *counts.entry(body).or_default() += 1;
    }
    assert_eq!(counts.len(), 50, "every event delivered");
    assert!(
        counts.values().all(|&n| n == 1),
        "none delivered twice: {counts:?}"
    );

    // TikTok (or anyone holding the signed bodies) replays all 50 after the restart: each is
    // acknowledged and none is forwarded again (the dedupe index lives in the state file).
    for b in &bodies {
        assert_eq!(post(port2, b, Some(&sign(b))).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        delivered().len(),
        50,
        "a replay after a restart was forwarded"
    );
}

fn developer_signature(t: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},s={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_developer(port: u16, body: &str, headers: &str) -> u16 {
    status_of(&post_developer_raw(port, body, headers).await)
}

/// As [`post_developer`], returning the raw answer.
async fn post_developer_raw(port: u16, body: &str, headers: &str) -> String {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let req = format!(
        "POST /webhooks/tiktok-developers HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_http(addr, req.as_bytes()).await
}

/// A developer webhook refused for its signature: 401 with the gateway's `invalid_signature`.
async fn assert_developer_refused(port: u16, body: &str, headers: &str, what: &str) {
    let raw = post_developer_raw(port, body, headers).await;
    assert_eq!(status_of(&raw), 401, "{what}: {raw}");
    assert_eq!(
        error_code(&raw).as_deref(),
        Some("invalid_signature"),
        "{what}: {raw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn developer_webhooks_use_their_own_scheme_with_freshness() {
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let qdir = tempfile::tempdir().unwrap();
    let queue = qdir.path().join("queue.redb");
    let addr = orders.addr();
    let _gw = TestGateway::with(&config(port, Upstream::new("orders", addr), &queue));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = r#"{"client_key":"abc","event":"authorization.removed","create_time":1718305585}"#;

    // Each is refused by the gateway's signature check (401 `invalid_signature`), not some
    // other 401.
    let stale = developer_signature(now - 3600, body);
    assert_developer_refused(
        port,
        body,
        &format!("TikTok-Signature: {stale}\r\n"),
        "stale",
    )
    .await;
    let wrong = developer_signature(now, "other body");
    assert_developer_refused(
        port,
        body,
        &format!("TikTok-Signature: {wrong}\r\n"),
        "wrong body",
    )
    .await;
    // The Shop scheme's header is not accepted on a developer route: the schemes never mix.
    assert_developer_refused(
        port,
        body,
        &format!("Authorization: {}\r\n", sign(body)),
        "mixed scheme",
    )
    .await;
    assert_developer_refused(port, body, "", "missing").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(orders.received_count(), 0);

    let good = developer_signature(now, body);
    assert_eq!(
        post_developer(port, body, &format!("TikTok-Signature: {good}\r\n")).await,
        200
    );
    wait_until("delivery", || orders.received_count() == 1).await;
    assert_eq!(
        orders.received()[0].uri,
        "/internal/tiktok/developer-events"
    );
    assert!(
        orders.received()[0]
            .headers
            .get("tiktok-signature")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_a_tls_order_service_trusted_through_its_upstream_ca() {
    // The order service's own private CA, unknown to the system roots.
    let pki = tempfile::tempdir().unwrap();
    let certs = tiktok_gateway::server::dev_certs::generate(pki.path()).unwrap();
    let upstream = common::TlsRecorder::start(&certs.server_cert, &certs.server_key).await;
    let port = free_port();
    let qdir = tempfile::tempdir().unwrap();
    let queue = qdir.path().join("queue.redb");
    let trusted = |sni: &str| {
        config(
            port,
            Upstream::new("orders", upstream.addr).tls(sni, Some(&certs.ca_cert)),
            &queue,
        )
    };
    let gw = TestGateway::with(&trusted("localhost"));

    assert_eq!(post(port, VECTOR_BODY, Some(VECTOR_SIG)).await, 200);
    wait_until("delivery over TLS", || !upstream.received().is_empty()).await;
    let got = &upstream.received()[0];
    assert!(
        got.head
            .starts_with("POST /internal/tiktok/events HTTP/1.1"),
        "{}",
        got.head
    );
    assert!(
        got.head
            .to_ascii_lowercase()
            .contains(&proof::SIGNATURE_HEADER.to_ascii_lowercase()),
        "{}",
        got.head
    );
    assert_eq!(&got.body[..], VECTOR_BODY.as_bytes());

    // The delivery client is built at start: a reload that changes this TLS is refused.
    let changed = trusted("orders.internal").render(gw.dir.path());
    let config = tiktok_gateway::config::load_str(&changed, gw.dir.path(), &gw.config_path)
        .expect("the changed config is valid");
    let err = gw.gateway.apply(config).expect_err("refused").to_string();
    assert!(err.contains("applies on restart"), "{err}");
}

/// Delivery picks its target like a proxied request: with a dead target first in the list, the
/// probes take it out and every event reaches the live one (delivery used to go to the first
/// target only). A target that refuses a delivery's connect is ejected by its breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_delivered_to_a_healthy_target_of_the_upstream() {
    use common::{CircuitBreaker, HealthCheck};
    let orders = OrderService::spawn(None).await.unwrap();
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let port = free_port();
    let qdir = tempfile::tempdir().unwrap();
    let queue = qdir.path().join("queue.redb");
    let m = tiktok_gateway::telemetry::metrics::metrics();
    let gauge = m
        .upstream_target_healthy
        .with_label_values(&["orders", &dead.to_string()]);
    let upstream = Upstream::new("orders", dead)
        .target(orders.addr())
        .retries(0)
        .health_check(HealthCheck::http("/healthz").every("200ms", "200ms"))
        .circuit_breaker(CircuitBreaker {
            failures: Some(0),
            ..CircuitBreaker::default()
        });
    let gw = TestGateway::with(&config(port, upstream, &queue));
    wait_until("the dead target probed out", || gauge.get() == 0).await;

    let delivered = || {
        orders
            .received()
            .into_iter()
            .filter(|r| r.uri == "/internal/tiktok/events")
            .count()
    };
    for i in 0..5 {
        let body = format!(r#"{{"type":1,"tts_notification_id":"health-{i}","shop_id":"1"}}"#);
        assert_eq!(post(port, &body, Some(&sign(&body))).await, 200);
    }
    wait_until("five deliveries", || delivered() == 5).await;
    let webhooks = gw.gateway.tiktok.webhooks.as_ref().unwrap();
    let mut drained = false;
    for _ in 0..100 {
        if webhooks.queue.refresh_stats().await.unwrap().live == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(drained, "queue drained");
    assert_eq!(
        webhooks.delivery.metrics().failed.get(),
        0,
        "no attempt went to the dead target"
    );
    drop(gw);

    // No probes: the first delivery that tries the dead target fails to connect, which opens
    // its breaker (failures: 1); the retry and every later event go to the live target.
    let qdir = tempfile::tempdir().unwrap();
    let queue = qdir.path().join("queue.redb");
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let ejections = m
        .upstream_target_ejections
        .with_label_values(&["orders", &dead.to_string()]);
    let upstream = Upstream::new("orders", dead)
        .target(orders.addr())
        .retries(1)
        .circuit_breaker(CircuitBreaker::new(1, "30s"));
    let port = free_port();
    let _gw = TestGateway::with(&config(port, upstream, &queue));
    let already = delivered();
    for i in 0..4 {
        let body = format!(r#"{{"type":1,"tts_notification_id":"passive-{i}","shop_id":"1"}}"#);
        assert_eq!(post(port, &body, Some(&sign(&body))).await, 200);
    }
    wait_until("four more deliveries", || delivered() == already + 4).await;
    assert_eq!(ejections.get(), 1, "the dead target's breaker opened once");
    assert_eq!(
        m.upstream_target_healthy
            .with_label_values(&["orders", &dead.to_string()])
            .get(),
        0
    );
}
