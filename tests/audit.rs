//! `tiktok-gateway audit verify`, black box: it passes on an untouched log and, after the store
//! is tampered with directly, exits non-zero naming the record: one byte changed, one record
//! deleted, one inserted, two swapped; a forged checkpoint signature is caught too. On the
//! embedded file and on PostgreSQL (skipped loudly without DATABASE_URL).

#![cfg(feature = "demo")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{
    Admin, ApiKey, Auth, Config, JwtIssuer, Listener, Route, State, Upstream, database_url,
    free_port,
};
use tiktok_gateway::audit::chain::{AuditEntry, next_record};
use tiktok_gateway::audit::checkpoint::{CHECKPOINT_ACTION, Signer};
use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::config::Secret;
use tiktok_gateway::state::embedded::{
    AUDIT, AUDIT_HEAD, AUDIT_HEAD_KEY, StoredAudit, encode_audit_head,
};

/// Records written before each tamper.
const RECORDS: u64 = 12;

fn write_config(dir: &Path, state: State) -> PathBuf {
    let yaml = Config::new()
        .listener(Listener::plain("public", free_port()))
        .upstream(Upstream::new("orders", "127.0.0.1:9"))
        .api_key(ApiKey::new(
            "batch-exporter",
            "batch-key-0001",
            &["orders:read"],
        ))
        .route(
            Route::prefix("orders", "public", "/orders/")
                .auth(Auth::api_key().scopes(&["orders:read"]))
                .upstream("orders"),
        )
        .state(state)
        .audit_signing()
        .render(dir);
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        time: 1_700_000_000_000 + i as i64,
        action: "admin.blocks.add".into(),
        outcome: "allowed".into(),
        actor: Some("ops-alice".into()),
        detail: format!(r#"{{"id":{i},"kind":"subject","value":"svc-{i}"}}"#),
    }
}

/// Writes RECORDS records through the store, with a signed checkpoint after the sixth.
async fn fill(config: &Path) {
    let loaded = tiktok_gateway::config::load_file(config).unwrap();
    let store = tiktok_gateway::state::open(&loaded.state, Arc::new(SystemClock)).unwrap();
    let signer = Signer::from_secret(&Secret::new(common::AUDIT_TEST_SEED)).unwrap();
    for i in 1..=RECORDS {
        if i == 7 {
            let (seq, hash) = store.audit_head().await.unwrap().unwrap();
            let detail = serde_json::Value::Object(signer.checkpoint_detail(seq, &hash));
            store
                .audit_append(AuditEntry {
                    time: 1_700_000_000_000,
                    action: CHECKPOINT_ACTION.into(),
                    outcome: "noted".into(),
                    actor: None,
                    detail: detail.to_string(),
                })
                .await
                .unwrap();
        } else {
            store.audit_append(entry(i)).await.unwrap();
        }
    }
}

