//! The admin listener's HTTP app. `GET /admin/status` reports the running config (version, hash,
//! routes), the JWT key ids known per issuer and the uptime.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

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

fn reply(
    status: StatusCode,
    body: serde_json::Value,
    extra: &[(&str, &str)],
    rid: &str,
) -> Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .header("x-request-id", rid)
        .header("content-length", body.len());
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    // Only a header we built could fail here; never let that turn a refusal into an empty 200.
    b.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(Vec::new());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

fn error(
    status: StatusCode,
    code: &'static str,
    message: &str,
    rid: &str,
    extra: &[(&'static str, &str)],
) -> Response<Vec<u8>> {
    let mut err = GatewayError::new(status, code, message);
    for (name, value) in extra {
        err = err.with_header(name, *value);
    }
    err.to_http_response(rid)
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
        let snapshot = self.gateway.snapshot();
        let Some(gate) = &snapshot.admin else {
            return error(
                StatusCode::NOT_FOUND,
                "no_admin",
                "the admin API is not configured",
                &rid,
                &[],
            );
        };
        let cert_verified = peer_certificate(session).is_some();
        let identity = match self.authenticate(session, gate, cert_verified).await {
            Ok(identity) => identity,
            Err(e) => {
                metrics()
                    .auth_failures
                    .with_label_values(&["admin", e.reason()])
                    .inc();
                tracing::warn!(target: "audit", event = "admin_refused", reason = e.reason(), request_id = %rid);
                return error(
                    e.status(),
                    "invalid_credentials",
                    "administrative access requires a client certificate and an MFA token with the admin scope",
                    &rid,
                    &[("www-authenticate", &e.www_authenticate())],
                );
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
            tracing::warn!(target: "audit", event = "admin_refused", reason = "caller_blocked", request_id = %rid);
            return error(
                StatusCode::FORBIDDEN,
                "caller_blocked",
                "this caller is blocked",
                &rid,
                &[],
            );
        }
        tracing::info!(target: "audit", event = "admin_access", subject = identity.subject(), request_id = %rid);
        if super::shops::handles(session.req_header().uri.path()) {
            return super::shops::handle(&self.gateway, session, &identity, &rid).await;
        }
        let req = session.req_header();
        match (req.method.as_str(), req.uri.path()) {
            ("GET", "/admin/status") => {
                tracing::info!(target: "audit", event = "admin_status", request_id = %rid);
                let config = &snapshot.config;
                let depth = match &self.gateway.tiktok.webhooks {
                    Some(w) => w.queue.refresh_stats().await.ok().map(|s| s.live),
                    None => None,
                };
                let issuers: serde_json::Map<String, serde_json::Value> = self
                    .gateway
                    .jwt
                    .iter()
                    .map(|(name, v)| (name.clone(), json!(v.store().key_ids())))
                    .collect();
                reply(
                    StatusCode::OK,
                    json!({
                        "config": { "version": config.version, "hash": config.hash, "source": config.source.display().to_string() },
                        "routes": config.routes.iter().map(|r| json!({"name": r.name, "listener": r.listener, "upstream": r.upstream})).collect::<Vec<_>>(),
                        "jwt_key_ids": issuers,
                        "uptime_seconds": self.gateway.started.elapsed().as_secs(),
                        "webhook_queue_depth": depth,
                        "state_backend": self.gateway.state.health.backend(),
                    }),
                    &[],
                    &rid,
                )
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "no_route",
                "unknown admin endpoint",
                &rid,
                &[],
            ),
        }
    }
}
