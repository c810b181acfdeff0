//! Each check on a config that meets the policy (PASS), then on the same config with one
//! violation seeded (WARN or FAIL at the right YAML path).

use std::path::Path;

use super::*;
use crate::config::load_str;
use crate::policy::report::{Status, evaluate};

/// A config meeting every checked clause. Secrets come from files in the test folder.
const GOOD: &str = r#"version: "t1"
listeners:
  public:
    address: "0.0.0.0:8443"
    tls: { cert: c.pem, key: k.pem, client_ca: ca.pem, client_auth: optional }
  egress: { address: "127.0.0.1:8080" }
  admin:
    address: "127.0.0.1:9443"
    tls: { cert: c.pem, key: k.pem, client_ca: ca.pem, client_auth: required }
  metrics: { address: "127.0.0.1:9090" }
identity:
  jwt:
    - { name: idp, issuer: "https://idp.example", audiences: [gw], jwks: { url: "https://idp.example/jwks" }, algorithms: [RS256] }
  api_keys:
    - { name: batch, sha256: "${file:sha}", scopes: [orders:read] }
admin: { jwt: idp }
audit: { signing_key: "${file:audit}" }
tiktok:
  apps:
    main: { app_key: app-key, app_secret: "${file:secret}", api_base: "https://open-api.tiktokglobalshop.com", auth_base: "https://auth.tiktok-shops.com" }
  shops:
    - { id: "1", app: main, cipher: c, access_token: "${file:secret}", refresh_token: "${file:secret}" }
  token_store: { key: "${file:key}" }
state: { backend: embedded, path: /var/lib/tgw/state.redb }
webhooks: { forward_secret: "${file:secret}" }
upstreams:
  orders: { targets: ["127.0.0.1:9001"], health_check: { type: tcp } }
  tiktok_api: { targets: ["open-api.tiktokglobalshop.com:443"], tls: { sni: open-api.tiktokglobalshop.com }, health_check: { type: tcp } }
routes:
  - name: t
    listener: egress
    match: { path_prefix: /order/ }
    auth: { jwt: idp, scopes: [orders:read] }
    tiktok: { app: main }
    privacy: { pii_scope: pii:read }
    upstream: tiktok_api
  - name: wh
    listener: public
    match: { path: /webhooks/tiktok, methods: [POST] }
    auth: { tiktok_webhook: main }
    rate_limit: { key: client_ip, rate: 100/s }
    upstream: orders
  - name: s
    listener: public
    match: { path_prefix: /orders/, methods: [GET] }
    auth: { mtls: true, scopes: [orders:write] }
    rate_limit: { key: client_ip, rate: 100/s }
    upstream: orders
"#;

const RANDOM_KEY: &str = "6f1c2a9be04d7738a5c1f2e9d0b64a7315e8c2d9f0a1b3c5d7e9f1a2b4c6d8e0";

