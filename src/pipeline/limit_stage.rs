//! Stage 4: rate limits. Each of the route's limits is checked with the key its spec names; the
//! most restrictive decision wins. Allowed responses carry `RateLimit-Policy` / `RateLimit`;
//! refusals are 429 with `Retry-After` too (503 when only `fail_closed` refused, Redis being down).

use std::net::IpAddr;

use pingora::proxy::Session;

use crate::auth::{AuthMethod, Identity};
use crate::error::GatewayError;
use crate::limit::{
    Decision, DecisionSource, KeyKind, LimitId, RateLimitHeaders, RateLimiter, TrustedProxies,
};

/// What a request is keyed by.
pub struct LimitInputs<'a> {
    pub identity: Option<&'a Identity>,
    pub shop: Option<&'a str>,
    pub peer: Option<IpAddr>,
    pub trusted_proxies: &'a TrustedProxies,
}

pub async fn check(
    limiter: &RateLimiter,
    ids: &[LimitId],
    session: &Session,
    inputs: &LimitInputs<'_>,
) -> Result<Option<RateLimitHeaders>, GatewayError> {
    let mut decisions: Vec<Decision> = Vec::with_capacity(ids.len());
    for &id in ids {
        let Some(spec) = limiter.spec(id) else {
            continue;
        };
        let ip_key;
        let key: &[u8] = match &spec.key {
            KeyKind::Caller => inputs
                .identity
                .map(|i| i.subject().as_bytes())
                .unwrap_or(b""),
            KeyKind::ApiKey => match inputs.identity.map(|i| i.method()) {
                Some(AuthMethod::ApiKey { key }) => key.as_bytes(),
                _ => b"",
            },
            KeyKind::ClientIp => {
                let peer = inputs.peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
                let ip = inputs
                    .trusted_proxies
                    .client_ip_from_headers(peer, &session.req_header().headers);
                ip_key = TrustedProxies::limit_key(ip);
                &ip_key
            }
            KeyKind::Shop => inputs.shop.map(str::as_bytes).unwrap_or(b""),
            KeyKind::Header(name) => session
                .req_header()
                .headers
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
