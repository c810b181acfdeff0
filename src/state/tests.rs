//! The same behaviour from both backends: the embedded one in memory and on a file, Postgres
//! (when `DATABASE_URL` is set) in a schema of its own per test.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::clock::{ManualClock, SystemClock};
use crate::config::{PostgresSettings, Secret};

const T0: i64 = 1_718_305_585_000;

fn event(n: usize) -> NewEvent {
    NewEvent {
        route: "tiktok-webhooks".into(),
        target: "http://127.0.0.1:9001/internal/tiktok/events".into(),
        dedup_key: format!("notif-{n}"),
        request_id: format!("req-{n}"),
        body: Bytes::from(format!(
            "{{\"tts_notification_id\":\"notif-{n}\"}}\r\n\u{0}"
        )),
        received_at: T0 / 1000,
        // Odd events come with the trace context of the request that brought them.
        traceparent: (n % 2 == 1).then(|| format!("00-{:032x}-{:016x}-01", n + 1, n + 1)),
    }
}

fn embedded() -> SharedState {
    Arc::new(embedded::EmbeddedStore::open(None, Arc::new(SystemClock)).unwrap())
}

/// `DATABASE_URL`, or `None` after saying the test is skipped (a failure under `CI=true`).
fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            assert!(!ci, "CI=true but DATABASE_URL is not set");
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: postgres state tests need DATABASE_URL"
            );
            None
        }
    }
}

fn pg_settings(url: &str, schema: &str) -> PostgresSettings {
    PostgresSettings {
        url: Secret::new(url),
        schema: schema.into(),
        pool_size: 4,
        connect_timeout: Duration::from_secs(5),
        ca: None,
    }
}

fn random_schema() -> String {
    format!("tgw_test_{:016x}", rand::random::<u64>())
}

/// A Postgres store on a fresh schema (dropped again by [`drop_schema`]).
fn postgres(url: &str, schema: &str) -> SharedState {
    Arc::new(
        postgres::PostgresStore::open(&pg_settings(url, schema), Duration::from_secs(5)).unwrap(),
    )
}

