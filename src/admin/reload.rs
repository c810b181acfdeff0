//! `POST /admin/reload`: reloads the config file the gateway runs with, exactly as SIGHUP does.
//! The audit record carries the file's hash and whether it was applied or rejected.

use http::StatusCode;
use serde_json::json;

use super::request::{AdminRequest, Done};
use crate::error::GatewayError;

pub async fn post(req: &AdminRequest<'_>) -> Result<Done, GatewayError> {
    req.no_body()?;
    let path = req.snapshot.config.source.clone();
    let gateway = req.gateway.clone();
    let result = {
        let path = path.clone();
        // Loading reads files and resolves secrets: off the request's thread.
        tokio::task::spawn_blocking(move || gateway.reload_quietly(&path))
            .await
            .map_err(|_| GatewayError::internal("the reload task failed"))?
    };
    let actor = req.identity.subject();
    tracing::info!(target: "audit", request_id = req.request_id, actor, "config reload requested through the admin API");
    let event = crate::gateway::state::reload_event(&path, &result, "admin", Some(actor));
    let hash = event.detail.get("config_hash").cloned().unwrap_or_default();
    match result {
        Ok(()) => {
            let config = &req.gateway.snapshot().config;
            Ok(Done::ok(json!({
                "outcome": "applied",
                "config": { "version": config.version, "hash": config.hash },
            }))
            .detail("config_hash", hash)
            .detail("outcome", "applied"))
        }
        Err(e) => {
            let problems: Vec<_> = e
                .issues
                .iter()
                .take(20)
                .map(|i| json!({ "path": i.path, "message": i.message }))
                .collect();
            Ok(
                Done::ok(json!({ "outcome": "rejected", "problems": problems }))
                    .status(StatusCode::UNPROCESSABLE_ENTITY)
                    .detail("config_hash", hash)
                    .detail("outcome", "rejected"),
            )
        }
    }
}
