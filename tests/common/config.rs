//! A typed builder for `gateway.yaml`. The YAML contract is the gateway's (README, configuration
//! reference); this only writes it, so a test says what it configures instead of pasting a
//! template. Secrets are written as files next to the config and referenced as `${file:..}`,
//! never inline. `render(dir)` writes those files into `dir` and returns the YAML text.
//!
//! ```ignore
//! let yaml = Config::new()
//!     .listener(Listener::plain("plain", port))
//!     .upstream(Upstream::new("orders", orders.addr()))
//!     .route(Route::prefix("orders", "plain", "/orders/").auth(Auth::None).upstream("orders"))
//!     .render(dir);
//! ```

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tiktok_gateway::sandbox::idp::{DEV_AUDIENCE, DevIdp, DevSigner};
use tiktok_gateway::sandbox::tiktok::SandboxConfig;

// ---------------------------------------------------------------- YAML writer

/// A YAML node. Scalars are written as given (strings go through [`q`]); maps and sequences
/// whose children are all scalars are written in flow style (`{ a: 1 }`, `[a, b]`), others in
/// block style.
#[derive(Debug, Clone)]
pub enum Y {
    Raw(String),
    Map(Vec<(String, Y)>),
    Seq(Vec<Y>),
}

/// A double-quoted YAML string (JSON escaping is valid YAML).
pub fn q(s: impl AsRef<str>) -> Y {
    Y::Raw(serde_json::to_string(s.as_ref()).unwrap_or_default())
}

/// A plain scalar: numbers, booleans, keywords.
pub fn raw(v: impl Display) -> Y {
    Y::Raw(v.to_string())
}

fn strs<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> Y {
    Y::Seq(items.into_iter().map(q).collect())
}

impl Y {
    fn is_flow(&self) -> bool {
        match self {
            Y::Raw(_) => true,
            Y::Map(m) => m.iter().all(|(_, v)| matches!(v, Y::Raw(_))),
            Y::Seq(s) => s.iter().all(|v| matches!(v, Y::Raw(_))),
        }
    }

    fn flow(&self) -> String {
        match self {
            Y::Raw(r) => r.clone(),
            Y::Map(m) if m.is_empty() => "{}".into(),
            Y::Map(m) => {
                let inner: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{}: {}", key(k), v.flow()))
                    .collect();
                format!("{{ {} }}", inner.join(", "))
            }
            Y::Seq(s) => {
                let inner: Vec<String> = s.iter().map(Y::flow).collect();
                format!("[{}]", inner.join(", "))
            }
        }
    }

    /// Block entries of a map at `indent`.
    fn write_map(entries: &[(String, Y)], indent: usize, out: &mut String) {
        for (k, v) in entries {
            out.push_str(&" ".repeat(indent));
            out.push_str(&key(k));
            out.push(':');
            if v.is_flow() {
                out.push(' ');
                out.push_str(&v.flow());
                out.push('\n');
            } else {
                out.push('\n');
                v.write_block(indent + 2, out);
            }
        }
    }

    fn write_block(&self, indent: usize, out: &mut String) {
        match self {
            Y::Map(m) => Y::write_map(m, indent, out),
            Y::Seq(items) => {
                for item in items {
                    out.push_str(&" ".repeat(indent));
                    out.push_str("- ");
                    match item {
                        Y::Map(m) if !item.is_flow() && !m.is_empty() => {
                            // The first entry shares the dash's line; the rest align with it.
                            let mut first = String::new();
                            Y::write_map(&m[..1], indent + 2, &mut first);
                            out.push_str(first.trim_start());
                            Y::write_map(&m[1..], indent + 2, out);
                        }
                        _ if item.is_flow() => {
                            out.push_str(&item.flow());
                            out.push('\n');
                        }
                        _ => {
                            out.push('\n');
                            item.write_block(indent + 2, out);
                        }
                    }
                }
            }
            Y::Raw(r) => {
                out.push_str(&" ".repeat(indent));
                out.push_str(r);
                out.push('\n');
            }
        }
    }
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        serde_json::to_string(k).unwrap_or_default()
    }
}

/// A value as YAML: strings and paths quoted, numbers and booleans plain.
pub trait ToY {
    fn to_y(&self) -> Y;
}

impl ToY for String {
    fn to_y(&self) -> Y {
        q(self)
    }
}

impl ToY for &str {
    fn to_y(&self) -> Y {
        q(self)
    }
}

impl ToY for PathBuf {
    fn to_y(&self) -> Y {
        q(self.display().to_string())
    }
}

macro_rules! plain_to_y {
    ($($t:ty),*) => {$(
        impl ToY for $t {
            fn to_y(&self) -> Y {
                raw(self)
            }
        }
    )*};
}
plain_to_y!(bool, u32, usize, i64);

/// Adds `k: v` when `v` is set.
fn opt<T: ToY>(m: &mut Vec<(String, Y)>, k: &str, v: &Option<T>) {
    if let Some(v) = v {
        m.push((k.to_owned(), v.to_y()));
    }
}

/// SHA-256 hex of `s`, as `identity.api_keys[].sha256` wants it.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

// ---------------------------------------------------------------- the whole file

/// A file written next to the config (secrets, a JWKS).
#[derive(Debug, Clone)]
struct SideFile {
    name: String,
    contents: Vec<u8>,
}

/// One `gateway.yaml`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub version: Option<String>,
    pub listeners: Vec<Listener>,
    pub identity: Identity,
    pub tiktok: Option<TikTok>,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    pub rate_limits: Option<RateLimits>,
    pub webhooks: Option<Webhooks>,
    pub state: Option<State>,
    pub privacy: Option<Privacy>,
    pub admin: Option<Admin>,
    pub trusted_proxies: Vec<String>,
    /// `telemetry.tracing`.
    pub tracing: Option<Tracing>,
    /// `forwarded_headers`: `x-forwarded` or `forwarded`.
    pub forwarded_headers: Option<String>,
    /// `server:`; unset fields keep the gateway's defaults.
    pub server: Server,
    /// `logging.access_log`; default: `access.log` in the config's folder (what
    /// `TestGateway::access_log` reads).
    pub access_log: Option<String>,
    /// `logging.application_log` (`stdout`, `stderr` or a path).
    pub application_log: Option<String>,
    pub log_level: Option<String>,
    /// Leave the `logging` section out entirely.
    pub no_logging: bool,
    /// Write `audit.signing_key` even without an admin API.
    pub audit_signing: bool,
}

impl Config {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn version(mut self, v: &str) -> Self {
        self.version = Some(v.to_owned());
        self
    }

    /// `audit.signing_key` with [`AUDIT_TEST_SEED`] (always written with an admin API).
    pub fn audit_signing(mut self) -> Self {
        self.audit_signing = true;
        self
    }

