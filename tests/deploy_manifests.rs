//! The deployment files say what the gateway really does: every Kubernetes manifest under
//! deploy/kubernetes is parsed, and its probes, ports, images, users and mounted configs are
//! checked against the config it mounts and a running gateway; the alert rules and the dashboard
//! only use metrics the gateway exports; the Dockerfile builds a pinned, non-root image whose
//! health check is the binary itself. When a container engine answers, the image is built.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const GATEWAY_IMAGE: &str = "tiktok-gateway";
/// Where the manifests mount the gateway's config folder (the image's default config lives there).
const CONFIG_DIR: &str = "/etc/tiktok-gateway/config";
/// Metric names Prometheus records itself, allowed in rules next to the gateway's own.
const PROMETHEUS_BUILTIN: &[&str] = &["up"];

/// The standard process metrics the gateway exports under their conventional names (the
/// prometheus crate's process collector, on Linux).
const PROCESS_METRICS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];

/// The namespace the gateway's registry puts before every name it registers.
const NAMESPACE: &str = "tiktok_gateway_";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

struct Manifest {
    file: PathBuf,
    text: String,
    doc: Value,
}

impl Manifest {
    fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or_default()
    }
    fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or_default()
    }
    fn what(&self) -> String {
        format!("{} {}/{}", self.file.display(), self.kind(), self.name())
    }
}

/// Every document of every YAML file under deploy/kubernetes.
fn manifests() -> Vec<Manifest> {
    let files = yaml_files(&repo().join("deploy/kubernetes"));
    assert!(!files.is_empty(), "no manifests under deploy/kubernetes");
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            assert!(
                doc["apiVersion"].is_string() && doc["kind"].is_string(),
                "{}: a document without apiVersion/kind",
                file.display()
            );
            out.push(Manifest {
                file: file.clone(),
                text: text.clone(),
                doc,
            });
        }
    }
    out
}

fn workloads(all: &[Manifest]) -> Vec<&Manifest> {
    all.iter()
        .filter(|m| matches!(m.kind(), "Deployment" | "StatefulSet" | "DaemonSet"))
        .collect()
}

