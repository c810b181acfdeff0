//! The TikTok machinery that lives as long as the process: shop tokens (refreshed in the
//! background), the durable webhook queue and its delivery worker, and the replay cache. Built
//! once at start; a reload that changes the TikTok apps, shops or webhook settings is refused
//! (they apply on restart), so nothing here can drift from the running config.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::snapshot::Snapshot;
use super::state_services::StateServices;
use super::webhook_delivery::UpstreamDelivery;
use crate::clock::SharedClock;
use crate::config::{GatewayConfig, TikTokConfig, WebhooksConfig};
use crate::limit::OutboundPacer;
use crate::privacy::SharedPrivacyEngine;
use crate::telemetry::access_log::{AccessLog, DeliveryRecord};
use crate::telemetry::otel::Tracing;
use crate::tiktok::authorization::Authorizations;
use crate::tiktok::delivery::{
    AttemptReport, DeliveryObserver, DeliverySettings, DeliveryTls, DeliveryWorker, HttpTransport,
    SendError, https_origin,
};
use crate::tiktok::queue::{QueueSettings, WebhookQueue};
use crate::tiktok::shops::ShopRegistry;
use crate::tiktok::token_seal::TokenSealer;
use crate::tiktok::token_store::TokenStore;
use crate::tiktok::tokens::{
    AppCredentials, ShopTokenSettings, TokenManager, TokenManagerSettings, TokenVault,
};

pub struct TikTokServices {
    pub tokens: Option<TokenManager>,
    /// Shops onboarded at runtime and every shop's status (revoked or not).
    pub shops: Option<Arc<ShopRegistry>>,
    /// Pending seller authorizations (the links admins hand out).
    pub authorizations: Option<Arc<Authorizations>>,
    pub webhooks: Option<WebhookServices>,
    pub egress: Option<EgressServices>,
}

/// What signed egress calls need beyond the route's upstream: the outbound pacer, whose budgets
/// outlive a reload.
pub struct EgressServices {
    pub pacer: Arc<OutboundPacer>,
}

pub struct WebhookServices {
    pub queue: Arc<WebhookQueue>,
    pub delivery: Arc<DeliveryWorker<UpstreamDelivery>>,
}

impl TikTokServices {
    /// `snapshot` is the running config, which webhook delivery follows across reloads; `state`
    /// holds the queue and the tokens; `access_log` receives a line per webhook delivery attempt
    /// (its path redacted by `privacy`).
    pub fn start(
        config: &GatewayConfig,
        clock: SharedClock,
        snapshot: &Arc<ArcSwap<Snapshot>>,
        state: &StateServices,
        access_log: &AccessLog,
        privacy: &SharedPrivacyEngine,
        tracing: &Tracing,
    ) -> Result<Self, String> {
        let tokens = config
            .tiktok
            .as_ref()
            .map(|t| token_manager(t, clock.clone(), state, tracing))
            .transpose()?;
        let webhooks = config
            .webhooks
            .as_ref()
            .map(|w| {
                webhook_services(
                    w,
                    config,
                    clock.clone(),
                    snapshot,
                    state,
                    &DeliveryLog {
                        log: access_log.clone(),
                        privacy: privacy.clone(),
                    },
                    tracing,
                )
            })
            .transpose()?;
        let egress = config.tiktok.as_ref().map(egress_services);
        let shops = config
            .tiktok
            .as_ref()
            .map(|t| shop_registry(t, clock.clone(), state, tokens.clone()))
            .transpose()?;
        let authorizations = config.tiktok.as_ref().map(|t| {
            Arc::new(Authorizations::new(
                state.store.clone(),
                state.health.clone(),
                state.config.timeout,
                clock.clone(),
                t.apps
                    .values()
                    .map(|a| (a.name.clone(), Arc::new(a.clone())))
                    .collect(),
            ))
        });
        Ok(Self {
            tokens,
            shops,
            authorizations,
            webhooks,
            egress,
        })
    }
}

/// The registry, read once at start so onboarded shops (and revocations) apply from the first
/// request.
fn shop_registry(
    t: &TikTokConfig,
    clock: SharedClock,
    state: &StateServices,
    tokens: Option<TokenManager>,
) -> Result<Arc<ShopRegistry>, String> {
    let registry = Arc::new(ShopRegistry::new(
        state.store.clone(),
        state.health.clone(),
        state.config.timeout,
        clock,
        tokens,
        app_credentials(t)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        &t.shops,
    ));
    let initial = registry.clone();
    crate::state::block_on_startup(async move {
        initial
            .refresh()
            .await
            .map_err(|e| crate::state::StateError::Unavailable(e.to_string()))
    })
    .map_err(|e| format!("tiktok shops: {e}"))?;
    Ok(registry)
}

