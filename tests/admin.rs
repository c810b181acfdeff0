//! The admin listener end to end (policy §6): `GET /admin/status` needs a client certificate
//! from the gateway CA (the listener requires one) AND a JWT with an MFA `amr` and the admin
//! scope. The admin app has no upstream; the order service behind the proxy route is checked
//! to stay untouched all the same.

// The sandboxes these tests run against exist only with the `demo` feature (a default one).
#![cfg(feature = "demo")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;

use common::{
    Admin, Auth, Config, JwtIssuer, Listener, Route, TestGateway, Upstream, free_port,
    https_client, https_client_with_cert,
};
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::sandbox::idp::{DevAlg, DevIdp, MintRequest};
use tiktok_gateway::sandbox::orders::OrderService;

fn config(public: u16, admin: u16, idp: &DevIdp, orders: SocketAddr) -> Config {
    Config::new()
        .version("admin-t1")
        .listener(Listener::tls("public", public))
        .listener(Listener::tls("admin", admin).client_auth("required"))
        .jwt(JwtIssuer::url("corp", idp))
        .admin(Admin {
            jwt: "corp".into(),
            scope: Some("gateway:admin".into()),
            mfa_methods: vec!["mfa".into(), "hwk".into()],
        })
        .upstream(Upstream::new("orders", orders))
        .route(
            Route::prefix("orders", "public", "/orders/")
                .auth(Auth::jwt("corp").scopes(&["orders:read"]))
                .upstream("orders"),
        )
}

struct Setup {
    gw: TestGateway,
    /// What the gateway was started with, for reloads.
    config: Config,
    orders: OrderService,
    idp: DevIdp,
    admin: u16,
}

async fn setup() -> Setup {
    let orders = OrderService::spawn(None).await.unwrap();
    let idp = DevIdp::start(Arc::new(SystemClock)).await.unwrap();
    let (public, admin) = (free_port(), free_port());
    let addr = orders.addr();
    let config = config(public, admin, &idp, addr);
    let gw = TestGateway::with(&config);
    Setup {
        gw,
        config,
        orders,
        idp,
        admin,
    }
}

impl Setup {
    fn status_url(&self) -> String {
        format!("https://localhost:{}/admin/status", self.admin)
    }

    fn with_cert(&self) -> reqwest::Client {
        let c = &self.gw.certs;
        https_client_with_cert(c, &c.client_cert, &c.client_key)
    }

    fn token(&self, scope: &str, amr: &[&str]) -> String {
        self.idp
            .mint(&MintRequest {
                sub: Some("ops-alice".into()),
                scope: Some(scope.into()),
                amr: Some(amr.iter().map(|a| a.to_string()).collect()),
                ..MintRequest::default()
            })
            .unwrap()
    }
}

