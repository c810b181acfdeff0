//! The PostgreSQL backend: the fleet's shared state. Any number of gateways use one database
//! schema; each webhook is one row that any replica may claim (`FOR UPDATE SKIP LOCKED`, with a
//! lease), so a replica that dies leaves nothing another cannot finish.
//!
//! Every operation is one statement (several tables at once through data-modifying CTEs) and so
//! one transaction: accepting a webhook records its dedupe key and inserts the event together or
//! not at all. The schema is created and migrated at start-up under an advisory lock (replicas
//! starting together do not race), its version is recorded, and a newer one is refused.
//!
//! Block-list changes bump a version and `NOTIFY` the other replicas; each replica listens on a
//! dedicated connection and also polls the version, so a lost notification delays a change by
//! one poll interval at most.

mod schema;
mod tls;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{Notify, watch};
use tokio_postgres::config::{Host, SslMode};

use super::{
    Accepted, AuditEntry, AuditRecord, AuthorizationState, BlockEntry, BlockKind, ClaimedEvent,
    DeadLetter, EventRef, NewBlock, NewEvent, QueueStats, SealedTokens, ShopRecord, ShopStatus,
    StateError, StateStore,
};
use crate::config::PostgresSettings;

pub use schema::SCHEMA_VERSION;

/// The channel block-list changes are announced on; the payload is the schema name, so gateways
/// on other schemas of the same database ignore them.
const BLOCKS_CHANNEL: &str = "tiktok_gateway_blocks";
/// Largest body stored; the route's body limit is normally far smaller.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const MAX_KEY_LEN: usize = 256;

fn unavailable(e: impl std::fmt::Display) -> StateError {
    StateError::Unavailable(e.to_string())
}

/// The connection settings as `tokio-postgres` takes them: the configured URL, with TLS off on a
/// loopback host unless the URL asks for it (`validate` refuses plaintext anywhere else).
pub fn pg_config(settings: &PostgresSettings) -> Result<tokio_postgres::Config, String> {
    let mut config = tokio_postgres::Config::from_str(settings.url.expose())
        .map_err(|_| "not a valid postgres:// URL or connection string".to_string())?;
    if config.get_ssl_mode() == SslMode::Prefer && all_local(&config) {
        config.ssl_mode(SslMode::Disable);
    }
    config.connect_timeout(settings.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name("tiktok-gateway");
    }
    Ok(config)
}

/// Whether every host of `config` is a Unix socket or a loopback address.
pub fn all_local(config: &tokio_postgres::Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|h| match h {
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            #[cfg(unix)]
            Host::Unix(_) => true,
        })
}

