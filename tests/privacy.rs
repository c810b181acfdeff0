//! Privacy end to end through the real gateway: TikTok order responses masked for callers without
//! the route's PII scope and untouched for callers with it, leak detection (counted, and blocked
//! when the route says so), no seeded personal value or secret in any log line on any path, and
//! stable client-IP pseudonyms in the access log.

// The sandboxes these tests run against exist only with the `demo` feature (a default one).
#![cfg(feature = "demo")]

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use common::{
    ApiKey, Auth, Config, Listener, Privacy, Route, TestGateway, TikTok, Upstream, Webhooks,
    free_port,
};
use serde_json::{Value, json};
use sha2::Sha256;
use tiktok_gateway::privacy::{CapturedLogs, LogFormat, LogSettings};
use tiktok_gateway::sandbox::orders::{Behaviour, OrderService};
use tiktok_gateway::sandbox::tiktok::{SandboxConfig, TikTokSandbox, spawn};

const READER_KEY: &str = "reader-key-7f3a9c0e5b2d4186";
const PII_KEY: &str = "pii-reader-key-2c8e1f6a9d3b7054";
const US_SHOP: &str = "7494049642642441621";
const BR_SHOP: &str = "7495540735365777507";
const FORWARD_SECRET: &str = "order-service-forward-secret-0001";
const PSEUDONYM_KEY: &str = "privacy-test-pseudonym-key-0123456789";

struct Ports {
    public: u16,
    secure: u16,
    metrics: u16,
}

fn config(
    p: &Ports,
    sandbox: &SandboxConfig,
    base: &str,
    orders: SocketAddr,
    dead: u16,
    level: &str,
) -> Config {
    let tiktok_route = |name: &str, path: &str| {
        Route::exact(name, "public", path)
            .methods(&["GET"])
            .auth(Auth::api_key())
            .tiktok("main", None)
            .upstream("tiktok_api")
    };
    let internal = |name: &str, listener: &str| {
        Route::prefix(name, listener, "/internal/")
            .methods(&["GET", "POST"])
            .auth(Auth::api_key().scopes(&["orders:write"]))
            .max_body("2KiB")
            .upstream("orders")
    };
    Config::new()
        .listener(Listener::plain("public", p.public))
        .listener(Listener::tls("secure", p.secure))
        .listener(Listener::plain("metrics", p.metrics))
        .api_key(ApiKey::new(
            "reader",
            READER_KEY,
            &["tiktok:shop:*", "orders:write"],
        ))
        .api_key(ApiKey::new(
            "pii-reader",
            PII_KEY,
            &[
                &format!("tiktok:shop:{US_SHOP}"),
                &format!("tiktok:shop:{BR_SHOP}"),
                "pii:read",
            ],
        ))
        .tiktok(TikTok::sandbox("main", sandbox, base).pacing("100/s", 100))
        .upstream(Upstream::new("orders", orders).timeouts("500ms", "2s"))
        .upstream(Upstream::tiktok("tiktok_api", base))
        .upstream(Upstream::dead("dead", dead).timeouts("500ms", "1s"))
        .webhooks(Webhooks::new(FORWARD_SECRET))
        .privacy(Privacy {
            pseudonym_key: Some(PSEUDONYM_KEY.into()),
        })
        .route(tiktok_route("order-detail", "/order/202309/orders").pii_scope("pii:read"))
        .route(
            tiktok_route("order-search", "/order/202309/orders/search")
                .methods(&["POST"])
                .pii_scope("pii:read"),
        )
        .route(tiktok_route("leaky-orders", "/leaky/orders").rewrite("/order/202309/orders"))
        .route(
            tiktok_route("blocked-orders", "/blocked/orders")
                .on_leak("block")
                .rewrite("/order/202309/orders"),
        )
        .route(
            Route::exact("tiktok-webhooks", "public", "/webhooks/tiktok")
                .methods(&["POST"])
                .auth(Auth::tiktok_webhook("main"))
                .max_body("16KiB")
                .upstream("orders")
                .rewrite("/internal/tiktok/events"),
        )
        .route(internal("internal", "public"))
        .route(
            Route::prefix("dead", "public", "/dead/")
                .auth(Auth::api_key())
                .upstream("dead"),
        )
        .route(internal("secure-internal", "secure"))
        .log_level(level)
}

