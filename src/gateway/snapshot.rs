//! The compiled, immutable config snapshot. `compile` is the one place a validated config becomes
//! something the pipeline can run: `validate` and `run` both call it, so a config `validate`
//! accepts never fails at start-up for a config reason. A request loads one snapshot when it
//! starts and keeps it to its end (see `Gateway::snapshot`).

use std::sync::{Arc, OnceLock};

use http::HeaderName;

use super::auth::{AdminGate, JwtVerifiers, runtime_auth};
use super::route::{
    Authenticator, AuthorizationPlan, CompiledRoute, RouteKind, RouteMetrics, TikTokPlan,
    WebhookPlan, WebhookVerifier,
};
use super::router::Router;
use crate::auth::Identity;
use crate::clock::SharedClock;
use crate::config::{
    ConfigError, ConnectionLimits as ListenerConnections, GatewayConfig, RateLimitBackend,
    WebhookAuth,
};
use crate::inspect::{HostAllowList, SlowClientSettings};
use crate::limit::{Backend, LimitId, LimitSettings, RateLimitSettings, RateLimiter};
use crate::tiktok::developer_webhook::{DeveloperWebhookSettings, DeveloperWebhookVerifier};
use crate::tiktok::webhook::{ShopWebhookSettings, ShopWebhookVerifier};

/// Everything derived from one config file. Immutable.
pub struct Snapshot {
    pub config: Arc<GatewayConfig>,
    pub router: Router,
    /// Per listener, in `config.listeners` order (listeners never change on reload, so a
    /// listener's index is fixed for the life of the process).
    pub listeners: Vec<ListenerPolicy>,
    /// The admin gate, when `admin:` is configured.
    pub admin: Option<AdminGate>,
    limiter: LimiterPlan,
}

pub struct ListenerPolicy {
    pub hosts: HostAllowList,
    pub slow_clients: SlowClientSettings,
    /// Whether the listener speaks TLS (the `proto` the upstream is told).
    pub tls: bool,
}

/// The rate limiter is built on first use inside the serving runtime (Redis connections belong
/// to the runtime that made them); which limit has which id is fixed at compile time.
struct LimiterPlan {
    settings: RateLimitSettings,
    limits: Vec<LimitSettings>,
    built: OnceLock<Result<Arc<RateLimiter>, String>>,
}

