//! The delivery worker: takes due events from the [`WebhookQueue`] and POSTs each to its
//! order-service URL with the gateway's own proof (see [`proof`](super::proof)), never TikTok's
//! `Authorization` header.
//!
//! A 2xx removes the event; anything else (status, timeout, refused connection) schedules another
//! attempt with exponential backoff and jitter, capped. Each event has at most one attempt in
//! flight (the queue hands an event out once until it is acked or put back).
//!
//! Delivery is at-least-once. If the process dies after the order service answered 2xx but
//! before the ack reached the disk, the event is sent again after the restart with the same
//! `x-gateway-event-id`; receivers must dedupe on that header (and may also dedupe on TikTok's
//! `tts_notification_id` inside the body). After a successful ack the event is gone, so it is
//! never sent again.

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
use super::queue::{EventId, QueuedEvent, WebhookQueue};
use crate::clock::SharedClock;
use crate::config::Secret;

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
    /// How to reach the order-service upstreams that are behind TLS.
    pub tls: Vec<DeliveryTls>,
    /// Told about every attempt (the access log's delivery lines).
    pub observer: Option<Arc<dyn DeliveryObserver>>,
}

/// One delivery attempt, as [`DeliveryObserver`]s see it.
#[derive(Debug)]
pub struct AttemptReport<'a> {
    pub event: &'a QueuedEvent,
    /// From sending the request to the order service's answer (or the failure).
    pub latency: Duration,
    /// The answer's status, if there was one.
    pub status: Option<u16>,
    /// Why there was no answer.
    pub error: Option<SendError>,
    /// Answered 2xx and removed from the queue.
    pub delivered: bool,
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
    /// Defaults: connect 2 s, request 10 s, backoff 1 s doubling to 5 min, 8 in flight.
    pub fn new(secret: Secret) -> Self {
        Self {
            secret,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            max_in_flight: 8,
            tls: Vec::new(),
            observer: None,
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
    pub url: &'a str,
    pub body: &'a Bytes,
    pub timestamp: i64,
    pub signature: &'a str,
    pub event_id: &'a str,
    pub request_id: &'a str,
}

/// The body carries buyer data and the signature proves it: neither is ever printed.
impl std::fmt::Debug for Delivery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
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
const DRAIN_LIMIT: usize = 64 * 1024;

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

fn classify(e: reqwest::Error) -> SendError {
    if e.is_timeout() {
        SendError::Timeout
    } else if e.is_connect() {
        SendError::Connect
    } else {
        SendError::Other
    }
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

    /// Delivers until `shutdown` turns true (or its sender is dropped). Wakes as soon as an
    /// event is enqueued or becomes due. On shutdown it stops taking events and lets attempts
    /// already sent finish (bounded by the request timeout).
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let max = self.settings.max_in_flight.max(1);
        let mut in_flight = FuturesUnordered::new();
        let mut ids: HashSet<EventId> = HashSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let free = max - in_flight.len();
            if free > 0 {
                match self.queue.take_due(free).await {
                    Ok(batch) => {
                        for event in batch {
                            ids.insert(event.id);
                            in_flight.push(self.attempt(event));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "webhook queue read failed"),
                }
            }
            let next_due = if in_flight.len() < max {
                self.queue.next_due()
            } else {
                None
            };
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(id) = in_flight.next(), if !in_flight.is_empty() => {
                    ids.remove(&id);
                }
                _ = self.queue.notified() => {}
                _ = sleep_until_opt(next_due), if next_due.is_some() => {}
            }
        }
        let grace = self.settings.request_timeout + Duration::from_secs(1);
        let drain = async {
            while let Some(id) = in_flight.next().await {
                ids.remove(&id);
            }
        };
        let _ = tokio::time::timeout(grace, drain).await;
        drop(in_flight);
        // Anything still unfinished goes back to the schedule; it is on disk regardless.
        for id in ids {
            self.queue.release_in_flight(id, Duration::ZERO);
        }
    }

    async fn attempt(&self, event: QueuedEvent) -> EventId {
        let timestamp = self.clock.unix_seconds();
        let signature = self.key.sign(timestamp, &event.body);
        let request_id = if event.request_id.is_empty() {
            event.public_id.as_str()
        } else {
            event.request_id.as_str()
        };
        let sent = std::time::Instant::now();
        let result = self
            .transport
            .send(Delivery {
                url: &event.target,
                body: &event.body,
                timestamp,
                signature: &signature,
                event_id: &event.public_id,
                request_id,
            })
            .await;
        let latency = sent.elapsed();
        let report = |status: Option<u16>, error: Option<SendError>, delivered: bool| {
            if let Some(observer) = &self.settings.observer {
                observer.attempt(&AttemptReport {
                    event: &event,
                    latency,
                    status,
                    error,
                    delivered,
                });
            }
        };
        match result {
            Ok(status) if (200..300).contains(&status) => match self.queue.ack(event.id).await {
                Ok(()) => {
                    self.metrics.delivered.inc();
                    report(Some(status), None, true);
                    tracing::debug!(event_id = %event.public_id, route = %event.route, "webhook delivered");
                }
                Err(e) => {
                    // Delivered but not removed: it will be sent again and deduped by event id.
                    report(Some(status), None, false);
                    tracing::error!(event_id = %event.public_id, error = %e, "webhook ack failed");
                    self.reschedule(&event).await;
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
                    event_id = %event.public_id,
                    route = %event.route,
                    attempt = event.attempts + 1,
                    status = ?status,
                    error = ?error,
                    "webhook delivery failed; will retry"
                );
                self.reschedule(&event).await;
            }
        }
        event.id
    }

    async fn reschedule(&self, event: &QueuedEvent) {
        let delay = backoff_delay(
            event.attempts.saturating_add(1),
            self.settings.backoff_base,
            self.settings.backoff_cap,
            rand::random::<f64>(),
        );
        if let Err(e) = self.queue.retry_later(event, delay).await {
            tracing::error!(event_id = %event.public_id, error = %e, "webhook retry bookkeeping failed");
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
    use crate::clock::{Clock, ManualClock, SystemClock};
    use crate::tiktok::proof;

    #[test]
    fn delivery_debug_never_shows_the_body_or_the_signature() {
        let body = Bytes::from_static(br#"{"buyer_email":"maria@example.com"}"#);
        let d = Delivery {
            url: "https://orders.internal:8443/events",
            body: &body,
            timestamp: 1,
            signature: "5dec0f11ec2f6783",
            event_id: "ev-1",
            request_id: "rid-1",
        };
        let shown = format!("{d:?}");
        assert!(
            !shown.contains("maria") && !shown.contains("5dec0f11"),
            "{shown}"
        );
        assert!(shown.contains("ev-1"), "{shown}");
    }
    use crate::tiktok::queue::NewEvent;

    const SECRET: &str = "order-service-shared-secret";

    fn event(n: usize, target: &str) -> NewEvent {
        NewEvent {
            route: "tiktok-webhooks".into(),
            target: target.into(),
            dedup_key: format!("notif-{n}"),
            request_id: format!("req-{n}"),
            body: Bytes::from(format!("{{\"tts_notification_id\":\"notif-{n}\"}}")),
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

    /// Fails the first `failures` attempts of every event; records when each attempt started
    /// and how many attempts per event were running at once.
    #[derive(Default)]
    struct FlakyTransport {
        failures: u32,
        log: Mutex<HashMap<String, Vec<tokio::time::Instant>>>,
        running: Mutex<HashMap<String, u32>>,
        max_concurrent_per_event: Mutex<u32>,
    }

    impl Transport for Arc<FlakyTransport> {
        async fn send(&self, d: Delivery<'_>) -> Result<u16, SendError> {
            let id = d.event_id.to_string();
            let attempt = {
                let mut log = self.log.lock();
                let attempts = log.entry(id.clone()).or_default();
                attempts.push(tokio::time::Instant::now());
                attempts.len() as u32
            };
            {
                let mut running = self.running.lock();
                let n = running.entry(id.clone()).or_default();
                *n += 1;
                let mut max = self.max_concurrent_per_event.lock();
                *max = (*max).max(*n);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            *self.running.lock().entry(id).or_default() -= 1;
            if attempt <= self.failures {
                Ok(503)
            } else {
                Ok(200)
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_with_backoff_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_718_305_585);
        let queue = Arc::new(
            WebhookQueue::open(dir.path().join("q.redb"), Arc::new(clock.clone())).unwrap(),
        );
        let transport = Arc::new(FlakyTransport {
            failures: 4,
            ..Default::default()
        });
        let mut settings = DeliverySettings::new(Secret::new(SECRET));
        settings.backoff_base = Duration::from_secs(2);
        settings.backoff_cap = Duration::from_secs(10);
        settings.max_in_flight = 2;
        let worker = Arc::new(
            DeliveryWorker::with_transport(
                queue.clone(),
                settings,
                Arc::new(clock.clone()),
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
            queue
                .enqueue(event(n, "http://127.0.0.1:9/events"))
                .await
                .unwrap();
        }
        // Paused time jumps ahead whenever everything is idle; poll the queue until drained.
        let mut rounds = 0;
        while queue.depth() > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            rounds += 1;
            assert!(rounds < 1_000, "queue did not drain");
        }
        stop.send(true).unwrap();
        task.await.unwrap();

        let log = transport.log.lock();
        assert_eq!(log.len(), 5);
        for attempts in log.values() {
            assert_eq!(attempts.len(), 5, "4 failures then one success");
            // Gap k follows failure k: nominal 2s, 4s, 8s, 10s (capped), each at least half of
            // it; plus the 300 ms the failed attempt itself took.
            for (k, pair) in attempts.windows(2).enumerate() {
                let nominal = Duration::from_secs([2, 4, 8, 10][k]);
                let gap = pair[1] - pair[0];
                let took = Duration::from_millis(300);
                assert!(gap >= nominal / 2 + took, "gap {k}: {gap:?}");
                // Paused time may also jump to the test's own 1 s polling timer while storage
                // work runs on the blocking pool, hence the slack above the nominal delay.
                let slack = Duration::from_secs(1);
                assert!(gap <= nominal + took + slack, "gap {k}: {gap:?}");
            }
        }
        assert_eq!(*transport.max_concurrent_per_event.lock(), 1);
        assert_eq!(worker.metrics().failed.get(), 20);
        assert_eq!(worker.metrics().delivered.get(), 5);
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

    fn fast_settings() -> DeliverySettings {
        let mut settings = DeliverySettings::new(Secret::new(SECRET));
        settings.connect_timeout = Duration::from_secs(1);
        settings.request_timeout = Duration::from_secs(2);
        settings.backoff_base = Duration::from_millis(20);
        settings.backoff_cap = Duration::from_millis(100);
        settings
    }

    fn start(worker: &Arc<DeliveryWorker>) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (stop, stopped) = watch::channel(false);
        let worker = worker.clone();
        (stop, tokio::spawn(async move { worker.run(stopped).await }))
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

    #[tokio::test]
    async fn delivers_over_http_with_the_gateway_proof() {
        let dir = tempfile::tempdir().unwrap();
        let queue =
            Arc::new(WebhookQueue::open(dir.path().join("q.redb"), Arc::new(SystemClock)).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rx = Receiver::default();
        let server = tokio::spawn(serve(listener, rx.clone()));
        let worker = Arc::new(
            DeliveryWorker::new(queue.clone(), fast_settings(), Arc::new(SystemClock)).unwrap(),
        );
        let (stop, task) = start(&worker);
        let target = format!("http://{addr}/internal/tiktok/events");
        let id = queue.enqueue(event(0, &target)).await.unwrap();
        wait_for(|| queue.depth() == 0).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        server.abort();
        assert!(rx.refused.lock().is_empty(), "{:?}", rx.refused.lock());
        assert_eq!(rx.seen.lock().get(&queue.public_id(id)), Some(&1));
        assert_eq!(worker.metrics().delivered.get(), 1);

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
        queue.enqueue(event(1, &target)).await.unwrap();
        wait_for(|| worker.metrics().failed.get() >= 2).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        server.abort();
        assert!(rx.seen.lock().is_empty());
        assert!(rx.refused.lock().iter().all(|p| p == "bad proof"));
        assert_eq!(queue.depth(), 1);
    }

    /// The order service is down while 50 webhooks arrive; the gateway restarts; the order
    /// service comes back: every event arrives, none twice.
    #[tokio::test]
    async fn fifty_events_survive_an_outage_and_a_restart_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        // A port with nothing listening: connections are refused.
        let addr: SocketAddr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let target = format!("http://{addr}/internal/tiktok/events");

        let expected: HashSet<String> = {
            let queue = Arc::new(WebhookQueue::open(&path, Arc::new(SystemClock)).unwrap());
            let worker = Arc::new(
                DeliveryWorker::new(queue.clone(), fast_settings(), Arc::new(SystemClock)).unwrap(),
            );
            let (stop, task) = start(&worker);
            let mut ids = HashSet::new();
            for n in 0..50 {
                let id = queue.enqueue(event(n, &target)).await.unwrap();
                ids.insert(queue.public_id(id));
            }
            wait_for(|| worker.metrics().failed.get() >= 100).await;
            assert_eq!(worker.metrics().delivered.get(), 0);
            stop.send(true).unwrap();
            task.await.unwrap();
            assert_eq!(queue.depth(), 50);
            ids
        };

        // "Restart": a new queue over the same file, a new worker, the order service back.
        let queue = Arc::new(WebhookQueue::open(&path, Arc::new(SystemClock)).unwrap());
        assert_eq!(queue.depth(), 50);
        let rx = Receiver::default();
        let server = tokio::spawn(serve(
            tokio::net::TcpListener::bind(addr).await.unwrap(),
            rx.clone(),
        ));
        let worker = Arc::new(
            DeliveryWorker::new(queue.clone(), fast_settings(), Arc::new(SystemClock)).unwrap(),
        );
        let (stop, task) = start(&worker);
        wait_for(|| queue.depth() == 0).await;
        // Give a stray duplicate the chance to show up before counting.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        server.abort();

        let seen = rx.seen.lock();
        assert!(rx.refused.lock().is_empty());
        assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), expected);
        assert!(seen.values().all(|n| *n == 1), "{seen:?}");
        assert_eq!(worker.metrics().delivered.get(), 50);
        drop(seen);
        drop(worker);
        drop(queue);
        let reopened = WebhookQueue::open(&path, Arc::new(SystemClock)).unwrap();
        assert_eq!(reopened.depth(), 0);
    }
}
