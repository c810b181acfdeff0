//! TikTok Shop webhooks in: read the raw body (bounded), verify TikTok's signature over it before
//! anything parses it, store it durably, then answer 200. Delivery to the order service happens
//! from the queue, so TikTok gets its answer in time even when the order service is down, and an
//! acknowledged event is never lost (policy §9).

use http::StatusCode;
use pingora::proxy::Session;

use super::body;
use super::ctx::RequestCtx;
use crate::config::{Route, WebhookAuth};
use crate::error::GatewayError;
use crate::gateway::state::{Gateway, Runtime};
use crate::telemetry::metrics::metrics;
use crate::tiktok::developer_webhook::DeveloperWebhookError;
use crate::tiktok::queue::NewEvent;
use crate::tiktok::webhook::{WebhookError, dedup_key};

/// TikTok expects this body on success.
pub const ACK_BODY: &str = r#"{"code":0,"message":"success"}"#;

pub async fn accept(
    gateway: &Gateway,
    runtime: &Runtime,
    route: &Route,
    scheme: WebhookAuth<'_>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let Some(services) = &gateway.tiktok.webhooks else {
        return Err(GatewayError::internal(
            "webhook route without webhook services",
        ));
    };
    // Not forwarded through the proxy, so the route's own ceiling applies, not the replay buffer's.
    let raw = body::read_whole(session, route.limits.max_body, ctx.body_rate).await?;
    if let Err(reason) = verify(runtime, scheme, session, &raw) {
        metrics()
            .auth_failures
            .with_label_values(&[route.name.as_str(), reason])
            .inc();
        ctx.reason = Some(reason);
        return Err(GatewayError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "the webhook signature does not verify",
        ));
    }
    // Forwards carry buyer data by design; on a route not cleared for it, say so (never block:
    // an acknowledged webhook must not be lost).
    if !super::privacy_stage::cleared(route) {
        super::privacy_stage::leaked(&gateway.privacy.load(), route, &ctx.request_id, &raw);
    }
    let key = dedup_key(&raw);
    let event = NewEvent {
        route: route.name.clone(),
        target: delivery_target(runtime, route, session.req_header().uri.path())?,
        dedup_key: key.clone(),
        request_id: ctx.request_id.clone(),
        body: raw,
    };
    // Stored before it is marked seen: a crash in between can duplicate, never lose.
    let held = services.queue.enqueue_held(event).await.map_err(|e| {
        tracing::error!(route = %route.name, error = %e, "webhook queue write failed");
        // TikTok retries a non-200, so refusing is safe; acknowledging would lose the event.
        GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unavailable",
            "the webhook could not be stored",
        )
    })?;
    match services.replay.first_seen(&key, services.dedup_ttl).await {
        Ok(true) => {
            held.release();
            ctx.reason = Some("accepted");
        }
        Ok(false) => {
            if let Err(e) = held.discard().await {
                tracing::warn!(route = %route.name, error = %e, "could not drop a duplicate webhook; it may be delivered twice");
            }
            ctx.reason = Some("duplicate");
        }
        Err(e) => {
            // Delivering a possible duplicate beats losing an event; the event id lets the
            // receiver deduplicate.
            tracing::warn!(route = %route.name, error = %e, "replay cache unavailable; delivering without dedup");
            held.release();
            ctx.reason = Some("accepted_unchecked");
        }
    }
    Ok(())
}

/// Checks the signature of the scheme the route names, before anything parses the body. The two
/// TikTok schemes have separate verifiers and are never mixed.
fn verify(
    runtime: &Runtime,
    scheme: WebhookAuth<'_>,
    session: &Session,
    raw: &[u8],
) -> Result<(), &'static str> {
    let headers = &session.req_header().headers;
    match scheme {
        WebhookAuth::Shop(app) => {
            let verifier = runtime.webhook_verifiers.get(app).ok_or("unknown_app")?;
            let header = headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            verifier.verify(header, raw).map_err(|e| match e {
                WebhookError::Missing => "missing_credentials",
                WebhookError::Malformed => "malformed",
                WebhookError::Mismatch => "bad_signature",
            })
        }
        WebhookAuth::Developer(app) => {
            let verifier = runtime.developer_verifiers.get(app).ok_or("unknown_app")?;
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
    }
}

/// Where the queued event is delivered: the route's upstream, first target, rewritten path.
fn delivery_target(runtime: &Runtime, route: &Route, path: &str) -> Result<String, GatewayError> {
    let upstream = runtime
        .config
        .upstreams
        .get(&route.upstream)
        .ok_or_else(|| GatewayError::internal("route names an unknown upstream"))?;
    let target = upstream
        .targets
        .first()
        .ok_or_else(|| GatewayError::internal("upstream has no target"))?;
    let path = route.rewrite_path.as_deref().unwrap_or(path);
    Ok(match &upstream.tls {
        // TLS is verified against the SNI name, so the URL names it.
        Some(tls) => format!(
            "{}{path}",
            crate::tiktok::delivery::https_origin(&tls.sni, target.port)
        ),
        None if target.host.contains(':') => {
            format!("http://[{}]:{}{path}", target.host, target.port)
        }
        None => format!("http://{}:{}{path}", target.host, target.port),
    })
}