    pub fn listener(mut self, l: Listener) -> Self {
        self.listeners.push(l);
        self
    }

    pub fn upstream(mut self, u: Upstream) -> Self {
        self.upstreams.push(u);
        self
    }

    pub fn route(mut self, r: Route) -> Self {
        self.routes.push(r);
        self
    }

    pub fn routes(mut self, rs: impl IntoIterator<Item = Route>) -> Self {
        self.routes.extend(rs);
        self
    }

    pub fn jwt(mut self, j: JwtIssuer) -> Self {
        self.identity.jwt.push(j);
        self
    }

    pub fn api_key(mut self, k: ApiKey) -> Self {
        self.identity.api_keys.push(k);
        self
    }

    pub fn mtls(mut self, name: &str, scopes: &[&str]) -> Self {
        self.identity.mtls.push(MtlsName {
            name: name.to_owned(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        });
        self
    }

    pub fn blocked_subjects(mut self, subjects: &[&str]) -> Self {
        self.identity.blocked_subjects = subjects.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn tiktok(mut self, t: TikTok) -> Self {
        self.tiktok = Some(t);
        self
    }

    pub fn webhooks(mut self, w: Webhooks) -> Self {
        self.webhooks = Some(w);
        self
    }

    pub fn state(mut self, s: State) -> Self {
        self.state = Some(s);
        self
    }

    pub fn rate_limits(mut self, r: RateLimits) -> Self {
        self.rate_limits = Some(r);
        self
    }

    pub fn privacy(mut self, p: Privacy) -> Self {
        self.privacy = Some(p);
        self
    }

    pub fn admin(mut self, a: Admin) -> Self {
        self.admin = Some(a);
        self
    }

    pub fn trusted_proxies(mut self, cidrs: &[&str]) -> Self {
        self.trusted_proxies = cidrs.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn forwarded_headers(mut self, style: &str) -> Self {
        self.forwarded_headers = Some(style.to_owned());
        self
    }

    pub fn tracing(mut self, t: Tracing) -> Self {
        self.tracing = Some(t);
        self
    }

    pub fn server(mut self, server: Server) -> Self {
        self.server = server;
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = Some(level.to_owned());
        self
    }

    /// Writes the side files (secrets, JWKS) into `dir` and returns the YAML text.
    pub fn render(&self, dir: &Path) -> String {
        let mut files = Vec::new();
        let yaml = self.to_yaml(dir, &mut files);
        for f in files {
            std::fs::write(dir.join(&f.name), &f.contents)
                .unwrap_or_else(|e| panic!("write {}: {e}", f.name));
        }
        yaml
    }

    /// The YAML text alone; side files are collected in `files` (relative names).
    fn to_yaml(&self, dir: &Path, files: &mut Vec<SideFile>) -> String {
        let mut top: Vec<(String, Y)> = Vec::new();
        opt(&mut top, "version", &self.version);
        top.push((
            "listeners".into(),
            Y::Map(
                self.listeners
                    .iter()
                    .map(|l| (l.name.clone(), l.yaml()))
                    .collect(),
            ),
        ));
        if let Some(id) = self.identity.yaml(files) {
            top.push(("identity".into(), id));
        }
        if let Some(t) = &self.tiktok {
            top.push(("tiktok".into(), t.yaml(files)));
        }
        if !self.upstreams.is_empty() {
            top.push((
                "upstreams".into(),
                Y::Map(
                    self.upstreams
                        .iter()
                        .map(|u| (u.name.clone(), u.yaml()))
                        .collect(),
                ),
            ));
        }
        if let Some(st) = &self.state {
            top.push(("state".into(), st.yaml(files)));
        }
        if let Some(w) = &self.webhooks {
            // With a `state:` section the queue lives there, not in `webhooks.queue_path`.
            top.push(("webhooks".into(), w.yaml(dir, files, self.state.is_none())));
        }
        if let Some(r) = &self.rate_limits {
            top.push(("rate_limits".into(), r.yaml()));
        }
        if let Some(p) = &self.privacy {
            top.push(("privacy".into(), p.yaml(files)));
        }
        if let Some(a) = &self.admin {
            top.push(("admin".into(), a.yaml()));
        }
        // An admin API needs a key for the audit log's signed checkpoints.
        if self.admin.is_some() || self.audit_signing {
            top.push((
                "audit".into(),
                Y::Map(vec![(
                    "signing_key".into(),
                    file_secret(files, "audit-signing.key", AUDIT_TEST_SEED),
                )]),
            ));
        }
        if !self.trusted_proxies.is_empty() {
            top.push(("trusted_proxies".into(), strs(&self.trusted_proxies)));
        }
        opt(&mut top, "forwarded_headers", &self.forwarded_headers);
        if let Some(t) = &self.tracing {
            top.push((
                "telemetry".into(),
                Y::Map(vec![("tracing".into(), t.yaml())]),
            ));
        }
        if let Some(server) = self.server.yaml() {
            top.push(("server".into(), server));
        }
        if !self.routes.is_empty() {
            top.push((
                "routes".into(),
                Y::Seq(self.routes.iter().map(Route::yaml).collect()),
            ));
        }
        if !self.no_logging {
            let mut logging = vec![(
                "access_log".to_owned(),
                q(self
                    .access_log
                    .clone()
                    .unwrap_or_else(|| dir.join("access.log").display().to_string())),
            )];
            opt(&mut logging, "application_log", &self.application_log);
            opt(&mut logging, "level", &self.log_level);
            top.push(("logging".into(), Y::Map(logging)));
        }
        let mut out = String::new();
        Y::write_map(&top, 0, &mut out);
        out
    }
}

/// The audit checkpoint key every test config with an admin API is given (test-only).
pub const AUDIT_TEST_SEED: &str =
    "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

/// `"${file:<name>}"`, registering the file.
fn file_secret(files: &mut Vec<SideFile>, name: &str, value: &str) -> Y {
    if !files.iter().any(|f| f.name == name) {
        files.push(SideFile {
            name: name.to_owned(),
            contents: value.as_bytes().to_vec(),
        });
    }
    q(format!("${{file:{name}}}"))
}

// ---------------------------------------------------------------- telemetry

/// `telemetry.tracing`.
#[derive(Debug, Clone, Default)]
pub struct Tracing {
    pub endpoint: String,
    pub sampling_ratio: Option<String>,
    pub trusted_callers: Vec<String>,
}

impl Tracing {
    pub fn otlp(endpoint: impl Display) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            ..Self::default()
        }
    }

    pub fn sampling_ratio(mut self, ratio: &str) -> Self {
        self.sampling_ratio = Some(ratio.to_owned());
        self
    }

    pub fn trusted_callers(mut self, cidrs: &[&str]) -> Self {
        self.trusted_callers = cidrs.iter().map(|s| s.to_string()).collect();
        self
    }

    fn yaml(&self) -> Y {
        let mut m = vec![("otlp_endpoint".to_owned(), q(&self.endpoint))];
        if let Some(r) = &self.sampling_ratio {
            m.push(("sampling_ratio".into(), raw(r)));
        }
        if !self.trusted_callers.is_empty() {
            m.push(("trusted_callers".into(), strs(&self.trusted_callers)));
        }
        Y::Map(m)
    }
}

// ---------------------------------------------------------------- server

/// `server:` (threads, stop timing).
#[derive(Debug, Clone, Default)]
pub struct Server {
    pub threads: Option<usize>,
    pub grace_period: Option<String>,
    pub drain_delay: Option<String>,
    pub state_dir: Option<PathBuf>,
}

impl Server {
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = Some(dir.to_path_buf());
        self
    }

