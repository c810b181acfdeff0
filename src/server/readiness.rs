//! The readiness checks: a background service that asks each dependency the gateway needs
//! whether it can do its job now, and reports into the gateway's readiness registry
//! (`telemetry::readiness`). Every check is registered as failing before the listeners start, so
//! `/readyz` never says ready before each has passed once.
//!
//! - `jwt:<issuer>`: the issuer has keys, and (URL keys) they are within `stale_if_error`;
//! - `state_backend`: the state store (queue, dedupe, tokens, block list) answers a ping;
//! - `tiktok_token:<shop>`: the shop has an access token that has not expired;
//! - `redis:rate_limits`: Redis answers `PING` (blocking only with `on_backend_error:
//!   fail_closed`; with a fallback the gateway keeps working, so it is listed as degraded).
//!
//! Another component adds a check by implementing [`Check`] and pushing it in [`checks_for`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::auth::JwksStore;
use crate::config::{RateLimitBackend, Secret};
use crate::gateway::state::Gateway;
use crate::limit::OnBackendError;
use crate::telemetry::readiness::{Readiness, Weight};
use crate::tiktok::tokens::TokenError;

/// Time between rounds while everything passes, and while something fails.
const EVERY: Duration = Duration::from_secs(5);
const EVERY_WHILE_FAILING: Duration = Duration::from_secs(1);
/// Upper bound on one check (a Redis that does not answer is a failure, not a stall).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One readiness check.
#[async_trait]
pub trait Check: Send + Sync {
    /// The name `/readyz` lists (`jwt:idp`).
    fn name(&self) -> &str;
    fn weight(&self) -> Weight;
    /// `Err` carries a short reason: no URL, secret or request data.
    async fn run(&self) -> Result<(), String>;
}

/// The checks for `gateway`'s config. JWT issuers, TikTok shops and webhook settings are fixed
/// for the life of the process; the rate-limit backend can change on reload, so its check reads
/// the current snapshot each time.
pub fn checks_for(gateway: &Arc<Gateway>) -> Vec<Box<dyn Check>> {
    let mut checks: Vec<Box<dyn Check>> = Vec::new();
    let mut issuers: Vec<_> = gateway.jwt.iter().collect();
    issuers.sort_by(|a, b| a.0.cmp(b.0));
    for (name, verifier) in issuers {
        checks.push(Box::new(JwtKeys {
            name: format!("jwt:{name}"),
            store: verifier.store().clone(),
            gateway: gateway.clone(),
        }));
    }
    checks.push(Box::new(StateBackend {
        gateway: gateway.clone(),
    }));
    if let Some(tokens) = &gateway.tiktok.tokens {
        // The shops held at start (configured, and onboarded ones the store had then).
        let mut shops = tokens.shop_ids();
        shops.sort_unstable();
        for shop in shops {
            checks.push(Box::new(ShopToken {
                name: format!("tiktok_token:{shop}"),
                shop,
                gateway: gateway.clone(),
            }));
        }
    }
    let config = &gateway.snapshot().config;
    if let RateLimitBackend::Redis(settings) = &config.rate_limits.backend {
        let weight = if settings.on_backend_error == OnBackendError::FailClosed {
            Weight::Blocking
        } else {
            Weight::Degraded
        };
        checks.push(Box::new(RateLimitRedis {
            gateway: gateway.clone(),
            ping: RedisPing::default(),
            weight,
        }));
    }
    checks
}

/// Runs the checks in rounds until the server stops.
pub struct ReadinessChecks {
    readiness: Arc<Readiness>,
    checks: Vec<Box<dyn Check>>,
}

impl ReadinessChecks {
    /// Registers every check as not yet passed.
    pub fn new(readiness: Arc<Readiness>, checks: Vec<Box<dyn Check>>) -> Self {
        for c in &checks {
            readiness.expect(c.name(), c.weight());
        }
        Self { readiness, checks }
    }

    /// One round: every check, concurrently. Returns whether all passed.
    pub async fn round(&self) -> bool {
        let outcomes = futures::future::join_all(self.checks.iter().map(|c| async move {
            let outcome = tokio::time::timeout(CHECK_TIMEOUT, c.run())
                .await
                .unwrap_or_else(|_| Err("no answer in time".to_owned()));
            (c, outcome)
        }))
        .await;
        let mut all = true;
        for (check, outcome) in outcomes {
            all &= outcome.is_ok();
            self.readiness.report(check.name(), check.weight(), outcome);
        }
        all
    }
}

