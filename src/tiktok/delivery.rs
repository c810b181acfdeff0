//! The delivery worker: takes due events from the [`WebhookQueue`] and POSTs each to its
//! order-service URL with the gateway's own proof (see [`proof`](super::proof)), never TikTok's
//! `Authorization` header.
//!
//! Events are claimed from the state store with a lease, so on a shared backend every replica
//! delivers and each event has one attempt in flight at a time. A 2xx removes the event; anything
//! else (status, timeout, refused connection) records the attempt and schedules the next one with
//! exponential backoff and jitter, capped; an event older than `webhooks.dead_letter_after` is
//! moved to the dead-letter state instead of being retried forever.
//!
//! Delivery is at-least-once. If the acknowledgement cannot be recorded (the store is down), the
//! worker keeps trying to record it rather than sending the event again; only if this process
//! dies first is the event sent again, once its lease ends, with the same
//! `x-gateway-event-id`; receivers must dedupe on that header (and may also dedupe on TikTok's
//! `tts_notification_id` inside the body). While the store is unreachable nothing is claimed, so
//! recovery brings no burst of repeated deliveries.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prometheus::IntCounter;
use thiserror::Error;
use tokio::sync::watch;

use super::proof::{EVENT_ID_HEADER, ProofError, ProofKey, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::queue::WebhookQueue;
use crate::clock::SharedClock;
use crate::config::Secret;
use crate::state::{ClaimedEvent, EventRef};

/// Settings for the delivery worker (from the webhook route's upstream and the proof secret).
#[derive(Clone)]
pub struct DeliverySettings {
    /// Secret shared with the order services for `x-gateway-signature`.
    pub secret: Secret,
    /// TCP/TLS connect timeout per attempt.
    pub connect_timeout: Duration,
    /// Whole-attempt timeout (connect, send, response headers).
    pub request_timeout: Duration,
    /// First retry delay; doubles per failed attempt.
    pub backoff_base: Duration,
    /// Ceiling for the retry delay.
    pub backoff_cap: Duration,
    /// Events delivered concurrently (each event still has at most one attempt at a time).
    pub max_in_flight: usize,
    /// How often the store is asked for due events when nothing woke the worker sooner.
    pub poll_interval: Duration,
    /// Events still undelivered this long after arrival are dead-lettered.
    pub dead_letter_after: Duration,
    /// How to reach the order-service upstreams that are behind TLS.
    pub tls: Vec<DeliveryTls>,
    /// Told about every attempt (the access log's delivery lines).
    pub observer: Option<Arc<dyn DeliveryObserver>>,
    /// A client span per attempt, a child of the ingress request's span when it was traced.
    pub tracing: crate::telemetry::otel::Tracing,
}

/// One delivery attempt, as [`DeliveryObserver`]s see it.
#[derive(Debug)]
pub struct AttemptReport<'a> {
    pub event: &'a ClaimedEvent,
    /// `x-gateway-event-id` of the event.
    pub public_id: &'a str,
    /// From sending the request to the order service's answer (or the failure).
    pub latency: Duration,
    /// The answer's status, if there was one.
    pub status: Option<u16>,
    /// Why there was no answer.
    pub error: Option<SendError>,
    /// Answered 2xx and removed from the queue.
    pub delivered: bool,
    /// The trace id of the attempt's span, when tracing is on.
    pub trace_id: Option<&'a str>,
}

/// Watches delivery attempts (logging, metrics).
pub trait DeliveryObserver: Send + Sync {
    fn attempt(&self, report: &AttemptReport<'_>);
}

/// `https://<sni>:<port>`: how queued URLs for a TLS upstream begin, and how the transport finds
/// that upstream's client again. Both sides must build it here.
pub fn https_origin(sni: &str, port: u16) -> String {
    format!("https://{sni}:{port}")
}

/// TLS to one order-service upstream, as its `upstreams.<name>.tls` says for proxied traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTls {
    /// `https://<sni>:<port>`: the origin of the URLs queued for this upstream.
    pub origin: String,
    /// The name the certificate must carry (the upstream's `sni`).
    pub server_name: String,
    /// The target's address when it is an IP: connections go there, not to DNS for the name.
    pub pin: Option<SocketAddr>,
    /// PEM bundle that alone is trusted; `None`: the system roots.
    pub ca: Option<PathBuf>,
}