    pub fn drain_delay(mut self, d: &str) -> Self {
        self.drain_delay = Some(d.to_owned());
        self
    }

    pub fn grace_period(mut self, d: &str) -> Self {
        self.grace_period = Some(d.to_owned());
        self
    }

    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    fn yaml(&self) -> Option<Y> {
        let mut m = Vec::new();
        opt(&mut m, "threads", &self.threads);
        opt(&mut m, "grace_period", &self.grace_period);
        opt(&mut m, "drain_delay", &self.drain_delay);
        opt(&mut m, "state_dir", &self.state_dir);
        (!m.is_empty()).then_some(Y::Map(m))
    }
}

// ---------------------------------------------------------------- listeners

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub address: String,
    pub role: Option<String>,
    pub tls: Option<ListenerTls>,
    pub allow_plaintext: bool,
    pub hosts: Vec<String>,
    pub connections: Option<Connections>,
}

#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub cert: String,
    pub key: String,
    pub client_ca: Option<String>,
    pub client_auth: Option<String>,
    pub min_version: Option<String>,
    pub http2: Option<bool>,
}

/// `listeners.<name>.connections`; unset fields keep the gateway's defaults.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    pub max: Option<usize>,
    pub max_per_ip: Option<usize>,
    pub header_timeout: Option<&'static str>,
    pub body_timeout: Option<&'static str>,
    pub min_body_rate: Option<&'static str>,
    pub min_body_rate_after: Option<&'static str>,
    pub idle_timeout: Option<&'static str>,
}

impl Listener {
    /// Plaintext on `127.0.0.1:<port>`.
    pub fn plain(name: &str, port: u16) -> Self {
        Self {
            name: name.to_owned(),
            address: format!("127.0.0.1:{port}"),
            role: None,
            tls: None,
            allow_plaintext: false,
            hosts: Vec::new(),
            connections: None,
        }
    }

    /// TLS on `127.0.0.1:<port>` with the dev certificates `TestGateway` generates.
    pub fn tls(name: &str, port: u16) -> Self {
        Self {
            tls: Some(ListenerTls {
                cert: "gateway.crt".into(),
                key: "gateway.key".into(),
                client_ca: None,
                client_auth: None,
                min_version: None,
                http2: None,
            }),
            ..Self::plain(name, port)
        }
    }

    /// Client certificates from the dev CA: `optional` or `required`.
    pub fn client_auth(mut self, mode: &str) -> Self {
        let tls = self.tls.as_mut().expect("client_auth needs a TLS listener");
        tls.client_ca = Some("ca.crt".into());
        tls.client_auth = Some(mode.to_owned());
        self
    }

    pub fn role(mut self, role: &str) -> Self {
        self.role = Some(role.to_owned());
        self
    }

    pub fn hosts(mut self, hosts: &[&str]) -> Self {
        self.hosts = hosts.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn connections(mut self, c: Connections) -> Self {
        self.connections = Some(c);
        self
    }

    fn yaml(&self) -> Y {
        let mut m = vec![("address".to_owned(), q(&self.address))];
        opt(&mut m, "role", &self.role);
        if let Some(t) = &self.tls {
            let mut tls = vec![
                ("cert".to_owned(), q(&t.cert)),
                ("key".to_owned(), q(&t.key)),
            ];
            opt(&mut tls, "client_ca", &t.client_ca);
            opt(&mut tls, "client_auth", &t.client_auth);
            opt(&mut tls, "min_version", &t.min_version);
            opt(&mut tls, "http2", &t.http2);
            m.push(("tls".into(), Y::Map(tls)));
        }
        if self.allow_plaintext {
            m.push(("allow_plaintext".into(), raw(true)));
        }
        if !self.hosts.is_empty() {
            m.push(("hosts".into(), strs(&self.hosts)));
        }
        if let Some(c) = &self.connections {
            let mut cm = Vec::new();
            opt(&mut cm, "max", &c.max);
            opt(&mut cm, "max_per_ip", &c.max_per_ip);
            opt(&mut cm, "header_timeout", &c.header_timeout);
            opt(&mut cm, "body_timeout", &c.body_timeout);
            opt(&mut cm, "min_body_rate", &c.min_body_rate);
            opt(&mut cm, "min_body_rate_after", &c.min_body_rate_after);
            opt(&mut cm, "idle_timeout", &c.idle_timeout);
            m.push(("connections".into(), Y::Map(cm)));
        }
        Y::Map(m)
    }
}

// ---------------------------------------------------------------- upstreams

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub targets: Vec<String>,
    pub connect: Option<String>,
    pub read: Option<String>,
    pub write: Option<String>,
    pub idle: Option<String>,
    /// `(sni, ca file)`.
    pub tls: Option<(String, Option<PathBuf>)>,
    pub retries: Option<usize>,
    pub health_check: Option<HealthCheck>,
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// `upstreams.<name>.health_check`: active probes.
#[derive(Debug, Clone, Default)]
pub struct HealthCheck {
    pub probe: Option<String>,
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}

impl HealthCheck {
    /// `type: http` probing `path`.
    pub fn http(path: &str) -> Self {
        Self {
            probe: Some("http".into()),
            path: Some(path.into()),
            ..Self::default()
        }
    }

    /// `type: tcp`.
    pub fn tcp() -> Self {
        Self {
            probe: Some("tcp".into()),
            ..Self::default()
        }
    }

    /// `interval` and `timeout`.
    pub fn every(mut self, interval: &str, timeout: &str) -> Self {
        self.interval = Some(interval.into());
        self.timeout = Some(timeout.into());
        self
    }

