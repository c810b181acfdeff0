//! The embedded backend: one redb file holding the webhook queue, its dedupe index, sealed shop
//! tokens, leases and the block list; or the same tables in memory when no path is configured
//! (nothing then outlives the process, which `validate` allows only when nothing needs to).
//!
//! One process owns the file (redb locks it). Every write that matters (an accepted webhook, an
//! acknowledgement, retry bookkeeping, tokens, blocks) commits with immediate durability before it
//! returns; claims and releases do not need to, since every claim is given back when the file is
//! opened again. Due events are found through an index keyed by (due time, id), so finding work
//! never scans the queue.
//!
//! A failed write (a full disk) can leave redb refusing every later transaction until the file is
//! reopened; the store then reopens it on the next operation, so it recovers by itself once the
//! disk has room again.

mod record;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{
    Accepted, AuditEntry, AuditRecord, AuthorizationState, BlockEntry, BlockKind, ClaimedEvent,
    DeadLetter, EventRef, NewBlock, NewEvent, QueueStats, SealedTokens, ShopRecord, ShopStatus,
    StateError, StateStore,
};
use crate::clock::SharedClock;
use record::Record;

/// Bumped with every change of the tables below; a file with a larger number is refused.
/// 1: queue, dedupe, tokens, leases, blocks. 2: the audit log. 3: seller authorization states
/// and shops. 4: queued events carry their ingress request's trace context (record version
/// 3); an older binary must not read them.
pub const SCHEMA_VERSION: u64 = 4;

const META: TableDefinition<&str, u64> = TableDefinition::new("state_meta");
/// Events by id; the value is an encoded [`Record`].
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("webhook_queue");
/// (due at in unix ms, id) of every live event.
const DUE: TableDefinition<(i64, u64), ()> = TableDefinition::new("webhook_due");
/// Dedupe key -> expiry in unix ms.
const DEDUPE: TableDefinition<&str, i64> = TableDefinition::new("webhook_dedupe");
/// (expiry, key), to forget expired keys without a scan.
const DEDUPE_EXPIRY: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("webhook_dedupe_expiry");
/// Shop id -> generation (8 bytes LE) + sealed tokens.
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("shop_tokens");
/// Lease name -> expiry (8 bytes LE) + owner.
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
/// Block entries by id, as JSON.
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Audit records by sequence number, as JSON ([`StoredAudit`]); schema version 2.
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_log");
/// The chain's head under [`AUDIT_HEAD_KEY`]: seq (8 bytes BE) and hash (32 bytes).
pub const AUDIT_HEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_head");
pub const AUDIT_HEAD_KEY: &str = "head";
/// Hash of an authorization `state` -> JSON of the pending authorization.
const AUTH_STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("authorization_states");
/// Shop id -> JSON of its record.
const SHOPS: TableDefinition<&str, &[u8]> = TableDefinition::new("shops");

/// The queue file's tables before the state layer (schema version 0).
const V0_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("webhook_events");
const V0_META: TableDefinition<&str, u64> = TableDefinition::new("webhook_meta");

const META_SCHEMA: &str = "schema_version";
const META_INSTANCE: &str = "instance";
const META_NEXT_EVENT: &str = "next_event";
const META_NEXT_BLOCK: &str = "next_block";
const META_BLOCK_VERSION: &str = "block_version";
const META_SHOP_VERSION: &str = "shop_version";

/// Largest body the queue stores; the route's body limit is normally far smaller.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Longest dedupe key accepted; notification ids and hex digests are far shorter.
pub const MAX_KEY_LEN: usize = 256;
/// redb's page cache. redb moves every page it writes into this cache until it is full, and the
/// store is written at least once a second (the readiness ping), so an idle gateway's RSS grows
/// by the whole cache within minutes of starting, with pages nobody reads again. The store is
/// write-mostly; the few reads (dedupe, queue, tokens) fit in a small cache, and the OS page
/// cache serves the rest.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Where the database lives, so it can be opened again after an I/O failure.
#[derive(Clone)]
enum Source {
    Memory,
    File(PathBuf),
    /// Tests: a database over a storage backend they control (a disk that fills up).
    #[cfg(test)]
    Custom(Arc<dyn Fn() -> Result<Database, StateError> + Send + Sync>),
}

impl Source {
    fn open(&self) -> Result<Database, StateError> {
        match self {
            Self::Memory => open_db(None),
            Self::File(path) => open_db(Some(path)),
            #[cfg(test)]
            Self::Custom(open) => open(),
        }
    }

    fn reopenable(&self) -> bool {
        !matches!(self, Self::Memory)
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::File(path) => write!(f, "{}", path.display()),
            #[cfg(test)]
            Self::Custom(_) => f.write_str("custom"),
        }
    }
}

