//! The schema: its migrations, the recorded version, and every statement the store runs. The
//! schema name is a validated identifier (`validate` checks it), so it is safe to write into the
//! statements; values always travel as parameters.

use super::{BLOCKS_CHANNEL, unavailable};
use crate::state::StateError;

/// The version this gateway writes; a database recording a larger one is refused at start-up.
pub const SCHEMA_VERSION: i64 = 4;

/// Every replica takes this advisory lock while it creates or migrates a schema, so replicas
/// starting together do not race (the value is arbitrary but fixed).
const MIGRATION_LOCK: i64 = 0x7467_775f_7374_6174; // "tgw_stat"

/// Migration `n` (1-based) moves the schema from version `n - 1` to `n`. `{s}` is the schema.
const MIGRATIONS: &[&str] = &[
    // 1: queue with dedupe, tokens, leases, block list.
    r#"
    CREATE TABLE {s}.webhook_events (
        id              bigserial PRIMARY KEY,
        route           text    NOT NULL,
        target          text    NOT NULL,
        dedup_key       text    NOT NULL,
        request_id      text    NOT NULL,
        body            bytea   NOT NULL,
        received_at     bigint  NOT NULL,
        attempts        integer NOT NULL DEFAULT 0,
        next_attempt_at bigint  NOT NULL,
        lease           bigint,
        dead_at         bigint
    );
    CREATE INDEX webhook_events_due ON {s}.webhook_events (next_attempt_at) WHERE dead_at IS NULL;
    CREATE TABLE {s}.webhook_dedupe (
        key        text   PRIMARY KEY,
        expires_at bigint NOT NULL
    );
    CREATE INDEX webhook_dedupe_expiry ON {s}.webhook_dedupe (expires_at);
    CREATE TABLE {s}.shop_tokens (
        shop_id    text   PRIMARY KEY,
        generation bigint NOT NULL,
        sealed     bytea  NOT NULL,
        updated_at bigint NOT NULL
    );
    CREATE TABLE {s}.leases (
        name       text   PRIMARY KEY,
        owner      text   NOT NULL,
        expires_at bigint NOT NULL
    );
    CREATE TABLE {s}.blocks (
        id         bigserial PRIMARY KEY,
        kind       text   NOT NULL,
        value      text   NOT NULL,
        reason     text   NOT NULL,
        expires_at bigint,
        created_at bigint NOT NULL
    );
    INSERT INTO {s}.meta (key, value) VALUES ('block_version', 0) ON CONFLICT DO NOTHING;
    "#,
    // 2: the audit log (a hash chain) and its head row, which every append locks so appends
    // from a whole fleet form one chain. Rows refuse UPDATE, DELETE and TRUNCATE: tampering
    // then takes the table owner's deliberate act, and `audit verify` still shows it.
    r#"
    CREATE TABLE {s}.audit_log (
        seq       bigint PRIMARY KEY,
        at        bigint NOT NULL,
        action    text   NOT NULL,
        outcome   text   NOT NULL,
        actor     text,
        detail    text   NOT NULL,
        prev_hash bytea  NOT NULL,
        hash      bytea  NOT NULL
    );
    CREATE TABLE {s}.audit_head (
        id   smallint PRIMARY KEY CHECK (id = 1),
        seq  bigint NOT NULL,
        hash bytea  NOT NULL
    );
    INSERT INTO {s}.audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
    CREATE FUNCTION {s}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the audit log is append-only';
    END
    $$;
    CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON {s}.audit_log
        FOR EACH ROW EXECUTE FUNCTION {s}.audit_log_append_only();
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {s}.audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.audit_log_append_only();
    "#,
    // 3: seller authorization states (by the hash of `state`) and shops onboarded at runtime.
    r#"
    CREATE TABLE {s}.authorization_states (
        key        text   PRIMARY KEY,
        subject    text   NOT NULL,
        app        text   NOT NULL,
        expires_at bigint NOT NULL
    );
    CREATE INDEX authorization_states_expiry ON {s}.authorization_states (expires_at);
    CREATE TABLE {s}.shops (
        id         text   PRIMARY KEY,
        app        text   NOT NULL,
        cipher     text   NOT NULL,
        name       text   NOT NULL,
        region     text   NOT NULL,
        status     text   NOT NULL,
        changed_by text   NOT NULL,
        updated_at bigint NOT NULL
    );
    INSERT INTO {s}.meta (key, value) VALUES ('shop_version', 0) ON CONFLICT DO NOTHING;
    "#,
    // 4: a queued event keeps its ingress request's trace context, so deliveries join its trace.
    r#"
    ALTER TABLE {s}.webhook_events ADD COLUMN traceparent text;
    "#,
];

fn quoted(schema: &str) -> String {
    format!("\"{schema}\"")
}

