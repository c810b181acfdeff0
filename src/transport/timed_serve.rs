//! Slow-client limits for the gateway's own small HTTP apps (metrics, admin).
//!
//! The proxy applies a listener's `connections` settings in its request phases; apps served by
//! Pingora's `HttpServer` have no such phases, so [`TimedServe`] wraps their `response` to do
//! the same: end the head deadline, set the listener's timeouts, and restart the deadline for
//! the next request on the connection.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use super::head_deadline;
use crate::error::GatewayError;
use crate::inspect::{FramingError, InspectError, SlowClientSettings};

/// A `ServeHttp` app under a listener's slow-client settings.
pub struct TimedServe<SV> {
    inner: SV,
    settings: SlowClientSettings,
}

impl<SV> TimedServe<SV> {
    pub fn new(inner: SV, settings: SlowClientSettings) -> Self {
        Self { inner, settings }
    }
}

#[async_trait]
impl<SV: ServeHttp + Send + Sync> ServeHttp for TimedServe<SV> {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        head_deadline::head_received(session.stream(), head_deadline::chunked_head_len(session));
        if head_deadline::chunked_body_malformed(session.stream()) {
            let refusal: GatewayError = InspectError::from(FramingError::MalformedChunkLine).into();
            head_deadline::request_finished(session.stream());
            return refusal.to_http_response("");
        }
        self.settings.apply(session);
        let response = self.inner.response(session).await;
        head_deadline::request_finished(session.stream());
        response
    }
}
