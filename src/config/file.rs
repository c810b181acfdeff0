//! The `gateway.yaml` file model: exactly what ops write. Every struct refuses unknown keys so a
//! typo is an error, not a silently ignored setting. Values that need checking (durations, sizes,
//! secret references, cross-references) stay strings here and are checked in `validate`.

use std::collections::BTreeMap;

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S = Spanned<String>;

/// Schema of an `S` value: the loader reads any YAML scalar as the text it spells, so `512`,
/// `1.2` and `"512"` are all accepted (durations, sizes and references are checked later).
struct Scalar;

impl JsonSchema for Scalar {
    fn schema_name() -> Cow<'static, str> {
        "Scalar".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "number"] })
    }
}

/// `gateway.yaml`: the tiktok-gateway configuration. Durations (`500ms`, `5s`, `2m`, `72h`) and
/// sizes (`256KiB`, `1MiB`) are strings; secrets are references (`${env:NAME}`, `${file:/path}`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "tiktok-gateway configuration")]
pub struct ConfigFile {
    /// Free-form label ops bump on every change; shown by the admin status and the audit log.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub version: Option<S>,
    /// Listeners by name. A listener named `admin` or `metrics` takes that role unless `role` says otherwise.
    #[schemars(with = "BTreeMap<String, ListenerFile>")]
    pub listeners: BTreeMap<String, Spanned<ListenerFile>>,
    /// Who callers are: JWT issuers, API keys, client-certificate names and the kill switch.
    #[serde(default)]
    pub identity: IdentityFile,
    /// TikTok Shop apps, shops, their tokens and outbound pacing.
    #[serde(default)]
    pub tiktok: Option<TikTokFile>,
    /// Upstreams by name: where routes forward to.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, UpstreamFile>")]
    pub upstreams: BTreeMap<String, Spanned<UpstreamFile>>,
    /// Routes, matched in file order (the first match wins).
    #[serde(default)]
    #[schemars(with = "Vec<RouteFile>")]
    pub routes: Vec<Spanned<RouteFile>>,
    /// Where rate-limit buckets live (this process or Redis) and how a Redis failure is handled.
    #[serde(default)]
    pub rate_limits: Option<RateLimitsFile>,
    /// Access log and application log settings.
    #[serde(default)]
    pub logging: Option<LoggingFile>,
    /// Distributed tracing (OpenTelemetry over OTLP/HTTP); off unless `telemetry.tracing` is set.
    #[serde(default)]
    pub telemetry: Option<TelemetryFile>,
    /// Log pseudonyms and the PII field catalogue.
    #[serde(default)]
    pub privacy: Option<PrivacyFile>,
    /// Durable queue and delivery of verified TikTok webhooks.
    #[serde(default)]
    pub webhooks: Option<WebhooksFile>,
    /// Durable state: the webhook queue and its dedupe index, runtime block list, refreshed shop
    /// tokens. `embedded` (one local file, the default) or `postgres` (shared by a fleet).
    #[serde(default)]
    pub state: Option<StateFile>,
    /// Who may use the admin listener (mTLS and an MFA-proven JWT).
    #[serde(default)]
    pub admin: Option<AdminFile>,
    /// The tamper-evident audit log (kept in the state store): checkpoint signing.
    #[serde(default)]
    pub audit: Option<AuditFile>,
    /// Worker threads and the SIGTERM grace period.
    #[serde(default)]
    pub server: Option<ServerFile>,
    /// CIDRs of proxies whose `X-Forwarded-For` is believed, and whose forwarding headers
    /// (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`, ...) reach the upstream; from any other peer
    /// they are removed.
    #[serde(default)]
    #[schemars(with = "Vec<Scalar>")]
    pub trusted_proxies: Vec<S>,
    /// How proxied requests tell the upstream about the client: `x-forwarded` (default:
    /// `X-Forwarded-For`, `-Proto`, `-Host`) or `forwarded` (one RFC 7239 `Forwarded` element).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>", extend("enum" = ["x-forwarded", "forwarded"]))]
    pub forwarded_headers: Option<S>,
}

