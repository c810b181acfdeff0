//! Per-request state carried through the Pingora phases.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::GatewayError;
use crate::gateway::route::CompiledRoute;
use crate::gateway::snapshot::Snapshot;

pub struct RequestCtx {
    pub started: Instant,
    pub request_id: crate::telemetry::request_id::RequestId,
    /// The config snapshot this request uses from start to end.
    pub snapshot: Option<Arc<Snapshot>>,
    pub route: Option<Arc<CompiledRoute>>,
    /// `forwarded`, `refused`, `answered` or `error`, for the access log.
    pub decision: &'static str,
    /// Stable refusal code for the access log.
    pub reason: Option<&'static str>,
    /// The upstream address of the last attempt, proxied or sent by the gateway itself.
    pub upstream_addr: Option<UpstreamAddr>,
    /// When the first upstream attempt started; with `upstream_done`, the upstream latency.
    pub upstream_started: Option<Instant>,
    pub upstream_latency: Option<Duration>,
    /// How the upstream exchange ended, for `upstream_duration_seconds`: the answer's status
    /// class, or the failure's kind (`connect`, `timeout`, `protocol`).
    pub upstream_outcome: Option<&'static str>,
    /// The whole request body, when the pipeline needed it before contacting the upstream.
    pub body: Option<Bytes>,
    /// Ceiling and minimum rate for a body streamed to the upstream.
    pub body_watch: Option<crate::inspect::BodyWatch>,
    /// The listener's minimum upload rate, for bodies read here or streamed.
    pub body_rate: crate::inspect::BodyRate,
    /// A refusal decided inside a Pingora phase that can only return a `pingora::Error`.
    pub refusal: Option<GatewayError>,
    /// Upstream attempts so far (retries go to another target).
    pub attempts: usize,
    /// The current proxied attempt's ticket: its outcome goes to the target's circuit breaker.
    pub upstream_attempt: Option<crate::gateway::health::endpoint::Attempt>,
    pub status: u16,
    /// Response body bytes passed to the client so far (against the route's ceiling).
    pub response_bytes: u64,
    /// Who the caller proved to be.
    pub identity: Option<Arc<crate::auth::Identity>>,
    /// The TikTok shop a signed egress call acted for.
    pub shop: Option<Arc<crate::config::TikTokShop>>,
    /// `RateLimit-Policy` / `RateLimit` for the response.
    pub rate_headers: Option<crate::limit::RateLimitHeaders>,
    /// The request's server span, when tracing is on.
    pub trace: Option<crate::telemetry::otel::TraceCx>,
    /// The current proxied attempt's client span.
    pub upstream_span: Option<crate::telemetry::otel::TraceCx>,
}

/// An upstream address with its text for the access log, made once: a proxied attempt's text
/// comes from its endpoint, which made it when the address was resolved.
#[derive(Debug, Clone)]
pub struct UpstreamAddr {
    pub addr: SocketAddr,
    pub text: Arc<str>,
}

impl RequestCtx {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            request_id: Default::default(),
            snapshot: None,
            route: None,
            decision: "error",
            reason: None,
            upstream_addr: None,
            upstream_started: None,
            upstream_latency: None,
            upstream_outcome: None,
            body: None,
            body_watch: None,
            body_rate: crate::inspect::BodyRate::default(),
            refusal: None,
            attempts: 0,
            upstream_attempt: None,
            status: 0,
            response_bytes: 0,
            identity: None,
            rate_headers: None,
            shop: None,
            trace: None,
            upstream_span: None,
        }
    }

    /// The route's name for metric labels; `(none)` when no route matched.
    pub fn route_name(&self) -> &str {
        self.route
            .as_ref()
            .map(|r| &*r.name)
            .unwrap_or(crate::telemetry::metrics::NO_ROUTE)
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
