//! Request inspection end to end, with raw bytes over loopback: every refusal is answered with
//! the right status and the upstream (the order-service sandbox) receives nothing. The one
//! exception is a body streamed to the upstream (`/upload/`): its head and first bytes are
//! forwarded before a slow body is found out, so there the upstream never receives a whole
//! request.
//!
//! Some malformed heads never reach the gateway's code because Pingora's HTTP/1 parser refuses
//! them first; those cases say so and only assert Pingora's answer (a bare 400, or a closed
//! connection) plus the silent upstream. Everything the gateway refuses itself carries its JSON
//! error body, which also proves the answer did not come from the upstream.

// The sandboxes these tests run against exist only with the `demo` feature (a default one).
#![cfg(feature = "demo")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{
    Config, Connections, Limits, Listener, Route, TestGateway, Upstream, free_port, raw_http,
    read_until_closed, status_of,
};
use tiktok_gateway::sandbox::orders::OrderService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Ports {
    /// Plaintext, default connection settings, any host.
    plain: u16,
    /// Plaintext, serves only `api.example.test`.
    hosted: u16,
    /// Plaintext, at most two concurrent connections per client IP.
    capped: u16,
    /// Plaintext, 1 s head deadline, 1 s body read timeout, bodies at least 1 KiB/s after 1 s.
    slow: u16,
    /// TLS (HTTP/2 offered), 1 s head deadline.
    tls: u16,
    /// The metrics listener: at most two connections, 1 s head deadline.
    metrics: u16,
}

