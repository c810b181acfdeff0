//! `tiktok-gateway policy report`: the shipped `gateway.yaml` passes (exit 0); the same file with
//! one violation seeded fails (exit 1) and names the clause; a config that does not validate
//! exits 2 with `validate`'s diagnostics. `GET /admin/policy` serves the same report behind the
//! admin gate.

mod common;

use std::path::Path;
use std::process::Command;

use rand::RngCore;
use serde_json::Value;

const SHIPPED: &str = include_str!("../gateway.yaml");

/// A folder with dev certificates in `certs/`, as the shipped config expects.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
        .args(["certs", "--out"])
        .arg(dir.path().join("certs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// `examples/env.example`'s placeholder secrets, with a random token-store key in place of its
/// all-zero one (which the report rightly fails, see below).
fn secrets() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/env.example"))
            .unwrap();
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = if k == "TOKEN_STORE_KEY" {
                hex::encode(key)
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect()
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn report_with(yaml: &str, env: &[(String, String)], extra: &[&str]) -> Outcome {
    let dir = folder();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
        .args(["policy", "report", "--config"])
        .arg(&path)
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn report(yaml: &str, extra: &[&str]) -> Outcome {
    report_with(yaml, &secrets(), extra)
}

fn json(o: &Outcome) -> Value {
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", o.stdout))
}

fn clause(report: &Value, n: u64) -> &Value {
    report["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clause"] == n)
        .unwrap()
}

#[test]
fn the_shipped_config_passes() {
    let o = report(SHIPPED, &[]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(!o.stdout.contains(" FAIL "), "{}", o.stdout);
    assert!(o.stdout.contains("policy PASS"), "{}", o.stdout);
    let j = json(&report(SHIPPED, &["--format", "json"]));
    assert_ne!(j["status"], "fail", "{j}");
    assert_eq!(j["counts"]["fail"], 0);
}

/// (what, text in gateway.yaml, replacement, clause, check id, YAML path of the failing finding)
const SEEDED: &[(&str, &str, &str, u64, &str, &str)] = &[
    (
        "plaintext listener off loopback",
        "  egress:\n    address: \"127.0.0.1:8080\"",
        "  egress:\n    address: \"0.0.0.0:8080\"\n    allow_plaintext: true",
        10,
        "10.secure-listeners",
        "listeners.egress",
    ),
    (
        "a route with `auth: none` on a public listener",
        "auth: { mtls: true, jwt: internal-idp, scopes: [orders:write] }",
        "auth: none",
        3,
        "3.access",
        "routes[2].auth",
    ),
    (
        "admin tokens accepted without MFA",
        "mfa_methods: [mfa, otp, hwk, swk]",
        "mfa_methods: [pwd]",
        6,
        "6.admin-mfa",
        "admin.mfa_methods",
    ),
    (
        "a secret inline",
        "sha256: \"${env:BATCH_KEY_SHA256}\"",
        "sha256: \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"",
        7,
        "7.secrets",
        "identity.api_keys[0].sha256",
    ),
    (
        "a TikTok route without PII masking",
        "    privacy: { pii_scope: pii:read }",
        "",
        3,
        "3.privacy",
        "routes[0]",
    ),
    (
        "the webhook queue on scratch storage",
        "path: /var/lib/tiktok-gateway/state.redb",
        "path: /tmp/tiktok-gateway/state.redb",
        9,
        "9.durable-state",
        "state.path",
    ),
    (
        "an upstream off the host in plaintext",
        "targets: [\"127.0.0.1:9001\"]",
        "targets: [\"10.0.0.7:9001\"]",
        7,
        "7.in-transit",
        "upstreams.orders",
    ),
];

#[test]
fn each_seeded_violation_fails_and_names_its_clause() {
    for (what, from, to, n, id, path) in SEEDED {
        assert!(
            SHIPPED.contains(from),
            "{what}: `{from}` not in gateway.yaml"
        );
        let yaml = SHIPPED.replacen(from, to, 1);
        let o = report(&yaml, &[]);
        assert_eq!(o.code, 1, "{what}: {}{}", o.stdout, o.stderr);
        assert!(
            o.stdout
                .lines()
                .any(|l| l.starts_with(&format!("§{n} ")) && l.ends_with(": FAIL")),
            "{what}: §{n} not failed:\n{}",
            o.stdout
        );
        assert!(
            o.stdout.contains(&format!("FAIL {id}:")),
            "{what}: {id} not failed:\n{}",
            o.stdout
        );
        assert!(o.stdout.contains("policy FAIL"), "{what}");

        let o = report(&yaml, &["--format", "json"]);
        assert_eq!(o.code, 1, "{what}");
        let j = json(&o);
        assert_eq!(j["status"], "fail", "{what}");
        let c = clause(&j, *n);
        assert_eq!(c["status"], "fail", "{what}: {c}");
        let check = c["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == *id)
            .unwrap_or_else(|| panic!("{what}: no {id} in {c}"));
        assert_eq!(check["status"], "fail", "{what}");
        let finding = check["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["status"] == "fail")
            .unwrap();
        assert_eq!(finding["path"], *path, "{what}: {finding}");
        let line = finding["line"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: no line"));
        let text = yaml.lines().nth(line as usize - 1).unwrap();
        assert!(!text.trim().is_empty(), "{what}: line {line} is empty");
        assert!(finding["remedy"].is_string(), "{what}");
    }
}

#[test]
fn the_placeholder_token_store_key_fails_clause_7() {
    // env.example's all-zero key: it validates, but the sealed tokens are as good as plain.
    let mut env = secrets();
    for (k, v) in env.iter_mut() {
        if k == "TOKEN_STORE_KEY" {
            *v = "0".repeat(64);
        }
    }
    let o = report_with(SHIPPED, &env, &[]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(
        o.stdout
            .contains("§7 Data Classification & Protection: FAIL")
    );
    assert!(o.stdout.contains("FAIL 7.tokens-at-rest:"));
    assert!(!o.stdout.contains(&"0".repeat(64)), "the key was printed");
}

#[test]
fn a_config_that_does_not_validate_exits_2_with_the_validate_diagnostics() {
    let yaml = SHIPPED.replacen(
        "app_secret: \"${env:TIKTOK_APP_SECRET}\"",
        "app_secret: \"hunter2-inline\"",
        1,
    );
    let o = report(&yaml, &[]);
    assert_eq!(o.code, 2, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.is_empty(), "{}", o.stdout);
    assert!(
        o.stderr.contains("tiktok.apps.main.app_secret"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("secrets are never inline"),
        "{}",
        o.stderr
    );
    assert!(
        !o.stderr.contains("hunter2-inline"),
        "the secret was printed"
    );
    let o = report(&yaml, &["--format", "json"]);
    assert_eq!(o.code, 2);
    let j = json(&o);
    assert_eq!(j["ok"], false, "{j}");
}

#[test]
fn json_shape() {
    let j = json(&report(SHIPPED, &["--format", "json"]));
    for key in ["file", "version", "hash", "status", "counts", "clauses"] {
        assert!(j.get(key).is_some(), "no {key}: {j}");
    }
    assert_eq!(j["version"], "2026-11-29.1");
    for key in ["pass", "warn", "fail", "not_checked"] {
        assert!(j["counts"][key].is_u64(), "counts.{key}");
    }
    let clauses = j["clauses"].as_array().unwrap();
    let numbers: Vec<u64> = clauses
        .iter()
        .map(|c| c["clause"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=14).collect::<Vec<u64>>());
    for c in clauses {
        assert!(c["title"].is_string());
        if c["status"] == "not_checked" {
            assert!(c["reason"].is_string(), "{c}");
            assert!(c["checks"].as_array().unwrap().is_empty());
            continue;
        }
        assert!(["pass", "warn", "fail"].contains(&c["status"].as_str().unwrap()));
        for check in c["checks"].as_array().unwrap() {
            assert!(check["id"].is_string() && check["requirement"].is_string());
            let findings = check["findings"].as_array().unwrap();
            assert!(!findings.is_empty(), "{check}");
            for f in findings {
                assert!(f["status"].is_string() && f["path"].is_string());
                assert!(f["evidence"].is_string());
                assert!(f["line"].is_u64() || f["line"].is_null());
            }
        }
    }
    assert_eq!(
        clause(&j, 1)["status"],
        "not_checked",
        "an organisational clause is never a PASS"
    );
}

/// `GET /admin/policy` behind the admin gate: refused without a client certificate and an MFA
/// token, the report with them.
#[cfg(feature = "demo")]
mod admin_endpoint {
    use std::sync::Arc;

    use serde_json::Value;

    use super::common::{
        Admin, Auth, Config, JwtIssuer, Listener, Route, TestGateway, Upstream, free_port,
        https_client, https_client_with_cert,
    };
    use tiktok_gateway::clock::SystemClock;
    use tiktok_gateway::sandbox::idp::{DevIdp, MintRequest};
    use tiktok_gateway::sandbox::orders::OrderService;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admin_policy_needs_admin_credentials_and_serves_the_report() {
        let orders = OrderService::spawn(None).await.unwrap();
        let idp = DevIdp::start(Arc::new(SystemClock)).await.unwrap();
        let (public, admin) = (free_port(), free_port());
        let config = Config::new()
            .version("policy-t1")
            .listener(Listener::tls("public", public))
            .listener(Listener::tls("admin", admin).client_auth("required"))
            .jwt(JwtIssuer::url("corp", &idp))
            .admin(Admin {
                jwt: "corp".into(),
                scope: Some("gateway:admin".into()),
                mfa_methods: vec!["mfa".into(), "hwk".into()],
            })
            .upstream(Upstream::new("orders", orders.addr()))
            .route(
                Route::prefix("orders", "public", "/orders/")
                    .auth(Auth::jwt("corp").scopes(&["orders:read"]))
                    .upstream("orders"),
            );
        let gw = TestGateway::with(&config);
        let url = format!("https://localhost:{admin}/admin/policy");
        let token = idp
            .mint(&MintRequest {
                sub: Some("ops-alice".into()),
                scope: Some("gateway:admin".into()),
                amr: Some(vec!["pwd".into(), "hwk".into()]),
                ..MintRequest::default()
            })
            .unwrap();
        let c = &gw.certs;
        let with_cert = https_client_with_cert(c, &c.client_cert, &c.client_key);

        // No token (certificate presented): refused, and the report is not in the answer.
        let res = with_cert.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 401);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_credentials", "{body}");
        assert!(body.get("clauses").is_none(), "{body}");
        // A token without MFA: refused.
        let no_mfa = idp
            .mint(&MintRequest {
                sub: Some("ops-bob".into()),
                scope: Some("gateway:admin".into()),
                amr: Some(vec!["pwd".into()]),
                ..MintRequest::default()
            })
            .unwrap();
        let res = with_cert
            .get(&url)
            .bearer_auth(&no_mfa)
            .send()
            .await
            .unwrap();
        assert!(
            res.status() == 401 || res.status() == 403,
            "{}",
            res.status()
        );
        assert!(res.json::<Value>().await.unwrap().get("clauses").is_none());
        // The MFA token without a client certificate: the handshake or the request fails.
        if let Ok(res) = https_client(c).get(&url).bearer_auth(&token).send().await {
            assert_ne!(res.status(), 200);
        }

        let res = with_cert
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["version"], "policy-t1", "{body}");
        assert_eq!(body["clauses"].as_array().unwrap().len(), 14);
        let six = super::clause(&body, 6);
        let mfa = six["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "6.admin-mfa")
            .unwrap();
        assert_eq!(mfa["status"], "pass", "{mfa}");
        assert_eq!(orders.received_count(), 0);
    }
}
