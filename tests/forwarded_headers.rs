//! Forwarding headers: a caller's own `X-Forwarded-*`, `Forwarded`, `X-Real-IP` and the like
//! never reach an upstream unless the caller is a trusted proxy; the gateway tells the upstream
//! what it saw itself. Requests the gateway builds (TikTok calls, webhook deliveries) carry none
//! of the caller's.

#![cfg(feature = "demo")]

mod common;

use std::time::Duration;

use common::{
    ApiKey, Auth, Config, Listener, Route, TestGateway, TikTok, Upstream, Webhooks, free_port,
    https_client, raw_http, status_of,
};
use tiktok_gateway::sandbox::orders::OrderService;
use tiktok_gateway::sandbox::tiktok::{self as sandbox, SandboxConfig};

/// Every header a client could use to pose as an earlier hop, with a value that must never
/// reach an upstream from an untrusted peer.
const SPOOFED: [(&str, &str); 10] = [
    ("X-Forwarded-For", "10.66.0.1"),
    ("X-Forwarded-Proto", "spoofed-proto"),
    ("X-Forwarded-Host", "spoofed.internal"),
    ("X-Forwarded-Port", "6666"),
    ("X-Forwarded-Prefix", "/spoofed"),
    ("X-Real-IP", "10.66.0.2"),
    ("Forwarded", "for=10.66.0.3;proto=https"),
    ("True-Client-IP", "10.66.0.4"),
    ("X-Client-IP", "10.66.0.5"),
    ("CF-Connecting-IP", "10.66.0.6"),
];

fn spoofed_lines() -> String {
    SPOOFED
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect()
}

/// No value of [`SPOOFED`] in any header the upstream received.
fn assert_no_spoofed_value(headers: &[(String, String)]) {
    for (name, value) in headers {
        for (_, spoofed) in SPOOFED {
            assert!(
                !value.contains(spoofed),
                "a client-sent forwarding value reached the upstream: {name}: {value}"
            );
        }
    }
}

fn pairs(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect()
}

fn proxied(port: u16, orders: &OrderService) -> Config {
    Config::new()
        .listener(Listener::plain("plain", port))
        .upstream(Upstream::new("orders", orders.addr()))
        .route(Route::prefix("orders", "plain", "/orders/").upstream("orders"))
}