fn containers(m: &Manifest) -> Vec<&Value> {
    m.doc["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn is_gateway(container: &Value) -> bool {
    let image = container["image"].as_str().unwrap_or_default();
    image
        .rsplit('/')
        .next()
        .is_some_and(|last| last.split([':', '@']).next() == Some(GATEWAY_IMAGE))
}

/// The gateway config a gateway container runs: the ConfigMap mounted at CONFIG_DIR.
fn mounted_config<'a>(all: &'a [Manifest], workload: &Manifest, container: &Value) -> &'a str {
    let what = workload.what();
    let args: Vec<&str> = container["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let config_arg = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1])
        .unwrap_or_else(|| panic!("{what}: gateway container has no --config"));
    assert_eq!(
        config_arg,
        format!("{CONFIG_DIR}/gateway.yaml"),
        "{what}: --config is not the mounted file"
    );
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|mounts| mounts.iter().find(|v| v["mountPath"] == CONFIG_DIR))
        .unwrap_or_else(|| panic!("{what}: nothing mounted at {CONFIG_DIR}"));
    let volume = workload.doc["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .and_then(|vols| vols.iter().find(|v| v["name"] == mount["name"]))
        .unwrap_or_else(|| panic!("{what}: volume {} not defined", mount["name"]));
    let cm_name = volume["configMap"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: the config volume is not a ConfigMap"));
    let cm = all
        .iter()
        .find(|m| m.kind() == "ConfigMap" && m.name() == cm_name)
        .unwrap_or_else(|| panic!("{what}: ConfigMap {cm_name} is not in deploy/kubernetes"));
    cm.doc["data"]["gateway.yaml"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no data.gateway.yaml", cm.what()))
}

struct Listener {
    port: u16,
    loopback: bool,
    metrics: bool,
}

/// Listener addresses and roles, read from a config's YAML.
fn listeners(yaml: &str) -> BTreeMap<String, Listener> {
    let config: Value = serde_saphyr::from_str(yaml).unwrap();
    let mut out = BTreeMap::new();
    for (name, l) in config["listeners"].as_object().expect("listeners") {
        let addr: std::net::SocketAddr = l["address"].as_str().unwrap().parse().unwrap();
        let role = l["role"].as_str().unwrap_or(name.as_str());
        out.insert(
            name.clone(),
            Listener {
                port: addr.port(),
                loopback: addr.ip().is_loopback(),
                metrics: role == "metrics",
            },
        );
    }
    out
}

/// A probe's port, a number or the name of one of the container's ports.
fn resolve_port(container: &Value, port: &Value) -> u16 {
    if let Some(n) = port.as_u64() {
        return n as u16;
    }
    let name = port.as_str().expect("port is a number or a name");
    container["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("named port {name} is not declared")) as u16
}

/// The paths the gateway's metrics listener answers 200 on, asked of a running gateway.
fn served_metrics_paths(paths: &BTreeSet<String>) -> BTreeSet<String> {
    let metrics_port = common::free_port();
    let egress_port = common::free_port();
    let gw = common::TestGateway::start(|_| {
        format!(
            r#"listeners:
  egress: {{ address: "127.0.0.1:{egress_port}" }}
  metrics: {{ address: "127.0.0.1:{metrics_port}" }}
upstreams:
  orders: {{ targets: ["127.0.0.1:9"] }}
routes:
  - {{ name: r, listener: egress, match: {{ path_prefix: /x/ }}, auth: none, upstream: orders }}
"#
        )
    });
    let mut ok = BTreeSet::new();
    for path in paths {
        let url = format!("http://127.0.0.1:{metrics_port}{path}");
        if tiktok_gateway::ops::health_probe::probe(&url, std::time::Duration::from_secs(5)).is_ok()
        {
            ok.insert(path.clone());
        }
    }
    drop(gw);
    ok
}

#[test]
fn gateway_containers_probe_real_endpoints_on_the_configured_ports() {
    let all = manifests();
    let mut probe_paths = BTreeSet::new();
    let mut gateways = 0;
    for w in workloads(&all) {
        for c in containers(w).into_iter().filter(|c| is_gateway(c)) {
            gateways += 1;
            let what = format!("{} container {}", w.what(), c["name"]);
            let config = mounted_config(&all, w, c);
            let listeners = listeners(config);
            let metrics: Vec<&Listener> = listeners.values().filter(|l| l.metrics).collect();
            assert_eq!(metrics.len(), 1, "{what}: one metrics listener expected");
            let metrics = metrics[0];
            assert!(
                !metrics.loopback,
                "{what}: the kubelet cannot probe a loopback metrics listener"
            );
            for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
                let get = &c[probe]["httpGet"];
                assert_eq!(get["path"], path, "{what}: {probe} path");
                assert_eq!(
                    resolve_port(c, &get["port"]),
                    metrics.port,
                    "{what}: {probe} is not on the metrics listener's port"
                );
                probe_paths.insert(path.to_string());
            }
            // Declared ports are exactly the listeners reachable from outside the pod.
            let declared: BTreeSet<u16> = c["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| p["containerPort"].as_u64().unwrap() as u16)
                        .collect()
                })
                .unwrap_or_default();
            let reachable: BTreeSet<u16> = listeners
                .values()
                .filter(|l| !l.loopback)
                .map(|l| l.port)
                .collect();
            assert_eq!(declared, reachable, "{what}: container ports vs listeners");
        }
    }
    assert!(gateways >= 2, "expected the edge and the sidecar gateway");
    let served = served_metrics_paths(&probe_paths);
    assert_eq!(
        served, probe_paths,
        "the gateway does not answer every probed path"
    );
}

#[test]
fn mounted_configs_validate_and_their_secrets_are_documented() {
    let all = manifests();
    let mut checked = 0;
    for w in workloads(&all) {
        for c in containers(w).into_iter().filter(|c| is_gateway(c)) {
            let config = mounted_config(&all, w, c);
            common::schema::assert_conforms(&w.what(), config);
            validate_with_mounts(&w.what(), config);
            // Each secret file the config reads is named in the workload manifest's comments,
            // which say which Secret must hold it.
            let comments: Vec<&str> = w
                .text
                .lines()
                .filter(|l| l.trim_start().starts_with('#'))
                .collect();
            for secret in secret_files(config) {
                assert!(
                    comments.iter().any(|l| l.contains(secret.as_str())),
                    "{}: secret file `{secret}` the config reads is not documented in the manifest",
                    w.what()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 2);
    let container = std::fs::read_to_string(repo().join("deploy/container/gateway.yaml")).unwrap();
    validate_with_mounts("deploy/container/gateway.yaml", &container);
}

/// Names of `${file:/etc/tiktok-gateway/secrets/<name>}` references.
fn secret_files(config: &str) -> Vec<String> {
    let prefix = "${file:/etc/tiktok-gateway/secrets/";
    config
        .match_indices(prefix)
        .filter_map(|(i, _)| {
            let rest = &config[i + prefix.len()..];
            rest.find('}').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// Runs `tiktok-gateway validate` on `config` with its container paths moved into a temp dir
/// holding dev certificates and placeholder secrets, as the mounts would provide them.
fn validate_with_mounts(what: &str, config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    let state = dir.path().join("state");
    std::fs::create_dir_all(etc.join("secrets")).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    tiktok_gateway::server::dev_certs::generate(&etc.join("certs")).unwrap();
    for name in secret_files(config) {
        // Keys and digests must be 32 bytes of hex; other secrets only need to be non-empty.
        let value = if name.ends_with("-key") || name.ends_with("-sha256") {
            "a".repeat(64)
        } else {
            format!("placeholder-{name}-0123456789abcdef")
        };
        std::fs::write(etc.join("secrets").join(&name), value).unwrap();
    }
    let local = config
        .replace("/etc/tiktok-gateway/", &format!("{}/", etc.display()))
        .replace("/var/lib/tiktok-gateway/", &format!("{}/", state.display()));
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, local).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
        .args(["validate", "--config"])
        .arg(&path)
        .env("REDIS_URL", "redis://127.0.0.1:6379/")
        .env(
            "DATABASE_URL",
            "postgres://gateway@postgres.example:5432/gateway?sslmode=require",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: validate failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn images_are_pinned_and_containers_run_unprivileged() {
    let all = manifests();
    let version = cargo_version();
    for w in workloads(&all) {
        let pod = &w.doc["spec"]["template"]["spec"];
        let pod_non_root = pod["securityContext"]["runAsNonRoot"] == true;
        for c in containers(w) {
            let what = format!("{} container {}", w.what(), c["name"]);
            let image = c["image"].as_str().unwrap_or_default();
            let last = image.rsplit('/').next().unwrap_or_default();
            let pinned_tag = last
                .split_once(':')
                .map(|(_, tag)| tag.split('@').next().unwrap_or_default())
                .filter(|tag| !tag.is_empty() && *tag != "latest");
            assert!(
                last.contains("@sha256:") || pinned_tag.is_some(),
                "{what}: image `{image}` is not pinned"
            );
            assert!(!image.ends_with(":latest"), "{what}: `latest`");
            if is_gateway(c) {
                assert_eq!(
                    pinned_tag,
                    Some(version.as_str()),
                    "{what}: the gateway image tag should be this release ({version})"
                );
            }
            let sc = &c["securityContext"];
            assert!(
                sc["runAsNonRoot"] == true || (pod_non_root && sc["runAsNonRoot"] != false),
                "{what}: not runAsNonRoot"
            );
            for user in [&sc["runAsUser"], &pod["securityContext"]["runAsUser"]] {
                assert_ne!(user.as_u64(), Some(0), "{what}: runs as uid 0");
            }
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{what}"
            );
            assert!(
                c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object(),
                "{what}: no resources"
            );
        }
    }
}

fn cargo_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

#[test]
fn edge_is_replicated_with_a_disruption_budget_and_services_reach_declared_ports() {
    let all = manifests();
    let edge = workloads(&all)
        .into_iter()
        .find(|w| containers(w).len() == 1 && containers(w).iter().all(|c| is_gateway(c)))
        .expect("an edge Deployment running only the gateway");
    let replicas = edge.doc["spec"]["replicas"].as_u64().unwrap();
    assert!(replicas >= 3, "edge replicas: {replicas}");
    let pod_labels = &edge.doc["spec"]["template"]["metadata"]["labels"];
    let pdb = all
        .iter()
        .find(|m| {
            m.kind() == "PodDisruptionBudget"
                && labels_match(&m.doc["spec"]["selector"]["matchLabels"], pod_labels)
        })
        .expect("a PodDisruptionBudget selecting the edge pods");
    let min = pdb.doc["spec"]["minAvailable"].as_u64().unwrap();
    assert!(
        min >= 1 && min < replicas,
        "minAvailable {min} of {replicas}"
    );

    let services: Vec<&Manifest> = all.iter().filter(|m| m.kind() == "Service").collect();
    assert!(!services.is_empty());
    for svc in services {
        let selected: Vec<&Manifest> = workloads(&all)
            .into_iter()
            .filter(|w| {
                labels_match(
                    &svc.doc["spec"]["selector"],
                    &w.doc["spec"]["template"]["metadata"]["labels"],
                )
            })
            .collect();
        assert!(!selected.is_empty(), "{}: selects no workload", svc.what());
        for port in svc.doc["spec"]["ports"].as_array().unwrap() {
            let target = &port["targetPort"];
            let found = selected.iter().flat_map(|w| containers(w)).any(|c| {
                c["ports"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| &p["name"] == target || &p["containerPort"] == target)
                })
            });
            assert!(found, "{}: targetPort {target} is not declared", svc.what());
        }
    }
}

// ---------------------------------------------------------------- metrics in rules and dashboards

/// Metric names the gateway exports: the first string argument of every counter/gauge/histogram
/// constructor under src/, with the registry's namespace, and the standard process metrics.
fn exported_metric_names() -> BTreeSet<String> {
    let constructors = [
        "Opts::new(",
        "HistogramOpts::new(",
        "IntCounter::new(",
        "IntGauge::new(",
        "Gauge::new(",
        "PullingGauge::new(",
        "counter(",
        "gauge(",
        "histogram(",
    ];
    let mut names = BTreeSet::new();
    for file in rust_files(&repo().join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for ctor in constructors {
            for (i, _) in text.match_indices(ctor) {
                let rest = text[i + ctor.len()..].trim_start();
                if let Some(lit) = rest.strip_prefix('"')
                    && let Some(end) = lit.find('"')
                {
                    let name = &lit[..end];
                    if is_metric_name(name) {
                        names.insert(format!("{NAMESPACE}{name}"));
                    }
                }
            }
        }
    }
    names.extend(PROCESS_METRICS.iter().map(|n| n.to_string()));
    names
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':')
}

/// Metric names used in a PromQL expression: identifiers that are not functions, keywords,
/// label names, strings, durations or Grafana variables.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
    ];
    // Aggregations may put `by (...)` between their name and their parenthesis.
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    // Drop strings, label matchers, ranges and `$variables`.
    let mut cleaned = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_string = false;
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            '$' => {
                while chars
                    .peek()
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_')
                {
                    chars.next();
                }
            }
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => {
                cleaned.push(c);
                continue;
            }
        }
        cleaned.push(' ');
    }
    let chars: Vec<char> = cleaned.chars().collect();
    let mut names = BTreeSet::new();
    let mut in_group = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let tok: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if KEYWORDS.contains(&tok.as_str()) {
                // `by (label, ...)` and friends: the group holds label names, not metrics.
                in_group = !matches!(tok.as_str(), "and" | "or" | "unless" | "bool" | "offset");
            } else if next == Some(&'(') || in_group || AGGREGATIONS.contains(&tok.as_str()) {
                // A function name, or a label inside a grouping clause.
            } else {
                names.insert(tok);
            }
            continue;
        }
        if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c == ')' {
            in_group = false;
        }
        i += 1;
    }
    names
}

