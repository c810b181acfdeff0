//! Tracing end to end: the real gateway exports its spans over OTLP/HTTP to an in-process
//! receiver; the tests check the span trees of a proxied request, a TikTok call that refreshes
//! its token, and a webhook delivery, that each upstream received its span's `traceparent`, that
//! an untrusted caller's trace context is ignored, and that no secret or personal data reaches
//! any exported span.

#![cfg(feature = "demo")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use parking_lot::Mutex;
use prost::Message;

use common::{
    ApiKey, Auth, Config, Listener, Route, TestGateway, TikTok, Tracing, Upstream, Webhooks,
    free_port, raw_http, status_of,
};
use tiktok_gateway::sandbox::orders::OrderService;
use tiktok_gateway::sandbox::tiktok::{self as sandbox, SandboxConfig};

const API_KEY: &str = "tracing-test-key-0001";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const EMAIL: &str = "maria.silva@example.com";

/// The OTLP/HTTP receiver: every span of every accepted export.
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

async fn receiver() -> Receiver {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let store = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let store = store.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut out = store.lock();
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        out.extend(ss.spans);
                    }
                }
                (
                    [(http::header::CONTENT_TYPE, "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        endpoint: format!("http://{addr}/v1/traces"),
        spans,
    }
}

impl Receiver {
    /// The spans once `ready` holds for them (bounded: export runs every half second).
    async fn spans_when(&self, ready: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        for _ in 0..150 {
            let spans = self.spans.lock().clone();
            if ready(&spans) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let spans = self.spans.lock().clone();
        panic!(
            "the expected spans never arrived: {:#?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    }
}

fn hex_id(id: &[u8]) -> String {
    hex::encode(id)
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            AnyValue::StringValue(s) => s.clone(),
            AnyValue::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

fn traceparent_of(span: &Span) -> String {
    format!("00-{}-{}-01", hex_id(&span.trace_id), hex_id(&span.span_id))
}

/// Every name, attribute and id of every span, for the "nothing secret leaves" checks.
fn exported_text(spans: &[Span]) -> String {
    format!("{spans:?}")
}

fn assert_nothing_leaks(spans: &[Span], secrets: &[&str]) {
    let text = exported_text(spans);
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !text.contains(secret),
            "an exported span carries `{secret}`:\n{text}"
        );
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn proxy_config(port: u16, orders: std::net::SocketAddr, tracing: Tracing) -> Config {
    Config::new()
        .listener(Listener::plain("public", port))
        .api_key(ApiKey::new("svc", API_KEY, &["orders:read"]))
        .upstream(Upstream::new("orders", orders))
        .route(
            Route::prefix("orders", "public", "/orders/")
                .auth(Auth::api_key().scopes(&["orders:read"]))
                .upstream("orders"),
        )
        .tracing(tracing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_request_is_a_server_span_with_an_upstream_child_the_upstream_sees() {
    let rx = receiver().await;
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let _gw = TestGateway::with(&proxy_config(
        port,
        orders.addr(),
        Tracing::otlp(&rx.endpoint)
            .sampling_ratio("1")
            .trusted_callers(&["127.0.0.1/32"]),
    ));

    let res = client()
        .get(format!(
            "http://127.0.0.1:{port}/orders/{EMAIL}?access_token=QUERY-SECRET-77"
        ))
        .header("x-api-key", API_KEY)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .header("tracestate", "vendor=abc")
        .header("user-agent", format!("curl/8 ({EMAIL})"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let spans = rx
        .spans_when(|s| {
            s.iter().any(|s| s.kind == SpanKind::Server as i32)
                && s.iter().any(|s| s.kind == SpanKind::Client as i32)
        })
        .await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    // The trusted caller's trace is joined: same trace id, its span is the parent.
    assert_eq!(hex_id(&server.trace_id), CALLER_TRACE);
    assert_eq!(hex_id(&server.parent_span_id), CALLER_SPAN);
    assert_eq!(server.name, "GET orders");
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(server, "gateway.route").as_deref(), Some("orders"));
    let upstream = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap();
    assert_eq!(upstream.trace_id, server.trace_id);
    assert_eq!(upstream.parent_span_id, server.span_id);
    assert_eq!(
        attr(upstream, "gateway.upstream").as_deref(),
        Some("orders")
    );

    // The upstream heard of the attempt's span, and the trusted caller's tracestate.
    let got = &orders.received()[0];
    assert_eq!(
        got.headers["traceparent"].to_str().unwrap(),
        traceparent_of(upstream)
    );
    assert_eq!(got.headers["tracestate"].to_str().unwrap(), "vendor=abc");

    // The path's e-mail address, the query, the key, the client's address: none leave.
    assert_nothing_leaks(&spans, &[EMAIL, "QUERY-SECRET-77", API_KEY, "127.0.0.1:"]);
    assert!(attr(server, "url.path").is_some_and(|p| p.starts_with("/orders/")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_callers_trace_context_is_not_honoured() {
    let rx = receiver().await;
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let _gw = TestGateway::with(&proxy_config(
        port,
        orders.addr(),
        // The test client (127.0.0.1) is not among the trusted callers.
        Tracing::otlp(&rx.endpoint)
            .sampling_ratio("1")
            .trusted_callers(&["10.0.0.0/8"]),
    ));
    let res = client()
        .get(format!("http://127.0.0.1:{port}/orders/1"))
        .header("x-api-key", API_KEY)
        // Sampled-out: honoured, this would also have suppressed the trace.
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00"))
        .header("tracestate", "vendor=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let spans = rx
        .spans_when(|s| {
            s.iter().any(|s| s.kind == SpanKind::Server as i32)
                && s.iter().any(|s| s.kind == SpanKind::Client as i32)
        })
        .await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    assert_ne!(hex_id(&server.trace_id), CALLER_TRACE);
    assert!(server.parent_span_id.is_empty(), "a new trace, no parent");
    let upstream = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap();
    let got = &orders.received()[0];
    let sent = got.headers["traceparent"].to_str().unwrap();
    assert_eq!(sent, traceparent_of(upstream));
    assert!(!sent.contains(CALLER_TRACE));
    assert!(got.headers.get("tracestate").is_none());
}

const SHOP: &str = "7494049642642441621";

/// Every string in the sandbox order's buyer and address fields.
fn buyer_data(order: &serde_json::Value, out: &mut Vec<String>) {
    match order {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let personal = ["email", "phone", "name", "address", "buyer"]
                    .iter()
                    .any(|p| k.contains(p));
                match v {
                    serde_json::Value::String(s) if personal && s.len() >= 6 => out.push(s.clone()),
                    other => buyer_data(other, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| buyer_data(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiktok_call_and_the_token_refresh_it_forces_are_child_spans() {
    let rx = receiver().await;
    let sb = SandboxConfig::example(7);
    let tiktok = sandbox::spawn(sb.clone()).await.unwrap();
    let base = tiktok.base_url();
    let port = free_port();
    let _gw = TestGateway::with(
        &Config::new()
            .listener(Listener::plain("egress", port))
            .api_key(ApiKey::new(
                "all-shops",
                API_KEY,
                &["orders:read", "tiktok:shop:*"],
            ))
            .upstream(Upstream::tiktok("tiktok_api", &base))
            .tiktok(
                TikTok::sandbox("main", &sb, &base)
                    .api_base("main", &base)
                    .pacing("100/s", 100),
            )
            .route(
                Route::prefix("tiktok", "egress", "/")
                    .methods(&["GET"])
                    .auth(Auth::api_key().scopes(&["orders:read"]))
                    .tiktok("main", Some("x-tiktok-shop-id"))
                    .upstream("tiktok_api"),
            )
            .tracing(Tracing::otlp(&rx.endpoint).sampling_ratio("1")),
    );
    let ids = tiktok.state().order_ids(SHOP);
    assert_eq!(tiktok.state().expire_access_tokens(SHOP), 1);
    let res = client()
        .get(format!(
            "http://127.0.0.1:{port}/order/202309/orders?ids={}",
            ids[0]
        ))
        .header("x-api-key", API_KEY)
        .header("x-tiktok-shop-id", SHOP)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let answer = res.text().await.unwrap();

    let spans = rx
        .spans_when(|s| {
            s.iter().any(|s| s.kind == SpanKind::Server as i32)
                && s.iter().filter(|s| s.name == "tiktok tiktok").count() == 2
                && s.iter().any(|s| s.name == "tiktok.token_refresh")
        })
        .await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    assert_eq!(attr(server, "gateway.shop").as_deref(), Some(SHOP));
    let calls: Vec<&Span> = spans.iter().filter(|s| s.name == "tiktok tiktok").collect();
    for call in &calls {
        assert_eq!(
            call.parent_span_id, server.span_id,
            "TikTok calls are children"
        );
        assert_eq!(call.kind, SpanKind::Client as i32);
    }
    let expired = calls
        .iter()
        .find(|c| attr(c, "tiktok.code").as_deref() == Some("105002"))
        .expect("the call that met the expired token");
    let refresh = spans
        .iter()
        .find(|s| s.name == "tiktok.token_refresh")
        .unwrap();
    assert_eq!(refresh.trace_id, server.trace_id);
    assert_eq!(
        refresh.parent_span_id, expired.span_id,
        "the refresh is a child of the call that forced it"
    );
    assert_eq!(attr(refresh, "gateway.outcome").as_deref(), Some("ok"));

    // TikTok received each span's traceparent: the API calls and the refresh.
    let records = tiktok.state().records();
    let sent: Vec<String> = records
        .iter()
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "traceparent")
                .map(|(_, v)| v.clone())
        })
        .collect();
    for span in calls.iter().copied().chain([refresh]) {
        assert!(
            sent.contains(&traceparent_of(span)),
            "{} not received: {sent:?}",
            span.name
        );
    }

    // No app secret, token, key or buyer data in any span.
    let mut secrets: Vec<String> = vec![sb.app_secret.expose().to_owned(), API_KEY.to_owned()];
    for shop in &sb.shops {
        secrets.push(shop.access_token.expose().to_owned());
        secrets.push(shop.refresh_token.expose().to_owned());
        secrets.push(shop.cipher.clone());
    }
    let order = tiktok.state().order(SHOP, &ids[0]).expect("the order");
    buyer_data(&order, &mut secrets);
    assert!(secrets.len() > 6, "buyer data found: {secrets:?}");
    // The signed query's `sign` and `access_token` values.
    for r in &records {
        for pair in r.query.as_deref().unwrap_or("").split('&') {
            if let Some(v) = pair
                .strip_prefix("sign=")
                .or_else(|| pair.strip_prefix("access_token="))
            {
                secrets.push(v.to_owned());
            }
        }
    }
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_nothing_leaks(&spans, &refs);
    assert!(!answer.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivery_is_a_child_span_of_its_ingress_whose_trace_id_is_on_the_delivery_log_line()
 {
    const APP_KEY: &str = "abcdef";
    const APP_SECRET: &str = "123-webhook-app-secret";
    const FORWARD_SECRET: &str = "order-service-shared-secret";
    let body = format!(
        r#"{{"type":1,"tts_notification_id":"7380066284010030890","shop_id":"{SHOP}","timestamp":1718305585,"data":{{"buyer_email":"{EMAIL}","order_id":"576653688135258178"}}}}"#
    );
    let rx = receiver().await;
    let orders = OrderService::spawn(None).await.unwrap();
    let port = free_port();
    let qdir = tempfile::tempdir().unwrap();
    let gw = TestGateway::with(
        &Config::new()
            .listener(Listener::plain("public", port))
            .upstream(Upstream::new("orders", orders.addr()))
            .tiktok(TikTok::new().app(TikTok::webhook_app("main", APP_KEY, APP_SECRET)))
            .webhooks(Webhooks::new(FORWARD_SECRET).queue(&qdir.path().join("queue.redb")))
            .route(
                Route::exact("tiktok-webhooks", "public", "/webhooks/tiktok")
                    .methods(&["POST"])
                    .auth(Auth::tiktok_webhook("main"))
                    .upstream("orders")
                    .rewrite("/internal/tiktok/events"),
            )
            .tracing(Tracing::otlp(&rx.endpoint).sampling_ratio("1")),
    );
    let signature = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
        mac.update(APP_KEY.as_bytes());
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let req = format!(
        "POST /webhooks/tiktok HTTP/1.1\r\nHost: gw\r\nx-request-id: hook-trace-1\r\nContent-Type: application/json\r\nAuthorization: {signature}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(status_of(&raw_http(addr, req.as_bytes()).await), 200);

    let spans = rx
        .spans_when(|s| {
            s.iter().any(|s| s.name == "webhook.delivery")
                && s.iter().any(|s| s.kind == SpanKind::Server as i32)
        })
        .await;
    let delivery = spans.iter().find(|s| s.name == "webhook.delivery").unwrap();
    assert_eq!(delivery.kind, SpanKind::Client as i32);
    assert_eq!(
        attr(delivery, "gateway.request_id").as_deref(),
        Some("hook-trace-1"),
        "correlates with the ingress request"
    );
    assert_eq!(
        attr(delivery, "gateway.decision").as_deref(),
        Some("delivered")
    );
    assert_eq!(
        attr(delivery, "http.response.status_code").as_deref(),
        Some("200")
    );
    // The delivery is a child of the request that brought the webhook in: the trace context was
    // stored with the queued event.
    let ingress = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    assert_eq!(delivery.trace_id, ingress.trace_id, "one trace");
    assert_eq!(delivery.parent_span_id, ingress.span_id, "its parent");
    // The order service received the delivery span's traceparent.
    let got = &orders.received()[0];
    assert_eq!(
        got.headers["traceparent"].to_str().unwrap(),
        traceparent_of(delivery)
    );
    // The delivery log line carries the span's trace id.
    let trace = hex_id(&delivery.trace_id);
    let log = gw.access_log_when(|l| l.contains("\"log_type\":\"delivery\""));
    let line = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["log_type"] == "delivery")
        .unwrap();
    assert_eq!(line["trace_id"], trace.as_str(), "{line}");

    assert_nothing_leaks(
        &spans,
        &[
            EMAIL,
            APP_SECRET,
            FORWARD_SECRET,
            &signature,
            "576653688135258178",
        ],
    );
}
