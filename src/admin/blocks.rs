//! The runtime block list: `GET /admin/blocks`, `POST /admin/blocks`,
//! `DELETE /admin/blocks/<id>`. Entries are written through the state store, so every replica
//! of a fleet applies them (at once on a change notification, within `state.poll_interval`
//! otherwise); an entry with an expiry lapses by itself.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::request::{AdminRequest, Done, id_segment, store_error};
use crate::error::GatewayError;
use crate::state::{BlockEntry, BlockKind, NewBlock};

/// Longest expiry accepted: a year. Longer belongs in `identity.blocked_subjects`.
const MAX_EXPIRY_SECS: i64 = 366 * 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBlock {
    /// `subject`, `api_key` or `client_ip`.
    kind: String,
    value: String,
    reason: String,
    /// Unix seconds at which the entry lapses.
    #[serde(default)]
    expires_at: Option<i64>,
    /// Seconds from now after which the entry lapses (instead of `expires_at`).
    #[serde(default)]
    expires_in: Option<i64>,
}

fn view(entry: &BlockEntry, now: i64) -> serde_json::Value {
    json!({
        "id": entry.id,
        "kind": entry.kind.as_str(),
        "value": entry.value,
        "reason": entry.reason,
        "expires_at": entry.expires_at,
        "created_at": entry.created_at,
        "active": entry.expires_at.is_none_or(|at| at > now),
    })
}

pub async fn list(req: &AdminRequest<'_>) -> Result<Done, GatewayError> {
    req.no_body()?;
    let entries = req.gateway.state.blocks.list().await.map_err(store_error)?;
    let now = req.gateway.clock.unix_seconds();
    Ok(Done::ok(json!({
        "blocks": entries.iter().map(|e| view(e, now)).collect::<Vec<_>>(),
    }))
    .detail("count", entries.len()))
}

pub async fn add(req: &AdminRequest<'_>) -> Result<Done, GatewayError> {
    let body: AddBlock = req.json()?;
    let kind = BlockKind::parse(&body.kind).ok_or_else(|| {
        GatewayError::bad_request(
            "invalid_body",
            "`kind` must be `subject`, `api_key` or `client_ip`",
        )
    })?;
    if body.reason.trim().is_empty() {
        return Err(GatewayError::bad_request(
            "invalid_body",
            "`reason` must say why the caller is blocked",
        ));
    }
    let now = req.gateway.clock.unix_seconds();
    let expires_at = match (body.expires_at, body.expires_in) {
        (Some(_), Some(_)) => {
            return Err(GatewayError::bad_request(
                "invalid_body",
                "give `expires_at` or `expires_in`, not both",
            ));
        }
        (Some(at), None) => Some(at),
        (None, Some(secs)) => Some(now.saturating_add(secs)),
        (None, None) => None,
    };
    if let Some(at) = expires_at
        && (at <= now || at - now > MAX_EXPIRY_SECS)
    {
        return Err(GatewayError::bad_request(
            "invalid_body",
            "the expiry must be in the future and at most a year away",
        ));
    }
    let block = NewBlock {
        kind,
        value: body.value,
        reason: body.reason,
        expires_at,
    };
    let (kind, value) = (block.kind.as_str(), block.value.clone());
    let id = req
        .gateway
        .state
        .blocks
        .add(block)
        .await
        .map_err(store_error)?;
    Ok(
        Done::ok(json!({ "id": id, "kind": kind, "value": value, "expires_at": expires_at }))
            .status(StatusCode::CREATED)
            .detail("id", id)
            .detail("kind", kind)
            .detail("value", value)
            .detail("expires_at", expires_at),
    )
}

pub async fn remove(req: &AdminRequest<'_>, id: &str) -> Result<Done, GatewayError> {
    req.no_body()?;
    let id = id_segment(id)?;
    let removed = req
        .gateway
        .state
        .blocks
        .remove(id)
        .await
        .map_err(store_error)?;
    if !removed {
        return Err(GatewayError::new(
            StatusCode::NOT_FOUND,
            "no_block",
            "no block entry has this id",
        ));
    }
    Ok(Done::ok(json!({ "removed": id })).detail("id", id))
}