/// The embedded store.
pub struct EmbeddedStore {
    source: Source,
    /// `None` between closing a failed file and reopening it.
    db: Mutex<Option<Arc<Database>>>,
    /// Set after an I/O failure: the next operation reopens the file first.
    reopen: AtomicBool,
    instance: u64,
    blocks_changed: Arc<Notify>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StateError {
    StateError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the file, migrates an older layout, refuses a newer one, and gives back
    /// every claim a previous process held. `None`: an in-memory store. Blocking.
    pub fn open(path: Option<&Path>, clock: SharedClock) -> Result<Self, StateError> {
        let source = match path {
            Some(path) => Source::File(path.to_path_buf()),
            None => Source::Memory,
        };
        Self::open_source(source, clock)
    }

    fn open_source(source: Source, clock: SharedClock) -> Result<Self, StateError> {
        let db = source.open()?;
        let now = clock.unix_seconds().saturating_mul(1000);
        let instance = migrate(&db, now)?;
        Ok(Self {
            source,
            db: Mutex::new(Some(Arc::new(db))),
            reopen: AtomicBool::new(false),
            instance,
            blocks_changed: Arc::new(Notify::new()),
        })
    }

    /// The database, reopened first if a previous operation failed on I/O.
    fn db(&self) -> Result<Arc<Database>, StateError> {
        let mut slot = self.db.lock();
        if self.source.reopenable() && (self.reopen.load(Ordering::SeqCst) || slot.is_none()) {
            if let Some(old) = slot.take() {
                match Arc::try_unwrap(old) {
                    // The last handle: dropping it releases the file lock.
                    Ok(old) => drop(old),
                    Err(still_shared) => {
                        // An operation still runs on it; the next one tries again.
                        *slot = Some(still_shared);
                        return Err(StateError::Unavailable(
                            "state file is being reopened after an I/O failure".into(),
                        ));
                    }
                }
            }
            let fresh = self.source.open()?;
            tracing::info!(source = ?self.source, "state file reopened after an I/O failure");
            *slot = Some(Arc::new(fresh));
            self.reopen.store(false, Ordering::SeqCst);
        }
        slot.clone()
            .ok_or_else(|| StateError::Unavailable("state file is not open".into()))
    }

    /// Runs `op` on the blocking pool with the database; an I/O failure schedules a reopen.
    async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StateError> {
        let db = self.db()?;
        let result = tokio::task::spawn_blocking(move || op(&db))
            .await
            .map_err(|_| StateError::Unavailable("state task failed".into()))?;
        result.map_err(|e| {
            if matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo) {
                self.reopen.store(true, Ordering::SeqCst);
            }
            match e {
                redb::Error::Corrupted(what) => StateError::Corrupt(what),
                other => unavailable(other),
            }
        })
    }
}

fn open_db(path: Option<&Path>) -> Result<Database, StateError> {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    match path {
        Some(path) => builder
            .create(path)
            .map_err(|e| StateError::Unavailable(format!("{}: {e}", path.display()))),
        None => builder
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(unavailable),
    }
}

/// Creates the tables, moves a version-0 queue file's events in, records the schema version,
/// and gives back every claim. Returns the instance id.
fn migrate(db: &Database, now: i64) -> Result<u64, StateError> {
    let txn = db.begin_write().map_err(unavailable)?;
    let instance = migrate_in(&txn, now).map_err(|e| match e {
        MigrateError::Db(e) => unavailable(e),
        MigrateError::State(e) => e,
    })?;
    txn.commit().map_err(unavailable)?;
    Ok(instance)
}

enum MigrateError {
    Db(redb::Error),
    State(StateError),
}

impl<E: Into<redb::Error>> From<E> for MigrateError {
    fn from(e: E) -> Self {
        Self::Db(e.into())
    }
}