/// Creates the schema or brings it to [`SCHEMA_VERSION`], in one transaction; returns the
/// store's instance id. Refuses a schema whose recorded version is newer.
pub async fn migrate(client: &mut tokio_postgres::Client, schema: &str) -> Result<u64, StateError> {
    let s = quoted(schema);
    let txn = client.transaction().await.map_err(unavailable)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(unavailable)?;
    txn.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value bigint NOT NULL);"
    ))
    .await
    .map_err(unavailable)?;
    let found: i64 = txn
        .query_opt(
            &format!("SELECT value FROM {s}.meta WHERE key = 'schema_version'"),
            &[],
        )
        .await
        .map_err(unavailable)?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(unavailable)?
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StateError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, migration) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version > found {
            txn.batch_execute(&migration.replace("{s}", &s))
                .await
                .map_err(unavailable)?;
            tracing::info!(schema, version, "state schema migrated");
        }
    }
    let instance = (rand::random::<u64>() >> 1) as i64;
    txn.execute(
        &format!(
            "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        ),
        &[&SCHEMA_VERSION],
    )
    .await
    .map_err(unavailable)?;
    txn.execute(
        &format!(
            "INSERT INTO {s}.meta (key, value) VALUES ('instance', $1) ON CONFLICT (key) DO NOTHING"
        ),
        &[&instance],
    )
    .await
    .map_err(unavailable)?;
    let instance: i64 = txn
        .query_one(
            &format!("SELECT value FROM {s}.meta WHERE key = 'instance'"),
            &[],
        )
        .await
        .map_err(unavailable)?
        .try_get(0)
        .map_err(unavailable)?;
    txn.commit().await.map_err(unavailable)?;
    Ok(instance as u64)
}

/// Every statement the store runs, written once for its schema.
pub struct Sql {
    pub ping: String,
    pub enqueue: String,
    pub claim: String,
    pub ack: String,
    pub retry: String,
    pub dead_letter: String,
    pub release: String,
    pub stats: String,
    pub purge_dedupe: String,
    pub add_block: String,
    pub remove_block: String,
    pub block_version: String,
    pub blocks: String,
    pub load_tokens: String,
    pub store_tokens: String,
    pub try_lease: String,
    pub release_lease: String,
    pub dead_letters: String,
    pub replay_dead_letter: String,
    pub audit_lock_head: String,
    pub audit_insert: String,
    pub audit_set_head: String,
    pub audit_range: String,
    pub audit_head: String,
    pub delete_tokens: String,
    pub put_authorization_state: String,
    pub take_authorization_state: String,
    pub put_shop: String,
    pub shop_version: String,
    pub shops: String,
}

