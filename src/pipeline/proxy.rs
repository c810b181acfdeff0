//! The Pingora `ProxyHttp` implementation. This file decides the order of the stages; each stage
//! lives in its own module and answers `Ok(())` (continue) or `Err(GatewayError)` (respond now).
//!
//! Order (DESIGN.md): route -> authenticate -> authorize -> rate-limit -> inspect request ->
//! [TikTok: credentials, sign] -> upstream -> inspect/mask response -> log.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use super::answer;
use super::body::{self, DeclaredBody, MAX_BUFFERED_BODY};
use super::ctx::RequestCtx;
use super::inspect_stage;
use super::webhook_ingress;
use super::{auth_stage, limit_stage, tiktok_egress};
use crate::error::GatewayError;
use crate::gateway::router::RouteMatch;
use crate::gateway::state::Gateway;
use crate::telemetry::access_log::AccessRecord;
use crate::telemetry::metrics::metrics;
use crate::telemetry::request_id;
use crate::transport::head_deadline;

/// What the stages decided: hand the request to Pingora's upstream machinery, or answer it here.
pub enum Next {
    Proxy,
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

/// One instance per proxy listener.
pub struct GatewayProxy {
    pub listener: Arc<str>,
    pub gateway: Arc<Gateway>,
}

impl GatewayProxy {
    /// Stages before the upstream is chosen. `Err` ends the request with that answer.
    async fn before_upstream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Next, GatewayError> {
        let runtime = match &ctx.runtime {
            Some(runtime) => runtime.clone(),
            None => {
                let runtime = self.gateway.runtime();
                ctx.runtime = Some(runtime.clone());
                runtime
            }
        };

        // 1. Route: framing and path are checked first, then the host, then the match.
        inspect_stage::check_raw_head(session)?;
        let policy = runtime.listeners.get(&*self.listener);
        if let Some(policy) = policy {
            inspect_stage::check_host(&policy.hosts, session)?;
        }
        let found = {
            let head = session.req_header();
            let path = inspect_stage::normalized_path(head.uri.path())?;
            let host = request_host(session);
            runtime
                .router
                .find(&self.listener, host.as_deref(), &head.method, &path)
        };
        let route = match found {
            RouteMatch::Found(route) => route,
            RouteMatch::NotFound => return Err(GatewayError::not_found()),
            RouteMatch::MethodNotAllowed(allow) => {
                return Err(GatewayError::method_not_allowed(allow));
            }
        };
        ctx.route = Some(route.clone());

        // 5a. Inspect the head against the route (framing, sizes, method, content type, length).
        let verdict = inspect_stage::check_head(&route.inspection, session)?;

        // TikTok webhooks: authenticated by their signature over the raw body, stored durably,
        // answered here; delivery to the order service runs from the queue.
        if let Some(scheme) = route.auth.webhook() {
            webhook_ingress::accept(&self.gateway, &runtime, &route, scheme, session, ctx).await?;
            return Ok(Next::Respond(Reply::json(
                StatusCode::OK,
                Bytes::from_static(webhook_ingress::ACK_BODY.as_bytes()),
            )));
        }

        // 2-3. Authenticate, then authorize against the route's scopes.
        let requirement = runtime
            .auth
            .routes
            .get(&route.name)
            .ok_or_else(|| GatewayError::internal("route without an auth requirement"))?;
        let identity = auth_stage::authenticate(requirement, &route.name, session)
            .await
            .map_err(|(err, reason)| {
                ctx.reason = Some(reason);
                err
            })?;
        // The kill switch: a blocked caller is refused whatever its credentials.
        let blocked = &runtime.config.identity.blocked_subjects;
        if !blocked.is_empty() && blocked.contains(identity.subject()) {
            ctx.reason = Some("caller_blocked");
            return Err(auth_stage::blocked(&route.name));
        }
        ctx.identity = Some(identity.clone());

        // 4. Rate limits.
        if !route.rate_limits.is_empty() {
            let limits = runtime.limits().map_err(|e| {
                tracing::error!(error = %e, route = %route.name, "rate limiter unavailable");
                GatewayError::internal("rate limiter unavailable")
            })?;
            let shop = route.tiktok.as_ref().and_then(|t| {
                session
                    .req_header()
                    .headers
                    .get(t.shop_header.as_str())
                    .and_then(|v| v.to_str().ok())
            });
            let inputs = limit_stage::LimitInputs {
                identity: Some(&identity),
                shop,
                peer: session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip()),
                trusted_proxies: &runtime.config.trusted_proxies,
            };
            let ids = limits
                .by_route
                .get(&route.name)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            ctx.rate_headers = limit_stage::check(&limits.limiter, ids, session, &inputs)
                .await
                .inspect_err(|_| ctx.reason = Some("rate_limited"))?;
        }

