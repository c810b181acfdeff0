//! The TikTok egress kind: the caller names a shop; the gateway checks the caller may act for
//! it, injects the app key, shop cipher and access token the caller never sees, signs the exact
//! bytes it sends, paces calls per (app, shop, endpoint), and sends the call through the route's
//! upstream (its targets, timeouts, retries, TLS and connection pool, on Pingora's connector).
//! Holding the whole answer lets it refresh an expired token and retry once (`105002`), back off
//! on throttling (`429` / `36009002`), and pass the answer through response inspection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use pingora::http::{RequestHeader, ResponseHeader};

use crate::error::GatewayError;
use crate::gateway::route::{CompiledRoute, TikTokPlan};
use crate::gateway::upstream_call::{Answer, CallError, CallTrace, call};
use crate::limit::PaceKey;
use crate::pipeline::ctx::UpstreamAddr;
use crate::pipeline::stages::{Reply, Request};
use crate::telemetry::metrics::metrics;
use crate::telemetry::otel;
use crate::tiktok::query::{EgressRequest, ShopCredentials, SignRequestError, sign_request};

/// TikTok's "access token expired" and "rate limited" codes.
const CODE_TOKEN_EXPIRED: i64 = 105002;
const CODE_RATE_LIMITED: i64 = 36009002;

