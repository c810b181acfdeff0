//! The Pingora `ProxyHttp` implementation: the glue between Pingora's phases and the stage list
//! (`stages::run`), which is the one place that decides the order. Proxied routes continue into
//! Pingora's upstream phases here; every other kind is answered by the stages.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use super::answer;
use super::ctx::{RequestCtx, UpstreamAddr};
use super::log_fields;
use super::stages::{self, Flow, Request};
use crate::error::GatewayError;
use crate::gateway::state::Gateway;
use crate::telemetry::access_log::AccessRecord;
use crate::telemetry::metrics::metrics;
use crate::telemetry::otel;
use crate::telemetry::request_id;
use crate::transport::head_deadline;
use opentelemetry::KeyValue;

/// One instance per proxy listener.
pub struct GatewayProxy {
    pub listener: Arc<str>,
    /// The listener's position in `config.listeners` (fixed: listeners never change on reload).
    pub listener_index: usize,
    pub gateway: Arc<Gateway>,
}

impl GatewayProxy {
    /// Writes a refusal: the one place a `GatewayError` becomes a response on a proxy listener.
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
        match answer::write_error(session, err, &ctx.request_id).await {
            // The client may still be sending the body: read it off (bounded) so the close
            // that follows is not a reset that destroys the answer.
            Ok(()) => super::linger::discard_unread_body(session).await,
            Err(e) => {
                tracing::debug!(error = %e, "client went away before the refusal was written");
            }
        }
    }
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
        head_deadline::head_received(
            session.as_downstream().stream(),
            head_deadline::chunked_head_len(session.as_downstream()),
        );
        // The one snapshot this request uses to the end; loaded here, once.
        let snapshot = self.gateway.snapshot();
        // Slow-client timeouts apply to every request on the connection, keep-alive ones too.
        if let Some(policy) = snapshot.listeners.get(self.listener_index) {
            policy.slow_clients.apply(session.as_downstream_mut());
            ctx.body_rate = policy.slow_clients.body_rate;
        }
        ctx.snapshot = Some(snapshot);
        Ok(())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<bool> {
        ctx.request_id = request_id::RequestId::for_request(
            session
                .req_header()
                .headers
                .get(request_id::HEADER)
                .map(|v| v.as_bytes()),
        )
        .or_err(ErrorType::InternalError, "request id")?;
        if self.gateway.tracing.is_enabled() {
            let head = session.req_header();
            let peer = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            // Started when the request did; named once the route is known.
            let start = std::time::SystemTime::now()
                .checked_sub(ctx.started.elapsed())
                .unwrap_or_else(std::time::SystemTime::now);
            ctx.trace = self.gateway.tracing.server_span(
                head.method.to_string(),
                &head.headers,
                peer,
                start,
            );
        }
        let snapshot = match &ctx.snapshot {
            Some(s) => s.clone(),
            None => self.gateway.snapshot(),
        };
        let outcome = stages::run(&mut Request {
            gateway: &self.gateway,
            snapshot: &snapshot,
            listener: self.listener_index,
            session,
            ctx,
        })
        .await;
        match outcome {
            Ok(Flow::Proxy) => Ok(false),
            Ok(Flow::Respond(reply)) => {
                ctx.decision = if ctx.upstream_addr.is_some() {
                    "forwarded"
                } else {
                    "answered"
                };
                ctx.status = reply.status.as_u16();
                answer::write_reply(session, &reply, &ctx.request_id, ctx.rate_headers.as_ref())
                    .await?;
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

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<Option<Duration>> {
        if let (Some(chunk), Some(route)) = (body.as_ref(), &ctx.route) {
            ctx.response_bytes += chunk.len() as u64;
            if ctx.response_bytes > route.config.max_response_body as u64 {
                // The head is gone already: the only honest answer left is to cut the response.
                ctx.reason = Some("upstream_response_too_large");
                *body = None;
                return Error::e_explain(ErrorType::HTTPStatus(502), "upstream response too large");
            }
        }
        Ok(None)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        let Some(route) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::InternalError, "no route in context");
        };
        let attempt = ctx.attempts;
        ctx.attempts += 1;
        ctx.upstream_started
            .get_or_insert_with(std::time::Instant::now);
        // A retry goes to another target than the one that just failed, where there is one.
        let previous = ctx
            .upstream_addr
            .as_ref()
            .map(|u| u.addr)
            .filter(|_| attempt > 0);
        match route.pool.select(&route.upstream, previous) {
            Ok(selected) => {
                let addr = selected.attempt.addr();
                ctx.upstream_addr = Some(UpstreamAddr {
                    addr,
                    text: selected.attempt.addr_text(),
                });
                ctx.upstream_attempt = Some(selected.attempt);
                // One client span per attempt, a child of the request's server span.
                end_upstream_span(ctx, Some("abandoned"));
                ctx.upstream_span = self.gateway.tracing.client_span(
                    || format!("upstream {}", route.upstream.name),
                    ctx.trace.as_ref(),
                );
                if let Some(cx) = &ctx.upstream_span {
                    otel::set(
                        cx,
                        [
                            KeyValue::new("gateway.upstream", route.upstream.name.clone()),
                            KeyValue::new("gateway.attempt", ctx.attempts as i64),
                            KeyValue::new("server.address", addr.ip().to_string()),
                            KeyValue::new("server.port", i64::from(addr.port())),
                        ],
                    );
                }
                Ok(Box::new(selected.peer))
            }
            // A retry with no target left: the client hears what happened to the attempt it
            // made (fail_to_proxy classifies this as the upstream being unreachable).
            Err(e) if attempt > 0 => Error::e_explain(ErrorType::ConnectNoRoute, e.message),
            // No target may take traffic: answered at once, nothing is dialled.
            Err(e) => {
                metrics()
                    .upstream_errors
                    .with_label_values(&[&route.upstream.name, "unavailable"])
                    .inc();
                let message = e.message.clone();
                ctx.refusal = Some(e);
                Error::e_explain(ErrorType::ConnectNoRoute, message)
            }
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
        let route = &route.config;
        // Hop-by-hop headers (and any named in `Connection`) never cross; this runs before the
        // gateway adds its own headers.
        crate::inspect::strip_hop_by_hop(upstream_request)
            .map_err(|_| Error::explain(ErrorType::HTTPStatus(400), "bad Connection header"))?;
        // Room for the headers added below at once: the copy Pingora made of the client's head
        // is sized to what the client sent, and would otherwise regrow with each insert. Only
        // as many as this request gets: more room than that can cost a rehash of its own.
        let request_id = 1;
        upstream_request.reserve_headers(
            FORWARDING_HEADERS_ADDED
                + request_id
                + ctx
                    .identity
                    .as_ref()
                    .map_or(0, |_| crate::auth::propagation::IDENTITY_HEADERS)
                + ctx.upstream_span.as_ref().map_or(0, |_| 2)
                + usize::from(ctx.body.is_some()),
        );
        // Who the client is, as the gateway saw it: a caller's own claims to be an earlier hop
        // pass only from a trusted proxy.
        {
            let snapshot = ctx
                .snapshot
                .clone()
                .unwrap_or_else(|| self.gateway.snapshot());
            let peer = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            let head = session.req_header();
            let host = head
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| head.uri.authority().map(|a| a.as_str()));
            let hop = crate::inspect::Hop {
                peer,
                tls: snapshot
                    .listeners
                    .get(self.listener_index)
                    .is_some_and(|l| l.tls),
                host,
            };
            let trusted = peer.is_some_and(|ip| snapshot.config.trusted_proxies.is_trusted(ip));
            crate::inspect::forwarded::apply(
                upstream_request,
                snapshot.config.forwarded_headers,
                trusted,
                &hop,
            )?;
        }
        // Identity headers are the gateway's to set; whatever the caller sent is dropped. The
        // caller's API key is the gateway's credential, never the upstream's; its
        // `Authorization` goes on only where the route says so. One pass over the names
        // present, removing only what is there.
        let dropped: Vec<http::HeaderName> = upstream_request
            .headers
            .keys()
            .filter(|&k| {
                crate::auth::propagation::is_gateway_header(k)
                    || k.as_str() == crate::auth::credentials::API_KEY_HEADER
                    || (!route.forward_authorization && k == http::header::AUTHORIZATION)
            })
            .cloned()
            .collect();
        for name in &dropped {
            upstream_request.remove_header(name);
        }
        if let Some(identity) = &ctx.identity {
            for (name, value) in crate::auth::propagation::identity_headers(identity) {
                upstream_request.insert_header_name(&name, value.clone())?;
            }
        }
        upstream_request.insert_header_name(&request_id::HEADER_NAME, ctx.request_id.header())?;
        // With tracing on, the upstream hears of the attempt's span, and of the caller's
        // `tracestate` only when the caller was trusted (it is carried in the span's context).
        if let Some(cx) = &ctx.upstream_span {
            upstream_request.remove_header(crate::telemetry::trace_context::TRACEPARENT);
            upstream_request.remove_header(otel::TRACESTATE);
            if let Some(tp) = otel::traceparent(cx) {
                upstream_request.insert_header(crate::telemetry::trace_context::TRACEPARENT, tp)?;
            }
            if let Some(ts) = otel::tracestate(cx) {
                upstream_request.insert_header(otel::TRACESTATE, ts)?;
            }
        }
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
            upstream_request
                .insert_header_name(&http::header::CONTENT_LENGTH, HeaderValue::from(body.len()))?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        upstream_response.reserve_headers(
            1 + ctx
                .rate_headers
                .as_ref()
                .map_or(0, |h| 1 + usize::from(h.rate_limit.is_some())),
        );
        upstream_response.insert_header_name(&request_id::HEADER_NAME, ctx.request_id.header())?;
        if let Some(h) = &ctx.rate_headers {
            upstream_response
                .insert_header_name(&crate::limit::RATELIMIT_POLICY, h.policy.clone())?;
            if let Some(v) = &h.rate_limit {
                upstream_response.insert_header_name(&crate::limit::RATELIMIT, v.clone())?;
            }
        }
        // The route's response ceiling: a declared length over it is refused before any byte
        // reaches the client; an undeclared one is cut off in `response_body_filter`.
        if let Some(route) = &ctx.route {
            let limit = route.config.max_response_body as u64;
            let declared = upstream_response
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                ctx.refusal = Some(response_too_large());
                return Error::e_explain(ErrorType::HTTPStatus(502), "upstream response too large");
            }
        }
        ctx.status = upstream_response.status.as_u16();
        if let Some(mut attempt) = ctx.upstream_attempt.take() {
            attempt.answered(ctx.status);
        }
        if let Some(cx) = &ctx.upstream_span {
            otel::set(
                cx,
                [KeyValue::new(
                    "http.response.status_code",
                    i64::from(ctx.status),
                )],
            );
        }
        end_upstream_span(ctx, (ctx.status >= 500).then_some("http_error"));
        ctx.decision = "forwarded";
        ctx.upstream_latency = ctx.upstream_started.map(|t| t.elapsed());
        ctx.upstream_outcome = Some(crate::telemetry::metrics::status_class(ctx.status));
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
        if let Some(attempt) = ctx.upstream_attempt.as_mut() {
            attempt.connected();
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
        if let Some(mut attempt) = ctx.upstream_attempt.take() {
            attempt.connect_failed();
        }
        end_upstream_span(ctx, Some("connect"));
        let retries = ctx.route.as_ref().map(|r| r.upstream.retries).unwrap_or(0);
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
            .map(|r| r.upstream.name.clone())
            .unwrap_or_default();
        // Failed after connecting: counts for the breaker where answers count. A client that
        // went away says nothing about the target (dropping the ticket frees a trial).
        if let Some(mut attempt) = ctx.upstream_attempt.take()
            && e.esource() == &pingora::ErrorSource::Upstream
        {
            attempt.failed_after_connect();
        }
        end_upstream_span(
            ctx,
            Some(if e.esource() == &pingora::ErrorSource::Upstream {
                "upstream_error"
            } else {
                "aborted"
            }),
        );
        // A refusal decided in a phase that could only return a Pingora error wins.
        let err = if let Some(refusal) = ctx.refusal.take() {
            refusal
        } else {
            let (err, kind) = classify_failure(e, &upstream);
            if kind.is_some() {
                ctx.upstream_outcome = kind;
                ctx.upstream_latency = ctx.upstream_started.map(|t| t.elapsed());
            }
            err
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
        let latency = ctx.started.elapsed();
        if let Some(route) = &ctx.route {
            route.metrics.count_request(status);
            route.metrics.duration.observe(latency.as_secs_f64());
            if let (Some(outcome), Some(spent)) = (ctx.upstream_outcome, ctx.upstream_latency) {
                route.metrics.observe_upstream(outcome, spent.as_secs_f64());
            }
        } else {
            metrics()
                .requests_total
                .with_label_values(&[crate::telemetry::metrics::NO_ROUTE, &status.to_string()])
                .inc();
        }
        let req = session.req_header();
        // A path can carry personal data (`/customers/<e-mail>`): it goes through the redactor.
        let privacy = self.gateway.privacy.load();
        let path = privacy.path_for_log(req.uri.path());
        let header = |name: &http::HeaderName| req.headers.get(name).map(|v| v.as_bytes());
        let forwarded = ctx.decision == "forwarded";
        let user_agent = header(&http::header::USER_AGENT)
            .and_then(log_fields::user_agent)
            .map(|ua| privacy.redact_label(ua));
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| privacy.pseudonymizer().ip_pseudonym(a.ip()));
        end_upstream_span(ctx, Some("aborted"));
        // With tracing on, the line names the request's own trace.
        let trace_id = ctx.trace.as_ref().map(otel::trace_id);
        if let Some(cx) = &ctx.trace {
            server_span_attributes(
                cx,
                &ServerSpan {
                    ctx,
                    listener: &self.listener,
                    method: req.method.as_str(),
                    path: &path,
                    status,
                    protocol: log_fields::protocol(req.version),
                    user_agent: user_agent.as_deref(),
                    client_ip: client_ip.as_deref(),
                },
            );
        }
        self.gateway.access_log.write(AccessRecord {
            request_id: &ctx.request_id,
            listener: &self.listener,
            route: ctx.route.as_ref().map(|r| &*r.name),
            method: req.method.as_str(),
            path: &path,
            query_keys: privacy.query_keys_for_log(req.uri.query().unwrap_or("")),
            status,
            bytes_in: session.body_bytes_read(),
            bytes_out: session.body_bytes_sent(),
            latency_ms: duration_ms(latency),
            upstream: ctx
                .route
                .as_ref()
                .filter(|_| forwarded)
                .map(|r| r.upstream.name.as_str()),
            upstream_addr: ctx
                .upstream_addr
                .as_ref()
                .filter(|_| forwarded)
                .map(|u| &*u.text),
            upstream_latency_ms: ctx.upstream_latency.filter(|_| forwarded).map(duration_ms),
            decision: ctx.decision,
            reason: ctx.reason,
            shop: ctx.shop.as_ref().map(|s| s.id.as_str()),
            auth: ctx
                .identity
                .as_ref()
                .and_then(|i| i.method_header().to_str().ok()),
            // A JWT `sub` may be an e-mail address: the redactor decides what is shown.
            subject: ctx
                .identity
                .as_ref()
                .map(|i| privacy.redact_label(i.subject())),
            attempts: (ctx.attempts > 0).then_some(ctx.attempts),
            protocol: Some(log_fields::protocol(req.version)),
            host: log_fields::host(req),
            user_agent,
            trace_id: trace_id.as_deref().or_else(|| {
                header(&crate::telemetry::trace_context::TRACEPARENT_NAME)
                    .and_then(crate::telemetry::trace_context::trace_id)
            }),
            // An IP address is personal data: logged as a keyed pseudonym investigators can
            // correlate, never in clear.
            client_ip,
        });
    }
}

