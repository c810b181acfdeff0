//! Admin endpoints for TikTok shops (the caller already passed the admin gate: client
//! certificate, MFA token, admin scope, kill switch); the admin app audits every call, with the
//! facts each handler adds (`Done::detail`).
//!
//! - `POST /admin/shops/authorize` `{"app": "<name>"}`: a seller authorization link, with a
//!   single-use `state` bound to the caller and the app, valid for minutes.
//! - `GET /admin/shops`: every shop, configured or authorized at runtime, with its status, region
//!   and token expiries (never a token).
//! - `POST /admin/shops/<id>/revoke`: the shop is refused from now on and its tokens deleted.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::request::{AdminRequest, Done};
use crate::error::GatewayError;
use crate::gateway::state::Gateway;
use crate::state::ShopStatus;
use crate::tiktok::authorization::AuthorizationError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeBody {
    /// The TikTok app (config name) the seller is to authorize.
    app: String,
}

fn unknown_shop() -> GatewayError {
    GatewayError::new(StatusCode::NOT_FOUND, "unknown_shop", "no shop of that id")
}

fn state_unavailable(what: &str) -> GatewayError {
    GatewayError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "state_unavailable",
        format!("the {what} could not be stored; try again"),
    )
}

/// `POST /admin/shops/authorize`: a link with a single-use `state` bound to the caller and app.
pub async fn authorize(req: &AdminRequest<'_>) -> Result<Done, GatewayError> {
    let body: AuthorizeBody = req.json()?;
    let Some(authorizations) = &req.gateway.tiktok.authorizations else {
        return Err(GatewayError::new(
            StatusCode::NOT_FOUND,
            "no_tiktok",
            "no TikTok apps are configured",
        ));
    };
    match authorizations
        .start(&body.app, req.identity.subject())
        .await
    {
        Ok(link) => Ok(Done::ok(
            json!({"app": body.app, "url": link.url, "expires_at": link.expires_at}),
        )
        .detail("app", body.app.clone())
        .detail("expires_at", link.expires_at)),
        Err(AuthorizationError::UnknownApp(_)) => Err(GatewayError::new(
            StatusCode::NOT_FOUND,
            "unknown_app",
            "no TikTok app of that name is configured",
        )),
        Err(e) => {
            tracing::error!(error = %e, "authorization link could not be stored");
            Err(state_unavailable("authorization"))
        }
    }
}

/// `GET /admin/shops`.
pub fn list(req: &AdminRequest<'_>) -> Result<Done, GatewayError> {
    req.no_body()?;
    Ok(Done::ok(json!({"shops": shops(req.gateway)})))
}

/// `POST /admin/shops/<id>/revoke`: refused from now on, its tokens deleted.
pub async fn revoke(req: &AdminRequest<'_>, id: &str) -> Result<Done, GatewayError> {
    req.no_body()?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(unknown_shop());
    }
    let Some(registry) = &req.gateway.tiktok.shops else {
        return Err(unknown_shop());
    };
    match registry.revoke(id, None, req.identity.subject()).await {
        Ok(Some(record)) => Ok(
            Done::ok(json!({"shop_id": id, "status": record.status.as_str()}))
                .detail("shop_id", id)
                .detail("app", record.app.clone()),
        ),
        Ok(None) => Err(unknown_shop()),
        Err(e) => {
            tracing::error!(shop = %id, error = %e, "shop revocation could not be stored");
            Err(state_unavailable("revocation"))
        }
    }
}

/// Configured shops and those authorized at runtime, by id; never a token.
fn shops(gateway: &Gateway) -> Vec<Value> {
    let tokens = gateway.tiktok.tokens.as_ref();
    let expiry = |id: &str| {
        json!({
            "access_token_expires_at": tokens.and_then(|t| t.access_expires_at(id)),
            "refresh_token_expires_at": tokens.and_then(|t| t.refresh_expires_at(id)),
        })
    };
    let Some(registry) = &gateway.tiktok.shops else {
        return Vec::new();
    };
    let records = registry.records();
    let mut out: Vec<(String, Value)> = Vec::new();
    for (id, shop) in registry.configured() {
        let record = records.iter().find(|r| &r.id == id);
        let status = record.map_or(ShopStatus::Active, |r| r.status);
        let mut entry = json!({
            "id": id,
            "app": shop.app,
            "source": "config",
            "status": status.as_str(),
            "name": record.map(|r| r.name.as_str()).unwrap_or_default(),
            "region": record.map(|r| r.region.as_str()).unwrap_or_default(),
        });
        merge(&mut entry, expiry(id));
        out.push((id.clone(), entry));
    }
    for r in records
        .iter()
        .filter(|r| !registry.configured().contains_key(&r.id))
    {
        let mut entry = json!({
            "id": r.id,
            "app": r.app,
            "source": "authorization",
            "status": r.status.as_str(),
            "name": r.name,
            "region": r.region,
            "changed_by": r.changed_by,
            "updated_at": r.updated_at,
        });
        merge(&mut entry, expiry(&r.id));
        out.push((r.id.clone(), entry));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, v)| v).collect()
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}
