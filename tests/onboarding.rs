//! Seller authorization end to end against the TikTok sandbox: an admin asks for a link
//! (`POST /admin/shops/authorize`, mTLS + MFA), the seller's browser goes to TikTok's
//! authorization page and comes back to the callback route with `code` and `state`; the gateway
//! exchanges the code, lists the shops and stores their tokens sealed, and the new shop is usable
//! at once by callers holding its scope. Forged, replayed and expired states, used codes and a
//! failing token host are refused with nothing stored; a revocation webhook (type 6) makes the
//! next call to the shop a 403 that never reaches TikTok.

#![cfg(feature = "demo")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use common::{
    Admin, ApiKey, Auth, Config, JwtIssuer, Listener, Route, State, TestGateway, TikTok, Upstream,
    Webhooks, database_url, free_port, http_client, https_client, https_client_with_cert,
};
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::sandbox::idp::{DevIdp, MintRequest};
use tiktok_gateway::sandbox::orders::OrderService;
use tiktok_gateway::sandbox::tiktok::{
    self as sandbox, ONBOARDING_SHOP, SandboxConfig, TikTokSandbox,
};
use tiktok_gateway::state::AuthorizationState;
use tiktok_gateway::tiktok::authorization::state_key;

const GB: &str = ONBOARDING_SHOP;
const US: &str = "7494049642642441621";
const KEY_GB: &str = "key-for-the-gb-shop-001";
const KEY_US: &str = "key-for-the-us-shop-001";
const TOKEN_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const FORWARD_SECRET: &str = "order-service-shared-secret";

struct Ports {
    egress: u16,
    public: u16,
    admin: u16,
}

impl Ports {
    fn free() -> Self {
        Self {
            egress: free_port(),
            public: free_port(),
            admin: free_port(),
        }
    }
}

fn config(
    ports: &Ports,
    sb: &SandboxConfig,
    base: &str,
    idp: &DevIdp,
    orders: &OrderService,
) -> Config {
    config_with_state(
        ports,
        sb,
        base,
        idp,
        orders,
        State::embedded(std::path::Path::new("state.redb")),
    )
}

fn config_with_state(
    ports: &Ports,
    sb: &SandboxConfig,
    base: &str,
    idp: &DevIdp,
    orders: &OrderService,
    state: State,
) -> Config {
    // The gateway knows the sandbox's shops except the one a seller onboards.
    let view = sb.without_onboarding_shop();
    Config::new()
        .listener(Listener::plain("egress", ports.egress))
        .listener(Listener::plain("public", ports.public))
        .listener(Listener::tls("admin", ports.admin).client_auth("required"))
        .jwt(JwtIssuer::url("corp", idp))
        .admin(Admin {
            jwt: "corp".into(),
            scope: Some("gateway:admin".into()),
            mfa_methods: vec!["mfa".into(), "hwk".into()],
        })
        .api_key(ApiKey::new(
            "gb-only",
            KEY_GB,
            &["orders:read", &format!("tiktok:shop:{GB}")],
        ))
        .api_key(ApiKey::new(
            "us-only",
            KEY_US,
            &["orders:read", &format!("tiktok:shop:{US}")],
        ))
        .upstream(Upstream::tiktok("tiktok_api", base))
        .upstream(Upstream::new("orders", orders.addr()))
        .tiktok(
            TikTok::sandbox("main", &view, base)
                .authorize_url("main", &format!("{base}/oauth/authorize"))
                .token_store_key(TOKEN_KEY)
                .pacing("100/s", 100),
        )
        .state(state.poll_interval("100ms"))
        .webhooks(Webhooks::new(FORWARD_SECRET))
        .route(
            Route::prefix("tiktok", "egress", "/")
                .methods(&["GET", "POST"])
                .auth(Auth::api_key().scopes(&["orders:read"]))
                .tiktok("main", Some("x-tiktok-shop-id"))
                .upstream("tiktok_api"),
        )
        .route(
            Route::exact("tiktok-authorized", "public", "/tiktok/authorized")
                .methods(&["GET"])
                .auth(Auth::None)
                .tiktok_authorization("main")
                .upstream("tiktok_api"),
        )
        .route(
            Route::exact("tiktok-webhooks", "public", "/webhooks/tiktok")
                .methods(&["POST"])
                .auth(Auth::tiktok_webhook("main"))
                .upstream("orders")
                .rewrite("/internal/tiktok/events"),
        )
}