#[async_trait]
impl BackgroundService for ReadinessChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let wait = if self.round().await {
                EVERY
            } else {
                EVERY_WHILE_FAILING
            };
            tokio::select! {
                // `changed` alone also fires on the watch's first read; wait for `true` (or
                // for the server to be gone).
                _ = shutdown.wait_for(|stopping| *stopping) => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

struct JwtKeys {
    name: String,
    store: Arc<JwksStore>,
    gateway: Arc<Gateway>,
}

#[async_trait]
impl Check for JwtKeys {
    fn name(&self) -> &str {
        &self.name
    }
    fn weight(&self) -> Weight {
        Weight::Blocking
    }
    async fn run(&self) -> Result<(), String> {
        if self.store.snapshot().is_empty() {
            return Err("no signing keys loaded yet".into());
        }
        if !self.store.is_fresh(self.gateway.clock.unix_seconds()) {
            return Err("keys not refreshed within stale_if_error".into());
        }
        Ok(())
    }
}

/// The state store (webhook queue, dedupe, tokens, block list) answers a ping within its
/// timeout: embedded or PostgreSQL.
struct StateBackend {
    gateway: Arc<Gateway>,
}

#[async_trait]
impl Check for StateBackend {
    fn name(&self) -> &str {
        "state_backend"
    }
    fn weight(&self) -> Weight {
        Weight::Blocking
    }
    async fn run(&self) -> Result<(), String> {
        let state = &self.gateway.state;
        let result =
            crate::state::health::with_timeout(state.config.timeout, state.store.ping()).await;
        state.health.observe("ping", &result);
        result.map_err(|e| format!("{} backend {}", state.health.backend(), e.kind()))
    }
}

struct ShopToken {
    name: String,
    shop: String,
    gateway: Arc<Gateway>,
}

#[async_trait]
impl Check for ShopToken {
    fn name(&self) -> &str {
        &self.name
    }
    fn weight(&self) -> Weight {
        Weight::Blocking
    }
    async fn run(&self) -> Result<(), String> {
        let Some(tokens) = &self.gateway.tiktok.tokens else {
            return Ok(());
        };
        match tokens.access_token(&self.shop) {
            Ok(_) => Ok(()),
            // Only a revoked authorization drops a shop's tokens: its calls are refused on
            // purpose, which says nothing about the gateway's readiness.
            Err(TokenError::UnknownShop(_)) => Ok(()),
            Err(TokenError::NoAccessToken(_)) => Err("no access token".into()),
            Err(TokenError::AccessExpired(_)) => {
                Err("access token expired and not refreshed yet".into())
            }
            Err(_) => Err("no usable access token".into()),
        }
    }
}

struct RateLimitRedis {
    gateway: Arc<Gateway>,
    ping: RedisPing,
    weight: Weight,
}

#[async_trait]
impl Check for RateLimitRedis {
    fn name(&self) -> &str {
        "redis:rate_limits"
    }
    fn weight(&self) -> Weight {
        self.weight
    }
    async fn run(&self) -> Result<(), String> {
        // A reload may have moved the limits off Redis: nothing to check then.
        match &self.gateway.snapshot().config.rate_limits.backend {
            RateLimitBackend::Redis(settings) => self.ping.ping(&settings.url).await,
            RateLimitBackend::Local => Ok(()),
        }
    }
}

/// `PING` over a connection kept between rounds (reconnecting by itself), for one URL at a time.
#[derive(Default)]
struct RedisPing {
    conn: tokio::sync::Mutex<Option<(String, redis::aio::ConnectionManager)>>,
}

impl RedisPing {
    async fn ping(&self, url: &Secret) -> Result<(), String> {
        let mut slot = self.conn.lock().await;
        let url = url.expose();
        if slot.as_ref().is_none_or(|(u, _)| u != url) {
            // The client's errors can echo the URL (and its password): never show them.
            let client = redis::Client::open(url).map_err(|_| "invalid Redis URL".to_owned())?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CHECK_TIMEOUT))
                .set_response_timeout(Some(CHECK_TIMEOUT))
                .set_number_of_retries(1);
            let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|_| "invalid Redis URL".to_owned())?;
            *slot = Some((url.to_owned(), conn));
        }
        let Some((_, conn)) = slot.as_mut() else {
            return Err("no connection".into());
        };
        redis::cmd("PING")
            .query_async::<String>(conn)
            .await
            .map(|_| ())
            .map_err(|e| format!("does not answer ({:?})", e.kind()))
    }
}
