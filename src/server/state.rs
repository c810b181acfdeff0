//! The gateway's long-lived state and its config snapshots. A request loads the current snapshot
//! once when it starts and keeps it to the end, so a reload never changes policy mid-request, and
//! keep-alive connections pick up the new snapshot on their next request.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::clock::Clock;
use crate::config::{ConfigError, GatewayConfig, load_file};
use crate::pipeline::router::Router;
use crate::server::upstreams::UpstreamRegistry;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::metrics;

/// Everything derived from one config file. Immutable.
pub struct Runtime {
    pub config: Arc<GatewayConfig>,
    pub router: Router,
}

impl Runtime {
    pub fn new(config: GatewayConfig) -> Self {
        let router = Router::new(&config);
        Self {
            config: Arc::new(config),
            router,
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
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
    #[error("upstreams: {0}")]
    Upstreams(String),
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
        metrics().config_loaded_at.set(clock.unix_seconds());
        Ok(Arc::new(Self {
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
        self.upstreams
            .register(&config.upstreams)
            .map_err(|e| ConfigError::single("upstreams", None, e))?;
        self.runtime.store(Arc::new(Runtime::new(config)));
        metrics().config_loaded_at.set(self.clock.unix_seconds());
        Ok(())
    }
}
