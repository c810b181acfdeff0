//! The audit trail (POLICY.md §6, §8): who did what to the gateway, and what the gateway refused
//! or failed to do on its own (admin actions, config reloads, shop authorizations and
//! revocations, block-list changes, token refresh failures, PII-leak blocks, webhook signature
//! failures).
//!
//! Every part of the gateway reports through one [`AuditLog`] handle (`Gateway::audit`). Records
//! are appended to a hash chain in the state store ([`chain`]), so the log is shared by a fleet
//! and tamper-evident; checkpoints of the chain are signed with `audit.signing_key`
//! ([`checkpoint`]); `tiktok-gateway audit verify` checks both ([`verify`]).
//!
//! A record holds no secret and no buyer data: subjects, key names, shop ids and config hashes
//! are fine; tokens, codes, bodies and buyer fields never are.

pub mod chain;
pub mod checkpoint;
mod event;
pub mod verify;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

pub use event::{AuditEvent, Outcome};
pub use writer::AuditWriter;

use crate::clock::SharedClock;
use crate::config::AuditConfig;
use crate::state::{AuditEntry, SharedState, StateError};
use crate::telemetry::metrics::metrics;
use crate::telemetry::readiness::{Readiness, Weight};
use checkpoint::Signer;

/// Records waiting for the writer; a full queue loses a record, counted and logged.
const QUEUE: usize = 4096;
/// Longest detail stored; producers send a few small facts, never bodies.
const MAX_DETAIL_BYTES: usize = 8 * 1024;
/// The `/readyz` check that lists a failing audit store.
pub const READINESS_CHECK: &str = "audit_log";

