//! TikTok webhooks in: the authenticate stage reads the raw body (bounded) and verifies TikTok's
//! signature over it before anything parses it (`verify`); this handler records its dedupe key
//! and stores the event in one step of the state store, then answers 200 (a replay within
//! `dedup_ttl` is answered 200 and stored nowhere). Delivery to the order service happens
//! from the queue, so TikTok gets its answer in time even when the order service is down, and an
//! acknowledged event is never lost (policy §9).

use bytes::Bytes;
use http::StatusCode;
use pingora::proxy::Session;

use crate::error::GatewayError;
use crate::gateway::route::{CompiledRoute, WebhookPlan, WebhookVerifier};
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
    let path = route
        .config
        .rewrite_path
        .as_deref()
        .unwrap_or(req.session.req_header().uri.path());
    let event = IncomingEvent {
        route: route.config.name.clone(),
        target: format!("{}{path}", plan.delivery_origin),
        dedup_key: key,
        request_id: req.ctx.request_id.clone(),
        body: raw,
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
    Ok(Reply::json(
        StatusCode::OK,
        Bytes::from_static(ACK_BODY.as_bytes()),
    ))
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