struct Setup {
    gw: TestGateway,
    sandbox: TikTokSandbox,
    sb: SandboxConfig,
    idp: DevIdp,
    _orders: OrderService,
    ports: Ports,
}

async fn setup() -> Setup {
    let sb = SandboxConfig::example(11).with_onboarding_shop();
    let sandbox = sandbox::spawn(sb.clone()).await.unwrap();
    let idp = DevIdp::start(Arc::new(SystemClock)).await.unwrap();
    let orders = OrderService::spawn(None).await.unwrap();
    let ports = Ports::free();
    let gw = TestGateway::with(&config(&ports, &sb, &sandbox.base_url(), &idp, &orders));
    sandbox.state().set_redirect_uri(&format!(
        "http://127.0.0.1:{}/tiktok/authorized",
        ports.public
    ));
    Setup {
        gw,
        sandbox,
        sb,
        idp,
        _orders: orders,
        ports,
    }
}

fn admin_token(idp: &DevIdp, scope: &str, amr: &[&str]) -> String {
    idp.mint(&MintRequest {
        sub: Some("ops-alice".into()),
        scope: Some(scope.into()),
        amr: Some(amr.iter().map(|a| a.to_string()).collect()),
        ..MintRequest::default()
    })
    .unwrap()
}

async fn json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