fn assert_known(what: &str, expr: &str, known: &BTreeSet<String>) {
    let used = promql_metric_names(expr);
    assert!(!used.is_empty(), "{what}: no metric found in `{expr}`");
    for name in used {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| known.contains(*b))
            .unwrap_or(&name);
        assert!(
            known.contains(base) || PROMETHEUS_BUILTIN.contains(&base),
            "{what}: `{name}` is not a metric the gateway exports (`{expr}`)"
        );
    }
}

#[test]
fn promql_name_extraction() {
    let names = promql_metric_names(
        r#"sum by (route, reason) (rate(auth_failures_total{reason="x"}[5m])) > 5 and on(instance) up{job="a"} == 0"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["auth_failures_total".to_string(), "up".to_string()])
    );
    let names = promql_metric_names(
        r#"histogram_quantile(0.99, sum by (route, le) (rate(request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["request_duration_seconds_bucket".to_string()])
    );
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics() {
    let known = exported_metric_names();
    // The scan finds the core metrics (it would be empty if the source moved or the
    // constructors changed).
    for core in [
        "requests_total",
        "auth_failures_total",
        "rate_limited_total",
        "pii_leak_detected_total",
        "webhook_queue_oldest_age_seconds",
        "tiktok_token_refresh_total",
        "build_info",
        "upstream_duration_seconds",
        "tiktok_request_duration_seconds",
        "tiktok_token_expires_in_seconds",
        "jwks_refresh_age_seconds",
        "ready",
    ] {
        let core = format!("{NAMESPACE}{core}");
        assert!(known.contains(&core), "{core} not found in src/: {known:?}");
    }

    let text = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yaml")).unwrap();
    let rules: Value = serde_saphyr::from_str(&text).unwrap();
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().expect("alerting rules only");
            assert!(alerts.insert(name.to_string()), "duplicate alert {name}");
            assert!(rule["labels"]["severity"].is_string(), "{name}: severity");
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{name}: summary"
            );
            assert_known(name, rule["expr"].as_str().unwrap(), &known);
        }
    }
    // The incident signals of the policy each have a rule.
    let exprs = text.as_str();
    for metric in [
        "tiktok_gateway_auth_failures_total",
        "tiktok_gateway_rate_limited_total",
        "tiktok_gateway_pii_leak_detected_total",
        "tiktok_gateway_webhook_queue_oldest_age_seconds",
        "tiktok_gateway_tiktok_token_refresh_total",
        "tiktok_gateway_tiktok_token_expires_in_seconds",
        "tiktok_gateway_ready",
        "up{",
    ] {
        assert!(exprs.contains(metric), "no alert on {metric}");
    }

    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/tiktok-gateway.json")).unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            assert_known(
                panel["title"].as_str().unwrap_or_default(),
                target["expr"].as_str().unwrap(),
                &known,
            );
        }
    }
}