        // 6. TikTok egress: credentials injected, signed over the exact bytes, sent by the gateway.
        if let Some(tiktok) = &route.tiktok {
            let mut reply = tiktok_egress::forward(
                &self.gateway,
                &runtime,
                &route,
                tiktok,
                &identity,
                session,
                ctx,
            )
            .await?;
            if let Some(h) = &ctx.rate_headers {
                for (name, value) in [
                    ("ratelimit-policy", Some(&h.policy)),
                    ("ratelimit", h.rate_limit.as_ref()),
                ] {
                    if let Some(Ok(v)) = value.map(|v| v.to_str()) {
                        reply.headers.push((name, v.to_string()));
                    }
                }
            }
            return Ok(Next::Respond(reply));
        }

        // 5b. The body ceiling is always on. A body that must be checked whole (JSON) or whose
        // length is not declared is read before the upstream is contacted.
        let limit = route.limits.max_body;
        if verdict.expects_body {
            let json = route.inspection.json_body && inspect_stage::is_json_body(session);
            let declared = body::declared_body(session)?;
            if let DeclaredBody::Length(n) = declared
                && n > limit
            {
                return Err(GatewayError::body_too_large(limit));
            }
            if json || matches!(declared, DeclaredBody::Unknown) {
                let whole =
                    body::read_whole(session, limit.min(MAX_BUFFERED_BODY), ctx.body_rate).await?;
                if json {
                    crate::inspect::check_json(
                        &whole,
                        whole.len(),
                        route.inspection.limits.max_json_depth,
                    )
                    .map_err(|e| GatewayError::from(crate::inspect::InspectError::from(e)))?;
                }
                ctx.body = Some(whole);
            } else {
                ctx.body_watch = Some(crate::inspect::BodyWatch::new(
                    limit as u64,
                    ctx.body_rate,
                    std::time::Instant::now(),
                ));
            }
        }
        Ok(Next::Proxy)
    }

    async fn respond(&self, session: &mut Session, ctx: &mut RequestCtx, err: &GatewayError) {
        ctx.decision = if err.status.is_server_error() {
            "error"
        } else {
            "refused"
        };
        if ctx.reason.is_none() {
            ctx.reason = Some(err.code);
        }
        ctx.status = err.status.as_u16();
        metrics()
            .refusals
            .with_label_values(&[ctx.route_name(), err.code])
            .inc();
        // A refused request's unread body must not be parsed as the next request.
        session.set_keepalive(None);
        match err.to_response(&ctx.request_id) {
            Ok((head, body)) => {
                if session
                    .write_response_header(Box::new(head), false)
                    .await
                    .is_ok()
                {
                    let _ = session.write_response_body(Some(body), true).await;
                }
            }
            // Only a header value we built ourselves could be invalid here; the client sees the
            // connection close and the access log records the status.
            Err(e) => tracing::error!(error = %e, "could not build an error response"),
        }
    }
}