async fn get_with_spoofed(port: u16) -> String {
    let req = format!(
        "GET /orders/1 HTTP/1.1\r\nHost: gw.test:{port}\r\n{}Connection: close\r\n\r\n",
        spoofed_lines()
    );
    raw_http(format!("127.0.0.1:{port}").parse().unwrap(), req.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_callers_forwarding_headers_are_replaced_by_what_the_gateway_saw() {
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    // The loopback peer is not among the trusted proxies.
    let _gw = TestGateway::with(&proxied(port, &orders).trusted_proxies(&["10.0.0.0/8"]));
    assert_eq!(status_of(&get_with_spoofed(port).await), 200);

    let got = orders.received();
    assert_eq!(got.len(), 1);
    let h = &got[0].headers;
    assert_no_spoofed_value(&pairs(h));
    for gone in [
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-real-ip",
        "forwarded",
        "true-client-ip",
        "x-client-ip",
        "cf-connecting-ip",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream");
    }
    assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], format!("gw.test:{port}").as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_says_https_over_http2_too() {
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let gw = TestGateway::with(
        &Config::new()
            .listener(Listener::tls("public", port))
            .upstream(Upstream::new("orders", orders.addr()))
            .route(Route::prefix("orders", "public", "/orders/").upstream("orders")),
    );
    let ca = std::fs::read(&gw.certs.ca_cert).unwrap();
    let http1 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .http1_only()
        .build()
        .unwrap();
    for http2 in [false, true] {
        // The shared client offers h2 by ALPN, which the listener accepts.
        let client = if http2 {
            https_client(&gw.certs)
        } else {
            http1.clone()
        };
        let mut req = client.get(format!("https://localhost:{port}/orders/1"));
        for (n, v) in SPOOFED {
            req = req.header(n, v);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.version(),
            if http2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            }
        );
    }
    let got = orders.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_no_spoofed_value(&pairs(&r.headers));
        assert_eq!(r.headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(r.headers["x-forwarded-proto"], "https");
        assert_eq!(
            r.headers["x-forwarded-host"],
            format!("localhost:{port}").as_str()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_chain_is_kept_and_extended() {
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let _gw = TestGateway::with(&proxied(port, &orders).trusted_proxies(&["127.0.0.1"]));
    let req = "GET /orders/1 HTTP/1.1\r\nHost: gw.test\r\n\
        X-Forwarded-For: 198.51.100.4, 10.1.1.1\r\nX-Forwarded-For: 10.2.2.2\r\n\
        X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\n\
        X-Real-IP: 198.51.100.4\r\nConnection: close\r\n\r\n";
    let answer = raw_http(format!("127.0.0.1:{port}").parse().unwrap(), req.as_bytes()).await;
    assert_eq!(status_of(&answer), 200);
    let got = orders.received();
    let h = &got[0].headers;
    assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(
        h["x-forwarded-for"],
        "198.51.100.4, 10.1.1.1, 10.2.2.2, 127.0.0.1"
    );
    // The proxy saw the client's scheme and host; the gateway's plaintext hop does not win.
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "shop.example");
    assert_eq!(h["x-real-ip"], "198.51.100.4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_style_writes_an_rfc7239_element() {
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let _gw = TestGateway::with(&proxied(port, &orders).forwarded_headers("forwarded"));
    assert_eq!(status_of(&get_with_spoofed(port).await), 200);
    let got = orders.received();
    let h = &got[0].headers;
    assert_no_spoofed_value(&pairs(h));
    assert_eq!(h.get_all("forwarded").iter().count(), 1);
    assert_eq!(
        h["forwarded"],
        format!("for=127.0.0.1;proto=http;host=\"gw.test:{port}\"").as_str()
    );
    assert!(h.get("x-forwarded-for").is_none());
    assert!(h.get("x-forwarded-proto").is_none());

    // A trusted proxy's element stays in front of the gateway's.
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let _gw = TestGateway::with(
        &proxied(port, &orders)
            .forwarded_headers("forwarded")
            .trusted_proxies(&["127.0.0.0/8"]),
    );
    let req = "GET /orders/1 HTTP/1.1\r\nHost: gw\r\nForwarded: for=198.51.100.4;proto=https\r\nConnection: close\r\n\r\n";
    let answer = raw_http(format!("127.0.0.1:{port}").parse().unwrap(), req.as_bytes()).await;
    assert_eq!(status_of(&answer), 200);
    assert_eq!(
        orders.received()[0].headers["forwarded"],
        "for=198.51.100.4;proto=https, for=127.0.0.1;proto=http;host=gw"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_calls_carry_none_of_the_callers_forwarding_headers() {
    const KEY: &str = "forwarded-test-key-0001";
    const SHOP: &str = "7494049642642441621";
    let sb = SandboxConfig::example(5);
    let server = sandbox::spawn(sb.clone()).await.unwrap();
    let port = free_port();
    let _gw = TestGateway::with(
        &Config::new()
            .listener(Listener::plain("egress", port))
            .api_key(ApiKey::new("caller", KEY, &["tiktok:shop:*"]))
            .upstream(Upstream::tiktok("tiktok_api", &server.base_url()))
            .tiktok(TikTok::sandbox("main", &sb, &server.base_url()))
            .route(
                Route::prefix("tiktok", "egress", "/order/")
                    .auth(Auth::api_key())
                    .tiktok("main", None)
                    .upstream("tiktok_api"),
            ),
    );
    let req = format!(
        "GET /order/202309/orders?ids=1 HTTP/1.1\r\nHost: gw\r\nx-api-key: {KEY}\r\n\
         x-tiktok-shop-id: {SHOP}\r\n{}Connection: close\r\n\r\n",
        spoofed_lines()
    );
    let answer = raw_http(format!("127.0.0.1:{port}").parse().unwrap(), req.as_bytes()).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let records = server.state().records();
    assert_eq!(records.len(), 1);
    assert_no_spoofed_value(&records[0].headers);
    assert!(
        records[0]
            .headers
            .iter()
            .all(|(n, _)| !tiktok_gateway::inspect::forwarded::is_hop_header(n)),
        "TikTok (a third party) is told nothing about the internal caller: {:?}",
        records[0].headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_carry_none_of_the_senders_forwarding_headers() {
    const APP_KEY: &str = "abcdef";
    const APP_SECRET: &str = "123";
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let _gw = TestGateway::with(
        &Config::new()
            .listener(Listener::plain("public", port))
            .upstream(Upstream::new("orders", orders.addr()))
            .tiktok(TikTok::new().app(TikTok::webhook_app("main", APP_KEY, APP_SECRET)))
            .webhooks(Webhooks::new("forward-secret"))
            .route(
                Route::exact("hooks", "public", "/webhooks/tiktok")
                    .methods(&["POST"])
                    .auth(Auth::tiktok_webhook("main"))
                    .upstream("orders"),
            ),
    );
    let body = r#"{"type":1,"tts_notification_id":"fwd-1","shop_id":"1","timestamp":1,"data":{}}"#;
    let sig = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
        mac.update(APP_KEY.as_bytes());
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let req = format!(
        "POST /webhooks/tiktok HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
         Authorization: {sig}\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        spoofed_lines(),
        body.len()
    );
    let answer = raw_http(format!("127.0.0.1:{port}").parse().unwrap(), req.as_bytes()).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    for _ in 0..100 {
        if orders.received_count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = orders.received();
    assert_eq!(got.len(), 1, "the webhook was delivered");
    assert_no_spoofed_value(&pairs(&got[0].headers));
    assert!(got[0].headers.get("x-forwarded-for").is_none());
    assert!(got[0].headers.get("forwarded").is_none());
}
