//! The gateway's long-lived state and its config snapshots. A request loads the current snapshot
//! once when it starts and keeps it to the end, so a reload never changes policy mid-request, and
//! keep-alive connections pick up the new snapshot on their next request.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use super::auth::{JwtVerifiers, jwt_verifiers};
use super::metrics::StateGauges;
use super::snapshot::{CompileInputs, Snapshot, compile};
use super::state_services::StateServices;
use super::tiktok::{TikTokServices, delivery_tls};
use super::upstreams::UpstreamRegistry;
use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::config::{ConfigError, GatewayConfig, Secret, load_file};
use crate::privacy::{PrivacyEngine, PrivacySettings, SharedPrivacyEngine};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::metrics;
use crate::telemetry::otel::Tracing;
use crate::telemetry::readiness::Readiness;

/// State that outlives config reloads.
pub struct Gateway {
    /// Shared with webhook delivery, which follows the running config's routes and upstreams.
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Pingora's upstream connector for calls the gateway makes itself (TikTok egress): the same
    /// connection pool, TLS and timeouts machinery as proxied requests.
    pub connector: pingora::connectors::http::Connector,
    /// Resolution and target health per upstream; pools survive reloads that leave their
    /// upstream as it was.
    pub upstreams: Arc<UpstreamRegistry>,
    pub access_log: AccessLog,
    pub started: Instant,
    pub clock: Arc<dyn Clock>,
    pub tiktok: Arc<TikTokServices>,
    /// Durable state: the store, its health and the runtime block list.
    pub state: Arc<StateServices>,
    /// JWT verifiers per issuer; their key stores and caches live as long as the process.
    pub jwt: JwtVerifiers,
    /// The redaction/masking engine; swapped on reload when `privacy:` changes.
    pub privacy: SharedPrivacyEngine,
    /// What keeps the gateway from being ready (`/readyz`); components report into it.
    pub readiness: Arc<Readiness>,
    /// The audit trail every part reports into.
    pub audit: Arc<AuditLog>,
    /// Spans and their export (`telemetry.tracing`; disabled when absent).
    pub tracing: Tracing,
}

