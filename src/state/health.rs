//! Whether the state backend answers, as every user of it saw last, and as a probe checks when
//! nobody uses it. `/readyz` fails while it is down and names the cause; `state_backend_up`
//! and `state_errors_total` say the same to Prometheus.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{SharedState, StateError};
use crate::telemetry::metrics::metrics;

/// Shared by everything that talks to the store.
#[derive(Debug)]
pub struct StateHealth {
    backend: &'static str,
    up: AtomicBool,
    cause: Mutex<Option<String>>,
}

impl StateHealth {
    pub fn new(backend: &'static str) -> Arc<Self> {
        metrics()
            .state_backend_up
            .with_label_values(&[backend])
            .set(1);
        Arc::new(Self {
            backend,
            up: AtomicBool::new(true),
            cause: Mutex::new(None),
        })
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Why the backend is considered down, for `/readyz`.
    pub fn cause(&self) -> Option<String> {
        if self.is_up() {
            None
        } else {
            self.cause.lock().clone()
        }
    }

    /// An operation succeeded: the backend answers.
    pub fn ok(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            *self.cause.lock() = None;
            metrics()
                .state_backend_up
                .with_label_values(&[self.backend])
                .set(1);
            tracing::info!(backend = self.backend, "state backend reachable again");
        }
    }

    /// Records the outcome of `op`: a backend failure marks the backend down.
    pub fn observe<T>(&self, op: &'static str, result: &Result<T, StateError>) {
        match result {
            Ok(_) => self.ok(),
            Err(e) => {
                metrics()
                    .state_errors
                    .with_label_values(&[self.backend, op])
                    .inc();
                if e.is_backend_failure() {
                    // Public on /readyz (no authentication): the kind only, never the
                    // driver's text, which may name hosts; the log has the whole error.
                    *self.cause.lock() =
                        Some(format!("state backend {} {}", self.backend, e.kind()));
                    if self.up.swap(false, Ordering::Relaxed) {
                        metrics()
                            .state_backend_up
                            .with_label_values(&[self.backend])
                            .set(0);
                        tracing::error!(backend = self.backend, op, error = %e, "state backend unavailable");
                    }
                }
            }
        }
    }
}

/// Pings the store: every `down_every` while it is down (so recovery shows within that time
/// even without traffic), every `up_every` while it is up (so an outage shows without traffic).
pub async fn probe(
    store: SharedState,
    health: Arc<StateHealth>,
    timeout: Duration,
    up_every: Duration,
    down_every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let wait = if health.is_up() { up_every } else { down_every };
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
        let result = with_timeout(timeout, store.ping()).await;
        health.observe("ping", &result);
    }
}

/// Bounds a state operation by `timeout`.
pub async fn with_timeout<T>(
    timeout: Duration,
    op: impl std::future::Future<Output = Result<T, StateError>>,
) -> Result<T, StateError> {
    tokio::time::timeout(timeout, op)
        .await
        .unwrap_or_else(|_| Err(StateError::Timeout(timeout.as_millis() as u64)))
}
