//! The admin listener's HTTP app: authenticates every request (client certificate, MFA token
//! with the admin scope, not blocked), dispatches it to its resource by method and path, and
//! records it in the audit log (allowed or refused) before answering.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::Value;

use super::request::{AdminRequest, Done, MAX_BODY};
use super::{audit, blocks, dead_letters, reload, shops, status};
use crate::audit::{AuditEvent, Outcome};
use crate::auth::credentials::bearer_token;
use crate::auth::{AuthError, Identity};
use crate::error::GatewayError;
use crate::gateway::auth::AdminGate;
use crate::gateway::state::Gateway;
use crate::telemetry::metrics::metrics;
use crate::telemetry::request_id;
use crate::transport::peer_certificate;

pub struct AdminApp {
    pub gateway: Arc<Gateway>,
}

fn reply(status: StatusCode, body: &Value, rid: &str) -> Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    let b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .header("x-request-id", rid)
        .header("content-length", body.len());
    // Only a header we built could fail here; never let that turn a refusal into an empty 200.
    b.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(Vec::new());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// Admin answers are never cached (the error type adds its own headers).
fn error_reply(err: &GatewayError, rid: &str) -> Response<Vec<u8>> {
    let mut res = err.to_http_response(rid);
    res.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    res
}

impl AdminApp {
    /// Token, signature, MFA, admin scope and client certificate: all must hold.
    async fn authenticate(
        &self,
        session: &ServerSession,
        gate: &AdminGate,
        cert_verified: bool,
    ) -> Result<Arc<Identity>, AuthError> {
        let token =
            bearer_token(&session.req_header().headers)?.ok_or(AuthError::MissingCredentials)?;
        let identity = gate.verifier.verify(token).await?;
        gate.access.check(&identity, cert_verified)?;
        Ok(identity)
    }

    /// Records `event` and waits for it; when it cannot be stored, the answer says so (the
    /// record stays queued and is retried).
    async fn audited(
        &self,
        event: AuditEvent,
        answer: Response<Vec<u8>>,
        rid: &str,
    ) -> Response<Vec<u8>> {
        match self.gateway.audit.record_now(event).await {
            Ok(_) => answer,
            Err(_) => error_reply(
                &GatewayError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_unavailable",
                    "the audit log cannot be written right now; an action may have been carried out and its record is retried",
                ),
                rid,
            ),
        }
    }

    /// Reads the body, at most [`MAX_BODY`] bytes.
    async fn body(session: &mut ServerSession) -> Result<Bytes, GatewayError> {
        let mut body = BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(GatewayError::body_too_large(MAX_BODY));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body.freeze()),
                Err(_) => {
                    return Err(GatewayError::bad_request(
                        "invalid_body",
                        "the request body could not be read",
                    ));
                }
            }
        }
    }
}

/// Runs the handler for `method` and `path`: the audit action it is recorded under, and its
/// result. New resources add a line here and a file next to this one.
/// `GET /admin/policy`: the policy report of the running config.
fn policy(req: &AdminRequest<'_>) -> Result<Done, GatewayError> {
    req.no_body()?;
    Ok(Done::ok(crate::policy::admin::report_json(
        &req.snapshot.config,
    )))
}