/// The Postgres store. Cheap to share; connections are pooled and made on first use, on the
/// runtime that needs them.
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    schema: String,
    sql: Arc<schema::Sql>,
    instance: u64,
    blocks_changed: Arc<Notify>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Migrates the schema (on a short-lived runtime of its own) and builds the pool. Blocking.
    pub fn open(settings: &PostgresSettings, timeout: Duration) -> Result<Self, StateError> {
        let config = pg_config(settings).map_err(StateError::Invalid)?;
        let tls = tls::connector(settings.ca.as_deref()).map_err(StateError::Invalid)?;
        let schema = settings.schema.clone();
        let instance = {
            let (config, tls, schema) = (config.clone(), tls.clone(), schema.clone());
            super::block_on_startup(async move {
                let (mut client, connection) = config.connect(tls).await.map_err(unavailable)?;
                let driver = tokio::spawn(connection);
                let result = schema::migrate(&mut client, &schema).await;
                drop(client);
                let _ = driver.await;
                result
            })?
        };
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout.max(settings.connect_timeout)))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(unavailable)?;
        Ok(Self {
            pool,
            config,
            tls,
            sql: Arc::new(schema::Sql::new(&schema)),
            schema,
            instance,
            blocks_changed: Arc::new(Notify::new()),
        })
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StateError> {
        self.pool.get().await.map_err(unavailable)
    }

    /// Runs one prepared statement and returns its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StateError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(unavailable)?;
        client.query(&stmt, params).await.map_err(unavailable)
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StateError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(unavailable)?;
        client.execute(&stmt, params).await.map_err(unavailable)
    }

    /// Listens for block-list notifications until `shutdown`, reconnecting after failures.
    /// Polling (the block watcher's) covers the gaps.
    async fn listen_loop(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let session = self.listen_once();
            tokio::select! {
                _ = session => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            }
            // Reconnect after a pause; meanwhile polling keeps the list fresh.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// One LISTEN session: returns when its connection ends.
    async fn listen_once(&self) {
        let Ok((client, mut connection)) = self.config.connect(self.tls.clone()).await else {
            return;
        };
        let notify = self.blocks_changed.clone();
        let schema = self.schema.clone();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = futures::StreamExt::next(&mut messages).await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n))
                        if n.channel() == BLOCKS_CHANNEL && n.payload() == schema =>
                    {
                        notify.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        if client
            .batch_execute(&format!("LISTEN {BLOCKS_CHANNEL}"))
            .await
            .is_ok()
        {
            // Anything changed while nobody listened is picked up now.
            self.blocks_changed.notify_waiters();
        }
        let _ = driver.await;
        drop(client);
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn hash32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], StateError> {
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| StateError::Corrupt(what.to_owned()))
}

/// The chain head as stored: seq 0 means no record yet.
fn head_of(row: &tokio_postgres::Row) -> Result<Option<(u64, [u8; 32])>, StateError> {
    let get = |e: tokio_postgres::Error| StateError::Corrupt(e.to_string());
    let seq: i64 = row.try_get(0).map_err(get)?;
    let hash = hash32(row.try_get(1).map_err(get)?, "audit head")?;
    Ok((seq > 0).then_some((to_u64(seq), hash)))
}

