//! The durable webhook queue: once TikTok has its 200, the event lives here until the order
//! service acknowledges it (policy §9, no lost webhooks).
//!
//! Storage is one `redb` file. `enqueue` commits with immediate durability (fsync) before it
//! returns, so the 200 to TikTok is only sent for events that survive a crash. Retry bookkeeping
//! (attempt count, next-attempt time) is written back on every failed attempt so a restart keeps
//! the backoff. The schedule itself lives in memory (rebuilt from the file on open) so finding the
//! next due event never scans the file. An event taken for delivery is "in flight" and is not
//! handed out again until it is acknowledged or put back: at most one attempt per event at a time.

mod record;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use thiserror::Error;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use crate::clock::SharedClock;
use record::Record;

/// Events by sequence number; the value is an encoded [`Record`].
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("webhook_events");
/// Queue-wide values: the next sequence number and this file's random instance id.
const META: TableDefinition<&str, u64> = TableDefinition::new("webhook_meta");
const META_NEXT_SEQ: &str = "next_seq";
const META_INSTANCE: &str = "instance";
/// Written by [`WebhookQueue::probe_write`] (readiness): the last probe's unix time.
const META_PROBE: &str = "readiness_probe";

/// Largest body the queue stores; the route's body limit is normally far smaller.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How long a held event waits for `release`/`discard` before the worker takes it anyway.
pub const HOLD_LEASE: Duration = Duration::from_secs(10);
/// redb's page cache; the queue is write-mostly, so a small cache is enough.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// A queued event's sequence number inside this queue file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub u64);

/// What the pipeline hands to [`WebhookQueue::enqueue`] after TikTok's signature has been verified.
#[derive(Clone)]
pub struct NewEvent {
    /// Route name, for logs and metrics.
    pub route: String,
    /// Absolute `http(s)://` URL of the order-service endpoint to POST the body to.
    pub target: String,
    /// `tts_notification_id`, or the SHA-256 of the body when it has none.
    pub dedup_key: String,
    /// The request id of TikTok's call, forwarded as `x-request-id`.
    pub request_id: String,
    /// The raw body exactly as TikTok sent it.
    pub body: Bytes,
}

