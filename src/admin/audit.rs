//! `GET /admin/audit?after=<seq>&limit=<n>`: the audit log's records in order, with their hashes,
//! so an operator can page through it (`audit verify` checks the chain).

use serde_json::json;

use super::request::{AdminRequest, Done, store_error};
use crate::error::GatewayError;

const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 1000;

pub async fn get(req: &AdminRequest<'_>) -> Result<Done, GatewayError> {
    req.no_body()?;
    req.only_params(&["after", "limit"])?;
    let after = req.number("after", 0)?;
    let limit = req.number("limit", DEFAULT_LIMIT)?.clamp(1, MAX_LIMIT);
    let records = req
        .gateway
        .audit
        .read(after, limit as usize)
        .await
        .map_err(store_error)?;
    let next = records.last().map(|r| r.seq);
    Ok(Done::ok(json!({
        "records": records.iter().map(|r| json!({
            "seq": r.seq,
            "time_ms": r.time,
            "action": r.action,
            "outcome": r.outcome,
            "actor": r.actor,
            "detail": serde_json::from_str::<serde_json::Value>(&r.detail).unwrap_or(serde_json::Value::Null),
            "prev_hash": hex::encode(r.prev_hash),
            "hash": hex::encode(r.hash),
        })).collect::<Vec<_>>(),
        "next_after": next,
    }))
    .detail("after", after)
    .detail("count", records.len()))
}
