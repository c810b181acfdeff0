//! `tiktok-gateway validate` reports every problem as `file:line:col: error: <yaml.path>: message`
//! with the line and a caret, exits 1 on any error, prints warnings without failing, and speaks
//! JSON for CI with `--format json`.

use std::process::Command;

use serde_json::Value;

/// Runs `validate` on `yaml` written as `gateway.yaml` in a fresh folder, with extra arguments;
/// the folder is cut from the output, so files are named `gateway.yaml`.
fn run(yaml: &str, extra: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
        .args(["validate", "--config"])
        .arg(&path)
        .args(extra)
        .output()
        .unwrap();
    let shown = path.display().to_string();
    let clean = |b: &[u8]| String::from_utf8_lossy(b).replace(&shown, "gateway.yaml");
    (out.status.success(), clean(&out.stdout), clean(&out.stderr))
}

fn validate(yaml: &str) -> (bool, String) {
    let (ok, stdout, stderr) = run(yaml, &[]);
    (ok, format!("{stdout}{stderr}"))
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

/// One route on `egress` to `orders`, with `body` as its keys (4-space indented, from line 9).
fn route(body: &str) -> String {
    with_egress(&format!("routes:\n  - name: a\n{body}"))
}

/// One diagnostic as `--format json` gives it: severity, path, line, col, message, hint.
type Expected = (
    &'static str,
    &'static str,
    u64,
    u64,
    &'static str,
    Option<&'static str>,
);

struct Case {
    what: &'static str,
    yaml: String,
    /// The exit status: `true` when only warnings are expected.
    ok: bool,
    expected: Vec<Expected>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "a list written as a single value",
            yaml: route("    listener: egress\n    match: { path_prefix: /x/, methods: GET }\n    auth: none\n    upstream: orders\n"),
            ok: false,
            expected: vec![(
                "error",
                "routes[0].match.methods",
                10,
                41,
                "`methods` must be a list, found `GET`",
                Some("write `methods: [GET]`"),
            )],
        },
        Case {
            what: "a word where a number belongs",
            yaml: with_egress("    retries: three\nroutes: []\n"),
            ok: false,
            expected: vec![(
                "error",
                "upstreams.orders.retries",
                7,
                14,
                "`retries` must be a whole number (0 or more), found `three`",
                None,
            )],
        },
        Case {
            what: "a route key indented under `match`: once, not also `upstream` missing",
            yaml: route("    listener: egress\n    match:\n      path_prefix: /x/\n      upstream: orders\n    auth: none\n"),
            ok: false,
            expected: vec![(
                "error",
                "routes[0].match.upstream",
                12,
                7,
                "`upstream` is indented under `match`; it belongs to routes[0]",
                Some("move it left to column 5, in line with the other keys of routes[0]"),
            )],
        },
        Case {
            what: "a `match` key left at the route's level: once, not also `match` empty",
            yaml: route("    listener: egress\n    match:\n    path_prefix: /x/\n    auth: none\n    upstream: orders\n"),
            ok: false,
            expected: vec![(
                "error",
                "routes[0].path_prefix",
                11,
                5,
                "`path_prefix` belongs under `match`",
                Some("indent it under `match:`, which is empty as written"),
            )],
        },
        Case {
            what: "a listener's setting left at the level of the names: once, not also the listener empty",
            yaml: "listeners:\n  egress:\n  address: \"127.0.0.1:8080\"\n".into(),
            ok: false,
            expected: vec![(
                "error",
                "listeners.address",
                3,
                3,
                "`address` belongs under `egress`",
                Some("indent it under `egress:`, which is empty as written"),
            )],
        },
        Case {
            what: "a duplicate key, without library advice",
            yaml: "listeners:\n  egress:\n    address: \"127.0.0.1:8080\"\n    address: \"127.0.0.1:8081\"\n".into(),
            ok: false,
            expected: vec![(
                "error",
                "listeners.egress.address",
                4,
                5,
                "`address` is written twice in this map (first on line 3)",
                Some("keep one of them"),
            )],
        },
        Case {
            what: "a bad listener address, and no knock-on from the routes on it",
            yaml: "listeners:\n  egress:\n    address: \"127.0.0.1:80800\"\nupstreams:\n  orders:\n    targets: [\"127.0.0.1:9001\"]\nroutes:\n  - { name: a, listener: egress, match: { path: /a }, auth: none, upstream: orders }\n  - { name: b, listener: egress, match: { path: /b }, auth: none, upstream: orders }\n".into(),
            ok: false,
            expected: vec![(
                "error",
                "listeners.egress.address",
                3,
                14,
                "not an IP:port address (e.g. 127.0.0.1:8080)",
                Some("the port is a number from 1 to 65535"),
            )],
        },
        Case {
            what: "an unknown key close to a known one",
            yaml: "listeners:\n  egress:\n    adress: \"127.0.0.1:8080\"\n".into(),
            ok: false,
            expected: vec![(
                "error",
                "listeners.egress.adress",
                3,
                5,
                "unknown key `adress`",
                Some("did you mean `address`?"),
            )],
        },
        Case {
            what: "a misspelt required key: not also reported missing",
            yaml: route("    listner: egress\n    match: { path: /a }\n    auth: none\n    upstream: orders\n"),
            ok: false,
            expected: vec![(
                "error",
                "routes[0].listner",
                9,
                5,
                "unknown key `listner`",
                Some("did you mean `listener`?"),
            )],
        },
        Case {
            what: "two independent type errors in two routes, reported together",
            yaml: with_egress("routes:\n  - name: a\n    listener: egress\n    match: { path: /a, methods: GET }\n    auth: none\n    upstream: orders\n  - name: b\n    listener: egress\n    match: { path: /b }\n    auth: none\n    upstream: orders\n    forward_authorization: sometimes\n"),
            ok: false,
            expected: vec![
                (
                    "error",
                    "routes[0].match.methods",
                    10,
                    33,
                    "`methods` must be a list, found `GET`",
                    Some("write `methods: [GET]`"),
                ),
                (
                    "error",
                    "routes[1].forward_authorization",
                    18,
                    28,
                    "`forward_authorization` must be true or false, found `sometimes`",
                    None,
                ),
            ],
        },
        Case {
            what: "two independent reference errors, reported together",
            yaml: with_egress("routes:\n  - { name: a, listener: egres, match: { path: /a }, auth: none, upstream: orders }\n  - { name: b, listener: egress, match: { path: /b }, auth: { jwt: idp }, upstream: orders }\n"),
            ok: false,
            expected: vec![
                (
                    "error",
                    "routes[0].listener",
                    8,
                    26,
                    "unknown listener `egres`",
                    Some("did you mean `egress`?"),
                ),
                (
                    "error",
                    "routes[1].auth.jwt",
                    9,
                    68,
                    "unknown JWT issuer `idp`",
                    Some("declare it under `identity.jwt`"),
                ),
            ],
        },
        Case {
            what: "a route an earlier route shadows: a warning, not a failure",
            yaml: with_egress("routes:\n  - name: all\n    listener: egress\n    match: { path_prefix: /orders/ }\n    auth: none\n    upstream: orders\n  - name: one\n    listener: egress\n    match: { path: /orders/1, methods: [GET] }\n    auth: none\n    upstream: orders\n"),
            ok: true,
            expected: vec![(
                "warning",
                "routes[1].match",
                15,
                12,
                "route `one` can never match: routes[0] (`all`) before it already takes all its requests",
                Some("move the more specific route first, or narrow the earlier one"),
            )],
        },
        Case {
            what: "settings that have no effect: warnings",
            yaml: "listeners:\n  egress:\n    address: \"127.0.0.1:8080\"\n    allow_plaintext: true\nupstreams:\n  orders:\n    targets: [\"127.0.0.1:9001\"]\n  spare:\n    targets: [\"127.0.0.1:9002\"]\nroutes:\n  - { name: a, listener: egress, match: { path: /a }, auth: none, upstream: orders }\n".into(),
            ok: true,
            expected: vec![
                (
                    "warning",
                    "listeners.egress.allow_plaintext",
                    4,
                    22,
                    "has no effect: plaintext is always allowed on a loopback address",
                    Some("remove it"),
                ),
                (
                    "warning",
                    "upstreams.spare",
                    8,
                    3,
                    "no route uses this upstream",
                    None,
                ),
            ],
        },
        Case {
            what: "a tab in the indentation",
            yaml: "listeners:\n  egress:\n\taddress: \"127.0.0.1:8080\"\n".into(),
            ok: false,
            expected: vec![(
                "error",
                "listeners.egress",
                3,
                1,
                "a tab is used to indent; YAML indents with spaces only",
                Some("replace the tab with spaces"),
            )],
        },
        Case {
            what: "a key indented under a key that already has a value",
            yaml: "listeners:\n  egress:\n    address: \"127.0.0.1:8080\"\n      role: proxy\n".into(),
            ok: false,
            expected: vec![(
                "error",
                "listeners.egress",
                4,
                7,
                "this line is indented further than the key above it, which already has a value",
                Some("line it up with the key above (column 5), or move that key's value onto its own indented lines"),
            )],
        },
        Case {
            what: "an unclosed bracket",
            yaml: "listeners:\n  egress: { address: \"127.0.0.1:8080\", hosts: [a.example, b.example }\n".into(),
            ok: false,
            expected: vec![(
                "error",
                "listeners.egress.hosts",
                2,
                47,
                "this `[` is closed by `}`",
                Some("close it with `]`"),
            )],
        },
        Case {
            what: "a route without `auth`",
            yaml: route("    listener: egress\n    match: { path: /a }\n    upstream: orders\n"),
            ok: false,
            expected: vec![(
                "error",
                "routes[0].auth",
                8,
                5,
                "required key `auth` is missing",
                Some("`auth`: `none` (written explicitly) or the accepted credentials and required scopes."),
            )],
        },
        Case {
            what: "a value outside its list of choices",
            yaml: with_egress("routes: []\nrate_limits:\n  backend: redsi\n"),
            ok: false,
            expected: vec![(
                "error",
                "rate_limits.backend",
                9,
                12,
                "`backend` must be one of `local` or `redis`, found `redsi`",
                Some("did you mean `redis`?"),
            )],
        },
        Case {
            what: "a single value where a map belongs, and a list where a single value belongs",
            yaml: route("    listener: egress\n    match: /a\n    auth: none\n    upstream: [orders]\n"),
            ok: false,
            expected: vec![
                (
                    "error",
                    "routes[0].match",
                    10,
                    12,
                    "`match` must be a map of settings, found `/a`",
                    Some("its keys: host, methods, path, path_prefix"),
                ),
                (
                    "error",
                    "routes[0].upstream",
                    12,
                    15,
                    "`upstream` must be a single value (text or a number), found a list",
                    Some("write a single value: `upstream: orders`"),
                ),
            ],
        },
        Case {
            what: "an empty file",
            yaml: String::new(),
            ok: false,
            expected: vec![(
                "error",
                "",
                1,
                1,
                "the config is empty",
                Some("it needs at least a `listeners:` section"),
            )],
        },
    ]
}