struct Setup {
    gw: TestGateway,
    sandbox: TikTokSandbox,
    orders: OrderService,
    ports: Ports,
    app_key: String,
    app_secret: String,
}

async fn setup(level: &str) -> Setup {
    let sandbox_config = SandboxConfig::example(20240611);
    let sandbox = spawn(sandbox_config.clone()).await.unwrap();
    let orders = OrderService::spawn(None).await.unwrap();
    let ports = Ports {
        public: free_port(),
        secure: free_port(),
        metrics: free_port(),
    };
    let dead = free_port();
    let (base, addr) = (sandbox.base_url(), orders.addr());
    let gw = TestGateway::with(&config(&ports, &sandbox_config, &base, addr, dead, level));
    Setup {
        gw,
        sandbox,
        orders,
        ports,
        app_key: sandbox_config.app_key.clone(),
        app_secret: sandbox_config.app_secret.expose().to_owned(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.public)
    }

    /// GET order detail through `path`; returns status, headers and body bytes.
    async fn detail(&self, path: &str, key: &str, shop: &str, ids: &[String]) -> Response {
        let res = client()
            .get(self.url(&format!("{path}?ids={}", ids.join(","))))
            .header("x-api-key", key)
            .header("x-tiktok-shop-id", shop)
            .send()
            .await
            .unwrap();
        Response::read(res).await
    }

    async fn search(&self, key: &str, shop: &str) -> Response {
        let res = client()
            .post(self.url("/order/202309/orders/search?page_size=20"))
            .header("x-api-key", key)
            .header("x-tiktok-shop-id", shop)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        Response::read(res).await
    }

    async fn metric(&self, name: &str, route: &str) -> f64 {
        common::metrics_text(self.ports.metrics)
            .await
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| l.contains(&format!("route=\"{route}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

struct Response {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    body: Vec<u8>,
}

impl Response {
    async fn read(res: reqwest::Response) -> Response {
        let status = res.status().as_u16();
        let content_length = res
            .headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let chunked = res
            .headers()
            .get("transfer-encoding")
            .is_some_and(|v| v.to_str().unwrap().contains("chunked"));
        let body = res.bytes().await.unwrap().to_vec();
        Response {
            status,
            content_length,
            chunked,
            body,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not valid JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn assert_framed(&self) {
        match self.content_length {
            Some(n) => assert_eq!(n, self.body.len(), "Content-Length matches the body"),
            None => assert!(self.chunked, "neither Content-Length nor chunked"),
        }
    }
}

/// The bytes the sandbox sends for these orders (its envelope, as `reply.rs` builds it), with the
/// request id taken from the answer.
fn sandbox_bytes(answer: &Value, data: Value) -> Vec<u8> {
    let mut body = json!({
        "code": answer["code"],
        "message": answer["message"],
        "request_id": answer["request_id"],
    });
    body.as_object_mut()
        .unwrap()
        .insert("data".to_owned(), data);
    serde_json::to_vec(&body).unwrap()
}

/// Personal fields of an order: (JSON pointer, original value). Only non-empty strings.
fn personal_fields(order: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |ptr: String, v: &Value| {
        if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
            out.push((ptr, s.to_owned()));
        }
    };
    for key in [
        "user_id",
        "buyer_email",
        "buyer_message",
        "cpf",
        "cpf_name",
        "tracking_number",
        "payment_auth_code",
        "seller_note",
    ] {
        push(format!("/{key}"), &order[key]);
    }
    if let Some(addr) = order["recipient_address"].as_object() {
        for (k, v) in addr {
            push(format!("/recipient_address/{k}"), v);
        }
        if let Some(levels) = addr.get("district_info").and_then(Value::as_array) {
            for (i, l) in levels.iter().enumerate() {
                if l["address_level"] != "L0" {
                    push(
                        format!("/recipient_address/district_info/{i}/address_name"),
                        &l["address_name"],
                    );
                }
            }
        }
        push(
            "/recipient_address/delivery_preferences/drop_off_location".into(),
            &addr["delivery_preferences"]["drop_off_location"],
        );
    }
    if let Some(items) = order["line_items"].as_array() {
        for (i, item) in items.iter().enumerate() {
            push(
                format!("/line_items/{i}/tracking_number"),
                &item["tracking_number"],
            );
        }
    }
    out
}

const NON_PERSONAL: &[&str] = &[
    "/id",
    "/status",
    "/create_time",
    "/update_time",
    "/paid_time",
    "/payment",
    "/shipping_provider",
    "/shipping_provider_id",
    "/warehouse_id",
    "/is_cod",
    "/delivery_option_id",
    "/packages",
    "/rts_sla_time",
];

fn assert_masked(masked: &Value, original: &Value) {
    let id = original["id"].as_str().unwrap();
    assert_eq!(masked["id"], original["id"]);
    for ptr in NON_PERSONAL {
        assert_eq!(
            masked.pointer(ptr),
            original.pointer(ptr),
            "{id}{ptr} unchanged"
        );
    }
    if let (Some(m), Some(o)) = (
        masked["line_items"].as_array(),
        original["line_items"].as_array(),
    ) {
        assert_eq!(m.len(), o.len());
        for (m, o) in m.iter().zip(o) {
            for k in ["id", "sku_id", "product_id", "sale_price", "currency"] {
                assert_eq!(m[k], o[k], "{id} line item {k} unchanged");
            }
        }
    }
    let fields = personal_fields(original);
    assert!(fields.len() >= 10, "{id}: the sandbox order carries PII");
    let text = masked.to_string();
    for (ptr, value) in fields {
        let got = masked
            .pointer(&ptr)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{id}{ptr} missing or not a string"));
        assert_ne!(got, value, "{id}{ptr} not masked");
        assert!(
            got == "***" || got.starts_with("pii:"),
            "{id}{ptr} masked as {got}"
        );
        // Distinctive values must not survive anywhere in the body.
        if value.len() >= 8 {
            assert!(!text.contains(&value), "{id}{ptr} value found in body");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_pii_is_masked_without_the_scope_and_untouched_with_it() {
    let s = setup("info").await;
    let state = s.sandbox.state().clone();
    for shop in [US_SHOP, BR_SHOP] {
        let ids: Vec<String> = state.order_ids(shop).into_iter().take(8).collect();
        let originals: Vec<Value> = ids
            .iter()
            .map(|id| state.order(shop, id).unwrap())
            .collect();
        if shop == BR_SHOP {
            assert!(
                originals.iter().all(|o| o["cpf"].is_string()),
                "BR orders carry a CPF"
            );
        }

        let masked = s
            .detail("/order/202309/orders", READER_KEY, shop, &ids)
            .await;
        assert_eq!(
            masked.status,
            200,
            "{}",
            String::from_utf8_lossy(&masked.body)
        );
        masked.assert_framed();
        let m = masked.json();
        assert_eq!(m["code"], 0);
        let orders = m["data"]["orders"].as_array().unwrap();
        assert_eq!(orders.len(), originals.len());
        for (mo, o) in orders.iter().zip(&originals) {
            assert_masked(mo, o);
        }

        let clear = s.detail("/order/202309/orders", PII_KEY, shop, &ids).await;
        assert_eq!(clear.status, 200);
        clear.assert_framed();
        let c = clear.json();
        assert_eq!(
            clear.body,
            sandbox_bytes(&c, json!({ "orders": originals })),
            "a caller with pii:read gets the sandbox's bytes"
        );

        // Search: every order on the page masked, the page itself intact.
        let masked = s.search(READER_KEY, shop).await;
        assert_eq!(
            masked.status,
            200,
            "{}",
            String::from_utf8_lossy(&masked.body)
        );
        masked.assert_framed();
        let m = masked.json();
        let orders = m["data"]["orders"].as_array().unwrap();
        assert_eq!(orders.len(), 20);
        assert_eq!(m["data"]["total_count"], 60);
        assert!(m["data"]["next_page_token"].is_string());
        for mo in orders {
            let o = state.order(shop, mo["id"].as_str().unwrap()).unwrap();
            assert_masked(mo, &o);
        }

        let clear = s.search(PII_KEY, shop).await;
        assert_eq!(clear.status, 200);
        clear.assert_framed();
        let c = clear.json();
        let originals: Vec<Value> = c["data"]["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| state.order(shop, o["id"].as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(
            clear.body,
            sandbox_bytes(
                &c,
                json!({
                    "orders": originals,
                    "next_page_token": c["data"]["next_page_token"],
                    "total_count": c["data"]["total_count"],
                })
            ),
            "search with pii:read is byte-identical"
        );
    }
}

/// A TikTok error whose free-text `message` repeats what the caller sent (the sandbox echoes a
/// bad `sort_field`, as TikTok's parameter errors do) is masked for a caller without the PII
/// scope and passed through untouched with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_error_messages_repeating_buyer_data_are_masked_without_the_scope() {
    let s = setup("info").await;
    let email = "jane.roe@example.com";
    let phone = "+1 415-555-0134";
    let echoed = format!("{email} {phone}");
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("page_size", "20")
        .append_pair("sort_field", &echoed)
        .finish();
    let search = |key: &'static str| {
        let url = s.url(&format!("/order/202309/orders/search?{query}"));
        async move {
            let res = client()
                .post(url)
                .header("x-api-key", key)
                .header("x-tiktok-shop-id", US_SHOP)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            Response::read(res).await
        }
    };

    let clear = search(PII_KEY).await;
    let c = clear.json();
    assert_eq!(clear.status, 400, "{c}");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains(email) && message.contains(phone),
        "the sandbox really repeats the input, and pii:read sees it: {message}"
    );

    let masked = search(READER_KEY).await;
    masked.assert_framed();
    let m = masked.json();
    assert_eq!(masked.status, 400, "{m}");
    assert_eq!(m["code"], c["code"], "the error code is TikTok's");
    let message = m["message"].as_str().unwrap();
    assert!(
        !message.contains(email) && !message.contains("415-555-0134"),
        "buyer data in TikTok's message is masked: {message}"
    );
    assert!(
        message.starts_with("sort_field is invalid: ")
            && message.ends_with("create_time, update_time."),
        "the wording around it stays readable: {message}"
    );
    let body = String::from_utf8_lossy(&masked.body);
    assert!(!body.contains(email), "nowhere in the body: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaks_are_counted_on_routes_not_cleared_and_blocked_when_configured() {
    let s = setup("info").await;
    let state = s.sandbox.state().clone();
    let ids: Vec<String> = state.order_ids(US_SHOP).into_iter().take(3).collect();

    let before = s
        .metric("tiktok_gateway_pii_leak_detected_total", "leaky-orders")
        .await;
    let res = s.detail("/leaky/orders", READER_KEY, US_SHOP, &ids).await;
    assert_eq!(res.status, 200, "a route without `block` still answers");
    let body = res.json();
    let first = state.order(US_SHOP, &ids[0]).unwrap();
    assert_eq!(
        body["data"]["orders"][0]["buyer_email"], first["buyer_email"],
        "not masked: the route is not a masking route"
    );
    let after = s
        .metric("tiktok_gateway_pii_leak_detected_total", "leaky-orders")
        .await;
    assert!(after > before, "leak counted: {before} -> {after}");

    let before_block = s
        .metric("tiktok_gateway_pii_leak_detected_total", "blocked-orders")
        .await;
    let res = s.detail("/blocked/orders", READER_KEY, US_SHOP, &ids).await;
    assert_eq!(res.status, 502);
    let text = String::from_utf8_lossy(&res.body).into_owned();
    assert!(text.contains("pii_blocked"), "{text}");
    let email = first["buyer_email"].as_str().unwrap();
    assert!(!text.contains(email), "blocked body carries no PII");
    assert!(
        s.metric("tiktok_gateway_pii_leak_detected_total", "blocked-orders")
            .await
            > before_block,
        "a blocked leak is counted too"
    );

    // A response without personal data passes a blocking route and is not counted.
    let n = s
        .metric("tiktok_gateway_pii_leak_detected_total", "blocked-orders")
        .await;
    let res = s
        .detail("/blocked/orders", READER_KEY, US_SHOP, &["1".to_owned()])
        .await;
    assert_ne!(res.status, 502, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(
        s.metric("tiktok_gateway_pii_leak_detected_total", "blocked-orders")
            .await,
        n
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_pseudonym_is_stable_in_the_access_log() {
    let s = setup("info").await;
    for _ in 0..2 {
        let res = client()
            .get(s.url("/internal/ping"))
            .header("x-api-key", READER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines =
            s.gw.access_log()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>();
        if lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lines.len(), 2, "two access-log lines");
    let ips: Vec<&str> = lines
        .iter()
        .map(|l| l["client_ip"].as_str().expect("client_ip logged"))
        .collect();
    // The caller's address appears nowhere; the upstream's and the gateway's own (the `host`
    // the request named), both an operator's addresses, are the only ones a line carries.
    for line in &lines {
        let mut line = line.clone();
        if let Some(fields) = line.as_object_mut() {
            fields.remove("upstream_addr");
            fields.remove("host");
        }
        assert!(!line.to_string().contains("127.0.0.1"), "{line}");
    }
    let received = s.orders.received();
    assert_eq!(received.len(), 2);
    assert!(
        received
            .iter()
            .all(|r| r.headers.get("x-api-key").is_none()),
        "the caller's API key is not forwarded upstream"
    );
    assert!(ips[0].starts_with("pii:"), "{}", ips[0]);
    assert_eq!(ips[0], ips[1], "same client, same pseudonym");
}

// ------------------------------------------------------------------ the log-capture corpus

/// The process-wide capture: the gateway's threads log through the global subscriber.
static LOGS: OnceLock<CapturedLogs> = OnceLock::new();

fn luhn_complete(prefix: &str) -> String {
    let digits: Vec<u32> = prefix.chars().map(|c| c.to_digit(10).unwrap()).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    format!("{prefix}{}", (10 - sum % 10) % 10)
}

fn cpf_complete(base: &str) -> String {
    let mut d: Vec<u32> = base.chars().map(|c| c.to_digit(10).unwrap()).collect();
    for len in [9u32, 10] {
        let sum: u32 = d
            .iter()
            .enumerate()
            .map(|(i, v)| v * (len + 1 - i as u32))
            .sum();
        d.push((sum * 10) % 11 % 10);
    }
    let s: String = d
        .iter()
        .map(|v| char::from_digit(*v, 10).unwrap())
        .collect();
    format!("{}.{}.{}-{}", &s[0..3], &s[3..6], &s[6..9], &s[9..11])
}

/// Percent-encodes everything but unreserved characters, as a query string carries it.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct Corpus {
    name: String,
    email: String,
    phones: Vec<String>,
    address: String,
    card: String,
    card_spaced: String,
    cpf: String,
    jwt: String,
    bearer: String,
}

fn corpus() -> Corpus {
    let card = luhn_complete("453914880343646");
    let card_spaced = format!(
        "{} {} {} {}",
        &card[0..4],
        &card[4..8],
        &card[8..12],
        &card[12..16]
    );
    Corpus {
        name: "Marisol Quintanilha-Beaumont".into(),
        email: "marisol.qbeaumont@correio-exemplo.com.br".into(),
        phones: vec![
            "+1 (415) 555-0187".into(),
            "+55 11 98765-4321".into(),
            "(212) 555-0143".into(),
            "+44 20 7946 0958".into(),
            "415.555.0199".into(),
            // Extensions, each in a notation a buyer or a CRM might use.
            "+1 415-555-0100 ext. 23".into(),
            "(415) 555-0142x77".into(),
            "+1-415-555-0163;ext=4411".into(),
        ],
        address: "4187 Wintergreen Terrace, Apt 12B, Springfield, OR 97477".into(),
        card,
        card_spaced,
        cpf: cpf_complete("529982247"),
        jwt: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtYXJpc29sIiwiZW1haWwiOiJtcUBleC5jb20ifQ.Zx8s1kYq3Fv0bQw9pLrT2uN5eA7cD4hG6jK8mX1yZ0o".into(),
        bearer: "9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc".into(),
    }
}

impl Corpus {
    fn text(&self) -> String {
        format!(
            "Hi, this is {}, mail me at {} or call {}. Ship to {}. Card {} ({}), CPF {}, token {} and Bearer {}",
            self.name,
            self.email,
            self.phones.join(" / "),
            self.address,
            self.card,
            self.card_spaced,
            self.cpf,
            self.jwt,
            self.bearer
        )
    }

    fn json_body(&self) -> String {
        json!({
            "buyer_email": self.email,
            "name": self.name,
            "phone_number": self.phones[1],
            "full_address": self.address,
            "card_number": self.card,
            "cpf": self.cpf,
            "note": self.text(),
        })
        .to_string()
    }

    /// The query string carrying the corpus (values percent-encoded).
    fn query(&self) -> String {
        // The e-mail and two phones also appear as parameter *names*.
        format!(
            "{}&{}=1&{}=&email={}&phone={}&name={}&card={}&cpf={}&access_token={}&address={}",
            enc(&self.email),
            enc(&self.phones[5]),
            enc(&self.phones[6]),
            enc(&self.email),
            enc(&self.phones[0]),
            enc(&self.name),
            enc(&self.card),
            enc(&self.cpf),
            enc(&self.jwt),
            enc(&self.address)
        )
    }

    fn seeds(&self) -> Vec<String> {
        let mut v = vec![
            self.name.clone(),
            "Quintanilha".into(),
            self.email.clone(),
            self.address.clone(),
            "Wintergreen Terrace".into(),
            self.card.clone(),
            self.card_spaced.clone(),
            self.cpf.clone(),
            self.cpf.replace(['.', '-'], ""),
            self.jwt.clone(),
            self.bearer.clone(),
        ];
        // As they travel in a query string.
        v.extend([enc(&self.email), enc(&self.name), enc(&self.address)]);
        for p in &self.phones {
            v.push(enc(p));
            v.push(p.clone());
            v.push(p.chars().filter(char::is_ascii_digit).collect());
            // The number without its extension, as separators-free digits.
            if let Some(number) = p
                .split(['x', ';'])
                .next()
                .and_then(|n| n.split(" ext").next())
            {
                v.push(number.chars().filter(char::is_ascii_digit).collect());
            }
        }
        v
    }
}

/// The personal values of a sandbox order, as seeds.
fn order_seeds(order: &Value) -> Vec<String> {
    let mut out: Vec<String> = personal_fields(order)
        .into_iter()
        .map(|(_, v)| v)
        // Short values (a unit "Apt 4", a state "CA") are not distinctive enough to search for.
        .filter(|v| v.len() >= 8)
        .collect();
    if let Some(phone) = order["recipient_address"]["phone_number"].as_str() {
        out.push(phone.chars().filter(char::is_ascii_digit).collect());
    }
    out
}

fn sign_webhook(app_key: &str, secret: &str, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(app_key.as_bytes());
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `logging.level` asking for everything: the gateway at `trace`, and every dependency that logs
/// at `trace` by per-module directives (the most specific ones too), which would print raw
/// request heads (custom headers, cookies, query strings) if they were let through.
const EVERY_DEPENDENCY_AT_TRACE: &str = "trace,pingora=trace,pingora_core=trace,\
pingora_core::protocols=trace,pingora_core::protocols::http::v1::server=trace,\
pingora_core::protocols::http::v2::server=trace,pingora_core::connectors=trace,\
pingora_proxy=trace,pingora_http=trace,pingora_pool=trace,pingora_load_balancing=trace,\
pingora_runtime=trace,pingora_error=trace,h2=trace,h2::proto=trace,hyper=trace,hyper_util=trace,\
reqwest=trace,rustls=trace,rustls::server=trace,tokio=trace,tokio_util=trace,mio=trace,\
redb=trace,redis=trace,tower=trace,[request]=trace";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_seeded_personal_value_or_secret_reaches_any_log() {
    use tracing_subscriber::util::SubscriberInitExt;

    // `validate` accepts the filter (dependencies are capped, not refused) and the gateway runs
    // with it; the captured subscriber is built from the same string by the production code.
    let s = setup(EVERY_DEPENDENCY_AT_TRACE).await;
    let logs = LOGS.get_or_init(CapturedLogs::new);
    let settings = LogSettings {
        filter: EVERY_DEPENDENCY_AT_TRACE.into(),
        format: LogFormat::Json,
    };
    logs.subscriber(&settings, s.gw.gateway.privacy.clone())
        .unwrap()
        .try_init()
        .expect("only this test installs the global subscriber");
    let c = corpus();
    let text = c.text();
    let http = client();
    let state = s.sandbox.state().clone();

    // 1. Successful egress calls whose responses carry PII (masked and clear, both shops).
    let mut seeds = c.seeds();
    for shop in [US_SHOP, BR_SHOP] {
        let ids: Vec<String> = state.order_ids(shop).into_iter().take(5).collect();
        for id in &ids {
            seeds.extend(order_seeds(&state.order(shop, id).unwrap()));
        }
        for key in [READER_KEY, PII_KEY] {
            let r = s.detail("/order/202309/orders", key, shop, &ids).await;
            assert_eq!(r.status, 200);
            let r = s.search(key, shop).await;
            assert_eq!(r.status, 200);
        }
        let r = s.detail("/leaky/orders", READER_KEY, shop, &ids).await;
        assert_eq!(r.status, 200);
        let r = s.detail("/blocked/orders", READER_KEY, shop, &ids).await;
        assert_eq!(r.status, 502);
    }
    // A TikTok search whose body carries the corpus, and a TikTok error answer.
    let r = http
        .post(s.url("/order/202309/orders/search?page_size=5"))
        .header("x-api-key", READER_KEY)
        .header("x-tiktok-shop-id", US_SHOP)
        .header("content-type", "application/json")
        .body(c.json_body())
        .send()
        .await
        .unwrap();
    assert!(r.status().as_u16() < 500, "{}", r.status());
    let r = s
        .detail("/order/202309/orders", READER_KEY, US_SHOP, &["123".into()])
        .await;
    assert_ne!(r.status, 0);
    seeds.extend([
        s.app_secret.clone(),
        FORWARD_SECRET.to_owned(),
        PSEUDONYM_KEY.to_owned(),
        READER_KEY.to_owned(),
        PII_KEY.to_owned(),
    ]);
    for shop in SandboxConfig::example(1).shops {
        seeds.push(shop.access_token.expose().to_owned());
        seeds.push(shop.refresh_token.expose().to_owned());
    }

    // 2. A TikTok customer-service message (type 14) carrying the corpus in `data.content`.
    let webhook = json!({
        "type": 14,
        "tts_notification_id": "7380066284010039999",
        "shop_id": US_SHOP,
        "timestamp": 1718305585,
        "data": {
            "conversation_id": "7380066284010031234",
            "message_id": "7380066284010035678",
            "type": "TEXT",
            "content": text,
            "sender": { "role": "BUYER", "nickname": c.name, "im_user_id": "7380066284010030001" },
            "create_time": 1718305585
        }
    })
    .to_string();
    let r = http
        .post(s.url("/webhooks/tiktok"))
        .header("content-type", "application/json")
        .header(
            "authorization",
            sign_webhook(&s.app_key, &s.app_secret, &webhook),
        )
        .body(webhook.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..100 {
        if s.orders.received_count() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.orders.received_count(), 1, "webhook delivered");
    // A webhook with a bad signature is refused (the corpus in its body), and nothing of it is
    // queued for delivery: a second later (the good one above was delivered in milliseconds),
    // the order service has still received only the good one.
    let delivered = s.orders.received_count();
    let r = http
        .post(s.url("/webhooks/tiktok"))
        .header("content-type", "application/json")
        .header("authorization", "0".repeat(64))
        .body(webhook)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_signature");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        s.orders.received_count(),
        delivered,
        "a badly signed webhook reached the order service"
    );

    // 3. Refusals with the corpus in headers, query and body.
    let q = c.query();
    let with_seed_headers = |rb: reqwest::RequestBuilder| {
        rb.header("x-customer-name", &c.name)
            .header("x-customer-email", &c.email)
            .header("x-customer-phone", &c.phones[2])
            .header("x-callback-phone", &c.phones[7])
            .header("x-ship-to", &c.address)
            .header("x-card", &c.card_spaced)
            .header("user-agent", format!("client for {}", c.email))
            .header(
                "cookie",
                format!("session={}; buyer={}; ship={}", c.jwt, c.email, c.name),
            )
            .header("content-type", "application/json")
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "bad api key",
            with_seed_headers(http.post(s.url(&format!("/internal/orders?{q}"))))
                .header("x-api-key", &c.bearer)
                .body(c.json_body()),
            401,
        ),
        (
            "bearer token instead of a key",
            with_seed_headers(http.get(s.url(&format!("/internal/orders?{q}"))))
                .header("authorization", format!("Bearer {}", c.jwt)),
            401,
        ),
        (
            "missing scope",
            with_seed_headers(http.post(s.url(&format!("/internal/orders?{q}"))))
                .header("x-api-key", PII_KEY)
                .body(c.json_body()),
            403,
        ),
        (
            "no route",
            with_seed_headers(http.post(s.url(&format!("/nowhere/customers?{q}"))))
                .header("x-api-key", READER_KEY)
                .body(c.json_body()),
            404,
        ),
        (
            "body too large",
            with_seed_headers(http.post(s.url(&format!("/internal/orders?{q}"))))
                .header("x-api-key", READER_KEY)
                .body(c.json_body().repeat(4)),
            413,
        ),
        (
            "shop not allowed",
            with_seed_headers(http.get(s.url(&format!("/order/202309/orders?{q}"))))
                .header("x-api-key", PII_KEY)
                .header("x-tiktok-shop-id", "1234567890"),
            403,
        ),
        (
            "upstream down",
            with_seed_headers(http.post(s.url(&format!("/dead/orders?{q}"))))
                .header("x-api-key", READER_KEY)
                .body(c.json_body()),
            502,
        ),
    ];
    // None of these reaches the order service or TikTok ("upstream down" goes to a dead port).
    let (orders_before, tiktok_before) = (s.orders.received_count(), state.request_count());
    for (name, rb, want) in cases {
        let r = rb.send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{name}");
        assert_eq!(
            s.orders.received_count(),
            orders_before,
            "{name}: reached the order service"
        );
        assert_eq!(
            state.request_count(),
            tiktok_before,
            "{name}: reached TikTok"
        );
    }

    // 4. An order service that fails, and one that succeeds, with the corpus in the request.
    s.orders.set_behaviour(Behaviour::Fail);
    let r = with_seed_headers(http.post(s.url(&format!("/internal/orders?{q}"))))
        .header("x-api-key", READER_KEY)
        .body(c.json_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "upstream error passed on");
    s.orders.set_behaviour(Behaviour::Ok);
    let r = with_seed_headers(http.post(s.url(&format!("/internal/orders?{q}"))))
        .header("x-api-key", READER_KEY)
        .body(c.json_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // 5. Over TLS (HTTP/2 by ALPN, then HTTP/1.1): the same seeds in headers, cookies, query
    //    names and values, and a bearer token, on a refused and on a forwarded request.
    let tls = common::https_client(&s.gw.certs);
    let tls_h1 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &std::fs::read(&s.gw.certs.ca_cert).unwrap(),
        )
        .unwrap()])
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let secure = |path: &str| format!("https://localhost:{}{path}", s.ports.secure);
    for client in [&tls, &tls_h1] {
        let r = with_seed_headers(client.post(secure(&format!("/internal/orders?{q}"))))
            .header("authorization", format!("Bearer {}", c.bearer))
            .body(c.json_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "a bearer token is not an API key");
        let r = with_seed_headers(client.post(secure(&format!("/internal/orders?{q}"))))
            .header("x-api-key", READER_KEY)
            .body(c.json_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // Let the access log and trailing log lines land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let captured = logs.contents();
    let access = s.gw.access_log();
    assert!(
        captured.lines().count() > 20,
        "trace logging produced output:\n{captured}"
    );
    assert!(
        captured.contains("pii_leak"),
        "the leak security events are in the captured log"
    );
    assert!(access.lines().count() >= 20, "{access}");

    let all = format!("{captured}\n{access}");
    let lower = all.to_lowercase();
    let mut leaked = Vec::new();
    for seed in &seeds {
        if all.contains(seed.as_str()) || lower.contains(&seed.to_lowercase()) {
            let at = lower.find(&seed.to_lowercase()).unwrap_or(0);
            let line_start = lower[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = lower[at..].find('\n').map_or(lower.len(), |i| at + i);
            leaked.push(format!(
                "{seed:?} in: {}",
                &all[line_start..line_end.min(line_start + 600)]
            ));
        }
    }
    assert!(
        leaked.is_empty(),
        "{} seeded values reached the logs:\n{}",
        leaked.len(),
        leaked.join("\n")
    );
}