impl Sql {
    pub fn new(schema: &str) -> Self {
        let s = quoted(schema);
        Self {
            ping: "SELECT 1".into(),
            // The dedupe key is recorded (or an expired one renewed) and the event inserted in
            // one statement: no row back means the key was already seen.
            enqueue: format!(
                "WITH seen AS (
                    INSERT INTO {s}.webhook_dedupe (key, expires_at) VALUES ($1, $2)
                    ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
                        WHERE {s}.webhook_dedupe.expires_at <= $3
                    RETURNING 1
                 )
                 INSERT INTO {s}.webhook_events
                    (route, target, dedup_key, request_id, body, received_at, next_attempt_at,
                     traceparent)
                 SELECT $4, $5, $1, $6, $7, $8, $3, $9 FROM seen
                 RETURNING id"
            ),
            // A claim moves the due time to the lease's end: a claim nobody finishes is due
            // again then, on any replica.
            claim: format!(
                "UPDATE {s}.webhook_events SET next_attempt_at = $1, lease = $2
                 WHERE id IN (
                    SELECT id FROM {s}.webhook_events
                    WHERE dead_at IS NULL AND next_attempt_at <= $3
                    ORDER BY next_attempt_at, id
                    LIMIT $4
                    FOR UPDATE SKIP LOCKED
                 )
                 RETURNING id, route, target, dedup_key, request_id, body, received_at, attempts,
                    traceparent"
            ),
            ack: format!("DELETE FROM {s}.webhook_events WHERE id = $1"),
            retry: format!(
                "UPDATE {s}.webhook_events SET attempts = $3, next_attempt_at = $4, lease = NULL
                 WHERE id = $1 AND lease = $2 AND dead_at IS NULL"
            ),
            dead_letter: format!(
                "UPDATE {s}.webhook_events SET attempts = $3, dead_at = $4, lease = NULL
                 WHERE id = $1 AND lease = $2 AND dead_at IS NULL"
            ),
            release: format!(
                "UPDATE {s}.webhook_events SET next_attempt_at = $3, lease = NULL
                 WHERE id = $1 AND lease = $2 AND dead_at IS NULL"
            ),
            stats: format!(
                "SELECT count(*) FILTER (WHERE dead_at IS NULL),
                        min(received_at) FILTER (WHERE dead_at IS NULL),
                        count(*) FILTER (WHERE dead_at IS NOT NULL)
                 FROM {s}.webhook_events"
            ),
            purge_dedupe: format!(
                "DELETE FROM {s}.webhook_dedupe WHERE key IN (
                    SELECT key FROM {s}.webhook_dedupe WHERE expires_at < $1 LIMIT $2
                 )"
            ),
            add_block: format!(
                "WITH added AS (
                    INSERT INTO {s}.blocks (kind, value, reason, expires_at, created_at)
                    VALUES ($1, $2, $3, $4, $5) RETURNING id
                 ), bumped AS (
                    UPDATE {s}.meta SET value = value + 1 WHERE key = 'block_version'
                 )
                 SELECT id, pg_notify('{BLOCKS_CHANNEL}', $6) FROM added"
            ),
            remove_block: format!(
                "WITH removed AS (
                    DELETE FROM {s}.blocks WHERE id = $1 RETURNING id
                 ), bumped AS (
                    UPDATE {s}.meta SET value = value + 1
                    WHERE key = 'block_version' AND EXISTS (SELECT 1 FROM removed)
                 )
                 SELECT id, pg_notify('{BLOCKS_CHANNEL}', $2) FROM removed"
            ),
            block_version: format!("SELECT value FROM {s}.meta WHERE key = 'block_version'"),
            blocks: format!(
                "SELECT id, kind, value, reason, expires_at, created_at FROM {s}.blocks ORDER BY id"
            ),
            load_tokens: format!(
                "SELECT generation, sealed FROM {s}.shop_tokens WHERE shop_id = $1"
            ),
            store_tokens: format!(
                "INSERT INTO {s}.shop_tokens (shop_id, generation, sealed, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (shop_id) DO UPDATE
                    SET generation = EXCLUDED.generation, sealed = EXCLUDED.sealed,
                        updated_at = EXCLUDED.updated_at
                    WHERE {s}.shop_tokens.generation < EXCLUDED.generation"
            ),
            try_lease: format!(
                "INSERT INTO {s}.leases (name, owner, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner,
                    expires_at = EXCLUDED.expires_at
                    WHERE {s}.leases.expires_at <= $4 OR {s}.leases.owner = EXCLUDED.owner"
            ),
            release_lease: format!("DELETE FROM {s}.leases WHERE name = $1 AND owner = $2"),
            dead_letters: format!(
                "SELECT id, route, request_id, received_at, attempts, dead_at
                 FROM {s}.webhook_events WHERE dead_at IS NOT NULL AND id > $1
                 ORDER BY id LIMIT $2"
            ),
            replay_dead_letter: format!(
                "UPDATE {s}.webhook_events
                 SET dead_at = NULL, attempts = 0, lease = NULL, next_attempt_at = $2
                 WHERE id = $1 AND dead_at IS NOT NULL"
            ),
            audit_lock_head: format!("SELECT seq, hash FROM {s}.audit_head WHERE id = 1 FOR UPDATE"),
            audit_insert: format!(
                "INSERT INTO {s}.audit_log (seq, at, action, outcome, actor, detail, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            audit_set_head: format!("UPDATE {s}.audit_head SET seq = $1, hash = $2 WHERE id = 1"),
            audit_range: format!(
                "SELECT seq, at, action, outcome, actor, detail, prev_hash, hash
                 FROM {s}.audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
            ),
            audit_head: format!("SELECT seq, hash FROM {s}.audit_head WHERE id = 1"),
            delete_tokens: format!("DELETE FROM {s}.shop_tokens WHERE shop_id = $1"),
            // Expired states are forgotten by the statement that adds one.
            put_authorization_state: format!(
                "WITH purged AS (
                    DELETE FROM {s}.authorization_states WHERE expires_at <= $5
                 )
                 INSERT INTO {s}.authorization_states (key, subject, app, expires_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING"
            ),
            // Deleted whatever it says: a state is used at most once.
            take_authorization_state: format!(
                "DELETE FROM {s}.authorization_states WHERE key = $1
                 RETURNING subject, app, expires_at"
            ),
            put_shop: format!(
                "WITH up AS (
                    INSERT INTO {s}.shops
                        (id, app, cipher, name, region, status, changed_by, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                    ON CONFLICT (id) DO UPDATE SET app = EXCLUDED.app, cipher = EXCLUDED.cipher,
                        name = EXCLUDED.name, region = EXCLUDED.region, status = EXCLUDED.status,
                        changed_by = EXCLUDED.changed_by, updated_at = EXCLUDED.updated_at
                    RETURNING 1
                 )
                 UPDATE {s}.meta SET value = value + 1
                 WHERE key = 'shop_version' AND EXISTS (SELECT 1 FROM up)"
            ),
            shop_version: format!("SELECT value FROM {s}.meta WHERE key = 'shop_version'"),
            shops: format!(
                "SELECT id, app, cipher, name, region, status, changed_by, updated_at
                 FROM {s}.shops ORDER BY id"
            ),
        }
    }
}