/// Each broken config gives exactly its diagnostics, with position, message and hint.
#[test]
fn every_broken_config_gives_exactly_its_diagnostics() {
    let cases = cases();
    assert!(cases.len() >= 15);
    for case in cases {
        let (ok, stdout, stderr) = run(&case.yaml, &["--format", "json"]);
        let report: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {stdout}{stderr}", case.what));
        let got: Vec<(String, String, u64, u64, String, Option<String>)> = report["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["severity"].as_str().unwrap().to_string(),
                    d["path"].as_str().unwrap().to_string(),
                    d["line"].as_u64().unwrap_or(0),
                    d["col"].as_u64().unwrap_or(0),
                    d["message"].as_str().unwrap().to_string(),
                    d["hint"].as_str().map(String::from),
                )
            })
            .collect();
        let expected: Vec<(String, String, u64, u64, String, Option<String>)> = case
            .expected
            .iter()
            .map(|(s, p, l, c, m, h)| {
                (
                    s.to_string(),
                    p.to_string(),
                    *l,
                    *c,
                    m.to_string(),
                    h.map(String::from),
                )
            })
            .collect();
        assert_eq!(got, expected, "{}:\n{}", case.what, case.yaml);
        assert_eq!(ok, case.ok, "{}: exit status", case.what);
        assert_eq!(report["ok"], case.ok, "{}", case.what);
    }
}

