//! The writer task: stores queued records in order (retrying a failing store, never dropping a
//! record it holds), writes the per-minute aggregates, and signs checkpoints.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::checkpoint::CHECKPOINT_ACTION;
use super::{AuditEvent, AuditLog, Durable, Outcome};
use crate::state::health::with_timeout;

/// Pause between attempts to store a record while the store fails.
const RETRY: Duration = Duration::from_secs(1);

/// The writer as a background service of the server.
pub struct AuditWriter {
    pub log: std::sync::Arc<AuditLog>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for AuditWriter {
    async fn start(&self, shutdown: pingora::server::ShutdownWatch) {
        self.log.run(shutdown).await;
    }
}

struct Checkpoints {
    /// The last seq a checkpoint covers (or that is a checkpoint itself).
    covered: u64,
    at: Instant,
}

impl AuditLog {
    /// Runs the writer until `shutdown`; then stores what is queued and counted (one attempt
    /// each). Does nothing for a log without a store, or when already running.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let Some(d) = &self.durable else {
            return;
        };
        let Some(mut rx) = d.rx.lock().take() else {
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut minute = d.clock.unix_seconds() / 60;
        let mut checkpoints = Checkpoints {
            covered: 0,
            at: Instant::now(),
        };
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => {
                        if !store_retrying(d, &event, &mut shutdown).await {
                            break;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    let now = d.clock.unix_seconds() / 60;
                    if now != minute {
                        for event in self.drain_tallies(minute * 60) {
                            let _ = d.append(&event).await;
                        }
                        minute = now;
                    }
                    checkpoint(d, &mut checkpoints).await;
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        // Stopping: one attempt for everything still held, none after the store fails (a
        // stop must not wait out a timeout per queued record).
        let mut held: Vec<AuditEvent> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        held.extend(self.drain_tallies(minute * 60));
        let total = held.len();
        for (i, event) in held.iter().enumerate() {
            if d.append(event).await.is_err() {
                tracing::error!(target: "audit", lost = total - i, "audit records lost at shutdown: the store did not take them");
                return;
            }
        }
        checkpoints.at = Instant::now() - d.config.checkpoint_interval;
        checkpoint(d, &mut checkpoints).await;
    }
}

/// Stores `event`, retrying until it is stored; `false` when shutdown came first (after one
/// last attempt).
async fn store_retrying(
    d: &Durable,
    event: &AuditEvent,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        if d.append(event).await.is_ok() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    if d.append(event).await.is_err() {
                        tracing::error!(target: "audit", action = event.action, "audit record lost at shutdown: the store did not take it");
                    }
                    return false;
                }
            }
        }
    }
}

/// Signs the chain's head when enough records or time have passed since the last checkpoint.
async fn checkpoint(d: &Durable, state: &mut Checkpoints) {
    let Some(signer) = &d.signer else {
        return;
    };
    let Ok(Some((seq, hash))) = with_timeout(d.timeout, d.store.audit_head()).await else {
        return;
    };
    if seq <= state.covered {
        return;
    }
    let due = seq - state.covered >= d.config.checkpoint_every
        || state.at.elapsed() >= d.config.checkpoint_interval;
    if !due {
        return;
    }
    // Nothing but a checkpoint since the last one (another replica's): nothing to sign.
    if let Ok(last) = with_timeout(d.timeout, d.store.audit_range(seq - 1, 1)).await
        && last.first().is_some_and(|r| r.action == CHECKPOINT_ACTION)
    {
        state.covered = seq;
        state.at = Instant::now();
        return;
    }
    let mut event = AuditEvent::new(CHECKPOINT_ACTION, Outcome::Noted);
    event.detail = signer.checkpoint_detail(seq, &hash);
    if let Ok(at) = d.append(&event).await {
        state.covered = at;
        state.at = Instant::now();
    }
}
