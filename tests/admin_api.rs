//! The admin API's runtime actions end to end: every endpoint refuses a caller without a client
//! certificate, without MFA in `amr` or without the admin scope, and every call, allowed or
//! refused, is in the audit log before it is answered; blocks are enforced on the proxy and
//! lapse by themselves; a replayed dead letter is delivered; a reload is recorded with the
//! config's hash. The admin listener requires a client certificate: without one the TLS
//! handshake fails before any request exists.

#![cfg(feature = "demo")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use sha2::Digest;

use common::{
    Admin, ApiKey, Auth, Config, JwtIssuer, Listener, Route, State, TestGateway, TikTok, Upstream,
    Webhooks, free_port, http_client, https_client, https_client_with_cert,
};
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::sandbox::idp::{DevIdp, MintRequest};
use tiktok_gateway::sandbox::orders::OrderService;
use tiktok_gateway::state::{AuditRecord, NewEvent};

const APP_KEY: &str = "admin-app-key";
const APP_SECRET: &str = "admin-app-secret";

/// Every endpoint, with a body that would be valid.
const ENDPOINTS: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/admin/status", None),
    ("GET", "/admin/blocks", None),
    (
        "POST",
        "/admin/blocks",
        Some(r#"{"kind":"subject","value":"svc-x","reason":"test"}"#),
    ),
    ("DELETE", "/admin/blocks/1", None),
    ("GET", "/admin/webhooks/dead-letters", None),
    ("POST", "/admin/webhooks/dead-letters/1/replay", None),
    ("POST", "/admin/reload", None),
    ("GET", "/admin/audit", None),
];

struct Setup {
    gw: TestGateway,
    orders: OrderService,
    idp: DevIdp,
    public: u16,
    admin: u16,
}

fn config(
    public: u16,
    admin: u16,
    idp: &DevIdp,
    orders: SocketAddr,
    dir: &std::path::Path,
) -> Config {
    Config::new()
        .version("admin-api-1")
        .listener(Listener::plain("public", public))
        .listener(Listener::tls("admin", admin).client_auth("required"))
        .jwt(JwtIssuer::url("corp", idp))
        .admin(Admin {
            jwt: "corp".into(),
            scope: Some("gateway:admin".into()),
            mfa_methods: vec!["mfa".into(), "hwk".into()],
        })
        .api_key(ApiKey::new(
            "batch-exporter",
            "batch-key-0001",
            &["orders:read"],
        ))
        .upstream(Upstream::new("orders", orders))
        .tiktok(TikTok::new().app(TikTok::webhook_app("main", APP_KEY, APP_SECRET)))
        .webhooks(Webhooks::new("forward-secret-for-tests"))
        .state(State::embedded(&dir.join("state.redb")).poll_interval("100ms"))
        .route(
            Route::prefix("orders", "public", "/orders/")
                .auth(Auth::api_key().scopes(&["orders:read"]))
                .upstream("orders"),
        )
        .route(
            Route::exact("tiktok-webhooks", "public", "/webhooks/tiktok")
                .methods(&["POST"])
                .auth(Auth::tiktok_webhook("main"))
                .upstream("orders")
                .rewrite("/internal/tiktok/events"),
        )
}

async fn setup() -> Setup {
    let orders = OrderService::spawn(None).await.unwrap();
    let idp = DevIdp::start(Arc::new(SystemClock)).await.unwrap();
    let (public, admin) = (free_port(), free_port());
    let addr = orders.addr();
    let gw = TestGateway::start(|dir| config(public, admin, &idp, addr, dir).render(dir));
    Setup {
        gw,
        orders,
        idp,
        public,
        admin,
    }
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.admin)
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

    fn admin_token(&self) -> String {
        self.token("gateway:admin", &["pwd", "hwk"])
    }

    async fn call(
        &self,
        client: &reqwest::Client,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: &str,
    ) -> (u16, Value) {
        let mut req = client
            .request(method.parse().unwrap(), self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        assert_eq!(
            res.headers()["cache-control"],
            "no-store",
            "{method} {path}"
        );
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let token = self.admin_token();
        self.call(&self.with_cert(), method, path, body, &token)
            .await
    }

    async fn records(&self) -> Vec<AuditRecord> {
        self.gw.gateway.audit.read(0, 10_000).await.unwrap()
    }

    async fn orders_call(&self) -> u16 {
        http_client()
            .get(format!("http://127.0.0.1:{}/orders/1", self.public))
            .header("x-api-key", "batch-key-0001")
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }
}

