//! What an operator reads in the logs: access-log lines of proxied and TikTok calls carry the
//! caller's subject and auth method, the upstream address, latency and attempts, protocol, host,
//! a redacted user agent and the trace id; webhook deliveries get lines of their own; access and
//! application lines share one timestamp key and say which log they belong to; `RUST_LOG`
//! sets the gateway's own log level without unlocking dependencies' raw heads.

#![cfg(feature = "demo")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::binary::{Running, wait_listening};
use common::{
    ApiKey, Auth, Config, JwtIssuer, Listener, Route, TestGateway, TikTok, Upstream, Webhooks,
    free_port, http_client, loopback, raw_http, status_of,
};
use serde_json::Value;
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::sandbox::idp::{DevSigner, MintRequest};
use tiktok_gateway::sandbox::orders::OrderService;
use tiktok_gateway::sandbox::tiktok::{self as sandbox, SandboxConfig};

const KEY: &str = "logs-test-key-000001";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const UA: &str = "order-sync/2.1 (ops contact: maria.silva@example.com)";

fn lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn line_for<'a>(all: &'a [Value], field: &str, value: &str) -> &'a Value {
    all.iter()
        .find(|l| l[field] == value)
        .unwrap_or_else(|| panic!("no line with {field}={value}: {all:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_say_who_called_where_it_went_and_how() {
    let signer = DevSigner::new("https://idp.logs.test", Arc::new(SystemClock)).unwrap();
    let orders = OrderService::spawn(None).await.unwrap();
    let sb = SandboxConfig::example(4);
    let tiktok = sandbox::spawn(sb.clone()).await.unwrap();
    let shop = sb.shops[0].id.clone();
    let port = free_port();
    let gw = TestGateway::with(
        &Config::new()
            .listener(Listener::plain("plain", port))
            .jwt(JwtIssuer::file("idp", &signer))
            .api_key(ApiKey::new("order-sync", KEY, &["tiktok:shop:*"]))
            .upstream(Upstream::new("orders", orders.addr()))
            .upstream(Upstream::tiktok("tiktok_api", &tiktok.base_url()))
            .tiktok(TikTok::sandbox("main", &sb, &tiktok.base_url()))
            .route(
                Route::prefix("orders", "plain", "/orders/")
                    .auth(Auth::jwt("idp"))
                    .upstream("orders"),
            )
            .route(
                Route::prefix("tiktok", "plain", "/order/")
                    .auth(Auth::api_key())
                    .tiktok("main", None)
                    .upstream("tiktok_api"),
            ),
    );
    // A JWT whose subject is an e-mail address: the log shows a pseudonym, not the address.
    let token = signer
        .mint(&MintRequest {
            sub: Some("maria.silva@example.com".into()),
            ..MintRequest::default()
        })
        .unwrap();
    let client = http_client();
    let res = client
        .get(format!("http://127.0.0.1:{port}/orders/7"))
        .header("authorization", format!("Bearer {token}"))
        .header("user-agent", UA)
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .header("x-request-id", "proxied-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let order = tiktok.state().order_ids(&shop)[0].clone();
    let res = client
        .get(format!(
            "http://127.0.0.1:{port}/order/202309/orders?ids={order}"
        ))
        .header("x-api-key", KEY)
        .header("x-tiktok-shop-id", &shop)
        .header("x-request-id", "egress-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let log = gw.access_log_when(|l| l.contains("proxied-1") && l.contains("egress-1"));
    assert!(
        !log.contains("maria.silva"),
        "personal data in the access log:\n{log}"
    );
    let all = lines(&log);
    let proxied = line_for(&all, "request_id", "proxied-1");
    assert_eq!(proxied["log_type"], "access");
    assert!(
        proxied["timestamp"]
            .as_str()
            .is_some_and(|t| humantime::parse_rfc3339(t).is_ok()),
        "{proxied}"
    );
    assert_eq!(proxied["auth"], "jwt:idp");
    assert!(
        proxied["subject"]
            .as_str()
            .is_some_and(|s| s.contains("pii:")),
        "the e-mail subject is pseudonymised: {proxied}"
    );
    assert_eq!(proxied["upstream_addr"], orders.addr().to_string().as_str());
    assert!(proxied["upstream_latency_ms"].as_f64().is_some());
    assert_eq!(proxied["attempts"], 1);
    assert_eq!(proxied["protocol"], "HTTP/1.1");
    assert_eq!(proxied["host"], format!("127.0.0.1:{port}").as_str());
    let ua = proxied["user_agent"].as_str().unwrap();
    assert!(ua.starts_with("order-sync/2.1 (ops contact: "), "{ua}");
    assert_eq!(proxied["trace_id"], TRACE);

    let egress = line_for(&all, "request_id", "egress-1");
    assert_eq!(egress["subject"], "order-sync");
    assert_eq!(egress["auth"], "api_key:order-sync");
    assert_eq!(egress["shop"], shop.as_str());
    assert_eq!(egress["upstream_addr"], tiktok.addr().to_string().as_str());
    assert_eq!(egress["attempts"], 1);
    assert!(egress["upstream_latency_ms"].as_f64().is_some());
    assert!(egress.get("trace_id").is_none(), "no traceparent was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_get_lines_of_their_own() {
    const APP_KEY: &str = "abcdef";
    const APP_SECRET: &str = "123";
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let gw = TestGateway::with(
        &Config::new()
            .listener(Listener::plain("public", port))
            .upstream(Upstream::new("orders", orders.addr()))
            .tiktok(TikTok::new().app(TikTok::webhook_app("main", APP_KEY, APP_SECRET)))
            .webhooks(Webhooks::new("forward-secret"))
            .route(
                Route::exact("hooks", "public", "/webhooks/tiktok")
                    .methods(&["POST"])
                    .auth(Auth::tiktok_webhook("main"))
                    .upstream("orders")
                    .rewrite("/internal/events"),
            ),
    );
    let body = r#"{"type":1,"tts_notification_id":"log-1","shop_id":"1","timestamp":1,"data":{}}"#;
    let sig = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
        mac.update(APP_KEY.as_bytes());
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let req = format!(
        "POST /webhooks/tiktok HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
         Authorization: {sig}\r\nx-request-id: hook-1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(
        status_of(&raw_http(loopback(port), req.as_bytes()).await),
        200
    );
    let log = gw.access_log_when(|l| l.contains("\"log_type\":\"delivery\""));
    let all = lines(&log);
    let ingress = all
        .iter()
        .find(|l| l["log_type"] == "access" && l["request_id"] == "hook-1")
        .expect("the webhook's access line");
    assert_eq!(ingress["subject"], "tiktok-webhook:main");
    let delivery = all
        .iter()
        .find(|l| l["log_type"] == "delivery")
        .expect("a delivery line");
    assert_eq!(
        delivery["request_id"], "hook-1",
        "it points back at the webhook"
    );
    assert_eq!(delivery["route"], "hooks");
    assert_eq!(delivery["path"], "/internal/events");
    assert_eq!(
        delivery["upstream_addr"],
        orders.addr().to_string().as_str()
    );
    assert_eq!(delivery["status"], 200);
    assert_eq!(delivery["attempts"], 1);
    assert_eq!(delivery["decision"], "delivered");
    assert!(delivery["upstream_latency_ms"].as_f64().is_some());
    assert!(delivery["event_id"].is_string());
    assert!(delivery["timestamp"].is_string());
}

/// The binary with both logs on stdout; returns its output after one proxied request.
async fn run_and_read(env: &[(&str, &str)]) -> String {
    tiktok_gateway::transport::install_crypto_provider();
    let orders = OrderService::spawn(None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut config = Config::new()
        .listener(Listener::plain("plain", port))
        .upstream(Upstream::new("orders", orders.addr()))
        .route(Route::prefix("orders", "plain", "/orders/").upstream("orders"));
    config.access_log = Some("stdout".into());
    let mut gw = Running::start_with_env(dir.path(), &config, env);
    wait_listening(&mut gw, loopback(port));
    let res = http_client()
        .get(format!("http://127.0.0.1:{port}/orders/1"))
        .header("x-request-id", "binary-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for _ in 0..100 {
        if gw.output().contains("binary-1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.signal("TERM");
    gw.wait_exit(Duration::from_secs(15));
    gw.output()
}

/// The JSON lines of the output (the one plain start-up notice is not a log line).
fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_and_application_lines_share_a_sink_and_say_which_they_are() {
    let out = run_and_read(&[]).await;
    let all = json_lines(&out);
    assert!(all.len() > 3, "{out}");
    for line in &all {
        let kind = line["log_type"]
            .as_str()
            .unwrap_or_else(|| panic!("no log_type: {line}"));
        assert!(["access", "application"].contains(&kind), "{line}");
        assert!(line["timestamp"].is_string(), "one timestamp key: {line}");
        assert!(line.get("time").is_none(), "{line}");
    }
    assert!(
        all.iter()
            .any(|l| l["log_type"] == "access" && l["request_id"] == "binary-1")
    );
    assert!(all.iter().any(|l| l["log_type"] == "application"));
    // `info` by default: the gateway's debug start-up line is not there.
    assert!(!out.contains("listeners, "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_sets_the_gateways_level_but_never_unlocks_dependencies() {
    let out = run_and_read(&[("RUST_LOG", "trace")]).await;
    let all = json_lines(&out);
    let debug_own = all.iter().any(|l| {
        l["level"] == "DEBUG"
            && l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("tiktok_gateway"))
    });
    assert!(
        debug_own,
        "RUST_LOG=trace shows the gateway's debug lines:\n{out}"
    );
    for line in all.iter().filter(|l| l["log_type"] == "application") {
        let level = line["level"].as_str().unwrap_or_default();
        let target = line["target"].as_str().unwrap_or_default();
        let own = target.starts_with("tiktok_gateway")
            || ["audit", "security", "access", "panic"].contains(&target);
        assert!(
            own || !matches!(level, "DEBUG" | "TRACE"),
            "a dependency logged at {level} ({target}): {line}"
        );
    }
}

#[test]
fn an_invalid_rust_log_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new()
        .listener(Listener::plain("plain", free_port()))
        .upstream(Upstream::new("orders", loopback(free_port())))
        .route(Route::prefix("orders", "plain", "/orders/").upstream("orders"));
    let mut gw = Running::start_with_env(dir.path(), &config, &[("RUST_LOG", "info,=[[")]);
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("exits at once");
    assert_eq!(status.code(), Some(1));
    assert!(gw.output().contains("RUST_LOG"), "{}", gw.output());
}
