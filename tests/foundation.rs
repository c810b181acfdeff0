//! The foundation end to end: TLS listener, routing, body ceiling, path refusals, upstream
//! failures, request ids, access log hygiene, reload.

// The sandboxes these tests run against exist only with the `demo` feature (a default one).
#![cfg(feature = "demo")]

mod common;

use std::time::Duration;

use common::{
    Config, Listener, Route, TestGateway, Upstream, free_port, https_client, raw_http, status_of,
};
use tiktok_gateway::sandbox::orders::{Behaviour, OrderService};

struct Ports {
    public: u16,
    plain: u16,
    metrics: u16,
}

fn config(p: &Ports, orders: std::net::SocketAddr, dead: u16) -> Config {
    Config::new()
        .version("t1")
        .listener(Listener::tls("public", p.public))
        .listener(Listener::plain("plain", p.plain))
        .listener(Listener::plain("metrics", p.metrics))
        .upstream(Upstream::new("orders", orders).timeouts("500ms", "1s"))
        .upstream(Upstream::dead("dead", dead).timeouts("500ms", "1s"))
        .route(
            Route::prefix("orders", "public", "/orders/")
                .methods(&["GET", "POST"])
                .max_body("1KiB")
                .upstream("orders"),
        )
        .route(
            Route::exact("events", "public", "/events")
                .methods(&["POST"])
                .upstream("orders")
                .rewrite("/internal/events"),
        )
        .route(Route::prefix("dead", "public", "/dead/").upstream("dead"))
        .route(
            Route::prefix("plain-orders", "plain", "/orders/")
                .max_body("1KiB")
                .upstream("orders"),
        )
}

async fn setup() -> (TestGateway, OrderService, Ports) {
    let (gw, orders, p, _) = setup_with_config().await;
    (gw, orders, p)
}

/// As [`setup`], also returning the config the gateway runs.
async fn setup_with_config() -> (TestGateway, OrderService, Ports, Config) {
    let orders = OrderService::spawn(None).await.unwrap();
    let ports = Ports {
        public: free_port(),
        plain: free_port(),
        metrics: free_port(),
    };
    let dead = free_port();
    let addr = orders.addr();
    let p = Ports { ..ports };
    let config = config(&p, addr, dead);
    let gw = TestGateway::with(&config);
    (gw, orders, p, config)
}

/// The `error.code` of a raw HTTP/1.1 answer carrying the gateway's JSON error, if it is one.
fn error_code(raw: &str) -> Option<String> {
    let (_, body) = raw.split_once("\r\n\r\n")?;
    let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    v["error"]["code"].as_str().map(str::to_owned)
}

