//! The gateway's long-lived state and its config snapshots. A request loads the current snapshot
//! once when it starts and keeps it to the end, so a reload never changes policy mid-request, and
//! keep-alive connections pick up the new snapshot on their next request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::clock::Clock;
use crate::clock::SharedClock;
use crate::config::{ConfigError, GatewayConfig, load_file};
use crate::config::{ConnectionLimits as ListenerConnections, RateLimitBackend, Secret};
use crate::gateway::auth::{JwtVerifiers, RuntimeAuth, jwt_verifiers, runtime_auth};
use crate::gateway::router::Router;
use crate::gateway::tiktok::{TikTokServices, delivery_tls};
use crate::gateway::upstreams::UpstreamRegistry;
use crate::inspect::{HostAllowList, SlowClientSettings};
use crate::limit::{Backend, LimitId, LimitSettings, RateLimitSettings, RateLimiter};
use crate::privacy::{PrivacyEngine, PrivacySettings, SharedPrivacyEngine};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::metrics;
use crate::tiktok::developer_webhook::{DeveloperWebhookSettings, DeveloperWebhookVerifier};
use crate::tiktok::webhook::{ShopWebhookSettings, ShopWebhookVerifier};

/// Everything derived from one config file. Immutable.
pub struct Runtime {
    pub config: Arc<GatewayConfig>,
    pub router: Router,
    /// TikTok Shop webhook verifiers per app name.
    pub webhook_verifiers: HashMap<String, ShopWebhookVerifier>,
    /// TikTok for Developers webhook verifiers per developer app name.
    pub developer_verifiers: HashMap<String, DeveloperWebhookVerifier>,
    /// Per listener: the hosts it serves and its slow-client timeouts.
    pub listeners: HashMap<String, ListenerPolicy>,
    /// Each route's authentication requirement and the admin gate.
    pub auth: RuntimeAuth,
    /// Rate limiters, built on first use inside the serving runtime (Redis connections belong
    /// to the runtime that made them).
    limits: std::sync::OnceLock<Result<Limits, String>>,
}

pub struct Limits {
    pub limiter: Arc<RateLimiter>,
    pub by_route: HashMap<String, Vec<LimitId>>,
}