/// At most how many forwarding headers `upstream_request_filter` adds (`X-Forwarded-For`,
/// `-Proto`, `-Host`; one `Forwarded` in the RFC 7239 style).
const FORWARDING_HEADERS_ADDED: usize = 3;

/// Ends the proxied attempt's span, failed with `error` when given.
fn end_upstream_span(ctx: &mut RequestCtx, error: Option<&'static str>) {
    if let Some(cx) = ctx.upstream_span.take() {
        if let Some(kind) = error {
            otel::fail(&cx, kind);
        }
        otel::end(&cx);
    }
}

/// What the server span carries: the access log's fields, already redacted the same way (and
/// redacted again at export).
struct ServerSpan<'a> {
    ctx: &'a RequestCtx,
    listener: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
    protocol: &'a str,
    user_agent: Option<&'a str>,
    client_ip: Option<&'a str>,
}

fn server_span_attributes(cx: &otel::TraceCx, s: &ServerSpan<'_>) {
    let ctx = s.ctx;
    if let Some(route) = &ctx.route {
        otel::rename(cx, format!("{} {}", s.method, route.name));
    }
    let mut attributes = vec![
        KeyValue::new("http.request.method", s.method.to_owned()),
        KeyValue::new("url.path", s.path.to_owned()),
        KeyValue::new("http.response.status_code", i64::from(s.status)),
        KeyValue::new("network.protocol.name", "http"),
        KeyValue::new("network.protocol.version", s.protocol.to_owned()),
        KeyValue::new("gateway.request_id", ctx.request_id.to_string()),
        KeyValue::new("gateway.listener", s.listener.to_owned()),
        KeyValue::new("gateway.decision", ctx.decision),
    ];
    if let Some(route) = &ctx.route {
        attributes.push(KeyValue::new("gateway.route", route.name.to_string()));
    }
    if let Some(reason) = ctx.reason {
        attributes.push(KeyValue::new("gateway.reason", reason));
    }
    if let Some(shop) = &ctx.shop {
        attributes.push(KeyValue::new("gateway.shop", shop.id.clone()));
    }
    if let Some(ua) = s.user_agent {
        attributes.push(KeyValue::new("user_agent.original", ua.to_owned()));
    }
    if let Some(ip) = s.client_ip {
        attributes.push(KeyValue::new("client.address", ip.to_owned()));
    }
    otel::set(cx, attributes);
    if s.status >= 500 || s.status == 0 {
        otel::fail(
            cx,
            if s.status == 0 {
                "client_gone"
            } else {
                "server_error"
            },
        );
    }
    otel::end(cx);
}