impl DeliverySettings {
    /// Defaults: connect 2 s, request 10 s, backoff 1 s doubling to 5 min, 8 in flight, poll
    /// every 500 ms, dead-letter after 72 h.
    pub fn new(secret: Secret) -> Self {
        Self {
            secret,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            max_in_flight: 8,
            poll_interval: Duration::from_millis(500),
            dead_letter_after: Duration::from_secs(72 * 3600),
            tls: Vec::new(),
            observer: None,
            tracing: crate::telemetry::otel::Tracing::disabled(),
        }
    }
}

impl std::fmt::Debug for DeliverySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverySettings")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Error)]
pub enum DeliveryError {
    #[error("webhook delivery: {0}")]
    Proof(#[from] ProofError),
    #[error("webhook delivery: cannot build the HTTP client")]
    Client,
    #[error("webhook delivery: CA bundle {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("webhook delivery metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// One signed POST, as handed to a [`Transport`].
#[derive(Clone, Copy)]
pub struct Delivery<'a> {
    /// The webhook route the event came in on: the transport sends it through that route's
    /// upstream as the running config defines it.
    pub route: &'a str,
    /// Where the event was to go when it was queued (origin of the route's upstream + path).
    pub url: &'a str,
    pub body: &'a Bytes,
    pub timestamp: i64,
    pub signature: &'a str,
    pub event_id: &'a str,
    pub request_id: &'a str,
    /// `traceparent` of the attempt's span, when tracing is on.
    pub traceparent: Option<&'a str>,
}

/// The body carries buyer data and the signature proves it: neither is ever printed.
impl std::fmt::Debug for Delivery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("route", &self.route)
            .field("url", &self.url)
            .field("body_len", &self.body.len())
            .field("event_id", &self.event_id)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// Why an attempt got no HTTP status. Deliberately coarse: no URL, no body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SendError {
    #[error("timed out")]
    Timeout,
    #[error("connection failed")]
    Connect,
    #[error("request failed")]
    Other,
}

/// Sends one delivery and returns the HTTP status. The HTTP implementation is
/// [`HttpTransport`]; tests substitute their own.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, delivery: Delivery<'_>) -> impl Future<Output = Result<u16, SendError>> + Send;
}

/// POSTs with `reqwest`; redirects are not followed (a signed event goes only where configured).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    /// One client per TLS upstream (its own trust anchors and address), by URL origin.
    tls_clients: Vec<(String, reqwest::Client)>,
}

impl HttpTransport {
    pub fn new(
        connect_timeout: Duration,
        request_timeout: Duration,
        tls: &[DeliveryTls],
    ) -> Result<Self, DeliveryError> {
        // reqwest is built without a default provider; ours is ring. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .timeout(request_timeout)
                .redirect(reqwest::redirect::Policy::none())
        };
        let client = builder().build().map_err(|_| DeliveryError::Client)?;
        let mut tls_clients = Vec::with_capacity(tls.len());
        for t in tls {
            let mut b = builder().https_only(true);
            if let Some(ca) = &t.ca {
                let fail = |reason: String| DeliveryError::Ca {
                    path: ca.display().to_string(),
                    reason,
                };
                let pem = std::fs::read(ca).map_err(|e| fail(e.to_string()))?;
                let certs =
                    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
                b = b.tls_certs_only(certs);
            }
            if let Some(addr) = t.pin {
                b = b.resolve(&t.server_name, addr);
            }
            let c = b.build().map_err(|_| DeliveryError::Client)?;
            tls_clients.push((t.origin.clone(), c));
        }
        Ok(Self {
            client,
            tls_clients,
        })
    }

    /// The client for `url`: its TLS upstream's, or the plain one.
    fn client_for(&self, url: &str) -> &reqwest::Client {
        self.tls_clients
            .iter()
            .find(|(origin, _)| {
                url.starts_with(origin.as_str()) && url.as_bytes().get(origin.len()) == Some(&b'/')
            })
            .map(|(_, c)| c)
            .unwrap_or(&self.client)
    }
}