    /// `healthy_threshold` and `unhealthy_threshold`.
    pub fn thresholds(mut self, healthy: u32, unhealthy: u32) -> Self {
        self.healthy_threshold = Some(healthy);
        self.unhealthy_threshold = Some(unhealthy);
        self
    }

    fn yaml(&self) -> Y {
        let mut m = Vec::new();
        opt(&mut m, "type", &self.probe);
        opt(&mut m, "path", &self.path);
        opt(&mut m, "interval", &self.interval);
        opt(&mut m, "timeout", &self.timeout);
        opt(&mut m, "healthy_threshold", &self.healthy_threshold);
        opt(&mut m, "unhealthy_threshold", &self.unhealthy_threshold);
        Y::Map(m)
    }
}

/// `upstreams.<name>.circuit_breaker`: passive ejection.
#[derive(Debug, Clone, Default)]
pub struct CircuitBreaker {
    pub failures: Option<u32>,
    pub cool_down: Option<String>,
    pub count_5xx: Option<bool>,
}

impl CircuitBreaker {
    pub fn new(failures: u32, cool_down: &str) -> Self {
        Self {
            failures: Some(failures),
            cool_down: Some(cool_down.into()),
            count_5xx: None,
        }
    }

    pub fn count_5xx(mut self) -> Self {
        self.count_5xx = Some(true);
        self
    }

    fn yaml(&self) -> Y {
        let mut m = Vec::new();
        opt(&mut m, "failures", &self.failures);
        opt(&mut m, "cool_down", &self.cool_down);
        opt(&mut m, "count_5xx", &self.count_5xx);
        Y::Map(m)
    }
}

impl Upstream {
    pub fn new(name: &str, target: impl Display) -> Self {
        Self {
            name: name.to_owned(),
            targets: vec![target.to_string()],
            connect: None,
            read: None,
            write: None,
            idle: None,
            tls: None,
            retries: None,
            health_check: None,
            circuit_breaker: None,
        }
    }

    /// A loopback port nothing listens on (refused connections).
    pub fn dead(name: &str, port: u16) -> Self {
        Self::new(name, format!("127.0.0.1:{port}"))
    }

    /// The TikTok sandbox's host, as a TikTok route's upstream must name it (`base` is its
    /// `http://host:port` base URL).
    pub fn tiktok(name: &str, base: &str) -> Self {
        Self::new(name, base.trim_start_matches("http://"))
    }

    pub fn target(mut self, t: impl Display) -> Self {
        self.targets.push(t.to_string());
        self
    }

    /// `timeouts: { connect, read }`.
    pub fn timeouts(mut self, connect: &str, read: &str) -> Self {
        self.connect = Some(connect.to_owned());
        self.read = Some(read.to_owned());
        self
    }

    /// `tls: { sni, ca }`; without a CA the system roots verify.
    pub fn tls(mut self, sni: &str, ca: Option<&Path>) -> Self {
        self.tls = Some((sni.to_owned(), ca.map(Path::to_path_buf)));
        self
    }

    pub fn retries(mut self, n: usize) -> Self {
        self.retries = Some(n);
        self
    }

    pub fn health_check(mut self, h: HealthCheck) -> Self {
        self.health_check = Some(h);
        self
    }

    pub fn circuit_breaker(mut self, c: CircuitBreaker) -> Self {
        self.circuit_breaker = Some(c);
        self
    }

    fn yaml(&self) -> Y {
        let mut m = vec![("targets".to_owned(), strs(&self.targets))];
        let mut t = Vec::new();
        opt(&mut t, "connect", &self.connect);
        opt(&mut t, "read", &self.read);
        opt(&mut t, "write", &self.write);
        opt(&mut t, "idle", &self.idle);
        if !t.is_empty() {
            m.push(("timeouts".into(), Y::Map(t)));
        }
        if let Some((sni, ca)) = &self.tls {
            let mut tls = vec![("sni".to_owned(), q(sni))];
            opt(&mut tls, "ca", ca);
            m.push(("tls".into(), Y::Map(tls)));
        }
        opt(&mut m, "retries", &self.retries);
        if let Some(h) = &self.health_check {
            m.push(("health_check".into(), h.yaml()));
        }
        if let Some(c) = &self.circuit_breaker {
            m.push(("circuit_breaker".into(), c.yaml()));
        }
        Y::Map(m)
    }
}

// ---------------------------------------------------------------- identity

#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub jwt: Vec<JwtIssuer>,
    pub api_keys: Vec<ApiKey>,
    pub mtls: Vec<MtlsName>,
    pub blocked_subjects: Vec<String>,
}

