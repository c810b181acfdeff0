//! The request-body stage: the ceiling and buffering. A body the pipeline must see whole (to sign it, inspect
//! it, or because its length is not declared) is read completely before the upstream is contacted,
//! so an oversized body is refused with 413 and the upstream never sees any of it.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::stages::Request;
use crate::error::GatewayError;
use crate::gateway::route::{CompiledRoute, RouteKind};
use crate::inspect::{BodyFraming, BodyRate, BodyWatch, HeadVerdict, InspectError};

/// Pingora replays a pre-read body to the upstream from its retry buffer, which holds 64 KiB.
/// Bodies that must be read whole first are therefore limited to this size.
pub const MAX_BUFFERED_BODY: usize = 64 * 1024;

/// The body stage (7th). The ceiling is always on (a declared length over it was refused with the
/// head). A body the gateway must see whole is read here, before any upstream is contacted: a
/// JSON body (checked for well-formedness and depth), a body of undeclared length on a proxied
/// route, and every body the gateway sends itself (TikTok egress signs the exact bytes).
/// Webhook bodies were read by the authenticate stage to verify their signature.
pub async fn read(
    req: &mut Request<'_>,
    route: &CompiledRoute,
    verdict: &HeadVerdict,
) -> Result<(), GatewayError> {
    if !verdict.expects_body {
        return Ok(());
    }
    let max_body = route.config.inspection.max_body();
    let json = route.config.inspection.json_body && super::inspect_stage::is_json_body(req.session);
    if let Some(read) = &req.ctx.body {
        // Read already (webhooks, to verify the signature): the JSON check still applies.
        return if json {
            check_json(route, read)
        } else {
            Ok(())
        };
    }
    let proxied = matches!(route.kind, RouteKind::Proxy);
    let declared = matches!(verdict.framing, BodyFraming::Length(_));
    if proxied && !json && declared {
        // Streamed to the upstream; the watch guards the ceiling against framing that lies, and
        // refuses bodies sent too slowly.
        req.ctx.body_watch = Some(BodyWatch::new(
            max_body as u64,
            req.ctx.body_rate,
            std::time::Instant::now(),
        ));
        return Ok(());
    }
    // Pingora replays a proxied body from its retry buffer; a body the gateway sends itself is
    // held here and may use the route's whole ceiling.
    let ceiling = if proxied {
        max_body.min(MAX_BUFFERED_BODY)
    } else {
        max_body
    };
    let whole = read_whole(req.session, ceiling, req.ctx.body_rate).await?;
    if json {
        check_json(route, &whole)?;
    }
    req.ctx.body = Some(whole);
    Ok(())
}

/// Well-formed JSON within the route's depth; an empty body has nothing to check.
fn check_json(route: &CompiledRoute, body: &[u8]) -> Result<(), GatewayError> {
    if body.is_empty() {
        return Ok(());
    }
    crate::inspect::check_json(
        body,
        body.len(),
        route.config.inspection.limits.max_json_depth,
    )
    .map_err(|e| GatewayError::from(InspectError::from(e)))
}

/// Reads the whole body, refusing it as soon as it passes `limit` (413) or its average rate
/// falls below the listener's floor (408).
pub async fn read_whole(
    session: &mut Session,
    limit: usize,
    rate: BodyRate,
) -> Result<Bytes, GatewayError> {
    session.enable_retry_buffering();
    let mut watch = BodyWatch::new(limit as u64, rate, std::time::Instant::now());
    let mut buf = BytesMut::new();
    loop {
        let chunk = session
            .read_request_body()
            .await
            .map_err(|e| match e.etype() {
                // The gap between two reads passed the listener's body timeout: a slow client.
                pingora::ErrorType::ReadTimedout => GatewayError::from(InspectError::BodyTooSlow),
                _ => {
                    GatewayError::bad_request("body_read_failed", "could not read the request body")
                }
            })?;
        let Some(chunk) = chunk else { break };
        match watch.on_chunk(chunk.len(), std::time::Instant::now()) {
            Ok(()) => {}
            Err(InspectError::BodyTooLarge) => return Err(GatewayError::body_too_large(limit)),
            Err(e) => return Err(GatewayError::from(e)),
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