fn drop_schema(url: &str, schema: &str) {
    let settings = pg_settings(url, schema);
    let schema = schema.to_owned();
    let _ = block_on_startup(async move {
        let config = postgres::pg_config(&settings).map_err(StateError::Invalid)?;
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| StateError::Unavailable(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await;
        drop(client);
        let _ = driver.await;
        Ok(())
    });
}

async fn queue_behaviour(store: SharedState) {
    // Accept, and recognise a replay until the key expires.
    let first = store.enqueue(event(1), T0 + 10_000, T0).await.unwrap();
    let Accepted::Stored(id1) = first else {
        panic!("first delivery must be stored")
    };
    assert_eq!(
        store.enqueue(event(1), T0 + 10_000, T0 + 5).await.unwrap(),
        Accepted::Duplicate
    );
    let Accepted::Stored(id2) = store.enqueue(event(2), T0 + 10_000, T0).await.unwrap() else {
        panic!("another key is stored")
    };
    assert_ne!(id1, id2);

    // A claim hides the events for its lease; the body comes back byte for byte.
    let claimed = store.claim(10, T0, T0 + 1_000).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].claim.id, id1);
    assert_eq!(claimed[0].body, event(1).body);
    assert_eq!(claimed[0].dedup_key, "notif-1");
    assert_eq!(claimed[0].received_at, T0 / 1000);
    assert_eq!(claimed[0].traceparent, event(1).traceparent);
    assert!(
        claimed.iter().any(|c| c.traceparent.is_none()),
        "and none for the others"
    );
    assert!(
        store
            .claim(10, T0 + 999, T0 + 2_000)
            .await
            .unwrap()
            .is_empty()
    );

    // The lease ends: someone else claims it; the old claim's bookkeeping no longer applies.
    let again = store.claim(1, T0 + 1_000, T0 + 3_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].claim.id, id1);
    assert_ne!(again[0].claim.lease, claimed[0].claim.lease);
    store.retry(claimed[0].claim, 7, T0).await.unwrap();
    assert!(
        store
            .claim(10, T0 + 1_500, T0 + 4_000)
            .await
            .unwrap()
            .iter()
            .all(|e| e.claim.id != id1)
    );

    // Retry bookkeeping by the holder: attempts counted, due at the given time.
    store.retry(again[0].claim, 1, T0 + 5_000).await.unwrap();
    assert!(
        store
            .claim(10, T0 + 4_999, T0 + 9_000)
            .await
            .unwrap()
            .iter()
            .all(|e| e.claim.id != id1)
    );
    let third = store.claim(10, T0 + 5_000, T0 + 9_000).await.unwrap();
    let mine = third.iter().find(|e| e.claim.id == id1).unwrap();
    assert_eq!(mine.attempts, 1);

    // Release gives it back at once; dead-lettering takes it out of rotation; ack removes.
    store.release(mine.claim, T0 + 5_001).await.unwrap();
    let fourth = store.claim(10, T0 + 5_001, T0 + 9_000).await.unwrap();
    let mine = fourth.iter().find(|e| e.claim.id == id1).unwrap();
    store.dead_letter(mine.claim, 2, T0 + 5_002).await.unwrap();
    assert!(
        store
            .claim(10, T0 + 100_000, T0 + 200_000)
            .await
            .unwrap()
            .iter()
            .all(|e| e.claim.id != id1)
    );
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.live, stats.dead), (1, 1));
    assert_eq!(stats.oldest_received_at, Some(T0 / 1000));
    store.ack(id2).await.unwrap();
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(
        (stats.live, stats.dead, stats.oldest_received_at),
        (0, 1, None)
    );

    // The key expires: the same notification is new again; purging forgets expired keys.
    assert!(matches!(
        store
            .enqueue(event(1), T0 + 30_000, T0 + 10_000)
            .await
            .unwrap(),
        Accepted::Stored(_)
    ));
    assert!(store.purge_dedupe(T0 + 40_000, 100).await.unwrap() >= 1);
}

async fn blocks_tokens_and_leases(store: SharedState) {
    let v0 = store.block_version().await.unwrap();
    let id = store
        .add_block(
            NewBlock {
                kind: BlockKind::ClientIp,
                value: "203.0.113.0/24".into(),
                reason: "scanner".into(),
                expires_at: Some(T0 / 1000 + 60),
            },
            T0,
        )
        .await
        .unwrap();
    let (v1, entries) = store.blocks().await.unwrap();
    assert!(v1 > v0);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, id);
    assert_eq!(entries[0].kind, BlockKind::ClientIp);
    assert_eq!(entries[0].expires_at, Some(T0 / 1000 + 60));
    assert!(store.remove_block(id).await.unwrap());
    assert!(!store.remove_block(id).await.unwrap());
    let (v2, entries) = store.blocks().await.unwrap();
    assert!(v2 > v1 && entries.is_empty());

    assert_eq!(store.load_tokens("7494").await.unwrap(), None);
    let tokens = |generation: u64, byte: u8| SealedTokens {
        generation,
        sealed: vec![byte; 40],
    };
    assert!(store.store_tokens("7494", &tokens(2, 1), T0).await.unwrap());
    // An older or equal generation never overwrites a newer one.
    assert!(!store.store_tokens("7494", &tokens(1, 9), T0).await.unwrap());
    assert!(!store.store_tokens("7494", &tokens(2, 9), T0).await.unwrap());
    assert_eq!(store.load_tokens("7494").await.unwrap(), Some(tokens(2, 1)));
    assert!(store.store_tokens("7494", &tokens(3, 3), T0).await.unwrap());
    assert_eq!(store.load_tokens("7494").await.unwrap(), Some(tokens(3, 3)));

    assert!(
        store
            .try_lease("refresh:7494", "a", T0, T0 + 1_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_lease("refresh:7494", "b", T0 + 10, T0 + 1_010)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease("refresh:7494", "a", T0 + 10, T0 + 1_010)
            .await
            .unwrap()
    );
    // Expired: anyone takes it; released: anyone takes it.
    assert!(
        store
            .try_lease("refresh:7494", "b", T0 + 1_010, T0 + 2_000)
            .await
            .unwrap()
    );
    store.release_lease("refresh:7494", "a").await.unwrap();
    assert!(
        !store
            .try_lease("refresh:7494", "c", T0 + 1_100, T0 + 2_000)
            .await
            .unwrap()
    );
    store.release_lease("refresh:7494", "b").await.unwrap();
    assert!(
        store
            .try_lease("refresh:7494", "c", T0 + 1_100, T0 + 2_000)
            .await
            .unwrap()
    );
    store.ping().await.unwrap();
}