fn write_secret(dir: &Path, name: &str, value: &str) {
    let path = dir.join(name);
    std::fs::write(&path, value).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// Loads `yaml` with the loader `validate` uses, in a folder holding its files and secrets.
fn load_in(dir: &Path, yaml: &str) -> GatewayConfig {
    for f in ["c.pem", "k.pem", "ca.pem"] {
        std::fs::write(dir.join(f), "").unwrap();
    }
    write_secret(dir, "secret", "s3cret-value");
    write_secret(dir, "sha", &"ab".repeat(32));
    write_secret(dir, "audit", &"cd".repeat(32));
    if !dir.join("key").exists() {
        write_secret(dir, "key", RANDOM_KEY);
    }
    match load_str(yaml, dir, &dir.join("gateway.yaml")) {
        Ok(c) => c,
        Err(e) => panic!("config does not load: {e}\n{yaml}"),
    }
}

fn load(yaml: &str) -> GatewayConfig {
    let dir = tempfile::tempdir().unwrap();
    load_in(dir.path(), yaml)
}

fn seeded(from: &str, to: &str) -> GatewayConfig {
    assert!(GOOD.contains(from), "`{from}` not in the base config");
    load(&GOOD.replacen(from, to, 1))
}

fn worst(findings: &[Finding]) -> Status {
    findings.iter().map(|f| f.status).max().unwrap()
}

/// The findings of `status`, as (path, evidence).
fn with_status(findings: &[Finding], status: Status) -> Vec<(&str, &str)> {
    findings
        .iter()
        .filter(|f| f.status == status)
        .map(|f| (f.path.as_str(), f.evidence.as_str()))
        .collect()
}

#[test]
fn the_good_config_passes_every_check_with_evidence() {
    let c = load(GOOD);
    let report = evaluate(&c);
    for check in report.checks() {
        assert_eq!(
            check.status,
            Status::Pass,
            "{}: {:?}",
            check.id,
            check.findings
        );
        assert!(!check.findings.is_empty(), "{} gave no evidence", check.id);
        assert!(check.findings.iter().all(|f| !f.evidence.is_empty()));
    }
    assert_eq!(report.status(), Status::Pass);
    let counts = report.counts();
    assert_eq!(counts.fail + counts.warn, 0);
    // §1, 2, 4, 5, 12, 14 are organisational.
    assert_eq!(counts.not_checked, 6);
    let unchecked: Vec<u8> = report
        .clauses
        .iter()
        .filter(|c| c.status.is_none())
        .map(|c| c.clause)
        .collect();
    assert_eq!(unchecked, [1, 2, 4, 5, 12, 14]);
}

#[test]
fn open_route_fails_off_loopback_and_warns_on_loopback() {
    let public = seeded("auth: { mtls: true, scopes: [orders:write] }", "auth: none");
    let f = routes_authenticate(&public);
    assert_eq!(worst(&f), Status::Fail);
    let fails = with_status(&f, Status::Fail);
    assert_eq!(fails.len(), 1);
    assert_eq!(fails[0].0, "routes[2].auth");
    assert!(fails[0].1.contains("0.0.0.0:8443"), "{}", fails[0].1);

    let local = load(
        "listeners:\n  egress: { address: \"127.0.0.1:8080\" }\nupstreams:\n  o: { targets: [\"127.0.0.1:9\"] }\nroutes:\n  - { name: a, listener: egress, match: { path_prefix: / }, auth: none, upstream: o }\n",
    );
    let f = routes_authenticate(&local);
    assert_eq!(worst(&f), Status::Warn);
    assert_eq!(with_status(&f, Status::Warn)[0].0, "routes[0].auth");
}

#[test]
fn public_route_without_rate_limit_and_unprobed_upstream_warn() {
    let c = load(
        &GOOD
            .replacen("    rate_limit: { key: client_ip, rate: 100/s }\n", "", 1)
            .replacen(", health_check: { type: tcp } }", " }", 1),
    );
    let f = availability(&c);
    assert_eq!(worst(&f), Status::Warn);
    let paths: Vec<&str> = with_status(&f, Status::Warn).iter().map(|w| w.0).collect();
    assert_eq!(paths, ["routes[1]", "upstreams.orders"]);
    let off = seeded(
        "health_check: { type: tcp } }",
        "circuit_breaker: { failures: 0 }, health_check: { type: tcp } }",
    );
    assert_eq!(
        with_status(&availability(&off), Status::Warn)[0].0,
        "upstreams.orders.circuit_breaker.failures"
    );
}

#[test]
fn tiktok_route_without_pii_scope_fails() {
    let c = seeded("    privacy: { pii_scope: pii:read }\n", "");
    let f = tiktok_pii_masking(&c);
    assert_eq!(worst(&f), Status::Fail);
    assert_eq!(with_status(&f, Status::Fail)[0].0, "routes[0]");
    // `on_leak` alone flags leaks but masks nothing.
    let c = seeded(
        "privacy: { pii_scope: pii:read }",
        "privacy: { on_leak: block }",
    );
    assert_eq!(worst(&tiktok_pii_masking(&c)), Status::Fail);
}

#[test]
fn single_factor_amr_fails_and_unknown_amr_warns() {
    let c = seeded(
        "admin: { jwt: idp }",
        "admin: { jwt: idp, mfa_methods: [otp, pwd] }",
    );
    let f = admin_mfa(&c);
    assert_eq!(worst(&f), Status::Fail);
    let fails = with_status(&f, Status::Fail);
    assert_eq!(fails.len(), 1);
    assert_eq!(fails[0].0, "admin.mfa_methods");
    assert!(fails[0].1.contains("`pwd`"));
    let c = seeded(
        "admin: { jwt: idp }",
        "admin: { jwt: idp, mfa_methods: [corp-sso] }",
    );
    assert_eq!(worst(&admin_mfa(&c)), Status::Warn);
}

#[test]
fn admin_tokens_signed_with_a_shared_secret_warn() {
    let c = seeded(
        "jwks: { url: \"https://idp.example/jwks\" }, algorithms: [RS256] }",
        "hmac_secret: \"${file:secret}\", algorithms: [HS256] }",
    );
    let f = admin_mfa(&c);
    assert_eq!(worst(&f), Status::Warn);
    assert_eq!(
        with_status(&f, Status::Warn)[0].0,
        "identity.jwt[0].hmac_secret"
    );
}

#[test]
fn no_admin_listener_passes_with_that_evidence() {
    let c = load(
        &GOOD.replacen(
            "  admin:\n    address: \"127.0.0.1:9443\"\n    tls: { cert: c.pem, key: k.pem, client_ca: ca.pem, client_auth: required }\n",
            "",
            1,
        ),
    );
    let f = admin_mfa(&c);
    assert_eq!(worst(&f), Status::Pass);
    assert!(f[0].evidence.contains("no admin listener"));
}

#[test]
fn route_without_scopes_warns() {
    let c = seeded(
        "auth: { mtls: true, scopes: [orders:write] }",
        "auth: { mtls: true }",
    );
    let f = least_privilege(&c);
    assert_eq!(worst(&f), Status::Warn);
    assert_eq!(with_status(&f, Status::Warn)[0].0, "routes[2].auth");
    // Naming the API keys a route accepts is least privilege by key.
    let c = seeded(
        "auth: { mtls: true, scopes: [orders:write] }",
        "auth: { api_key: [batch] }",
    );
    assert_eq!(worst(&least_privilege(&c)), Status::Pass);
}

#[test]
fn inline_key_hash_fails_but_an_inline_app_key_does_not() {
    let c = seeded(
        "sha256: \"${file:sha}\"",
        &format!("sha256: \"{}\"", "ab".repeat(32)),
    );
    let f = secrets_not_inline(&c);
    assert_eq!(worst(&f), Status::Fail);
    assert_eq!(
        with_status(&f, Status::Fail)[0].0,
        "identity.api_keys[0].sha256"
    );
    // The good config writes `app_key` inline: it names the app, it is no secret.
    let f = secrets_not_inline(&load(GOOD));
    assert_eq!(worst(&f), Status::Pass);
    assert!(
        f[0].evidence.contains("tiktok.apps.main.app_key"),
        "{}",
        f[0].evidence
    );
}

#[cfg(unix)]
#[test]
fn secret_file_readable_by_others_warns() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let c = load_in(dir.path(), GOOD);
    std::fs::set_permissions(
        dir.path().join("key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let f = secrets_not_inline(&c);
    assert_eq!(worst(&f), Status::Warn);
    assert_eq!(with_status(&f, Status::Warn)[0].0, "tiktok.token_store.key");
}

#[test]
fn plaintext_upstream_off_the_host_fails() {
    let c = seeded(
        "targets: [\"127.0.0.1:9001\"]",
        "targets: [\"10.1.2.3:9001\"]",
    );
    let f = encrypted_in_transit(&c);
    assert_eq!(worst(&f), Status::Fail);
    let fails = with_status(&f, Status::Fail);
    assert_eq!(fails[0].0, "upstreams.orders");
    assert!(fails[0].1.contains("10.1.2.3:9001"));
}

#[test]
fn placeholder_token_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "key", &"0".repeat(64));
    let c = load_in(dir.path(), GOOD);
    let f = tokens_at_rest(&c);
    assert_eq!(worst(&f), Status::Fail);
    assert_eq!(f[0].path, "tiktok.token_store.key");
    assert_eq!(worst(&tokens_at_rest(&load(GOOD))), Status::Pass);
}