/// Where audit records go. `record` never blocks a request.
#[derive(Debug, Default)]
pub struct AuditLog {
    durable: Option<Durable>,
    /// Counts of aggregated events per (action, outcome, key) in the current minute.
    tallies: Mutex<HashMap<(&'static str, Outcome, String), u64>>,
}

struct Durable {
    store: SharedState,
    clock: SharedClock,
    timeout: Duration,
    signer: Option<Signer>,
    config: AuditConfig,
    readiness: Arc<Readiness>,
    tx: mpsc::Sender<AuditEvent>,
    rx: Mutex<Option<mpsc::Receiver<AuditEvent>>>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("backend", &self.store.backend())
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// A log that only writes the application log (tools and unit tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// The gateway's log: records go to the state store's chain, checkpoints are signed when
    /// `config.signing_key` is set. The writer runs in [`AuditLog::run`].
    pub fn durable(
        store: SharedState,
        clock: SharedClock,
        timeout: Duration,
        config: &AuditConfig,
        readiness: Arc<Readiness>,
    ) -> Result<Self, String> {
        let signer = match &config.signing_key {
            Some(key) => {
                Some(Signer::from_secret(key).map_err(|e| format!("audit.signing_key: {e}"))?)
            }
            None => {
                tracing::warn!(
                    "audit.signing_key is not set: the audit log is hash-chained but its checkpoints are not signed"
                );
                None
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        Ok(Self {
            durable: Some(Durable {
                store,
                clock,
                timeout,
                signer,
                config: config.clone(),
                readiness,
                tx,
                rx: Mutex::new(Some(rx)),
            }),
            tallies: Mutex::default(),
        })
    }

    /// Records `event` without waiting: it is queued for the writer (and written to the
    /// application log under the `audit` target at once). A full queue loses it, counted in
    /// `audit_write_failures_total{reason="queue_full"}` and logged as an error.
    pub fn record(&self, event: AuditEvent) {
        log_line(&event);
        if let Some(d) = &self.durable
            && d.tx.try_send(event).is_err()
        {
            metrics()
                .audit_write_failures
                .with_label_values(&["queue_full"])
                .inc();
            tracing::error!(target: "audit", "audit record lost: the audit writer fell behind");
        }
    }

    /// Records `event` and waits until it is stored (admin actions: never answered unaudited).
    /// On a store failure the record is queued for the writer to retry, and the error returned.
    pub async fn record_now(&self, event: AuditEvent) -> Result<u64, StateError> {
        log_line(&event);
        let Some(d) = &self.durable else {
            return Ok(0);
        };
        match d.append(&event).await {
            Ok(seq) => Ok(seq),
            Err(e) => {
                if d.tx.try_send(event).is_err() {
                    metrics()
                        .audit_write_failures
                        .with_label_values(&["queue_full"])
                        .inc();
                    tracing::error!(target: "audit", "audit record lost: the audit writer fell behind");
                }
                Err(e)
            }
        }
    }

    /// Counts one occurrence of an event that can come in floods (webhook signature failures):
    /// one record per minute per `(action, outcome, key)` carries the count.
    pub fn tally(&self, action: &'static str, outcome: Outcome, key: &str) {
        *self
            .tallies
            .lock()
            .entry((action, outcome, key.to_owned()))
            .or_insert(0) += 1;
    }

    /// Reads records after `after` (the admin API's `GET /admin/audit`).
    pub async fn read(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::state::AuditRecord>, StateError> {
        match &self.durable {
            Some(d) => {
                crate::state::health::with_timeout(d.timeout, d.store.audit_range(after, limit))
                    .await
            }
            None => Ok(Vec::new()),
        }
    }

    /// The aggregated events counted so far, as records, clearing the counts.
    fn drain_tallies(&self, minute: i64) -> Vec<AuditEvent> {
        let mut tallies = self.tallies.lock();
        tallies
            .drain()
            .map(|((action, outcome, key), count)| {
                AuditEvent::new(action, outcome)
                    .detail("key", key)
                    .detail("count", count)
                    .detail("minute", minute)
            })
            .collect()
    }
}

impl Durable {
    async fn append(&self, event: &AuditEvent) -> Result<u64, StateError> {
        let result = crate::state::health::with_timeout(
            self.timeout,
            self.store
                .audit_append(entry_of(event, self.clock.unix_millis())),
        )
        .await;
        match &result {
            Ok(_) => self
                .readiness
                .report(READINESS_CHECK, Weight::Degraded, Ok(())),
            Err(e) => {
                metrics()
                    .audit_write_failures
                    .with_label_values(&["store_error"])
                    .inc();
                tracing::error!(target: "audit", action = event.action, error = %e, "audit record not stored; retrying");
                self.readiness.report(
                    READINESS_CHECK,
                    Weight::Degraded,
                    Err(format!("audit records cannot be stored ({})", e.kind())),
                );
            }
        }
        result.map(|r| r.seq)
    }
}

fn entry_of(event: &AuditEvent, now_ms: i64) -> AuditEntry {
    let mut detail = serde_json::Value::Object(event.detail.clone()).to_string();
    if detail.len() > MAX_DETAIL_BYTES {
        detail = r#"{"truncated":true}"#.to_owned();
    }
    AuditEntry {
        time: now_ms,
        action: event.action.to_owned(),
        outcome: event.outcome.as_str().to_owned(),
        actor: event.actor.clone(),
        detail,
    }
}

fn log_line(event: &AuditEvent) {
    tracing::info!(
        target: "audit",
        action = event.action,
        outcome = event.outcome.as_str(),
        actor = event.actor.as_deref().unwrap_or("system"),
        detail = %serde_json::Value::Object(event.detail.clone()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::state::embedded::EmbeddedStore;

    fn log(key: bool) -> (AuditLog, SharedState) {
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let store: SharedState = Arc::new(EmbeddedStore::open(None, clock.clone()).unwrap());
        let config = AuditConfig {
            signing_key: key.then(|| Secret::new("42".repeat(32))),
            ..AuditConfig::default()
        };
        let log = AuditLog::durable(
            store.clone(),
            clock,
            Duration::from_secs(2),
            &config,
            Arc::new(Readiness::new()),
        )
        .unwrap();
        (log, store)
    }

    #[tokio::test]
    async fn a_flood_of_signature_failures_is_one_record_with_its_count() {
        let (log, store) = log(true);
        let log = Arc::new(log);
        for _ in 0..5000 {
            log.tally(
                "webhook.signature_failed",
                Outcome::Refused,
                "tiktok-webhooks",
            );
        }
        log.tally("webhook.signature_failed", Outcome::Refused, "other");
        log.record(AuditEvent::new("config.reload", Outcome::Allowed).detail("config_hash", "ab"));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn({
            let log = log.clone();
            async move { log.run(stopped).await }
        });
        stop.send(true).unwrap();
        writer.await.unwrap();
        let records = store.audit_range(0, 100).await.unwrap();
        let floods: Vec<_> = records
            .iter()
            .filter(|r| r.action == "webhook.signature_failed")
            .collect();
        assert_eq!(floods.len(), 2, "{records:#?}");
        let main = floods
            .iter()
            .find(|r| r.detail.contains("tiktok-webhooks"))
            .unwrap();
        assert!(main.detail.contains("\"count\":5000"), "{}", main.detail);
        assert!(records.iter().any(|r| r.action == "config.reload"));
        // Stopping signs the head; the whole log verifies with the public key.
        assert_eq!(
            records.last().unwrap().action,
            checkpoint::CHECKPOINT_ACTION
        );
        let public = Signer::from_secret(&Secret::new("42".repeat(32)))
            .unwrap()
            .public_key();
        let summary = verify::verify(store.as_ref(), Some(public)).await.unwrap();
        assert_eq!(summary.records, records.len() as u64);
        assert_eq!(summary.signed_through, Some(records.len() as u64 - 1));
    }

    #[tokio::test]
    async fn an_awaited_record_is_stored_before_it_returns() {
        let (log, store) = log(false);
        let seq = log
            .record_now(AuditEvent::new("admin.blocks.add", Outcome::Allowed).actor("ops-alice"))
            .await
            .unwrap();
        let stored = store.audit_range(seq - 1, 1).await.unwrap();
        assert_eq!(stored[0].actor.as_deref(), Some("ops-alice"));
        assert_eq!(stored[0].outcome, "allowed");
    }
}