async fn authorization_states_and_shops(store: SharedState) {
    let state = |app: &str, expires_at: i64| AuthorizationState {
        subject: "ops-alice".into(),
        app: app.into(),
        expires_at,
    };
    store
        .put_authorization_state("h1", &state("main", T0 + 600_000), T0)
        .await
        .unwrap();
    store
        .put_authorization_state("h2", &state("main", T0 + 1_000), T0)
        .await
        .unwrap();
    // Taken once: the second take finds nothing.
    assert_eq!(
        store.take_authorization_state("h1", T0 + 10).await.unwrap(),
        Some(state("main", T0 + 600_000))
    );
    assert_eq!(
        store.take_authorization_state("h1", T0 + 10).await.unwrap(),
        None
    );
    // Unknown, and expired (taken out all the same).
    assert_eq!(
        store.take_authorization_state("nope", T0).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .take_authorization_state("h2", T0 + 1_000)
            .await
            .unwrap(),
        None
    );
    store
        .put_authorization_state("h3", &state("main", T0 + 2_000), T0)
        .await
        .unwrap();
    assert_eq!(
        store
            .take_authorization_state("h3", T0 + 1_999)
            .await
            .unwrap(),
        Some(state("main", T0 + 2_000))
    );
    // Adding a state forgets the expired ones.
    store
        .put_authorization_state("h4", &state("main", T0 + 5_000), T0)
        .await
        .unwrap();
    store
        .put_authorization_state("h5", &state("main", T0 + 20_000), T0 + 10_000)
        .await
        .unwrap();
    assert_eq!(store.take_authorization_state("h4", 0).await.unwrap(), None);

    let v0 = store.shop_version().await.unwrap();
    let mut shop = ShopRecord {
        id: "7000714532876273420".into(),
        app: "main".into(),
        cipher: "GCP_XF90igAAAABh00qsWgtvOiGFNqyubMt3".into(),
        name: "Maomao beauty shop".into(),
        region: "GB".into(),
        status: ShopStatus::Active,
        changed_by: "ops-alice".into(),
        updated_at: T0 / 1000,
    };
    store.put_shop(&shop).await.unwrap();
    let (v1, shops) = store.shops().await.unwrap();
    assert!(v1 > v0);
    assert_eq!(store.shop_version().await.unwrap(), v1);
    assert_eq!(shops, vec![shop.clone()]);
    shop.status = ShopStatus::Revoked;
    shop.changed_by = "tiktok-webhook:main".into();
    store.put_shop(&shop).await.unwrap();
    let (v2, shops) = store.shops().await.unwrap();
    assert!(v2 > v1);
    assert_eq!(shops, vec![shop]);

    let sealed = SealedTokens {
        generation: 1,
        sealed: vec![7; 40],
    };
    assert!(store.store_tokens("7000", &sealed, T0).await.unwrap());
    assert!(store.delete_tokens("7000").await.unwrap());
    assert!(!store.delete_tokens("7000").await.unwrap());
    assert_eq!(store.load_tokens("7000").await.unwrap(), None);
}