fn migrate_in(txn: &WriteTransaction, now: i64) -> Result<u64, MigrateError> {
    let has_v0 = txn.list_tables()?.any(|t| t.name() == V0_EVENTS.name());
    let mut meta = txn.open_table(META)?;
    let found = meta.get(META_SCHEMA)?.map(|v| v.value()).unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(MigrateError::State(StateError::NewerSchema {
            found: found as i64,
            supported: SCHEMA_VERSION as i64,
        }));
    }
    let mut events = txn.open_table(EVENTS)?;
    let mut due = txn.open_table(DUE)?;
    txn.open_table(DEDUPE)?;
    txn.open_table(DEDUPE_EXPIRY)?;
    txn.open_table(TOKENS)?;
    txn.open_table(LEASES)?;
    txn.open_table(BLOCKS)?;
    txn.open_table(AUDIT)?;
    txn.open_table(AUDIT_HEAD)?;
    // Version 3: seller authorization states and shop records (new tables, nothing to move).
    txn.open_table(AUTH_STATES)?;
    txn.open_table(SHOPS)?;
    if found == 0 && has_v0 {
        // The queue file of earlier versions: keep its instance id and sequence numbers, so
        // events already acknowledged to TikTok keep their `x-gateway-event-id`.
        let old_meta = txn.open_table(V0_META)?;
        for key in ["instance", "next_seq"] {
            if let Some(v) = old_meta.get(key)?.map(|v| v.value()) {
                let name = if key == "instance" {
                    META_INSTANCE
                } else {
                    META_NEXT_EVENT
                };
                meta.insert(name, v)?;
            }
        }
        drop(old_meta);
        let old = txn.open_table(V0_EVENTS)?;
        for row in old.iter()? {
            let (id, bytes) = row?;
            let id = id.value();
            let record = Record::decode_v1(bytes.value()).map_err(|_| {
                MigrateError::State(StateError::Corrupt(format!("queued event {id}")))
            })?;
            due.insert((record.next_attempt_at, id), ())?;
            events.insert(id, record.encode().as_slice())?;
        }
        drop(old);
        txn.delete_table(V0_EVENTS)?;
        txn.delete_table(V0_META)?;
    }
    meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
    let existing = meta.get(META_INSTANCE)?.map(|v| v.value());
    let instance = match existing {
        Some(id) => id,
        None => {
            let id = rand::random::<u64>();
            meta.insert(META_INSTANCE, id)?;
            id
        }
    };
    // Claims held by a previous process are given back: nobody else can hold this file.
    let mut claimed = Vec::new();
    for row in events.iter()? {
        let (id, bytes) = row?;
        let mut record = Record::decode(bytes.value()).map_err(|_| {
            MigrateError::State(StateError::Corrupt(format!("queued event {}", id.value())))
        })?;
        if record.lease != 0 && record.dead_at == 0 {
            let old_due = record.next_attempt_at;
            record.lease = 0;
            record.next_attempt_at = now;
            claimed.push((id.value(), old_due, record));
        }
    }
    for (id, old_due, record) in claimed {
        due.remove((old_due, id))?;
        due.insert((record.next_attempt_at, id), ())?;
        events.insert(id, record.encode().as_slice())?;
    }
    Ok(instance)
}

fn next_value(meta: &mut redb::Table<&str, u64>, key: &str) -> Result<u64, redb::Error> {
    let next = meta.get(key)?.map(|v| v.value()).unwrap_or(1);
    meta.insert(key, next + 1)?;
    Ok(next)
}

fn bump_block_version(meta: &mut redb::Table<&str, u64>) -> Result<(), redb::Error> {
    let v = meta
        .get(META_BLOCK_VERSION)?
        .map(|v| v.value())
        .unwrap_or(0);
    meta.insert(META_BLOCK_VERSION, v + 1)?;
    Ok(())
}

fn corrupt(id: u64) -> redb::Error {
    redb::Error::Corrupted(format!("queued event {id}"))
}

/// Rewrites a live event's record and due-index entry under the claim `claim`; `false` (and no
/// change) when the claim no longer holds it.
fn update_claimed(
    txn: &WriteTransaction,
    claim: EventRef,
    change: impl FnOnce(&mut Record),
) -> Result<bool, redb::Error> {
    let mut events = txn.open_table(EVENTS)?;
    let Some(mut record) = events
        .get(claim.id)?
        .map(|v| Record::decode(v.value()).map_err(|_| corrupt(claim.id)))
        .transpose()?
    else {
        return Ok(false);
    };
    if record.lease != claim.lease || record.dead_at != 0 {
        return Ok(false);
    }
    let mut due = txn.open_table(DUE)?;
    due.remove((record.next_attempt_at, claim.id))?;
    change(&mut record);
    if record.dead_at == 0 {
        due.insert((record.next_attempt_at, claim.id), ())?;
    }
    events.insert(claim.id, record.encode().as_slice())?;
    Ok(true)
}

