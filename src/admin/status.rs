//! `GET /admin/status`: the running config (version, hash, routes), the JWT key ids known per
//! issuer, the uptime, the webhook queue's depth and the state backend.

use serde_json::json;

use super::request::{AdminRequest, Done};
use crate::error::GatewayError;

pub async fn get(req: &AdminRequest<'_>) -> Result<Done, GatewayError> {
    req.no_body()?;
    let gateway = req.gateway;
    let config = &req.snapshot.config;
    let depth = match &gateway.tiktok.webhooks {
        Some(w) => w.queue.refresh_stats().await.ok().map(|s| s.live),
        None => None,
    };
    let issuers: serde_json::Map<String, serde_json::Value> = gateway
        .jwt
        .iter()
        .map(|(name, v)| (name.clone(), json!(v.store().key_ids())))
        .collect();
    Ok(Done::ok(json!({
        "config": { "version": config.version, "hash": config.hash, "source": config.source.display().to_string() },
        "routes": config.routes.iter().map(|r| json!({"name": r.name, "listener": r.listener, "upstream": r.upstream})).collect::<Vec<_>>(),
        "jwt_key_ids": issuers,
        "uptime_seconds": gateway.started.elapsed().as_secs(),
        "webhook_queue_depth": depth,
        "state_backend": gateway.state.health.backend(),
    })))
}