/// `Host` (or `:authority`) lowercased, without port.
fn request_host(session: &Session) -> Option<String> {
    let req = session.req_header();
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    let host = if raw.starts_with('[') {
        raw.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(raw)
    } else {
        raw.rsplit_once(':').map(|(h, _)| h).unwrap_or(raw)
    };
    Some(host.to_ascii_lowercase())
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::new()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        // The head is in: its deadline no longer runs (the body has its own limits).
        head_deadline::head_received(session.as_downstream().stream());
        // The one snapshot this request uses to the end; loaded here, once.
        let runtime = self.gateway.runtime();
        // Slow-client timeouts apply to every request on the connection, keep-alive ones too.
        if let Some(policy) = runtime.listeners.get(&*self.listener) {
            policy.slow_clients.apply(session.as_downstream_mut());
            ctx.body_rate = policy.slow_clients.body_rate;
        }
        ctx.runtime = Some(runtime);
        Ok(())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<bool> {
        ctx.request_id = request_id::from_header(
            session
                .req_header()
                .headers
                .get(request_id::HEADER)
                .map(|v| v.as_bytes()),
        );
        match self.before_upstream(session, ctx).await {
            Ok(Next::Proxy) => Ok(false),
            Ok(Next::Respond(reply)) => {
                ctx.decision = "answered";
                ctx.status = reply.status.as_u16();
                let mut headers: Vec<(&str, &str)> =
                    vec![("x-request-id", ctx.request_id.as_str())];
                headers.extend(reply.headers.iter().map(|(k, v)| (*k, v.as_str())));
                answer::write(session, reply.status, &headers, reply.body).await?;
                Ok(true)
            }
            Err(err) => {
                self.respond(session, ctx, &err).await;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        // Streamed bodies: the declared length was checked already; the watch guards the
        // ceiling against framing that lies, and refuses bodies sent too slowly.
        if let (Some(chunk), Some(watch)) = (body.as_ref(), ctx.body_watch.as_mut())
            && let Err(e) = watch.on_chunk(chunk.len(), std::time::Instant::now())
        {
            let status = e.status().as_u16();
            ctx.refusal = Some(GatewayError::from(e));
            return Error::e_explain(ErrorType::HTTPStatus(status), "request body refused");
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        let (Some(runtime), Some(route)) = (&ctx.runtime, &ctx.route) else {
            return Error::e_explain(ErrorType::InternalError, "no route in context");
        };
        let Some(upstream) = runtime.config.upstreams.get(&route.upstream) else {
            return Error::e_explain(ErrorType::InternalError, "route names an unknown upstream");
        };
        let attempt = ctx.attempts;
        ctx.attempts += 1;
        match self.gateway.upstreams.select(upstream, attempt) {
            Ok((peer, addr)) => {
                ctx.upstream_addr = Some(addr);
                Ok(Box::new(peer))
            }
            Err(e) => Error::e_explain(ErrorType::ConnectNoRoute, e.message),
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        let Some(route) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::InternalError, "no route in context");
        };
        // Hop-by-hop headers (and any named in `Connection`) never cross; this runs before the
        // gateway adds its own headers.
        crate::inspect::strip_hop_by_hop(upstream_request)
            .map_err(|_| Error::explain(ErrorType::HTTPStatus(400), "bad Connection header"))?;
        // Identity headers are the gateway's to set; whatever the caller sent is dropped.
        let spoofed: Vec<http::HeaderName> = upstream_request
            .headers
            .keys()
            .filter(|k| crate::auth::propagation::is_gateway_header(k))
            .cloned()
            .collect();
        for name in spoofed {
            upstream_request.remove_header(&name);
        }
        if let Some(identity) = &ctx.identity {
            for (name, value) in crate::auth::propagation::identity_headers(identity) {
                upstream_request.insert_header(name, value.clone())?;
            }
        }
        // The caller's API key is the gateway's credential, never the upstream's; its
        // `Authorization` goes on only where the route says so.
        upstream_request.remove_header(crate::auth::credentials::API_KEY_HEADER);
        if !route.forward_authorization {
            upstream_request.remove_header(&http::header::AUTHORIZATION);
        }
        upstream_request.insert_header(request_id::HEADER, ctx.request_id.as_str())?;
        if let Some(new_path) = &route.rewrite_path {
            let uri = match session.req_header().uri.query() {
                Some(q) => format!("{new_path}?{q}"),
                None => new_path.clone(),
            };
            let uri: http::Uri = uri.parse().or_err(
                ErrorType::InternalError,
                "rewritten path is not a valid URI",
            )?;
            upstream_request.set_uri(uri);
        }
        if let Some(body) = &ctx.body {
            // The body was read whole; send it with a plain length.
            upstream_request.remove_header(&http::header::TRANSFER_ENCODING);
            upstream_request.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        upstream_response.insert_header(request_id::HEADER, ctx.request_id.as_str())?;
        if let Some(h) = &ctx.rate_headers {
            upstream_response.insert_header(crate::limit::RATELIMIT_POLICY, h.policy.clone())?;
            if let Some(v) = &h.rate_limit {
                upstream_response.insert_header(crate::limit::RATELIMIT, v.clone())?;
            }
        }
        ctx.status = upstream_response.status.as_u16();
        ctx.decision = "forwarded";
        Ok(())
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        if let Some(addr) = ctx.upstream_addr {
            self.gateway.upstreams.restore(&addr);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(addr) = ctx.upstream_addr {
            self.gateway.upstreams.eject(addr);
        }
        let retries = ctx
            .runtime
            .as_ref()
            .zip(ctx.route.as_ref())
            .and_then(|(rt, r)| rt.config.upstreams.get(&r.upstream))
            .map(|u| u.retries)
            .unwrap_or(0);
        // Nothing reached the upstream, so another target is safe for idempotent methods, and
        // for any method whose body we hold whole.
        let replayable = session.req_header().method.is_idempotent() || ctx.body.is_some();
        e.set_retry(replayable && ctx.attempts <= retries);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let upstream = ctx
            .route
            .as_ref()
            .map(|r| r.upstream.clone())
            .unwrap_or_default();
        // A refusal decided in a phase that could only return a Pingora error wins.
        let err = if let Some(refusal) = ctx.refusal.take() {
            refusal
        } else {
            classify_failure(e, &upstream)
        };
        let client_gone = matches!(e.esource(), pingora::ErrorSource::Downstream)
            && matches!(
                e.etype(),
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
            );
        if client_gone {
            ctx.decision = "error";
            ctx.status = 0;
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        // The response may already be under way; only a fresh one can carry our JSON error.
        if session.response_written().is_none() {
            self.respond(session, ctx, &err).await;
        }
        ctx.decision = "error";
        FailToProxy {
            error_code: err.status.as_u16(),
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        // A next request on this connection gets a fresh head deadline from its first byte.
        head_deadline::request_finished(session.as_downstream().stream());
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(ctx.status);
        let route = ctx.route_name().to_string();
        let latency = ctx.started.elapsed();
        let m = metrics();
        m.requests_total
            .with_label_values(&[route.as_str(), status.to_string().as_str()])
            .inc();
        m.request_duration
            .with_label_values(&[route.as_str()])
            .observe(latency.as_secs_f64());
        let req = session.req_header();
        // A path can carry personal data (`/customers/<e-mail>`): it goes through the redactor.
        let privacy = self.gateway.privacy.load();
        let path = privacy.path_for_log(req.uri.path());
        let upstream = ctx.route.as_ref().map(|r| r.upstream.as_str());
        let forwarded = ctx.decision == "forwarded";
        self.gateway.access_log.write(AccessRecord {
            request_id: &ctx.request_id,
            listener: &self.listener,
            route: ctx.route.as_ref().map(|r| r.name.as_str()),
            method: req.method.as_str(),
            path: &path,
            query_keys: privacy.query_keys_for_log(req.uri.query().unwrap_or("")),
            status,
            bytes_in: session.body_bytes_read(),
            bytes_out: session.body_bytes_sent(),
            latency_ms: duration_ms(latency),
            upstream: if forwarded { upstream } else { None },
            decision: ctx.decision,
            reason: ctx.reason,
            shop: ctx.shop.as_deref(),
            auth: ctx
                .identity
                .as_ref()
                .and_then(|i| i.method_header().to_str().ok()),
            // An IP address is personal data: logged as a keyed pseudonym investigators can
            // correlate, never in clear.
            client_ip: session.client_addr().and_then(|a| a.as_inet()).map(|a| {
                privacy
                    .pseudonymizer()
                    .pseudonym(crate::privacy::PiiKind::IpAddress, &a.ip().to_string())
            }),
            ..Default::default()
        });
    }
}

/// Maps a Pingora failure to the gateway's answer, counting upstream errors.
fn classify_failure(e: &Error, upstream: &str) -> GatewayError {
    match e.etype() {
        ErrorType::HTTPStatus(400) => {
            GatewayError::bad_request("bad_connection_header", "the Connection header is refused")
        }
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            metrics()
                .upstream_errors
                .with_label_values(&[upstream, "timeout"])
                .inc();
            GatewayError::gateway_timeout()
        }
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::TLSHandshakeFailure
        | ErrorType::InvalidCert
        | ErrorType::ConnectionClosed
            if e.esource() == &pingora::ErrorSource::Upstream
                || matches!(e.etype(), ErrorType::ConnectNoRoute) =>
        {
            metrics()
                .upstream_errors
                .with_label_values(&[upstream, "connect"])
                .inc();
            GatewayError::bad_gateway("upstream_unavailable", "the upstream could not be reached")
        }
        _ => match e.esource() {
            pingora::ErrorSource::Upstream => {
                metrics()
                    .upstream_errors
                    .with_label_values(&[upstream, "protocol"])
                    .inc();
                GatewayError::bad_gateway("upstream_error", "the upstream failed")
            }
            pingora::ErrorSource::Downstream => {
                GatewayError::bad_request("bad_request", "the request could not be read")
            }
            _ => GatewayError::internal("the gateway failed to handle the request"),
        },
    }
}

fn duration_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}
