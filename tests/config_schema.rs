//! `gateway.schema.json`: it is what `tiktok-gateway schema` prints (CI runs the same diff), every
//! shipped config conforms to it and names it in its modeline, and it refuses what the loader
//! refuses.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::schema::{assert_conforms, schema_errors};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// gateway.yaml, examples/*.yaml and the container image's config.
fn shipped_configs() -> Vec<PathBuf> {
    let mut files = vec![
        repo().join("gateway.yaml"),
        repo().join("deploy/container/gateway.yaml"),
    ];
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    examples.sort();
    assert!(!examples.is_empty(), "examples/ has no YAML config");
    files.extend(examples);
    files
}

#[test]
fn checked_in_schema_is_what_the_binary_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let checked_in = std::fs::read_to_string(repo().join("gateway.schema.json")).unwrap();
    assert!(
        printed == checked_in,
        "gateway.schema.json is stale: run `cargo run -q -- schema > gateway.schema.json`"
    );
}

#[test]
fn every_shipped_config_conforms_and_names_the_schema() {
    for path in shipped_configs() {
        let text = std::fs::read_to_string(&path).unwrap();
        assert_conforms(&path.display().to_string(), &text);
        let first = text.lines().next().unwrap_or_default();
        let target = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{}: first line is not the modeline", path.display()));
        let resolved = path.parent().unwrap().join(target);
        assert_eq!(
            resolved.canonicalize().unwrap(),
            repo().join("gateway.schema.json").canonicalize().unwrap(),
            "{}: modeline points elsewhere",
            path.display()
        );
    }
}

const VALID: &str = r#"
listeners:
  egress: { address: "127.0.0.1:8080", role: proxy }
upstreams:
  orders: { targets: ["127.0.0.1:9001"], timeouts: { connect: 1s } }
routes:
  - name: a
    listener: egress
    match: { path_prefix: /orders/, methods: [GET] }
    auth: none
    rate_limit: [{ key: caller, rate: 5/s }]
    upstream: orders
"#;

#[test]
fn schema_accepts_a_small_valid_config() {
    assert_conforms("small config", VALID);
    // The loader reads an unquoted number as the text it spells (`512` bytes, TLS `1.3`).
    let numbers = VALID.replace(
        "    upstream: orders\n",
        "    upstream: orders\n    limits: { max_uri: 512 }\n",
    );
    assert_ne!(numbers, VALID);
    assert_conforms("sizes as numbers", &numbers);
}

#[test]
fn schema_refuses_what_the_loader_refuses() {
    let cases = [
        ("unknown top-level key", VALID.replace("routes:", "rootes:")),
        (
            "unknown nested key",
            VALID.replace("role: proxy", "rolle: proxy"),
        ),
        (
            "a list written as a scalar",
            VALID.replace("methods: [GET]", "methods: GET"),
        ),
        (
            "a number where a list is",
            VALID.replace("[\"127.0.0.1:9001\"]", "5"),
        ),
        ("no auth", VALID.replace("    auth: none\n", "")),
        (
            "auth keyword other than none",
            VALID.replace("auth: none", "auth: open"),
        ),
        ("unknown role", VALID.replace("role: proxy", "role: edge")),
        (
            "no listeners",
            VALID.replace(
                "listeners:\n  egress: { address: \"127.0.0.1:8080\", role: proxy }\n",
                "",
            ),
        ),
    ];
    for (what, yaml) in cases {
        assert_ne!(yaml, VALID, "{what}: the case did not change the config");
        assert!(
            !schema_errors(&yaml).is_empty(),
            "{what}: accepted:\n{yaml}"
        );
    }
}
