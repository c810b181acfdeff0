//! The validated, immutable runtime model built from a `ConfigFile`. Everything here has been
//! checked: addresses parse, files exist, secrets are resolved, cross-references point somewhere.
//! A request reads one snapshot of it for its whole life (see `server::reload`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::Secret;
use crate::inspect::BodyRate;

#[derive(Debug)]
pub struct GatewayConfig {
    /// `version:` from the file (or "unversioned").
    pub version: String,
    /// SHA-256 hex of the file's bytes: what the admin status and the audit log show.
    pub hash: String,
    pub source: PathBuf,
    pub listeners: Vec<Listener>,
    pub upstreams: HashMap<String, Arc<Upstream>>,
    pub routes: Vec<Arc<Route>>,
    pub identity: IdentityConfig,
    pub tiktok: Option<TikTokConfig>,
    pub rate_limits: RateLimitsConfig,
    pub logging: LoggingConfig,
    /// `telemetry.tracing`; `None`: tracing is off.
    pub tracing: Option<TracingConfig>,
    pub privacy: PrivacyConfig,
    pub webhooks: Option<WebhooksConfig>,
    pub state: StateConfig,
    pub admin: Option<AdminConfig>,
    pub audit: AuditConfig,
    pub server: ServerConfig,
    pub trusted_proxies: crate::limit::TrustedProxies,
    /// How proxied requests carry the gateway's hop (`forwarded_headers`).
    pub forwarded_headers: crate::inspect::ForwardedStyle,
    /// Every value that may hold a secret, by YAML path, and how it was given (the policy
    /// report's evidence that secrets are not inline).
    pub secret_sources: Vec<SecretSource>,
    /// What `validate` and start-up print but accept: routes that can never match, settings that
    /// have no effect.
    pub warnings: Vec<super::ConfigIssue>,
}

impl GatewayConfig {
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// How a secret-bearing value was written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    /// YAML path, e.g. `tiktok.apps.main.app_secret`.
    pub path: String,
    pub given: SecretGiven,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretGiven {
    /// `${env:NAME}`.
    Env(String),
    /// `${file:path}`, resolved against the config's folder.
    File(PathBuf),
    /// The value itself, where the field allows one (an app key, a key hash, a URL without a
    /// password).
    Literal,
}

// ---------------------------------------------------------------- listeners

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerRole {
    Proxy,
    Admin,
    Metrics,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub role: ListenerRole,
    pub tls: Option<ListenerTls>,
    /// Host names served (any when none are configured).
    pub hosts: crate::inspect::HostAllowList,
    pub connections: ConnectionLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Optional,
    Required,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub min_version: TlsVersion,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub http2: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max: usize,
    pub max_per_ip: usize,
    /// Deadline for a whole HTTP/1 request head, from accept (first request) or from its
    /// first byte (later requests on a kept-alive connection).
    pub header_timeout: Duration,
    /// Longest gap between two reads of a request body.
    pub body_timeout: Duration,
    /// Floor on a request body's average upload rate, after a grace period.
    pub min_body_rate: BodyRate,
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max: 10_000,
            max_per_ip: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            min_body_rate: BodyRate::default(),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

// ---------------------------------------------------------------- upstreams

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// `host:port` as written; names are resolved by the upstream registry, not here, so a
    /// config can be validated on a machine that cannot resolve production hosts.
    pub targets: Vec<Target>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls: Option<UpstreamTls>,
    pub retries: usize,
    /// Active probes of every target; `None`: no probes.
    pub health_check: Option<HealthCheck>,
    /// Passive ejection of a target after consecutive failures (always present).
    pub circuit_breaker: CircuitBreaker,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// `host:port`, or `[v6]:port`: how a target is written and labelled in metrics.
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `upstreams.<name>.health_check`: how and how often every target is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval: Duration,
    /// Bound on one probe, connect and TLS handshake included.
    pub timeout: Duration,
    /// Consecutive passes that bring an unhealthy target back.
    pub healthy_threshold: u32,
    /// Consecutive failures that take a healthy target out.
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `GET <path>`; any 2xx passes.
    Http { path: String },
    /// A connection (and, on a TLS upstream, a verified handshake).
    Tcp,
}

/// `upstreams.<name>.circuit_breaker`: passive ejection per target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the breaker; 0 turns it off.
    pub failures: u32,
    /// How long an open breaker keeps the target out before one request may try it.
    pub cool_down: Duration,
    /// Whether a 5xx answer (or a failure after connecting) counts, not only a failed connect.
    pub count_5xx: bool,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            failures: 3,
            cool_down: Duration::from_secs(10),
            count_5xx: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    pub sni: String,
    /// Extra trust anchors (PEM); `None` uses the system roots.
    pub ca: Option<PathBuf>,
}