/// The text form: `file:line:col: severity: path: message`, the line, a caret under the value,
/// the hint, and a count; warnings do not fail `validate`.
#[test]
fn text_points_at_the_column_with_a_caret() {
    let (ok, out) = validate(&route(
        "    listener: egress\n    match: { path_prefix: /x/, methods: GET }\n    auth: none\n    upstream: orders\n",
    ));
    assert!(!ok);
    assert!(
        out.contains(
            "gateway.yaml:10:41: error: routes[0].match.methods: `methods` must be a list, found `GET`
   |
10 |     match: { path_prefix: /x/, methods: GET }
   |                                         ^^^
   = hint: write `methods: [GET]`
"
        ),
        "{out}"
    );
    assert!(out.contains("gateway.yaml: 1 error, 0 warnings"), "{out}");
    assert!(!out.contains("expected sequence"), "parser jargon: {out}");

    let (ok, out) = validate(&with_egress(
        "routes:\n  - { name: a, listener: egress, match: { path_prefix: / }, auth: none, upstream: orders }\n  - { name: b, listener: egress, match: { path: /b }, auth: none, upstream: orders }\n",
    ));
    assert!(ok, "{out}");
    assert!(
        out.contains("gateway.yaml:9:41: warning: routes[1].match: route `b` can never match"),
        "{out}"
    );
    assert!(
        out.contains("gateway.yaml: ok (1 listeners, 2 routes"),
        "{out}"
    );
}