/// The audit record of a reload: applied or rejected, the file's SHA-256 (the running config's
/// hash when applied), what triggered it and the first problem's YAML path when rejected.
pub fn reload_event(
    path: &Path,
    result: &Result<(), ConfigError>,
    trigger: &str,
    actor: Option<&str>,
) -> crate::audit::AuditEvent {
    use crate::audit::{AuditEvent, Outcome};
    use sha2::Digest;
    let hash = std::fs::read(path)
        .map(|b| hex::encode(sha2::Sha256::digest(&b)))
        .unwrap_or_else(|_| "unreadable".into());
    let mut event = match result {
        Ok(()) => AuditEvent::new("config.reload", Outcome::Allowed),
        Err(e) => {
            let paths: Vec<&str> = e.issues.iter().map(|i| i.path.as_str()).take(5).collect();
            AuditEvent::new("config.reload", Outcome::Refused).detail("problems_at", paths)
        }
    }
    .detail("config_hash", hash)
    .detail("trigger", trigger);
    if let Some(actor) = actor {
        event = event.actor(actor);
    }
    event
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
    #[error(transparent)]
    Tracing(crate::telemetry::otel::TracingError),
    #[error("upstreams: {0}")]
    Upstreams(String),
    #[error("{0}")]
    TikTok(String),
    #[error("state: {0}")]
    State(#[from] crate::state::StateError),
    #[error("{0}")]
    Identity(String),
    #[error("listener {listener}: {reason}")]
    Listener { listener: String, reason: String },
}

impl Gateway {
    pub fn new(config: GatewayConfig, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StartError> {
        let privacy = privacy_engine(&config)
            .map_err(StartError::Identity)?
            .into_shared();
        Self::with_privacy(config, clock, privacy)
    }

    /// As [`Gateway::new`], with the privacy engine already built (start-up builds it first, for
    /// the application log, so both use one pseudonym key).
    pub fn with_privacy(
        config: GatewayConfig,
        clock: Arc<dyn Clock>,
        privacy: SharedPrivacyEngine,
    ) -> Result<Arc<Self>, StartError> {
        let access_log =
            AccessLog::open(&config.logging.access_log).map_err(StartError::AccessLog)?;
        let upstreams = Arc::new(UpstreamRegistry::default());
        let pools = upstreams
            .prepare(&config.upstreams)
            .map_err(StartError::Upstreams)?;
        let tracing = match &config.tracing {
            Some(t) => Tracing::start(t, privacy.clone()).map_err(StartError::Tracing)?,
            None => Tracing::disabled(),
        };
        let state = Arc::new(StateServices::start(&config.state, clock.clone())?);
        let readiness = Arc::new(Readiness::new());
        let audit = Arc::new(
            AuditLog::durable(
                state.store.clone(),
                clock.clone(),
                config.state.timeout,
                &config.audit,
                readiness.clone(),
            )
            .map_err(StartError::Identity)?,
        );
        let jwt = jwt_verifiers(&config, clock.clone())?;
        let snapshot = compile(
            config,
            &CompileInputs {
                jwt: &jwt,
                clock: &clock,
                pools: &pools,
            },
        )?;
        upstreams.commit(pools);
        let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
        let tiktok = Arc::new(
            TikTokServices::start(
                &snapshot.load().config,
                clock.clone(),
                &snapshot,
                &state,
                &access_log,
                &privacy,
                &tracing,
            )
            .map_err(StartError::TikTok)?,
        );
        metrics().config_loaded_at.set(clock.unix_seconds());
        match StateGauges::new(
            tiktok.tokens.clone(),
            jwt.values().map(|v| v.store().clone()).collect(),
            clock.clone(),
            readiness.clone(),
        ) {
            Ok(gauges) => crate::telemetry::metrics::register(Box::new(gauges), "state gauges"),
            Err(e) => tracing::error!(error = %e, "token, JWKS and readiness gauges unavailable"),
        }
        Ok(Arc::new(Self {
            tiktok,
            state,
            snapshot,
            connector: pingora::connectors::http::Connector::new(None),
            jwt,
            privacy,
            upstreams,
            access_log,
            started: Instant::now(),
            clock,
            readiness,
            audit,
            tracing,
        }))
    }

    /// The snapshot a new request should use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Validates `path` and swaps it in. On any error the running config stays. Recorded in
    /// the audit log (applied or rejected, with the file's hash).
    pub fn reload_from(&self, path: &Path) -> Result<(), ConfigError> {
        let result = self.reload_quietly(path);
        self.audit.record(reload_event(path, &result, "file", None));
        result
    }

    /// As [`Gateway::reload_from`] without the audit record: the caller records it (the admin
    /// API waits for its record to be stored).
    pub fn reload_quietly(&self, path: &Path) -> Result<(), ConfigError> {
        let result = load_file(path).and_then(|config| self.apply(config));
        match &result {
            Ok(()) => {
                metrics()
                    .config_reloads
                    .with_label_values(&["applied"])
                    .inc();
                tracing::info!(target: "audit", event = "config_reload", outcome = "applied",
                    hash = %self.snapshot().config.hash, version = %self.snapshot().config.version);
                // What `validate` would print as warnings: accepted, but worth a look.
                for warning in &self.snapshot().config.warnings {
                    tracing::warn!(event = "config_warning", warning = %warning);
                }
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
        let current = self.snapshot();
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
        if current.config.audit != config.audit {
            return Err(ConfigError::single(
                "audit",
                None,
                "the audit log's signing key and checkpoints apply on restart, so this reload is refused",
            ));
        }
        if current.config.state != config.state {
            return Err(ConfigError::single(
                "state",
                None,
                "the state backend applies on restart, so this reload is refused",
            ));
        }
        let (now, next) = (&current.config.server, &config.server);
        if (now.threads, now.grace_period, &now.state_dir)
            != (next.threads, next.grace_period, &next.state_dir)
        {
            return Err(ConfigError::single(
                "server",
                None,
                "server.threads, grace_period and state_dir apply on restart, so this reload is refused (drain_delay reloads)",
            ));
        }
        if current.config.logging != config.logging {
            return Err(ConfigError::single(
                "logging",
                None,
                "log sinks and the application-log filter apply on restart, so this reload is refused",
            ));
        }
        if current.config.tracing != config.tracing {
            return Err(ConfigError::single(
                "telemetry.tracing",
                None,
                "tracing settings apply on restart (the exporter lives with the process), so this reload is refused",
            ));
        }
        if delivery_tls(&current.config) != delivery_tls(&config) {
            return Err(ConfigError::single(
                "upstreams",
                None,
                "TLS to the upstreams webhooks are delivered to (sni, ca, first target) applies on restart, so this reload is refused",
            ));
        }
        let privacy = if current.config.privacy != config.privacy {
            Some(privacy_engine(&config).map_err(|e| ConfigError::single("privacy", None, e))?)
        } else {
            None
        };
        // Upstreams the reload leaves as they were keep their pools, and so their targets'
        // health; nothing changes for the running config unless the whole reload compiles.
        let pools = self
            .upstreams
            .prepare(&config.upstreams)
            .map_err(|e| ConfigError::single("upstreams", None, e))?;
        let snapshot = compile(
            config,
            &CompileInputs {
                jwt: &self.jwt,
                clock: &self.clock,
                pools: &pools,
            },
        )?;
        self.upstreams.commit(pools);
        if let Some(engine) = privacy {
            self.privacy.store(Arc::new(engine));
        }
        self.snapshot.store(Arc::new(snapshot));
        metrics().config_loaded_at.set(self.clock.unix_seconds());
        Ok(())
    }
}
