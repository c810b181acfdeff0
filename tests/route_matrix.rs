//! Every route kind x every route-level feature, black box: for each pair, one request the
//! feature must refuse is refused with its status and error code, and nothing of it reaches
//! the upstream (the order service, the TikTok sandbox's request record, or the order service
//! a webhook is delivered to). A control request on the same route then passes, so the
//! refusal is the feature's doing. Where a feature cannot apply to a kind, `validate` must
//! refuse the config and name the setting, never accept it and ignore it.
//!
//! Each row starts its own gateway with a one-route config (tests/common/config.rs), so rows
//! cannot disturb each other's budgets or block lists. Every kind runs the same stages, so
//! webhook routes meet the kill switch, rate limits and body checks like any other.
//!
//! Webhook callers: a webhook has no caller credentials; its caller is the TikTok app whose
//! signature it carries, with the subject `tiktok-webhook:<app>` (Shop and TikTok for
//! Developers apps alike). A webhook route cannot take scopes, an `api_key` or `shop` limit
//! key, or `privacy.on_leak: block` (an acknowledged webhook is never dropped for its content).

#![cfg(feature = "demo")]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{
    ApiKey, Auth, Config, JwtIssuer, LimitKey, Listener, RateLimit, Route, TestGateway, TikTok,
    Upstream, Webhooks, free_port, https_client, https_client_with_cert,
};
use serde_json::Value;
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::sandbox::idp::DevSigner;
use tiktok_gateway::sandbox::orders::OrderService;
use tiktok_gateway::sandbox::tiktok::{self as sandbox, SandboxConfig, TikTokSandbox};

// ---------------------------------------------------------------- the table

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Proxied,
    TikTokEgress,
    ShopWebhook,
    DeveloperWebhook,
}