#[async_trait]
impl StateStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn instance(&self) -> u64 {
        self.instance
    }

    fn block_changes(&self) -> Arc<Notify> {
        self.blocks_changed.clone()
    }

    async fn ping(&self) -> Result<(), StateError> {
        self.query(&self.sql.ping, &[]).await.map(|_| ())
    }

    async fn listen(&self, shutdown: watch::Receiver<bool>) {
        self.listen_loop(shutdown).await
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
        let body: &[u8] = &event.body;
        let rows = self
            .query(
                &self.sql.enqueue,
                &[
                    &event.dedup_key,
                    &dedup_until,
                    &now,
                    &event.route,
                    &event.target,
                    &event.request_id,
                    &body,
                    &event.received_at,
                    &event.traceparent,
                ],
            )
            .await?;
        Ok(match rows.first() {
            Some(row) => Accepted::Stored(to_u64(row.try_get::<_, i64>(0).map_err(unavailable)?)),
            None => Accepted::Duplicate,
        })
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
        let lease = (rand::random::<u64>() >> 1).max(1);
        let rows = self
            .query(
                &self.sql.claim,
                &[&lease_until, &to_i64(lease), &now, &to_i64(limit as u64)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let get = |e: tokio_postgres::Error| StateError::Corrupt(e.to_string());
            let body: Vec<u8> = row.try_get(5).map_err(get)?;
            out.push(ClaimedEvent {
                claim: EventRef {
                    id: to_u64(row.try_get(0).map_err(get)?),
                    lease,
                },
                route: row.try_get(1).map_err(get)?,
                target: row.try_get(2).map_err(get)?,
                dedup_key: row.try_get(3).map_err(get)?,
                request_id: row.try_get(4).map_err(get)?,
                body: Bytes::from(body),
                received_at: row.try_get(6).map_err(get)?,
                attempts: u32::try_from(row.try_get::<_, i32>(7).map_err(get)?).unwrap_or(0),
                traceparent: row.try_get(8).map_err(get)?,
            });
        }
        // Oldest first, as they were due.
        out.sort_by_key(|e| e.claim.id);
        Ok(out)
    }

    async fn ack(&self, id: u64) -> Result<(), StateError> {
        self.execute(&self.sql.ack, &[&to_i64(id)])
            .await
            .map(|_| ())
    }

    async fn retry(
        &self,
        claim: EventRef,
        attempts: u32,
        next_attempt_at: i64,
    ) -> Result<(), StateError> {
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        self.execute(
            &self.sql.retry,
            &[
                &to_i64(claim.id),
                &to_i64(claim.lease),
                &attempts,
                &next_attempt_at,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn dead_letter(
        &self,
        claim: EventRef,
        attempts: u32,
        now: i64,
    ) -> Result<(), StateError> {
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        self.execute(
            &self.sql.dead_letter,
            &[&to_i64(claim.id), &to_i64(claim.lease), &attempts, &now],
        )
        .await
        .map(|_| ())
    }

    async fn release(&self, claim: EventRef, now: i64) -> Result<(), StateError> {
        self.execute(
            &self.sql.release,
            &[&to_i64(claim.id), &to_i64(claim.lease), &now],
        )
        .await
        .map(|_| ())
    }

    async fn queue_stats(&self) -> Result<QueueStats, StateError> {
        let rows = self.query(&self.sql.stats, &[]).await?;
        let Some(row) = rows.first() else {
            return Ok(QueueStats::default());
        };
        let get = |e: tokio_postgres::Error| StateError::Corrupt(e.to_string());
        Ok(QueueStats {
            live: to_u64(row.try_get(0).map_err(get)?),
            oldest_received_at: row.try_get(1).map_err(get)?,
            dead: to_u64(row.try_get(2).map_err(get)?),
        })
    }

    async fn purge_dedupe(&self, now: i64, limit: usize) -> Result<u64, StateError> {
        self.execute(&self.sql.purge_dedupe, &[&now, &to_i64(limit as u64)])
            .await
    }

    async fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<DeadLetter>, StateError> {
        let rows = self
            .query(
                &self.sql.dead_letters,
                &[&to_i64(after), &to_i64(limit as u64)],
            )
            .await?;
        let get = |e: tokio_postgres::Error| StateError::Corrupt(e.to_string());
        rows.iter()
            .map(|row| {
                Ok(DeadLetter {
                    id: to_u64(row.try_get(0).map_err(get)?),
                    route: row.try_get(1).map_err(get)?,
                    request_id: row.try_get(2).map_err(get)?,
                    received_at: row.try_get(3).map_err(get)?,
                    attempts: u32::try_from(row.try_get::<_, i32>(4).map_err(get)?).unwrap_or(0),
                    dead_at: row.try_get(5).map_err(get)?,
                })
            })
            .collect()
    }

    async fn replay_dead_letter(&self, id: u64, now: i64) -> Result<bool, StateError> {
        let n = self
            .execute(&self.sql.replay_dead_letter, &[&to_i64(id), &now])
            .await?;
        Ok(n > 0)
    }

    async fn add_block(&self, block: NewBlock, now: i64) -> Result<u64, StateError> {
        let rows = self
            .query(
                &self.sql.add_block,
                &[
                    &block.kind.as_str(),
                    &block.value,
                    &block.reason,
                    &block.expires_at,
                    &(now / 1000),
                    &self.schema,
                ],
            )
            .await?;
        self.blocks_changed.notify_waiters();
        let row = rows
            .first()
            .ok_or_else(|| StateError::Unavailable("block insert returned nothing".into()))?;
        Ok(to_u64(row.try_get(0).map_err(unavailable)?))
    }

    async fn remove_block(&self, id: u64) -> Result<bool, StateError> {
        let rows = self
            .query(&self.sql.remove_block, &[&to_i64(id), &self.schema])
            .await?;
        self.blocks_changed.notify_waiters();
        Ok(!rows.is_empty())
    }

    async fn block_version(&self) -> Result<u64, StateError> {
        let rows = self.query(&self.sql.block_version, &[]).await?;
        let version: Option<i64> = match rows.first() {
            Some(row) => row.try_get(0).map_err(unavailable)?,
            None => None,
        };
        Ok(to_u64(version.unwrap_or(0)))
    }

    async fn blocks(&self) -> Result<(u64, Vec<BlockEntry>), StateError> {
        // The version first: a change between the two reads leaves the version behind, so the
        // next poll reads the list again.
        let version = self.block_version().await?;
        let rows = self.query(&self.sql.blocks, &[]).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let get = |e: tokio_postgres::Error| StateError::Corrupt(e.to_string());
            let id: i64 = row.try_get(0).map_err(get)?;
            let kind: String = row.try_get(1).map_err(get)?;
            let kind = BlockKind::parse(&kind)
                .ok_or_else(|| StateError::Corrupt(format!("block entry {id}: kind")))?;
            out.push(BlockEntry {
                id: to_u64(id),
                kind,
                value: row.try_get(2).map_err(get)?,
                reason: row.try_get(3).map_err(get)?,
                expires_at: row.try_get(4).map_err(get)?,
                created_at: row.try_get(5).map_err(get)?,
            });
        }
        Ok((version, out))
    }

    async fn load_tokens(&self, shop: &str) -> Result<Option<SealedTokens>, StateError> {
        let rows = self.query(&self.sql.load_tokens, &[&shop]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let get = |e: tokio_postgres::Error| StateError::Corrupt(e.to_string());
        Ok(Some(SealedTokens {
            generation: to_u64(row.try_get(0).map_err(get)?),
            sealed: row.try_get(1).map_err(get)?,
        }))
    }

    async fn store_tokens(
        &self,
        shop: &str,
        tokens: &SealedTokens,
        now: i64,
    ) -> Result<bool, StateError> {
        let sealed: &[u8] = &tokens.sealed;
        let n = self
            .execute(
                &self.sql.store_tokens,
                &[&shop, &to_i64(tokens.generation), &sealed, &now],
            )
            .await?;
        Ok(n > 0)
    }

    async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StateError> {
        let n = self
            .execute(&self.sql.try_lease, &[&name, &owner, &until, &now])
            .await?;
        Ok(n > 0)
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StateError> {
        self.execute(&self.sql.release_lease, &[&name, &owner])
            .await
            .map(|_| ())
    }

    async fn audit_append(&self, entry: AuditEntry) -> Result<AuditRecord, StateError> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(unavailable)?;
        // The head row's lock serializes appends across every replica: the chain stays linear.
        let lock = txn
            .prepare_cached(&self.sql.audit_lock_head)
            .await
            .map_err(unavailable)?;
        let row = txn.query_one(&lock, &[]).await.map_err(unavailable)?;
        let head = head_of(&row)?;
        let record = crate::audit::chain::next_record(head, entry);
        let insert = txn
            .prepare_cached(&self.sql.audit_insert)
            .await
            .map_err(unavailable)?;
        let (prev, hash): (&[u8], &[u8]) = (&record.prev_hash, &record.hash);
        txn.execute(
            &insert,
            &[
                &to_i64(record.seq),
                &record.time,
                &record.action,
                &record.outcome,
                &record.actor,
                &record.detail,
                &prev,
                &hash,
            ],
        )
        .await
        .map_err(unavailable)?;
        let set = txn
            .prepare_cached(&self.sql.audit_set_head)
            .await
            .map_err(unavailable)?;
        txn.execute(&set, &[&to_i64(record.seq), &hash])
            .await
            .map_err(unavailable)?;
        txn.commit().await.map_err(unavailable)?;
        Ok(record)
    }

    async fn audit_range(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, StateError> {
        let rows = self
            .query(
                &self.sql.audit_range,
                &[&to_i64(after), &to_i64(limit as u64)],
            )
            .await?;
        let get = |e: tokio_postgres::Error| StateError::Corrupt(e.to_string());
        rows.iter()
            .map(|row| {
                let seq = to_u64(row.try_get(0).map_err(get)?);
                Ok(AuditRecord {
                    seq,
                    time: row.try_get(1).map_err(get)?,
                    action: row.try_get(2).map_err(get)?,
                    outcome: row.try_get(3).map_err(get)?,
                    actor: row.try_get(4).map_err(get)?,
                    detail: row.try_get(5).map_err(get)?,
                    prev_hash: hash32(row.try_get(6).map_err(get)?, "audit record prev_hash")?,
                    hash: hash32(row.try_get(7).map_err(get)?, "audit record hash")?,
                })
            })
            .collect()
    }

    async fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>, StateError> {
        let rows = self.query(&self.sql.audit_head, &[]).await?;
        match rows.first() {
            Some(row) => head_of(row),
            None => Ok(None),
        }
    }

    async fn delete_tokens(&self, shop: &str) -> Result<bool, StateError> {
        Ok(self.execute(&self.sql.delete_tokens, &[&shop]).await? > 0)
    }

    async fn put_authorization_state(
        &self,
        key: &str,
        state: &AuthorizationState,
        now: i64,
    ) -> Result<(), StateError> {
        self.execute(
            &self.sql.put_authorization_state,
            &[&key, &state.subject, &state.app, &state.expires_at, &now],
        )
        .await
        .map(|_| ())
    }

    async fn take_authorization_state(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<AuthorizationState>, StateError> {
        let rows = self
            .query(&self.sql.take_authorization_state, &[&key])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let get = |e: tokio_postgres::Error| StateError::Corrupt(e.to_string());
        let state = AuthorizationState {
            subject: row.try_get(0).map_err(get)?,
            app: row.try_get(1).map_err(get)?,
            expires_at: row.try_get(2).map_err(get)?,
        };
        Ok((state.expires_at > now).then_some(state))
    }

    async fn put_shop(&self, shop: &ShopRecord) -> Result<(), StateError> {
        self.execute(
            &self.sql.put_shop,
            &[
                &shop.id,
                &shop.app,
                &shop.cipher,
                &shop.name,
                &shop.region,
                &shop.status.as_str(),
                &shop.changed_by,
                &shop.updated_at,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn shop_version(&self) -> Result<u64, StateError> {
        let rows = self.query(&self.sql.shop_version, &[]).await?;
        let version: Option<i64> = match rows.first() {
            Some(row) => row.try_get(0).map_err(unavailable)?,
            None => None,
        };
        Ok(to_u64(version.unwrap_or(0)))
    }

    async fn shops(&self) -> Result<(u64, Vec<ShopRecord>), StateError> {
        // The version first, as for the block list: a change between the reads is seen again.
        let version = self.shop_version().await?;
        let rows = self.query(&self.sql.shops, &[]).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let get = |e: tokio_postgres::Error| StateError::Corrupt(e.to_string());
            let id: String = row.try_get(0).map_err(get)?;
            let status: String = row.try_get(5).map_err(get)?;
            let status = ShopStatus::parse(&status)
                .ok_or_else(|| StateError::Corrupt(format!("shop record {id}: status")))?;
            out.push(ShopRecord {
                app: row.try_get(1).map_err(get)?,
                cipher: row.try_get(2).map_err(get)?,
                name: row.try_get(3).map_err(get)?,
                region: row.try_get(4).map_err(get)?,
                status,
                changed_by: row.try_get(6).map_err(get)?,
                updated_at: row.try_get(7).map_err(get)?,
                id,
            });
        }
        Ok((version, out))
    }
}