#[test]
fn no_metrics_listener_warns() {
    let c = seeded("  metrics: { address: \"127.0.0.1:9090\" }\n", "");
    assert_eq!(worst(&detection(&c)), Status::Warn);
}

#[test]
fn webhook_queue_in_a_scratch_folder_fails() {
    let c = seeded("path: /var/lib/tgw/state.redb", "path: /tmp/tgw/state.redb");
    let f = durable_state(&c);
    assert_eq!(worst(&f), Status::Fail);
    assert_eq!(with_status(&f, Status::Fail)[0].0, "state.path");
}

#[test]
fn refreshed_tokens_only_in_memory_warn() {
    let c = seeded("  token_store: { key: \"${file:key}\" }\n", "");
    let f = durable_state(&c);
    assert_eq!(worst(&f), Status::Warn);
    assert_eq!(with_status(&f, Status::Warn)[0].0, "tiktok");
    // Nothing is written, so nothing is at rest unencrypted.
    assert_eq!(worst(&tokens_at_rest(&c)), Status::Pass);
}

#[test]
fn plaintext_listener_off_loopback_fails() {
    let c = seeded(
        "  egress: { address: \"127.0.0.1:8080\" }",
        "  egress: { address: \"0.0.0.0:8080\", allow_plaintext: true }",
    );
    let f = secure_listeners(&c);
    assert_eq!(worst(&f), Status::Fail);
    assert_eq!(with_status(&f, Status::Fail)[0].0, "listeners.egress");
}