impl Identity {
    fn yaml(&self, files: &mut Vec<SideFile>) -> Option<Y> {
        let mut m = Vec::new();
        if !self.jwt.is_empty() {
            m.push((
                "jwt".into(),
                Y::Seq(self.jwt.iter().map(|j| j.yaml(files)).collect()),
            ));
        }
        if !self.api_keys.is_empty() {
            m.push((
                "api_keys".into(),
                Y::Seq(self.api_keys.iter().map(ApiKey::yaml).collect()),
            ));
        }
        if !self.mtls.is_empty() {
            let names = self
                .mtls
                .iter()
                .map(|n| {
                    Y::Map(vec![
                        ("name".into(), q(&n.name)),
                        ("scopes".into(), strs(&n.scopes)),
                    ])
                })
                .collect();
            m.push(("mtls".into(), Y::Seq(names)));
        }
        if !self.blocked_subjects.is_empty() {
            m.push(("blocked_subjects".into(), strs(&self.blocked_subjects)));
        }
        (!m.is_empty()).then_some(Y::Map(m))
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum Jwks {
    Url(String),
    /// A JWKS document, written next to the config.
    File(serde_json::Value),
}

#[derive(Debug, Clone)]
pub struct JwtIssuer {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: Jwks,
    pub algorithms: Vec<String>,
    pub max_token_age: Option<String>,
    /// `jwks.refresh` for URL keys.
    pub refresh: Option<String>,
}

impl JwtIssuer {
    /// The dev IdP's issuer, keys fetched from its JWKS URL; ES256 and RS256.
    pub fn url(name: &str, idp: &DevIdp) -> Self {
        Self {
            name: name.to_owned(),
            issuer: idp.issuer().to_owned(),
            audiences: vec![DEV_AUDIENCE.to_owned()],
            jwks: Jwks::Url(idp.jwks_url()),
            algorithms: vec!["ES256".into(), "RS256".into()],
            max_token_age: None,
            refresh: None,
        }
    }

    /// A dev signer's issuer, its current keys written to a JWKS file (no IdP server needed).
    pub fn file(name: &str, signer: &DevSigner) -> Self {
        Self {
            name: name.to_owned(),
            issuer: signer.issuer().to_owned(),
            audiences: vec![DEV_AUDIENCE.to_owned()],
            jwks: Jwks::File(signer.jwks()),
            algorithms: vec!["ES256".into(), "RS256".into()],
            max_token_age: None,
            refresh: None,
        }
    }

    /// `max_token_age`: tokens older than this (by `iat`) are refused.
    pub fn max_token_age(mut self, age: &str) -> Self {
        self.max_token_age = Some(age.to_owned());
        self
    }

    /// How often URL keys are fetched (and retried after a failure).
    pub fn refresh(mut self, every: &str) -> Self {
        self.refresh = Some(every.to_owned());
        self
    }

    fn yaml(&self, files: &mut Vec<SideFile>) -> Y {
        let jwks = match &self.jwks {
            Jwks::Url(u) => {
                let mut m = vec![("url".into(), q(u))];
                opt(&mut m, "refresh", &self.refresh);
                Y::Map(m)
            }
            Jwks::File(doc) => {
                let name = format!("jwks-{}.json", self.name);
                files.push(SideFile {
                    name: name.clone(),
                    contents: doc.to_string().into_bytes(),
                });
                Y::Map(vec![("file".into(), q(name))])
            }
        };
        let mut m = vec![
            ("name".to_owned(), q(&self.name)),
            ("issuer".to_owned(), q(&self.issuer)),
            ("audiences".to_owned(), strs(&self.audiences)),
            ("jwks".to_owned(), jwks),
            (
                "algorithms".to_owned(),
                Y::Seq(self.algorithms.iter().map(raw).collect()),
            ),
        ];
        opt(&mut m, "max_token_age", &self.max_token_age);
        Y::Map(m)
    }
}

/// An API key: the config holds its SHA-256, the test keeps the key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub name: String,
    pub key: String,
    pub scopes: Vec<String>,
}

impl ApiKey {
    pub fn new(name: &str, key: &str, scopes: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            key: key.to_owned(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn yaml(&self) -> Y {
        let mut m = vec![
            ("name".to_owned(), q(&self.name)),
            ("sha256".to_owned(), q(sha256_hex(&self.key))),
        ];
        if !self.scopes.is_empty() {
            m.push(("scopes".into(), strs(&self.scopes)));
        }
        Y::Map(m)
    }
}

#[derive(Debug, Clone)]
pub struct MtlsName {
    pub name: String,
    pub scopes: Vec<String>,
}

// ---------------------------------------------------------------- tiktok

#[derive(Debug, Clone, Default)]
pub struct TikTok {
    pub apps: Vec<TikTokApp>,
    pub shops: Vec<TikTokShop>,
    pub developer_apps: Vec<DeveloperApp>,
    /// `(rate, burst)`.
    pub pacing: Option<(String, u32)>,
    pub token_refresh_margin: Option<String>,
    /// `(legacy file path, 32-byte key as hex)`.
    pub token_store: Option<(Option<PathBuf>, String)>,
}

#[derive(Debug, Clone)]
pub struct TikTokApp {
    pub name: String,
    pub app_key: String,
    pub app_secret: String,
    pub api_base: String,
    pub auth_base: String,
    /// `authorize_url`: the seller authorization page (TikTok's by default).
    pub authorize_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TikTokShop {
    pub id: String,
    pub app: String,
    pub cipher: String,
    pub access_token: String,
    pub access_token_expires_at: i64,
    pub refresh_token: String,
    pub refresh_token_expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct DeveloperApp {
    pub name: String,
    pub client_secret: String,
    pub tolerance: Option<String>,
}

impl TikTok {
    pub fn new() -> Self {
        Self::default()
    }

    /// The sandbox's app as `app` (both hosts at `base`) and every shop of the sandbox.
    pub fn sandbox(app: &str, sb: &SandboxConfig, base: &str) -> Self {
        let shops = sb
            .shops
            .iter()
            .map(|s| TikTokShop {
                id: s.id.clone(),
                app: app.to_owned(),
                cipher: s.cipher.clone(),
                access_token: s.access_token.expose().to_owned(),
                access_token_expires_at: s.access_token_expires_at,
                refresh_token: s.refresh_token.expose().to_owned(),
                refresh_token_expires_at: s.refresh_token_expires_at,
            })
            .collect();
        Self::new()
            .app(TikTokApp {
                name: app.to_owned(),
                app_key: sb.app_key.clone(),
                app_secret: sb.app_secret.expose().to_owned(),
                api_base: base.to_owned(),
                auth_base: base.to_owned(),
                authorize_url: None,
            })
            .with_shops(shops)
    }

    /// An app whose hosts are unreachable (for webhook-only configs).
    pub fn webhook_app(name: &str, app_key: &str, app_secret: &str) -> TikTokApp {
        TikTokApp {
            name: name.to_owned(),
            app_key: app_key.to_owned(),
            app_secret: app_secret.to_owned(),
            api_base: "http://127.0.0.1:1".into(),
            auth_base: "http://127.0.0.1:1".into(),
            authorize_url: None,
        }
    }

    pub fn app(mut self, a: TikTokApp) -> Self {
        self.apps.push(a);
        self
    }

    pub fn with_shops(mut self, shops: Vec<TikTokShop>) -> Self {
        self.shops.extend(shops);
        self
    }

    pub fn developer_app(
        mut self,
        name: &str,
        client_secret: &str,
        tolerance: Option<&str>,
    ) -> Self {
        self.developer_apps.push(DeveloperApp {
            name: name.to_owned(),
            client_secret: client_secret.to_owned(),
            tolerance: tolerance.map(str::to_owned),
        });
        self
    }

    /// Points `app`'s API host (`api_base`) at `base`; its token host stays.
    pub fn api_base(mut self, app: &str, base: &str) -> Self {
        let a = self
            .apps
            .iter_mut()
            .find(|a| a.name == app)
            .unwrap_or_else(|| panic!("no TikTok app {app}"));
        a.api_base = base.to_owned();
        self
    }

    /// Points `app`'s seller authorization page at `url`.
    pub fn authorize_url(mut self, app: &str, url: &str) -> Self {
        let a = self
            .apps
            .iter_mut()
            .find(|a| a.name == app)
            .unwrap_or_else(|| panic!("no TikTok app {app}"));
        a.authorize_url = Some(url.to_owned());
        self
    }

    /// `token_store.key` (64 hex digits): seals the tokens kept in the state store.
    pub fn token_store_key(mut self, key_hex: &str) -> Self {
        self.token_store = Some((None, key_hex.to_owned()));
        self
    }

    pub fn pacing(mut self, rate: &str, burst: u32) -> Self {
        self.pacing = Some((rate.to_owned(), burst));
        self
    }

    fn yaml(&self, files: &mut Vec<SideFile>) -> Y {
        let apps = self
            .apps
            .iter()
            .map(|a| {
                let secret = file_secret(files, &format!("app_secret-{}", a.name), &a.app_secret);
                (a.name.clone(), {
                    let mut app = vec![
                        ("app_key".into(), q(&a.app_key)),
                        ("app_secret".into(), secret),
                        ("api_base".into(), q(&a.api_base)),
                        ("auth_base".into(), q(&a.auth_base)),
                    ];
                    opt(&mut app, "authorize_url", &a.authorize_url);
                    Y::Map(app)
                })
            })
            .collect();
        let mut m = vec![("apps".to_owned(), Y::Map(apps))];
        if !self.shops.is_empty() {
            let shops = self
                .shops
                .iter()
                .map(|s| {
                    let at = file_secret(files, &format!("access-{}", s.id), &s.access_token);
                    let rt = file_secret(files, &format!("refresh-{}", s.id), &s.refresh_token);
                    Y::Map(vec![
                        ("id".into(), q(&s.id)),
                        ("app".into(), q(&s.app)),
                        ("cipher".into(), q(&s.cipher)),
                        ("access_token".into(), at),
                        (
                            "access_token_expires_at".into(),
                            raw(s.access_token_expires_at),
                        ),
                        ("refresh_token".into(), rt),
                        (
                            "refresh_token_expires_at".into(),
                            raw(s.refresh_token_expires_at),
                        ),
                    ])
                })
                .collect();
            m.push(("shops".into(), Y::Seq(shops)));
        }
        if !self.developer_apps.is_empty() {
            let dev = self
                .developer_apps
                .iter()
                .map(|d| {
                    let secret = file_secret(
                        files,
                        &format!("client_secret-{}", d.name),
                        &d.client_secret,
                    );
                    let mut dm = vec![("client_secret".to_owned(), secret)];
                    opt(&mut dm, "tolerance", &d.tolerance);
                    (d.name.clone(), Y::Map(dm))
                })
                .collect();
            m.push(("developer_apps".into(), Y::Map(dev)));
        }
        if let Some((rate, burst)) = &self.pacing {
            m.push((
                "pacing".into(),
                Y::Map(vec![("rate".into(), q(rate)), ("burst".into(), raw(burst))]),
            ));
        }
        opt(&mut m, "token_refresh_margin", &self.token_refresh_margin);
        if let Some((path, key)) = &self.token_store {
            let mut ts = Vec::new();
            opt(&mut ts, "path", path);
            ts.push(("key".into(), file_secret(files, "token_store_key", key)));
            m.push(("token_store".into(), Y::Map(ts)));
        }
        Y::Map(m)
    }
}

// ---------------------------------------------------------------- webhooks, limits, privacy, admin

#[derive(Debug, Clone)]
pub struct Webhooks {
    /// Default: `queue.redb` in the config's folder.
    pub queue_path: Option<PathBuf>,
    pub forward_secret: String,
    pub max_retry_backoff: Option<String>,
    pub dedup_ttl: Option<String>,
}

impl Webhooks {
    pub fn new(forward_secret: &str) -> Self {
        Self {
            queue_path: None,
            forward_secret: forward_secret.to_owned(),
            max_retry_backoff: Some("1s".into()),
            dedup_ttl: None,
        }
    }

    pub fn queue(mut self, path: &Path) -> Self {
        self.queue_path = Some(path.to_path_buf());
        self
    }

    fn yaml(&self, dir: &Path, files: &mut Vec<SideFile>, with_queue_path: bool) -> Y {
        let mut m = Vec::new();
        if with_queue_path {
            let queue = self
                .queue_path
                .clone()
                .unwrap_or_else(|| dir.join("queue.redb"));
            m.push(("queue_path".to_owned(), q(queue.display().to_string())));
        }
        m.push((
            "forward_secret".to_owned(),
            file_secret(files, "forward_secret", &self.forward_secret),
        ));
        opt(&mut m, "max_retry_backoff", &self.max_retry_backoff);
        opt(&mut m, "dedup_ttl", &self.dedup_ttl);
        Y::Map(m)
    }
}

/// `state`: the backend and its timing.
#[derive(Debug, Clone)]
pub struct State {
    pub backend: String,
    pub path: Option<PathBuf>,
    /// The Postgres URL, written as a secret file.
    pub url: Option<String>,
    pub schema: Option<String>,
    pub lease: Option<String>,
    pub poll_interval: Option<String>,
    pub timeout: Option<String>,
}

impl State {
    pub fn embedded(path: &Path) -> Self {
        Self {
            backend: "embedded".into(),
            path: Some(path.to_path_buf()),
            url: None,
            schema: None,
            lease: None,
            poll_interval: None,
            timeout: None,
        }
    }

    pub fn postgres(url: &str, schema: &str) -> Self {
        Self {
            backend: "postgres".into(),
            path: None,
            url: Some(url.to_owned()),
            schema: Some(schema.to_owned()),
            lease: None,
            poll_interval: None,
            timeout: None,
        }
    }

    pub fn lease(mut self, d: &str) -> Self {
        self.lease = Some(d.to_owned());
        self
    }

    pub fn poll_interval(mut self, d: &str) -> Self {
        self.poll_interval = Some(d.to_owned());
        self
    }

    pub fn timeout(mut self, d: &str) -> Self {
        self.timeout = Some(d.to_owned());
        self
    }

    fn yaml(&self, files: &mut Vec<SideFile>) -> Y {
        let mut m = vec![("backend".to_owned(), q(&self.backend))];
        opt(&mut m, "path", &self.path);
        if let Some(url) = &self.url {
            m.push(("url".into(), file_secret(files, "database_url", url)));
        }
        opt(&mut m, "schema", &self.schema);
        opt(&mut m, "lease", &self.lease);
        opt(&mut m, "poll_interval", &self.poll_interval);
        opt(&mut m, "timeout", &self.timeout);
        Y::Map(m)
    }
}

/// `rate_limits`: the backend.
#[derive(Debug, Clone)]
pub struct RateLimits {
    pub backend: String,
    pub url: Option<String>,
    pub on_backend_error: Option<String>,
    pub retry_interval: Option<String>,
    pub key_prefix: Option<String>,
}

impl RateLimits {
    pub fn local() -> Self {
        Self {
            backend: "local".into(),
            url: None,
            on_backend_error: None,
            retry_interval: None,
            key_prefix: None,
        }
    }

    pub fn redis(url: &str) -> Self {
        Self {
            backend: "redis".into(),
            url: Some(url.to_owned()),
            ..Self::local()
        }
    }

    /// `local`, `fail_open` or `fail_closed`.
    pub fn on_backend_error(mut self, mode: &str) -> Self {
        self.on_backend_error = Some(mode.to_owned());
        self
    }

    pub fn retry_interval(mut self, d: &str) -> Self {
        self.retry_interval = Some(d.to_owned());
        self
    }

    fn yaml(&self) -> Y {
        let mut m = vec![("backend".to_owned(), q(&self.backend))];
        opt(&mut m, "url", &self.url);
        opt(&mut m, "on_backend_error", &self.on_backend_error);
        opt(&mut m, "retry_interval", &self.retry_interval);
        opt(&mut m, "key_prefix", &self.key_prefix);
        Y::Map(m)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Privacy {
    pub pseudonym_key: Option<String>,
}

impl Privacy {
    fn yaml(&self, files: &mut Vec<SideFile>) -> Y {
        let mut m = Vec::new();
        if let Some(k) = &self.pseudonym_key {
            m.push((
                "pseudonym_key".into(),
                file_secret(files, "pseudonym_key", k),
            ));
        }
        Y::Map(m)
    }
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub jwt: String,
    pub scope: Option<String>,
    pub mfa_methods: Vec<String>,
}

impl Admin {
    fn yaml(&self) -> Y {
        let mut m = vec![("jwt".to_owned(), q(&self.jwt))];
        opt(&mut m, "scope", &self.scope);
        if !self.mfa_methods.is_empty() {
            m.push(("mfa_methods".into(), strs(&self.mfa_methods)));
        }
        Y::Map(m)
    }
}

// ---------------------------------------------------------------- routes

/// `routes[].auth`.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// `auth: none`, written explicitly.
    #[default]
    None,
    Rules(AuthRules),
}

#[derive(Debug, Clone, Default)]
pub struct AuthRules {
    pub jwt: Vec<String>,
    /// `None`: not accepted; `Some([])`: any configured key; `Some(names)`: those keys.
    pub api_key: Option<Vec<String>>,
    pub mtls: bool,
    pub tiktok_webhook: Option<String>,
    pub tiktok_developer_webhook: Option<String>,
    pub scopes: Vec<String>,
}

impl Auth {
    pub fn jwt(issuer: &str) -> Self {
        Auth::Rules(AuthRules {
            jwt: vec![issuer.to_owned()],
            ..AuthRules::default()
        })
    }

    /// Any configured API key.
    pub fn api_key() -> Self {
        Auth::Rules(AuthRules {
            api_key: Some(Vec::new()),
            ..AuthRules::default()
        })
    }

    pub fn api_keys(names: &[&str]) -> Self {
        Auth::Rules(AuthRules {
            api_key: Some(names.iter().map(|s| s.to_string()).collect()),
            ..AuthRules::default()
        })
    }

    pub fn mtls() -> Self {
        Auth::Rules(AuthRules {
            mtls: true,
            ..AuthRules::default()
        })
    }

    pub fn tiktok_webhook(app: &str) -> Self {
        Auth::Rules(AuthRules {
            tiktok_webhook: Some(app.to_owned()),
            ..AuthRules::default()
        })
    }

    pub fn tiktok_developer_webhook(app: &str) -> Self {
        Auth::Rules(AuthRules {
            tiktok_developer_webhook: Some(app.to_owned()),
            ..AuthRules::default()
        })
    }

    /// Adds required scopes (all of them).
    pub fn scopes(self, scopes: &[&str]) -> Self {
        let mut rules = match self {
            Auth::None => panic!("`auth: none` takes no scopes"),
            Auth::Rules(r) => r,
        };
        rules.scopes.extend(scopes.iter().map(|s| s.to_string()));
        Auth::Rules(rules)
    }

    /// Also accept a JWT from `issuer`.
    pub fn or_jwt(self, issuer: &str) -> Self {
        let mut rules = match self {
            Auth::None => AuthRules::default(),
            Auth::Rules(r) => r,
        };
        rules.jwt.push(issuer.to_owned());
        Auth::Rules(rules)
    }

    /// Also accept any API key.
    pub fn or_api_key(self) -> Self {
        let mut rules = match self {
            Auth::None => AuthRules::default(),
            Auth::Rules(r) => r,
        };
        rules.api_key = Some(Vec::new());
        Auth::Rules(rules)
    }

    fn yaml(&self) -> Y {
        let r = match self {
            Auth::None => return raw("none"),
            Auth::Rules(r) => r,
        };
        let mut m = Vec::new();
        match r.jwt.as_slice() {
            [] => {}
            [one] => m.push(("jwt".into(), q(one))),
            many => m.push(("jwt".into(), strs(many))),
        }
        match &r.api_key {
            None => {}
            Some(names) if names.is_empty() => m.push(("api_key".into(), raw(true))),
            Some(names) => m.push(("api_key".into(), strs(names))),
        }
        if r.mtls {
            m.push(("mtls".into(), raw(true)));
        }
        opt(&mut m, "tiktok_webhook", &r.tiktok_webhook);
        opt(
            &mut m,
            "tiktok_developer_webhook",
            &r.tiktok_developer_webhook,
        );
        if !r.scopes.is_empty() {
            m.push(("scopes".into(), strs(&r.scopes)));
        }
        Y::Map(m)
    }
}

/// What a rate limit is keyed by (`routes[].rate_limit[].key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    Caller,
    ApiKey,
    ClientIp,
    Shop,
    Route,
    Header(String),
}

impl LimitKey {
    pub fn as_yaml(&self) -> String {
        match self {
            LimitKey::Caller => "caller".into(),
            LimitKey::ApiKey => "api_key".into(),
            LimitKey::ClientIp => "client_ip".into(),
            LimitKey::Shop => "shop".into(),
            LimitKey::Route => "route".into(),
            LimitKey::Header(h) => format!("header:{h}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimit {
    pub key: LimitKey,
    pub rate: String,
    pub burst: Option<u32>,
}

impl RateLimit {
    pub fn new(key: LimitKey, rate: &str, burst: u32) -> Self {
        Self {
            key,
            rate: rate.to_owned(),
            burst: Some(burst),
        }
    }

    fn yaml(&self) -> Y {
        let mut m = vec![
            ("key".to_owned(), q(self.key.as_yaml())),
            ("rate".to_owned(), q(&self.rate)),
        ];
        opt(&mut m, "burst", &self.burst);
        Y::Map(m)
    }
}

/// `routes[].limits`.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub max_body: Option<&'static str>,
    pub max_response_body: Option<&'static str>,
    pub content_types: Vec<&'static str>,
    pub json_max_depth: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_header_bytes: Option<&'static str>,
    pub max_uri: Option<&'static str>,
    pub max_query_params: Option<usize>,
}

impl Limits {
    fn is_empty(&self) -> bool {
        self.max_body.is_none()
            && self.max_response_body.is_none()
            && self.content_types.is_empty()
            && self.json_max_depth.is_none()
            && self.max_headers.is_none()
            && self.max_header_bytes.is_none()
            && self.max_uri.is_none()
            && self.max_query_params.is_none()
    }

    fn yaml(&self) -> Y {
        let mut m = Vec::new();
        opt(&mut m, "max_body", &self.max_body);
        opt(&mut m, "max_response_body", &self.max_response_body);
        if !self.content_types.is_empty() {
            m.push(("content_types".into(), strs(&self.content_types)));
        }
        opt(&mut m, "json_max_depth", &self.json_max_depth);
        opt(&mut m, "max_headers", &self.max_headers);
        opt(&mut m, "max_header_bytes", &self.max_header_bytes);
        opt(&mut m, "max_uri", &self.max_uri);
        opt(&mut m, "max_query_params", &self.max_query_params);
        Y::Map(m)
    }
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// One entry of `routes`. The kind follows from what is set: `tiktok` makes a signed egress
/// route, a webhook `auth` a webhook route, otherwise it is proxied.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub listener: String,
    pub path: PathMatch,
    pub methods: Vec<String>,
    pub host: Option<String>,
    pub auth: Auth,
    pub rate_limits: Vec<RateLimit>,
    /// `(app, shop_header)`.
    pub tiktok: Option<(String, Option<String>)>,
    /// `tiktok_authorization.app`: the seller-authorization callback of this app.
    pub tiktok_authorization: Option<String>,
    pub pii_scope: Option<String>,
    pub on_leak: Option<String>,
    pub upstream: String,
    pub rewrite: Option<String>,
    pub limits: Limits,
    pub forward_authorization: bool,
}

impl Route {
    /// `match: { path: <path> }`, `auth: none`, upstream still to name.
    pub fn exact(name: &str, listener: &str, path: &str) -> Self {
        Self {
            name: name.to_owned(),
            listener: listener.to_owned(),
            path: PathMatch::Exact(path.to_owned()),
            methods: Vec::new(),
            host: None,
            auth: Auth::None,
            rate_limits: Vec::new(),
            tiktok: None,
            tiktok_authorization: None,
            pii_scope: None,
            on_leak: None,
            upstream: String::new(),
            rewrite: None,
            limits: Limits::default(),
            forward_authorization: false,
        }
    }

    /// `match: { path_prefix: <prefix> }`.
    pub fn prefix(name: &str, listener: &str, prefix: &str) -> Self {
        Self {
            path: PathMatch::Prefix(prefix.to_owned()),
            ..Self::exact(name, listener, prefix)
        }
    }

    /// The path or prefix the route matches.
    pub fn path_text(&self) -> String {
        match &self.path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p.clone(),
        }
    }

    pub fn methods(mut self, methods: &[&str]) -> Self {
        self.methods = methods.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    pub fn rate_limit(mut self, rl: RateLimit) -> Self {
        self.rate_limits.push(rl);
        self
    }

    /// A signed TikTok egress route for `app` (default shop header unless given).
    /// Makes this the seller-authorization callback of `app`.
    pub fn tiktok_authorization(mut self, app: &str) -> Self {
        self.tiktok_authorization = Some(app.to_owned());
        self
    }

    pub fn tiktok(mut self, app: &str, shop_header: Option<&str>) -> Self {
        self.tiktok = Some((app.to_owned(), shop_header.map(str::to_owned)));
        self
    }

    pub fn pii_scope(mut self, scope: &str) -> Self {
        self.pii_scope = Some(scope.to_owned());
        self
    }

    /// `log` or `block`.
    pub fn on_leak(mut self, mode: &str) -> Self {
        self.on_leak = Some(mode.to_owned());
        self
    }

    pub fn upstream(mut self, upstream: &str) -> Self {
        self.upstream = upstream.to_owned();
        self
    }

    pub fn rewrite(mut self, path: &str) -> Self {
        self.rewrite = Some(path.to_owned());
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn max_body(mut self, size: &'static str) -> Self {
        self.limits.max_body = Some(size);
        self
    }

    pub fn content_types(mut self, types: &[&'static str]) -> Self {
        self.limits.content_types = types.to_vec();
        self
    }

    pub fn json_max_depth(mut self, depth: usize) -> Self {
        self.limits.json_max_depth = Some(depth);
        self
    }

    pub fn forward_authorization(mut self) -> Self {
        self.forward_authorization = true;
        self
    }

    fn yaml(&self) -> Y {
        let mut m = vec![
            ("name".to_owned(), q(&self.name)),
            ("listener".to_owned(), q(&self.listener)),
        ];
        let mut mat = vec![match &self.path {
            PathMatch::Exact(p) => ("path".to_owned(), q(p)),
            PathMatch::Prefix(p) => ("path_prefix".to_owned(), q(p)),
        }];
        if !self.methods.is_empty() {
            mat.push((
                "methods".into(),
                Y::Seq(self.methods.iter().map(raw).collect()),
            ));
        }
        opt(&mut mat, "host", &self.host);
        m.push(("match".into(), Y::Map(mat)));
        m.push(("auth".into(), self.auth.yaml()));
        match self.rate_limits.as_slice() {
            [] => {}
            [one] => m.push(("rate_limit".into(), one.yaml())),
            many => m.push((
                "rate_limit".into(),
                Y::Seq(many.iter().map(RateLimit::yaml).collect()),
            )),
        }
        if let Some((app, header)) = &self.tiktok {
            let mut t = vec![("app".to_owned(), q(app))];
            opt(&mut t, "shop_header", header);
            m.push(("tiktok".into(), Y::Map(t)));
        }
        if let Some(app) = &self.tiktok_authorization {
            m.push((
                "tiktok_authorization".into(),
                Y::Map(vec![("app".to_owned(), q(app))]),
            ));
        }
        if self.pii_scope.is_some() || self.on_leak.is_some() {
            let mut p = Vec::new();
            opt(&mut p, "pii_scope", &self.pii_scope);
            opt(&mut p, "on_leak", &self.on_leak);
            m.push(("privacy".into(), Y::Map(p)));
        }
        if !self.limits.is_empty() {
            m.push(("limits".into(), self.limits.yaml()));
        }
        m.push(("upstream".into(), q(&self.upstream)));
        if let Some(rw) = &self.rewrite {
            m.push(("rewrite".into(), Y::Map(vec![("path".into(), q(rw))])));
        }
        if self.forward_authorization {
            m.push(("forward_authorization".into(), raw(true)));
        }
        Y::Map(m)
    }
}

/// The address a [`Listener::plain`] or [`Listener::tls`] on `port` binds.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
