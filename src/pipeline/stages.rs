//! The one ordered list of stages every route kind runs. This function is the only place that
//! decides the order; a new stage is one more line here.
//!
//! route -> inspect head -> authenticate -> authorize -> kill switch -> rate-limit -> body ->
//! kind handler (proxy | TikTok egress | webhook ingress) -> inspect/mask response.
//! The access log and metrics are written in the `logging` phase for every request.
//!
//! Each stage returns `Ok(())` to continue or `Err(GatewayError)` to answer now; the kind handler
//! returns what ends the request.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::kinds::{self, Handled};
use super::{auth_stage, body, inspect_stage, limit_stage, privacy_stage};
use crate::error::GatewayError;
use crate::gateway::route::{Authenticator, CompiledRoute, RouteKind};
use crate::gateway::router::RouteMatch;
use crate::gateway::snapshot::Snapshot;
use crate::gateway::state::Gateway;

/// How the stages ended a request.
pub enum Flow {
    /// Hand the request to Pingora's upstream machinery (proxied routes).
    Proxy,
    /// A complete response the gateway writes itself.
    Respond(Reply),
}

/// A complete response the gateway writes itself.
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn json(status: StatusCode, body: Bytes) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body,
        }
    }
}

/// What every stage sees.
pub struct Request<'a> {
    pub gateway: &'a Gateway,
    pub snapshot: &'a Snapshot,
    pub listener: usize,
    pub session: &'a mut Session,
    pub ctx: &'a mut RequestCtx,
}

/// Runs the stages in order.
pub async fn run(req: &mut Request<'_>) -> Result<Flow, GatewayError> {
    let route = route(req)?;
    let verdict = inspect_stage::check_head(&route.config.inspection, req.session)?;
    authenticate(req, &route).await?;
    authorize(req, &route)?;
    kill_switch(req, &route)?;
    rate_limit(req, &route).await?;
    body::read(req, &route, &verdict).await?;
    let handled = kinds::handle(req, &route).await?;
    respond(req, &route, handled)
}

/// Route: framing and path first, then the listener's hosts, then the match.
fn route(req: &mut Request<'_>) -> Result<Arc<CompiledRoute>, GatewayError> {
    inspect_stage::check_raw_head(req.session)?;
    // Listener indexes come from the same config as the snapshot; a miss is a bug, not a guess.
    let policy = req
        .snapshot
        .listeners
        .get(req.listener)
        .ok_or_else(|| GatewayError::internal("request on an unknown listener"))?;
    inspect_stage::origin_form_target(&policy.hosts, req.session)?;
    inspect_stage::check_host(&policy.hosts, req.session)?;
    let head = req.session.req_header();
    let path = inspect_stage::normalized_path(head.uri.path())?;
    let host = inspect_stage::request_host(head);
    let route = match req
        .snapshot
        .router
        .find(req.listener, host, &head.method, &path)
    {
        RouteMatch::Found(route) => route.clone(),
        RouteMatch::NotFound => return Err(GatewayError::not_found()),
        RouteMatch::MethodNotAllowed(allow) => {
            return Err(GatewayError::method_not_allowed(allow));
        }
    };
    req.ctx.route = Some(route.clone());
    Ok(route)
}

/// Authenticate: credentials in the head, or a TikTok signature over the raw body (read here,
/// bounded by the route's ceiling, before anything parses it).
async fn authenticate(req: &mut Request<'_>, route: &CompiledRoute) -> Result<(), GatewayError> {
    let identity = match (&route.auth, &route.kind) {
        (Authenticator::Caller(requirement), _) => {
            auth_stage::authenticate(requirement, &route.name, req.session, req.ctx).await?
        }
        (Authenticator::WebhookSignature, RouteKind::WebhookIngress(plan)) => {
            // Boxed, like the kind handlers: only webhook routes carry this body read's state.
            let raw = Box::pin(body::read_whole(
                req.session,
                route.config.inspection.max_body(),
                req.ctx.body_rate,
            ))
            .await?;
            kinds::webhook_ingress::verify(plan, &route.name, req.session, &raw, req.ctx)
                .inspect_err(|_| {
                    // Counted per minute and route: a flood of forgeries is one record a minute.
                    req.gateway.audit.tally(
                        "webhook.signature_failed",
                        crate::audit::Outcome::Refused,
                        &route.name,
                    );
                })?;
            req.ctx.body = Some(raw);
            plan.identity.clone()
        }
        (Authenticator::WebhookSignature, _) => {
            return Err(GatewayError::internal(
                "signature auth on a non-webhook route",
            ));
        }
    };
    req.ctx.identity = Some(identity);
    Ok(())
}