pub async fn send(
    req: &mut Request<'_>,
    route: &CompiledRoute,
    plan: &TikTokPlan,
) -> Result<Reply, GatewayError> {
    let forbid = |reason: &'static str, message: &'static str| {
        metrics()
            .auth_failures
            .with_label_values(&[&*route.name, reason])
            .inc();
        GatewayError::new(StatusCode::FORBIDDEN, reason, message)
    };
    let identity = req
        .ctx
        .identity
        .clone()
        .ok_or_else(|| GatewayError::internal("no identity after authentication"))?;
    let head = req.session.req_header();
    let shop_id = head
        .headers
        .get(&plan.shop_header)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            GatewayError::bad_request(
                "shop_required",
                format!("name the shop in `{}`", plan.shop_header),
            )
        })?;
    // Least privilege per shop: the caller needs this shop's scope (or the wildcard).
    if !identity.has_scope("tiktok:shop:*")
        && !identity.has_scope(&format!("tiktok:shop:{shop_id}"))
    {
        req.ctx.reason = Some("shop_forbidden");
        return Err(forbid(
            "shop_forbidden",
            "the caller may not act for this shop",
        ));
    }
    // A revoked authorization (configured shop or not): nothing reaches TikTok.
    let registry = req.gateway.tiktok.shops.clone();
    if registry.as_ref().is_some_and(|r| r.is_revoked(shop_id)) {
        req.ctx.reason = Some("shop_revoked");
        return Err(forbid(
            "shop_revoked",
            "the seller's authorization of this shop was revoked",
        ));
    }
    // Configured shops first, then those sellers authorized at runtime.
    let runtime = match (plan.shops.contains_key(shop_id), &registry) {
        (false, Some(registry)) => registry.active(shop_id, &plan.app.name).await,
        _ => None,
    };
    // The lookup may have read a newer list: a revocation in it counts at once.
    if runtime.is_none() && registry.as_ref().is_some_and(|r| r.is_revoked(shop_id)) {
        req.ctx.reason = Some("shop_revoked");
        return Err(forbid(
            "shop_revoked",
            "the seller's authorization of this shop was revoked",
        ));
    }
    let Some(shop) = plan.shops.get(shop_id).cloned().or(runtime) else {
        req.ctx.reason = Some("unknown_shop");
        return Err(forbid(
            "unknown_shop",
            "this shop is not configured for the route's app",
        ));
    };
    let (Some(services), Some(tokens)) = (
        req.gateway.tiktok.egress.as_ref(),
        req.gateway.tiktok.tokens.as_ref(),
    ) else {
        return Err(GatewayError::internal(
            "TikTok route without TikTok services",
        ));
    };
    let content_type = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = route
        .config
        .rewrite_path
        .clone()
        .unwrap_or_else(|| head.uri.path().to_string());
    let raw_query = head.uri.query().map(str::to_owned);
    let method = head.method.clone();
    // The exact bytes that are signed and sent (read whole by the body stage).
    let raw = req.ctx.body.take().unwrap_or_default();

    let key = PaceKey {
        app: &plan.app.name,
        shop: &shop.id,
        endpoint: &route.name,
    };
    services.pacer.try_acquire(&key).map_err(|wait| {
        metrics()
            .refusals
            .with_label_values(&[&*route.name, "tiktok_budget"])
            .inc();
        GatewayError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "tiktok_budget_exhausted",
            "the outbound budget for this shop is used up; retry later",
        )
        .with_header("retry-after", wait.secs().to_string())
    })?;
    req.ctx.shop = Some(shop.clone());

    let mut token = tokens.access_token(&shop.id).map_err(|e| {
        tracing::error!(shop = %shop.id, error = %e, "no usable TikTok access token");
        GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "token_unavailable",
            "the shop's TikTok authorization is not usable",
        )
    })?;
    let mut refreshed = false;
    let tracing = &req.gateway.tracing;
    loop {
        // A client span per exchange, a child of the request's server span.
        let span = tracing.client_span(|| format!("tiktok {}", route.name), req.ctx.trace.as_ref());
        let signed = sign_request(
            &EgressRequest {
                path: &path,
                raw_query: raw_query.as_deref(),
                body: &raw,
                content_type: content_type.as_deref(),
            },
            &ShopCredentials {
                app_key: &plan.app.app_key,
                app_secret: plan.app.app_secret.expose().as_bytes(),
                access_token: token.expose(),
                shop_cipher: Some(&shop.cipher),
            },
            req.gateway.clock.unix_seconds(),
        )
        .map_err(|e| match e {
            SignRequestError::Query(q) => GatewayError::bad_request("bad_query", q.to_string()),
            other => {
                tracing::error!(shop = %shop.id, error = %other, "cannot sign TikTok request");
                GatewayError::internal("the request could not be signed")
            }
        })?;
        let mut upstream_req =
            RequestHeader::build(method.clone(), signed.path_and_query.as_bytes(), Some(6))
                .map_err(|_| {
                    GatewayError::internal("the signed request head could not be built")
                })?;
        let built = (|| -> pingora::Result<()> {
            upstream_req.insert_header(http::header::HOST, &plan.authority)?;
            for (name, value) in signed.headers() {
                upstream_req.insert_header(name, value.clone())?;
            }
            upstream_req.insert_header(http::header::CONTENT_LENGTH, raw.len().to_string())?;
            upstream_req.insert_header_name(
                &crate::telemetry::request_id::HEADER_NAME,
                req.ctx.request_id.header(),
            )?;
            if let Some(tp) = span.as_ref().and_then(otel::traceparent) {
                upstream_req.insert_header(crate::telemetry::trace_context::TRACEPARENT, tp)?;
            }
            Ok(())
        })();
        built.map_err(|_| GatewayError::internal("the signed request head could not be built"))?;

        let sent = Instant::now();
        let exchanged = exchange(req, route, upstream_req, &raw).await;
        let observe = |outcome: &str| {
            metrics()
                .tiktok_duration
                .with_label_values(&[&*route.name, outcome])
                .observe(sent.elapsed().as_secs_f64());
        };
        let (head, body) = exchanged.inspect_err(|e| {
            let kind = if e.status == StatusCode::GATEWAY_TIMEOUT {
                "timeout"
            } else {
                "unavailable"
            };
            observe(kind);
            if let Some(cx) = &span {
                otel::fail(cx, kind);
                otel::end(cx);
            }
        })?;
        let status = head.status;
        let retry_after = head
            .headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let code = tiktok_code(&body);
        let outcome = match (status, code) {
            (StatusCode::TOO_MANY_REQUESTS, _) | (_, Some(CODE_RATE_LIMITED)) => "throttled",
            (_, Some(CODE_TOKEN_EXPIRED)) => "token_expired",
            (s, _) if !s.is_success() => "http_error",
            (_, Some(0) | None) => "ok",
            (_, Some(_)) => "api_error",
        };
        observe(outcome);
        if let Some(cx) = &span {
            call_span(cx, route, &shop.id, &method, &path, status, code, outcome);
        }

        if status == StatusCode::TOO_MANY_REQUESTS || code == Some(CODE_RATE_LIMITED) {
            let wait = services.pacer.on_throttled(&key, retry_after);
            req.ctx.reason = Some("tiktok_throttled");
            return Err(GatewayError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "tiktok_throttled",
                "TikTok is throttling this shop; retry later",
            )
            .with_header("retry-after", wait.as_secs().max(1).to_string()));
        }
        if code == Some(CODE_TOKEN_EXPIRED) && !refreshed {
            refreshed = true;
            // Refreshes only if `token` is still the shop's current one, and not during the
            // back-off after a failed refresh.
            // The refresh's span is a child of the call that met the expired token.
            let parent = span.clone().unwrap_or_else(otel::TraceCx::current);
            token = otel::WithTraceCx::with_context(
                tokens.force_refresh(&shop.id, token.generation()),
                parent,
            )
            .await
            .map_err(|e| {
                tracing::error!(shop = %shop.id, error = %e, "token refresh after 105002 failed");
                let err = GatewayError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "token_refresh_failed",
                    "the shop's TikTok token could not be refreshed",
                );
                match e.retry_after_secs() {
                    Some(secs) => err.with_header("retry-after", secs.max(1).to_string()),
                    None => err,
                }
            })?;
            continue;
        }
        services.pacer.on_success(&key);
        let response_type = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        return Ok(Reply {
            status,
            headers: vec![("content-type", response_type)],
            body,
        });
    }
}

