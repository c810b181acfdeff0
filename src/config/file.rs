//! The `gateway.yaml` file model: exactly what ops write. Every struct refuses unknown keys so a
//! typo is an error, not a silently ignored setting. Values that need checking (durations, sizes,
//! secret references, cross-references) stay strings here and are checked in `validate`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Free-form label ops bump on every change; shown by the admin status and the audit log.
    #[serde(default)]
    pub version: Option<S>,
    pub listeners: BTreeMap<String, Spanned<ListenerFile>>,
    #[serde(default)]
    pub identity: IdentityFile,
    #[serde(default)]
    pub tiktok: Option<TikTokFile>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<UpstreamFile>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RouteFile>>,
    #[serde(default)]
    pub rate_limits: Option<RateLimitsFile>,
    #[serde(default)]
    pub logging: Option<LoggingFile>,
    #[serde(default)]
    pub privacy: Option<PrivacyFile>,
    #[serde(default)]
    pub webhooks: Option<WebhooksFile>,
    #[serde(default)]
    pub admin: Option<AdminFile>,
    #[serde(default)]
    pub server: Option<ServerFile>,
    /// CIDRs of proxies whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<S>,
}

// ---------------------------------------------------------------- listeners

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    pub address: S,
    /// `proxy` (default), `admin` (the admin API) or `metrics` (`/metrics`, `/healthz`, `/readyz`).
    /// Defaults from the listener's name: `admin` and `metrics` are those roles.
    #[serde(default)]
    pub role: Option<S>,
    #[serde(default)]
    pub tls: Option<Spanned<TlsFile>>,
    /// Plaintext on a non-loopback address must be asked for explicitly (policy §10).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Host names this listener serves; requests for others are refused. Empty: any.
    #[serde(default)]
    pub hosts: Vec<S>,
    /// Connection limits for slow or greedy clients.
    #[serde(default)]
    pub connections: Option<ConnectionsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert: S,
    pub key: S,
    #[serde(default)]
    pub min_version: Option<S>,
    #[serde(default)]
    pub client_ca: Option<S>,
    /// `none` (default), `optional` or `required`.
    #[serde(default)]
    pub client_auth: Option<S>,
    /// Offer HTTP/2 by ALPN (default true).
    #[serde(default)]
    pub http2: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsFile {
    #[serde(default)]
    pub max: Option<usize>,
    #[serde(default)]
    pub max_per_ip: Option<usize>,
    /// Deadline for a whole request head (slowloris).
    #[serde(default)]
    pub header_timeout: Option<S>,
    #[serde(default)]
    pub body_timeout: Option<S>,
    /// Floor on the average upload rate of a request body, e.g. `1KiB/s`; `0` turns it off.
    #[serde(default)]
    pub min_body_rate: Option<S>,
    /// Time a body may take before the floor applies (slow starts, small bodies).
    #[serde(default)]
    pub min_body_rate_after: Option<S>,
    #[serde(default)]
    pub idle_timeout: Option<S>,
}