/// How much of a response body is read so the connection can be reused.
pub const DRAIN_LIMIT: usize = 64 * 1024;

impl Transport for HttpTransport {
    async fn send(&self, d: Delivery<'_>) -> Result<u16, SendError> {
        let response = self
            .client_for(d.url)
            .post(d.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, d.timestamp)
            .header(SIGNATURE_HEADER, d.signature)
            .header(EVENT_ID_HEADER, d.event_id)
            .header("x-request-id", d.request_id)
            .headers(trace_headers(d.traceparent))
            .body(d.body.clone())
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        let mut response = response;
        let mut read = 0usize;
        while read < DRAIN_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        Ok(status)
    }
}

fn trace_headers(traceparent: Option<&str>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if let Some(value) = traceparent.and_then(|v| http::HeaderValue::from_str(v).ok()) {
        headers.insert(crate::telemetry::trace_context::TRACEPARENT, value);
    }
    headers
}

fn classify(e: reqwest::Error) -> SendError {
    if e.is_timeout() {
        SendError::Timeout
    } else if e.is_connect() {
        SendError::Connect
    } else {
        SendError::Other
    }
}

/// What the attempt's span says: ids, the order service's answer, the outcome. The path goes
/// through the log redaction at export; the body and the signature never appear.
fn attempt_span(
    cx: &crate::telemetry::otel::TraceCx,
    event: &ClaimedEvent,
    public_id: &str,
    request_id: &str,
    status: Option<u16>,
    error: Option<SendError>,
    delivered: bool,
) {
    use crate::telemetry::otel;
    use opentelemetry::KeyValue;
    let path = reqwest::Url::parse(&event.target)
        .map(|u| u.path().to_owned())
        .unwrap_or_default();
    otel::set(
        cx,
        [
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("url.path", path),
            KeyValue::new("gateway.route", event.route.clone()),
            KeyValue::new("gateway.event_id", public_id.to_owned()),
            KeyValue::new("gateway.request_id", request_id.to_owned()),
            KeyValue::new("gateway.attempt", i64::from(event.attempts) + 1),
            KeyValue::new(
                "gateway.decision",
                if delivered { "delivered" } else { "retry" },
            ),
        ],
    );
    if let Some(status) = status {
        otel::set(
            cx,
            [KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            )],
        );
    }
    match error {
        Some(SendError::Timeout) => otel::fail(cx, "timeout"),
        Some(SendError::Connect) => otel::fail(cx, "connect"),
        Some(SendError::Other) => otel::fail(cx, "other"),
        None if !delivered && status.is_some_and(|s| (200..300).contains(&s)) => {
            otel::fail(cx, "ack_failed")
        }
        None if !delivered => otel::fail(cx, "rejected"),
        None => {}
    }
    otel::end(cx);
}

/// `webhook_delivered_total` and `webhook_delivery_failed_total` (failed attempts).
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    pub delivered: IntCounter,
    pub failed: IntCounter,
}

impl DeliveryMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            delivered: IntCounter::new(
                "webhook_delivered_total",
                "Webhooks acknowledged by the order service.",
            )?,
            failed: IntCounter::new(
                "webhook_delivery_failed_total",
                "Webhook delivery attempts that failed and were rescheduled.",
            )?,
        })
    }

    /// Registers both counters (pass `telemetry::metrics::registry()` in production).
    pub fn register(&self, registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.delivered.clone()))?;
        registry.register(Box::new(self.failed.clone()))?;
        Ok(())
    }
}