impl Setup {
    fn admin_client(&self) -> reqwest::Client {
        let c = &self.gw.certs;
        https_client_with_cert(c, &c.client_cert, &c.client_key)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.ports.admin)
    }

    /// `POST /admin/shops/authorize` as an MFA-proven admin: the link.
    async fn link(&self) -> String {
        let token = admin_token(&self.idp, "gateway:admin", &["pwd", "hwk"]);
        let res = self
            .admin_client()
            .post(self.admin_url("/admin/shops/authorize"))
            .bearer_auth(token)
            .body(r#"{"app":"main"}"#)
            .send()
            .await
            .unwrap();
        let (status, body) = json(res).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["expires_at"].as_i64().unwrap() > 0, "{body}");
        body["url"].as_str().unwrap().to_owned()
    }

    async fn admin_shops(&self) -> Value {
        let token = admin_token(&self.idp, "gateway:admin", &["mfa"]);
        let res = self
            .admin_client()
            .get(self.admin_url("/admin/shops"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let (status, body) = json(res).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The seller opens the link; TikTok's page redirects back: the callback URL.
    async fn consent(&self, link: &str) -> String {
        let no_redirects = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let res = no_redirects.get(link).send().await.unwrap();
        assert_eq!(res.status(), 302, "{link}");
        res.headers()["location"].to_str().unwrap().to_owned()
    }

    async fn callback(&self, url: &str) -> (u16, Value) {
        json(http_client().get(url).send().await.unwrap()).await
    }

    fn callback_url(&self, code: &str, state: &str) -> String {
        format!(
            "http://127.0.0.1:{}/tiktok/authorized?code={code}&state={state}",
            self.ports.public
        )
    }

    /// The whole flow: link, consent, callback.
    async fn onboard(&self) -> String {
        let link = self.link().await;
        let back = self.consent(&link).await;
        let (status, body) = self.callback(&back).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["shops"][0]["id"], GB, "{body}");
        assert_eq!(body["shops"][0]["region"], "GB", "{body}");
        back
    }

    async fn egress(&self, key: &str, shop: &str) -> (u16, Value) {
        egress(self.ports.egress, key, shop).await
    }

    async fn shop_version(&self) -> u64 {
        self.gw.gateway.state.store.shop_version().await.unwrap()
    }

    /// A TikTok Shop webhook signed with the sandbox app's secret.
    async fn webhook(&self, kind: u32, shop: &str, id: &str) -> u16 {
        use hmac::{Hmac, Mac};
        let body = format!(
            r#"{{"type":{kind},"tts_notification_id":"{id}","shop_id":"{shop}","timestamp":1718305585,"data":{{}}}}"#
        );
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(self.sb.app_secret.expose().as_bytes()).unwrap();
        mac.update(self.sb.app_key.as_bytes());
        mac.update(body.as_bytes());
        http_client()
            .post(format!(
                "http://127.0.0.1:{}/webhooks/tiktok",
                self.ports.public
            ))
            .header("content-type", "application/json")
            .header("authorization", hex::encode(mac.finalize().into_bytes()))
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

async fn egress(port: u16, key: &str, shop: &str) -> (u16, Value) {
    let res = http_client()
        .post(format!(
            "http://127.0.0.1:{port}/order/202309/orders/search?page_size=5"
        ))
        .header("x-api-key", key)
        .header("x-tiktok-shop-id", shop)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    json(res).await
}

fn query_param(url: &str, name: &str) -> String {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_onboarded_through_the_link_is_usable_at_once_by_callers_with_its_scope() {
    let s = setup().await;
    // Before: the gateway does not know the shop.
    let (status, body) = s.egress(KEY_GB, GB).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("unknown_shop")),
        "{body}"
    );

    let link = s.link().await;
    assert!(
        link.starts_with(&format!("{}/oauth/authorize?", s.sandbox.base_url())),
        "{link}"
    );
    assert_eq!(query_param(&link, "app_key"), s.sb.app_key);
    assert_eq!(query_param(&link, "state").len(), 43);
    let back = s.consent(&link).await;
    assert_eq!(query_param(&back, "state"), query_param(&link, "state"));
    let (status, body) = s.callback(&back).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["shops"][0]["id"], GB, "{body}");
    assert!(
        !body.to_string().contains("TTP_"),
        "no token in the answer: {body}"
    );

    // No restart, no config change: the caller holding the shop's scope goes through; TikTok
    // (the sandbox) accepted the cipher and the token the gateway injected.
    let (status, body) = s.egress(KEY_GB, GB).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 0, "{body}");
    let last = s.sandbox.state().records().pop().unwrap();
    assert!(last.query.unwrap().contains("shop_cipher=GCP_sbxGB_"));
    // Another shop's caller may not act for it; configured shops keep working.
    let (status, body) = s.egress(KEY_US, GB).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("shop_forbidden")),
        "{body}"
    );
    assert_eq!(s.egress(KEY_US, US).await.0, 200);

    // The admin list: the new shop with its region and expiries, never a token.
    let shops = s.admin_shops().await;
    let text = shops.to_string();
    assert!(!text.contains("TTP_"), "{text}");
    let gb = shops["shops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == GB)
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(gb["status"], "active", "{gb}");
    assert_eq!(gb["region"], "GB", "{gb}");
    assert_eq!(gb["source"], "authorization", "{gb}");
    assert_eq!(gb["changed_by"], "ops-alice", "{gb}");
    assert!(gb["access_token_expires_at"].as_i64().unwrap() > 0, "{gb}");
    assert!(gb["refresh_token_expires_at"].as_i64().unwrap() > 0, "{gb}");
    let us = shops["shops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == US)
        .unwrap();
    assert_eq!(
        (us["status"].as_str(), us["source"].as_str()),
        (Some("active"), Some("config"))
    );

    // The tokens are in the state store, sealed.
    let sealed =
        s.gw.gateway
            .state
            .store
            .load_tokens(GB)
            .await
            .unwrap()
            .unwrap();
    assert!(!String::from_utf8_lossy(&sealed.sealed).contains("TTP_"));

    // The callback URL again (a replay): refused before any exchange, nothing stored.
    let (exchanges, version) = (s.sandbox.state().token_get_count(), s.shop_version().await);
    let (status, body) = s.callback(&back).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_state")),
        "{body}"
    );
    assert_eq!(
        s.sandbox.state().token_get_count(),
        exchanges,
        "no exchange on a replay"
    );
    assert_eq!(
        s.shop_version().await,
        version,
        "nothing stored on a replay"
    );
    // The auth code never reaches the access log (only query keys are logged).
    let code = query_param(&back, "code");
    let log = s.gw.access_log_when(|l| l.contains("tiktok-authorized"));
    assert!(!log.contains(&code), "{log}");
    assert!(!log.contains(s.sb.app_secret.expose()), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_expired_states_are_refused_before_any_exchange_and_nothing_is_stored() {
    let s = setup().await;
    let version = s.shop_version().await;
    // Forged: a real, unused code with a state the gateway never issued.
    let code = s.sandbox.state().issue_auth_code(GB).unwrap();
    for forged in [
        "forged-state",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let (status, body) = s.callback(&s.callback_url(code.expose(), forged)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_state")),
            "{body}"
        );
    }
    // Missing or repeated parameters.
    for url in [
        format!(
            "http://127.0.0.1:{}/tiktok/authorized?code=x",
            s.ports.public
        ),
        format!(
            "http://127.0.0.1:{}/tiktok/authorized?state=x",
            s.ports.public
        ),
        s.callback_url(&format!("{}&code=y", code.expose()), "s"),
    ] {
        let (status, body) = s.callback(&url).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_state")),
            "{body}"
        );
    }
    // Expired: a state the store holds, past its expiry.
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let store = &s.gw.gateway.state.store;
    store
        .put_authorization_state(
            &state_key("an-expired-state-value"),
            &AuthorizationState {
                subject: "ops-alice".into(),
                app: "main".into(),
                expires_at: now_ms - 1,
            },
            now_ms - 600_000,
        )
        .await
        .unwrap();
    let (status, body) = s
        .callback(&s.callback_url(code.expose(), "an-expired-state-value"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_state")),
        "{body}"
    );

    assert_eq!(
        s.sandbox.state().token_get_count(),
        0,
        "no code was exchanged"
    );
    assert_eq!(s.shop_version().await, version, "no shop stored");
    assert!(
        store.load_tokens(GB).await.unwrap().is_none(),
        "no tokens stored"
    );
    let (status, body) = s.egress(KEY_GB, GB).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("unknown_shop")),
        "{body}"
    );
    // The code was not spent: a real link still onboards the shop with it.
    let link = s.link().await;
    let (status, body) = s
        .callback(&s.callback_url(code.expose(), &query_param(&link, "state")))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_code_or_a_failing_token_host_is_refused_and_nothing_is_stored() {
    let s = setup().await;
    let version = s.shop_version().await;
    // A code someone already exchanged: TikTok answers 36004004.
    let code = s.sandbox.state().issue_auth_code(GB).unwrap();
    let spent = http_client()
        .get(format!(
            "{}/api/v2/token/get?app_key={}&app_secret={}&auth_code={}&grant_type=authorized_code",
            s.sandbox.base_url(),
            s.sb.app_key,
            s.sb.app_secret.expose(),
            code.expose()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(json(spent).await.1["code"], 0);
    let link = s.link().await;
    let (status, body) = s
        .callback(&s.callback_url(code.expose(), &query_param(&link, "state")))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("auth_code_rejected")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("36004004"),
        "{body}"
    );

    // The token host fails.
    s.sandbox.state().set_token_host_down(true);
    let back = s.consent(&s.link().await).await;
    let (status, body) = s.callback(&back).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("token_host_error")),
        "{body}"
    );
    let text = body.to_string();
    assert!(
        !text.contains(s.sb.app_secret.expose()) && !text.contains("api/v2"),
        "{text}"
    );

    assert_eq!(s.shop_version().await, version, "no shop stored");
    assert!(
        s.gw.gateway
            .state
            .store
            .load_tokens(GB)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.egress(KEY_GB, GB).await.0, 403);
    // A used state stays used even though the exchange failed.
    s.sandbox.state().set_token_host_down(false);
    let (status, _) = s.callback(&back).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_webhook_makes_the_next_call_a_403_that_never_reaches_tiktok() {
    let s = setup().await;
    s.onboard().await;
    assert_eq!(s.egress(KEY_GB, GB).await.0, 200);

    // Type 7 (expiring): counted and audited, the shop keeps working.
    let expiring = tiktok_gateway::tiktok::shops::authorization_expiring()
        .with_label_values(&[GB])
        .get();
    assert_eq!(s.webhook(7, GB, "n-expiring-1").await, 200);
    assert_eq!(
        tiktok_gateway::tiktok::shops::authorization_expiring()
            .with_label_values(&[GB])
            .get(),
        expiring + 1
    );
    assert_eq!(s.egress(KEY_GB, GB).await.0, 200);

    // Type 6 (revoked).
    assert_eq!(s.webhook(6, GB, "n-revoked-1").await, 200);
    let seen = s.sandbox.state().request_count();
    let (status, body) = s.egress(KEY_GB, GB).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("shop_revoked")),
        "{body}"
    );
    assert_eq!(
        s.sandbox.state().request_count(),
        seen,
        "nothing reached TikTok"
    );
    assert!(
        s.gw.gateway
            .state
            .store
            .load_tokens(GB)
            .await
            .unwrap()
            .is_none(),
        "tokens deleted"
    );
    let shops = s.admin_shops().await;
    let gb = shops["shops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == GB)
        .unwrap()
        .clone();
    assert_eq!(gb["status"], "revoked", "{gb}");
    assert_eq!(gb["changed_by"], "tiktok-webhook:main", "{gb}");
    assert!(gb["access_token_expires_at"].is_null(), "{gb}");
    // A replayed revocation is acknowledged again; other shops are untouched.
    assert_eq!(s.webhook(6, GB, "n-revoked-1").await, 200);
    assert_eq!(s.egress(KEY_US, US).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_revokes_a_configured_shop_and_unknown_shops_are_404() {
    let s = setup().await;
    assert_eq!(s.egress(KEY_US, US).await.0, 200);
    let token = admin_token(&s.idp, "gateway:admin", &["mfa"]);
    let res = s
        .admin_client()
        .post(s.admin_url(&format!("/admin/shops/{US}/revoke")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("revoked")),
        "{body}"
    );
    let seen = s.sandbox.state().request_count();
    let (status, body) = s.egress(KEY_US, US).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("shop_revoked")),
        "{body}"
    );
    assert_eq!(
        s.sandbox.state().request_count(),
        seen,
        "nothing reached TikTok"
    );
    for id in ["123", "..", "a%2Fb"] {
        let res = s
            .admin_client()
            .post(s.admin_url(&format!("/admin/shops/{id}/revoke")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{id}");
    }
    // An unknown app gets no link.
    let res = s
        .admin_client()
        .post(s.admin_url("/admin/shops/authorize"))
        .bearer_auth(&token)
        .body(r#"{"app":"nope"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_endpoints_need_a_client_certificate_mfa_and_the_admin_scope() {
    let s = setup().await;
    let good = admin_token(&s.idp, "gateway:admin", &["mfa"]);
    let no_mfa = admin_token(&s.idp, "gateway:admin", &["pwd"]);
    let no_scope = admin_token(&s.idp, "orders:read", &["mfa"]);
    let endpoints = [
        (reqwest::Method::POST, "/admin/shops/authorize"),
        (reqwest::Method::GET, "/admin/shops"),
        (
            reqwest::Method::POST,
            "/admin/shops/7494049642642441621/revoke",
        ),
    ];
    for (method, path) in &endpoints {
        // No client certificate: the handshake itself fails.
        let res = https_client(&s.gw.certs)
            .request(method.clone(), s.admin_url(path))
            .bearer_auth(&good)
            .body(r#"{"app":"main"}"#)
            .send()
            .await;
        assert!(
            res.is_err() || res.unwrap().status() == 401,
            "{path} without a certificate"
        );
        for (token, what) in [
            (None, "no token"),
            (Some(&no_mfa), "no MFA"),
            (Some(&no_scope), "no admin scope"),
        ] {
            let mut req = s
                .admin_client()
                .request(method.clone(), s.admin_url(path))
                .body(r#"{"app":"main"}"#);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let (status, body) = json(req.send().await.unwrap()).await;
            assert!(
                status == 401 || status == 403,
                "{path} {what}: {status} {body}"
            );
            assert_eq!(
                body["error"]["code"], "invalid_credentials",
                "{path} {what}: {body}"
            );
            assert!(
                body.get("url").is_none() && body.get("shops").is_none(),
                "{body}"
            );
        }
    }
    // Nothing was revoked by the refused calls.
    assert_eq!(s.egress(KEY_US, US).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_shop_onboarded_on_one_replica_is_served_and_revoked_on_another() {
    let Some(url) = database_url() else { return };
    let schema = format!("tgw_onboard_{:016x}", rand::random::<u64>());
    let sb = SandboxConfig::example(12).with_onboarding_shop();
    let sandbox = sandbox::spawn(sb.clone()).await.unwrap();
    let idp = DevIdp::start(Arc::new(SystemClock)).await.unwrap();
    let orders = OrderService::spawn(None).await.unwrap();
    let replica = |ports: Ports| {
        let config = config_with_state(
            &ports,
            &sb,
            &sandbox.base_url(),
            &idp,
            &orders,
            State::postgres(&url, &schema),
        );
        (TestGateway::with(&config), ports)
    };
    let (a, a_ports) = replica(Ports::free());
    let (_b, b_ports) = replica(Ports::free());
    sandbox.state().set_redirect_uri(&format!(
        "http://127.0.0.1:{}/tiktok/authorized",
        a_ports.public
    ));
    let s = Setup {
        gw: a,
        sandbox,
        sb: sb.clone(),
        idp,
        _orders: orders,
        ports: a_ports,
    };
    // The link from replica A; B has never seen the shop and learns it from the store.
    s.onboard().await;
    let (status, body) = egress(b_ports.egress, KEY_GB, GB).await;
    assert_eq!(status, 200, "{body}");
    // Revoked through A: B refuses it once it polled the shop list (bounded wait).
    assert_eq!(s.webhook(6, GB, "pg-revoked-1").await, 200);
    let mut last = (0, Value::Null);
    for _ in 0..100 {
        last = egress(b_ports.egress, KEY_GB, GB).await;
        if last.0 == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (last.0, last.1["error"]["code"].as_str()),
        (403, Some("shop_revoked")),
        "{}",
        last.1
    );
    drop(s);
    drop(_b);
    drop_schema(&url, &schema).await;
}

/// `validate` (load and compile) on a config with a callback route changed by `edit`.
fn validate_callback(edit: impl Fn(&str) -> String) -> Result<(), String> {
    let base = r#"listeners:
  public: { address: "127.0.0.1:8443" }
upstreams:
  tiktok_api: { targets: ["127.0.0.1:9"] }
tiktok:
  apps:
    main: { app_key: k, app_secret: "${env:PATH}", api_base: "http://127.0.0.1:9", auth_base: "http://127.0.0.1:9" }
  token_store: { key: "${file:key}" }
state: { backend: embedded, path: state.redb }
routes:
  - name: authorized
    listener: public
    match: { path: /tiktok/authorized, methods: [GET] }
    auth: none
    tiktok_authorization: { app: main }
    upstream: tiktok_api
"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), TOKEN_KEY).unwrap();
    let text = edit(base);
    tiktok_gateway::config::load_str(&text, dir.path(), &dir.path().join("g.yaml"))
        .and_then(|c| {
            tiktok_gateway::gateway::snapshot::check(c, Arc::new(SystemClock)).map(|_| ())
        })
        .map_err(|e| e.to_string())
}

#[test]
fn validation_refuses_a_callback_route_that_makes_no_sense() {
    validate_callback(str::to_owned).expect("the plain callback route is valid");
    let refused = [
        (
            (
                "tiktok_authorization: { app: main }",
                "tiktok_authorization: { app: nope }",
            ),
            "unknown TikTok app `nope`",
        ),
        (("auth: none", "auth: { jwt: corp }"), "write `auth: none`"),
        (
            ("  token_store: { key: \"${file:key}\" }\n", ""),
            "configure `tiktok.token_store`",
        ),
        (
            (
                "address: \"127.0.0.1:8443\" }",
                "address: \"0.0.0.0:8443\", allow_plaintext: true }",
            ),
            "serve it on a TLS listener",
        ),
        (
            (
                "    tiktok_authorization: { app: main }\n",
                "    tiktok_authorization: { app: main }\n    tiktok: { app: main }\n",
            ),
            "not both",
        ),
        (
            (
                "    upstream: tiktok_api\n",
                "    upstream: tiktok_api\n    forward_authorization: true\n",
            ),
            "nothing is forwarded",
        ),
    ];
    for ((from, to), expected) in refused {
        let err = validate_callback(|b| b.replace(from, to)).expect_err(expected);
        assert!(err.contains(expected), "{expected}: {err}");
    }
    // The authorization page and the token host take https (http only on loopback).
    let err = validate_callback(|b| {
        b.replace(
            "auth_base: \"http://127.0.0.1:9\" }",
            "auth_base: \"http://127.0.0.1:9\", authorize_url: \"http://tiktok.example/oauth\" }",
        )
    })
    .expect_err("plaintext authorize_url");
    assert!(err.contains("tiktok.apps.main.authorize_url"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_onboarded_shop_and_a_revocation_survive_a_restart() {
    // On Postgres: a second gateway in one test process cannot reopen the first one's embedded
    // file (the process-wide token-expiry gauges keep the first gateway's token manager, and so
    // its store, alive).
    let Some(url) = database_url() else { return };
    let schema = format!("tgw_onboard_{:016x}", rand::random::<u64>());
    let sb = SandboxConfig::example(13).with_onboarding_shop();
    let sandbox = sandbox::spawn(sb.clone()).await.unwrap();
    let idp = DevIdp::start(Arc::new(SystemClock)).await.unwrap();
    let orders = OrderService::spawn(None).await.unwrap();
    let start = |ports: Ports| {
        let config = config_with_state(
            &ports,
            &sb,
            &sandbox.base_url(),
            &idp,
            &orders,
            State::postgres(&url, &schema),
        );
        (TestGateway::with(&config), ports)
    };
    let (gw, ports) = start(Ports::free());
    sandbox.state().set_redirect_uri(&format!(
        "http://127.0.0.1:{}/tiktok/authorized",
        ports.public
    ));
    let s = Setup {
        gw,
        sandbox,
        sb: sb.clone(),
        idp,
        _orders: orders,
        ports,
    };
    s.onboard().await;
    assert_eq!(s.egress(KEY_GB, GB).await.0, 200);
    // The configured US shop is revoked by an admin before the restart.
    let token = admin_token(&s.idp, "gateway:admin", &["mfa"]);
    let res = s
        .admin_client()
        .post(s.admin_url(&format!("/admin/shops/{US}/revoke")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let Setup {
        gw,
        sandbox,
        idp,
        _orders: orders,
        ..
    } = s;
    drop(gw);

    // Same state file, same config: the onboarded shop is served from its stored tokens, the
    // revoked configured shop stays refused.
    let ports = Ports::free();
    let config = config_with_state(
        &ports,
        &sb,
        &sandbox.base_url(),
        &idp,
        &orders,
        State::postgres(&url, &schema),
    );
    let gw = TestGateway::with(&config);
    let (status, body) = egress(ports.egress, KEY_GB, GB).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = egress(ports.egress, KEY_US, US).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("shop_revoked")),
        "{body}"
    );
    drop(gw);
    drop_schema(&url, &schema).await;
}

async fn drop_schema(url: &str, schema: &str) {
    if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        let driver = tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await;
        drop(client);
        let _ = driver.await;
    }
}