// ---------------------------------------------------------------- identity

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    #[serde(default)]
    pub jwt: Vec<Spanned<JwtIssuerFile>>,
    #[serde(default)]
    pub api_keys: Vec<Spanned<ApiKeyFile>>,
    /// Client-certificate identities: which SAN/CN gets which scopes.
    #[serde(default)]
    pub mtls: Vec<Spanned<MtlsIdentityFile>>,
    /// Kill switch (policy §8): callers refused whatever their credentials, by subject.
    #[serde(default)]
    pub blocked_subjects: Vec<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerFile {
    pub name: S,
    pub issuer: S,
    pub audiences: Vec<S>,
    #[serde(default)]
    pub jwks: Option<Spanned<JwksFile>>,
    /// Secret reference for HMAC-signed tokens (HS256/384/512); only then are HMAC algs allowed.
    #[serde(default)]
    pub hmac_secret: Option<S>,
    pub algorithms: Vec<S>,
    #[serde(default)]
    pub leeway: Option<S>,
    /// Tokens older than this (by `iat`) are refused; `iat` becomes required.
    #[serde(default)]
    pub max_token_age: Option<S>,
    #[serde(default)]
    pub scopes_claim: Option<S>,
    #[serde(default)]
    pub max_token_size: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksFile {
    #[serde(default)]
    pub file: Option<S>,
    #[serde(default)]
    pub url: Option<S>,
    #[serde(default)]
    pub refresh: Option<S>,
    #[serde(default)]
    pub unknown_kid_cooldown: Option<S>,
    #[serde(default)]
    pub stale_if_error: Option<S>,
    #[serde(default)]
    pub timeout: Option<S>,
    /// PEM bundle to verify the JWKS URL's TLS (default: system roots).
    #[serde(default)]
    pub ca: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyFile {
    pub name: S,
    /// SHA-256 hex of the key, or a secret reference resolving to it.
    pub sha256: S,
    #[serde(default)]
    pub scopes: Vec<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsIdentityFile {
    /// Matched against the certificate's SANs (DNS, URI, e-mail) and subject CN.
    pub name: S,
    #[serde(default)]
    pub scopes: Vec<S>,
}

// ---------------------------------------------------------------- tiktok

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TikTokFile {
    pub apps: BTreeMap<String, Spanned<TikTokAppFile>>,
    #[serde(default)]
    pub shops: Vec<Spanned<TikTokShopFile>>,
    #[serde(default)]
    pub token_store: Option<Spanned<TokenStoreFile>>,
    #[serde(default)]
    pub token_refresh_margin: Option<S>,
    /// Outbound pacing per (app, shop, endpoint).
    #[serde(default)]
    pub pacing: Option<PacingFile>,
    /// TikTok for Developers apps (a different webhook scheme: `TikTok-Signature: t=..,s=..`).
    #[serde(default)]
    pub developer_apps: BTreeMap<String, Spanned<DeveloperAppFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeveloperAppFile {
    pub client_secret: S,
    /// How far `t` may be from the gateway's clock (default 5m).
    #[serde(default)]
    pub tolerance: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TikTokAppFile {
    pub app_key: S,
    pub app_secret: S,
    pub api_base: S,
    pub auth_base: S,
    /// PEM bundle for TLS to the TikTok hosts (default: system roots).
    #[serde(default)]
    pub ca: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TikTokShopFile {
    pub id: S,
    pub app: S,
    pub cipher: S,
    #[serde(default)]
    pub access_token: Option<S>,
    #[serde(default)]
    pub access_token_expires_at: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<S>,
    #[serde(default)]
    pub refresh_token_expires_at: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenStoreFile {
    pub path: S,
    /// 32-byte key (hex or base64) as a secret reference.
    pub key: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacingFile {
    #[serde(default)]
    pub rate: Option<S>,
    #[serde(default)]
    pub burst: Option<u32>,
}

// ---------------------------------------------------------------- upstreams

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub targets: Vec<S>,
    #[serde(default)]
    pub timeouts: Option<TimeoutsFile>,
    #[serde(default)]
    pub tls: Option<Spanned<UpstreamTlsFile>>,
    #[serde(default)]
    pub health_check: Option<HealthCheckFile>,
    /// Retries on connect failure for idempotent methods (default 1).
    #[serde(default)]
    pub retries: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    #[serde(default)]
    pub connect: Option<S>,
    #[serde(default)]
    pub read: Option<S>,
    #[serde(default)]
    pub write: Option<S>,
    #[serde(default)]
    pub idle: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    pub sni: S,
    /// PEM bundle to verify the upstream (default: the system roots).
    #[serde(default)]
    pub ca: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    #[serde(default)]
    pub interval: Option<S>,
}

// ---------------------------------------------------------------- routes

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub name: S,
    pub listener: S,
    #[serde(rename = "match")]
    pub match_: MatchFile,
    pub auth: Option<Spanned<AuthFile>>,
    #[serde(default)]
    pub rate_limit: Option<OneOrMany<Spanned<RateLimitFile>>>,
    #[serde(default)]
    pub tiktok: Option<Spanned<RouteTikTokFile>>,
    #[serde(default)]
    pub privacy: Option<RoutePrivacyFile>,
    pub upstream: S,
    #[serde(default)]
    pub rewrite: Option<RewriteFile>,
    #[serde(default)]
    pub limits: Option<RouteLimitsFile>,
    /// Forward the caller's `Authorization` to an internal upstream (never to TikTok).
    #[serde(default)]
    pub forward_authorization: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchFile {
    #[serde(default)]
    pub path: Option<S>,
    #[serde(default)]
    pub path_prefix: Option<S>,
    #[serde(default)]
    pub methods: Vec<S>,
    #[serde(default)]
    pub host: Option<S>,
}

/// `auth: none` or a map of accepted methods and required scopes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AuthFile {
    Keyword(String),
    Rules(AuthRulesFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRulesFile {
    /// JWT issuer name(s) accepted.
    #[serde(default)]
    pub jwt: Option<OneOrMany<String>>,
    /// `true` for any configured API key, or a list of key names.
    #[serde(default)]
    pub api_key: Option<ApiKeyChoice>,
    /// Accept a verified client certificate.
    #[serde(default)]
    pub mtls: bool,
    /// TikTok Shop webhook signature of this app.
    #[serde(default)]
    pub tiktok_webhook: Option<String>,
    /// TikTok for Developers webhook signature of this developer app.
    #[serde(default)]
    pub tiktok_developer_webhook: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ApiKeyChoice {
    Any(bool),
    Names(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// `caller`, `api_key`, `client_ip`, `shop`, `route` or `header:<name>`.
    pub key: String,
    /// `50/s`, `600/m`, `10000/h`.
    pub rate: String,
    #[serde(default)]
    pub burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTikTokFile {
    pub app: String,
    /// Header naming the shop the caller acts for.
    #[serde(default)]
    pub shop_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePrivacyFile {
    /// Callers without this scope get order PII masked.
    #[serde(default)]
    pub pii_scope: Option<String>,
    /// `log` (default) or `block` when PII leaves on a route not cleared for it.
    #[serde(default)]
    pub on_leak: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteFile {
    pub path: S,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitsFile {
    #[serde(default)]
    pub max_body: Option<S>,
    #[serde(default)]
    pub max_response_body: Option<S>,
    #[serde(default)]
    pub content_types: Vec<S>,
    #[serde(default)]
    pub json_max_depth: Option<usize>,
    #[serde(default)]
    pub max_headers: Option<usize>,
    #[serde(default)]
    pub max_header_bytes: Option<S>,
    #[serde(default)]
    pub max_uri: Option<S>,
    #[serde(default)]
    pub max_query_params: Option<usize>,
}

// ---------------------------------------------------------------- the rest

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsFile {
    /// `local` (default) or `redis`.
    pub backend: S,
    #[serde(default)]
    pub url: Option<S>,
    /// `local` (default), `fail_open` or `fail_closed`.
    #[serde(default)]
    pub on_backend_error: Option<S>,
    #[serde(default)]
    pub max_keys: Option<usize>,
    /// Prefix of every Redis key this gateway writes (default `tgw:rl`).
    #[serde(default)]
    pub key_prefix: Option<S>,
    /// Upper bound on one Redis decision (default `100ms`).
    #[serde(default)]
    pub timeout: Option<S>,
    /// Upper bound on connecting to Redis (default `250ms`).
    #[serde(default)]
    pub connect_timeout: Option<S>,
    /// After a Redis failure, how long to use the fallback before trying Redis again (default `1s`).
    #[serde(default)]
    pub retry_interval: Option<S>,
    /// Connections to Redis, used in turn (default 4).
    #[serde(default)]
    pub pool_size: Option<Spanned<usize>>,
    /// Secret (same on every gateway) keying the hash that names each Redis bucket.
    #[serde(default)]
    pub key_secret: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingFile {
    /// `json` (the only format: one object per line).
    #[serde(default)]
    pub format: Option<S>,
    /// `stdout`, `stderr` or a file path.
    #[serde(default)]
    pub access_log: Option<S>,
    /// tracing filter, e.g. `info` or `tiktok_gateway=debug`.
    #[serde(default)]
    pub level: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyFile {
    /// Key for log pseudonyms (HMAC), a secret reference.
    #[serde(default)]
    pub pseudonym_key: Option<S>,
    #[serde(default)]
    pub extra_pii_fields: Vec<S>,
    #[serde(default)]
    pub extra_safe_fields: Vec<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksFile {
    /// Durable queue file (accepted webhooks are stored here before TikTok gets its 200).
    pub queue_path: S,
    /// How long a `tts_notification_id` is remembered (default 72h).
    #[serde(default)]
    pub dedup_ttl: Option<S>,
    /// `memory` (default) or `redis` (uses `rate_limits.url` or `redis_url`).
    #[serde(default)]
    pub dedup_backend: Option<S>,
    #[serde(default)]
    pub redis_url: Option<S>,
    /// Secret shared with order services to prove a forward came from the gateway.
    pub forward_secret: S,
    #[serde(default)]
    pub max_retry_backoff: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// JWT issuer whose tokens are accepted on the admin listener.
    pub jwt: S,
    #[serde(default)]
    pub scope: Option<String>,
    /// `amr` values that prove MFA (default mfa, otp, hwk, swk).
    #[serde(default)]
    pub mfa_methods: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default)]
    pub grace_period: Option<S>,
}