impl std::fmt::Debug for NewEvent {
    // The body may carry buyer data: only its size is ever printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEvent")
            .field("route", &self.route)
            .field("dedup_key", &self.dedup_key)
            .field("request_id", &self.request_id)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// An event taken for delivery. It stays in flight until `ack` or `retry_later`.
#[derive(Clone)]
pub struct QueuedEvent {
    pub id: EventId,
    /// Stable across retries and restarts, unique across queue files: `x-gateway-event-id`.
    pub public_id: String,
    pub route: String,
    pub target: String,
    pub dedup_key: String,
    pub request_id: String,
    pub body: Bytes,
    /// Unix seconds at which the gateway accepted the webhook.
    pub received_at: i64,
    /// Failed attempts so far.
    pub attempts: u32,
}

impl std::fmt::Debug for QueuedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedEvent")
            .field("id", &self.id)
            .field("public_id", &self.public_id)
            .field("route", &self.route)
            .field("attempts", &self.attempts)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("webhook queue: cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("webhook queue storage: {0}")]
    Storage(#[from] redb::Error),
    #[error("webhook queue: stored event {0} is damaged")]
    Corrupt(u64),
    #[error("webhook queue: target is not an absolute http(s) URL")]
    InvalidTarget,
    #[error("webhook queue: body of {0} bytes exceeds the queue limit")]
    TooLarge(usize),
    #[error("webhook queue: event {0} is not in flight")]
    NotInFlight(u64),
    #[error("webhook queue: storage task failed")]
    Task,
}

impl From<redb::DatabaseError> for QueueError {
    fn from(e: redb::DatabaseError) -> Self {
        Self::Storage(e.into())
    }
}
impl From<redb::TransactionError> for QueueError {
    fn from(e: redb::TransactionError) -> Self {
        Self::Storage(e.into())
    }
}
impl From<redb::TableError> for QueueError {
    fn from(e: redb::TableError) -> Self {
        Self::Storage(e.into())
    }
}
impl From<redb::StorageError> for QueueError {
    fn from(e: redb::StorageError) -> Self {
        Self::Storage(e.into())
    }
}
impl From<redb::CommitError> for QueueError {
    fn from(e: redb::CommitError) -> Self {
        Self::Storage(e.into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting in the schedule for this instant.
    Scheduled(Instant),
    /// Handed to the delivery worker.
    InFlight,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    received_at: i64,
    state: State,
}

/// The in-memory view of the file: every stored event and when it is next due.
#[derive(Default)]
pub(crate) struct Index {
    entries: BTreeMap<u64, Entry>,
    schedule: BTreeSet<(Instant, u64)>,
}

impl Index {
    fn insert(&mut self, id: u64, received_at: i64, state: State) {
        if let State::Scheduled(at) = state {
            self.schedule.insert((at, id));
        }
        self.entries.insert(id, Entry { received_at, state });
    }

    fn set_state(&mut self, id: u64, state: State) -> bool {
        let Some(entry) = self.entries.get_mut(&id) else {
            return false;
        };
        if let State::Scheduled(at) = entry.state {
            self.schedule.remove(&(at, id));
        }
        if let State::Scheduled(at) = state {
            self.schedule.insert((at, id));
        }
        entry.state = state;
        true
    }

    fn remove(&mut self, id: u64) {
        if let Some(entry) = self.entries.remove(&id)
            && let State::Scheduled(at) = entry.state
        {
            self.schedule.remove(&(at, id));
        }
    }

    pub(crate) fn depth(&self) -> usize {
        self.entries.len()
    }

    /// Sequence numbers grow with arrival, so the first entry is the oldest.
    pub(crate) fn oldest_received_at(&self) -> Option<i64> {
        self.entries.values().next().map(|e| e.received_at)
    }
}

/// The durable queue. Share it as `Arc<WebhookQueue>` between the pipeline and the worker.
pub struct WebhookQueue {
    db: Arc<Database>,
    path: PathBuf,
    instance: u64,
    clock: SharedClock,
    index: Arc<Mutex<Index>>,
    notify: Arc<Notify>,
}

impl std::fmt::Debug for WebhookQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookQueue")
            .field("path", &self.path)
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

impl WebhookQueue {
    /// Opens (or creates) the queue file and schedules every stored event at its persisted
    /// next-attempt time. Blocking: call at startup or inside `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>, clock: SharedClock) -> Result<Self, QueueError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source: redb::Error| QueueError::Open {
            path: path.clone(),
            source,
        };
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| open_err(e.into()))?;

        // Make sure both tables exist and this file has its instance id.
        let txn = db.begin_write().map_err(|e| open_err(e.into()))?;
        let instance = {
            let _ = txn.open_table(EVENTS).map_err(|e| open_err(e.into()))?;
            let mut meta = txn.open_table(META).map_err(|e| open_err(e.into()))?;
            let existing = meta
                .get(META_INSTANCE)
                .map_err(|e| open_err(e.into()))?
                .map(|v| v.value());
            match existing {
                Some(id) => id,
                None => {
                    let id = rand::random::<u64>();
                    meta.insert(META_INSTANCE, id)
                        .map_err(|e| open_err(e.into()))?;
                    id
                }
            }
        };
        txn.commit().map_err(|e| open_err(e.into()))?;

        let now_unix = clock.unix_seconds();
        let now = Instant::now();
        let mut index = Index::default();
        {
            let read = db.begin_read().map_err(|e| open_err(e.into()))?;
            let table = read.open_table(EVENTS).map_err(|e| open_err(e.into()))?;
            for row in table.iter().map_err(|e| open_err(e.into()))? {
                let (key, value) = row.map_err(|e| open_err(e.into()))?;
                let id = key.value();
                let record = Record::decode(value.value()).map_err(|_| QueueError::Corrupt(id))?;
                let wait = (record.next_attempt_at - now_unix).max(0) as u64;
                let due = now + Duration::from_secs(wait);
                index.insert(id, record.received_at, State::Scheduled(due));
            }
        }

        Ok(Self {
            db: Arc::new(db),
            path,
            instance,
            clock,
            index: Arc::new(Mutex::new(index)),
            notify: Arc::new(Notify::new()),
        })
    }

    /// Stores the event durably and schedules it for immediate delivery. Returns only after the
    /// commit has reached the disk; never waits for delivery.
    pub async fn enqueue(&self, event: NewEvent) -> Result<EventId, QueueError> {
        self.store_new(event, Duration::ZERO).await.map(EventId)
    }

    /// Like [`enqueue`](Self::enqueue), but the worker does not see the event until the returned
    /// guard is released (or dropped), and it can still be discarded. This lets the pipeline mark
    /// the replay cache after the event is durable and drop its copy if a duplicate won the race,
    /// without the worker delivering it in between. The hold is a lease of [`HOLD_LEASE`]: if the
    /// caller vanishes (a cancelled request) the event is delivered anyway, and after a crash every
    /// stored event is scheduled on reopen. Nothing accepted is ever stranded.
    pub async fn enqueue_held(&self, event: NewEvent) -> Result<HeldEvent<'_>, QueueError> {
        let id = self.store_new(event, HOLD_LEASE).await?;
        Ok(HeldEvent {
            queue: self,
            id: EventId(id),
            done: false,
        })
    }

