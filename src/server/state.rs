//! The gateway's long-lived state and its config snapshots. A request loads the current snapshot
//! once when it starts and keeps it to the end, so a reload never changes policy mid-request, and
//! keep-alive connections pick up the new snapshot on their next request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::clock::Clock;
use crate::config::{ConfigError, GatewayConfig, load_file};
use crate::inspect::{HostAllowList, SlowClientSettings};
use crate::pipeline::router::Router;
use crate::server::tiktok_services::TikTokServices;
use crate::server::upstreams::UpstreamRegistry;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::metrics;
use crate::tiktok::webhook::{ShopWebhookSettings, ShopWebhookVerifier};

/// Everything derived from one config file. Immutable.
pub struct Runtime {
    pub config: Arc<GatewayConfig>,
    pub router: Router,
    /// TikTok Shop webhook verifiers per app name.
    pub webhook_verifiers: HashMap<String, ShopWebhookVerifier>,
    /// Per listener: the hosts it serves and its slow-client timeouts.
    pub listeners: HashMap<String, ListenerPolicy>,
}

pub struct ListenerPolicy {
    pub hosts: HostAllowList,
    pub slow_clients: SlowClientSettings,
}

impl Runtime {
    pub fn new(config: GatewayConfig) -> Self {
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
                let hosts = l.hosts.clone();
                let slow_clients = SlowClientSettings {
                    idle_timeout: l.connections.idle_timeout,
                    body_read_timeout: l.connections.body_timeout,
                    ..SlowClientSettings::default()
                };
                (
                    l.name.clone(),
                    ListenerPolicy {
                        hosts,
                        slow_clients,
                    },
                )
            })
            .collect();
        Self {
            config: Arc::new(config),
            router,
            webhook_verifiers,
            listeners,
        }
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
        metrics().config_loaded_at.set(clock.unix_seconds());
        Ok(Arc::new(Self {
            tiktok,
            runtime: ArcSwap::from_pointee(Runtime::new(config)),
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
        if current.config.tiktok != config.tiktok || current.config.webhooks != config.webhooks {
            return Err(ConfigError::single(
                "tiktok",
                None,
                "TikTok apps, shops, tokens and webhook settings apply on restart, so this reload is refused",
            ));
        }
        self.upstreams
            .register(&config.upstreams)
            .map_err(|e| ConfigError::single("upstreams", None, e))?;
        self.runtime.store(Arc::new(Runtime::new(config)));
        metrics().config_loaded_at.set(self.clock.unix_seconds());
        Ok(())
    }
}