#[tokio::test]
async fn embedded_authorization_states_are_taken_once_and_shops_are_versioned() {
    authorization_states_and_shops(embedded()).await;
}

#[tokio::test]
async fn postgres_authorization_states_are_taken_once_and_shops_are_versioned() {
    let Some(url) = database_url() else { return };
    let schema = random_schema();
    authorization_states_and_shops(postgres(&url, &schema)).await;
    drop_schema(&url, &schema);
}

#[tokio::test]
async fn postgres_an_authorization_state_is_taken_by_one_replica_only() {
    let Some(url) = database_url() else { return };
    let schema = random_schema();
    let (a, b) = (postgres(&url, &schema), postgres(&url, &schema));
    let state = AuthorizationState {
        subject: "ops-alice".into(),
        app: "main".into(),
        expires_at: T0 + 60_000,
    };
    a.put_authorization_state("k", &state, T0).await.unwrap();
    let (x, y) = tokio::join!(
        a.take_authorization_state("k", T0),
        b.take_authorization_state("k", T0)
    );
    let taken = [x.unwrap(), y.unwrap()];
    assert_eq!(taken.iter().filter(|t| t.is_some()).count(), 1, "{taken:?}");
    drop_schema(&url, &schema);
}

#[tokio::test]
async fn embedded_queue_dedupes_claims_with_leases_and_dead_letters() {
    queue_behaviour(embedded()).await;
}

#[tokio::test]
async fn embedded_blocks_tokens_and_leases() {
    blocks_tokens_and_leases(embedded()).await;
}

#[tokio::test]
async fn postgres_queue_dedupes_claims_with_leases_and_dead_letters() {
    let Some(url) = database_url() else { return };
    let schema = random_schema();
    queue_behaviour(postgres(&url, &schema)).await;
    drop_schema(&url, &schema);
}

#[tokio::test]
async fn postgres_blocks_tokens_and_leases() {
    let Some(url) = database_url() else { return };
    let schema = random_schema();
    blocks_tokens_and_leases(postgres(&url, &schema)).await;
    drop_schema(&url, &schema);
}

#[tokio::test]
async fn postgres_replicas_share_one_queue_and_never_claim_an_event_twice() {
    let Some(url) = database_url() else { return };
    let schema = random_schema();
    let a = postgres(&url, &schema);
    let b = postgres(&url, &schema);
    assert_eq!(a.instance(), b.instance(), "one schema, one instance id");
    for n in 0..40 {
        let store = if n % 2 == 0 { &a } else { &b };
        assert!(matches!(
            store.enqueue(event(n), T0 + 60_000, T0).await.unwrap(),
            Accepted::Stored(_)
        ));
    }
    // A replay to the other replica is a duplicate.
    assert_eq!(
        b.enqueue(event(0), T0 + 60_000, T0).await.unwrap(),
        Accepted::Duplicate
    );
    let (x, y) = tokio::join!(a.claim(25, T0, T0 + 1_000), b.claim(25, T0, T0 + 1_000));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len() + y.len(), 40);
    let mut ids: Vec<u64> = x.iter().chain(&y).map(|e| e.claim.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40, "no event claimed by both");
    drop_schema(&url, &schema);
}

#[test]
fn postgres_refuses_a_newer_schema() {
    let Some(url) = database_url() else { return };
    let schema = random_schema();
    drop(postgres(&url, &schema));
    let settings = pg_settings(&url, &schema);
    let bump = schema.clone();
    block_on_startup(async move {
        let config = postgres::pg_config(&settings).map_err(StateError::Invalid)?;
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| StateError::Unavailable(e.to_string()))?;
        let driver = tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "UPDATE \"{bump}\".meta SET value = 99 WHERE key = 'schema_version'"
            ))
            .await
            .map_err(|e| StateError::Unavailable(e.to_string()))?;
        drop(client);
        let _ = driver.await;
        Ok(())
    })
    .unwrap();
    let Err(err) =
        postgres::PostgresStore::open(&pg_settings(&url, &schema), Duration::from_secs(5))
    else {
        panic!("a newer schema is refused")
    };
    assert_eq!(
        err,
        StateError::NewerSchema {
            found: 99,
            supported: postgres::SCHEMA_VERSION
        }
    );
    drop_schema(&url, &schema);
}

