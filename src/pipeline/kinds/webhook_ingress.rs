//! TikTok webhooks in: the authenticate stage reads the raw body (bounded) and verifies TikTok's
//! signature over it before anything parses it (`verify`); this handler records its dedupe key
//! and stores the event in one step of the state store, then answers 200 (a replay within
//! `dedup_ttl` is answered 200 and stored nowhere). Delivery to the order service happens
//! from the queue, so TikTok gets its answer in time even when the order service is down, and an
//! acknowledged event is never lost (policy §9).

use bytes::Bytes;
use http::StatusCode;
use pingora::proxy::Session;

use crate::audit::{AuditEvent, Outcome};
use crate::config::WebhookAuth;
use crate::error::GatewayError;
use crate::gateway::route::{CompiledRoute, WebhookPlan, WebhookVerifier};
use crate::gateway::state::Gateway;
use crate::pipeline::ctx::RequestCtx;
use crate::pipeline::privacy_stage;
use crate::pipeline::stages::{Reply, Request};
use crate::state::Accepted;
use crate::telemetry::metrics::metrics;
use crate::telemetry::readiness::Weight;
use crate::tiktok::developer_webhook::DeveloperWebhookError;
use crate::tiktok::queue::IncomingEvent;
use crate::tiktok::webhook::{WebhookError, dedup_key};

/// TikTok expects this body on success.
pub const ACK_BODY: &str = r#"{"code":0,"message":"success"}"#;

/// Stores a verified event durably (deduplicated within `dedup_ttl`) and acknowledges it.
pub async fn accept(
    req: &mut Request<'_>,
    route: &CompiledRoute,
    plan: &WebhookPlan,
) -> Result<Reply, GatewayError> {
    let Some(services) = &req.gateway.tiktok.webhooks else {
        return Err(GatewayError::internal(
            "webhook route without webhook services",
        ));
    };
    let raw = req
        .ctx
        .body
        .take()
        .ok_or_else(|| GatewayError::internal("webhook body not read"))?;
    // Forwards carry buyer data by design; on a route not cleared for it, say so (never block:
    // an acknowledged webhook must not be lost).
    if !privacy_stage::cleared(route) {
        privacy_stage::leaked(
            &req.gateway.privacy.load(),
            route,
            &req.ctx.request_id,
            &raw,
        );
    }
    let key = dedup_key(&raw);
    let event_body = raw.clone();
    let path = route
        .config
        .rewrite_path
        .as_deref()
        .unwrap_or(req.session.req_header().uri.path());
    let event = IncomingEvent {
        route: route.config.name.clone(),
        target: format!("{}{path}", plan.delivery_origin),
        dedup_key: key,
        request_id: req.ctx.request_id.to_string(),
        body: raw,
        traceparent: req
            .ctx
            .trace
            .as_ref()
            .and_then(crate::telemetry::otel::traceparent),
    };
    // Committed before the 200: a crash afterwards loses nothing, and a replay is recognised.
    let accepted = services.queue.accept(event).await.map_err(|e| {
        tracing::error!(route = %route.name, error = %e, "webhook could not be stored");
        // A backend failure makes the gateway not ready at once (the readiness probe clears it
        // when the store answers again); a refused event (too large) says nothing about it.
        if e.is_backend_failure() {
            req.gateway.readiness.report(
                "state_backend",
                Weight::Blocking,
                Err(format!("state backend {}", e.kind())),
            );
        }
        // TikTok retries a non-200, so refusing is safe; acknowledging would lose the event.
        GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unavailable",
            "the webhook could not be stored",
        )
        .with_header("retry-after", "5")
    })?;
    req.ctx.reason = Some(match accepted {
        Accepted::Stored(_) => "accepted",
        Accepted::Duplicate => "duplicate",
    });
    // Authorization events act on the gateway itself too. A replay runs this again (revoking is
    // idempotent), so a failure answers 503 and TikTok's retry finishes it.
    if let Some(WebhookAuth::Shop(app)) = route.config.auth.webhook() {
        authorization_event(req.gateway, route, app, &event_body).await?;
    }
    Ok(Reply::json(
        StatusCode::OK,
        Bytes::from_static(ACK_BODY.as_bytes()),
    ))
}

/// TikTok Shop webhook type 6 (the seller revoked the authorization): the shop is marked revoked
/// and its tokens deleted, so egress refuses it. Type 7 (the authorization expires soon): a metric
/// and an audit record. Other types, and bodies without a type or shop, do nothing here.
async fn authorization_event(
    gateway: &Gateway,
    route: &CompiledRoute,
    app: &str,
    body: &[u8],
) -> Result<(), GatewayError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(rename = "type")]
        kind: Option<i64>,
        shop_id: Option<String>,
    }
    let Ok(Envelope {
        kind: Some(kind @ (6 | 7)),
        shop_id: Some(shop),
    }) = serde_json::from_slice::<Envelope>(body)
    else {
        return Ok(());
    };
    let actor = format!("tiktok-webhook:{app}");
    if kind == 7 {
        crate::tiktok::shops::authorization_expiring()
            .with_label_values(&[shop.as_str()])
            .inc();
        gateway.audit.record(
            AuditEvent::new("shop.authorization_expiring", Outcome::Noted)
                .actor(actor)
                .detail("shop_id", shop)
                .detail("app", app),
        );
        return Ok(());
    }
    let Some(registry) = &gateway.tiktok.shops else {
        return Ok(());
    };
    match registry.revoke(&shop, Some(app), &actor).await {
        Ok(found) => {
            gateway.audit.record(
                AuditEvent::new("shop.revoked", Outcome::Allowed)
                    .actor(actor)
                    .detail("shop_id", shop)
                    .detail("app", app)
                    .detail("known", found.is_some()),
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(route = %route.name, error = %e, "shop revocation could not be stored");
            gateway.audit.record(
                AuditEvent::new("shop.revoked", Outcome::Failed)
                    .actor(actor)
                    .detail("shop_id", shop)
                    .detail("app", app),
            );
            Err(GatewayError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "state_unavailable",
                "the revocation could not be stored",
            )
            .with_header("retry-after", "5"))
        }
    }
}

/// The authenticate stage for webhook routes: the signature of the route's scheme over the raw
/// body, checked before anything parses it. The two TikTok schemes are never mixed.
pub fn verify(
    plan: &WebhookPlan,
    route: &str,
    session: &Session,
    raw: &[u8],
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let headers = &session.req_header().headers;
    let checked = match &plan.verifier {
        WebhookVerifier::Shop(verifier) => {
            let header = headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            verifier.verify(header, raw).map_err(|e| match e {
                WebhookError::Missing => "missing_credentials",
                WebhookError::Malformed => "malformed",
                WebhookError::Mismatch => "bad_signature",
            })
        }
        WebhookVerifier::Developer(verifier) => {
            let header = headers
                .get(crate::tiktok::developer_webhook::SIGNATURE_HEADER)
                .map(|v| v.as_bytes());
            verifier.verify(header, raw).map_err(|e| match e {
                DeveloperWebhookError::Missing => "missing_credentials",
                DeveloperWebhookError::Malformed => "malformed",
                DeveloperWebhookError::Stale => "expired",
                DeveloperWebhookError::Mismatch => "bad_signature",
            })
        }
    };
    checked.map_err(|reason| {
        metrics()
            .auth_failures
            .with_label_values(&[route, reason])
            .inc();
        ctx.reason = Some(reason);
        GatewayError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "the webhook signature does not verify",
        )
    })
}