#[derive(Serialize, Deserialize)]
struct StoredAuthState {
    subject: String,
    app: String,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredShop {
    app: String,
    cipher: String,
    name: String,
    region: String,
    status: String,
    changed_by: String,
    updated_at: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredBlock {
    kind: String,
    value: String,
    reason: String,
    expires_at: Option<i64>,
    created_at: i64,
}

/// One audit record as stored (the seq is the key). Public so tests and tools can read the file.
#[derive(Serialize, Deserialize)]
pub struct StoredAudit {
    pub time: i64,
    pub action: String,
    pub outcome: String,
    pub actor: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl StoredAudit {
    pub fn from_record(r: &AuditRecord) -> Self {
        Self {
            time: r.time,
            action: r.action.clone(),
            outcome: r.outcome.clone(),
            actor: r.actor.clone(),
            detail: r.detail.clone(),
            prev_hash: hex::encode(r.prev_hash),
            hash: hex::encode(r.hash),
        }
    }

    /// `None` when the bytes are not a record (damaged).
    pub fn decode(seq: u64, bytes: &[u8]) -> Option<AuditRecord> {
        let s: Self = serde_json::from_slice(bytes).ok()?;
        let h = |t: &str| {
            hex::decode(t)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        };
        Some(AuditRecord {
            seq,
            time: s.time,
            action: s.action,
            outcome: s.outcome,
            actor: s.actor,
            detail: s.detail,
            prev_hash: h(&s.prev_hash)?,
            hash: h(&s.hash)?,
        })
    }
}

/// Encodes the head row: seq then hash.
pub fn encode_audit_head(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut out = seq.to_be_bytes().to_vec();
    out.extend_from_slice(hash);
    out
}

fn decode_audit_head(bytes: &[u8]) -> Option<(u64, [u8; 32])> {
    let (seq, hash) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*seq), <[u8; 32]>::try_from(hash).ok()?))
}