impl Ports {
    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

fn config(p: &Ports, orders: SocketAddr) -> Config {
    let limits = Limits {
        max_body: Some("4KiB"),
        json_max_depth: Some(8),
        max_headers: Some(20),
        max_header_bytes: Some("2KiB"),
        max_uri: Some("512"),
        max_query_params: Some(5),
        ..Limits::default()
    };
    let routes = ["plain", "hosted", "capped", "slow", "tls"].map(|listener| {
        Route::prefix(&format!("orders-{listener}"), listener, "/orders/")
            .limits(limits.clone())
            .upstream("orders")
    });
    Config::new()
        .version("inspect")
        .listener(Listener::plain("plain", p.plain))
        .listener(Listener::plain("hosted", p.hosted).hosts(&["api.example.test"]))
        .listener(
            Listener::plain("capped", p.capped).connections(Connections {
                max_per_ip: Some(2),
                ..Connections::default()
            }),
        )
        .listener(Listener::plain("slow", p.slow).connections(Connections {
            header_timeout: Some("1s"),
            body_timeout: Some("1s"),
            min_body_rate: Some("1KiB/s"),
            min_body_rate_after: Some("1s"),
            ..Connections::default()
        }))
        .listener(Listener::tls("tls", p.tls).connections(Connections {
            header_timeout: Some("1s"),
            ..Connections::default()
        }))
        .listener(
            Listener::plain("metrics", p.metrics).connections(Connections {
                header_timeout: Some("1s"),
                max: Some(2),
                ..Connections::default()
            }),
        )
        .upstream(Upstream::new("orders", orders).timeouts("500ms", "2s"))
        .routes(routes)
        // A route whose bodies stream to the upstream instead of being read whole first.
        .route(
            Route::prefix("upload-slow", "slow", "/upload/")
                .content_types(&["application/octet-stream"])
                .upstream("orders"),
        )
}

async fn setup() -> (TestGateway, OrderService, Ports) {
    let orders = OrderService::spawn(None).await.expect("order service");
    let p = Ports {
        plain: free_port(),
        hosted: free_port(),
        capped: free_port(),
        slow: free_port(),
        tls: free_port(),
        metrics: free_port(),
    };
    let addr = orders.addr();
    let gw = TestGateway::with(&config(&p, addr));
    (gw, orders, p)
}

/// Who refused a request.
#[derive(Debug, Clone, Copy)]
enum By {
    /// The gateway, with this status and JSON error code.
    Gateway(u16, &'static str),
    /// Pingora's parser, before any gateway code: a bare 400 or a closed connection.
    Pingora,
}

/// The `error.code` of a gateway JSON error answer, if the answer is one.
fn error_code(raw: &str) -> Option<String> {
    let (_, body) = raw.split_once("\r\n\r\n")?;
    let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    v["error"]["code"].as_str().map(str::to_owned)
}

/// Send `request` raw and check it was refused as `by` says, with nothing forwarded.
async fn assert_refused(
    addr: SocketAddr,
    orders: &OrderService,
    name: &str,
    request: &[u8],
    by: By,
) {
    let raw = raw_http(addr, request).await;
    let status = status_of(&raw);
    match by {
        By::Gateway(want, code) => {
            assert_eq!(status, want, "{name}: {raw}");
            assert_eq!(error_code(&raw).as_deref(), Some(code), "{name}: {raw}");
        }
        By::Pingora => {
            assert!(
                status == 400 || raw.is_empty(),
                "{name}: expected Pingora's 400 or a close: {raw}"
            );
            assert_eq!(error_code(&raw), None, "{name}: gateway answered: {raw}");
        }
    }
    assert_eq!(orders.received_count(), 0, "{name}: reached the upstream");
}

/// A POST to the JSON route with these extra header lines (framing included) and this body.
fn post_with(lines: &[&str], body: &str) -> Vec<u8> {
    let mut s = String::from(
        "POST /orders/1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n",
    );
    for l in lines {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.push_str(body);
    s.into_bytes()
}

/// The smuggled follow-up request hidden in the bodies below: if any framing disagreement let
/// it through, the upstream would record a request for `/orders/smuggled`.
const SMUGGLED: &str = "GET /orders/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_and_transfer_encoding_conflicts_are_refused() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.plain);
    let chunked_then_smuggled = format!("0\r\n\r\n{SMUGGLED}");
    let cases: Vec<(&str, Vec<u8>, By)> = vec![
        (
            "CL+TE",
            post_with(
                &["Content-Length: 6", "Transfer-Encoding: chunked"],
                &chunked_then_smuggled,
            ),
            // Pingora drops Content-Length when Transfer-Encoding is present; only the raw-head
            // scan sees both.
            By::Gateway(400, "bad_framing"),
        ),
        (
            "TE+CL",
            post_with(
                &["Transfer-Encoding: chunked", "Content-Length: 6"],
                &chunked_then_smuggled,
            ),
            By::Gateway(400, "bad_framing"),
        ),
        (
            "CL+CL different",
            post_with(&["Content-Length: 7", "Content-Length: 5"], "{\"a\":1}"),
            // Differing duplicates are refused by Pingora's parser.
            By::Pingora,
        ),
        (
            "CL+CL identical",
            post_with(&["Content-Length: 7", "Content-Length: 7"], "{\"a\":1}"),
            // Pingora collapses identical duplicates; the raw-head scan refuses them.
            By::Gateway(400, "bad_framing"),
        ),
        (
            "CL list 1, 1",
            post_with(&["Content-Length: 1, 1"], "1"),
            By::Gateway(400, "bad_framing"),
        ),
    ];
    for (name, req, by) in cases {
        assert_refused(addr, &orders, name, &req, by).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_obfuscations_are_refused() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.plain);
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let gateway = By::Gateway(400, "bad_framing");
    for (te, by) in [
        // Pingora refuses a final coding other than `chunked`, and header names with a space
        // before the colon, before the gateway runs.
        ("Transfer-Encoding: xchunked", By::Pingora),
        ("Transfer-Encoding: chunked, identity", By::Pingora),
        ("Transfer-Encoding: identity", By::Pingora),
        ("Transfer-Encoding : chunked", By::Pingora),
        // Pingora would read these as chunked; the raw-head scan accepts only `chunked` exactly.
        ("Transfer-Encoding: Chunked", gateway),
        ("Transfer-Encoding: CHUNKED", gateway),
        ("Transfer-Encoding:  chunked", gateway),
        ("Transfer-Encoding: chunked ", gateway),
        ("Transfer-Encoding:\tchunked", gateway),
        ("Transfer-Encoding: gzip, chunked", gateway),
    ] {
        assert_refused(addr, &orders, te, &post_with(&[te], &body), by).await;
    }
    let twice = post_with(
        &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
        &body,
    );
    assert_refused(addr, &orders, "TE twice", &twice, gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folding_control_characters_and_bare_lf_are_refused() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.plain);
    // Obsolete folding and control characters in values are refused by Pingora's parser
    // (httparse) before the gateway runs; the gateway's raw-head scan repeats the checks.
    let head = |extra: &[u8]| {
        let mut r = b"GET /orders/1 HTTP/1.1\r\nHost: localhost\r\n".to_vec();
        r.extend_from_slice(extra);
        r.extend_from_slice(b"\r\n");
        r
    };
    let cases: Vec<(&str, Vec<u8>, By)> = vec![
        ("obs-fold", head(b"X-A: a\r\n b\r\n"), By::Pingora),
        (
            "obs-fold hiding TE",
            b"POST /orders/1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-A: a\r\n\tTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n1".to_vec(),
            By::Pingora,
        ),
        ("NUL in value", head(b"X-A: a\0b\r\n"), By::Pingora),
        ("SOH in value", head(b"X-A: a\x01b\r\n"), By::Pingora),
        ("ESC in value", head(b"X-A: a\x1bb\r\n"), By::Pingora),
        ("DEL in value", head(b"X-A: a\x7fb\r\n"), By::Pingora),
        ("CR in value", head(b"X-A: a\rb\r\n"), By::Pingora),
        // httparse accepts bare LF line endings; the raw-head scan does not.
        (
            "bare LF everywhere",
            b"GET /orders/1 HTTP/1.1\nHost: localhost\n\n".to_vec(),
            By::Gateway(400, "bad_framing"),
        ),
        (
            "bare LF in one line",
            head(b"X-A: b\nX-B: c\r\n"),
            By::Gateway(400, "bad_framing"),
        ),
    ];
    for (name, req, by) in cases {
        assert_refused(addr, &orders, name, &req, by).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_paths_are_refused() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.plain);
    for path in [
        "/orders/../admin",
        "/orders/a/../../admin",
        "/orders/%2e%2e/admin",
        "/orders/%2E%2E/admin",
        "/orders/.%2e/admin",
        "/orders/a%2fb",
        "/orders/..%2fadmin",
        "/orders/..;/admin",
        "/orders/x;jsessionid=1",
        "/orders//x",
        "//orders/x",
        "/orders/a\\b",
        "/orders/a%5cb",
        "/orders/a%00",
        "/orders/admin.",
        "/orders/..",
        "/orders/./x",
        "/orders/%c0%ae%c0%ae/x",
        "/orders/%c0%af",
        "/orders/%252e%252e/admin",
        "/orders/%252f",
        "/orders/%61dmin",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_refused(
            addr,
            &orders,
            path,
            req.as_bytes(),
            By::Gateway(400, "bad_path"),
        )
        .await;
    }
    // The same route answers a clean path, so the refusals above are the path rules at work.
    let raw = raw_http(
        addr,
        b"GET /orders/admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert_eq!(orders.received()[0].uri, "/orders/admin");
}

/// `n` header lines `X-Filler-i: v`.
fn filler_headers(n: usize) -> String {
    (0..n).map(|i| format!("X-Filler-{i}: v\r\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_limits_methods_and_content_types_are_enforced() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.plain);
    let get = |target: &str, extra: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").into_bytes()
    };
    let long_path = format!("/orders/{}", "a".repeat(600));
    let cases: Vec<(&str, Vec<u8>, By)> = vec![
        (
            "too many headers",
            get("/orders/1", &filler_headers(25)),
            By::Gateway(431, "too_many_headers"),
        ),
        (
            "header section too large",
            get("/orders/1", &format!("X-Big: {}\r\n", "b".repeat(3000))),
            By::Gateway(431, "headers_too_large"),
        ),
        (
            "uri too long",
            get(&long_path, ""),
            By::Gateway(414, "uri_too_long"),
        ),
        (
            "too many query params",
            get("/orders/1?a=1&b=2&c=3&d=4&e=5&f=6", ""),
            By::Gateway(400, "too_many_query_params"),
        ),
        (
            "TRACE",
            b"TRACE /orders/1 HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            By::Gateway(405, "method_not_allowed"),
        ),
        (
            "text/plain body",
            b"POST /orders/1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\n{\"a\":1}".to_vec(),
            By::Gateway(415, "unsupported_media_type"),
        ),
        (
            "body without content type",
            b"POST /orders/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
                .to_vec(),
            By::Gateway(415, "unsupported_media_type"),
        ),
        (
            "malformed JSON",
            post_with(&["Content-Length: 5"], "{\"a\":"),
            By::Gateway(400, "bad_json"),
        ),
        (
            "trailing garbage after JSON",
            post_with(&["Content-Length: 9"], "{\"a\":1}xx"),
            By::Gateway(400, "bad_json"),
        ),
        (
            "JSON nested deeper than 8",
            post_with(&["Content-Length: 18"], "[[[[[[[[[]]]]]]]]]"),
            By::Gateway(400, "bad_json"),
        ),
        (
            "malformed chunked JSON",
            post_with(&["Transfer-Encoding: chunked"], "3\r\n[1,\r\n0\r\n\r\n"),
            By::Gateway(400, "bad_json"),
        ),
    ];
    for (name, req, by) in cases {
        assert_refused(addr, &orders, name, &req, by).await;
    }

    // CONNECT never becomes a tunnel. Pingora's proxy refuses it with 405 before the gateway's
    // stages run (`allow_connect_method_proxying` is off).
    let raw = raw_http(
        addr,
        b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 405, "{raw}");
    assert_eq!(orders.received_count(), 0);

    // Just inside every limit passes: 8 levels of JSON, 5 query params.
    let ok = format!(
        "POST /orders/1?a=1&b=2&c=3&d=4&e=5 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 16\r\nConnection: close\r\n{}\r\n[[[[[[[[]]]]]]]]",
        filler_headers(10)
    );
    let raw = raw_http(addr, ok.as_bytes()).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert_eq!(&orders.received()[0].body[..], b"[[[[[[[[]]]]]]]]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_not_served_by_the_listener_is_refused() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.hosted);
    for (name, host, by) in [
        ("other host", "evil.example", By::Gateway(421, "bad_host")),
        (
            "suffix trick",
            "api.example.test.evil.example",
            By::Gateway(421, "bad_host"),
        ),
        (
            "user-info",
            "api.example.test@evil.example",
            // Pingora refuses user-info in `Host` before the gateway runs.
            By::Pingora,
        ),
    ] {
        let req = format!("GET /orders/1 HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_refused(addr, &orders, name, req.as_bytes(), by).await;
    }
    // Pingora refuses an absolute-form target whose authority differs from `Host` ("Host
    // header differs from request-target authority") with a bare 400 before the gateway runs;
    // the gateway's own host check never sees that authority (Pingora keeps it off the URI).
    let absolute = b"GET http://evil.example/orders/1 HTTP/1.1\r\nHost: api.example.test\r\n\r\n";
    let raw = raw_http(addr, absolute).await;
    assert_eq!(status_of(&raw), 400, "absolute-form to another host: {raw}");
    assert_eq!(
        error_code(&raw),
        None,
        "absolute-form to another host: Pingora answers, not the gateway: {raw}"
    );
    assert_eq!(orders.received_count(), 0);
    let missing = b"GET /orders/1 HTTP/1.1\r\nX-A: b\r\n\r\n";
    assert_refused(
        addr,
        &orders,
        "no host",
        missing,
        By::Gateway(400, "bad_host"),
    )
    .await;
    // Pingora refuses a second `Host` before the gateway runs.
    let twice = b"GET /orders/1 HTTP/1.1\r\nHost: api.example.test\r\nHost: evil.example\r\n\r\n";
    assert_refused(addr, &orders, "two hosts", twice, By::Pingora).await;

    // The served name passes.
    let raw = raw_http(
        addr,
        b"GET /orders/1 HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert_eq!(orders.received_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_and_connection_nominees_are_not_forwarded() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.plain);
    let req = "POST /orders/1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
        Connection: keep-alive, X-Secret-Hop, x-other-hop\r\n\
        X-Secret-Hop: internal\r\nX-Other-Hop: internal\r\n\
        Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
        Trailer: X-Checksum\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\
        X-Kept: yes\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\n\r\n";
    let raw = raw_http(addr, req.as_bytes()).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    let got = orders.received();
    assert_eq!(got.len(), 1);
    let h = &got[0].headers;
    for name in [
        "x-secret-hop",
        "x-other-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "proxy-authorization",
        "transfer-encoding",
    ] {
        assert!(h.get(name).is_none(), "{name} was forwarded: {h:?}");
    }
    // `Connection` may be re-added by the gateway's own upstream client, but never with the
    // caller's nominations.
    if let Some(c) = h.get("connection") {
        let c = c.to_str().unwrap_or_default().to_ascii_lowercase();
        assert!(!c.contains("hop"), "caller's Connection forwarded: {c}");
    }
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(&got[0].body[..], b"{\"a\":1}");

    // Nominating a header the gateway relies on end to end is refused outright, before
    // Pingora's own upstream policy would silently drop the nominee.
    for nominee in [
        "x-request-id",
        "content-type",
        "content-length",
        "cookie",
        "authorization",
    ] {
        let req = format!(
            "POST /orders/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close, {nominee}\r\nX-Request-Id: abc\r\nCookie: c=1\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{{\"a\":1}}"
        );
        let raw = raw_http(addr, req.as_bytes()).await;
        assert_eq!(status_of(&raw), 400, "{nominee}: {raw}");
        assert_eq!(error_code(&raw).as_deref(), Some("bad_framing"), "{raw}");
    }
    assert_eq!(orders.received_count(), 1);
}

/// Open a connection and send the start of a head that never ends.
async fn slow_header_client(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /orders/1 HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("write");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_do_not_starve_normal_requests() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.plain);
    let mut slow = Vec::new();
    for _ in 0..8 {
        slow.push(slow_header_client(addr).await);
    }
    // Keep trickling header bytes while normal requests are served.
    for round in 0..3 {
        for s in &mut slow {
            s.write_all(b"a").await.expect("trickle");
        }
        for i in 0..3 {
            let req = format!(
                "GET /orders/{round}-{i} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            );
            let raw = tokio::time::timeout(Duration::from_secs(5), raw_http(addr, req.as_bytes()))
                .await
                .expect("a normal request was starved");
            assert_eq!(status_of(&raw), 200, "{raw}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(orders.received_count(), 9);
    assert!(
        orders
            .received()
            .iter()
            .all(|r| !r.headers.contains_key("x-slow")),
        "a half-sent head was forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_refused_before_the_upstream_sees_it() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.slow);
    // 5 bytes now, the other 35 after the stall: `{"a":"xxx…x"}`, valid JSON of exactly the
    // declared 40 bytes, so a gateway that waited out the stall would forward a whole, valid
    // request and the upstream would record it.
    let (now, rest) = (&b"{\"a\":"[..], format!("\"{}\"}}", "x".repeat(32)));
    assert_eq!(now.len() + rest.len(), 40);
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(
        b"POST /orders/1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n",
    )
    .await
    .expect("write");
    wr.write_all(now).await.expect("write");
    // The answer is read as it comes, while the client carries on.
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            match tokio::time::timeout(Duration::from_secs(4), rd.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => return None,
            }
        }
    });
    // The listener's body timeout is 1 s; the rest of the body comes only after 2 s. The
    // gateway has closed by then, so the write may fail.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = wr.write_all(rest.as_bytes()).await;
    let out = reader.await.expect("reader");
    // Time for a late forward to land before the upstream is checked.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        orders.received_count(),
        0,
        "the body completed after the stall reached the upstream"
    );
    let out = out.expect("the stalled body was not refused within 4 s");
    let raw = String::from_utf8_lossy(&out);
    // JSON bodies are read whole before the upstream is chosen; the read timeout ends that read.
    assert_eq!(status_of(&raw), 408, "{raw}");
    assert_eq!(error_code(&raw).as_deref(), Some("body_too_slow"), "{raw}");
    // The client's side stays open until here, so only the gateway can have ended the request.
    drop(wr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connection_cap_refuses_an_extra_connection() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.capped);
    // Two connections hold the client's whole allowance.
    let a = slow_header_client(addr).await;
    let b = slow_header_client(addr).await;
    // Let the gateway accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let raw = raw_http(
        addr,
        b"GET /orders/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw, "", "over-cap connection must be closed unanswered");
    assert_eq!(orders.received_count(), 0);

    // Closing one frees a slot.
    drop(a);
    let mut ok = String::new();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        ok = raw_http(
            addr,
            b"GET /orders/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        if !ok.is_empty() {
            break;
        }
    }
    assert_eq!(status_of(&ok), 200, "{ok}");
    assert_eq!(orders.received_count(), 1);
    drop(b);
}

/// A TLS client for the dev certificates, speaking HTTP/1.1 only.
fn tls_connector(gw: &TestGateway) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(&gw.certs.ca_cert).expect("ca");
    roots.add(ca).expect("add ca");
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_over_tls_is_refused_too() {
    let (gw, orders, p) = setup().await;
    let connector = tls_connector(&gw);
    let tcp = TcpStream::connect(Ports::addr(p.tls))
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    let req = post_with(
        &["Content-Length: 6", "Transfer-Encoding: chunked"],
        &format!("0\r\n\r\n{SMUGGLED}"),
    );
    tls.write_all(&req).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut out)).await;
    let raw = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&raw), 400, "{raw}");
    assert_eq!(error_code(&raw).as_deref(), Some("bad_framing"), "{raw}");
    assert_eq!(orders.received_count(), 0);
}

/// `connections_closed_total{listener, reason}` as the in-process registry has it now.
fn closed_count(listener: &str, reason: &str) -> u64 {
    tiktok_gateway::telemetry::metrics::registry()
        .gather()
        .iter()
        .filter(|f| f.name() == "tiktok_gateway_connections_closed_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            let has = |k: &str, v: &str| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == k && l.value() == v)
            };
            has("listener", listener) && has("reason", reason)
        })
        .map(|m| m.get_counter().value() as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_not_complete_within_the_deadline_is_closed() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.slow);
    let before = closed_count("slow", "head_timeout");