fn app_credentials(t: &TikTokConfig) -> HashMap<&str, Arc<AppCredentials>> {
    t.apps
        .values()
        .map(|a| {
            (
                a.name.as_str(),
                Arc::new(AppCredentials {
                    app_key: a.app_key.clone(),
                    app_secret: a.app_secret.clone(),
                    auth_base: a.auth_base.clone(),
                    ca: a.ca.clone(),
                }),
            )
        })
        .collect()
}

fn egress_services(t: &TikTokConfig) -> EgressServices {
    EgressServices {
        pacer: Arc::new(OutboundPacer::new(t.pacing.clone())),
    }
}

fn token_manager(
    t: &TikTokConfig,
    clock: SharedClock,
    state: &StateServices,
    tracing: &Tracing,
) -> Result<TokenManager, String> {
    let apps = app_credentials(t);
    let shops = t
        .shops
        .iter()
        .filter_map(|s| {
            apps.get(s.app.as_str()).map(|app| ShopTokenSettings {
                shop_id: s.id.clone(),
                app: app.clone(),
                access_token: s.access_token.clone(),
                access_expires_at: s.access_token_expires_at,
                refresh_token: s.refresh_token.clone(),
                refresh_expires_at: s.refresh_token_expires_at,
            })
        })
        .collect();
    // Tokens live in the state store, sealed with the token store key; a token file of earlier
    // versions is only read, to import what the store does not hold yet.
    let vault = match &t.token_store {
        Some(ts) => {
            let sealer =
                TokenSealer::new(&ts.key).map_err(|e| format!("tiktok.token_store.key: {e}"))?;
            let legacy = match &ts.path {
                Some(path) => TokenStore::new(path, &ts.key)
                    .and_then(|file| file.load())
                    .map_err(|e| format!("tiktok.token_store.path: {e}"))?,
                None => HashMap::new(),
            };
            Some((
                TokenVault::new(
                    state.store.clone(),
                    state.health.clone(),
                    sealer,
                    state.config.lease,
                    state.config.timeout,
                ),
                legacy,
            ))
        }
        None => None,
    };
    let defaults = TokenManagerSettings::default();
    let settings = TokenManagerSettings {
        refresh_margin: t.token_refresh_margin,
        // A refresh call ends well inside the refresh lease, so no other replica takes over a
        // refresh that still runs.
        request_timeout: defaults.request_timeout.min(state.config.lease / 2),
        tracing: tracing.clone(),
        ..defaults
    };
    let manager = TokenManager::new(settings, shops, vault, clock)
        .map_err(|e| format!("tiktok tokens: {e}"))?;
    // A second gateway in the same process (tests) finds the names taken; its numbers still count.
    let _ = manager.register_metrics(crate::telemetry::metrics::registry());
    Ok(manager)
}

/// TLS for each upstream that webhook routes deliver to, as the proxy uses it: the same
/// trust anchors, and the same target address for the SNI name.
pub(crate) fn delivery_tls(config: &GatewayConfig) -> Vec<DeliveryTls> {
    let mut out: Vec<DeliveryTls> = Vec::new();
    for route in config.routes.iter().filter(|r| r.auth.webhook().is_some()) {
        let Some(up) = config.upstreams.get(&route.upstream) else {
            continue;
        };
        let (Some(tls), Some(target)) = (&up.tls, up.targets.first()) else {
            continue;
        };
        let origin = https_origin(&tls.sni, target.port);
        if out.iter().any(|t| t.origin == origin) {
            continue;
        }
        out.push(DeliveryTls {
            origin,
            server_name: tls.sni.clone(),
            pin: target
                .host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, target.port)),
            ca: tls.ca.clone(),
        });
    }
    out
}