#[async_trait]
impl StateStore for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn instance(&self) -> u64 {
        self.instance
    }

    fn block_changes(&self) -> Arc<Notify> {
        self.blocks_changed.clone()
    }

    async fn ping(&self) -> Result<(), StateError> {
        // A write proves more than a read: a full disk fails here, not only on the next webhook.
        self.run(|db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            {
                let mut meta = txn.open_table(META)?;
                let n = meta.get("ping")?.map(|v| v.value()).unwrap_or(0);
                meta.insert("ping", n.wrapping_add(1))?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn enqueue(
        &self,
        event: NewEvent,
        dedup_until: i64,
        now: i64,
    ) -> Result<Accepted, StateError> {
        if event.body.len() > MAX_BODY_BYTES {
            return Err(StateError::Invalid(format!(
                "body of {} bytes exceeds the queue limit",
                event.body.len()
            )));
        }
        if event.dedup_key.is_empty() || event.dedup_key.len() > MAX_KEY_LEN {
            return Err(StateError::Invalid(
                "dedupe key is empty or too long".into(),
            ));
        }
        self.run(move |db| {
            let txn = db.begin_write()?;
            let accepted = {
                let mut dedupe = txn.open_table(DEDUPE)?;
                let mut expiry = txn.open_table(DEDUPE_EXPIRY)?;
                let key = event.dedup_key.as_str();
                let seen = dedupe.get(key)?.map(|v| v.value());
                match seen {
                    Some(until) if until > now => Accepted::Duplicate,
                    _ => {
                        if let Some(old) = seen {
                            expiry.remove((old, key))?;
                        }
                        dedupe.insert(key, dedup_until)?;
                        expiry.insert((dedup_until, key), ())?;
                        let mut meta = txn.open_table(META)?;
                        let id = next_value(&mut meta, META_NEXT_EVENT)?;
                        let record = Record {
                            attempts: 0,
                            received_at: event.received_at,
                            next_attempt_at: now,
                            lease: 0,
                            dead_at: 0,
                            route: event.route,
                            target: event.target,
                            dedup_key: event.dedup_key.clone(),
                            request_id: event.request_id,
                            body: event.body,
                            traceparent: event.traceparent.unwrap_or_default(),
                        };
                        txn.open_table(EVENTS)?
                            .insert(id, record.encode().as_slice())?;
                        txn.open_table(DUE)?.insert((now, id), ())?;
                        Accepted::Stored(id)
                    }
                }
            };
            // Default durability is `Immediate`: on disk when this returns, before the 200.
            txn.commit()?;
            Ok(accepted)
        })
        .await
    }

    async fn claim(
        &self,
        limit: usize,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<ClaimedEvent>, StateError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.run(move |db| {
            // Most polls find nothing due: a read transaction says so without a write.
            {
                let read = db.begin_read()?;
                if read
                    .open_table(DUE)?
                    .range(..=(now, u64::MAX))?
                    .next()
                    .is_none()
                {
                    return Ok(Vec::new());
                }
            }
            let mut txn = db.begin_write()?;
            // A lost claim is given back at the next open: no need to wait for the disk.
            txn.set_durability(Durability::None)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            let lease = rand::random::<u64>().max(1);
            let mut out = Vec::new();
            {
                let mut due = txn.open_table(DUE)?;
                let mut events = txn.open_table(EVENTS)?;
                let ids: Vec<(i64, u64)> = due
                    .range(..=(now, u64::MAX))?
                    .take(limit)
                    .map(|row| row.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()?;
                for (at, id) in ids {
                    due.remove((at, id))?;
                    let Some(mut record) = events
                        .get(id)?
                        .map(|v| Record::decode(v.value()).map_err(|_| corrupt(id)))
                        .transpose()?
                    else {
                        continue;
                    };
                    record.lease = lease;
                    record.next_attempt_at = lease_until;
                    due.insert((lease_until, id), ())?;
                    events.insert(id, record.encode().as_slice())?;
                    out.push(ClaimedEvent {
                        claim: EventRef { id, lease },
                        route: record.route,
                        target: record.target,
                        dedup_key: record.dedup_key,
                        request_id: record.request_id,
                        body: record.body,
                        received_at: record.received_at,
                        attempts: record.attempts,
                        traceparent: (!record.traceparent.is_empty()).then_some(record.traceparent),
                    });
                }
            }
            txn.commit()?;
            Ok(out)
        })
        .await
    }

    async fn ack(&self, id: u64) -> Result<(), StateError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            {
                let mut events = txn.open_table(EVENTS)?;
                let removed = events
                    .remove(id)?
                    .map(|v| Record::decode(v.value()).map_err(|_| corrupt(id)))
                    .transpose()?;
                if let Some(record) = removed
                    && record.dead_at == 0
                {
                    txn.open_table(DUE)?.remove((record.next_attempt_at, id))?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn retry(
        &self,
        claim: EventRef,
        attempts: u32,
        next_attempt_at: i64,
    ) -> Result<(), StateError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            update_claimed(&txn, claim, |r| {
                r.attempts = attempts;
                r.next_attempt_at = next_attempt_at;
                r.lease = 0;
            })?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn dead_letter(
        &self,
        claim: EventRef,
        attempts: u32,
        now: i64,
    ) -> Result<(), StateError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            update_claimed(&txn, claim, |r| {
                r.attempts = attempts;
                r.dead_at = now.max(1);
                r.lease = 0;
            })?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn release(&self, claim: EventRef, now: i64) -> Result<(), StateError> {
        self.run(move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            update_claimed(&txn, claim, |r| {
                r.next_attempt_at = now;
                r.lease = 0;
            })?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn queue_stats(&self) -> Result<QueueStats, StateError> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let events = txn.open_table(EVENTS)?;
            let live = txn.open_table(DUE)?.len()?;
            let total = events.len()?;
            // Ids grow with arrival: the first live one is the oldest.
            let mut oldest = None;
            for row in events.iter()? {
                let (id, bytes) = row?;
                let record = Record::decode(bytes.value()).map_err(|_| corrupt(id.value()))?;
                if record.dead_at == 0 {
                    oldest = Some(record.received_at);
                    break;
                }
            }
            Ok(QueueStats {
                live,
                oldest_received_at: oldest,
                dead: total.saturating_sub(live),
            })
        })
        .await
    }

    async fn purge_dedupe(&self, now: i64, limit: usize) -> Result<u64, StateError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let mut n = 0;
            {
                let mut expiry = txn.open_table(DEDUPE_EXPIRY)?;
                let mut dedupe = txn.open_table(DEDUPE)?;
                let old: Vec<(i64, String)> = expiry
                    .range(..(now, ""))?
                    .take(limit)
                    .map(|row| row.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
                    .collect::<Result<_, _>>()?;
                for (at, key) in old {
                    expiry.remove((at, key.as_str()))?;
                    if dedupe.get(key.as_str())?.map(|v| v.value()) == Some(at) {
                        dedupe.remove(key.as_str())?;
                    }
                    n += 1;
                }
            }
            txn.commit()?;
            Ok(n)
        })
        .await
    }

    async fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<DeadLetter>, StateError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let events = txn.open_table(EVENTS)?;
            let mut out = Vec::new();
            for row in events.range(after.saturating_add(1)..)? {
                if out.len() >= limit {
                    break;
                }
                let (id, bytes) = row?;
                let id = id.value();
                let record = Record::decode(bytes.value()).map_err(|_| corrupt(id))?;
                if record.dead_at != 0 {
                    out.push(DeadLetter {
                        id,
                        route: record.route,
                        request_id: record.request_id,
                        received_at: record.received_at,
                        attempts: record.attempts,
                        dead_at: record.dead_at,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn replay_dead_letter(&self, id: u64, now: i64) -> Result<bool, StateError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let replayed = {
                let mut events = txn.open_table(EVENTS)?;
                let record = events
                    .get(id)?
                    .map(|v| Record::decode(v.value()).map_err(|_| corrupt(id)))
                    .transpose()?;
                match record {
                    Some(mut record) if record.dead_at != 0 => {
                        record.dead_at = 0;
                        record.attempts = 0;
                        record.lease = 0;
                        record.next_attempt_at = now;
                        events.insert(id, record.encode().as_slice())?;
                        txn.open_table(DUE)?.insert((now, id), ())?;
                        true
                    }
                    _ => false,
                }
            };
            txn.commit()?;
            Ok(replayed)
        })
        .await
    }

    async fn add_block(&self, block: NewBlock, now: i64) -> Result<u64, StateError> {
        let stored = StoredBlock {
            kind: block.kind.as_str().into(),
            value: block.value,
            reason: block.reason,
            expires_at: block.expires_at,
            created_at: now / 1000,
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| StateError::Invalid(e.to_string()))?;
        let id = self
            .run(move |db| {
                let txn = db.begin_write()?;
                let id = {
                    let mut meta = txn.open_table(META)?;
                    let id = next_value(&mut meta, META_NEXT_BLOCK)?;
                    txn.open_table(BLOCKS)?.insert(id, bytes.as_slice())?;
                    bump_block_version(&mut meta)?;
                    id
                };
                txn.commit()?;
                Ok(id)
            })
            .await?;
        self.blocks_changed.notify_waiters();
        Ok(id)
    }

    async fn remove_block(&self, id: u64) -> Result<bool, StateError> {
        let removed = self
            .run(move |db| {
                let txn = db.begin_write()?;
                let removed = txn.open_table(BLOCKS)?.remove(id)?.is_some();
                if removed {
                    bump_block_version(&mut txn.open_table(META)?)?;
                }
                txn.commit()?;
                Ok(removed)
            })
            .await?;
        if removed {
            self.blocks_changed.notify_waiters();
        }
        Ok(removed)
    }

    async fn block_version(&self) -> Result<u64, StateError> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            Ok(meta
                .get(META_BLOCK_VERSION)?
                .map(|v| v.value())
                .unwrap_or(0))
        })
        .await
    }

    async fn blocks(&self) -> Result<(u64, Vec<BlockEntry>), StateError> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let version = txn
                .open_table(META)?
                .get(META_BLOCK_VERSION)?
                .map(|v| v.value())
                .unwrap_or(0);
            let mut out = Vec::new();
            for row in txn.open_table(BLOCKS)?.iter()? {
                let (id, bytes) = row?;
                let id = id.value();
                let damaged = || redb::Error::Corrupted(format!("block entry {id}"));
                let stored: StoredBlock =
                    serde_json::from_slice(bytes.value()).map_err(|_| damaged())?;
                let kind = BlockKind::parse(&stored.kind).ok_or_else(damaged)?;
                out.push(BlockEntry {
                    id,
                    kind,
                    value: stored.value,
                    reason: stored.reason,
                    expires_at: stored.expires_at,
                    created_at: stored.created_at,
                });
            }
            Ok((version, out))
        })
        .await
    }

    async fn load_tokens(&self, shop: &str) -> Result<Option<SealedTokens>, StateError> {
        let shop = shop.to_owned();
        self.run(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(TOKENS)?;
            let Some(bytes) = table.get(shop.as_str())? else {
                return Ok(None);
            };
            let bytes = bytes.value();
            let (generation, sealed) = bytes
                .split_first_chunk::<8>()
                .ok_or_else(|| redb::Error::Corrupted(format!("tokens of shop {shop}")))?;
            Ok(Some(SealedTokens {
                generation: u64::from_le_bytes(*generation),
                sealed: sealed.to_vec(),
            }))
        })
        .await
    }

    async fn store_tokens(
        &self,
        shop: &str,
        tokens: &SealedTokens,
        _now: i64,
    ) -> Result<bool, StateError> {
        let shop = shop.to_owned();
        let mut bytes = tokens.generation.to_le_bytes().to_vec();
        bytes.extend_from_slice(&tokens.sealed);
        let generation = tokens.generation;
        self.run(move |db| {
            let txn = db.begin_write()?;
            let written = {
                let mut table = txn.open_table(TOKENS)?;
                let stored = table.get(shop.as_str())?.and_then(|v| {
                    v.value()
                        .split_first_chunk::<8>()
                        .map(|(g, _)| u64::from_le_bytes(*g))
                });
                if stored.is_some_and(|g| g >= generation) {
                    false
                } else {
                    table.insert(shop.as_str(), bytes.as_slice())?;
                    true
                }
            };
            txn.commit()?;
            Ok(written)
        })
        .await
    }

    async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StateError> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.run(move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            let taken = {
                let mut leases = txn.open_table(LEASES)?;
                let free = match leases.get(name.as_str())? {
                    None => true,
                    Some(v) => match v.value().split_first_chunk::<8>() {
                        Some((exp, holder)) => {
                            i64::from_le_bytes(*exp) <= now || holder == owner.as_bytes()
                        }
                        None => true,
                    },
                };
                if free {
                    let mut value = until.to_le_bytes().to_vec();
                    value.extend_from_slice(owner.as_bytes());
                    leases.insert(name.as_str(), value.as_slice())?;
                }
                free
            };
            txn.commit()?;
            Ok(taken)
        })
        .await
    }

    async fn audit_append(&self, entry: AuditEntry) -> Result<AuditRecord, StateError> {
        self.run(move |db| {
            // One write transaction at a time: the head read here is still the head at commit.
            let txn = db.begin_write()?;
            let record = {
                let mut head = txn.open_table(AUDIT_HEAD)?;
                let current = match head.get(AUDIT_HEAD_KEY)? {
                    Some(v) => Some(
                        decode_audit_head(v.value())
                            .ok_or_else(|| redb::Error::Corrupted("audit head".into()))?,
                    ),
                    None => None,
                };
                let record = crate::audit::chain::next_record(current, entry);
                let bytes = serde_json::to_vec(&StoredAudit::from_record(&record))
                    .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
                txn.open_table(AUDIT)?
                    .insert(record.seq, bytes.as_slice())?;
                head.insert(
                    AUDIT_HEAD_KEY,
                    encode_audit_head(record.seq, &record.hash).as_slice(),
                )?;
                record
            };
            txn.commit()?;
            Ok(record)
        })
        .await
    }

    async fn audit_range(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, StateError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(AUDIT)?;
            let mut out = Vec::new();
            for row in table.range(after.saturating_add(1)..)?.take(limit) {
                let (seq, bytes) = row?;
                let seq = seq.value();
                out.push(StoredAudit::decode(seq, bytes.value()).ok_or_else(|| {
                    redb::Error::Corrupted(format!("audit record {seq} cannot be read"))
                })?);
            }
            Ok(out)
        })
        .await
    }

    async fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>, StateError> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let head = txn.open_table(AUDIT_HEAD)?;
            match head.get(AUDIT_HEAD_KEY)? {
                Some(v) => Ok(Some(decode_audit_head(v.value()).ok_or_else(|| {
                    redb::Error::Corrupted("audit head cannot be read".into())
                })?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StateError> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.run(move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            {
                let mut leases = txn.open_table(LEASES)?;
                let mine = leases.get(name.as_str())?.is_some_and(|v| {
                    v.value()
                        .split_first_chunk::<8>()
                        .is_some_and(|(_, holder)| holder == owner.as_bytes())
                });
                if mine {
                    leases.remove(name.as_str())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_tokens(&self, shop: &str) -> Result<bool, StateError> {
        let shop = shop.to_owned();
        self.run(move |db| {
            let txn = db.begin_write()?;
            let removed = txn.open_table(TOKENS)?.remove(shop.as_str())?.is_some();
            txn.commit()?;
            Ok(removed)
        })
        .await
    }

    async fn put_authorization_state(
        &self,
        key: &str,
        state: &AuthorizationState,
        now: i64,
    ) -> Result<(), StateError> {
        let stored = StoredAuthState {
            subject: state.subject.clone(),
            app: state.app.clone(),
            expires_at: state.expires_at,
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| StateError::Invalid(e.to_string()))?;
        let key = key.to_owned();
        self.run(move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(AUTH_STATES)?;
                // Pending authorizations are few and short-lived: a scan forgets the expired.
                let mut expired = Vec::new();
                for row in table.iter()? {
                    let (k, v) = row?;
                    let gone = serde_json::from_slice::<StoredAuthState>(v.value())
                        .map_or(true, |s| s.expires_at <= now);
                    if gone {
                        expired.push(k.value().to_owned());
                    }
                }
                for k in expired {
                    table.remove(k.as_str())?;
                }
                table.insert(key.as_str(), bytes.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn take_authorization_state(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<AuthorizationState>, StateError> {
        let key = key.to_owned();
        self.run(move |db| {
            let txn = db.begin_write()?;
            let taken = txn
                .open_table(AUTH_STATES)?
                .remove(key.as_str())?
                .map(|v| v.value().to_vec());
            txn.commit()?;
            let Some(bytes) = taken else { return Ok(None) };
            let stored: StoredAuthState = serde_json::from_slice(&bytes)
                .map_err(|_| redb::Error::Corrupted("authorization state".into()))?;
            Ok((stored.expires_at > now).then_some(AuthorizationState {
                subject: stored.subject,
                app: stored.app,
                expires_at: stored.expires_at,
            }))
        })
        .await
    }

    async fn put_shop(&self, shop: &ShopRecord) -> Result<(), StateError> {
        let stored = StoredShop {
            app: shop.app.clone(),
            cipher: shop.cipher.clone(),
            name: shop.name.clone(),
            region: shop.region.clone(),
            status: shop.status.as_str().into(),
            changed_by: shop.changed_by.clone(),
            updated_at: shop.updated_at,
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| StateError::Invalid(e.to_string()))?;
        let id = shop.id.clone();
        self.run(move |db| {
            let txn = db.begin_write()?;
            {
                txn.open_table(SHOPS)?
                    .insert(id.as_str(), bytes.as_slice())?;
                let mut meta = txn.open_table(META)?;
                let v = meta.get(META_SHOP_VERSION)?.map(|v| v.value()).unwrap_or(0);
                meta.insert(META_SHOP_VERSION, v + 1)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn shop_version(&self) -> Result<u64, StateError> {
        self.run(|db| {
            let txn = db.begin_read()?;
            Ok(txn
                .open_table(META)?
                .get(META_SHOP_VERSION)?
                .map(|v| v.value())
                .unwrap_or(0))
        })
        .await
    }

    async fn shops(&self) -> Result<(u64, Vec<ShopRecord>), StateError> {
        self.run(|db| {
            let txn = db.begin_read()?;
            let version = txn
                .open_table(META)?
                .get(META_SHOP_VERSION)?
                .map(|v| v.value())
                .unwrap_or(0);
            let mut out = Vec::new();
            for row in txn.open_table(SHOPS)?.iter()? {
                let (id, bytes) = row?;
                let id = id.value().to_owned();
                let damaged = || redb::Error::Corrupted(format!("shop record {id}"));
                let stored: StoredShop =
                    serde_json::from_slice(bytes.value()).map_err(|_| damaged())?;
                let status = ShopStatus::parse(&stored.status).ok_or_else(damaged)?;
                out.push(ShopRecord {
                    id,
                    app: stored.app,
                    cipher: stored.cipher,
                    name: stored.name,
                    region: stored.region,
                    status,
                    changed_by: stored.changed_by,
                    updated_at: stored.updated_at,
                });
            }
            Ok((version, out))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use bytes::Bytes;
    use redb::StorageBackend;
    use redb::backends::InMemoryBackend;

    use super::*;
    use crate::clock::SystemClock;

    /// A disk that can fill up: writes, growth and syncs fail with "no space" while `full`.
    #[derive(Debug)]
    struct FillingDisk {
        data: Arc<InMemoryBackend>,
        full: Arc<AtomicBool>,
    }

    impl FillingDisk {
        fn check(&self) -> Result<(), std::io::Error> {
            if self.full.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            Ok(())
        }
    }

    impl StorageBackend for FillingDisk {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.data.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.data.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.check()?;
            self.data.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            self.check()?;
            self.data.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.check()?;
            self.data.write(offset, data)
        }
    }

    fn event(n: usize) -> NewEvent {
        NewEvent {
            route: "r".into(),
            target: "http://127.0.0.1:9/e".into(),
            dedup_key: format!("k{n}"),
            request_id: format!("q{n}"),
            // Large enough that every insert needs new pages.
            body: Bytes::from(vec![b'x'; 64 * 1024]),
            received_at: 1,
            traceparent: None,
        }
    }

    #[tokio::test]
    async fn a_full_disk_fails_writes_and_the_store_recovers_once_space_returns() {
        let data = Arc::new(InMemoryBackend::new());
        let full = Arc::new(AtomicBool::new(false));
        let (d, f) = (data.clone(), full.clone());
        let source = Source::Custom(Arc::new(move || {
            Database::builder()
                .create_with_backend(FillingDisk {
                    data: d.clone(),
                    full: f.clone(),
                })
                .map_err(unavailable)
        }));
        let store = EmbeddedStore::open_source(source, Arc::new(SystemClock)).unwrap();
        assert_eq!(
            store.enqueue(event(1), i64::MAX, 0).await.unwrap(),
            Accepted::Stored(1)
        );

        full.store(true, Ordering::SeqCst);
        for n in 2..5 {
            let err = store.enqueue(event(n), i64::MAX, 0).await.unwrap_err();
            assert!(err.is_backend_failure(), "{err}");
        }
        assert!(store.ping().await.is_err());
        assert!(
            store.reopen.load(Ordering::SeqCst),
            "an I/O failure schedules a reopen"
        );

        // Space returns: the store reopens by itself; what was committed is all there.
        full.store(false, Ordering::SeqCst);
        let mut recovered = false;
        for _ in 0..10 {
            if store.ping().await.is_ok() {
                recovered = true;
                break;
            }
        }
        assert!(recovered, "the store did not recover");
        assert!(!store.reopen.load(Ordering::SeqCst), "reopened");
        assert_eq!(
            store.enqueue(event(1), i64::MAX, 0).await.unwrap(),
            Accepted::Duplicate,
            "the event accepted before the disk filled is still recorded"
        );
        assert!(matches!(
            store.enqueue(event(2), i64::MAX, 0).await.unwrap(),
            Accepted::Stored(_)
        ));
        let claimed = store.claim(10, 0, 1_000).await.unwrap();
        let keys: Vec<&str> = claimed.iter().map(|e| e.dedup_key.as_str()).collect();
        assert_eq!(keys, ["k1", "k2"], "nothing refused while full was stored");
    }
}