#[test]
fn the_source_scan_finds_what_a_running_gateway_exports() {
    let known = exported_metric_names();
    let metrics_port = common::free_port();
    let egress_port = common::free_port();
    let _gw = common::TestGateway::start(|_| {
        format!(
            r#"listeners:
  egress: {{ address: "127.0.0.1:{egress_port}" }}
  metrics: {{ address: "127.0.0.1:{metrics_port}" }}
upstreams:
  orders: {{ targets: ["127.0.0.1:9"] }}
routes:
  - {{ name: r, listener: egress, match: {{ path_prefix: /x/ }}, auth: none, upstream: orders }}
"#
        )
    });
    let scrape = raw_get(metrics_port, "/metrics");
    let exported: BTreeSet<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        exported.contains("tiktok_gateway_config_loaded_timestamp_seconds"),
        "{scrape}"
    );
    for name in exported {
        assert!(
            known.contains(name),
            "{name} exported but not found by the scan"
        );
    }
}

fn raw_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

// ---------------------------------------------------------------- the image

#[test]
fn dockerfile_is_pinned_non_root_and_checks_health_with_the_binary() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FROM "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(froms.len() >= 2, "multi-stage build expected");
    for image in &froms {
        let last = image.rsplit('/').next().unwrap();
        let tag = last.split_once(':').map(|(_, t)| t).unwrap_or_default();
        // A version tag (`1.95.0-bookworm`), a digest, or an image named for one Debian release
        // (distroless publishes no other version tags).
        let versioned = tag.chars().next().is_some_and(|c| c.is_ascii_digit()) && tag.contains('.')
            || last.contains("@sha256:")
            || last.starts_with("cc-debian12:")
            || last.starts_with("static-debian12:");
        assert!(
            !tag.is_empty() && !tag.starts_with("latest") && versioned,
            "base image `{image}` is not pinned to a version"
        );
    }
    assert!(
        text.contains("cargo build --release --locked --no-default-features --bin tiktok-gateway"),
        "build line"
    );
    let healthcheck = text
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .take(2)
        .collect::<String>();
    assert!(
        healthcheck.contains("\"health\"") && !healthcheck.contains("curl"),
        "{healthcheck}"
    );
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    let uid = user.trim().split(':').next().unwrap_or_default();
    assert!(!matches!(uid, "root" | "0" | ""), "USER {user}");
    // The image's health check probes the metrics listener of the config it bakes in.
    let baked = std::fs::read_to_string(repo().join("deploy/container/gateway.yaml")).unwrap();
    let metrics_port = listeners(&baked)
        .values()
        .find(|l| l.metrics)
        .map(|l| l.port)
        .unwrap();
    assert!(healthcheck.contains(&format!("http://127.0.0.1:{metrics_port}/healthz")));
    assert!(
        text.contains("COPY deploy/container/gateway.yaml /etc/tiktok-gateway/config/gateway.yaml")
    );

    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for entry in ["target/", ".git/", "**/*.key", "**/*.pem"] {
        assert!(
            ignore.lines().any(|l| l == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

#[test]
fn image_builds_when_a_container_engine_answers() {
    let engine = ["docker", "podman"].into_iter().find(|e| {
        Command::new(e)
            .arg("info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(engine) = engine else {
        // Written to the process's stderr directly, not through the test harness's capture, so
        // the skip shows in every `cargo test` run.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED image_builds_when_a_container_engine_answers: neither `docker info` nor \
             `podman info` answers on this machine, so the image was NOT built. ***\n"
        );
        return;
    };
    let tag = format!("tiktok-gateway-test:{}", std::process::id());
    let status = Command::new(engine)
        .args(["build", "-t", &tag, "."])
        .current_dir(repo())
        .status()
        .unwrap();
    assert!(status.success(), "{engine} build failed");
    let out = Command::new(engine)
        .args(["run", "--rm", &tag, "--version"])
        .output()
        .unwrap();
    let _ = Command::new(engine).args(["rmi", "-f", &tag]).status();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