// ---------------------------------------------------------------- routes

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
pub enum RouteAuth {
    /// Explicitly open (`auth: none`).
    None,
    Rules(AuthRules),
}

#[derive(Debug, Clone, Default)]
pub struct AuthRules {
    pub jwt: Vec<String>,
    /// `Some(empty)` = any configured key.
    pub api_keys: Option<Vec<String>>,
    pub mtls: bool,
    pub tiktok_webhook: Option<String>,
    pub tiktok_developer_webhook: Option<String>,
    pub scopes: Vec<String>,
}

/// Which webhook signature scheme authenticates a route, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookAuth<'a> {
    /// TikTok Shop: `Authorization` = HMAC(app_secret, app_key + body).
    Shop(&'a str),
    /// TikTok for Developers: `TikTok-Signature: t=..,s=..` = HMAC(client_secret, t + "." + body).
    Developer(&'a str),
}

impl RouteAuth {
    pub fn webhook(&self) -> Option<WebhookAuth<'_>> {
        match self {
            RouteAuth::Rules(r) => r.tiktok_webhook.as_deref().map(WebhookAuth::Shop).or(r
                .tiktok_developer_webhook
                .as_deref()
                .map(WebhookAuth::Developer)),
            RouteAuth::None => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimitRule {
    pub spec: crate::limit::LimitSpec,
}

#[derive(Debug, Clone)]
pub struct RouteTikTok {
    pub app: String,
    pub shop_header: String,
}

/// `routes[].tiktok_authorization`: the seller-authorization callback of an app.
#[derive(Debug, Clone)]
pub struct RouteTikTokAuthorization {
    pub app: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLeak {
    Log,
    Block,
}

#[derive(Debug, Clone)]
pub struct RoutePrivacy {
    pub pii_scope: Option<String>,
    pub on_leak: OnLeak,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Where the route starts in the YAML file, for errors found after validation.
    pub line: Option<u64>,
    pub listener: String,
    pub host: Option<String>,
    /// Empty: any method.
    pub methods: Vec<Method>,
    pub path: PathMatch,
    pub auth: RouteAuth,
    pub rate_limits: Vec<RateLimitRule>,
    pub tiktok: Option<RouteTikTok>,
    pub tiktok_authorization: Option<RouteTikTokAuthorization>,
    pub privacy: Option<RoutePrivacy>,
    pub upstream: String,
    pub rewrite_path: Option<String>,
    /// Largest upstream response passed on (`limits.max_response_body`).
    pub max_response_body: usize,
    /// Head and body checks for this route, built from `match.methods` and `limits`: the one
    /// place the route's request limits (body ceiling included) live.
    pub inspection: crate::inspect::InspectionSettings,
    pub forward_authorization: bool,
}

// ---------------------------------------------------------------- identity

#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    pub jwt: Vec<JwtIssuerConfig>,
    pub api_keys: Vec<ApiKeyConfig>,
    pub mtls: Vec<MtlsIdentityConfig>,
    /// Subjects (JWT `sub`, API key name, client-certificate name) refused on every route;
    /// applied by a reload, no restart needed.
    pub blocked_subjects: std::collections::HashSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JwksSourceConfig {
    File(PathBuf),
    Url {
        url: String,
        refresh: Duration,
        unknown_kid_cooldown: Duration,
        stale_if_error: Duration,
        timeout: Duration,
        ca: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwtIssuerConfig {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: Option<JwksSourceConfig>,
    pub hmac_secret: Option<Secret>,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub leeway: Duration,
    pub max_token_age: Option<Duration>,
    pub scopes_claim: String,
    pub max_token_size: usize,
}

#[derive(Debug, Clone)]
pub struct ApiKeyConfig {
    pub name: String,
    pub sha256: [u8; 32],
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct MtlsIdentityConfig {
    pub name: String,
    pub scopes: Vec<String>,
}

// ---------------------------------------------------------------- tiktok

#[derive(Debug, Clone, PartialEq)]
pub struct TikTokConfig {
    pub apps: HashMap<String, TikTokApp>,
    pub shops: Vec<TikTokShop>,
    pub token_store: Option<TokenStoreConfig>,
    pub token_refresh_margin: Duration,
    /// Outbound budget per (app, shop, endpoint).
    pub pacing: crate::limit::PacerSettings,
    /// TikTok for Developers apps: client secret and freshness tolerance.
    pub developer_apps: HashMap<String, (Secret, Duration)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TikTokApp {
    pub name: String,
    pub app_key: String,
    pub app_secret: Secret,
    pub api_base: String,
    pub auth_base: String,
    /// The seller authorization page, without query.
    pub authorize_url: String,
    /// Put in the authorization link as `service_id` (else the link names the `app_key`).
    pub service_id: Option<String>,
    pub ca: Option<PathBuf>,
}

/// TikTok's token host.
pub const DEFAULT_AUTH_BASE: &str = "https://auth.tiktok-shops.com";
/// TikTok's seller authorization page for apps with a service id, and the older one.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://services.tiktokshop.com/open/authorize";
pub const LEGACY_AUTHORIZE_URL: &str = "https://auth.tiktok-shops.com/oauth/authorize";

#[derive(Debug, Clone, PartialEq)]
pub struct TikTokShop {
    pub id: String,
    pub app: String,
    pub cipher: String,
    pub access_token: Option<Secret>,
    pub access_token_expires_at: Option<i64>,
    pub refresh_token: Option<Secret>,
    pub refresh_token_expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenStoreConfig {
    /// A token file of earlier versions, imported at start-up (never written).
    pub path: Option<PathBuf>,
    pub key: Secret,
}

// ---------------------------------------------------------------- the rest

#[derive(Debug, Clone)]
pub enum RateLimitBackend {
    Local,
    /// `backend: redis`, with every setting the Redis limiter takes.
    Redis(crate::limit::RedisSettings),
}

#[derive(Debug, Clone)]
pub struct RateLimitsConfig {
    pub backend: RateLimitBackend,
    pub max_keys: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    pub access_log: LogTarget,
    /// Where application logs go (`logging.application_log`).
    pub application_log: LogTarget,
    pub level: String,
}

/// `audit:`: how the audit log's checkpoints are signed.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    /// The Ed25519 seed; `None`: checkpoints are not written (refused with an admin listener).
    pub signing_key: Option<Secret>,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key: None,
            checkpoint_every: 100,
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

/// `telemetry.tracing`: where spans go and which traces are recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The OTLP/HTTP traces URL (`http` or `https`).
    pub endpoint: String,
    /// `0.0..=1.0`.
    pub sampling_ratio: f64,
    pub service_name: String,
    pub timeout: Duration,
    pub max_queue_size: usize,
    /// Sent with every export; values may be secrets.
    pub headers: Vec<(String, Secret)>,
    /// Peers whose incoming trace context is honoured.
    pub trusted_callers: crate::limit::TrustedProxies,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrivacyConfig {
    pub pseudonym_key: Option<Secret>,
    pub extra_pii_fields: Vec<String>,
    pub extra_safe_fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhooksConfig {
    pub dedup_ttl: Duration,
    pub forward_secret: Secret,
    pub max_retry_backoff: Duration,
    pub dead_letter_after: Duration,
}

/// `state:`: where durable state lives, and the timing of the fleet's leases and polls.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    pub backend: StateBackendConfig,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StateBackendConfig {
    /// One local redb file; `None`: in memory (allowed only when nothing must outlive the process).
    Embedded {
        path: Option<PathBuf>,
    },
    Postgres(PostgresSettings),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostgresSettings {
    /// The connection URL (may hold a password: never printed).
    pub url: Secret,
    pub schema: String,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub ca: Option<PathBuf>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: StateBackendConfig::Embedded { path: None },
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub jwt_issuer: String,
    pub scope: String,
    pub mfa_methods: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub threads: usize,
    pub grace_period: Duration,
    /// On SIGTERM, how long to keep serving (not ready) before the listeners close.
    pub drain_delay: Duration,
    /// The gateway's runtime folder (`server.state_dir`): the upgrade socket lives there.
    pub state_dir: PathBuf,
}

impl ServerConfig {
    /// Where a `run --upgrade` process waits for the running one's listening sockets.
    pub fn upgrade_socket(&self) -> PathBuf {
        self.state_dir.join("upgrade.sock")
    }
}

/// `server.state_dir` when the file does not say.
pub fn default_state_dir() -> PathBuf {
    std::env::temp_dir().join("tiktok-gateway")
}