/// Authorize: the route's required scopes.
fn authorize(req: &mut Request<'_>, route: &CompiledRoute) -> Result<(), GatewayError> {
    if let (Authenticator::Caller(requirement), Some(identity)) =
        (&route.auth, req.ctx.identity.clone())
    {
        auth_stage::authorize(requirement, &route.name, &identity, req.ctx)?;
    }
    Ok(())
}

/// Kill switch: a blocked caller is refused whatever its credentials, by the YAML list or by
/// the runtime block list in the state store (subject, API-key name, client address).
fn kill_switch(req: &mut Request<'_>, route: &CompiledRoute) -> Result<(), GatewayError> {
    let Some(identity) = &req.ctx.identity else {
        return Ok(());
    };
    let blocked = req.snapshot.is_blocked(identity) || {
        let list = req.gateway.state.blocks.current();
        !list.is_empty() && {
            let client_ip = list.has_networks().then(|| {
                let peer = req
                    .session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip())
                    .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
                req.snapshot
                    .config
                    .trusted_proxies
                    .client_ip_from_headers(peer, &req.session.req_header().headers)
            });
            list.blocks(identity, client_ip, req.gateway.clock.unix_seconds())
        }
    };
    if blocked {
        req.ctx.reason = Some("caller_blocked");
        return Err(auth_stage::blocked(&route.name));
    }
    Ok(())
}

/// Rate-limit: the route's limits.
async fn rate_limit(req: &mut Request<'_>, route: &CompiledRoute) -> Result<(), GatewayError> {
    if route.limit_ids.is_empty() {
        return Ok(());
    }
    let limiter = req.snapshot.limiter().map_err(|e| {
        tracing::error!(error = %e, route = %route.name, "rate limiter unavailable");
        GatewayError::internal("rate limiter unavailable")
    })?;
    let headers = limit_stage::check(limiter, route, req.snapshot, req.session, req.ctx)
        .await
        .inspect_err(|_| req.ctx.reason = Some("rate_limited"))?;
    req.ctx.rate_headers = headers;
    Ok(())
}

/// Respond: what the kind handler produced, after response inspection where the gateway holds
/// the whole body.
fn respond(
    req: &mut Request<'_>,
    route: &CompiledRoute,
    handled: Handled,
) -> Result<Flow, GatewayError> {
    Ok(match handled {
        Handled::Proxy => Flow::Proxy,
        Handled::Answer(reply) => Flow::Respond(reply),
        Handled::Upstream(mut reply) => {
            let identity = req
                .ctx
                .identity
                .as_deref()
                .ok_or_else(|| GatewayError::internal("no identity after authentication"))?;
            let engine = req.gateway.privacy.load();
            reply.body =
                privacy_stage::outgoing(&engine, route, identity, &req.ctx.request_id, reply.body)
                    .inspect_err(|e| {
                        if e.code == privacy_stage::PII_BLOCKED {
                            // Per minute and route, like signature failures: a leaking upstream
                            // cannot fill the log.
                            req.gateway.audit.tally(
                                "privacy.pii_blocked",
                                crate::audit::Outcome::Refused,
                                &route.name,
                            );
                        }
                    })?;
            Flow::Respond(reply)
        }
    })
}