#[tokio::test]
async fn embedded_dedupe_and_queue_survive_a_reopen_and_claims_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let clock = Arc::new(ManualClock::new(T0 / 1000));
    let id = {
        let store = embedded::EmbeddedStore::open(Some(&path), clock.clone()).unwrap();
        let Accepted::Stored(id) = store.enqueue(event(1), T0 + 60_000, T0).await.unwrap() else {
            panic!("stored")
        };
        // Claimed for a long lease, then the process "dies".
        assert_eq!(store.claim(5, T0, T0 + 3_600_000).await.unwrap().len(), 1);
        id
    };
    let store = embedded::EmbeddedStore::open(Some(&path), clock).unwrap();
    assert_eq!(
        store.enqueue(event(1), T0 + 60_000, T0 + 1).await.unwrap(),
        Accepted::Duplicate,
        "the dedupe index outlives the process"
    );
    let claimed = store.claim(5, T0, T0 + 1_000).await.unwrap();
    assert_eq!(
        claimed.len(),
        1,
        "a dead process's claim is given back on open"
    );
    assert_eq!(claimed[0].claim.id, id);
}

#[test]
fn embedded_migrates_the_old_queue_file_and_refuses_a_newer_one() {
    use redb::{ReadableDatabase, TableDefinition};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    // A queue file as earlier versions wrote it: one version-1 record, instance and sequence.
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut events = txn
                .open_table(TableDefinition::<u64, &[u8]>::new("webhook_events"))
                .unwrap();
            let mut v1 = vec![1u8];
            v1.extend_from_slice(&2u32.to_le_bytes());
            v1.extend_from_slice(&(T0 / 1000).to_le_bytes());
            v1.extend_from_slice(&(T0 / 1000).to_le_bytes());
            for s in ["r", "http://127.0.0.1:9/e", "k", "q", "{}"] {
                v1.extend_from_slice(&(s.len() as u32).to_le_bytes());
                v1.extend_from_slice(s.as_bytes());
            }
            events.insert(41, v1.as_slice()).unwrap();
            let mut meta = txn
                .open_table(TableDefinition::<&str, u64>::new("webhook_meta"))
                .unwrap();
            meta.insert("instance", 0xabcdef).unwrap();
            meta.insert("next_seq", 42).unwrap();
        }
        txn.commit().unwrap();
    }
    let clock = Arc::new(ManualClock::new(T0 / 1000));
    let store = embedded::EmbeddedStore::open(Some(&path), clock.clone()).unwrap();
    assert_eq!(store.instance(), 0xabcdef, "event ids keep their instance");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let claimed = store.claim(5, T0, T0 + 1_000).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!((claimed[0].claim.id, claimed[0].attempts), (41, 2));
        let Accepted::Stored(next) = store.enqueue(event(3), T0 + 1, T0).await.unwrap() else {
            panic!("stored")
        };
        assert_eq!(next, 42, "sequence numbers continue");
    });
    drop(store);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TableDefinition::<&str, u64>::new("state_meta"))
            .unwrap()
            .insert("schema_version", 99)
            .unwrap();
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        assert!(read.list_tables().unwrap().count() > 0);
    }
    let err = embedded::EmbeddedStore::open(Some(&path), clock)
        .err()
        .unwrap();
    assert!(
        matches!(err, StateError::NewerSchema { found: 99, .. }),
        "{err}"
    );
}