fn url(p: &Ports, path: &str) -> String {
    format!("https://localhost:{}{path}", p.public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_method_path_query_headers_body_and_back() {
    let (gw, orders, p) = setup().await;
    let client = https_client(&gw.certs);
    let res = client
        .post(url(&p, "/orders/42?ids=a,b&page_token=x%2By"))
        .header("x-custom", "kept")
        .header("content-type", "application/json")
        .header("x-request-id", "trace-123")
        .header("x-gateway-subject", "spoofed-admin")
        .header("authorization", "Bearer SECRET-TOKEN-VALUE")
        .body(r#"{"order":"42"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "trace-123");
    assert_eq!(res.headers()["x-order-service"], "sandbox");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["path"], "/orders/42");

    let got = orders.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/orders/42?ids=a,b&page_token=x%2By");
    assert_eq!(r.headers["x-custom"], "kept");
    assert_eq!(r.headers["x-request-id"], "trace-123");
    assert_ne!(
        r.headers.get("x-gateway-subject").unwrap(),
        "spoofed-admin",
        "a caller's identity header is replaced by the gateway's"
    );
    assert_eq!(r.headers.get_all("x-gateway-subject").iter().count(), 1);
    assert!(
        r.headers.get("authorization").is_none(),
        "caller credentials are not forwarded by default"
    );
    assert_eq!(&r.body[..], br#"{"order":"42"}"#);

    // The access log has the request but never the token, nor query values.
    let log = wait_for_log(&gw, "trace-123").await;
    assert!(!log.contains("SECRET-TOKEN-VALUE"));
    assert!(!log.contains("x%2By") && !log.contains("a,b"));
    let line: serde_json::Value =
        serde_json::from_str(log.lines().find(|l| l.contains("trace-123")).unwrap()).unwrap();
    assert_eq!(line["route"], "orders");
    assert_eq!(line["status"], 200);
    assert_eq!(line["decision"], "forwarded");
    assert_eq!(line["query_keys"], serde_json::json!(["ids", "page_token"]));
}

async fn wait_for_log(gw: &TestGateway, needle: &str) -> String {
    for _ in 0..50 {
        let log = gw.access_log();
        if log.contains(needle) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("access log never mentioned {needle}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_offered_and_works() {
    let (gw, orders, p) = setup().await;
    let client = https_client(&gw.certs);
    let res = client.get(url(&p, "/orders/7")).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let res = client
        .post(url(&p, "/orders/7"))
        .header("content-type", "application/json")
        .body(r#"{"h2":"body"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = orders.received();
    assert_eq!(got.len(), 2);
    assert_eq!(&got[1].body[..], br#"{"h2":"body"}"#);
}

/// The HTTP/2 frame buffers are released while a connection is idle and allocated again when it
/// is used (patches/h2): bodies larger than both buffers, on one connection, with idle gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_bodies_arrive_whole_across_idle_gaps() {
    let (gw, orders, p) = setup().await;
    let client = https_client(&gw.certs);
    for round in 0..3u8 {
        // 40 KiB: five times the read buffer, in several DATA frames.
        let pad = char::from(b'a' + round).to_string().repeat(40 * 1024);
        let body = format!(r#"{{"round":{round},"pad":"{pad}"}}"#);
        let res = client
            .post(url(&p, "/events"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.version(), reqwest::Version::HTTP_2);
        assert_eq!(res.status(), 200);
        assert!(!res.bytes().await.unwrap().is_empty());
        let got = orders.received();
        assert_eq!(got.len(), usize::from(round) + 1);
        assert_eq!(got[usize::from(round)].body, body.as_bytes());
        // Idle: both buffers are released before the next round.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_keeps_query() {
    let (gw, orders, p) = setup().await;
    let res = https_client(&gw.certs)
        .post(url(&p, "/events?x=1"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(orders.received()[0].uri, "/internal/events?x=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_404_and_wrong_method_is_405_with_allow() {
    let (gw, orders, p) = setup().await;
    let client = https_client(&gw.certs);
    let res = client.get(url(&p, "/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers().contains_key("x-request-id"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_route");
    assert!(
        body["error"]["request_id"]
            .as_str()
            .is_some_and(|s| s.len() == 32)
    );

    let res = client.delete(url(&p, "/orders/1")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, POST");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_eq!(orders.received_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_and_never_reach_the_upstream() {
    let (gw, orders, p) = setup().await;
    let client = https_client(&gw.certs);
    // Declared length over the ceiling.
    let res = client
        .post(url(&p, "/orders/1"))
        .header("content-type", "application/json")
        .body(vec![b'a'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large");
    // Chunked (no declared length) over the ceiling, over plain HTTP/1.1 so framing is exact.
    let addr = format!("127.0.0.1:{}", p.plain).parse().unwrap();
    let chunk = "a".repeat(600);
    let req = format!(
        "POST /orders/1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let raw = raw_http(addr, req.as_bytes()).await;
    assert_eq!(status_of(&raw), 413, "{raw}");
    assert_eq!(error_code(&raw).as_deref(), Some("body_too_large"), "{raw}");
    assert_eq!(
        orders.received_count(),
        0,
        "the upstream must see nothing of an oversized body"
    );

    // A chunked body under the ceiling is forwarded whole.
    let small = format!("\"{}\"", "b".repeat(98));
    let req = format!(
        "POST /orders/1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n{small}\r\n0\r\n\r\n"
    );
    let raw = raw_http(addr, req.as_bytes()).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert_eq!(orders.received()[0].body.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_paths_are_refused_before_routing() {
    let (_gw, orders, p) = setup().await;
    let addr = format!("127.0.0.1:{}", p.plain).parse().unwrap();
    for path in [
        "/orders/../admin",
        "/orders/%2e%2e/admin",
        "/orders/a%2fb",
        "/orders/..;/admin",
        "/orders//x",
        "/orders/a\\b",
        "/orders/a%00",
        "/orders/./x",
        "/orders/%c0%ae%c0%ae/x",
    ] {
        let raw = raw_http(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
        )
        .await;
        let status = status_of(&raw);
        assert_eq!(status, 400, "{path}: {raw}");
    }
    assert_eq!(orders.received_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_is_502_and_slow_upstream_is_504_quickly() {
    let (gw, orders, p) = setup().await;
    let client = https_client(&gw.certs);
    let started = std::time::Instant::now();
    let res = client.get(url(&p, "/dead/x")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    assert!(started.elapsed() < Duration::from_secs(5));

    orders.set_behaviour(Behaviour::Stall(Duration::from_secs(4)));
    let res = client.get(url(&p, "/orders/slow")).send().await.unwrap();
    assert_eq!(res.status(), 504);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health() {
    let (gw, _orders, p) = setup().await;
    let _ = https_client(&gw.certs)
        .get(url(&p, "/orders/1"))
        .send()
        .await
        .unwrap();
    let m = common::metrics_text(p.metrics).await;
    assert!(
        m.contains("tiktok_gateway_requests_total{route=\"orders\",status=\"200\"}"),
        "{m}"
    );
    assert!(m.contains("tiktok_gateway_request_duration_seconds_bucket"));
    let h = reqwest::get(format!("http://127.0.0.1:{}/healthz", p.metrics))
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let r: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{}/readyz", p.metrics))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["config_version"], "t1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_routing_on_a_live_keepalive_connection_and_bad_reload_keeps_old() {
    let (gw, orders, p, config) = setup_with_config().await;
    // One client = one pooled keep-alive connection across the reload.
    let client = https_client(&gw.certs);
    assert_eq!(
        client
            .get(url(&p, "/orders/1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(url(&p, "/v2/orders/1"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let mut v2 = config.clone().version("t2");
    v2.routes
        .insert(0, Route::prefix("v2", "public", "/v2/").upstream("orders"));
    std::fs::write(&gw.config_path, v2.render(gw.dir.path())).unwrap();
    gw.gateway.reload_from(&gw.config_path).unwrap();
    assert_eq!(gw.gateway.snapshot().config.version, "t2");
    assert_eq!(
        client
            .get(url(&p, "/v2/orders/1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A broken file is refused; the running routes stay.
    let mut broken = v2.clone();
    broken.routes[0].upstream = "missing".into();
    std::fs::write(&gw.config_path, broken.render(gw.dir.path())).unwrap();
    let err = gw.gateway.reload_from(&gw.config_path).unwrap_err();
    assert!(
        err.to_string().contains("unknown upstream `missing`"),
        "{err}"
    );
    assert_eq!(
        client
            .get(url(&p, "/v2/orders/1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(gw.gateway.snapshot().config.version, "t2");

    // The file watcher also picks up a change on its own.
    std::fs::write(
        &gw.config_path,
        config.clone().version("t3").render(gw.dir.path()),
    )
    .unwrap();
    for _ in 0..50 {
        if gw.gateway.snapshot().config.version == "t3" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gw.gateway.snapshot().config.version, "t3");
    assert_eq!(
        client
            .get(url(&p, "/v2/orders/1"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert!(orders.received_count() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstreams_are_verified_against_their_own_ca() {
    // An upstream whose certificate comes from a private CA.
    let pki = tempfile::tempdir().unwrap();
    let certs = tiktok_gateway::server::dev_certs::generate(pki.path()).unwrap();
    let upstream = common::TlsRecorder::start(&certs.server_cert, &certs.server_key).await;
    let port = free_port();
    let _gw = TestGateway::with(
        &Config::new()
            .listener(Listener::plain("plain", port))
            .upstream(
                Upstream::new("trusted", upstream.addr).tls("localhost", Some(&certs.ca_cert)),
            )
            .upstream(Upstream::new("untrusted", upstream.addr).tls("localhost", None))
            .route(Route::prefix("trusted", "plain", "/trusted/").upstream("trusted"))
            .route(Route::prefix("untrusted", "plain", "/untrusted/").upstream("untrusted")),
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
    };

    // The system roots do not know the private CA: the upstream is refused, not trusted blindly.
    let raw = raw_http(addr, &get("/untrusted/1")).await;
    assert_eq!(status_of(&raw), 502, "{raw}");
    let raw = raw_http(addr, &get("/trusted/1")).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    // A pooled connection made under one upstream's trust is not lent to another's.
    let raw = raw_http(addr, &get("/untrusted/2")).await;
    assert_eq!(status_of(&raw), 502, "{raw}");
    let seen: Vec<String> = upstream.received().into_iter().map(|r| r.head).collect();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("GET /trusted/1 HTTP/1.1"), "{seen:?}");
}