/// Delay before attempt `attempts + 1`, given `attempts` failures so far (>= 1):
/// `base * 2^(attempts-1)` capped at `cap`, then "equal jitter": half fixed, half random, so
/// retries from many events spread out but never come sooner than half the nominal delay.
/// `jitter` is a uniform sample in `[0, 1)`.
pub fn backoff_delay(attempts: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let nominal = base.saturating_mul(1u32 << exponent).min(cap);
    let half = nominal / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// The background delivery loop. Run [`run`](Self::run) as a background service.
pub struct DeliveryWorker<T: Transport = HttpTransport> {
    queue: Arc<WebhookQueue>,
    transport: T,
    key: ProofKey,
    settings: DeliverySettings,
    clock: SharedClock,
    metrics: DeliveryMetrics,
}

/// How one attempt ended, as the loop needs to know it.
enum Outcome {
    /// Acknowledged and recorded, or failed and rescheduled (or its bookkeeping left to the
    /// lease): nothing more to do.
    Done,
    /// The order service acknowledged it but the store did not record that yet.
    AckPending(u64),
}

/// How often the queue gauges are refreshed and expired dedupe keys forgotten.
const STATS_EVERY: Duration = Duration::from_secs(2);
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// After the store failed a claim, how long before the next one.
const CLAIM_BACKOFF: Duration = Duration::from_secs(1);

impl DeliveryWorker<HttpTransport> {
    pub fn new(
        queue: Arc<WebhookQueue>,
        settings: DeliverySettings,
        clock: SharedClock,
    ) -> Result<Self, DeliveryError> {
        let transport = HttpTransport::new(
            settings.connect_timeout,
            settings.request_timeout,
            &settings.tls,
        )?;
        Self::with_transport(queue, settings, clock, transport)
    }
}

impl<T: Transport> DeliveryWorker<T> {
    pub fn with_transport(
        queue: Arc<WebhookQueue>,
        settings: DeliverySettings,
        clock: SharedClock,
        transport: T,
    ) -> Result<Self, DeliveryError> {
        let key = ProofKey::new(&settings.secret)?;
        Ok(Self {
            queue,
            transport,
            key,
            settings,
            clock,
            metrics: DeliveryMetrics::new()?,
        })
    }

    pub fn metrics(&self) -> &DeliveryMetrics {
        &self.metrics
    }

    /// Delivers until `shutdown` turns true (or its sender is dropped). Wakes when this replica
    /// stores an event, when an attempt ends, and every poll interval. On shutdown it stops
    /// claiming, lets attempts already sent finish (bounded by the request timeout) and gives
    /// back the claims it still holds, so another replica can take them at once.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let max = self.settings.max_in_flight.max(1);
        let mut in_flight = FuturesUnordered::new();
        let mut held: HashSet<EventRef> = HashSet::new();
        let mut pending_acks: Vec<u64> = Vec::new();
        let mut claim_not_before = tokio::time::Instant::now();
        let mut stats_at = tokio::time::Instant::now();
        let mut purge_at = tokio::time::Instant::now() + PURGE_EVERY;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = tokio::time::Instant::now();
            // Acknowledgements the store missed are recorded before anything is sent again.
            if !pending_acks.is_empty() {
                let mut still = Vec::new();
                for id in pending_acks.drain(..) {
                    match self.queue.ack(id).await {
                        Ok(()) => self.metrics.delivered.inc(),
                        Err(_) => still.push(id),
                    }
                }
                pending_acks = still;
            }
            let free = max - in_flight.len();
            if free > 0 && now >= claim_not_before {
                match self.queue.claim(free).await {
                    Ok(batch) => {
                        for event in batch {
                            if pending_acks.contains(&event.claim.id) {
                                continue;
                            }
                            held.insert(event.claim);
                            in_flight.push(self.attempt(event));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook queue claim failed; retrying shortly");
                        claim_not_before = now + CLAIM_BACKOFF;
                    }
                }
            }
            if now >= stats_at {
                stats_at = now + STATS_EVERY;
                let _ = self.queue.refresh_stats().await;
            }
            if now >= purge_at {
                purge_at = now + PURGE_EVERY;
                let _ = self.queue.purge_dedupe().await;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some((claim, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    held.remove(&claim);
                    if let Outcome::AckPending(id) = outcome {
                        pending_acks.push(id);
                    }
                }
                _ = self.queue.notified() => {}
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
        let grace = self.settings.request_timeout + Duration::from_secs(1);
        let drain = async {
            while let Some((claim, outcome)) = in_flight.next().await {
                held.remove(&claim);
                if let Outcome::AckPending(id) = outcome {
                    pending_acks.push(id);
                }
            }
        };
        let _ = tokio::time::timeout(grace, drain).await;
        drop(in_flight);
        for id in pending_acks {
            let _ = self.queue.ack(id).await;
        }
        // Unfinished claims go back at once; if that fails their leases end by themselves.
        for claim in held {
            let _ = self.queue.release(claim).await;
        }
    }

    async fn attempt(&self, event: ClaimedEvent) -> (EventRef, Outcome) {
        let claim = event.claim;
        let public_id = self.queue.public_id(claim.id);
        let timestamp = self.clock.unix_seconds();
        let signature = self.key.sign(timestamp, &event.body);
        let request_id = if event.request_id.is_empty() {
            public_id.as_str()
        } else {
            event.request_id.as_str()
        };
        // A child of the request that brought the webhook in, when its trace was recorded;
        // otherwise a trace of its own.
        let parent = match &event.traceparent {
            Some(tp) => crate::telemetry::otel::from_traceparent(tp),
            None => crate::telemetry::otel::TraceCx::new(),
        };
        let span = self
            .settings
            .tracing
            .client_span(|| "webhook.delivery".into(), Some(&parent));
        let traceparent = span.as_ref().and_then(crate::telemetry::otel::traceparent);
        let trace_id = span.as_ref().map(crate::telemetry::otel::trace_id);
        let sent = std::time::Instant::now();
        let result = self
            .transport
            .send(Delivery {
                route: &event.route,
                url: &event.target,
                body: &event.body,
                timestamp,
                signature: &signature,
                event_id: &public_id,
                request_id,
                traceparent: traceparent.as_deref(),
            })
            .await;
        let latency = sent.elapsed();
        let report = |status: Option<u16>, error: Option<SendError>, delivered: bool| {
            if let Some(cx) = &span {
                attempt_span(cx, &event, &public_id, request_id, status, error, delivered);
            }
            if let Some(observer) = &self.settings.observer {
                observer.attempt(&AttemptReport {
                    event: &event,
                    public_id: &public_id,
                    latency,
                    status,
                    error,
                    delivered,
                    trace_id: trace_id.as_deref(),
                });
            }
        };
        let outcome = match result {
            Ok(status) if (200..300).contains(&status) => match self.queue.ack(claim.id).await {
                Ok(()) => {
                    self.metrics.delivered.inc();
                    report(Some(status), None, true);
                    tracing::debug!(event_id = %public_id, route = %event.route, "webhook delivered");
                    Outcome::Done
                }
                Err(e) => {
                    // Delivered but not removed: recorded later, not sent again meanwhile.
                    report(Some(status), None, false);
                    tracing::error!(event_id = %public_id, error = %e, "webhook ack not recorded yet");
                    Outcome::AckPending(claim.id)
                }
            },
            other => {
                self.metrics.failed.inc();
                let (status, error) = match other {
                    Ok(status) => (Some(status), None),
                    Err(e) => (None, Some(e)),
                };
                report(status, error, false);
                tracing::warn!(
                    event_id = %public_id,
                    route = %event.route,
                    attempt = event.attempts + 1,
                    status = ?status,
                    error = ?error,
                    "webhook delivery failed; will retry"
                );
                self.reschedule(&event, &public_id).await;
                Outcome::Done
            }
        };
        (claim, outcome)
    }

    /// Records the failed attempt and when to try again, or dead-letters an event too old to
    /// keep trying. If the store cannot record it, the lease ends and the event is due again
    /// then: one attempt per lease at most while the store is down.
    async fn reschedule(&self, event: &ClaimedEvent, public_id: &str) {
        let attempts = event.attempts.saturating_add(1);
        let age = self.clock.unix_seconds().saturating_sub(event.received_at);
        let too_old = u64::try_from(age).unwrap_or(0) >= self.settings.dead_letter_after.as_secs();
        let result = if too_old {
            tracing::error!(event_id = %public_id, route = %event.route, attempts, "webhook dead-lettered: undelivered for too long");
            self.queue.dead_letter(event.claim, attempts).await
        } else {
            let delay = backoff_delay(
                attempts,
                self.settings.backoff_base,
                self.settings.backoff_cap,
                rand::random::<f64>(),
            );
            self.queue.retry(event.claim, attempts, delay).await
        };
        if let Err(e) = result {
            tracing::error!(event_id = %public_id, error = %e, "webhook retry bookkeeping failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use parking_lot::Mutex;

    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::state::embedded::EmbeddedStore;
    use crate::state::health::StateHealth;
    use crate::state::{Accepted, SharedState};
    use crate::tiktok::proof;
    use crate::tiktok::queue::{IncomingEvent, QueueSettings};

    #[test]
    fn delivery_debug_never_shows_the_body_or_the_signature() {
        let body = Bytes::from_static(br#"{"buyer_email":"maria@example.com"}"#);
        let d = Delivery {
            route: "tiktok-webhooks",
            url: "https://orders.internal:8443/events",
            body: &body,
            timestamp: 1,
            signature: "5dec0f11ec2f6783",
            event_id: "ev-1",
            request_id: "rid-1",
            traceparent: None,
        };
        let shown = format!("{d:?}");
        assert!(
            !shown.contains("maria") && !shown.contains("5dec0f11"),
            "{shown}"
        );
        assert!(shown.contains("ev-1"), "{shown}");
    }

    const SECRET: &str = "order-service-shared-secret";

    fn event(n: usize, target: &str) -> IncomingEvent {
        IncomingEvent {
            route: "tiktok-webhooks".into(),
            target: target.into(),
            dedup_key: format!("notif-{n}"),
            request_id: format!("req-{n}"),
            body: Bytes::from(format!("{{\"tts_notification_id\":\"notif-{n}\"}}")),
            traceparent: None,
        }
    }

    fn queue_on(path: Option<&std::path::Path>) -> Arc<WebhookQueue> {
        let store: SharedState =
            Arc::new(EmbeddedStore::open(path, Arc::new(SystemClock)).unwrap());
        Arc::new(WebhookQueue::new(
            store,
            StateHealth::new("embedded"),
            Arc::new(SystemClock),
            QueueSettings {
                dedup_ttl: Duration::from_secs(3600),
                lease: Duration::from_secs(5),
                timeout: Duration::from_secs(2),
            },
        ))
    }

    async fn stored(queue: &WebhookQueue, e: IncomingEvent) -> String {
        match queue.accept(e).await.unwrap() {
            Accepted::Stored(id) => queue.public_id(id),
            Accepted::Duplicate => panic!("not a duplicate"),
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_caps() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        for (attempts, nominal) in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (40, 60)] {
            let nominal = Duration::from_secs(nominal);
            assert_eq!(backoff_delay(attempts, base, cap, 0.0), nominal / 2);
            assert_eq!(backoff_delay(attempts, base, cap, 1.0), nominal);
            let mid = backoff_delay(attempts, base, cap, 0.5);
            assert!(mid > nominal / 2 && mid < nominal);
        }
        // A huge attempt count neither overflows nor exceeds the cap.
        assert_eq!(backoff_delay(u32::MAX, base, cap, 0.99), cap.mul_f64(0.995));
    }

    /// Fails the first `failures` attempts of every event; records how many attempts per event
    /// were running at once.
    #[derive(Default)]
    struct FlakyTransport {
        failures: u32,
        log: Mutex<HashMap<String, u32>>,
        running: Mutex<HashMap<String, u32>>,
        max_concurrent_per_event: Mutex<u32>,
    }

    impl Transport for Arc<FlakyTransport> {
        async fn send(&self, d: Delivery<'_>) -> Result<u16, SendError> {
            let id = d.event_id.to_string();
            let attempt = {
                let mut log = self.log.lock();
                let n = log.entry(id.clone()).or_default();
                *n += 1;
                *n
            };
            {
                let mut running = self.running.lock();
                let n = running.entry(id.clone()).or_default();
                *n += 1;
                let mut max = self.max_concurrent_per_event.lock();
                *max = (*max).max(*n);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            *self.running.lock().entry(id).or_default() -= 1;
            if attempt <= self.failures {
                Ok(503)
            } else {
                Ok(200)
            }
        }
    }

    fn fast_settings() -> DeliverySettings {
        let mut settings = DeliverySettings::new(Secret::new(SECRET));
        settings.connect_timeout = Duration::from_secs(1);
        settings.request_timeout = Duration::from_secs(2);
        settings.backoff_base = Duration::from_millis(20);
        settings.backoff_cap = Duration::from_millis(100);
        settings.poll_interval = Duration::from_millis(20);
        settings
    }

    async fn wait_for(mut done: impl FnMut() -> bool) {
        for _ in 0..400 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("condition not reached in time");
    }

    async fn live(queue: &WebhookQueue) -> u64 {
        queue.refresh_stats().await.unwrap().live
    }

    #[tokio::test]
    async fn retries_until_acknowledged_one_attempt_at_a_time() {
        let queue = queue_on(None);
        let transport = Arc::new(FlakyTransport {
            failures: 4,
            ..Default::default()
        });
        let mut settings = fast_settings();
        settings.max_in_flight = 2;
        let worker = Arc::new(
            DeliveryWorker::with_transport(
                queue.clone(),
                settings,
                Arc::new(SystemClock),
                transport.clone(),
            )
            .unwrap(),
        );
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn({
            let worker = worker.clone();
            async move { worker.run(stopped).await }
        });
        for n in 0..5 {
            stored(&queue, event(n, "http://127.0.0.1:9/events")).await;
        }
        wait_for(|| worker.metrics().delivered.get() == 5).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(live(&queue).await, 0);
        let log = transport.log.lock();
        assert_eq!(log.len(), 5);
        assert!(
            log.values().all(|n| *n == 5),
            "4 failures then one success: {log:?}"
        );
        assert_eq!(*transport.max_concurrent_per_event.lock(), 1);
        assert_eq!(worker.metrics().failed.get(), 20);
    }

    #[tokio::test]
    async fn an_event_too_old_is_dead_lettered_not_retried_forever() {
        let queue = queue_on(None);
        let transport = Arc::new(FlakyTransport {
            failures: u32::MAX,
            ..Default::default()
        });
        let mut settings = fast_settings();
        settings.dead_letter_after = Duration::from_secs(1);
        let worker = Arc::new(
            DeliveryWorker::with_transport(
                queue.clone(),
                settings,
                Arc::new(SystemClock),
                transport.clone(),
            )
            .unwrap(),
        );
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn({
            let worker = worker.clone();
            async move { worker.run(stopped).await }
        });
        let id = stored(&queue, event(0, "http://127.0.0.1:9/events")).await;
        let mut stats = queue.refresh_stats().await.unwrap();
        for _ in 0..100 {
            if stats.dead == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            stats = queue.refresh_stats().await.unwrap();
        }
        assert_eq!((stats.live, stats.dead), (0, 1));
        let attempts = transport.log.lock()[&id];
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            transport.log.lock()[&id],
            attempts,
            "no attempt after dead-lettering"
        );
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[derive(Clone, Default)]
    struct Receiver {
        seen: Arc<Mutex<HashMap<String, u32>>>,
        refused: Arc<Mutex<Vec<String>>>,
    }

    async fn receive(State(rx): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let now = SystemClock.unix_seconds();
        let verdict = proof::verify(
            &Secret::new(SECRET),
            &header(proof::TIMESTAMP_HEADER),
            &header(proof::SIGNATURE_HEADER),
            &body,
            now,
            proof::DEFAULT_MAX_SKEW_SECONDS,
        );
        let problem = if verdict.is_err() {
            Some("bad proof")
        } else if headers.contains_key("authorization") {
            Some("tiktok authorization forwarded")
        } else if header("content-type") != "application/json" {
            Some("content-type")
        } else if header("x-request-id").is_empty() {
            Some("x-request-id")
        } else {
            None
        };
        if let Some(problem) = problem {
            rx.refused.lock().push(problem.to_string());
            return StatusCode::UNAUTHORIZED;
        }
        *rx.seen
            .lock()
            .entry(header(proof::EVENT_ID_HEADER))
            .or_default() += 1;
        StatusCode::NO_CONTENT
    }

    async fn serve(listener: tokio::net::TcpListener, rx: Receiver) {
        let app = axum::Router::new()
            .route("/internal/tiktok/events", axum::routing::post(receive))
            .with_state(rx);
        let _ = axum::serve(listener, app).await;
    }

    fn start(worker: &Arc<DeliveryWorker>) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (stop, stopped) = watch::channel(false);
        let worker = worker.clone();
        (stop, tokio::spawn(async move { worker.run(stopped).await }))
    }

    #[tokio::test]
    async fn delivers_over_http_with_the_gateway_proof() {
        let queue = queue_on(None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rx = Receiver::default();
        let server = tokio::spawn(serve(listener, rx.clone()));
        let worker = Arc::new(
            DeliveryWorker::new(queue.clone(), fast_settings(), Arc::new(SystemClock)).unwrap(),
        );
        let (stop, task) = start(&worker);
        let target = format!("http://{addr}/internal/tiktok/events");
        let id = stored(&queue, event(0, &target)).await;
        wait_for(|| worker.metrics().delivered.get() == 1).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        server.abort();
        assert!(rx.refused.lock().is_empty(), "{:?}", rx.refused.lock());
        assert_eq!(rx.seen.lock().get(&id), Some(&1));

        // A receiver with another secret refuses: the event stays queued and is retried.
        let wrong = {
            let mut s = fast_settings();
            s.secret = Secret::new("not-the-shared-secret");
            s
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rx = Receiver::default();
        let server = tokio::spawn(serve(listener, rx.clone()));
        let worker =
            Arc::new(DeliveryWorker::new(queue.clone(), wrong, Arc::new(SystemClock)).unwrap());
        let (stop, task) = start(&worker);
        let target = format!("http://{addr}/internal/tiktok/events");
        stored(&queue, event(1, &target)).await;
        wait_for(|| worker.metrics().failed.get() >= 2).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        server.abort();
        assert!(rx.seen.lock().is_empty());
        assert!(rx.refused.lock().iter().all(|p| p == "bad proof"));
        assert_eq!(live(&queue).await, 1);
    }

    /// The order service is down while 50 webhooks arrive; the gateway restarts; the order
    /// service comes back: every event arrives, none twice.
    #[tokio::test]
    async fn fifty_events_survive_an_outage_and_a_restart_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        // A port with nothing listening: connections are refused.
        let addr: SocketAddr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let target = format!("http://{addr}/internal/tiktok/events");

        let expected: std::collections::HashSet<String> = {
            let queue = queue_on(Some(&path));
            let worker = Arc::new(
                DeliveryWorker::new(queue.clone(), fast_settings(), Arc::new(SystemClock)).unwrap(),
            );
            let (stop, task) = start(&worker);
            let mut ids = std::collections::HashSet::new();
            for n in 0..50 {
                ids.insert(stored(&queue, event(n, &target)).await);
            }
            wait_for(|| worker.metrics().failed.get() >= 100).await;
            assert_eq!(worker.metrics().delivered.get(), 0);
            stop.send(true).unwrap();
            task.await.unwrap();
            assert_eq!(live(&queue).await, 50);
            ids
        };

        // "Restart": a new store over the same file, a new worker, the order service back.
        let queue = queue_on(Some(&path));
        assert_eq!(live(&queue).await, 50);
        // A replay of any of them after the restart is still a duplicate.
        assert_eq!(
            queue.accept(event(7, &target)).await.unwrap(),
            Accepted::Duplicate
        );
        let rx = Receiver::default();
        let server = tokio::spawn(serve(
            tokio::net::TcpListener::bind(addr).await.unwrap(),
            rx.clone(),
        ));
        let worker = Arc::new(
            DeliveryWorker::new(queue.clone(), fast_settings(), Arc::new(SystemClock)).unwrap(),
        );
        let (stop, task) = start(&worker);
        wait_for(|| worker.metrics().delivered.get() == 50).await;
        // Give a stray duplicate the chance to show up before counting.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        server.abort();

        let seen = rx.seen.lock().clone();
        assert!(rx.refused.lock().is_empty());
        assert_eq!(
            seen.keys()
                .cloned()
                .collect::<std::collections::HashSet<_>>(),
            expected
        );
        assert!(seen.values().all(|n| *n == 1), "{seen:?}");
        assert_eq!(live(&queue).await, 0);
    }
}