fn webhook_services(
    w: &WebhooksConfig,
    config: &GatewayConfig,
    clock: SharedClock,
    snapshot: &Arc<ArcSwap<Snapshot>>,
    state: &StateServices,
    log: &DeliveryLog,
    tracing: &Tracing,
) -> Result<WebhookServices, String> {
    let queue = Arc::new(WebhookQueue::new(
        state.store.clone(),
        state.health.clone(),
        clock.clone(),
        QueueSettings {
            dedup_ttl: w.dedup_ttl,
            lease: state.config.lease,
            timeout: state.config.timeout,
        },
    ));
    let mut settings = DeliverySettings::new(w.forward_secret.clone());
    settings.backoff_cap = w.max_retry_backoff;
    settings.tls = delivery_tls(config);
    settings.poll_interval = state.config.poll_interval;
    settings.dead_letter_after = w.dead_letter_after;
    // An attempt ends well inside its claim's lease, so no other replica starts the same event
    // while it still runs.
    settings.request_timeout = settings.request_timeout.min(state.config.lease / 2);
    settings.connect_timeout = settings.connect_timeout.min(settings.request_timeout);
    // Events go through their route's upstream; the plain client only carries events whose
    // route a reload removed.
    let direct = HttpTransport::new(
        settings.connect_timeout,
        settings.request_timeout,
        &settings.tls,
    )
    .map_err(|e| format!("webhooks: {e}"))?;
    let transport = UpstreamDelivery::new(snapshot.clone(), direct, settings.request_timeout);
    settings.observer = Some(Arc::new(DeliveryLog {
        log: log.log.clone(),
        privacy: log.privacy.clone(),
    }));
    settings.tracing = tracing.clone();
    let delivery = Arc::new(
        DeliveryWorker::with_transport(queue.clone(), settings, clock, transport)
            .map_err(|e| format!("webhooks: {e}"))?,
    );
    let _ = delivery
        .metrics()
        .register(crate::telemetry::metrics::registry());
    Ok(WebhookServices { queue, delivery })
}

/// Writes a `delivery` line to the access log for every delivery attempt.
struct DeliveryLog {
    log: AccessLog,
    privacy: SharedPrivacyEngine,
}

impl DeliveryObserver for DeliveryLog {
    fn attempt(&self, r: &AttemptReport<'_>) {
        let url = reqwest::Url::parse(&r.event.target).ok();
        let addr = url.as_ref().and_then(|u| {
            let host = u.host_str()?;
            Some(format!("{host}:{}", u.port_or_known_default()?))
        });
        let reason = match (r.error, r.status) {
            (Some(SendError::Timeout), _) => Some("timeout"),
            (Some(SendError::Connect), _) => Some("connect"),
            (Some(SendError::Other), _) => Some("other"),
            (None, Some(s)) if (200..300).contains(&s) && !r.delivered => Some("ack_failed"),
            (None, Some(_)) if !r.delivered => Some("rejected"),
            _ => None,
        };
        let path = url
            .as_ref()
            .map(|u| self.privacy.load().path_for_log(u.path()).into_owned())
            .unwrap_or_default();
        self.log.write_delivery(DeliveryRecord {
            request_id: &r.event.request_id,
            event_id: r.public_id,
            route: &r.event.route,
            method: "POST",
            path: &path,
            upstream_addr: addr.as_deref(),
            upstream_latency_ms: (r.latency.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            attempts: r.event.attempts + 1,
            status: r.status.unwrap_or(0),
            decision: if r.delivered { "delivered" } else { "retry" },
            reason,
            trace_id: r.trace_id,
        });
    }
}

/// Runs the token refresher and the webhook delivery worker.
pub struct TikTokBackground {
    pub services: Arc<TikTokServices>,
    /// Where failed token refreshes are recorded.
    pub audit: Arc<crate::audit::AuditLog>,
    /// How often the shop list's version is checked (`state.poll_interval`).
    pub poll_interval: std::time::Duration,
}

#[async_trait]
impl BackgroundService for TikTokBackground {
    async fn start(&self, shutdown: ShutdownWatch) {
        let tokens = async {
            if let Some(t) = &self.services.tokens {
                t.run_audited(shutdown.clone(), Some(&self.audit)).await;
            }
        };
        let delivery = async {
            if let Some(w) = &self.services.webhooks {
                w.delivery.run(shutdown.clone()).await;
            }
        };
        let shops = async {
            if let Some(s) = &self.services.shops {
                s.watch(self.poll_interval, shutdown.clone()).await;
            }
        };
        tokio::join!(tokens, delivery, shops);
    }
}
