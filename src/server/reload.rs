//! Config reload: on SIGHUP and when the file's content changes. The new file is validated first;
//! if it is refused, the running config stays and the error is logged and counted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sha2::{Digest, Sha256};

use crate::gateway::state::Gateway;

pub struct ReloadService {
    pub gateway: Arc<Gateway>,
    pub path: PathBuf,
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
