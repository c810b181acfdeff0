//! Stage 4: rate limits. Each of the route's limits is checked with the key its spec names; the
//! most restrictive decision wins. Allowed responses carry `RateLimit-Policy` / `RateLimit`;
//! refusals are 429 with `Retry-After` too (503 when only `fail_closed` refused, Redis being down).

use std::net::IpAddr;

use pingora::proxy::Session;

use super::ctx::RequestCtx;
use crate::auth::AuthMethod;
use crate::error::GatewayError;
use crate::gateway::route::CompiledRoute;
use crate::gateway::snapshot::Snapshot;
use crate::limit::{
    Decision, DecisionSource, KeyKind, RateLimitHeaders, RateLimiter, TrustedProxies,
};

/// Checks each of the route's limits with the key its spec names.
pub async fn check(
    limiter: &RateLimiter,
    route: &CompiledRoute,
    snapshot: &Snapshot,
    session: &Session,
    ctx: &RequestCtx,
) -> Result<Option<RateLimitHeaders>, GatewayError> {
    let mut decisions: Vec<Decision> = Vec::with_capacity(route.limit_ids.len());
    let headers = &session.req_header().headers;
    for &id in route.limit_ids.iter() {
        let Some(spec) = limiter.spec(id) else {
            continue;
        };
        let ip_key;
        let key: &[u8] = match &spec.key {
            KeyKind::Caller => ctx
                .identity
                .as_deref()
                .map(|i| i.subject().as_bytes())
                .unwrap_or(b""),
            KeyKind::ApiKey => match ctx.identity.as_deref().map(|i| i.method()) {
                Some(AuthMethod::ApiKey { key }) => key.as_bytes(),
                _ => b"",
            },
            KeyKind::ClientIp => {
                let peer = session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip())
                    .unwrap_or(IpAddr::from([0, 0, 0, 0]));
                let ip = snapshot
                    .config
                    .trusted_proxies
                    .client_ip_from_headers(peer, headers);
                ip_key = TrustedProxies::limit_key(ip);
                &ip_key
            }
            KeyKind::Shop => route
                .tiktok()
                .and_then(|t| headers.get(&t.shop_header))
                .map(|v| v.as_bytes())
                .unwrap_or(b""),
            KeyKind::Header(name) => headers
                .get(name.as_str())
                .map(|v| v.as_bytes())
                .unwrap_or(b""),
            KeyKind::Route => b"",
        };
        decisions.push(limiter.check(id, key).await);
    }
    let headers = limiter.headers(&decisions);
    let mut refused = decisions.iter().filter(|d| !d.allowed).peekable();
    if refused.peek().is_some() {
        // `fail_closed` with the shared backend down is not the caller's fault: say so (503),
        // so clients, logs and alerts can tell an outage from a caller over its limit.
        let unavailable = refused.all(|d| d.source == DecisionSource::FailClosed);
        let mut err = if unavailable {
            GatewayError::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "rate_limit_unavailable",
                "rate limiting is unavailable; retry later",
            )
        } else {
            GatewayError::new(
                http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "rate limit exceeded; retry later",
            )
        };
        if let Some(h) = &headers {
            err = with_headers(err, h);
        }
        return Err(err);
    }
    Ok(headers)
}

fn with_headers(mut err: GatewayError, h: &RateLimitHeaders) -> GatewayError {
    for (name, value) in [
        ("ratelimit-policy", Some(&h.policy)),
        ("ratelimit", h.rate_limit.as_ref()),
        ("retry-after", h.retry_after.as_ref()),
    ] {
        if let Some(v) = value.and_then(|v| v.to_str().ok()) {
            err = err.with_header(name, v);
        }
    }
    err
}
