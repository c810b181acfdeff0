//! `tiktok-gateway validate` reports every problem with its YAML path and line, and exits 1.

use std::process::Command;

fn validate(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// One loopback listener and one upstream (6 lines), then `rest`: line numbers in `rest` start
/// at 7.
fn with_egress(rest: &str) -> String {
    format!(
        r#"listeners:
  egress:
    address: "127.0.0.1:8080"
upstreams:
  orders:
    targets: ["127.0.0.1:9001"]
{rest}"#
    )
}

#[test]
fn reports_every_error_with_path_and_line() {
    let yaml = r#"listeners:
  egress:
    address: "127.0.0.1:8080"
  public:
    address: "0.0.0.0:8443"
upstreams:
  orders:
    targets: ["127.0.0.1:9001"]
    timeouts: { connect: 5 }
routes:
  - name: a
    listener: egress
    match: { path_prefix: /x/ }
    upstream: nowhere
  - name: b
    listener: nolistener
    match: { path: /y }
    auth: none
    upstream: orders
"#;
    let (ok, out) = validate(yaml);
    assert!(!ok, "{out}");
    for expected in [
        "line 5: listeners.public: plaintext listener on a non-loopback address",
        "line 9: upstreams.orders.timeouts.connect: `5` has no unit",
        "line 11: routes[0].auth: every route needs `auth`",
        "line 14: routes[0].upstream: unknown upstream `nowhere`",
        "line 16: routes[1].listener: unknown listener `nolistener`",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
}

#[test]
fn slow_client_settings_are_checked_with_lines() {
    let yaml = r#"listeners:
  egress:
    address: "127.0.0.1:8080"
    connections:
      header_timeout: 0s
      min_body_rate: fast
      min_body_rate_after: 5
upstreams:
  orders:
    targets: ["127.0.0.1:9001"]
routes: []
"#;
    let (ok, out) = validate(yaml);
    assert!(!ok, "{out}");
    for expected in [
        "line 5: listeners.egress.connections.header_timeout: must be above 0",
        "line 6: listeners.egress.connections.min_body_rate: `fast` is not a rate such as 1KiB/s",
        "line 7: listeners.egress.connections.min_body_rate_after: `5` has no unit",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }

    let good = yaml
        .replace("0s", "5s")
        .replace("fast", "512B/s")
        .replace("after: 5", "after: 2s");
    let (ok, out) = validate(&good);
    assert!(ok, "{out}");
}

#[test]
fn redis_only_rate_limit_settings_are_refused_on_the_local_backend() {
    let yaml = with_egress(
        r#"routes: []
rate_limits:
  backend: local
  retry_interval: 2s
"#,
    );
    let (ok, out) = validate(&yaml);
    assert!(!ok, "{out}");
    assert!(
        out.contains("line 10: rate_limits.retry_interval: only used with `backend: redis`"),
        "{out}"
    );
    let redis = yaml.replace(
        "backend: local",
        "backend: redis\n  url: \"redis://127.0.0.1:6379/\"\n  timeout: 0ms\n  pool_size: 0\n  on_backend_error: sometimes",
    );
    let (ok, out) = validate(&redis);
    assert!(!ok, "{out}");
    for expected in [
        "line 11: rate_limits.timeout: must be above 0",
        "line 12: rate_limits.pool_size: must be between 1 and 64",
        "line 13: rate_limits.on_backend_error: on_backend_error `sometimes` is not one of local, fail_open, fail_closed",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
    let (ok, out) = validate(
        &redis
            .replace("0ms", "50ms")
            .replace("pool_size: 0", "pool_size: 2")
            .replace("sometimes", "fail_closed"),
    );
    assert!(ok, "{out}");
}

#[test]
fn unknown_keys_and_inline_secrets_are_refused() {
    let (ok, out) =
        validate("listeners:\n  egress:\n    address: \"127.0.0.1:8080\"\n    adress: typo\n");
    assert!(!ok);
    assert!(out.contains("adress"), "{out}");
    assert!(out.contains("line 4"), "{out}");

    let yaml = r#"listeners:
  egress: { address: "127.0.0.1:8080" }
identity:
  api_keys:
    - { name: k, sha256: "${env:TTGW_TEST_DEFINITELY_UNSET}" }
tiktok:
  apps:
    main: { app_key: abc, app_secret: "inline-secret", api_base: "https://x.example", auth_base: "https://y.example" }
"#;
    let (ok, out) = validate(yaml);
    assert!(!ok);
    assert!(out.contains("line 5: identity.api_keys[0].sha256: environment variable TTGW_TEST_DEFINITELY_UNSET is not set"), "{out}");
    assert!(
        out.contains("line 8: tiktok.apps.main.app_secret: secrets are never inline"),
        "{out}"
    );
    assert!(
        !out.contains("inline-secret"),
        "the secret value itself must not be echoed: {out}"
    );
}

#[test]
fn garbage_never_panics() {
    for yaml in [
        "",
        "[",
        "listeners: 5",
        "{{{{",
        "listeners:\n  a: { address: [1,2] }",
        "\u{0}\u{1}",
        "&a [*a, *a]",
    ] {
        let (ok, out) = validate(yaml);
        assert!(!ok, "{yaml:?} was accepted");
        assert!(!out.contains("panicked"), "{yaml:?}: {out}");
    }
}

#[test]
fn shipped_minimal_example_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/minimal.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
        .args(["validate", "--config", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn redis_urls_are_checked_at_load_and_never_echoed() {
    let with = |url: &str| {
        with_egress(&format!(
            r#"routes: []
rate_limits:
  backend: redis
  url: "{url}"
"#
        ))
    };
    for (url, expected) in [
        (
            "rediss://127.0.0.1:6380/",
            "line 10: rate_limits.url: not a valid redis:// URL",
        ),
        (
            "http://127.0.0.1/",
            "line 10: rate_limits.url: not a valid redis:// URL",
        ),
        (
            "redis://:hunter2@127.0.0.1:6379/",
            "line 10: rate_limits.url: this URL carries a password: secrets are never inline",
        ),
        (
            "${env:redis://u:hunter2@h}",
            "line 10: rate_limits.url: not an environment variable name",
        ),
    ] {
        let (ok, out) = validate(&with(url));
        assert!(!ok, "{url}: {out}");
        assert!(
            out.contains(expected),
            "{url}: missing `{expected}` in:\n{out}"
        );
        assert!(
            !out.contains("hunter2"),
            "{url}: the secret was echoed:\n{out}"
        );
    }
    let (ok, out) = validate(&with("redis://127.0.0.1:6379/0"));
    assert!(ok, "{out}");
}

#[test]
fn privacy_on_a_plain_proxied_route_is_refused_not_ignored() {
    let yaml = with_egress(
        r#"routes:
  - name: customers
    listener: egress
    match: { path_prefix: /customers/ }
    auth: none
    privacy: { pii_scope: "pii:read" }
    upstream: orders
"#,
    );
    let (ok, out) = validate(&yaml);
    assert!(!ok, "{out}");
    assert!(
        out.contains("routes[0].privacy: `privacy` applies to TikTok and webhook routes only"),
        "{out}"
    );
}

#[test]
fn the_redis_key_secret_is_a_secret_reference() {
    let yaml = with_egress(
        r#"routes: []
rate_limits:
  backend: redis
  url: "redis://127.0.0.1:6379/"
  key_secret: "inline-fleet-secret"
"#,
    );
    let (ok, out) = validate(&yaml);
    assert!(!ok, "{out}");
    assert!(
        out.contains("line 11: rate_limits.key_secret: secrets are never inline"),
        "{out}"
    );
    assert!(!out.contains("inline-fleet-secret"), "{out}");
}

/// `validate` runs the same compile as `run`: a scope `run` cannot build is refused here, with
/// the route's path and line, instead of passing and then failing at start-up.
#[test]
fn a_scope_run_would_refuse_is_refused_by_validate_with_its_line() {
    let (ok, out) = validate(&with_egress(
        r#"identity:
  api_keys:
    - { name: k, sha256: "0000000000000000000000000000000000000000000000000000000000000000", scopes: [a] }
routes:
  - name: spaced
    listener: egress
    match: { path_prefix: /x/ }
    auth: { api_key: [k], scopes: ["orders read"] }
    upstream: orders
"#,
    ));
    assert!(!ok, "{out}");
    assert!(out.contains("routes[0].auth.scopes"), "{out}");
    assert!(out.contains("line 11"), "{out}");
}

/// Settings that cannot act on a route's kind are refused, never accepted and ignored.
#[test]
fn settings_that_cannot_apply_to_the_route_kind_are_refused() {
    let (ok, out) = validate(&with_egress(
        r#"routes:
  - name: plain
    listener: egress
    match: { path_prefix: /x/ }
    auth: none
    rate_limit: [{ key: shop, rate: 5/s }, { key: api_key, rate: 5/s }]
    upstream: orders
"#,
    ));
    assert!(!ok, "{out}");
    assert!(out.contains("routes[0].rate_limit[0].key"), "{out}");
    assert!(out.contains("only TikTok routes have"), "{out}");
    assert!(out.contains("routes[0].rate_limit[1].key"), "{out}");
    assert!(out.contains("does not accept API keys"), "{out}");
}

#[test]
fn the_log_filter_is_parsed_and_dependency_directives_are_named_as_capped() {
    let with_level =
        |level: &str| with_egress(&format!("routes: []\nlogging:\n  level: \"{level}\"\n"));
    // A directive that does not parse is refused with its line, naming the directive.
    let (ok, out) = validate(&with_level("info,pingora_core=loud"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("line 9: logging.level:") && out.contains("`pingora_core=loud`"),
        "{out}"
    );
    // Dependencies at trace: accepted (the same parse start-up uses), and named as capped.
    let (ok, out) = validate(&with_level(
        "debug,pingora_core::protocols=trace,h2=trace,tiktok_gateway=trace",
    ));
    assert!(ok, "{out}");
    assert!(
        out.contains(
            "note: logging.level: `pingora_core::protocols=trace`, `h2=trace` capped at info"
        ),
        "{out}"
    );
    let (ok, out) = validate(&with_level("debug,tiktok_gateway::auth=trace"));
    assert!(ok && !out.contains("capped"), "{out}");
}

#[test]
fn jwt_max_token_age_is_checked_with_lines() {
    let issuer = |age: &str| {
        with_egress(&format!(
            r#"identity:
  jwt:
    - name: idp
      issuer: "https://idp.example"
      audiences: [gateway]
      jwks: {{ url: "https://idp.example/jwks" }}
      algorithms: [ES256]
      max_token_age: {age}
routes:
  - name: a
    listener: egress
    match: {{ path_prefix: /a/ }}
    auth: {{ jwt: idp }}
    upstream: orders
"#
        ))
    };
    let (ok, out) = validate(&issuer("0s"));
    assert!(!ok);
    assert!(
        out.contains("line 14: identity.jwt[0].max_token_age: must be at least 1s"),
        "{out}"
    );
    let (ok, out) = validate(&issuer("soon"));
    assert!(!ok);
    assert!(
        out.contains("line 14: identity.jwt[0].max_token_age:"),
        "{out}"
    );
    let (ok, out) = validate(&issuer("15m"));
    assert!(ok, "{out}");
}

#[test]
fn the_state_section_is_checked_at_load_and_urls_never_echoed() {
    let with = |state: &str| with_egress(&format!("routes: []\nstate:\n{state}"));
    for (state, expected) in [
        (
            "  backend: postgres\n",
            "state.url: `backend: postgres` needs `url`",
        ),
        (
            "  backend: postgres\n  url: \"postgres://gw:hunter2@127.0.0.1/db\"\n",
            "line 10: state.url: this URL carries a password: secrets are never inline",
        ),
        (
            "  backend: postgres\n  url: \"postgres://gw@db.internal:5432/db\"\n",
            "line 10: state.url: a PostgreSQL server outside loopback must be reached over TLS",
        ),
        (
            "  backend: postgres\n  url: \"postgres://gw@127.0.0.1/db\"\n  schema: \"Bad-Name\"\n",
            "line 11: state.schema: a schema name is 1-63 of a-z, 0-9 and _",
        ),
        (
            "  backend: postgres\n  url: \"postgres://gw@127.0.0.1/db\"\n  path: state.redb\n",
            "line 11: state.path: applies to `backend: embedded` only",
        ),
        (
            "  backend: embedded\n  path: state.redb\n  schema: tgw\n",
            "line 11: state.schema: applies to `backend: postgres` only",
        ),
        (
            "  backend: sqlite\n",
            "line 9: state.backend: `sqlite`: use embedded or postgres",
        ),
        (
            "  path: state.redb\n  lease: 10ms\n",
            "line 10: state.lease: must be at least 1s",
        ),
    ] {
        let (ok, out) = validate(&with(state));
        assert!(!ok, "{state}: {out}");
        assert!(
            out.contains(expected),
            "{state}: missing `{expected}` in:\n{out}"
        );
        assert!(!out.contains("hunter2"), "the secret was echoed:\n{out}");
    }
    let (ok, out) = validate(&with(
        "  backend: postgres\n  url: \"postgres://gw@db.internal:5432/db?sslmode=require\"\n",
    ));
    assert!(ok, "{out}");
}

#[test]
fn webhook_keys_the_state_layer_replaced_are_refused_with_what_to_do() {
    let webhooks = |extra: &str| {
        with_egress(&format!(
            r#"tiktok:
  apps:
    main: {{ app_key: k, app_secret: "${{env:PATH}}", api_base: "http://127.0.0.1:1", auth_base: "http://127.0.0.1:1" }}
webhooks:
  forward_secret: "${{env:PATH}}"
{extra}routes:
  - name: hooks
    listener: egress
    match: {{ path: /webhooks }}
    auth: {{ tiktok_webhook: main }}
    upstream: orders
"#
        ))
    };
    let (ok, out) = validate(&webhooks("  dedup_backend: redis\n"));
    assert!(!ok);
    assert!(
        out.contains(
            "webhooks.dedup_backend: no longer used: replays are deduplicated in the state store"
        ),
        "{out}"
    );
    // Webhook routes need somewhere durable to keep their queue.
    let (ok, out) = validate(&webhooks(""));
    assert!(!ok);
    assert!(out.contains("state: webhook routes"), "{out}");
    // The older name of the file still works alone, and is refused next to `state:`.
    let (ok, out) = validate(&webhooks("  queue_path: q.redb\n"));
    assert!(ok, "{out}");
    let (ok, out) = validate(&webhooks(
        "  queue_path: q.redb\nstate:\n  backend: embedded\n  path: s.redb\n",
    ));
    assert!(!ok);
    assert!(
        out.contains("webhooks.queue_path: the queue lives in the state store"),
        "{out}"
    );
}