async fn dispatch(
    method: &str,
    path: &str,
    req: &AdminRequest<'_>,
) -> (&'static str, Result<Done, GatewayError>) {
    let rest = path.strip_prefix("/admin/").unwrap_or("");
    let segments: Vec<&str> = rest.split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["status"]) => ("admin.status", status::get(req).await),
        ("GET", ["blocks"]) => ("admin.blocks.list", blocks::list(req).await),
        ("POST", ["blocks"]) => ("admin.blocks.add", blocks::add(req).await),
        ("DELETE", ["blocks", id]) => ("admin.blocks.remove", blocks::remove(req, id).await),
        ("GET", ["webhooks", "dead-letters"]) => {
            ("admin.dead_letters.list", dead_letters::list(req).await)
        }
        ("POST", ["webhooks", "dead-letters", id, "replay"]) => (
            "admin.dead_letters.replay",
            dead_letters::replay(req, id).await,
        ),
        ("POST", ["reload"]) => ("admin.reload", reload::post(req).await),
        ("GET", ["audit"]) => ("admin.audit.read", audit::get(req).await),
        ("GET", ["policy"]) => ("admin.policy", policy(req)),
        ("POST", ["shops", "authorize"]) => ("admin.shops.authorize", shops::authorize(req).await),
        ("GET", ["shops"]) => ("admin.shops.list", shops::list(req)),
        ("POST", ["shops", id, "revoke"]) => ("admin.shops.revoke", shops::revoke(req, id).await),
        _ => (
            "admin.unknown",
            Err(GatewayError::new(
                StatusCode::NOT_FOUND,
                "no_route",
                "unknown admin endpoint",
            )),
        ),
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let rid = request_id::from_header(
            session
                .req_header()
                .headers
                .get(request_id::HEADER)
                .map(|v| v.as_bytes()),
        );
        let method = session.req_header().method.as_str().to_owned();
        let path = session.req_header().uri.path().to_owned();
        // Recorded as sent, but bounded: a refused caller chooses it.
        let logged_path: String = path.chars().take(256).collect();
        let query = session.req_header().uri.query().map(str::to_owned);
        // What every record of this request carries. The path holds ids only, never secrets.
        let base = |action: &'static str, outcome: Outcome| {
            AuditEvent::new(action, outcome)
                .detail("method", method.clone())
                .detail("path", logged_path.clone())
                .detail("request_id", rid.clone())
        };
        let snapshot = self.gateway.snapshot();
        let Some(gate) = &snapshot.admin else {
            let err = GatewayError::new(
                StatusCode::NOT_FOUND,
                "no_admin",
                "the admin API is not configured",
            );
            return error_reply(&err, &rid);
        };
        let cert_verified = peer_certificate(session).is_some();
        let identity = match self.authenticate(session, gate, cert_verified).await {
            Ok(identity) => identity,
            Err(e) => {
                metrics()
                    .auth_failures
                    .with_label_values(&["admin", e.reason()])
                    .inc();
                let err = GatewayError::new(
                    e.status(),
                    "invalid_credentials",
                    "administrative access requires a client certificate and an MFA token with the admin scope",
                )
                .with_header("www-authenticate", e.www_authenticate());
                let event = base("admin.refused", Outcome::Refused)
                    .detail("reason", e.reason())
                    .detail("client_certificate", cert_verified);
                return self.audited(event, error_reply(&err, &rid), &rid).await;
            }
        };
        let runtime_blocked = {
            let list = self.gateway.state.blocks.current();
            let client_ip = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            list.blocks(&identity, client_ip, self.gateway.clock.unix_seconds())
        };
        if snapshot.is_blocked(&identity) || runtime_blocked {
            metrics()
                .auth_failures
                .with_label_values(&["admin", "caller_blocked"])
                .inc();
            let err = GatewayError::new(
                StatusCode::FORBIDDEN,
                "caller_blocked",
                "this caller is blocked",
            );
            let event = base("admin.refused", Outcome::Refused)
                .actor(identity.subject())
                .detail("reason", "caller_blocked");
            return self.audited(event, error_reply(&err, &rid), &rid).await;
        }
        let body = match Self::body(session).await {
            Ok(body) => body,
            Err(err) => {
                let event = base("admin.refused", Outcome::Refused)
                    .actor(identity.subject())
                    .detail("reason", err.code);
                return self.audited(event, error_reply(&err, &rid), &rid).await;
            }
        };
        let req = AdminRequest {
            gateway: &self.gateway,
            snapshot: &snapshot,
            identity: &identity,
            request_id: &rid,
            query: query.as_deref(),
            body,
        };
        let (action, result) = dispatch(&method, &path, &req).await;
        match result {
            Ok(done) => {
                let mut event = base(action, Outcome::Allowed).actor(identity.subject());
                if done.status.is_client_error() {
                    event.outcome = Outcome::Refused;
                }
                for (k, v) in done.detail {
                    event.detail.insert(k, v);
                }
                event = event.detail("status", done.status.as_u16());
                let answer = reply(done.status, &done.body, &rid);
                self.audited(event, answer, &rid).await
            }
            Err(err) => {
                let outcome = if err.status.is_server_error() {
                    Outcome::Failed
                } else {
                    Outcome::Refused
                };
                let event = base(action, outcome)
                    .actor(identity.subject())
                    .detail("status", err.status.as_u16())
                    .detail("error", err.code);
                self.audited(event, error_reply(&err, &rid), &rid).await
            }
        }
    }
}
