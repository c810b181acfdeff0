//! Admin endpoints for TikTok shops (the caller already passed the admin gate: client
//! certificate, MFA token, admin scope, kill switch). Every call leaves an audit record.
//!
//! - `POST /admin/shops/authorize` `{"app": "<name>"}`: a seller authorization link, with a
//!   single-use `state` bound to the caller and the app, valid for minutes.
//! - `GET /admin/shops`: every shop, configured or authorized at runtime, with its status, region
//!   and token expiries (never a token).
//! - `POST /admin/shops/<id>/revoke`: the shop is refused from now on and its tokens deleted.

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use pingora::protocols::http::ServerSession;
use serde_json::{Value, json};

use crate::audit::{AuditEvent, Outcome};
use crate::auth::Identity;
use crate::error::GatewayError;
use crate::gateway::state::Gateway;
use crate::state::ShopStatus;
use crate::tiktok::authorization::AuthorizationError;

/// Largest request body read (`{"app": "..."}`).
const MAX_BODY: usize = 4 * 1024;

fn reply(status: StatusCode, body: Value, rid: &str) -> Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .header("x-request-id", rid)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_else(|_| {
            let mut r = Response::new(Vec::new());
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}

fn error(status: StatusCode, code: &'static str, message: &str, rid: &str) -> Response<Vec<u8>> {
    GatewayError::new(status, code, message).to_http_response(rid)
}

/// Whether `path` is one of these endpoints' (the admin app hands them over).
pub fn handles(path: &str) -> bool {
    path == "/admin/shops" || path.starts_with("/admin/shops/")
}

pub async fn handle(
    gateway: &Gateway,
    session: &mut ServerSession,
    identity: &Identity,
    rid: &str,
) -> Response<Vec<u8>> {
    let method = session.req_header().method.as_str().to_owned();
    let path = session.req_header().uri.path().to_owned();
    let subject = identity.subject();
    let audit = |action: &'static str, outcome: Outcome, detail: &[(&str, Value)]| {
        let mut event = AuditEvent::new(action, outcome)
            .actor(subject)
            .detail("request_id", rid);
        for (k, v) in detail {
            event = event.detail(k, v.clone());
        }
        gateway.audit.record(event);
    };
    match (method.as_str(), path.as_str()) {
        ("POST", "/admin/shops/authorize") => {
            let app = match read_body(session).await {
                Some(body) => serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("app").and_then(Value::as_str).map(str::to_owned)),
                None => None,
            };
            let Some(app) = app else {
                audit(
                    "admin.shops.authorize",
                    Outcome::Refused,
                    &[("reason", json!("bad_request"))],
                );
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "send a JSON body {\"app\": \"<TikTok app name>\"}",
                    rid,
                );
            };
            let Some(authorizations) = &gateway.tiktok.authorizations else {
                return error(
                    StatusCode::NOT_FOUND,
                    "no_tiktok",
                    "no TikTok apps are configured",
                    rid,
                );
            };
            match authorizations.start(&app, subject).await {
                Ok(link) => {
                    audit(
                        "admin.shops.authorize",
                        Outcome::Allowed,
                        &[("app", json!(app)), ("expires_at", json!(link.expires_at))],
                    );
                    reply(
                        StatusCode::OK,
                        json!({"app": app, "url": link.url, "expires_at": link.expires_at}),
                        rid,
                    )
                }
                Err(AuthorizationError::UnknownApp(_)) => {
                    audit(
                        "admin.shops.authorize",
                        Outcome::Refused,
                        &[("app", json!(app)), ("reason", json!("unknown_app"))],
                    );
                    error(
                        StatusCode::NOT_FOUND,
                        "unknown_app",
                        "no TikTok app of that name is configured",
                        rid,
                    )
                }
                Err(e) => {
                    tracing::error!(error = %e, "authorization link could not be stored");
                    audit(
                        "admin.shops.authorize",
                        Outcome::Failed,
                        &[("app", json!(app)), ("reason", json!("state_unavailable"))],
                    );
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "state_unavailable",
                        "the authorization could not be stored; try again",
                        rid,
                    )
                }
            }
        }
        ("GET", "/admin/shops") => {
            audit("admin.shops.list", Outcome::Allowed, &[]);
            reply(StatusCode::OK, json!({"shops": list(gateway)}), rid)
        }
        ("POST", p) if p.starts_with("/admin/shops/") && p.ends_with("/revoke") => {
            let id = &p["/admin/shops/".len()..p.len() - "/revoke".len()];
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return error(
                    StatusCode::NOT_FOUND,
                    "unknown_shop",
                    "no shop of that id",
                    rid,
                );
            }
            let Some(registry) = &gateway.tiktok.shops else {
                return error(
                    StatusCode::NOT_FOUND,
                    "unknown_shop",
                    "no shop of that id",
                    rid,
                );
            };
            match registry.revoke(id, None, subject).await {
                Ok(Some(record)) => {
                    audit(
                        "shop.revoked",
                        Outcome::Allowed,
                        &[("shop_id", json!(id)), ("app", json!(record.app))],
                    );
                    reply(
                        StatusCode::OK,
                        json!({"shop_id": id, "status": record.status.as_str()}),
                        rid,
                    )
                }
                Ok(None) => {
                    audit(
                        "shop.revoked",
                        Outcome::Refused,
                        &[("shop_id", json!(id)), ("reason", json!("unknown_shop"))],
                    );
                    error(
                        StatusCode::NOT_FOUND,
                        "unknown_shop",
                        "no shop of that id",
                        rid,
                    )
                }
                Err(e) => {
                    tracing::error!(shop = %id, error = %e, "shop revocation could not be stored");
                    audit("shop.revoked", Outcome::Failed, &[("shop_id", json!(id))]);
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "state_unavailable",
                        "the revocation could not be stored; try again",
                        rid,
                    )
                }
            }
        }
        _ => {
            audit(
                "admin.shops",
                Outcome::Refused,
                &[("reason", json!("no_route")), ("path", json!(path))],
            );
            error(
                StatusCode::NOT_FOUND,
                "no_route",
                "unknown admin endpoint",
                rid,
            )
        }
    }
}

/// The request body, at most [`MAX_BODY`] bytes; `None` when larger or unreadable.
async fn read_body(session: &mut ServerSession) -> Option<Bytes> {
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return None;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Some(body.freeze()),
            Err(_) => return None,
        }
    }
}

/// Configured shops and those authorized at runtime, by id; never a token.
fn list(gateway: &Gateway) -> Vec<Value> {
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