/// `--format json` is one object for CI: the file, the verdict, counts, and every diagnostic
/// with the same fields, on stdout; the exit status is the same as in text form.
#[test]
fn json_output_shape() {
    let yaml = with_egress("    retries: three\nroutes: []\n");
    let (ok, stdout, stderr) = run(&yaml, &["--format", "json"]);
    assert!(!ok);
    assert!(
        !stderr.contains("retries"),
        "JSON mode prints no text report: {stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({
            "file": "gateway.yaml",
            "ok": false,
            "errors": 1,
            "warnings": 0,
            "diagnostics": [{
                "severity": "error",
                "file": "gateway.yaml",
                "line": 7,
                "col": 14,
                "path": "upstreams.orders.retries",
                "message": "`retries` must be a whole number (0 or more), found `three`",
                "hint": null,
            }],
        })
    );
    let (ok, stdout, _) = run(&with_egress("routes: []\n"), &["--format", "json"]);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["errors"], 0);
    // The unused upstream is a warning: listed, and the config still passes.
    assert_eq!(report["warnings"], 1);
    assert!(ok);
    // A file that cannot be read is reported the same way.
    let out = Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
        .args([
            "validate",
            "--format",
            "json",
            "--config",
            "/nonexistent/gateway.yaml",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["diagnostics"][0]["line"], Value::Null);
    assert!(
        report["diagnostics"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot read the file"),
        "{report}"
    );
}

/// Value and reference errors all over the file come in one run.
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
    auth: none
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
        "gateway.yaml:4:3: error: listeners.public: plaintext listener on a non-loopback address",
        "gateway.yaml:9:26: error: upstreams.orders.timeouts.connect: `5` has no unit",
        "gateway.yaml:15:15: error: routes[0].upstream: unknown upstream `nowhere`",
        "gateway.yaml:17:15: error: routes[1].listener: unknown listener `nolistener`",
        "gateway.yaml: 4 errors, 0 warnings",
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
        "gateway.yaml:5:23: error: listeners.egress.connections.header_timeout: must be above 0",
        "gateway.yaml:6:22: error: listeners.egress.connections.min_body_rate: `fast` is not a rate such as 1KiB/s",
        "gateway.yaml:7:28: error: listeners.egress.connections.min_body_rate_after: `5` has no unit",
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
        out.contains(
            "gateway.yaml:10:19: error: rate_limits.retry_interval: only used with `backend: redis`"
        ),
        "{out}"
    );
    let redis = yaml.replace(
        "backend: local",
        "backend: redis\n  url: \"redis://127.0.0.1:6379/\"\n  timeout: 0ms\n  pool_size: 0\n  on_backend_error: fail_closed",
    );
    let (ok, out) = validate(&redis);
    assert!(!ok, "{out}");
    for expected in [
        "gateway.yaml:11:12: error: rate_limits.timeout: must be above 0",
        "gateway.yaml:12:14: error: rate_limits.pool_size: must be between 1 and 64",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
    // A choice outside the list is a shape error, found before values are checked.
    let (ok, out) = validate(&redis.replace("fail_closed", "sometimes"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("gateway.yaml:13:21: error: rate_limits.on_backend_error: `on_backend_error` must be one of `local`, `fail_open` or `fail_closed`, found `sometimes`"),
        "{out}"
    );
    let (ok, out) = validate(
        &redis
            .replace("0ms", "50ms")
            .replace("pool_size: 0", "pool_size: 2"),
    );
    assert!(ok, "{out}");
}

#[test]
fn unknown_keys_and_inline_secrets_are_refused() {
    let (ok, out) =
        validate("listeners:\n  egress:\n    address: \"127.0.0.1:8080\"\n    adress: typo\n");
    assert!(!ok);
    assert!(
        out.contains("gateway.yaml:4:5: error: listeners.egress.adress: unknown key `adress`"),
        "{out}"
    );

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
    assert!(out.contains("gateway.yaml:5:26: error: identity.api_keys[0].sha256: environment variable TTGW_TEST_DEFINITELY_UNSET is not set"), "{out}");
    assert!(
        out.contains(
            "gateway.yaml:8:39: error: tiktok.apps.main.app_secret: secrets are never inline"
        ),
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
            "gateway.yaml:10:8: error: rate_limits.url: not a valid redis:// URL",
        ),
        (
            "http://127.0.0.1/",
            "gateway.yaml:10:8: error: rate_limits.url: not a valid redis:// URL",
        ),
        (
            "redis://:hunter2@127.0.0.1:6379/",
            "gateway.yaml:10:8: error: rate_limits.url: this URL carries a password: secrets are never inline",
        ),
        (
            "${env:redis://u:hunter2@h}",
            "gateway.yaml:10:8: error: rate_limits.url: not an environment variable name",
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
        out.contains("gateway.yaml:11:15: error: rate_limits.key_secret: secrets are never inline"),
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
    assert!(
        out.contains("gateway.yaml:14:35: error: routes[0].auth.scopes:"),
        "{out}"
    );
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
        out.contains("gateway.yaml:9:10: error: logging.level:")
            && out.contains("`pingora_core=loud`"),
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
        out.contains(
            "gateway.yaml:14:22: error: identity.jwt[0].max_token_age: must be at least 1s"
        ),
        "{out}"
    );
    let (ok, out) = validate(&issuer("soon"));
    assert!(!ok);
    assert!(
        out.contains("gateway.yaml:14:22: error: identity.jwt[0].max_token_age:"),
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
            "line 9: state.backend: `backend` must be one of `embedded` or `postgres`, found `sqlite`",
        ),
        (
            "  path: state.redb\n  lease: 10ms\n",
            "line 10: state.lease: must be at least 1s",
        ),
    ] {
        let (ok, out) = validate(&with(state));
        assert!(!ok, "{state}: {out}");
        // `line N: path: message` is printed as `gateway.yaml:N:col: error: path: message`.
        let (line, message) = match expected.strip_prefix("line ") {
            Some(rest) => {
                let (n, message) = rest.split_once(": ").unwrap();
                (Some(format!("gateway.yaml:{n}:")), message)
            }
            None => (None, expected),
        };
        let wanted = format!("error: {message}");
        assert!(
            out.lines()
                .any(|l| l.contains(&wanted) && line.as_deref().is_none_or(|p| l.starts_with(p))),
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
