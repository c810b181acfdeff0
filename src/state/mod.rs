//! Durable state shared by the gateway's long-lived parts: the webhook queue and its dedupe index,
//! the block list (kill switch entries written at runtime), shop tokens (sealed by the caller) and
//! short leases that make one replica of a fleet do a job at a time.
//!
//! One interface, [`StateStore`], and two backends chosen by `state.backend`:
//! - [`embedded`]: one local redb file (or memory when nothing needs to be durable). One process.
//! - [`postgres`]: PostgreSQL shared by any number of replicas; events are claimed with
//!   `FOR UPDATE SKIP LOCKED` and a lease, so a replica that dies strands nothing.
//!
//! Times crossing this interface are unix milliseconds from the gateway's clock. Every method is
//! a single atomic step on the backend (one transaction or one statement): accepting a webhook
//! records its dedupe key and stores the event together, so a crash can neither lose an
//! acknowledged event nor mark one seen that was not stored.

pub mod blocks;
pub mod embedded;
mod error;
pub mod health;
pub mod postgres;
mod types;

pub use error::StateError;
pub use types::*;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::config::{StateBackendConfig, StateConfig};

/// The one interface both backends implement.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// `embedded` or `postgres`, for metrics and `/readyz`.
    fn backend(&self) -> &'static str;

    /// A random id fixed when the store was created; part of every public event id, so two stores
    /// never hand a receiver the same id for different events.
    fn instance(&self) -> u64;

    /// Signalled when the block list may have changed (a local write, or a notification from
    /// another replica). Polling covers anything a notification misses.
    fn block_changes(&self) -> Arc<Notify>;

    /// A cheap round trip that proves the backend answers.
    async fn ping(&self) -> Result<(), StateError>;

    /// Listens for change notifications from other replicas until `shutdown` (Postgres
    /// `LISTEN`); a single-process backend has none to listen for.
    async fn listen(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    }

    // ------------------------------------------------------------ webhook queue

    /// Records `event.dedup_key` until `dedup_until` and stores the event, due at once, in one
    /// atomic step; or, when the key is already recorded and unexpired, does nothing and answers
    /// [`Accepted::Duplicate`].
    async fn enqueue(
        &self,
        event: NewEvent,
        dedup_until: i64,
        now: i64,
    ) -> Result<Accepted, StateError>;

    /// Claims up to `limit` due events until `lease_until`: nobody else is handed them before
    /// then unless the claim is given back. Each claim carries a fresh lease token.
    async fn claim(
        &self,
        limit: usize,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<ClaimedEvent>, StateError>;

    /// The order service acknowledged the event: it is removed for good (whoever holds it).
    async fn ack(&self, id: u64) -> Result<(), StateError>;

    /// The attempt failed: records the attempt count and the next attempt time, and gives the
    /// claim back. A no-op when the claim was lost (the lease expired and someone else took it).
    async fn retry(
        &self,
        claim: EventRef,
        attempts: u32,
        next_attempt_at: i64,
    ) -> Result<(), StateError>;

    /// The event is too old to keep retrying: it stays stored, in the dead-letter state, and is
    /// never handed out again. A no-op when the claim was lost.
    async fn dead_letter(&self, claim: EventRef, attempts: u32, now: i64)
    -> Result<(), StateError>;

    /// Gives a claim back without counting an attempt (shutdown), due at `now`.
    async fn release(&self, claim: EventRef, now: i64) -> Result<(), StateError>;

    /// Live and dead-lettered events, and the oldest live one's arrival.
    async fn queue_stats(&self) -> Result<QueueStats, StateError>;

    /// Forgets up to `limit` dedupe keys that expired before `now`; returns how many.
    async fn purge_dedupe(&self, now: i64, limit: usize) -> Result<u64, StateError>;

    /// Up to `limit` dead-lettered events with an id above `after`, by id.
    async fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<DeadLetter>, StateError>;

    /// Moves a dead-lettered event back to the live queue, due at `now` with its attempts reset;
    /// `false` when no dead letter has that id.
    async fn replay_dead_letter(&self, id: u64, now: i64) -> Result<bool, StateError>;

    // ------------------------------------------------------------ block list

    /// Adds an entry; returns its id. Every replica sees it at its next block-list refresh.
    async fn add_block(&self, block: NewBlock, now: i64) -> Result<u64, StateError>;

    /// Removes an entry; `false` when there was none with that id.
    async fn remove_block(&self, id: u64) -> Result<bool, StateError>;

    /// A number that changes whenever the block list does.
    async fn block_version(&self) -> Result<u64, StateError>;

    /// The version and every entry (expired ones included; readers skip those).
    async fn blocks(&self) -> Result<(u64, Vec<BlockEntry>), StateError>;

    // ------------------------------------------------------------ tokens and leases

    /// The sealed tokens of `shop`, if any were stored.
    async fn load_tokens(&self, shop: &str) -> Result<Option<SealedTokens>, StateError>;

    /// Stores `tokens` unless the stored generation is already as new; `true` when written.
    async fn store_tokens(
        &self,
        shop: &str,
        tokens: &SealedTokens,
        now: i64,
    ) -> Result<bool, StateError>;

    /// Takes the lease `name` for `owner` until `until` when it is free, expired or already
    /// `owner`'s; `true` when `owner` now holds it.
    async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StateError>;

    /// Gives the lease back if `owner` still holds it.
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StateError>;

    // ------------------------------------------------------------ audit log

    /// Appends `entry` after the chain's head in one atomic step (serialized across a fleet, so
    /// the chain stays linear) and returns the sealed record.
    async fn audit_append(&self, entry: AuditEntry) -> Result<AuditRecord, StateError>;

    /// Up to `limit` records with a sequence number above `after`, in order.
    async fn audit_range(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, StateError>;

    /// The recorded head of the chain `(seq, hash)`; `None` before the first record.
    async fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>, StateError>;
    /// Deletes the sealed tokens of `shop`; `false` when there were none.
    async fn delete_tokens(&self, shop: &str) -> Result<bool, StateError>;

    // ------------------------------------------------------------ seller authorization

    /// Stores a pending authorization under `key` (the hash of its `state`), and forgets
    /// expired ones (unix ms `now`).
    async fn put_authorization_state(
        &self,
        key: &str,
        state: &AuthorizationState,
        now: i64,
    ) -> Result<(), StateError>;

    /// Removes the authorization stored under `key` and returns it if it had not expired at
    /// `now` (unix ms): a state is taken at most once, whatever the answer.
    async fn take_authorization_state(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<AuthorizationState>, StateError>;

    /// Inserts or replaces a shop record; the shop list's version changes.
    async fn put_shop(&self, shop: &ShopRecord) -> Result<(), StateError>;

    /// A number that changes whenever a shop record does.
    async fn shop_version(&self) -> Result<u64, StateError>;

    /// The version and every shop record.
    async fn shops(&self) -> Result<(u64, Vec<ShopRecord>), StateError>;
}

pub type SharedState = Arc<dyn StateStore>;

/// Opens the configured backend: creates or migrates its schema (refusing a newer one), and for
/// Postgres checks that the server answers. Blocking: call at start-up, not on a runtime thread
/// that serves requests (it runs its own short-lived runtime for the Postgres work).
pub fn open(config: &StateConfig, clock: SharedClock) -> Result<SharedState, StateError> {
    match &config.backend {
        StateBackendConfig::Embedded { path } => {
            let store = embedded::EmbeddedStore::open(path.as_deref(), clock)?;
            Ok(Arc::new(store))
        }
        StateBackendConfig::Postgres(settings) => {
            let store = postgres::PostgresStore::open(settings, config.timeout)?;
            Ok(Arc::new(store))
        }
    }
}

/// Runs `fut` to completion on a fresh current-thread runtime in a scoped thread, so start-up
/// code can do async work whether or not the caller is itself inside a runtime (tests are).
/// Connections made here die with that runtime: use it only for one-off work.
pub fn block_on_startup<F, T>(fut: F) -> Result<T, StateError>
where
    F: std::future::Future<Output = Result<T, StateError>> + Send,
    T: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StateError::Unavailable(format!("start-up runtime: {e}")))?;
                rt.block_on(fut)
            })
            .join()
            .unwrap_or_else(|_| Err(StateError::Unavailable("start-up task panicked".into())))
    })
}

#[cfg(test)]
mod tests;