    /// Commits the event and indexes it due `hold` from now. The index update happens in the
    /// storage task itself, so a caller cancelled mid-commit cannot leave a stored event that
    /// the worker never sees.
    async fn store_new(&self, event: NewEvent, hold: Duration) -> Result<u64, QueueError> {
        if event.body.len() > MAX_BODY_BYTES {
            return Err(QueueError::TooLarge(event.body.len()));
        }
        if !is_http_url(&event.target) {
            return Err(QueueError::InvalidTarget);
        }
        let now = self.clock.unix_seconds();
        let record = Record {
            attempts: 0,
            received_at: now,
            next_attempt_at: now,
            route: event.route,
            target: event.target,
            dedup_key: event.dedup_key,
            request_id: event.request_id,
            body: event.body,
        };
        let bytes = record.encode();
        let db = self.db.clone();
        let index = self.index.clone();
        let notify = self.notify.clone();
        let due = Instant::now() + hold;
        blocking(move || -> Result<u64, QueueError> {
            let txn = db.begin_write()?;
            let id = {
                let mut meta = txn.open_table(META)?;
                let seq = meta.get(META_NEXT_SEQ)?.map(|v| v.value()).unwrap_or(1);
                meta.insert(META_NEXT_SEQ, seq + 1)?;
                let mut events = txn.open_table(EVENTS)?;
                events.insert(seq, bytes.as_slice())?;
                seq
            };
            // Default durability is `Immediate`: the commit is on disk when this returns.
            txn.commit()?;
            index.lock().insert(id, now, State::Scheduled(due));
            notify.notify_one();
            Ok(id)
        })
        .await
    }