fn detail(r: &AuditRecord) -> Value {
    serde_json::from_str(&r.detail).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_without_certificate_mfa_or_admin_scope_and_every_refusal_is_audited()
 {
    let s = setup().await;
    let good = s.admin_token();
    let no_mfa = s.token("gateway:admin", &["pwd"]);
    let no_scope = s.token("orders:read", &["mfa"]);
    let without_cert = https_client(&s.gw.certs);
    for &(method, path, body) in ENDPOINTS {
        // No client certificate: the handshake fails, nothing reaches the app.
        let mut req = without_cert
            .request(method.parse().unwrap(), s.url(path))
            .bearer_auth(&good);
        if let Some(body) = body {
            req = req.body(body.to_owned());
        }
        assert!(
            req.send().await.is_err(),
            "{method} {path} answered without a certificate"
        );
        let cases = [
            (no_mfa.as_str(), 401, "mfa_required"),
            (no_scope.as_str(), 403, "insufficient_scope"),
            ("not-a-token", 401, "invalid_token"),
        ];
        for (token, expected, what) in cases {
            let (status, answer) = s.call(&s.with_cert(), method, path, body, token).await;
            assert_eq!(status, expected, "{method} {path} ({what}): {answer}");
            assert_eq!(
                answer["error"]["code"], "invalid_credentials",
                "{method} {path}"
            );
        }
    }
    // Nothing the refused calls asked for was done.
    assert!(s.gw.gateway.state.blocks.list().await.unwrap().is_empty());
    assert_eq!(s.orders.received_count(), 0);
    // Each refusal is a record naming the endpoint and the reason, none with an actor.
    let records = s.records().await;
    let refused: Vec<&AuditRecord> = records
        .iter()
        .filter(|r| r.action == "admin.refused")
        .collect();
    assert_eq!(refused.len(), ENDPOINTS.len() * 3, "{records:#?}");
    for &(method, path, _) in ENDPOINTS {
        let reasons: Vec<String> = refused
            .iter()
            .map(|r| detail(r))
            .filter(|d| d["method"] == method && d["path"] == path)
            .map(|d| d["reason"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(reasons.len(), 3, "{method} {path}: {reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("mfa")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("scope")), "{reasons:?}");
        for r in &refused {
            assert_eq!(r.outcome, "refused");
            assert_eq!(r.actor, None);
            // No credential ever lands in the log.
            assert!(!r.detail.contains(&good) && !r.detail.contains("eyJ"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_allowed_call_is_audited_with_the_operator_as_actor() {
    let s = setup().await;
    for &(method, path, body) in ENDPOINTS {
        let before = s.records().await.len();
        let (status, answer) = s.admin(method, path, body).await;
        assert!(status < 500, "{method} {path}: {status} {answer}");
        let records = s.records().await;
        let mine: Vec<&AuditRecord> = records[before..]
            .iter()
            .filter(|r| r.action.starts_with("admin."))
            .collect();
        assert_eq!(mine.len(), 1, "{method} {path}: {mine:#?}");
        let d = detail(mine[0]);
        assert_eq!(mine[0].actor.as_deref(), Some("ops-alice"));
        assert_eq!(d["method"], method);
        assert_eq!(d["path"], path);
        assert_eq!(d["status"], status);
        let expected = if status < 400 { "allowed" } else { "refused" };
        assert_eq!(mine[0].outcome, expected, "{method} {path}");
    }
    let actions: Vec<String> = s.records().await.iter().map(|r| r.action.clone()).collect();
    for action in [
        "admin.status",
        "admin.blocks.list",
        "admin.blocks.add",
        "admin.blocks.remove",
        "admin.dead_letters.list",
        "admin.dead_letters.replay",
        "admin.reload",
        "admin.audit.read",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} not in {actions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_refuses_the_caller_until_removed_and_an_expiring_block_lapses_by_itself() {
    let s = setup().await;
    assert_eq!(s.orders_call().await, 200);
    let (status, added) = s
        .admin(
            "POST",
            "/admin/blocks",
            Some(
                r#"{"kind":"api_key","value":"batch-exporter","reason":"leaked key, incident 42"}"#,
            ),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let id = added["id"].as_u64().unwrap();
    let seen = s.orders.received_count();
    assert_eq!(s.orders_call().await, 403);
    assert_eq!(
        s.orders.received_count(),
        seen,
        "a blocked call reached the upstream"
    );
    let (_, list) = s.admin("GET", "/admin/blocks", None).await;
    assert_eq!(list["blocks"][0]["value"], "batch-exporter", "{list}");
    assert_eq!(list["blocks"][0]["active"], true);
    let (status, _) = s
        .admin("DELETE", &format!("/admin/blocks/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.orders_call().await, 200);
    let (status, _) = s
        .admin("DELETE", &format!("/admin/blocks/{id}"), None)
        .await;
    assert_eq!(status, 404);

    // An entry for 1 s refuses at once and lapses without anyone removing it.
    let (status, _) = s
        .admin(
            "POST",
            "/admin/blocks",
            Some(r#"{"kind":"client_ip","value":"127.0.0.0/8","reason":"scan","expires_in":1}"#),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(s.orders_call().await, 403);
    let mut lapsed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if s.orders_call().await == 200 {
            lapsed = true;
            break;
        }
    }
    assert!(lapsed, "the expiring block never lapsed");

    // The changes are in the audit log with what was blocked.
    let records = s.records().await;
    let adds: Vec<Value> = records
        .iter()
        .filter(|r| r.action == "admin.blocks.add")
        .map(detail)
        .collect();
    assert_eq!(adds.len(), 2);
    assert_eq!(adds[0]["value"], "batch-exporter");
    assert_eq!(adds[0]["kind"], "api_key");
    assert!(
        records
            .iter()
            .any(|r| r.action == "admin.blocks.remove" && r.outcome == "allowed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_bodies_are_validated_strictly_and_refusals_are_audited() {
    let s = setup().await;
    for body in [
        r#"{"kind":"subject","value":"a","reason":"x","extra":1}"#,
        r#"{"kind":"user","value":"a","reason":"x"}"#,
        r#"{"kind":"client_ip","value":"not-an-ip","reason":"x"}"#,
        r#"{"kind":"subject","value":"a","reason":""}"#,
        r#"{"kind":"subject","value":"a","reason":"x","expires_at":1}"#,
        r#"{"kind":"subject","value":"a","reason":"x","expires_in":5,"expires_at":99999999999}"#,
        r#"not json"#,
    ] {
        let (status, answer) = s.admin("POST", "/admin/blocks", Some(body)).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let big = format!(
        r#"{{"kind":"subject","value":"a","reason":"{}"}}"#,
        "x".repeat(20_000)
    );
    let (status, _) = s.admin("POST", "/admin/blocks", Some(&big)).await;
    assert_eq!(status, 413);
    assert!(s.gw.gateway.state.blocks.list().await.unwrap().is_empty());
    let records = s.records().await;
    let refused = records
        .iter()
        .filter(|r| r.outcome == "refused" && r.actor.as_deref() == Some("ops-alice"))
        .count();
    assert_eq!(refused, 8, "{records:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_is_delivered() {
    let s = setup().await;
    let store = s.gw.gateway.state.store.clone();
    // A dead letter, put there directly: stored due far in the future so the worker leaves it
    // alone, claimed and given up on.
    let far = i64::MAX / 4;
    let body = r#"{"type":1,"tts_notification_id":"dead-1","data":{}}"#;
    store
        .enqueue(
            NewEvent {
                route: "tiktok-webhooks".into(),
                target: format!("http://{}/internal/tiktok/events", s.orders.addr()),
                dedup_key: "dead-1".into(),
                request_id: "req-dead-1".into(),
                body: Bytes::from_static(body.as_bytes()),
                received_at: 1,
                traceparent: None,
            },
            far,
            far,
        )
        .await
        .unwrap();
    let claimed = store.claim(1, far, far + 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store.dead_letter(claimed[0].claim, 9, 5).await.unwrap();

    let (status, list) = s.admin("GET", "/admin/webhooks/dead-letters", None).await;
    assert_eq!(status, 200, "{list}");
    let letters = list["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["attempts"], 9);
    assert_eq!(letters[0]["route"], "tiktok-webhooks");
    assert!(letters[0].get("body").is_none());
    let id = letters[0]["id"].as_u64().unwrap();

    assert_eq!(s.orders.received_count(), 0);
    let (status, answer) = s
        .admin(
            "POST",
            &format!("/admin/webhooks/dead-letters/{id}/replay"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let mut delivered = false;
    for _ in 0..200 {
        if s.orders.received_count() > 0 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(delivered, "the replayed event was not delivered");
    let (_, list) = s.admin("GET", "/admin/webhooks/dead-letters", None).await;
    assert!(
        list["dead_letters"].as_array().unwrap().is_empty(),
        "{list}"
    );
    // Replaying what is no longer a dead letter is a 404.
    let (status, _) = s
        .admin(
            "POST",
            &format!("/admin/webhooks/dead-letters/{id}/replay"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert!(
        s.records()
            .await
            .iter()
            .any(|r| r.action == "admin.dead_letters.replay" && r.outcome == "allowed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_through_the_admin_api_is_applied_or_rejected_and_audited_with_the_config_hash() {
    let s = setup().await;
    let path = &s.gw.config_path;
    let hash = |p: &std::path::Path| hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()));
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, text.replace("admin-api-1", "admin-api-2")).unwrap();
    let applied_hash = hash(path);
    let (status, answer) = s.admin("POST", "/admin/reload", None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["config"]["version"], "admin-api-2");
    assert_eq!(answer["config"]["hash"], applied_hash);

    std::fs::write(path, text.replace("routes:", "routes: [oops")).unwrap();
    let rejected_hash = hash(path);
    let (status, answer) = s.admin("POST", "/admin/reload", None).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["outcome"], "rejected");
    assert_eq!(s.gw.gateway.snapshot().config.version, "admin-api-2");

    let reloads: Vec<(String, Value)> = s
        .records()
        .await
        .iter()
        .filter(|r| r.action == "admin.reload")
        .map(|r| (r.outcome.clone(), detail(r)))
        .collect();
    assert_eq!(reloads.len(), 2, "{reloads:?}");
    assert_eq!(reloads[0].0, "allowed");
    assert_eq!(reloads[0].1["config_hash"], applied_hash);
    assert_eq!(reloads[0].1["outcome"], "applied");
    assert_eq!(reloads[1].0, "refused");
    assert_eq!(reloads[1].1["config_hash"], rejected_hash);
    assert_eq!(reloads[1].1["outcome"], "rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_endpoint_pages_through_the_chain() {
    let s = setup().await;
    for _ in 0..3 {
        s.admin("GET", "/admin/status", None).await;
    }
    let (status, page) = s.admin("GET", "/admin/audit?after=0&limit=2", None).await;
    assert_eq!(status, 200, "{page}");
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["seq"], 1);
    assert_eq!(records[1]["prev_hash"], records[0]["hash"]);
    assert_eq!(page["next_after"], 2);
    let (_, next) = s.admin("GET", "/admin/audit?after=2&limit=2", None).await;
    assert_eq!(next["records"][0]["seq"], 3);
    let (status, _) = s.admin("GET", "/admin/audit?after=x", None).await;
    assert_eq!(status, 400);
    let (status, _) = s.admin("GET", "/admin/audit?secret=1", None).await;
    assert_eq!(status, 400);
    let _ = json!({});
}

/// Two replicas on one PostgreSQL schema: a block written through A's admin API refuses the
/// caller at B within a second, unblocking lets it back in, and an expiring block lapses on B by
/// itself. Both replicas' audit records land in the one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_through_one_replicas_admin_api_refuses_the_caller_on_another_within_a_second() {
    use std::time::Instant;
    let Some(url) = common::database_url() else {
        return;
    };
    let schema = format!("tgw_admin_{:016x}", rand::random::<u64>());
    let orders = OrderService::spawn(None).await.unwrap();
    let idp = DevIdp::start(Arc::new(SystemClock)).await.unwrap();
    let (public_a, admin_a, public_b) = (free_port(), free_port(), free_port());
    let replica = |public: u16, admin: Option<u16>| {
        let mut c = Config::new()
            .listener(Listener::plain("public", public))
            .api_key(ApiKey::new(
                "batch-exporter",
                "batch-key-0001",
                &["orders:read"],
            ))
            .upstream(Upstream::new("orders", orders.addr()))
            .state(State::postgres(&url, &schema).poll_interval("100ms"))
            .route(
                Route::prefix("orders", "public", "/orders/")
                    .auth(Auth::api_key().scopes(&["orders:read"]))
                    .upstream("orders"),
            );
        if let Some(admin) = admin {
            c = c
                .listener(Listener::tls("admin", admin).client_auth("required"))
                .jwt(JwtIssuer::url("corp", &idp))
                .admin(Admin {
                    jwt: "corp".into(),
                    scope: Some("gateway:admin".into()),
                    mfa_methods: vec!["mfa".into()],
                });
        }
        c
    };
    let a = TestGateway::with(&replica(public_a, Some(admin_a)));
    let b = TestGateway::with(&replica(public_b, None));
    let s = Setup {
        gw: a,
        orders,
        idp,
        public: public_b,
        admin: admin_a,
    };
    let token = s.token("gateway:admin", &["mfa"]);
    let admin = |method: &'static str, path: String, body: Option<&'static str>| {
        let (client, token, s) = (s.with_cert(), token.clone(), &s);
        async move { s.call(&client, method, &path, body, &token).await }
    };
    // `s.orders_call` goes to replica B's public listener.
    assert_eq!(s.orders_call().await, 200);

    let (status, added) = admin(
        "POST",
        "/admin/blocks".into(),
        Some(r#"{"kind":"api_key","value":"batch-exporter","reason":"incident 7"}"#),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let written = Instant::now();
    while s.orders_call().await != 403 {
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "replica B still admits the blocked key after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = s.orders.received_count();
    assert_eq!(s.orders_call().await, 403);
    assert_eq!(
        s.orders.received_count(),
        seen,
        "a blocked call reached the upstream"
    );

    let id = added["id"].as_u64().unwrap();
    let (status, _) = admin("DELETE", format!("/admin/blocks/{id}"), None).await;
    assert_eq!(status, 200);
    let removed = Instant::now();
    while s.orders_call().await != 200 {
        assert!(
            removed.elapsed() < Duration::from_secs(1),
            "replica B still refuses after the unblock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // An expiring block reaches B and lapses there without anyone removing it.
    let (status, _) = admin(
        "POST",
        "/admin/blocks".into(),
        Some(r#"{"kind":"api_key","value":"batch-exporter","reason":"cool-down","expires_in":2}"#),
    )
    .await;
    assert_eq!(status, 201);
    let written = Instant::now();
    while s.orders_call().await != 403 {
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "the expiring block never reached B"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lapsed = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if s.orders_call().await == 200 {
            lapsed = true;
            break;
        }
    }
    assert!(lapsed, "the expiring block never lapsed on B");

    // B reads the same chain A wrote: the admin actions are there.
    let chain = b.gateway.audit.read(0, 1000).await.unwrap();
    let adds = chain
        .iter()
        .filter(|r| r.action == "admin.blocks.add")
        .count();
    assert_eq!(adds, 2, "{chain:#?}");
    drop(b);
    drop(s);
    if let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        let driver = tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await;
        drop(client);
        let _ = driver.await;
    }
}

/// `tiktok-gateway admin ...` presents the client certificate and the token from a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_adds_lists_and_removes_a_block() {
    let s = setup().await;
    let token_file = s.gw.dir.path().join("admin.token");
    std::fs::write(&token_file, s.admin_token()).unwrap();
    let c = &s.gw.certs;
    let url = format!("https://localhost:{}", s.admin);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
            .arg("admin")
            .args(["--url", &url])
            .arg("--cert")
            .arg(&c.client_cert)
            .arg("--key")
            .arg(&c.client_key)
            .arg("--ca")
            .arg(&c.ca_cert)
            .arg("--token-file")
            .arg(&token_file)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // The gateway serves from its own thread: blocking this one on the child is fine.
    let (ok, out) = cli(&[
        "blocks", "add", "--kind", "subject", "--value", "svc-cli", "--reason", "test",
    ]);
    assert!(ok, "{out}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_u64()
        .unwrap();
    let (ok, out) = cli(&["blocks", "list"]);
    assert!(ok && out.contains("svc-cli"), "{out}");
    let (ok, _) = cli(&["blocks", "remove", &id.to_string()]);
    assert!(ok);
    let (ok, out) = cli(&["blocks", "remove", &id.to_string()]);
    assert!(!ok, "{out}");
    assert!(out.contains("HTTP 404"), "{out}");
}