// ---------------------------------------------------------------- listeners

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    /// `IP:port` to listen on, e.g. `0.0.0.0:8443` or `127.0.0.1:8080`.
    #[schemars(with = "Scalar")]
    pub address: S,
    /// `proxy` (default), `admin` (the admin API) or `metrics` (`/metrics`, `/healthz`, `/readyz`).
    /// Defaults from the listener's name: `admin` and `metrics` are those roles.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>", extend("enum" = ["proxy", "admin", "metrics"]))]
    pub role: Option<S>,
    /// Serve TLS (1.2+) with this certificate; plaintext on a non-loopback address needs `allow_plaintext: true`.
    #[serde(default)]
    #[schemars(with = "Option<TlsFile>")]
    pub tls: Option<Spanned<TlsFile>>,
    /// Plaintext on a non-loopback address must be asked for explicitly (policy §10).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Host names this listener serves; requests for others are refused. Empty: any.
    #[serde(default)]
    #[schemars(with = "Vec<Scalar>")]
    pub hosts: Vec<S>,
    /// Connection limits for slow or greedy clients.
    #[serde(default)]
    pub connections: Option<ConnectionsFile>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Path of the PEM certificate chain, leaf first (relative paths from the config file's folder).
    #[schemars(with = "Scalar")]
    pub cert: S,
    /// Path of the PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[schemars(with = "Scalar")]
    pub key: S,
    /// Oldest TLS version offered: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>", extend("enum" = ["1.2", "1.3", 1.2, 1.3]))]
    pub min_version: Option<S>,
    /// Path of the PEM bundle that client certificates are verified against (mTLS).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub client_ca: Option<S>,
    /// `none` (default), `optional` or `required`.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>", extend("enum" = ["none", "optional", "required"]))]
    pub client_auth: Option<S>,
    /// Offer HTTP/2 by ALPN (default true).
    #[serde(default)]
    pub http2: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsFile {
    /// Most connections open at once on this listener (default 10000).
    #[serde(default)]
    pub max: Option<usize>,
    /// Most connections open at once from one client IP (default 256; no cap on loopback).
    #[serde(default)]
    pub max_per_ip: Option<usize>,
    /// Duration (default `10s`): deadline for a whole request head (slowloris).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub header_timeout: Option<S>,
    /// Duration (default `30s`): longest gap between two body reads; a stall is answered 408.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub body_timeout: Option<S>,
    /// Floor on the average upload rate of a request body (default `1KiB/s`); `0` turns it off.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub min_body_rate: Option<S>,
    /// Duration (default `5s`) a body may take before the floor applies (slow starts, small bodies).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub min_body_rate_after: Option<S>,
    /// Duration (default `60s`): keep-alive wait for the next request.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub idle_timeout: Option<S>,
}

// ---------------------------------------------------------------- identity

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// JWT issuers whose tokens are accepted.
    #[serde(default)]
    #[schemars(with = "Vec<JwtIssuerFile>")]
    pub jwt: Vec<Spanned<JwtIssuerFile>>,
    /// API keys, stored as the SHA-256 of the key.
    #[serde(default)]
    #[schemars(with = "Vec<ApiKeyFile>")]
    pub api_keys: Vec<Spanned<ApiKeyFile>>,
    /// Client-certificate identities: which SAN/CN gets which scopes.
    #[serde(default)]
    #[schemars(with = "Vec<MtlsIdentityFile>")]
    pub mtls: Vec<Spanned<MtlsIdentityFile>>,
    /// Kill switch (policy §8): callers refused whatever their credentials, by subject.
    #[serde(default)]
    #[schemars(with = "Vec<Scalar>")]
    pub blocked_subjects: Vec<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerFile {
    /// Name routes use to accept this issuer (`auth: { jwt: <name> }`).
    #[schemars(with = "Scalar")]
    pub name: S,
    /// Expected `iss` claim.
    #[schemars(with = "Scalar")]
    pub issuer: S,
    /// Accepted `aud` values; at least one must match.
    #[schemars(with = "Vec<Scalar>")]
    pub audiences: Vec<S>,
    /// Where the issuer's public keys come from (a URL or a file).
    #[serde(default)]
    #[schemars(with = "Option<JwksFile>")]
    pub jwks: Option<Spanned<JwksFile>>,
    /// Secret reference (`${env:NAME}` or `${file:/path}`) for HMAC-signed tokens (HS256/384/512);
    /// only then are HMAC algorithms allowed.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub hmac_secret: Option<S>,
    /// Allow-list of signature algorithms (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512); `none` is refused.
    #[schemars(with = "Vec<Scalar>")]
    pub algorithms: Vec<S>,
    /// Duration (default `30s`): clock skew allowed on `exp` and `nbf`.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub leeway: Option<S>,
    /// Duration: tokens older than this (by `iat`) are refused, and `iat` becomes required.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub max_token_age: Option<S>,
    /// Claim holding the scopes, a space-separated string or an array (default `scope`).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub scopes_claim: Option<S>,
    /// Size (default `8KiB`): longer tokens are refused before parsing.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub max_token_size: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwksFile {
    /// Path of a JWKS file.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub file: Option<S>,
    /// JWKS URL (https, or http on loopback), refreshed in the background.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub url: Option<S>,
    /// Duration (default `5m`) between background JWKS refreshes.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub refresh: Option<S>,
    /// Duration (default `30s`): at most one refetch per interval on an unknown `kid`.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub unknown_kid_cooldown: Option<S>,
    /// Duration (default `1h`): keys kept while the IdP is unreachable, then refused.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub stale_if_error: Option<S>,
    /// Duration (default `5s`): timeout of one JWKS fetch.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub timeout: Option<S>,
    /// PEM bundle to verify the JWKS URL's TLS (default: system roots).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub ca: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyFile {
    /// Name shown in logs and used by routes (`api_key: [names]`); the key itself never is.
    #[schemars(with = "Scalar")]
    pub name: S,
    /// SHA-256 hex of the key, or a secret reference (`${env:NAME}`, `${file:/path}`) resolving to it.
    #[schemars(with = "Scalar")]
    pub sha256: S,
    /// Scopes granted to callers presenting this key.
    #[serde(default)]
    #[schemars(with = "Vec<Scalar>")]
    pub scopes: Vec<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MtlsIdentityFile {
    /// Matched against the certificate's SANs (DNS, URI, e-mail) and subject CN.
    #[schemars(with = "Scalar")]
    pub name: S,
    /// Scopes granted to this certificate name.
    #[serde(default)]
    #[schemars(with = "Vec<Scalar>")]
    pub scopes: Vec<S>,
}

// ---------------------------------------------------------------- tiktok

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TikTokFile {
    /// TikTok Shop apps by name.
    #[schemars(with = "BTreeMap<String, TikTokAppFile>")]
    pub apps: BTreeMap<String, Spanned<TikTokAppFile>>,
    /// Shops the gateway calls TikTok for, with their tokens as secret references.
    #[serde(default)]
    #[schemars(with = "Vec<TikTokShopFile>")]
    pub shops: Vec<Spanned<TikTokShopFile>>,
    /// Encrypted file for tokens obtained at runtime (refreshes).
    #[serde(default)]
    #[schemars(with = "Option<TokenStoreFile>")]
    pub token_store: Option<Spanned<TokenStoreFile>>,
    /// Duration (default `24h`): refresh an access token this long before it expires.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub token_refresh_margin: Option<S>,
    /// Outbound pacing per (app, shop, endpoint).
    #[serde(default)]
    pub pacing: Option<PacingFile>,
    /// TikTok for Developers apps (a different webhook scheme: `TikTok-Signature: t=..,s=..`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, DeveloperAppFile>")]
    pub developer_apps: BTreeMap<String, Spanned<DeveloperAppFile>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeveloperAppFile {
    /// Secret reference (`${env:NAME}` or `${file:/path}`) of the developer app's client secret.
    #[schemars(with = "Scalar")]
    pub client_secret: S,
    /// Duration (default `5m`): how far `t` may be from the gateway's clock.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub tolerance: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TikTokAppFile {
    /// The app key, a string or a secret reference (`${env:NAME}` or `${file:/path}`).
    #[schemars(with = "Scalar")]
    pub app_key: S,
    /// Secret reference (`${env:NAME}` or `${file:/path}`) of the app secret; never inline.
    #[schemars(with = "Scalar")]
    pub app_secret: S,
    /// TikTok's API base URL (https; http only on loopback, for sandboxes), without a trailing slash.
    #[schemars(with = "Scalar")]
    pub api_base: S,
    /// TikTok's token host base URL (https; http only on loopback), without a trailing slash
    /// (default `https://auth.tiktok-shops.com`). Token calls carry the app secret in the query
    /// string: the gateway never logs them.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub auth_base: Option<S>,
    /// Where sellers authorize the app (https; http only on loopback): the link
    /// `POST /admin/shops/authorize` hands out, with `state` (and `service_id` or `app_key`)
    /// added. Default `https://services.tiktokshop.com/open/authorize` with a `service_id`,
    /// else `https://auth.tiktok-shops.com/oauth/authorize`.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub authorize_url: Option<S>,
    /// The app's service id from TikTok's partner center, for the authorization link.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub service_id: Option<S>,
    /// PEM bundle for TLS to the TikTok hosts (default: system roots).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub ca: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TikTokShopFile {
    /// The shop id, as callers name it in the shop header and in `tiktok:shop:<id>` scopes.
    #[schemars(with = "Scalar")]
    pub id: S,
    /// Name of the app (under `tiktok.apps`) this shop authorized.
    #[schemars(with = "Scalar")]
    pub app: S,
    /// The shop's `shop_cipher`.
    #[schemars(with = "Scalar")]
    pub cipher: S,
    /// Secret reference (`${env:NAME}` or `${file:/path}`) of the access token.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub access_token: Option<S>,
    /// Unix seconds at which the access token expires.
    #[serde(default)]
    pub access_token_expires_at: Option<i64>,
    /// Secret reference (`${env:NAME}` or `${file:/path}`) of the refresh token.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub refresh_token: Option<S>,
    /// Unix seconds at which the refresh token expires.
    #[serde(default)]
    pub refresh_token_expires_at: Option<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenStoreFile {
    /// Path of an encrypted token file written by earlier versions: read once at start-up and
    /// imported into the state store for shops it does not hold yet; never written.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub path: Option<S>,
    /// Secret reference (`${env:NAME}` or `${file:/path}`) to a 32-byte key, hex or base64: seals
    /// the tokens kept in the state store (ChaCha20-Poly1305, the shop id as associated data).
    #[schemars(with = "Scalar")]
    pub key: S,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PacingFile {
    /// Rate (default `10/s`; also `600/m`, `1000/h`): outbound budget per (app, shop, route).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub rate: Option<S>,
    /// Calls allowed at once above the rate (default 10).
    #[serde(default)]
    pub burst: Option<u32>,
}

// ---------------------------------------------------------------- upstreams

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    /// `host:port` targets, used in turn; a target that is unhealthy (active probes) or ejected
    /// (circuit breaker) is skipped until it recovers.
    #[schemars(with = "Vec<Scalar>")]
    pub targets: Vec<S>,
    /// Connect, read, write and idle timeouts; a timeout answers 504.
    #[serde(default)]
    pub timeouts: Option<TimeoutsFile>,
    /// TLS to the upstream, verified against the system roots or `ca`.
    #[serde(default)]
    #[schemars(with = "Option<UpstreamTlsFile>")]
    pub tls: Option<Spanned<UpstreamTlsFile>>,
    /// Active probes of every target; a target that fails them is skipped until it passes again.
    #[serde(default)]
    #[schemars(with = "Option<HealthCheckFile>")]
    pub health_check: Option<Spanned<HealthCheckFile>>,
    /// Passive ejection: consecutive failures take a target out for a cool-down (on by default).
    #[serde(default)]
    #[schemars(with = "Option<CircuitBreakerFile>")]
    pub circuit_breaker: Option<Spanned<CircuitBreakerFile>>,
    /// Retries on connect failure for idempotent methods (default 1).
    #[serde(default)]
    pub retries: Option<usize>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    /// Duration (default `1s`).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub connect: Option<S>,
    /// Duration (default `10s`).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub read: Option<S>,
    /// Duration (default `10s`).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub write: Option<S>,
    /// Duration (default `60s`): how long a pooled connection may stay unused.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub idle: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    /// Server name sent and verified.
    #[schemars(with = "Scalar")]
    pub sni: S,
    /// PEM bundle to verify the upstream (default: the system roots).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub ca: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    /// `http` (default: `GET path`, any 2xx passes) or `tcp` (a connection, plus the verified
    /// TLS handshake on a TLS upstream).
    #[serde(default, rename = "type")]
    #[schemars(with = "Option<Scalar>", extend("enum" = ["http", "tcp"]))]
    pub probe: Option<S>,
    /// Path probed by `type: http` (default `/`).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub path: Option<S>,
    /// Duration between two probes of a target (default `5s`, at least `100ms`).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub interval: Option<S>,
    /// Duration a probe may take, connect and TLS included (default `1s`, at most `interval`).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub timeout: Option<S>,
    /// Consecutive passes that bring an unhealthy target back (default 2).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub healthy_threshold: Option<Spanned<u32>>,
    /// Consecutive failures that take a healthy target out (default 3).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub unhealthy_threshold: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerFile {
    /// Consecutive failures of a target that open its breaker (default 3; 0 turns it off).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub failures: Option<Spanned<u32>>,
    /// How long an open breaker keeps the target out; then one request tries it (default `10s`).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub cool_down: Option<S>,
    /// Count 5xx answers (and failures after connecting) too, not only failed connects
    /// (default false).
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub count_5xx: Option<Spanned<bool>>,
}

// ---------------------------------------------------------------- routes

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Unique route name, used in logs and metrics.
    #[schemars(with = "Scalar")]
    pub name: S,
    /// Name of the proxy listener this route is served on.
    #[schemars(with = "Scalar")]
    pub listener: S,
    /// What requests the route takes: `path` or `path_prefix`, optional `methods` and `host`.
    #[serde(rename = "match")]
    pub match_: MatchFile,
    /// `none` (written explicitly) or the accepted credentials and required scopes.
    // Optional to the parser so `validate` can name the route; required in the schema, as there.
    #[schemars(with = "AuthFile")]
    pub auth: Option<Spanned<AuthFile>>,
    /// One rate limit or a list of them.
    #[serde(default)]
    #[schemars(with = "Option<OneOrMany<RateLimitFile>>")]
    pub rate_limit: Option<OneOrMany<Spanned<RateLimitFile>>>,
    /// Makes this a signed TikTok egress route for this app.
    #[serde(default)]
    #[schemars(with = "Option<RouteTikTokFile>")]
    pub tiktok: Option<Spanned<RouteTikTokFile>>,
    /// Makes this the seller-authorization callback of this app (TikTok redirects the seller's
    /// browser here with `code` and `state`); needs `auth: none`, `tiktok.token_store`, and the
    /// app's API upstream as `upstream` (the authorized shops are listed through it).
    #[serde(default)]
    #[schemars(with = "Option<RouteTikTokAuthorizationFile>")]
    pub tiktok_authorization: Option<Spanned<RouteTikTokAuthorizationFile>>,
    /// PII masking and leak detection (TikTok and webhook routes).
    #[serde(default)]
    pub privacy: Option<RoutePrivacyFile>,
    /// Name of the upstream (under `upstreams`) to forward to.
    #[schemars(with = "Scalar")]
    pub upstream: S,
    /// Path the upstream sees instead of the caller's (the query is kept).
    #[serde(default)]
    pub rewrite: Option<RewriteFile>,
    /// Request and response limits of this route.
    #[serde(default)]
    pub limits: Option<RouteLimitsFile>,
    /// Forward the caller's `Authorization` to an internal upstream (never to TikTok).
    #[serde(default)]
    pub forward_authorization: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchFile {
    /// Exact path, matched against the normalised path.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub path: Option<S>,
    /// Path prefix, matched against the normalised path.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub path_prefix: Option<S>,
    /// Allowed methods (others get 405 with `Allow`); empty: any.
    #[serde(default)]
    #[schemars(with = "Vec<Scalar>")]
    pub methods: Vec<S>,
    /// `Host` this route serves; absent: any.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub host: Option<S>,
}

/// `auth: none` or a map of accepted methods and required scopes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AuthFile {
    /// `none`: no authentication (must be written explicitly).
    #[schemars(with = "AuthKeyword")]
    Keyword(String),
    Rules(AuthRulesFile),
}

/// The one keyword `auth` accepts instead of a map (schema only: `validate` refuses others).
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum AuthKeyword {
    None,
}

#[derive(Debug, Deserialize, JsonSchema)]
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
    /// Scopes the caller must hold (all of them).
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ApiKeyChoice {
    Any(bool),
    Names(Vec<String>),
}

#[derive(Debug, Deserialize, JsonSchema)]
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// `caller`, `api_key`, `client_ip`, `shop`, `route` or `header:<name>`.
    pub key: String,
    /// `50/s`, `600/m`, `10000/h`.
    pub rate: String,
    /// Requests allowed at once above the rate (default: the rate's count).
    #[serde(default)]
    pub burst: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteTikTokFile {
    /// Name of the app under `tiktok.apps`.
    pub app: String,
    /// Header naming the shop the caller acts for.
    #[serde(default)]
    pub shop_header: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteTikTokAuthorizationFile {
    /// Name of the app under `tiktok.apps` the sellers authorize.
    pub app: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutePrivacyFile {
    /// Callers without this scope get order PII masked.
    #[serde(default)]
    pub pii_scope: Option<String>,
    /// `log` (default) or `block` when PII leaves on a route not cleared for it.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>", extend("enum" = ["log", "block"]))]
    pub on_leak: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RewriteFile {
    /// Path the upstream sees.
    #[schemars(with = "Scalar")]
    pub path: S,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitsFile {
    /// Size (default `1MiB`): request-body ceiling; larger bodies get 413 and the upstream sees nothing.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub max_body: Option<S>,
    /// Size (default `8MiB`): larger TikTok responses are refused (502), never passed on unmasked.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub max_response_body: Option<S>,
    /// Accepted request content types (default `application/json`; TikTok routes add `multipart/form-data`); others get 415.
    #[serde(default)]
    #[schemars(with = "Vec<Scalar>")]
    pub content_types: Vec<S>,
    /// Deepest JSON nesting accepted (default 32).
    #[serde(default)]
    pub json_max_depth: Option<usize>,
    /// Most request headers (default 100; 431 above).
    #[serde(default)]
    pub max_headers: Option<usize>,
    /// Size (default `32KiB`) of all request headers together (431 above).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub max_header_bytes: Option<S>,
    /// Size (default `8KiB`) of the request target (414 above).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub max_uri: Option<S>,
    /// Most query parameters (default 100; 400 above).
    #[serde(default)]
    pub max_query_params: Option<usize>,
}

// ---------------------------------------------------------------- the rest

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsFile {
    /// `local` (default) or `redis`.
    #[schemars(with = "Scalar", extend("enum" = ["local", "redis"]))]
    pub backend: S,
    /// Redis URL or a secret reference to it (`${env:REDIS_URL}`); with `backend: redis` only.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub url: Option<S>,
    /// `local` (default), `fail_open` or `fail_closed`.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>", extend("enum" = ["local", "fail_open", "fail_closed"]))]
    pub on_backend_error: Option<S>,
    /// Most keys per limit (default 100000); idle keys are evicted.
    #[serde(default)]
    pub max_keys: Option<usize>,
    /// Prefix of every Redis key this gateway writes (default `tgw:rl`).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub key_prefix: Option<S>,
    /// Duration (default `100ms`): upper bound on one Redis decision.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub timeout: Option<S>,
    /// Duration (default `250ms`): upper bound on connecting to Redis.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub connect_timeout: Option<S>,
    /// Duration (default `1s`): after a Redis failure, how long to use the fallback before trying
    /// Redis again.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub retry_interval: Option<S>,
    /// Connections to Redis, used in turn (default 4).
    #[serde(default)]
    #[schemars(with = "Option<usize>")]
    pub pool_size: Option<Spanned<usize>>,
    /// Secret reference (same on every gateway) keying the hash that names each Redis bucket.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub key_secret: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggingFile {
    /// `json` (the only format: one object per line).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>", extend("enum" = ["json"]))]
    pub format: Option<S>,
    /// `stdout`, `stderr` or a file path.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub access_log: Option<S>,
    /// Where application logs go: `stdout` (default), `stderr` or a file path. Lines of both logs
    /// carry `log_type` (`access`, `delivery`, `application`), so they can share a sink.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub application_log: Option<S>,
    /// Application-log filter, e.g. `info` or `tiktok_gateway=debug` (`RUST_LOG` replaces it when
    /// set); targets outside the gateway never log above `info`.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub level: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryFile {
    /// Traces exported over OTLP/HTTP (protobuf). Absent: no spans are made or exported.
    #[serde(default)]
    pub tracing: Option<TracingFile>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingFile {
    /// OTLP/HTTP traces URL of the collector, e.g. `http://otel-collector:4318/v1/traces` (used
    /// as written: give the full path).
    #[schemars(with = "Scalar")]
    pub otlp_endpoint: S,
    /// Share of new traces recorded, `0` to `1` (default `1`). A trusted caller's `traceparent`
    /// decides for the traces it starts (parent-based sampling).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub sampling_ratio: Option<S>,
    /// `service.name` of the spans (default `tiktok-gateway`).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub service_name: Option<S>,
    /// Duration (default `10s`): bound on one export call.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub timeout: Option<S>,
    /// Finished spans waiting for export at most (default 2048); more are dropped and counted
    /// in `tiktok_gateway_trace_spans_dropped_total`, never slowing a request.
    #[serde(default)]
    #[schemars(with = "Option<usize>")]
    pub max_queue_size: Option<Spanned<usize>>,
    /// Headers sent with every export (e.g. a collector's API key): values are literals or
    /// secret references (`${env:NAME}`, `${file:/path}`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Scalar>")]
    pub headers: BTreeMap<String, S>,
    /// CIDRs (or addresses) of callers whose `traceparent`/`tracestate` are honoured: their
    /// requests join the caller's trace. From any other peer they are ignored and a new trace
    /// starts (default: none).
    #[serde(default)]
    #[schemars(with = "Vec<Scalar>")]
    pub trusted_callers: Vec<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivacyFile {
    /// Secret reference (`${env:NAME}` or `${file:/path}`): HMAC key for log pseudonyms (default:
    /// random per process).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub pseudonym_key: Option<S>,
    /// More JSON field names to mask and to keep out of logs.
    #[serde(default)]
    #[schemars(with = "Vec<Scalar>")]
    pub extra_pii_fields: Vec<S>,
    /// More JSON field names logs may show.
    #[serde(default)]
    #[schemars(with = "Vec<Scalar>")]
    pub extra_safe_fields: Vec<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhooksFile {
    /// Older name of `state.path` (embedded backend): the file accepted webhooks are stored in
    /// before TikTok gets its 200. Use `state:` instead; both at once are refused.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub queue_path: Option<S>,
    /// Duration (default `72h`): how long a `tts_notification_id` is remembered.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub dedup_ttl: Option<S>,
    /// No longer used: replays are deduplicated in the state store, in the same transaction as
    /// the queue insert. Refused with a message saying so.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub dedup_backend: Option<S>,
    /// No longer used (see `dedup_backend`). Refused with a message saying so.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub redis_url: Option<S>,
    /// Secret reference shared with order services to prove a forward came from the gateway.
    #[schemars(with = "Scalar")]
    pub forward_secret: S,
    /// Duration (default `5m`): delivery retries back off exponentially up to this.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub max_retry_backoff: Option<S>,
    /// Duration (default `72h`): an event still undelivered this long after it arrived stops
    /// being retried and is kept in the dead-letter state.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub dead_letter_after: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// `embedded` (default: one local redb file) or `postgres` (shared by a fleet of gateways).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>", extend("enum" = ["embedded", "postgres"]))]
    pub backend: Option<S>,
    /// `embedded` only: path of the state file (relative paths from the config file's folder).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub path: Option<S>,
    /// `postgres` only: secret reference to the connection URL (`${env:DATABASE_URL}`); a
    /// non-loopback server needs `sslmode=require`.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub url: Option<S>,
    /// `postgres` only: the database schema the gateway creates and uses (default `tiktok_gateway`).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub schema: Option<S>,
    /// `postgres` only: connections per gateway (default 8).
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// `postgres` only: duration (default `5s`) to establish a connection.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub connect_timeout: Option<S>,
    /// `postgres` only: TLS settings (used when the URL's `sslmode` asks for TLS).
    #[serde(default)]
    pub tls: Option<StateTlsFile>,
    /// Duration (default `30s`): how long a replica holds a claimed webhook or a token refresh
    /// before another may take it over.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub lease: Option<S>,
    /// Duration (default `500ms`): how often due webhooks and block-list changes are polled.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub poll_interval: Option<S>,
    /// Duration (default `2s`): upper bound on one state operation (TikTok wants its answer
    /// within 3 s).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub timeout: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateTlsFile {
    /// PEM bundle the PostgreSQL server certificate is verified against (default: web PKI roots).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub ca: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// JWT issuer whose tokens are accepted on the admin listener.
    #[schemars(with = "Scalar")]
    pub jwt: S,
    /// Scope every admin token must carry (default `gateway:admin`).
    #[serde(default)]
    pub scope: Option<String>,
    /// `amr` values that prove MFA (default mfa, otp, hwk, swk).
    #[serde(default)]
    pub mfa_methods: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// Secret reference (`${env:NAME}` or `${file:/path}`) to a 32-byte Ed25519 seed (64 hex
    /// digits or base64, e.g. `openssl rand -hex 32`): signs the audit log's checkpoints.
    /// Required when an admin listener is configured.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub signing_key: Option<S>,
    /// A signed checkpoint after this many records (default 100).
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
    /// Duration (default `60s`): a signed checkpoint at least this often while records arrive.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub checkpoint_interval: Option<S>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Worker threads per listener (default: the CPU count).
    #[serde(default)]
    pub threads: Option<usize>,
    /// Duration (default `10s`): on SIGTERM, stop accepting and let in-flight work finish, at most
    /// this long (the process exits as soon as nothing is in flight).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub grace_period: Option<S>,
    /// Duration (default `0s`): on SIGTERM, keep serving this long with `/readyz` answering 503
    /// before the listeners close, so a load balancer stops sending first (Kubernetes: a few
    /// seconds, less than `terminationGracePeriodSeconds` minus `grace_period`).
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub drain_delay: Option<S>,
    /// Folder for the gateway's own runtime files: the socket a `run --upgrade` process takes the
    /// listening sockets over on (default: `tiktok-gateway` in the system temp folder). Created
    /// with mode 0700; refused if others may write to it.
    #[serde(default)]
    #[schemars(with = "Option<Scalar>")]
    pub state_dir: Option<S>,
}
