//! Config reload: on SIGHUP and when the file's content changes. The new file is validated first;
//! if it is refused, the running config stays and the error is logged and counted. The same
//! triggers re-read the TLS listeners' certificates, keys and client-CA bundles (`TlsFiles`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sha2::{Digest, Sha256};

use super::tls::{Reloaded, TlsFiles};
use crate::gateway::state::Gateway;
use crate::telemetry::metrics::metrics;

pub struct ReloadService {
    pub gateway: Arc<Gateway>,
    pub path: PathBuf,
    /// The TLS listeners' material.
    pub tls: Vec<Arc<TlsFiles>>,
    /// How often the file is checked for changes.
    pub poll: Duration,
}

fn file_hash(path: &PathBuf) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| hex::encode(Sha256::digest(&b)))
}

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; file changes still reload");
                None
            }
        };
        if hup.is_some() {
            // Said once SIGHUP is handled: before this a SIGHUP would end the process.
            tracing::info!(config = %self.path.display(), "reload on SIGHUP and on file change");
        }
        let mut last = file_hash(&self.path);
        let mut tick = tokio::time::interval(self.poll);
        loop {
            let by_signal = tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => false,
                Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            let now = file_hash(&self.path);
            if by_signal || now != last {
                last = now;
                // Errors are logged and counted inside; the running config stays.
                let _ = self.gateway.reload_from(&self.path);
            }
            for files in &self.tls {
                if by_signal || files.changed() {
                    reload_tls(files, by_signal);
                }
            }
        }
    }
}

/// Re-reads one listener's TLS material, logging and counting the outcome.
fn reload_tls(files: &TlsFiles, force: bool) {
    let listener = files.listener.as_str();
    match files.reload(force) {
        Ok(Reloaded::Unchanged) => {}
        Ok(Reloaded::Applied) => {
            metrics()
                .tls_reloads
                .with_label_values(&[listener, "applied"])
                .inc();
            tracing::info!(target: "audit", event = "tls_reload", outcome = "applied", listener,
                "new TLS certificate, key and client CA in use for new connections");
        }
        Err(e) => {
            metrics()
                .tls_reloads
                .with_label_values(&[listener, "rejected"])
                .inc();
            tracing::error!(target: "audit", event = "tls_reload", outcome = "rejected", listener,
                error = %e, "new TLS material refused; the listener keeps the previous one");
        }
    }
}

/// Re-resolves upstream host names periodically.
pub struct ResolveService {
    pub gateway: Arc<Gateway>,
    pub every: Duration,
}

#[async_trait]
impl BackgroundService for ResolveService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => self.gateway.upstreams.refresh().await,
            }
        }
    }
}