/// Runs `audit verify`: (success, stdout + stderr).
fn verify(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
        .args(["audit", "verify", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_names(config: &Path, expected: &str, what: &str) {
    let (ok, text) = verify(config);
    assert!(!ok, "{what}: verify passed on a tampered log: {text}");
    assert!(
        text.contains(expected),
        "{what}: expected `{expected}` in: {text}"
    );
}

/// `validate` and `run` agree: an admin API without `audit.signing_key` is refused by both,
/// naming the key; with it, `validate` passes.
#[test]
fn an_admin_api_without_a_signing_key_is_refused_by_validate_and_run() {
    let dir = tempfile::tempdir().unwrap();
    tiktok_gateway::server::dev_certs::generate(dir.path()).unwrap();
    let signer = tiktok_gateway::sandbox::idp::DevSigner::new(
        "https://idp.audit.test",
        Arc::new(SystemClock),
    )
    .unwrap();
    let yaml = Config::new()
        .listener(Listener::plain("public", free_port()))
        .listener(Listener::tls("admin", free_port()).client_auth("required"))
        .jwt(JwtIssuer::file("corp", &signer))
        .admin(Admin {
            jwt: "corp".into(),
            scope: None,
            mfa_methods: vec![],
        })
        .upstream(Upstream::new("orders", "127.0.0.1:9"))
        .api_key(ApiKey::new(
            "batch-exporter",
            "batch-key-0001",
            &["orders:read"],
        ))
        .route(
            Route::prefix("orders", "public", "/orders/")
                .auth(Auth::api_key().scopes(&["orders:read"]))
                .upstream("orders"),
        )
        .render(dir.path());
    let with_key = dir.path().join("with-key.yaml");
    std::fs::write(&with_key, &yaml).unwrap();
    // The same file without its `audit:` section.
    let mut without = String::new();
    let mut skipping = false;
    for line in yaml.lines() {
        if line.starts_with("audit:") {
            skipping = true;
            continue;
        }
        if skipping && line.starts_with(' ') {
            continue;
        }
        skipping = false;
        without.push_str(line);
        without.push('\n');
    }
    assert!(!without.contains("signing_key"));
    let without_key = dir.path().join("without-key.yaml");
    std::fs::write(&without_key, without).unwrap();
    let bin = env!("CARGO_BIN_EXE_tiktok-gateway");
    let out = Command::new(bin)
        .args(["validate", "--config"])
        .arg(&with_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for command in ["validate", "run"] {
        let out = Command::new(bin)
            .args([command, "--config"])
            .arg(&without_key)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command} accepted it: {text}");
        assert!(text.contains("audit.signing_key"), "{command}: {text}");
    }
}

// ---------------------------------------------------------------- embedded

/// A fresh embedded log in a folder of its own: (folder, config, state file).
async fn embedded_log() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.redb");
    let config = write_config(dir.path(), State::embedded(&file));
    fill(&config).await;
    (dir, config, file)
}

fn with_table(file: &Path, change: impl FnOnce(&mut redb::Table<u64, &[u8]>)) {
    let db = redb::Database::open(file).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(AUDIT).unwrap();
        change(&mut table);
    }
    txn.commit().unwrap();
}

fn read(table: &redb::Table<u64, &[u8]>, seq: u64) -> Vec<u8> {
    use redb::ReadableTable;
    table.get(seq).unwrap().unwrap().value().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_verify_passes_on_an_untouched_log() {
    let (_dir, config, _) = embedded_log().await;
    let (ok, text) = verify(&config);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("{RECORDS} records, 1 checkpoints")),
        "{text}"
    );
    assert!(text.contains("signed through record 6"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_verify_names_a_record_with_one_byte_changed() {
    let (_dir, config, file) = embedded_log().await;
    with_table(&file, |t| {
        let mut bytes = read(t, 5);
        // `svc-5` becomes `svc-6`: one byte, still a well-formed record.
        let at = bytes.windows(5).position(|w| w == b"svc-5").unwrap() + 4;
        bytes[at] = b'6';
        t.insert(5, bytes.as_slice()).unwrap();
    });
    assert_names(&config, "record 5 was changed", "one byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_verify_names_a_deleted_record() {
    let (_dir, config, file) = embedded_log().await;
    with_table(&file, |t| {
        t.remove(4).unwrap();
    });
    assert_names(&config, "record 4 was removed", "deleted");
    // The last record removed (the head still names it).
    let (_dir, config, file) = embedded_log().await;
    with_table(&file, |t| {
        t.remove(RECORDS).unwrap();
    });
    assert_names(
        &config,
        &format!("record {RECORDS} was removed"),
        "last deleted",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_verify_names_an_inserted_record() {
    let (_dir, config, file) = embedded_log().await;
    // A forger who knows the encoding seals a record after record 3 and renumbers the rest,
    // moving the head too.
    let db = redb::Database::open(&file).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(AUDIT).unwrap();
        let third = StoredAudit::decode(3, &read(&t, 3)).unwrap();
        let forged = next_record(Some((3, third.hash)), entry(99));
        let mut moved = Vec::new();
        for seq in (4..=RECORDS).rev() {
            let bytes = read(&t, seq);
            moved.push((seq + 1, bytes));
        }
        for (seq, bytes) in &moved {
            t.insert(*seq, bytes.as_slice()).unwrap();
        }
        let bytes = serde_json::to_vec(&StoredAudit::from_record(&forged)).unwrap();
        t.insert(4, bytes.as_slice()).unwrap();
        let last = StoredAudit::decode(RECORDS + 1, &read(&t, RECORDS + 1)).unwrap();
        txn.open_table(AUDIT_HEAD)
            .unwrap()
            .insert(
                AUDIT_HEAD_KEY,
                encode_audit_head(RECORDS + 1, &last.hash).as_slice(),
            )
            .unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    assert_names(&config, "record 4 was inserted", "inserted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_verify_names_two_swapped_records() {
    let (_dir, config, file) = embedded_log().await;
    with_table(&file, |t| {
        let (eight, nine) = (read(t, 8), read(t, 9));
        t.insert(8, nine.as_slice()).unwrap();
        t.insert(9, eight.as_slice()).unwrap();
    });
    assert_names(&config, "record 8 holds record 9", "swapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_verify_catches_a_forged_checkpoint_signature() {
    let (_dir, config, file) = embedded_log().await;
    // A checkpoint re-signed with another key, sealed properly into the chain from there on.
    let db = redb::Database::open(&file).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(AUDIT).unwrap();
        let mut records: Vec<_> = (1..=RECORDS)
            .map(|s| StoredAudit::decode(s, &read(&t, s)).unwrap())
            .collect();
        let other = Signer::from_secret(&Secret::new("77".repeat(32))).unwrap();
        let six = records[5].clone();
        records[6].detail =
            serde_json::Value::Object(other.checkpoint_detail(six.seq, &six.hash)).to_string();
        let mut head = Some((six.seq, six.hash));
        for r in &mut records[6..] {
            let resealed = next_record(head, r.entry());
            head = Some((resealed.seq, resealed.hash));
            *r = resealed;
            let bytes = serde_json::to_vec(&StoredAudit::from_record(r)).unwrap();
            t.insert(r.seq, bytes.as_slice()).unwrap();
        }
        let (seq, hash) = head.unwrap();
        txn.open_table(AUDIT_HEAD)
            .unwrap()
            .insert(AUDIT_HEAD_KEY, encode_audit_head(seq, &hash).as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    assert_names(&config, "checkpoint record 7", "forged checkpoint");
}

// ---------------------------------------------------------------- postgres

struct PgLog {
    _dir: tempfile::TempDir,
    config: PathBuf,
    url: String,
    schema: String,
}

impl PgLog {
    async fn new(url: &str) -> Self {
        let schema = format!("tgw_audit_{:016x}", rand::random::<u64>());
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), State::postgres(url, &schema));
        fill(&config).await;
        Self {
            _dir: dir,
            config,
            url: url.to_owned(),
            schema,
        }
    }

    /// Runs `sql` (`{s}` is the schema) with the append-only triggers bypassed, as the table's
    /// owner could.
    async fn tamper(&self, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL session_replication_role = replica; {} COMMIT;",
                sql.replace("{s}", &format!("\"{}\"", self.schema))
            ))
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
    }

    async fn plain(&self, sql: &str) -> Result<u64, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        let result = client
            .execute(&sql.replace("{s}", &format!("\"{}\"", self.schema)), &[])
            .await;
        drop(client);
        let _ = driver.await;
        result
    }

    async fn drop_schema(&self) {
        self.plain("DROP SCHEMA IF EXISTS {s} CASCADE").await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_passes_and_names_each_kind_of_tampering() {
    let Some(url) = database_url() else { return };

    let log = PgLog::new(&url).await;
    let (ok, text) = verify(&log.config);
    assert!(ok, "{text}");
    assert!(text.contains("signed through record 6"), "{text}");
    // The table refuses changes through ordinary statements.
    assert!(
        log.plain("DELETE FROM {s}.audit_log WHERE seq = 2")
            .await
            .is_err()
    );
    assert!(
        log.plain("UPDATE {s}.audit_log SET actor = 'x' WHERE seq = 2")
            .await
            .is_err()
    );
    log.drop_schema().await;

    let log = PgLog::new(&url).await;
    log.tamper(
        "UPDATE {s}.audit_log SET detail = replace(detail, 'svc-5', 'svc-6') WHERE seq = 5;",
    )
    .await;
    assert_names(&log.config, "record 5 was changed", "pg one byte");
    log.drop_schema().await;

    let log = PgLog::new(&url).await;
    log.tamper("DELETE FROM {s}.audit_log WHERE seq = 4;").await;
    assert_names(&log.config, "record 4 was removed", "pg deleted");
    log.drop_schema().await;

    // Inserted: everything from 4 moved up by one, a record sealed properly at 4, head moved.
    let log = PgLog::new(&url).await;
    let forged = {
        let loaded = tiktok_gateway::config::load_file(&log.config).unwrap();
        let store = tiktok_gateway::state::open(&loaded.state, Arc::new(SystemClock)).unwrap();
        let third = store.audit_range(2, 1).await.unwrap().remove(0);
        next_record(Some((3, third.hash)), entry(99))
    };
    log.tamper(&format!(
        "UPDATE {{s}}.audit_log SET seq = seq + 1000 WHERE seq >= 4;
         UPDATE {{s}}.audit_log SET seq = seq - 999 WHERE seq >= 1000;
         INSERT INTO {{s}}.audit_log (seq, at, action, outcome, actor, detail, prev_hash, hash)
            VALUES (4, {}, '{}', '{}', 'ops-alice', '{}', '\\x{}', '\\x{}');
         UPDATE {{s}}.audit_head SET seq = seq + 1,
            hash = (SELECT hash FROM {{s}}.audit_log ORDER BY seq DESC LIMIT 1);",
        forged.time,
        forged.action,
        forged.outcome,
        forged.detail,
        hex::encode(forged.prev_hash),
        hex::encode(forged.hash),
    ))
    .await;
    assert_names(&log.config, "record 4 was inserted", "pg inserted");
    log.drop_schema().await;

    let log = PgLog::new(&url).await;
    log.tamper(
        "UPDATE {s}.audit_log SET seq = 1000 WHERE seq = 8;
         UPDATE {s}.audit_log SET seq = 8 WHERE seq = 9;
         UPDATE {s}.audit_log SET seq = 9 WHERE seq = 1000;",
    )
    .await;
    assert_names(&log.config, "record 8 holds record 9", "pg swapped");
    log.drop_schema().await;
}
