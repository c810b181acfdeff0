//! How queued webhooks reach the order service: through their route's upstream as the running
//! config defines it, like a proxied request (healthy targets only, the upstream's TLS, trust
//! anchors, timeouts and connect retries, outcomes reported to each target's circuit breaker).
//! An event whose route a reload removed goes to the URL it was queued with.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;

use super::route::RouteKind;
use super::snapshot::Snapshot;
use super::upstream_call::{CallError, CallTrace, call};
use crate::telemetry::metrics::metrics;
use crate::tiktok::delivery::{DRAIN_LIMIT, Delivery, HttpTransport, SendError, Transport};
use crate::tiktok::proof::{EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

pub struct UpstreamDelivery {
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Its own connection pool: delivery runs on a background runtime of its own.
    connector: Connector,
    /// For events whose route is gone.
    direct: HttpTransport,
    /// Bound on one whole attempt (connect, send, answer).
    request_timeout: Duration,
}

impl UpstreamDelivery {
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        direct: HttpTransport,
        request_timeout: Duration,
    ) -> Self {
        Self {
            snapshot,
            connector: Connector::new(None),
            direct,
            request_timeout,
        }
    }
}

impl Transport for UpstreamDelivery {
    async fn send(&self, d: Delivery<'_>) -> Result<u16, SendError> {
        let snapshot = self.snapshot.load_full();
        let Some(route) = snapshot
            .router
            .named(d.route)
            .filter(|r| matches!(r.kind, RouteKind::WebhookIngress(_)))
        else {
            return self.direct.send(d).await;
        };
        let head = request_head(&d).map_err(|_| SendError::Other)?;
        let body = d.body.clone();
        let mut trace = CallTrace::default();
        let sent = call(
            &self.connector,
            &route.upstream,
            &route.pool,
            &head,
            &body,
            DRAIN_LIMIT,
            &mut trace,
        );
        let kind = match tokio::time::timeout(self.request_timeout, sent).await {
            Ok(Ok(answer)) => return Ok(answer.head.status.as_u16()),
            Ok(Err(CallError::Unavailable(e))) => {
                tracing::debug!(route = %route.name, code = e.code, "no order-service target may take the webhook now");
                metrics()
                    .upstream_errors
                    .with_label_values(&[&route.upstream.name, "unavailable"])
                    .inc();
                return Err(SendError::Connect);
            }
            Ok(Err(e)) if e.is_timeout() => "timeout",
            Ok(Err(CallError::Connect(_))) => "connect",
            Ok(Err(_)) => "protocol",
            Err(_) => "timeout",
        };
        metrics()
            .upstream_errors
            .with_label_values(&[&route.upstream.name, kind])
            .inc();
        Err(match kind {
            "timeout" => SendError::Timeout,
            "connect" => SendError::Connect,
            _ => SendError::Other,
        })
    }
}

/// The POST as the queued URL describes it: its path and query, `Host` its authority.
fn request_head(d: &Delivery<'_>) -> Result<RequestHeader, Box<pingora::Error>> {
    let uri: http::Uri = d.url.parse().map_err(|_| {
        pingora::Error::explain(pingora::ErrorType::InternalError, "bad queued URL")
    })?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut head = RequestHeader::build("POST", path.as_bytes(), Some(8))?;
    if let Some(authority) = uri.authority() {
        head.insert_header(http::header::HOST, authority.as_str())?;
    }
    head.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    head.insert_header(http::header::CONTENT_LENGTH, d.body.len().to_string())?;
    head.insert_header(TIMESTAMP_HEADER, d.timestamp.to_string())?;
    head.insert_header(SIGNATURE_HEADER, d.signature)?;
    head.insert_header(EVENT_ID_HEADER, d.event_id)?;
    head.insert_header(crate::telemetry::request_id::HEADER, d.request_id)?;
    if let Some(traceparent) = d.traceparent {
        head.insert_header(crate::telemetry::trace_context::TRACEPARENT, traceparent)?;
    }
    Ok(head)
}