impl Snapshot {
    /// The limiter of this snapshot; built once, on the first request that needs it.
    pub fn limiter(&self) -> Result<&Arc<RateLimiter>, &str> {
        let plan = &self.limiter;
        plan.built
            .get_or_init(|| {
                let limiter = RateLimiter::new(&plan.settings, plan.limits.clone())
                    .map_err(|e| e.to_string())?;
                let limiter = Arc::new(limiter);
                limiter.spawn_maintenance();
                Ok(limiter)
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// The kill switch: a subject on the block list is refused on every route and on the admin
    /// API, whatever its credentials.
    pub fn is_blocked(&self, identity: &Identity) -> bool {
        let blocked = &self.config.identity.blocked_subjects;
        !blocked.is_empty() && blocked.contains(identity.subject())
    }
}

/// A listener's `connections` settings as the per-request timeouts they set.
pub(crate) fn slow_client_settings(c: &ListenerConnections) -> SlowClientSettings {
    SlowClientSettings {
        idle_timeout: c.idle_timeout,
        body_read_timeout: c.body_timeout,
        body_rate: c.min_body_rate,
        ..SlowClientSettings::default()
    }
}

/// What compiling needs that lives longer than one snapshot.
pub struct CompileInputs<'a> {
    pub jwt: &'a JwtVerifiers,
    pub clock: &'a SharedClock,
    /// The upstream pools of this config (`UpstreamRegistry::prepare`).
    pub pools: &'a super::upstreams::Pools,
}

/// Compiles a validated config. Every failure names the YAML path (and line, where known).
pub fn compile(config: GatewayConfig, inputs: &CompileInputs<'_>) -> Result<Snapshot, ConfigError> {
    let mut auth = runtime_auth(&config, inputs.jwt)?;
    let mut issues = crate::config::Issues::default();
    let limiter = limiter_plan(&config);
    let mut next_limit = 0usize;
    let mut routes = Vec::with_capacity(config.routes.len());
    for (i, route) in config.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        let (Some(upstream), Some(pool)) = (
            config.upstreams.get(&route.upstream).cloned(),
            inputs.pools.get(&route.upstream).cloned(),
        ) else {
            issues.add(format!("{at}.upstream"), route.line, "unknown upstream");
            continue;
        };
        let kind = match (&route.tiktok, route.auth.webhook()) {
            _ if route.tiktok_authorization.is_some() => {
                match authorization_plan(&config, route, &upstream) {
                    Ok(plan) => RouteKind::TikTokAuthorization(plan),
                    Err(message) => {
                        issues.add(format!("{at}.tiktok_authorization"), route.line, message);
                        continue;
                    }
                }
            }
            (Some(t), None) => match tiktok_plan(&config, t, &upstream) {
                Ok(plan) => RouteKind::TikTokEgress(plan),
                Err(message) => {
                    issues.add(format!("{at}.tiktok"), route.line, message);
                    continue;
                }
            },
            (None, Some(scheme)) => match webhook_plan(&config, &upstream, scheme, inputs.clock) {
                Ok(plan) => RouteKind::WebhookIngress(plan),
                Err(message) => {
                    issues.add(format!("{at}.auth"), route.line, message);
                    continue;
                }
            },
            (None, None) => RouteKind::Proxy,
            (Some(_), Some(_)) => {
                issues.add(
                    format!("{at}.tiktok"),
                    route.line,
                    "a webhook route cannot also be a TikTok egress route",
                );
                continue;
            }
        };
        let authenticator = match &kind {
            RouteKind::WebhookIngress(_) => Authenticator::WebhookSignature,
            _ => match auth.routes.remove(&route.name) {
                Some(requirement) => Authenticator::Caller(requirement),
                None => {
                    issues.add(format!("{at}.auth"), route.line, "no auth requirement");
                    continue;
                }
            },
        };
        let limit_ids: Box<[LimitId]> = (0..route.rate_limits.len())
            .map(|k| LimitId(next_limit + k))
            .collect();
        next_limit += route.rate_limits.len();
        let metrics = RouteMetrics::new(&route.name, &upstream.name);
        routes.push(Arc::new(CompiledRoute {
            name: route.name.as_str().into(),
            config: route.clone(),
            kind,
            auth: authenticator,
            limit_ids,
            upstream,
            pool,
            metrics,
        }));
    }
    let listeners = config
        .listeners
        .iter()
        .map(|l| ListenerPolicy {
            hosts: l.hosts.clone(),
            slow_clients: slow_client_settings(&l.connections),
            tls: l.tls.is_some(),
        })
        .collect();
    let router = Router::new(&config, &routes);
    issues.into_result(Snapshot {
        router,
        listeners,
        admin: auth.admin.take(),
        limiter,
        config: Arc::new(config),
    })
}

fn limiter_plan(config: &GatewayConfig) -> LimiterPlan {
    let backend = match &config.rate_limits.backend {
        RateLimitBackend::Local => Backend::Local,
        RateLimitBackend::Redis(redis) => Backend::Redis(redis.clone()),
    };
    let settings = RateLimitSettings {
        backend,
        max_keys_per_limit: config.rate_limits.max_keys,
        ..RateLimitSettings::default()
    };
    // The n-th limit gets `LimitId(n)`: `compile` hands out ids in this same order.
    let mut limits = Vec::new();
    for route in &config.routes {
        for (i, rule) in route.rate_limits.iter().enumerate() {
            let name = if route.rate_limits.len() == 1 {
                route.name.clone()
            } else {
                format!("{}.{i}", route.name)
            };
            limits.push(LimitSettings {
                route: route.name.clone(),
                name,
                spec: rule.spec.clone(),
            });
        }
    }
    LimiterPlan {
        settings,
        limits,
        built: OnceLock::new(),
    }
}

fn tiktok_plan(
    config: &GatewayConfig,
    route: &crate::config::RouteTikTok,
    upstream: &crate::config::Upstream,
) -> Result<TikTokPlan, String> {
    let tiktok = config
        .tiktok
        .as_ref()
        .ok_or("a TikTok route needs a `tiktok:` section")?;
    let app = tiktok
        .apps
        .get(&route.app)
        .ok_or_else(|| format!("unknown TikTok app `{}`", route.app))?;
    let authority = api_authority(app, upstream)?;
    let shop_header = HeaderName::from_bytes(route.shop_header.as_bytes())
        .map_err(|_| format!("`{}` is not a valid header name", route.shop_header))?;
    let shops = tiktok
        .shops
        .iter()
        .filter(|s| s.app == route.app)
        .map(|s| (s.id.clone(), Arc::new(s.clone())))
        .collect();
    Ok(TikTokPlan {
        app: Arc::new(app.clone()),
        authority,
        shop_header,
        shops,
    })
}

/// The seller-authorization callback: the app, and where its shop list is asked for.
fn authorization_plan(
    config: &GatewayConfig,
    route: &crate::config::Route,
    upstream: &crate::config::Upstream,
) -> Result<AuthorizationPlan, String> {
    let name = route
        .tiktok_authorization
        .as_ref()
        .map(|t| t.app.as_str())
        .unwrap_or_default();
    let tiktok = config
        .tiktok
        .as_ref()
        .ok_or("the authorization callback needs a `tiktok:` section")?;
    if tiktok.token_store.is_none() {
        return Err("the authorization callback needs `tiktok.token_store`".into());
    }
    let app = tiktok
        .apps
        .get(name)
        .ok_or_else(|| format!("unknown TikTok app `{name}`"))?;
    Ok(AuthorizationPlan {
        authority: api_authority(app, upstream)?,
        app: Arc::new(app.clone()),
    })
}

/// `host[:port]` of the app's `api_base`, once the route's upstream is known to fit it.
fn api_authority(
    app: &crate::config::TikTokApp,
    upstream: &crate::config::Upstream,
) -> Result<String, String> {
    let (scheme, rest) = app
        .api_base
        .split_once("://")
        .ok_or_else(|| format!("TikTok app `{}`: api_base has no scheme", app.name))?;
    let authority = rest.split('/').next().unwrap_or(rest).to_string();
    // The call goes through the route's upstream: its TLS must match the api_base's scheme.
    match (scheme, &upstream.tls) {
        ("https", None) => {
            return Err(format!(
                "the app's api_base is https but upstream `{}` has no `tls:` (set `tls: {{ sni: ... }}`)",
                upstream.name
            ));
        }
        ("http", Some(_)) => {
            return Err(format!(
                "the app's api_base is http but upstream `{}` sets `tls:`",
                upstream.name
            ));
        }
        _ => {}
    }
    // API calls trust the upstream's CA, token refreshes the app's: a CA on one side only would
    // verify one host and fail the other, so both must name the same bundle.
    let upstream_ca = upstream.tls.as_ref().and_then(|t| t.ca.as_ref());
    if app.ca.is_some() && upstream_ca != app.ca.as_ref() {
        return Err(format!(
            "tiktok.apps.{}.ca is set: set upstreams.{}.tls.ca to the same bundle (API calls go through the upstream)",
            app.name, upstream.name
        ));
    }
    Ok(authority)
}

fn webhook_plan(
    config: &GatewayConfig,
    upstream: &crate::config::Upstream,
    scheme: WebhookAuth<'_>,
    clock: &SharedClock,
) -> Result<WebhookPlan, String> {
    let tiktok = config
        .tiktok
        .as_ref()
        .ok_or("a webhook route needs a `tiktok:` section")?;
    let (verifier, app) = match scheme {
        WebhookAuth::Shop(name) => {
            let app = tiktok
                .apps
                .get(name)
                .ok_or_else(|| format!("unknown TikTok app `{name}`"))?;
            let verifier = ShopWebhookVerifier::new(&ShopWebhookSettings {
                app_key: app.app_key.clone(),
                app_secret: app.app_secret.clone(),
            });
            (WebhookVerifier::Shop(verifier), name)
        }
        WebhookAuth::Developer(name) => {
            let (secret, tolerance) = tiktok
                .developer_apps
                .get(name)
                .ok_or_else(|| format!("unknown TikTok developer app `{name}`"))?;
            let verifier = DeveloperWebhookVerifier::new(
                &DeveloperWebhookSettings {
                    client_secret: secret.clone(),
                    tolerance: *tolerance,
                },
                clock.clone(),
            );
            (WebhookVerifier::Developer(verifier), name)
        }
    };
    let target = upstream
        .targets
        .first()
        .ok_or("the route's upstream has no target")?;
    let delivery_origin = match &upstream.tls {
        // TLS is verified against the SNI name, so the URL names it.
        Some(tls) => crate::tiktok::delivery::https_origin(&tls.sni, target.port),
        None if target.host.contains(':') => format!("http://[{}]:{}", target.host, target.port),
        None => format!("http://{}:{}", target.host, target.port),
    };
    // The identity a verified signature proves, made once: kill switch, rate limits and the
    // access log see it like any caller's.
    let identity = Identity::new(
        &format!("tiktok-webhook:{app}"),
        crate::auth::AuthMethod::TikTokWebhook { app: app.into() },
        crate::auth::ScopeSet::default(),
        Vec::new(),
    )
    .map_err(|e| format!("webhook identity for `{app}`: {e}"))?;
    Ok(WebhookPlan {
        verifier,
        identity: Arc::new(identity),
        delivery_origin,
    })
}

/// Everything `validate` checks beyond the file: the same compile `run` does, with JWT verifiers
/// built but never started (no JWKS fetch, no background task).
pub fn check(config: GatewayConfig, clock: SharedClock) -> Result<Snapshot, ConfigError> {
    let jwt = super::auth::jwt_verifiers(&config, clock.clone())?;
    super::state::privacy_engine(&config).map_err(|e| ConfigError::single("privacy", None, e))?;
    let pools = super::upstreams::UpstreamRegistry::default()
        .prepare(&config.upstreams)
        .map_err(|e| ConfigError::single("upstreams", None, e))?;
    compile(
        config,
        &CompileInputs {
            jwt: &jwt,
            clock: &clock,
            pools: &pools,
        },
    )
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("hash", &self.config.hash)
            .field("routes", &self.config.routes.len())
            .finish()
    }
}