fn response_too_large() -> GatewayError {
    GatewayError::bad_gateway(
        "upstream_response_too_large",
        "the upstream response exceeds the route's limit",
    )
}

/// Maps a Pingora failure to the gateway's answer, counting upstream errors; with the upstream
/// failure's kind when the upstream failed.
fn classify_failure(e: &Error, upstream: &str) -> (GatewayError, Option<&'static str>) {
    let failed = |kind: &'static str, err: GatewayError| {
        metrics()
            .upstream_errors
            .with_label_values(&[upstream, kind])
            .inc();
        (err, Some(kind))
    };
    match e.etype() {
        ErrorType::HTTPStatus(400) => (
            GatewayError::bad_request("bad_connection_header", "the Connection header is refused"),
            None,
        ),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            failed("timeout", GatewayError::gateway_timeout())
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
            failed(
                "connect",
                GatewayError::bad_gateway(
                    "upstream_unavailable",
                    "the upstream could not be reached",
                ),
            )
        }
        _ => match e.esource() {
            pingora::ErrorSource::Upstream => failed(
                "protocol",
                GatewayError::bad_gateway("upstream_error", "the upstream failed"),
            ),
            pingora::ErrorSource::Downstream => (
                GatewayError::bad_request("bad_request", "the request could not be read"),
                None,
            ),
            _ => (
                GatewayError::internal("the gateway failed to handle the request"),
                None,
            ),
        },
    }
}

fn duration_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}