/// What a TikTok call's span says; the path is redacted at export, the query (which carries the
/// access token and the signature) never appears.
#[allow(clippy::too_many_arguments)]
fn call_span(
    cx: &otel::TraceCx,
    route: &CompiledRoute,
    shop: &str,
    method: &http::Method,
    path: &str,
    status: StatusCode,
    code: Option<i64>,
    outcome: &'static str,
) {
    use opentelemetry::KeyValue;
    otel::set(
        cx,
        [
            KeyValue::new("http.request.method", method.as_str().to_owned()),
            KeyValue::new("url.path", path.to_owned()),
            KeyValue::new("gateway.upstream", route.upstream.name.clone()),
            KeyValue::new("gateway.shop", shop.to_owned()),
            KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
            KeyValue::new("tiktok.outcome", outcome),
        ],
    );
    if let Some(code) = code {
        otel::set(cx, [KeyValue::new("tiktok.code", code)]);
    }
    if outcome != "ok" {
        otel::fail(cx, outcome);
    }
    otel::end(cx);
}

/// One call through the route's upstream (`gateway::upstream_call`: healthy targets only, connect
/// retries, breaker reports), recorded on the request for the access log.
pub(super) async fn exchange(
    req: &mut Request<'_>,
    route: &CompiledRoute,
    head: RequestHeader,
    body: &Bytes,
) -> Result<(ResponseHeader, Bytes), GatewayError> {
    let upstream = &route.upstream;
    let started = Instant::now();
    req.ctx.upstream_started.get_or_insert(started);
    let mut trace = CallTrace {
        attempts: req.ctx.attempts,
        addr: None,
    };
    let result = call(
        &req.gateway.connector,
        upstream,
        &route.pool,
        &head,
        body,
        route.config.max_response_body,
        &mut trace,
    )
    .await;
    req.ctx.attempts = trace.attempts;
    if let Some(addr) = trace.addr {
        req.ctx.upstream_addr = Some(UpstreamAddr {
            addr,
            text: Arc::from(addr.to_string()),
        });
    }
    req.ctx.upstream_outcome = match &result {
        Ok(answer) => Some(crate::telemetry::metrics::status_class(
            answer.head.status.as_u16(),
        )),
        Err(CallError::Unavailable(_)) => None,
        Err(e) => Some(failure_kind(e)),
    };
    match result {
        Ok(Answer {
            head,
            body: Some(bytes),
        }) => {
            req.ctx.upstream_latency = Some(started.elapsed());
            Ok((head, bytes))
        }
        Ok(Answer { body: None, .. }) => {
            req.ctx.upstream_latency = Some(started.elapsed());
            Err(GatewayError::bad_gateway(
                "upstream_response_too_large",
                "the TikTok response exceeds the route's limit",
            ))
        }
        Err(CallError::Unavailable(e)) => {
            metrics()
                .upstream_errors
                .with_label_values(&[&upstream.name, "unavailable"])
                .inc();
            Err(e)
        }
        Err(e) => {
            req.ctx.upstream_latency = Some(started.elapsed());
            Err(upstream_failure(&e, &upstream.name))
        }
    }
}

/// `timeout` or `connect`: the kind of a failed exchange, as proxied requests count it.
fn failure_kind(e: &CallError) -> &'static str {
    if e.is_timeout() { "timeout" } else { "connect" }
}

/// A failed upstream exchange as the client's answer, counted like a proxied request's.
fn upstream_failure(e: &CallError, upstream: &str) -> GatewayError {
    let kind = failure_kind(e);
    metrics()
        .upstream_errors
        .with_label_values(&[upstream, kind])
        .inc();
    if kind == "timeout" {
        GatewayError::gateway_timeout()
    } else {
        GatewayError::bad_gateway("upstream_unavailable", "TikTok could not be reached")
    }
}

/// TikTok's envelope `code`, if the body is a JSON object that has one.
fn tiktok_code(body: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        code: Option<i64>,
    }
    serde_json::from_slice::<Envelope>(body)
        .ok()
        .and_then(|e| e.code)
}