const KINDS: [Kind; 4] = [
    Kind::Proxied,
    Kind::TikTokEgress,
    Kind::ShopWebhook,
    Kind::DeveloperWebhook,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitBy {
    Caller,
    ApiKey,
    ClientIp,
    Shop,
    Header,
    Route,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feature {
    /// `auth: { jwt }`: a request without a token.
    AuthJwt,
    /// `auth: { api_key }`: a wrong key.
    AuthApiKey,
    /// `auth: { mtls: true }`: no client certificate.
    AuthMtls,
    /// `auth: { tiktok_webhook }` / `{ tiktok_developer_webhook }`: a bad signature.
    AuthSignature,
    /// `auth.scopes`: valid credentials without the scope.
    Scopes,
    /// `identity.blocked_subjects`: the caller is on it.
    KillSwitch,
    /// `rate_limit` with this key, `1/m` burst 1: the second request.
    Limit(LimitBy),
    /// `limits.max_body: 1KiB`: a 2 KiB body.
    MaxBody,
    /// `limits.content_types: [application/json]`: a `text/plain` body.
    ContentTypes,
    /// `limits.json_max_depth: 4`: JSON nested 12 deep.
    JsonDepth,
    /// `privacy.on_leak: block`: a response (or forward) carrying buyer PII.
    Privacy,
}

const FEATURES: [Feature; 16] = [
    Feature::AuthJwt,
    Feature::AuthApiKey,
    Feature::AuthMtls,
    Feature::AuthSignature,
    Feature::Scopes,
    Feature::KillSwitch,
    Feature::Limit(LimitBy::Caller),
    Feature::Limit(LimitBy::ApiKey),
    Feature::Limit(LimitBy::ClientIp),
    Feature::Limit(LimitBy::Shop),
    Feature::Limit(LimitBy::Header),
    Feature::Limit(LimitBy::Route),
    Feature::MaxBody,
    Feature::ContentTypes,
    Feature::JsonDepth,
    Feature::Privacy,
];

/// What a row expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The request is refused with this status and error code.
    Refused(u16, &'static str),
    /// `validate` refuses the config, naming `routes[0]` and this setting.
    Invalid(&'static str),
}

use Expect::{Invalid, Refused};
use Feature::*;
use Kind::*;

/// One test per row, and the table of all rows for the completeness check.
macro_rules! matrix {
    ($( $(#[$attr:meta])* $name:ident: $kind:expr, $feature:expr => $expect:expr; )*) => {
        $(
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run($kind, $feature, $expect).await;
            }
        )*
        const ROWS: &[(Kind, Feature)] = &[$( ($kind, $feature) ),*];
    };
}

matrix! {
    // Proxied routes: every caller-side feature applies; privacy does not (responses stream).
    proxied_jwt: Proxied, AuthJwt => Refused(401, "invalid_credentials");
    proxied_api_key: Proxied, AuthApiKey => Refused(401, "invalid_credentials");
    proxied_mtls: Proxied, AuthMtls => Refused(401, "invalid_credentials");
    proxied_signature: Proxied, AuthSignature => Invalid("auth");
    proxied_scopes: Proxied, Scopes => Refused(403, "insufficient_scope");
    proxied_kill_switch: Proxied, KillSwitch => Refused(403, "caller_blocked");
    proxied_limit_caller: Proxied, Limit(LimitBy::Caller) => Refused(429, "rate_limited");
    proxied_limit_api_key: Proxied, Limit(LimitBy::ApiKey) => Refused(429, "rate_limited");
    proxied_limit_client_ip: Proxied, Limit(LimitBy::ClientIp) => Refused(429, "rate_limited");
    proxied_limit_shop: Proxied, Limit(LimitBy::Shop) => Invalid("rate_limit");
    proxied_limit_header: Proxied, Limit(LimitBy::Header) => Refused(429, "rate_limited");
    proxied_limit_route: Proxied, Limit(LimitBy::Route) => Refused(429, "rate_limited");
    proxied_max_body: Proxied, MaxBody => Refused(413, "body_too_large");
    proxied_content_types: Proxied, ContentTypes => Refused(415, "unsupported_media_type");
    proxied_json_depth: Proxied, JsonDepth => Refused(400, "bad_json");
    proxied_privacy: Proxied, Privacy => Invalid("privacy");

    // TikTok egress: everything applies; privacy refuses the response, not the request.
    egress_jwt: TikTokEgress, AuthJwt => Refused(401, "invalid_credentials");
    egress_api_key: TikTokEgress, AuthApiKey => Refused(401, "invalid_credentials");
    egress_mtls: TikTokEgress, AuthMtls => Refused(401, "invalid_credentials");
    egress_signature: TikTokEgress, AuthSignature => Invalid("auth");
    egress_scopes: TikTokEgress, Scopes => Refused(403, "insufficient_scope");
    egress_kill_switch: TikTokEgress, KillSwitch => Refused(403, "caller_blocked");
    egress_limit_caller: TikTokEgress, Limit(LimitBy::Caller) => Refused(429, "rate_limited");
    egress_limit_api_key: TikTokEgress, Limit(LimitBy::ApiKey) => Refused(429, "rate_limited");
    egress_limit_client_ip: TikTokEgress, Limit(LimitBy::ClientIp) => Refused(429, "rate_limited");
    egress_limit_shop: TikTokEgress, Limit(LimitBy::Shop) => Refused(429, "rate_limited");
    egress_limit_header: TikTokEgress, Limit(LimitBy::Header) => Refused(429, "rate_limited");
    egress_limit_route: TikTokEgress, Limit(LimitBy::Route) => Refused(429, "rate_limited");
    egress_max_body: TikTokEgress, MaxBody => Refused(413, "body_too_large");
    egress_content_types: TikTokEgress, ContentTypes => Refused(415, "unsupported_media_type");
    egress_json_depth: TikTokEgress, JsonDepth => Refused(400, "bad_json");
    egress_privacy: TikTokEgress, Privacy => Refused(502, "pii_blocked");

    // TikTok Shop webhooks: the signature is the only credential; the app is the caller.
    shop_webhook_jwt: ShopWebhook, AuthJwt => Invalid("auth");
    shop_webhook_api_key: ShopWebhook, AuthApiKey => Invalid("auth");
    shop_webhook_mtls: ShopWebhook, AuthMtls => Invalid("auth");
    shop_webhook_signature: ShopWebhook, AuthSignature => Refused(401, "invalid_signature");
    shop_webhook_scopes: ShopWebhook, Scopes => Invalid("auth.scopes");
    shop_webhook_kill_switch: ShopWebhook, KillSwitch => Refused(403, "caller_blocked");
    shop_webhook_limit_caller: ShopWebhook, Limit(LimitBy::Caller) => Refused(429, "rate_limited");
    shop_webhook_limit_api_key: ShopWebhook, Limit(LimitBy::ApiKey) => Invalid("rate_limit");
    shop_webhook_limit_client_ip: ShopWebhook, Limit(LimitBy::ClientIp) => Refused(429, "rate_limited");
    shop_webhook_limit_shop: ShopWebhook, Limit(LimitBy::Shop) => Invalid("rate_limit");
    shop_webhook_limit_header: ShopWebhook, Limit(LimitBy::Header) => Refused(429, "rate_limited");
    shop_webhook_limit_route: ShopWebhook, Limit(LimitBy::Route) => Refused(429, "rate_limited");
    shop_webhook_max_body: ShopWebhook, MaxBody => Refused(413, "body_too_large");
    shop_webhook_content_types: ShopWebhook, ContentTypes => Refused(415, "unsupported_media_type");
    shop_webhook_json_depth: ShopWebhook, JsonDepth => Refused(400, "bad_json");
    shop_webhook_privacy: ShopWebhook, Privacy => Invalid("privacy");

    // TikTok for Developers webhooks: the same, with their own signature scheme.
    developer_webhook_jwt: DeveloperWebhook, AuthJwt => Invalid("auth");
    developer_webhook_api_key: DeveloperWebhook, AuthApiKey => Invalid("auth");
    developer_webhook_mtls: DeveloperWebhook, AuthMtls => Invalid("auth");
    developer_webhook_signature: DeveloperWebhook, AuthSignature => Refused(401, "invalid_signature");
    developer_webhook_scopes: DeveloperWebhook, Scopes => Invalid("auth.scopes");
    developer_webhook_kill_switch: DeveloperWebhook, KillSwitch => Refused(403, "caller_blocked");
    developer_webhook_limit_caller: DeveloperWebhook, Limit(LimitBy::Caller) => Refused(429, "rate_limited");
    developer_webhook_limit_api_key: DeveloperWebhook, Limit(LimitBy::ApiKey) => Invalid("rate_limit");
    developer_webhook_limit_client_ip: DeveloperWebhook, Limit(LimitBy::ClientIp) => Refused(429, "rate_limited");
    developer_webhook_limit_shop: DeveloperWebhook, Limit(LimitBy::Shop) => Invalid("rate_limit");
    developer_webhook_limit_header: DeveloperWebhook, Limit(LimitBy::Header) => Refused(429, "rate_limited");
    developer_webhook_limit_route: DeveloperWebhook, Limit(LimitBy::Route) => Refused(429, "rate_limited");
    developer_webhook_max_body: DeveloperWebhook, MaxBody => Refused(413, "body_too_large");
    developer_webhook_content_types: DeveloperWebhook, ContentTypes => Refused(415, "unsupported_media_type");
    developer_webhook_json_depth: DeveloperWebhook, JsonDepth => Refused(400, "bad_json");
    developer_webhook_privacy: DeveloperWebhook, Privacy => Invalid("privacy");
}

#[test]
fn every_kind_and_feature_has_exactly_one_row() {
    for kind in KINDS {
        for feature in FEATURES {
            let n = ROWS.iter().filter(|r| **r == (kind, feature)).count();
            assert_eq!(n, 1, "{kind:?} x {feature:?}: {n} rows");
        }
    }
    assert_eq!(ROWS.len(), KINDS.len() * FEATURES.len());
}

// ---------------------------------------------------------------- the fixture

/// The API key every caller-side row authenticates with (its subject is its name, `caller`).
const CALLER_KEY: &str = "matrix-caller-key-5d0c2f7a91b3";
/// A valid key without the route's scope.
const NO_SCOPE_KEY: &str = "matrix-no-scope-key-8e4a6b1c07d2";
const ROUTE_SCOPE: &str = "orders:read";
const US_SHOP: &str = "7494049642642441621";
/// The TikTok Shop webhook app (TikTok's published test values, as in tests/webhooks.rs).
const APP_KEY: &str = "abcdef";
const APP_SECRET: &str = "123";
const DEV_CLIENT_SECRET: &str = "matrix-developer-client-secret";
const FORWARD_SECRET: &str = "matrix-forward-secret";
const LIMIT_HEADER: &str = "x-tenant";

/// What a row's gateway talks to.
struct Fixture {
    orders: OrderService,
    /// Only TikTok egress rows start the sandbox.
    tiktok: Option<(SandboxConfig, TikTokSandbox)>,
    signer: DevSigner,
    port: u16,
}

impl Fixture {
    async fn start(kind: Kind) -> Self {
        let tiktok = if kind == TikTokEgress {
            let sb = SandboxConfig::example(11);
            let server = sandbox::spawn(sb.clone()).await.expect("TikTok sandbox");
            Some((sb, server))
        } else {
            None
        };
        Fixture {
            orders: OrderService::spawn(None).await.expect("order service"),
            tiktok,
            signer: DevSigner::new("https://idp.matrix.test", Arc::new(SystemClock))
                .expect("dev signer"),
            port: free_port(),
        }
    }

    /// Requests the upstream of `kind` has received.
    fn reached(&self) -> usize {
        match &self.tiktok {
            Some((_, server)) => server.state().request_count(),
            None => self.orders.received_count(),
        }
    }

    /// The config: one TLS listener (client certificates optional), the identities, the
    /// upstream of the kind, and `route`.
    fn config(&self, route: Route, blocked: &[&str]) -> Config {
        let cfg = Config::new()
            .listener(Listener::tls("public", self.port).client_auth("optional"))
            .jwt(JwtIssuer::file("dev", &self.signer))
            .api_key(ApiKey::new(
                "caller",
                CALLER_KEY,
                &[ROUTE_SCOPE, "tiktok:shop:*"],
            ))
            .api_key(ApiKey::new("no-scope", NO_SCOPE_KEY, &["tiktok:shop:*"]))
            .mtls(
                "dns:order-service.internal",
                &[ROUTE_SCOPE, "tiktok:shop:*"],
            )
            .blocked_subjects(blocked)
            .upstream(Upstream::new("orders", self.orders.addr()).timeouts("500ms", "2s"))
            .route(route);
        match &self.tiktok {
            Some((sb, server)) => cfg
                .upstream(Upstream::tiktok("tiktok_api", &server.base_url()))
                .tiktok(TikTok::sandbox("main", sb, &server.base_url()).pacing("100/s", 100)),
            None => cfg
                .tiktok(
                    TikTok::new()
                        .app(TikTok::webhook_app("main", APP_KEY, APP_SECRET))
                        .developer_app("dev", DEV_CLIENT_SECRET, Some("5m")),
                )
                .webhooks(Webhooks::new(FORWARD_SECRET)),
        }
    }
}

/// The route of `kind` with everything a control request needs, before the feature is added.
fn base_route(kind: Kind) -> Route {
    let caller = Auth::api_key().scopes(&[ROUTE_SCOPE]);
    match kind {
        Proxied => Route::prefix("matrix", "public", "/orders/")
            .methods(&["GET", "POST"])
            .auth(caller)
            .upstream("orders"),
        TikTokEgress => Route::prefix("matrix", "public", "/order/")
            .methods(&["GET", "POST"])
            .auth(caller)
            .tiktok("main", None)
            .upstream("tiktok_api"),
        ShopWebhook => Route::exact("matrix", "public", "/webhooks/tiktok")
            .methods(&["POST"])
            .auth(Auth::tiktok_webhook("main"))
            .upstream("orders")
            .rewrite("/internal/tiktok/events"),
        DeveloperWebhook => Route::exact("matrix", "public", "/webhooks/tiktok-developers")
            .methods(&["POST"])
            .auth(Auth::tiktok_developer_webhook("dev"))
            .upstream("orders")
            .rewrite("/internal/tiktok/developer-events"),
    }
}

fn is_webhook(kind: Kind) -> bool {
    matches!(kind, ShopWebhook | DeveloperWebhook)
}

/// The route with `feature` configured, and the subjects to block.
fn configured(kind: Kind, feature: Feature) -> (Route, Vec<&'static str>) {
    let route = base_route(kind);
    let scoped = |auth: Auth| {
        if is_webhook(kind) {
            // Added to the webhook's own method: `validate` must refuse the mix.
            match (auth, route.auth.clone()) {
                (Auth::Rules(mut extra), Auth::Rules(own)) => {
                    extra.tiktok_webhook = own.tiktok_webhook;
                    extra.tiktok_developer_webhook = own.tiktok_developer_webhook;
                    Auth::Rules(extra)
                }
                (auth, _) => auth,
            }
        } else {
            auth.scopes(&[ROUTE_SCOPE])
        }
    };
    let limit = |key: LimitBy| {
        let key = match key {
            LimitBy::Caller => LimitKey::Caller,
            LimitBy::ApiKey => LimitKey::ApiKey,
            LimitBy::ClientIp => LimitKey::ClientIp,
            LimitBy::Shop => LimitKey::Shop,
            LimitBy::Header => LimitKey::Header(LIMIT_HEADER.into()),
            LimitBy::Route => LimitKey::Route,
        };
        RateLimit::new(key, "1/m", 1)
    };
    let blocked = match (feature, kind) {
        (KillSwitch, Proxied | TikTokEgress) => vec!["caller"],
        (KillSwitch, ShopWebhook) => vec!["tiktok-webhook:main"],
        (KillSwitch, DeveloperWebhook) => vec!["tiktok-webhook:dev"],
        _ => Vec::new(),
    };
    let route = match feature {
        AuthJwt => {
            let auth = scoped(Auth::jwt("dev"));
            route.auth(auth)
        }
        AuthApiKey => {
            let auth = scoped(Auth::api_key());
            route.auth(auth)
        }
        AuthMtls => {
            let auth = scoped(Auth::mtls());
            route.auth(auth)
        }
        AuthSignature if !is_webhook(kind) => {
            // A caller-facing route that also names a webhook signature.
            let auth = Auth::tiktok_webhook("main");
            let auth = match auth {
                Auth::Rules(mut r) => {
                    r.api_key = Some(Vec::new());
                    r.scopes = vec![ROUTE_SCOPE.into()];
                    Auth::Rules(r)
                }
                other => other,
            };
            route.auth(auth)
        }
        AuthSignature | KillSwitch => route,
        Scopes if is_webhook(kind) => {
            let auth = route.auth.clone().scopes(&[ROUTE_SCOPE]);
            route.auth(auth)
        }
        Scopes => route,
        Limit(key) => route.rate_limit(limit(key)),
        MaxBody => route.max_body("1KiB"),
        ContentTypes => route.content_types(&["application/json"]),
        JsonDepth => route.json_max_depth(4),
        Privacy => route.on_leak("block"),
    };
    (route, blocked)
}

// ---------------------------------------------------------------- requests

/// One request to the row's route.
#[derive(Debug, Clone)]
struct Call {
    method: reqwest::Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    client_cert: bool,
}

static NOTIFICATION: AtomicU64 = AtomicU64::new(7_380_066_284_010_030_000);

/// A TikTok Shop order webhook with a fresh notification id (so no two are duplicates).
fn webhook_body() -> String {
    let id = NOTIFICATION.fetch_add(1, Ordering::Relaxed);
    format!(
        r#"{{"type":1,"tts_notification_id":"{id}","shop_id":"{US_SHOP}","timestamp":1718305585,"data":{{"order_id":"576653688135258178","order_status":"UNPAID"}}}}"#
    )
}

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

impl Call {
    /// A request the route admits: the caller's key (or a valid signature), a small JSON body
    /// where the kind takes one.
    fn good(kind: Kind, fx: &Fixture) -> Call {
        match kind {
            Proxied => Call {
                method: reqwest::Method::POST,
                path: "/orders/1".into(),
                headers: vec![("x-api-key", CALLER_KEY.into())],
                content_type: Some("application/json"),
                body: Some(br#"{"order":"1"}"#.to_vec()),
                client_cert: false,
            },
            TikTokEgress => {
                let ids = fx
                    .tiktok
                    .as_ref()
                    .map(|(_, s)| s.state().order_ids(US_SHOP))
                    .unwrap_or_default();
                Call {
                    method: reqwest::Method::GET,
                    path: format!("/order/202309/orders?ids={}", ids[0]),
                    headers: vec![
                        ("x-api-key", CALLER_KEY.into()),
                        ("x-tiktok-shop-id", US_SHOP.into()),
                    ],
                    content_type: None,
                    body: None,
                    client_cert: false,
                }
            }
            ShopWebhook | DeveloperWebhook => Call {
                method: reqwest::Method::POST,
                path: base_route(kind).path_text(),
                headers: Vec::new(),
                content_type: Some("application/json"),
                body: Some(webhook_body().into_bytes()),
                client_cert: false,
            }
            .signed(kind),
        }
    }

    /// A TikTok egress call with a JSON body (order search), for the body features.
    fn egress_post(body: &[u8]) -> Call {
        Call {
            method: reqwest::Method::POST,
            path: "/order/202309/orders/search?page_size=10".into(),
            headers: vec![
                ("x-api-key", CALLER_KEY.into()),
                ("x-tiktok-shop-id", US_SHOP.into()),
            ],
            content_type: Some("application/json"),
            body: Some(body.to_vec()),
            client_cert: false,
        }
    }

    /// Signs a webhook body as TikTok does for `kind` (replacing any signature).
    fn signed(mut self, kind: Kind) -> Call {
        let body = self.body.clone().unwrap_or_default();
        self.headers
            .retain(|(n, _)| *n != "authorization" && *n != "tiktok-signature");
        match kind {
            ShopWebhook => self.headers.push((
                "authorization",
                hmac_hex(APP_SECRET, &[APP_KEY.as_bytes(), &body]),
            )),
            DeveloperWebhook => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let s = hmac_hex(DEV_CLIENT_SECRET, &[format!("{t}.").as_bytes(), &body]);
                self.headers
                    .push(("tiktok-signature", format!("t={t},s={s}")));
            }
            Proxied | TikTokEgress => {}
        }
        self
    }

    fn with_body(mut self, kind: Kind, content_type: &'static str, body: Vec<u8>) -> Call {
        self.content_type = Some(content_type);
        self.body = Some(body);
        if is_webhook(kind) {
            self.signed(kind)
        } else {
            self
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Call {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.to_owned()));
        self
    }

    fn without(mut self, name: &'static str) -> Call {
        self.headers.retain(|(n, _)| *n != name);
        self
    }

    async fn send(&self, gw: &TestGateway, port: u16) -> Answer {
        let client = if self.client_cert {
            let c = &gw.certs;
            https_client_with_cert(c, &c.client_cert, &c.client_key)
        } else {
            https_client(&gw.certs)
        };
        let mut req = client.request(
            self.method.clone(),
            format!("https://localhost:{port}{}", self.path),
        );
        for (name, value) in &self.headers {
            req = req.header(*name, value);
        }
        if let Some(ct) = self.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(body) = &self.body {
            req = req.body(body.clone());
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = res.text().await.unwrap_or_default();
        Answer {
            status,
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// The request `feature` must refuse on `kind`, and the control request it admits.
fn refused_and_control(kind: Kind, feature: Feature, fx: &Fixture) -> (Call, Call) {
    let good = Call::good(kind, fx);
    let deep = format!("{}1{}", "[".repeat(12), "]".repeat(12)).into_bytes();
    let big = {
        let mut b = br#"{"pad":""#.to_vec();
        b.extend(std::iter::repeat_n(b'a', 2048));
        b.extend_from_slice(br#""}"#);
        b
    };
    // The body features need a request with a body: on egress, an order search.
    let with_body = if kind == TikTokEgress {
        Call::egress_post(b"{}")
    } else {
        good.clone()
    };
    let bad = match feature {
        AuthJwt => good.clone().without("x-api-key"),
        AuthApiKey => good.clone().header("x-api-key", &format!("{CALLER_KEY}x")),
        AuthMtls => good.clone().without("x-api-key"),
        AuthSignature => {
            let mut c = good.clone();
            for (_, v) in c.headers.iter_mut() {
                if v.contains("s=") {
                    *v = v.replace("s=", "s=00");
                } else if v.len() == 64 {
                    *v = "0".repeat(64);
                }
            }
            c
        }
        Scopes => good.clone().header("x-api-key", NO_SCOPE_KEY),
        KillSwitch | Limit(_) | Privacy => good.clone(),
        MaxBody => with_body.clone().with_body(kind, "application/json", big),
        ContentTypes => with_body
            .clone()
            .with_body(kind, "text/plain", b"plain text".to_vec()),
        JsonDepth => with_body.clone().with_body(kind, "application/json", deep),
    };
    let control = match feature {
        // The same route admits the caller once it presents what the feature asks for.
        AuthJwt => {
            let token = fx
                .signer
                .mint(&tiktok_gateway::sandbox::idp::MintRequest {
                    sub: Some("matrix-jwt-caller".into()),
                    scope: Some(format!("{ROUTE_SCOPE} tiktok:shop:*")),
                    ..Default::default()
                })
                .expect("mint");
            good.clone()
                .without("x-api-key")
                .header("authorization", &format!("Bearer {token}"))
        }
        AuthMtls => Call {
            client_cert: true,
            ..good.clone().without("x-api-key")
        },
        MaxBody | ContentTypes | JsonDepth if kind == TikTokEgress => with_body,
        MaxBody | ContentTypes | JsonDepth if is_webhook(kind) => Call::good(kind, fx),
        _ => good,
    };
    (bad, control)
}

// ---------------------------------------------------------------- the driver

async fn run(kind: Kind, feature: Feature, expect: Expect) {
    let fx = Fixture::start(kind).await;
    let (route, blocked) = configured(kind, feature);
    let cfg = fx.config(route, &blocked);
    match expect {
        Invalid(setting) => assert_validate_refuses(&cfg, kind, feature, setting),
        Refused(status, code) => {
            let gw = TestGateway::with(&cfg);
            match feature {
                Limit(_) => limited(&fx, &gw, kind, feature, status, code).await,
                Privacy => privacy_blocked(&fx, &gw, kind, status, code).await,
                _ => refused_then_control(&fx, &gw, kind, feature, status, code).await,
            }
        }
    }
}

/// `validate` exits non-zero and names the route and the setting.
fn assert_validate_refuses(cfg: &Config, kind: Kind, feature: Feature, setting: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    tiktok_gateway::server::dev_certs::generate(dir.path()).expect("dev certs");
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, cfg.render(dir.path())).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("run validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "{kind:?} x {feature:?}: validate accepted a setting that cannot apply:\n{text}"
    );
    assert!(
        text.contains(&format!("routes[0].{setting}")),
        "{kind:?} x {feature:?}: the refusal does not name routes[0].{setting}:\n{text}"
    );
}

fn assert_answer(a: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!(a.status, status, "{what}: {a:?}");
    assert_eq!(a.code(), code, "{what}: {a:?}");
}

/// Waits (bounded) until the upstream has received `n` requests; webhooks are delivered from
/// the queue, a moment after their acknowledgement.
async fn wait_reached(fx: &Fixture, n: usize, what: &str) {
    for _ in 0..100 {
        if fx.reached() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fx.reached(), n, "{what}");
}

/// For webhooks, a refused event must not sit in the queue to be delivered later. An accepted
/// event delivered a moment ago leaves the queue once the order service's answer is in, so the
/// depth is given a bounded moment to settle.
async fn assert_nothing_queued(gw: &TestGateway, kind: Kind, what: &str) {
    if !is_webhook(kind) {
        return;
    }
    let depth = || async {
        match gw.gateway.tiktok.webhooks.as_ref() {
            Some(w) => w.queue.refresh_stats().await.map(|s| s.live).unwrap_or(0),
            None => 0,
        }
    };
    for _ in 0..40 {
        if depth().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(depth().await, 0, "{what}: a refused webhook was queued");
}

async fn refused_then_control(
    fx: &Fixture,
    gw: &TestGateway,
    kind: Kind,
    feature: Feature,
    status: u16,
    code: &str,
) {
    let what = format!("{kind:?} x {feature:?}");
    let (bad, control) = refused_and_control(kind, feature, fx);
    let a = bad.send(gw, fx.port).await;
    assert_answer(&a, status, code, &what);
    assert_nothing_queued(gw, kind, &what).await;
    assert_eq!(
        fx.reached(),
        0,
        "{what}: the refused request reached the upstream"
    );

    let ok = control.send(gw, fx.port).await;
    if feature == KillSwitch {
        // The block holds whatever the caller presents; nothing passes.
        assert_answer(&ok, status, code, &format!("{what} (again)"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            fx.reached(),
            0,
            "{what}: a blocked caller reached the upstream"
        );
        return;
    }
    assert_eq!(ok.status, 200, "{what}: the control request: {ok:?}");
    wait_reached(fx, 1, &format!("{what}: only the control request arrives")).await;
    if is_webhook(kind) {
        // The one delivery is the control event, not the refused one.
        let got = fx.orders.received();
        assert_eq!(
            got[0].body.as_ref(),
            control.body.as_deref().unwrap_or_default(),
            "{what}: the delivered event is not the control"
        );
    }
}

/// `1/m`, burst 1: the first request passes, the second is refused with `Retry-After`.
async fn limited(
    fx: &Fixture,
    gw: &TestGateway,
    kind: Kind,
    feature: Feature,
    status: u16,
    code: &str,
) {
    let what = format!("{kind:?} x {feature:?}");
    let call = |fx: &Fixture| {
        let c = Call::good(kind, fx).header(LIMIT_HEADER, "tenant-a");
        // Webhooks: a fresh event each time (same signature scheme), never a duplicate.
        if is_webhook(kind) {
            c.with_body(kind, "application/json", webhook_body().into_bytes())
        } else {
            c
        }
    };
    let first = call(fx).send(gw, fx.port).await;
    assert_eq!(first.status, 200, "{what}: the first request: {first:?}");
    wait_reached(fx, 1, &format!("{what}: the first request arrives")).await;
    let second = call(fx).send(gw, fx.port).await;
    assert_answer(&second, status, code, &what);
    let retry: u64 = second
        .retry_after
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Retry-After in seconds: {second:?}"));
    assert!(retry >= 1, "{what}: Retry-After {retry}");
    assert_nothing_queued(gw, kind, &what).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        fx.reached(),
        1,
        "{what}: the refused request reached the upstream"
    );
}

/// `on_leak: block` on egress: the response carrying buyer PII is refused. The request did
/// reach TikTok (the response is what is judged); what must not pass is the data.
async fn privacy_blocked(fx: &Fixture, gw: &TestGateway, kind: Kind, status: u16, code: &str) {
    let what = format!("{kind:?} x Privacy");
    let a = Call::good(kind, fx).send(gw, fx.port).await;
    assert_answer(&a, status, code, &what);
    let keys: Vec<&String> = a
        .body
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        ["error"],
        "{what}: only the error reaches the caller: {a:?}"
    );
    assert_eq!(fx.reached(), 1, "{what}: the call was made once");
}