impl Runtime {
    /// The limiters of this snapshot; built once, on the first request that needs them.
    pub fn limits(&self) -> Result<&Limits, &str> {
        self.limits
            .get_or_init(|| build_limits(&self.config))
            .as_ref()
            .map_err(String::as_str)
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

fn build_limits(config: &GatewayConfig) -> Result<Limits, String> {
    let backend = match &config.rate_limits.backend {
        RateLimitBackend::Local => Backend::Local,
        RateLimitBackend::Redis(redis) => Backend::Redis(redis.clone()),
    };
    let settings = RateLimitSettings {
        backend,
        max_keys_per_limit: config.rate_limits.max_keys,
        ..RateLimitSettings::default()
    };
    let mut limits = Vec::new();
    let mut names = Vec::new();
    for route in &config.routes {
        for (i, rule) in route.rate_limits.iter().enumerate() {
            let name = if route.rate_limits.len() == 1 {
                route.name.clone()
            } else {
                format!("{}.{i}", route.name)
            };
            names.push((route.name.clone(), name.clone()));
            limits.push(LimitSettings {
                route: route.name.clone(),
                name,
                spec: rule.spec.clone(),
            });
        }
    }
    let limiter = Arc::new(RateLimiter::new(&settings, limits).map_err(|e| e.to_string())?);
    limiter.spawn_maintenance();
    let mut by_route: HashMap<String, Vec<LimitId>> = HashMap::new();
    for (route, name) in names {
        if let Some(id) = limiter.find(&route, &name) {
            by_route.entry(route).or_default().push(id);
        }
    }
    Ok(Limits { limiter, by_route })
}

pub struct ListenerPolicy {
    pub hosts: HostAllowList,
    pub slow_clients: SlowClientSettings,
}

impl Runtime {
    pub fn new(
        config: GatewayConfig,
        jwt: &JwtVerifiers,
        clock: &SharedClock,
    ) -> Result<Self, String> {
        let developer_verifiers = config
            .tiktok
            .iter()
            .flat_map(|t| t.developer_apps.iter())
            .map(|(name, (secret, tolerance))| {
                let settings = DeveloperWebhookSettings {
                    client_secret: secret.clone(),
                    tolerance: *tolerance,
                };
                (
                    name.clone(),
                    DeveloperWebhookVerifier::new(&settings, clock.clone()),
                )
            })
            .collect();
        let auth = runtime_auth(&config, jwt)?;
        let router = Router::new(&config);
        let webhook_verifiers = config
            .tiktok
            .iter()
            .flat_map(|t| t.apps.values())
            .map(|a| {
                (
                    a.name.clone(),
                    ShopWebhookVerifier::new(&ShopWebhookSettings {
                        app_key: a.app_key.clone(),
                        app_secret: a.app_secret.clone(),
                    }),
                )
            })
            .collect();
        let listeners = config
            .listeners
            .iter()
            .map(|l| {
                (
                    l.name.clone(),
                    ListenerPolicy {
                        hosts: l.hosts.clone(),
                        slow_clients: slow_client_settings(&l.connections),
                    },
                )
            })
            .collect();
        Ok(Self {
            config: Arc::new(config),
            router,
            webhook_verifiers,
            developer_verifiers,
            listeners,
            auth,
            limits: std::sync::OnceLock::new(),
        })
    }
}

/// State that outlives config reloads.
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    pub upstreams: UpstreamRegistry,
    pub access_log: AccessLog,
    pub started: Instant,
    pub clock: Arc<dyn Clock>,
    pub tiktok: Arc<TikTokServices>,
    /// JWT verifiers per issuer; their key stores and caches live as long as the process.
    pub jwt: JwtVerifiers,
    /// The redaction/masking engine; swapped on reload when `privacy:` changes.
    pub privacy: SharedPrivacyEngine,
}

/// The privacy engine for a config. Without `privacy.pseudonym_key` a random key is used, so
/// pseudonyms correlate only within this process; that is said loudly at start.
pub fn privacy_engine(config: &GatewayConfig) -> Result<PrivacyEngine, String> {
    let key = match &config.privacy.pseudonym_key {
        Some(k) => k.clone(),
        None => {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            eprintln!(
                "privacy.pseudonym_key is not set: log pseudonyms use a random key and will not match across restarts"
            );
            Secret::new(hex::encode(bytes))
        }
    };
    let mut settings = PrivacySettings::with_key(key);
    settings.catalogue.extra_pii_fields = config.privacy.extra_pii_fields.clone();
    settings.catalogue.extra_safe_fields = config.privacy.extra_safe_fields.clone();
    PrivacyEngine::new(&settings).map_err(|e| format!("privacy: {e}"))
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
    #[error("upstreams: {0}")]
    Upstreams(String),
    #[error("{0}")]
    TikTok(String),
    #[error("{0}")]
    Identity(String),
    #[error("listener {listener}: {reason}")]
    Listener { listener: String, reason: String },
}

impl Gateway {
    pub fn new(config: GatewayConfig, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StartError> {
        let access_log =
            AccessLog::open(&config.logging.access_log).map_err(StartError::AccessLog)?;
        let upstreams = UpstreamRegistry::default();
        upstreams
            .register(&config.upstreams)
            .map_err(StartError::Upstreams)?;
        let tiktok =
            Arc::new(TikTokServices::start(&config, clock.clone()).map_err(StartError::TikTok)?);
        let privacy = privacy_engine(&config)
            .map_err(StartError::Identity)?
            .into_shared();
        let jwt = jwt_verifiers(&config, clock.clone()).map_err(StartError::Identity)?;
        let runtime = Runtime::new(config, &jwt, &clock).map_err(StartError::Identity)?;
        metrics().config_loaded_at.set(clock.unix_seconds());
        Ok(Arc::new(Self {
            tiktok,
            runtime: ArcSwap::from_pointee(runtime),
            jwt,
            privacy,
            upstreams,
            access_log,
            started: Instant::now(),
            clock,
        }))
    }

    /// The snapshot a new request should use.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Validates `path` and swaps it in. On any error the running config stays.
    pub fn reload_from(&self, path: &Path) -> Result<(), ConfigError> {
        let result = load_file(path).and_then(|config| self.apply(config));
        match &result {
            Ok(()) => {
                metrics()
                    .config_reloads
                    .with_label_values(&["applied"])
                    .inc();
                tracing::info!(target: "audit", event = "config_reload", outcome = "applied",
                    hash = %self.runtime().config.hash, version = %self.runtime().config.version);
            }
            Err(e) => {
                metrics()
                    .config_reloads
                    .with_label_values(&["rejected"])
                    .inc();
                tracing::error!(target: "audit", event = "config_reload", outcome = "rejected", error = %e);
            }
        }
        result
    }

    /// Swaps in an already-validated config.
    pub fn apply(&self, config: GatewayConfig) -> Result<(), ConfigError> {
        let current = self.runtime();
        if current.config.listeners != config.listeners {
            return Err(ConfigError::single(
                "listeners",
                None,
                "listeners changed: addresses and TLS settings apply on restart, so this reload is refused",
            ));
        }
        if current.config.identity.jwt != config.identity.jwt {
            return Err(ConfigError::single(
                "identity.jwt",
                None,
                "JWT issuers apply on restart (their key caches live with the process), so this reload is refused",
            ));
        }
        if current.config.tiktok != config.tiktok || current.config.webhooks != config.webhooks {
            return Err(ConfigError::single(
                "tiktok",
                None,
                "TikTok apps, shops, tokens and webhook settings apply on restart, so this reload is refused",
            ));
        }
        if delivery_tls(&current.config) != delivery_tls(&config) {
            return Err(ConfigError::single(
                "upstreams",
                None,
                "TLS to the upstreams webhooks are delivered to (sni, ca, first target) applies on restart, so this reload is refused",
            ));
        }
        self.upstreams
            .register(&config.upstreams)
            .map_err(|e| ConfigError::single("upstreams", None, e))?;
        let privacy = if current.config.privacy != config.privacy {
            Some(privacy_engine(&config).map_err(|e| ConfigError::single("privacy", None, e))?)
        } else {
            None
        };
        let runtime = Runtime::new(config, &self.jwt, &self.clock)
            .map_err(|e| ConfigError::single("identity", None, e))?;
        if let Some(engine) = privacy {
            self.privacy.store(Arc::new(engine));
        }
        self.runtime.store(Arc::new(runtime));
        metrics().config_loaded_at.set(self.clock.unix_seconds());
        Ok(())
    }
}