    // A trickled head: every gap is far below Pingora's 60 s read timeout, the whole is not.
    let mut trickle = slow_header_client(addr).await;
    let started = tokio::time::Instant::now();
    let trickler = tokio::spawn(async move {
        for _ in 0..20 {
            if trickle.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        trickle
    });
    // A connection that never sends anything.
    let mut silent = TcpStream::connect(addr).await.expect("connect");

    let answered = read_until_closed(&mut silent, Duration::from_secs(4)).await;
    assert!(
        answered.is_empty(),
        "nothing is answered to a head never sent"
    );
    let mut trickle = trickler.await.expect("trickler");
    let answered = read_until_closed(&mut trickle, Duration::from_secs(4)).await;
    assert!(
        answered.is_empty(),
        "{}",
        String::from_utf8_lossy(&answered)
    );
    // The deadline is 1 s; without it the trickle would run its whole 4 s.
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "closed only after {:?}",
        started.elapsed()
    );
    assert_eq!(orders.received_count(), 0);
    assert!(closed_count("slow", "head_timeout") >= before + 2);

    // The listener still serves.
    let raw = raw_http(
        addr,
        b"GET /orders/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_keep_the_connection_is_answered_and_closed() {
    let (_gw, orders, p) = setup().await;
    // HTTP/1.0 without keep-alive, and HTTP/1.1 with `Connection: close`: the gateway closes
    // after the answer (the listener's keep-alive idle time is 15 s, far past the limit here).
    for head in [
        "GET /orders/old HTTP/1.0\r\nHost: localhost\r\n\r\n",
        "GET /orders/close HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(Ports::addr(p.plain))
            .await
            .expect("connect");
        s.write_all(head.as_bytes()).await.expect("write");
        let raw = read_until_closed(&mut s, Duration::from_secs(3)).await;
        let raw = String::from_utf8_lossy(&raw);
        assert_eq!(status_of(&raw), 200, "{head}: {raw}");
        assert!(
            !raw.to_ascii_lowercase().contains("connection: keep-alive"),
            "{head}: {raw}"
        );
    }
    assert_eq!(orders.received_count(), 2);
}

/// One keep-alive GET on an open connection; returns the raw answer.
async fn keep_alive_get(s: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed before a whole answer");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().expect("length"))
                })
                .expect("a content-length");
            if body.len() >= len {
                return text.into_owned();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_kept_alive_connection_the_deadline_starts_with_the_next_head() {
    let (_gw, orders, p) = setup().await;
    let mut s = TcpStream::connect(Ports::addr(p.slow))
        .await
        .expect("connect");
    assert_eq!(status_of(&keep_alive_get(&mut s, "/orders/1").await), 200);
    // Idle longer than the head deadline: that is keep-alive time, not head time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status_of(&keep_alive_get(&mut s, "/orders/2").await), 200);

    // The third head starts but never ends: closed at the deadline, unanswered.
    s.write_all(b"GET /orders/3 HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    let started = tokio::time::Instant::now();
    let answered = read_until_closed(&mut s, Duration::from_secs(4)).await;
    assert!(
        answered.is_empty(),
        "{}",
        String::from_utf8_lossy(&answered)
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(orders.received_count(), 2);
}

/// Sends `head`, then `rest` one byte every 300 ms (each gap inside the 1 s body timeout, the
/// rate far below 1 KiB/s), to its last byte even after the gateway has answered (write errors
/// are ignored): `head` and `rest` together make a whole, valid request, so a gateway that did
/// not enforce the rate would forward it complete. Returns the raw answer, once the client has
/// sent everything and a late forward has had time to land.
async fn trickle_body(addr: SocketAddr, head: &[u8], rest: &'static [u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head).await.expect("write");
    let (mut rd, mut wr) = s.into_split();
    let trickler = tokio::spawn(async move {
        for b in rest {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = wr.write_all(std::slice::from_ref(b)).await;
        }
        wr
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        match tokio::time::timeout(Duration::from_secs(4), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the slow body was not refused within 4 s"),
        }
    }
    let wr = trickler.await.expect("trickler");
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(wr);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_below_the_minimum_rate_is_refused_before_the_upstream_sees_it() {
    let (_gw, orders, p) = setup().await;
    // JSON: read whole before the upstream is contacted. `{"a":"xxxxxxxx"}` is 16 bytes, the
    // last 10 trickled over 3 s.
    let raw = trickle_body(
        Ports::addr(p.slow),
        b"POST /orders/1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"a\":\"",
        b"xxxxxxxx\"}",
    )
    .await;
    assert_eq!(
        orders.received_count(),
        0,
        "the trickled body, once complete, reached the upstream"
    );
    assert_eq!(status_of(&raw), 408, "{raw}");
    assert_eq!(error_code(&raw).as_deref(), Some("body_too_slow"), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_below_the_minimum_rate_is_refused_and_never_reaches_the_upstream_whole() {
    let (_gw, orders, p) = setup().await;
    // Streamed to the upstream as it arrives: the head and the first bytes are forwarded
    // before the rate is found too low, by design. The refusal must still cut the upstream
    // request off, so the upstream never receives a complete request, though the client sends
    // all 12 declared bytes.
    let raw = trickle_body(
        Ports::addr(p.slow),
        b"POST /upload/1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 12\r\n\r\nab",
        b"cdefghijkl",
    )
    .await;
    assert_eq!(
        orders.received_count(),
        0,
        "the upstream received the whole trickled request"
    );
    assert_eq!(status_of(&raw), 408, "{raw}");
    assert_eq!(error_code(&raw).as_deref(), Some("body_too_slow"), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_are_not_cut_by_the_head_deadline() {
    let (gw, orders, p) = setup().await;
    let client = common::https_client(&gw.certs);
    let url = format!("https://localhost:{}/orders/1", p.tls);
    let before = closed_count("tls", "head_timeout");
    for _ in 0..2 {
        let res = client.get(&url).send().await.expect("request");
        assert_eq!(res.version(), reqwest::Version::HTTP_2);
        assert_eq!(res.status(), 200);
        // Longer than the 1 s head deadline, on the same pooled HTTP/2 connection.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(orders.received_count(), 2);
    // A client may reconnect silently; the counter shows whether a connection was cut.
    assert_eq!(closed_count("tls", "head_timeout"), before);
}

/// Two half-sent heads that both hold a slot of the metrics listener (cap 2). The start-up
/// check's connection may still hold one for a moment on a busy machine, which closes the
/// second head as over the cap: then both are dropped and taken again (bounded).
async fn hold_every_slot(addr: SocketAddr) -> [TcpStream; 2] {
    for _ in 0..20 {
        let mut held = [
            slow_header_client(addr).await,
            slow_header_client(addr).await,
        ];
        let mut all_open = true;
        for s in &mut held {
            let mut b = [0u8; 1];
            // Still open: nothing to read until the head deadline. Closed: over the cap.
            let read = tokio::time::timeout(Duration::from_millis(150), s.read(&mut b)).await;
            all_open &= read.is_err();
        }
        if all_open {
            return held;
        }
        drop(held);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the metrics listener's two slots never came free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_has_the_same_connection_limits() {
    let (_gw, _orders, p) = setup().await;
    let addr = Ports::addr(p.metrics);
    let scrape = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    // Two half-sent heads take both connection slots: a third connection is closed unanswered.
    let mut held = hold_every_slot(addr).await;
    assert_eq!(raw_http(addr, scrape).await, "", "over the cap of 2");

    // The head deadline (1 s) closes both, which frees the slots.
    let started = tokio::time::Instant::now();
    for s in &mut held {
        let answered = read_until_closed(s, Duration::from_secs(4)).await;
        assert!(
            answered.is_empty(),
            "{}",
            String::from_utf8_lossy(&answered)
        );
    }
    assert!(started.elapsed() < Duration::from_millis(3500));
    let raw = raw_http(addr, scrape).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert!(raw.contains(
        "tiktok_gateway_connections_closed_total{listener=\"metrics\",reason=\"head_timeout\"}"
    ));
    assert!(raw.contains(
        "tiktok_gateway_connections_closed_total{listener=\"metrics\",reason=\"over_cap\"}"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_that_imitate_framing_or_hop_by_hop_fields_are_refused() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.plain);
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let len = format!("Content-Length: {}", body.len());
    for (name, line) in [
        ("underscore CL", "Content_Length: 5"),
        ("lower-case underscore CL", "content_length: 5"),
        ("underscore TE", "Transfer_Encoding: chunked"),
        ("dotted TE", "Transfer.Encoding: chunked"),
        ("no hyphen TE", "TransferEncoding: chunked"),
        ("hop-by-hop", "Keep_Alive: timeout=5"),
        ("connection", "Proxy_Connection: close"),
    ] {
        let req = post_with(&[len.as_str(), line], &body);
        assert_refused(addr, &orders, name, &req, By::Gateway(400, "bad_framing")).await;
    }
    // A real header whose name merely contains one of those passes.
    let ok = post_with(&["Content-Length: 2", "X_Content_Length_Hint: 2"], "{}");
    let raw = raw_http(addr, &ok).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert_eq!(orders.received_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunk_lines_are_refused() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.plain);
    // Pingora's chunked reader (httparse's chunk-size parser and its CRLF check after the
    // data) refuses these; the body stage reads JSON bodies whole, so the request ends with an
    // error before any byte is forwarded.
    for (name, body) in [
        ("bare LF after the size", "2\n{}\r\n0\r\n\r\n"),
        ("bare LF after the data", "2\r\n{}\n0\r\n\r\n"),
        ("bare CR after the size", "2\r{}\r\n0\r\n\r\n"),
        ("space inside the size", "1 1\r\n{}\r\n0\r\n\r\n"),
        ("not hex", "zz\r\n{}\r\n0\r\n\r\n"),
        ("size too long", "11111111111111111\r\n{}\r\n0\r\n\r\n"),
    ] {
        let req = post_with(&["Transfer-Encoding: chunked"], body);
        let raw = raw_http(addr, &req).await;
        assert!(
            status_of(&raw) == 400 || raw.is_empty(),
            "{name}: expected 400 or a close: {raw}"
        );
        assert_eq!(orders.received_count(), 0, "{name}: reached the upstream");
    }
    // httparse accepts any byte inside a chunk extension and Pingora drops it; the gateway's own
    // check of the bytes as received refuses what another parser could split differently.
    for (name, body) in [
        ("bare LF inside an extension", "2;a\nb\r\n{}\r\n0\r\n\r\n"),
        (
            "bare LF splitting a smuggled chunk",
            "2;x\n0\r\n\r\n{}\r\n0\r\n\r\n",
        ),
        ("bare CR inside an extension", "2;a\rb\r\n{}\r\n0\r\n\r\n"),
        ("NUL inside an extension", "2;a\u{0}\r\n{}\r\n0\r\n\r\n"),
        ("separator in an extension", "2;a@b\r\n{}\r\n0\r\n\r\n"),
        ("blank after the size", "2 \r\n{}\r\n0\r\n\r\n"),
        ("bare LF in a trailer", "2\r\n{}\r\n0\r\nX: a\nY: b\r\n\r\n"),
    ] {
        let req = post_with(&["Transfer-Encoding: chunked"], body);
        assert_refused(addr, &orders, name, &req, By::Gateway(400, "bad_framing")).await;
    }
    // A malformed line arriving after the head, in a later packet, fails the body read: the
    // JSON route reads bodies whole, so nothing is forwarded.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&post_with(&["Transfer-Encoding: chunked"], "2\r\n{}\r\n"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(b"1;a\nb\r\nx\r\n0\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
        let raw = String::from_utf8_lossy(&out);
        assert!(
            raw.is_empty() || status_of(&raw) == 400,
            "late malformed line: {raw}"
        );
        assert_eq!(
            orders.received_count(),
            0,
            "late malformed line reached the upstream"
        );
    }
    // Well-formed chunked bodies pass, extensions and trailers included.
    for body in [
        "2\r\n{}\r\n0\r\n\r\n",
        "2;name=value;q=\"a b\"\r\n{}\r\n0\r\nX-Checksum: 1\r\n\r\n",
    ] {
        let ok = post_with(&["Transfer-Encoding: chunked"], body);
        let raw = raw_http(addr, &ok).await;
        assert_eq!(status_of(&raw), 200, "{body:?}: {raw}");
    }
    let received = orders.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| &r.body[..] == b"{}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_targets_are_refused_or_rewritten_to_origin_form() {
    let (_gw, orders, p) = setup().await;
    let addr = Ports::addr(p.hosted);
    for (name, req) in [
        (
            "other host, matching Host",
            "GET http://evil.example/orders/1 HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        ),
        (
            "other host, no Host",
            "GET http://evil.example/orders/1 HTTP/1.1\r\n\r\n",
        ),
        (
            "other scheme",
            "GET ftp://api.example.test/orders/1 HTTP/1.1\r\nHost: api.example.test\r\n\r\n",
        ),
    ] {
        assert_refused(
            addr,
            &orders,
            name,
            req.as_bytes(),
            By::Gateway(400, "bad_target"),
        )
        .await;
    }
    // A served authority is routed, and the upstream sees origin form and `Host` set to it.
    for req in [
        "GET http://api.example.test/orders/1?a=b HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n",
        "GET http://api.example.test/orders/1?a=b HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let raw = raw_http(addr, req.as_bytes()).await;
        assert_eq!(status_of(&raw), 200, "{req}: {raw}");
    }
    let received = orders.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        assert_eq!(r.uri, "/orders/1?a=b");
        assert_eq!(
            r.headers.get("host").and_then(|h| h.to_str().ok()),
            Some("api.example.test")
        );
    }
}

/// Send a POST declaring `len` body bytes (over the route's 4 KiB ceiling), write the whole body
/// first and only then read the answer, as simple clients do; returns what was read, or the
/// write error. Without a lingering close the gateway closes while the body is still arriving,
/// so the client's send fails with a reset before it ever reads the answer.
async fn post_oversized<S>(mut stream: S, len: usize) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let head = format!(
        "POST /orders/1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    let chunk = vec![b'x'; 64 * 1024];
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            stream.write_all(&chunk[..n]).await?;
            left -= n;
        }
        stream.flush().await
    };
    // A client that meets a reset while sending reports the reset, not the answer (Linux would
    // still hand over bytes queued before it, but most client libraries stop at the write error).
    match tokio::time::timeout(Duration::from_secs(10), write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return format!("write failed: {e}"),
        Err(_) => return "write timed out".to_owned(),
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_413_reaches_the_client_whatever_the_body_size() {
    let (gw, orders, p) = setup().await;
    let connector = tls_connector(&gw);
    for len in [70 * 1024, 1024 * 1024, 8 * 1024 * 1024] {
        for tls in [false, true] {
            let mut tries = Vec::new();
            for _ in 0..20 {
                let connector = connector.clone();
                let port = if tls { p.tls } else { p.plain };
                tries.push(tokio::spawn(async move {
                    let tcp = TcpStream::connect(Ports::addr(port))
                        .await
                        .expect("connect");
                    if tls {
                        let name =
                            rustls_pki_types::ServerName::try_from("localhost").expect("name");
                        let s = connector.connect(name, tcp).await.expect("handshake");
                        post_oversized(s, len).await
                    } else {
                        post_oversized(tcp, len).await
                    }
                }));
            }
            for (i, t) in tries.into_iter().enumerate() {
                let raw = t.await.expect("client task");
                assert_eq!(
                    status_of(&raw),
                    413,
                    "{len} bytes, tls {tls}, try {i}: {raw:?}"
                );
                assert_eq!(error_code(&raw).as_deref(), Some("body_too_large"));
            }
        }
    }
    assert_eq!(
        orders.received_count(),
        0,
        "a refused body reached the upstream"
    );
}