#[test]
fn tiktok_upstream_without_tls_fails() {
    let c = seeded(
        ", tls: { sni: open-api.tiktokglobalshop.com }, health_check",
        ", health_check",
    );
    let f = tiktok_pinned(&c);
    assert_eq!(worst(&f), Status::Fail);
    assert_eq!(with_status(&f, Status::Fail)[0].0, "upstreams.tiktok_api");
}

#[test]
fn unversioned_config_warns() {
    let c = seeded("version: \"t1\"\n", "");
    assert_eq!(worst(&versioned_config(&c)), Status::Warn);
}

#[test]
fn redis_host_never_includes_the_password() {
    assert_eq!(redis_host("redis://u:pw@10.0.0.1:6379/0"), "10.0.0.1");
    assert_eq!(redis_host("redis://127.0.0.1"), "127.0.0.1");
    assert_eq!(redis_host("redis://[::1]:6379"), "::1");
}

#[test]
fn findings_are_placed_on_their_lines() {
    let c = seeded("auth: { mtls: true, scopes: [orders:write] }", "auth: none");
    let text = GOOD.replacen(
        "auth: { mtls: true, scopes: [orders:write] }",
        "auth: none",
        1,
    );
    let mut report = evaluate(&c);
    report.locate(&text);
    let open = report
        .checks()
        .flat_map(|c| &c.findings)
        .find(|f| f.path == "routes[2].auth")
        .unwrap();
    let line = text.lines().position(|l| l.contains("auth: none")).unwrap() + 1;
    assert_eq!(open.line, Some(line as u64));
}