/// Checks an admin refusal: exactly `status`, the admin app's JSON error, and none of the
/// fields a successful `/admin/status` answer carries (so the status handler did not run).
/// Returns the `WWW-Authenticate` challenge.
async fn assert_admin_refused(res: reqwest::Response, status: u16, what: &str) -> String {
    assert_eq!(res.status(), status, "{what}");
    assert_eq!(res.headers()["cache-control"], "no-store", "{what}");
    let www = res
        .headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: no www-authenticate"))
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["error"]["code"], "invalid_credentials",
        "{what}: {body}"
    );
    for field in [
        "config",
        "routes",
        "jwt_key_ids",
        "uptime_seconds",
        "webhook_queue_depth",
    ] {
        assert!(
            body.get(field).is_none(),
            "{what}: the status handler ran: {body}"
        );
    }
    www
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_token_with_admin_scope_and_client_cert_gets_status() {
    let s = setup().await;
    let token = s.token("gateway:admin", &["pwd", "hwk"]);
    let res = s
        .with_cert()
        .get(s.status_url())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["config"]["version"], "admin-t1");
    let hash = body["config"]["hash"].as_str().unwrap();
    assert!(!hash.is_empty(), "config hash missing");
    let routes = body["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["name"], "orders");
    assert_eq!(routes[0]["upstream"], "orders");
    let kids: Vec<&str> = body["jwt_key_ids"]["corp"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for alg in [DevAlg::ES256, DevAlg::RS256] {
        let kid = s.idp.signer().current_kid(alg).unwrap();
        assert!(kids.contains(&kid.as_str()), "{kid} not in {kids:?}");
    }
    assert!(body["uptime_seconds"].is_u64());
    // The same hash on a second look: it describes the loaded file, not the request.
    let again: Value = s
        .with_cert()
        .get(s.status_url())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["config"]["hash"], hash);
    assert!(!s.gw.access_log().contains(&token));
    assert_eq!(s.orders.received_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_mfa_amr_is_refused() {
    let s = setup().await;
    for amr in [&["pwd"][..], &[][..], &["otp"][..]] {
        // `otp` is MFA by default, but this gateway lists only mfa and hwk.
        let token = s.token("gateway:admin", amr);
        let res = s
            .with_cert()
            .get(s.status_url())
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        // MFA missing is always 401 (`AuthError::MfaRequired`), whatever the scope.
        let www = assert_admin_refused(res, 401, &format!("amr {amr:?}")).await;
        assert!(
            www.contains("error=\"insufficient_user_authentication\""),
            "amr {amr:?}: {www}"
        );
    }
    // A token with no `amr` claim at all.
    let token = s
        .idp
        .mint(&MintRequest {
            scope: Some("gateway:admin".into()),
            ..MintRequest::default()
        })
        .unwrap();
    let res = s
        .with_cert()
        .get(s.status_url())
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let www = assert_admin_refused(res, 401, "no amr claim").await;
    assert!(
        www.contains("error=\"insufficient_user_authentication\""),
        "no amr claim: {www}"
    );
    assert_eq!(s.orders.received_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_token_without_admin_scope_is_403() {
    let s = setup().await;
    let token = s.token("orders:read", &["mfa"]);
    let res = s
        .with_cert()
        .get(s.status_url())
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let www = assert_admin_refused(res, 403, "no admin scope").await;
    assert!(www.contains("error=\"insufficient_scope\""), "{www}");
    assert!(www.contains("gateway:admin"), "{www}");
    assert_eq!(s.orders.received_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_token_without_client_certificate_is_refused() {
    let s = setup().await;
    let token = s.token("gateway:admin", &["mfa"]);
    // The listener requires a certificate: the handshake (or the first read) fails.
    let res = https_client(&s.gw.certs)
        .get(s.status_url())
        .bearer_auth(&token)
        .send()
        .await;
    assert!(
        res.is_err(),
        "admin answered without a client certificate: {:?}",
        res.map(|r| r.status())
    );
    // A certificate from an unrelated CA fares no better.
    let c = &s.gw.certs;
    let res = https_client_with_cert(c, &c.other_client_cert, &c.other_client_key)
        .get(s.status_url())
        .bearer_auth(&token)
        .send()
        .await;
    assert!(
        res.is_err(),
        "admin answered with a foreign client certificate: {:?}",
        res.map(|r| r.status())
    );
    assert_eq!(s.orders.received_count(), 0);
    // The refusals above are the certificate check at work: the same token with the gateway
    // CA's client certificate is let in.
    let res = s
        .with_cert()
        .get(s.status_url())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_or_bad_token_is_401() {
    let s = setup().await;
    let res = s.with_cert().get(s.status_url()).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let www = assert_admin_refused(res, 401, "no token").await;
    assert!(www.starts_with("Bearer"), "{www}");
    // No credentials at all: the bare challenge, with no error code (RFC 6750 §3.1).
    assert_eq!(www, "Bearer realm=\"tiktok-gateway\"");

    let res = s
        .with_cert()
        .get(s.status_url())
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let www = assert_admin_refused(res, 401, "basic credentials").await;
    // A scheme the admin API does not take: the bare challenge naming the one it does.
    assert_eq!(www, "Bearer realm=\"tiktok-gateway\"");

    // An expired MFA admin token.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expired = s
        .idp
        .mint(&MintRequest {
            scope: Some("gateway:admin".into()),
            amr: Some(vec!["mfa".into()]),
            exp: Some(now - 3600),
            ..MintRequest::default()
        })
        .unwrap();
    let res = s
        .with_cert()
        .get(s.status_url())
        .bearer_auth(expired)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let www = assert_admin_refused(res, 401, "expired token").await;
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    assert_eq!(s.orders.received_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_administrator_is_refused_even_with_mfa_and_certificate() {
    let s = setup().await;
    let token = s.token("gateway:admin", &["pwd", "hwk"]);
    let status = || s.with_cert().get(s.status_url()).bearer_auth(&token).send();
    assert_eq!(status().await.unwrap().status(), 200);

    let blocked = s
        .config
        .clone()
        .blocked_subjects(&["ops-alice"])
        .render(s.gw.dir.path());
    let config = tiktok_gateway::config::load_str(&blocked, s.gw.dir.path(), &s.gw.config_path)
        .expect("valid config");
    s.gw.gateway.apply(config).expect("applies by reload");

    let res = status().await.unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "caller_blocked", "{body}");
    assert!(
        body.get("config").is_none(),
        "the status handler ran: {body}"
    );
}
