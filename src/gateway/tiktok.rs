//! The TikTok machinery that lives as long as the process: shop tokens (refreshed in the
//! background), the durable webhook queue and its delivery worker, and the replay cache. Built
//! once at start; a reload that changes the TikTok apps, shops or webhook settings is refused
//! (they apply on restart), so nothing here can drift from the running config.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::OnceCell;

use crate::clock::SharedClock;
use crate::config::{DedupBackend, GatewayConfig, TikTokConfig, WebhooksConfig};
use crate::limit::OutboundPacer;
use crate::privacy::SharedPrivacyEngine;
use crate::telemetry::access_log::{AccessLog, DeliveryRecord};
use crate::tiktok::delivery::{
    AttemptReport, DeliveryObserver, DeliverySettings, DeliveryTls, DeliveryWorker, SendError,
    https_origin,
};
use crate::tiktok::queue::WebhookQueue;
use crate::tiktok::replay::{
    MemoryReplayCache, RedisReplayCache, RedisReplaySettings, ReplayCache, ReplayError,
};
use crate::tiktok::token_store::TokenStore;
use crate::tiktok::tokens::{
    AppCredentials, ShopTokenSettings, TokenManager, TokenManagerSettings,
};

pub struct TikTokServices {
    pub tokens: Option<TokenManager>,
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
    pub delivery: Arc<DeliveryWorker>,
    pub replay: Arc<dyn ReplayCache>,
    pub dedup_ttl: Duration,
}

impl TikTokServices {
    /// `access_log` receives a line per webhook delivery attempt (its path redacted by
    /// `privacy`).
    pub fn start(
        config: &GatewayConfig,
        clock: SharedClock,
        access_log: &AccessLog,
        privacy: &SharedPrivacyEngine,
    ) -> Result<Self, String> {
        let tokens = config
            .tiktok
            .as_ref()
            .map(|t| token_manager(t, clock.clone()))
            .transpose()?;
        let webhooks = config
            .webhooks
            .as_ref()
            .map(|w| webhook_services(w, config, clock, access_log, privacy))
            .transpose()?;
        let egress = config.tiktok.as_ref().map(egress_services);
        Ok(Self {
            tokens,
            webhooks,
            egress,
        })
    }
}

fn egress_services(t: &TikTokConfig) -> EgressServices {
    EgressServices {
        pacer: Arc::new(OutboundPacer::new(t.pacing.clone())),
    }
}

fn token_manager(t: &TikTokConfig, clock: SharedClock) -> Result<TokenManager, String> {
    let apps: HashMap<&str, Arc<AppCredentials>> = t
        .apps
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
        .collect();
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
    let store = t
        .token_store
        .as_ref()
        .map(|s| TokenStore::new(&s.path, &s.key))
        .transpose()
        .map_err(|e| format!("tiktok.token_store: {e}"))?;
    let settings = TokenManagerSettings {
        refresh_margin: t.token_refresh_margin,
        ..TokenManagerSettings::default()
    };
    let manager = TokenManager::new(settings, shops, store, clock)
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
    access_log: &AccessLog,
    privacy: &SharedPrivacyEngine,
) -> Result<WebhookServices, String> {
    let queue = Arc::new(
        WebhookQueue::open(&w.queue_path, clock.clone())
            .map_err(|e| format!("webhooks.queue_path: {e}"))?,
    );
    let _ = queue.register_metrics(crate::telemetry::metrics::registry());
    let mut settings = DeliverySettings::new(w.forward_secret.clone());
    settings.backoff_cap = w.max_retry_backoff;
    settings.tls = delivery_tls(config);
    settings.observer = Some(Arc::new(DeliveryLog {
        log: access_log.clone(),
        privacy: privacy.clone(),
    }));
    let delivery = Arc::new(
        DeliveryWorker::new(queue.clone(), settings, clock)
            .map_err(|e| format!("webhooks: {e}"))?,
    );
    let _ = delivery
        .metrics()
        .register(crate::telemetry::metrics::registry());
    let replay: Arc<dyn ReplayCache> = match &w.dedup_backend {
        DedupBackend::Memory => Arc::new(MemoryReplayCache::new(1_000_000)),
        DedupBackend::Redis { url } => Arc::new(LazyRedisReplay {
            settings: RedisReplaySettings::new(url.clone()),
            cache: OnceCell::new(),
        }),
    };
    Ok(WebhookServices {
        queue,
        delivery,
        replay,
        dedup_ttl: w.dedup_ttl,
    })
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
            .map(|u| self.privacy.load().path_for_log(u.path()))
            .unwrap_or_default();
        self.log.write_delivery(DeliveryRecord {
            request_id: &r.event.request_id,
            event_id: &r.event.public_id,
            route: &r.event.route,
            method: "POST",
            path: &path,
            upstream_addr: addr.as_deref(),
            upstream_latency_ms: (r.latency.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            attempts: r.event.attempts + 1,
            status: r.status.unwrap_or(0),
            decision: if r.delivered { "delivered" } else { "retry" },
            reason,
            ..Default::default()
        });
    }
}

/// Connects to Redis on first use, on the runtime that serves requests (a connection made on a
/// start-up runtime would die with it).
struct LazyRedisReplay {
    settings: RedisReplaySettings,
    cache: OnceCell<RedisReplayCache>,
}

#[async_trait]
impl ReplayCache for LazyRedisReplay {
    async fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, ReplayError> {
        let cache = self
            .cache
            .get_or_try_init(|| RedisReplayCache::connect(&self.settings))
            .await?;
        cache.first_seen(key, ttl).await
    }
}

/// Runs the token refresher and the webhook delivery worker.
pub struct TikTokBackground {
    pub services: Arc<TikTokServices>,
}

#[async_trait]
impl BackgroundService for TikTokBackground {
    async fn start(&self, shutdown: ShutdownWatch) {
        let tokens = async {
            if let Some(t) = &self.services.tokens {
                t.run(shutdown.clone()).await;
            }
        };
        let delivery = async {
            if let Some(w) = &self.services.webhooks {
                w.delivery.run(shutdown.clone()).await;
            }
        };
        tokio::join!(tokens, delivery);
    }
}
