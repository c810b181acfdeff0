//! Webhook dead letters: `GET /admin/webhooks/dead-letters?after=<id>&limit=<n>` lists them
//! (metadata only: a body may carry buyer data and is never shown), and
//! `POST /admin/webhooks/dead-letters/<id>/replay` moves one back to the live queue, due now with
//! its attempts reset; any replica's worker then delivers it.

use http::StatusCode;
use serde_json::json;

use super::request::{AdminRequest, Done, id_segment, store_error};
use crate::error::GatewayError;
use crate::tiktok::queue::WebhookQueue;

const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 1000;

fn queue<'a>(req: &'a AdminRequest<'_>) -> Result<&'a std::sync::Arc<WebhookQueue>, GatewayError> {
    req.gateway
        .tiktok
        .webhooks
        .as_ref()
        .map(|w| &w.queue)
        .ok_or_else(|| {
            GatewayError::new(
                StatusCode::NOT_FOUND,
                "no_webhooks",
                "no webhook routes are configured",
            )
        })
}

pub async fn list(req: &AdminRequest<'_>) -> Result<Done, GatewayError> {
    req.no_body()?;
    req.only_params(&["after", "limit"])?;
    let after = req.number("after", 0)?;
    let limit = req.number("limit", DEFAULT_LIMIT)?.clamp(1, MAX_LIMIT);
    let queue = queue(req)?;
    let letters = queue
        .dead_letters(after, limit as usize)
        .await
        .map_err(store_error)?;
    let next = letters.last().map(|l| l.id);
    Ok(Done::ok(json!({
        "dead_letters": letters.iter().map(|l| json!({
            "id": l.id,
            "event_id": queue.public_id(l.id),
            "route": l.route,
            "request_id": l.request_id,
            "received_at": l.received_at,
            "attempts": l.attempts,
            "dead_at_ms": l.dead_at,
        })).collect::<Vec<_>>(),
        "next_after": next,
    }))
    .detail("count", letters.len()))
}

pub async fn replay(req: &AdminRequest<'_>, id: &str) -> Result<Done, GatewayError> {
    req.no_body()?;
    let id = id_segment(id)?;
    let queue = queue(req)?;
    if !queue.replay(id).await.map_err(store_error)? {
        return Err(GatewayError::new(
            StatusCode::NOT_FOUND,
            "no_dead_letter",
            "no dead letter has this id",
        ));
    }
    Ok(Done::ok(json!({ "replayed": id, "event_id": queue.public_id(id) })).detail("id", id))
}