    /// Commits one small write (a probe value in the meta table), proving the file still takes
    /// commits the way a new event would. For readiness checks; never touches events.
    pub async fn probe_write(&self) -> Result<(), QueueError> {
        let db = self.db.clone();
        let now = u64::try_from(self.clock.unix_seconds()).unwrap_or(0);
        blocking(move || -> Result<(), QueueError> {
            let txn = db.begin_write()?;
            txn.open_table(META)?.insert(META_PROBE, now)?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    /// Takes up to `limit` events that are due now and marks them in flight.
    pub async fn take_due(&self, limit: usize) -> Result<Vec<QueuedEvent>, QueueError> {
        let now = Instant::now();
        let ids: Vec<u64> = {
            let mut index = self.index.lock();
            let due: Vec<u64> = index
                .schedule
                .iter()
                .take_while(|(at, _)| *at <= now)
                .take(limit)
                .map(|(_, id)| *id)
                .collect();
            for id in &due {
                index.set_state(*id, State::InFlight);
            }
            due
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.db.clone();
        let wanted = ids.clone();
        let read = blocking(move || -> Result<Vec<(u64, Record)>, QueueError> {
            let txn = db.begin_read()?;
            let table = txn.open_table(EVENTS)?;
            let mut out = Vec::with_capacity(wanted.len());
            for id in wanted {
                if let Some(value) = table.get(id)? {
                    let record =
                        Record::decode(value.value()).map_err(|_| QueueError::Corrupt(id))?;
                    out.push((id, record));
                }
            }
            Ok(out)
        })
        .await;
        match read {
            Ok(records) => {
                if records.len() < ids.len() {
                    // Removed by an ack whose caller went away before updating the index.
                    let found: BTreeSet<u64> = records.iter().map(|(id, _)| *id).collect();
                    let mut index = self.index.lock();
                    for id in ids.iter().filter(|id| !found.contains(id)) {
                        index.remove(*id);
                    }
                }
                Ok(records
                    .into_iter()
                    .map(|(id, r)| QueuedEvent {
                        id: EventId(id),
                        public_id: self.public_id(EventId(id)),
                        route: r.route,
                        target: r.target,
                        dedup_key: r.dedup_key,
                        request_id: r.request_id,
                        body: r.body,
                        received_at: r.received_at,
                        attempts: r.attempts,
                    })
                    .collect())
            }
            Err(e) => {
                // Put them back a little later rather than leaving them stuck in flight.
                let later = Instant::now() + Duration::from_secs(1);
                let mut index = self.index.lock();
                for id in ids {
                    index.set_state(id, State::Scheduled(later));
                }
                Err(e)
            }
        }
    }

    /// The order service acknowledged the event: remove it for good.
    pub async fn ack(&self, id: EventId) -> Result<(), QueueError> {
        self.remove_stored(id).await?;
        self.index.lock().remove(id.0);
        Ok(())
    }

    /// The attempt failed: count it and schedule the next one `delay` from now. The in-memory
    /// schedule is updated even if persisting the bookkeeping fails, so the event is never stuck.
    /// Returns the new attempt count.
    pub async fn retry_later(
        &self,
        event: &QueuedEvent,
        delay: Duration,
    ) -> Result<u32, QueueError> {
        let id = event.id.0;
        let attempts = event.attempts.saturating_add(1);
        {
            let mut index = self.index.lock();
            match index.entries.get(&id) {
                Some(e) if e.state == State::InFlight => {}
                _ => return Err(QueueError::NotInFlight(id)),
            }
            index.set_state(id, State::Scheduled(Instant::now() + delay));
        }
        let next_attempt_at = self
            .clock
            .unix_seconds()
            .saturating_add(delay.as_secs().min(i64::MAX as u64) as i64);
        let db = self.db.clone();
        blocking(move || -> Result<(), QueueError> {
            let txn = db.begin_write()?;
            {
                let mut events = txn.open_table(EVENTS)?;
                let current = events.get(id)?.map(|v| v.value().to_vec());
                if let Some(mut bytes) = current {
                    Record::patch_retry(&mut bytes, attempts, next_attempt_at)
                        .map_err(|_| QueueError::Corrupt(id))?;
                    events.insert(id, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await?;
        self.notify.notify_one();
        Ok(attempts)
    }

    /// Puts an in-flight event back for another attempt `delay` from now without counting a
    /// failure (for example when the worker stops before it could try).
    pub fn release_in_flight(&self, id: EventId, delay: Duration) {
        let mut index = self.index.lock();
        if matches!(index.entries.get(&id.0), Some(e) if e.state == State::InFlight) {
            index.set_state(id.0, State::Scheduled(Instant::now() + delay));
        }
        drop(index);
        self.notify.notify_one();
    }

    /// When the next scheduled event becomes due, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        self.index.lock().schedule.iter().next().map(|(at, _)| *at)
    }

    /// Resolves when an event has been added or rescheduled since the last wake-up.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Events stored and not yet acknowledged (scheduled, in flight or held).
    pub fn depth(&self) -> usize {
        self.index.lock().depth()
    }

    /// Age in seconds of the oldest unacknowledged event; 0 when the queue is empty.
    pub fn oldest_age_seconds(&self) -> i64 {
        let oldest = self.index.lock().oldest_received_at();
        oldest.map_or(0, |t| (self.clock.unix_seconds() - t).max(0))
    }

    /// `x-gateway-event-id`: this file's random instance id and the sequence number, so two
    /// gateways (or a recreated file) never hand a receiver the same id for different events.
    pub fn public_id(&self, id: EventId) -> String {
        format!("{:016x}-{}", self.instance, id.0)
    }

    /// Registers `webhook_queue_depth` and `webhook_queue_oldest_age_seconds`, both computed at
    /// scrape time (pass `telemetry::metrics::registry()` in production). Register once.
    pub fn register_metrics(
        &self,
        registry: &prometheus::Registry,
    ) -> Result<(), prometheus::Error> {
        let index = self.index.clone();
        let depth = prometheus::PullingGauge::new(
            "webhook_queue_depth",
            "Accepted webhooks not yet acknowledged by the order service.",
            Box::new(move || index.lock().depth() as f64),
        )?;
        let index = self.index.clone();
        let clock = self.clock.clone();
        let age = prometheus::PullingGauge::new(
            "webhook_queue_oldest_age_seconds",
            "Age of the oldest webhook not yet acknowledged by the order service (0 when empty).",
            Box::new(move || {
                let oldest = index.lock().oldest_received_at();
                oldest.map_or(0.0, |t| (clock.unix_seconds() - t).max(0) as f64)
            }),
        )?;
        registry.register(Box::new(depth))?;
        registry.register(Box::new(age))?;
        Ok(())
    }

    async fn remove_stored(&self, id: EventId) -> Result<(), QueueError> {
        let db = self.db.clone();
        blocking(move || -> Result<(), QueueError> {
            let txn = db.begin_write()?;
            {
                let mut events = txn.open_table(EVENTS)?;
                events.remove(id.0)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }
}

/// A durable event not yet visible to the delivery worker (for up to [`HOLD_LEASE`]).
/// Dropping it releases it.
#[must_use = "release or discard the held event"]
pub struct HeldEvent<'q> {
    queue: &'q WebhookQueue,
    id: EventId,
    done: bool,
}

impl HeldEvent<'_> {
    pub fn id(&self) -> EventId {
        self.id
    }

    /// Hands the event to the delivery worker.
    pub fn release(mut self) {
        self.release_now();
    }

    /// Removes the event without delivering it (a duplicate that lost the replay race).
    pub async fn discard(mut self) -> Result<(), QueueError> {
        self.done = true;
        match self.queue.remove_stored(self.id).await {
            Ok(()) => {
                self.queue.index.lock().remove(self.id.0);
                Ok(())
            }
            Err(e) => {
                // Still stored: deliver it rather than leave it stranded until a restart.
                self.done = false;
                self.release_now();
                Err(e)
            }
        }
    }

    fn release_now(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let mut index = self.queue.index.lock();
        // Only a still-waiting event moves: after the lease the worker may already have it.
        let waiting = matches!(
            index.entries.get(&self.id.0),
            Some(Entry {
                state: State::Scheduled(_),
                ..
            })
        );
        if waiting {
            index.set_state(self.id.0, State::Scheduled(Instant::now()));
        }
        drop(index);
        if waiting {
            self.queue.notify.notify_one();
        }
    }
}

impl Drop for HeldEvent<'_> {
    fn drop(&mut self) {
        self.release_now();
    }
}

fn is_http_url(target: &str) -> bool {
    match reqwest::Url::parse(target) {
        Ok(url) => matches!(url.scheme(), "http" | "https") && url.host().is_some(),
        Err(_) => false,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueueError> + Send + 'static,
) -> Result<T, QueueError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| QueueError::Task)?
}

#[cfg(test)]
mod tests;
