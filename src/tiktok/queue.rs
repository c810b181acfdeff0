//! The webhook queue, on the state layer: once TikTok has its 200, the event lives in the state
//! store until the order service acknowledges it (policy §9, no lost webhooks).
//!
//! `accept` records the dedupe key and stores the event in one atomic step of the store, before
//! the pipeline answers: an acknowledged event is durable and a replay of it is recognised, after
//! a restart too. Delivery claims due events with a lease (see [`crate::state`]), so on a shared
//! backend any replica delivers, and an event a dead replica held becomes due again when its
//! lease ends. Every call is bounded by `state.timeout` and reported to the state health.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::clock::SharedClock;
use crate::state::health::{StateHealth, with_timeout};
use crate::state::{
    Accepted, ClaimedEvent, EventRef, NewEvent, QueueStats, SharedState, StateError,
    public_event_id,
};
use crate::telemetry::metrics::metrics;

/// What the pipeline hands over after TikTok's signature has been verified.
#[derive(Clone, Debug)]
pub struct IncomingEvent {
    pub route: String,
    pub target: String,
    pub dedup_key: String,
    pub request_id: String,
    pub body: bytes::Bytes,
    /// The ingress request's span, as a `traceparent` (tracing on).
    pub traceparent: Option<String>,
}

/// Timing of the queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// How long a dedupe key is remembered.
    pub dedup_ttl: Duration,
    /// How long a claim holds an event.
    pub lease: Duration,
    /// Bound on one store operation.
    pub timeout: Duration,
}

/// The queue. Share it as `Arc<WebhookQueue>` between the pipeline and the worker.
pub struct WebhookQueue {
    store: SharedState,
    health: Arc<StateHealth>,
    clock: SharedClock,
    settings: QueueSettings,
    /// Wakes the local worker when this replica stored an event.
    notify: Notify,
}

impl std::fmt::Debug for WebhookQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookQueue")
            .field("backend", &self.store.backend())
            .finish_non_exhaustive()
    }
}

impl WebhookQueue {
    pub fn new(
        store: SharedState,
        health: Arc<StateHealth>,
        clock: SharedClock,
        settings: QueueSettings,
    ) -> Self {
        Self {
            store,
            health,
            clock,
            settings,
            notify: Notify::new(),
        }
    }

    pub fn settings(&self) -> QueueSettings {
        self.settings
    }

    async fn observed<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T, StateError>>,
    ) -> Result<T, StateError> {
        let result = with_timeout(self.settings.timeout, fut).await;
        self.health.observe(op, &result);
        result
    }

    /// Stores a verified event unless its dedupe key was seen within `dedup_ttl`. Returns only
    /// once the store has committed; never waits for delivery.
    pub async fn accept(&self, event: IncomingEvent) -> Result<Accepted, StateError> {
        let now = self.clock.unix_millis();
        let ttl = i64::try_from(self.settings.dedup_ttl.as_millis()).unwrap_or(i64::MAX);
        let event = NewEvent {
            route: event.route,
            target: event.target,
            dedup_key: event.dedup_key,
            request_id: event.request_id,
            body: event.body,
            received_at: now / 1000,
            traceparent: event.traceparent,
        };
        let accepted = self
            .observed(
                "enqueue",
                self.store.enqueue(event, now.saturating_add(ttl), now),
            )
            .await?;
        if matches!(accepted, Accepted::Stored(_)) {
            self.notify.notify_one();
        }
        Ok(accepted)
    }

    /// Claims up to `limit` due events for one lease.
    pub async fn claim(&self, limit: usize) -> Result<Vec<ClaimedEvent>, StateError> {
        let now = self.clock.unix_millis();
        let lease = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        self.observed(
            "claim",
            self.store.claim(limit, now, now.saturating_add(lease)),
        )
        .await
    }

    pub async fn ack(&self, id: u64) -> Result<(), StateError> {
        self.observed("ack", self.store.ack(id)).await
    }

    /// Records a failed attempt (the `attempts`-th) and the next one `delay` from now.
    pub async fn retry(
        &self,
        claim: EventRef,
        attempts: u32,
        delay: Duration,
    ) -> Result<(), StateError> {
        let delay = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let next = self.clock.unix_millis().saturating_add(delay);
        self.observed("retry", self.store.retry(claim, attempts, next))
            .await
    }

    pub async fn dead_letter(&self, claim: EventRef, attempts: u32) -> Result<(), StateError> {
        let now = self.clock.unix_millis();
        let result = self
            .observed("dead_letter", self.store.dead_letter(claim, attempts, now))
            .await;
        if result.is_ok() {
            metrics().webhook_dead_lettered.inc();
        }
        result
    }

    pub async fn release(&self, claim: EventRef) -> Result<(), StateError> {
        let now = self.clock.unix_millis();
        self.observed("release", self.store.release(claim, now))
            .await
    }

    /// Up to `limit` dead letters with an id above `after` (metadata only, never bodies).
    pub async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::state::DeadLetter>, StateError> {
        self.observed("dead_letters", self.store.dead_letters(after, limit))
            .await
    }

    /// Moves a dead letter back to the live queue, due now with its attempts reset, and wakes
    /// the local worker; `false` when there is no dead letter with that id.
    pub async fn replay(&self, id: u64) -> Result<bool, StateError> {
        let now = self.clock.unix_millis();
        let replayed = self
            .observed("replay_dead_letter", self.store.replay_dead_letter(id, now))
            .await?;
        if replayed {
            self.notify.notify_one();
        }
        Ok(replayed)
    }

    /// Reads the queue's size and age and sets the queue gauges.
    pub async fn refresh_stats(&self) -> Result<QueueStats, StateError> {
        let stats = self
            .observed("queue_stats", self.store.queue_stats())
            .await?;
        let m = metrics();
        m.webhook_queue_depth
            .set(i64::try_from(stats.live).unwrap_or(i64::MAX));
        m.webhook_dead_letter_depth
            .set(i64::try_from(stats.dead).unwrap_or(i64::MAX));
        let age = stats
            .oldest_received_at
            .map_or(0, |t| (self.clock.unix_seconds() - t).max(0));
        m.webhook_queue_oldest_age.set(age);
        Ok(stats)
    }

    /// Forgets expired dedupe keys (a bounded batch).
    pub async fn purge_dedupe(&self) -> Result<u64, StateError> {
        let now = self.clock.unix_millis();
        self.observed("purge_dedupe", self.store.purge_dedupe(now, 1000))
            .await
    }

    /// `x-gateway-event-id` of the event with this id: the same on every replica and retry.
    pub fn public_id(&self, id: u64) -> String {
        public_event_id(self.store.instance(), id)
    }

    /// Resolves when this replica stored an event since the last wake-up.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    pub fn health(&self) -> &Arc<StateHealth> {
        &self.health
    }
}
