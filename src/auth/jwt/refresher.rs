//! The background task that keeps a JWKS URL store fresh: fetch at start, then every `refresh`
//! interval; after a failure, retry sooner (every `min(refresh, 30 s)`) so an outage that ends
//! is noticed before the stale window closes. Runs until shutdown; the lead registers it as a
//! Pingora background service (it implements `BackgroundService`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::store::JwksStore;

const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct JwksRefresher {
    stores: Vec<Arc<JwksStore>>,
}

impl JwksRefresher {
    /// A refresher for every URL-backed store given; fixed stores are ignored.
    pub fn new(stores: impl IntoIterator<Item = Arc<JwksStore>>) -> Self {
        Self {
            stores: stores.into_iter().filter(|s| s.is_remote()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// Refreshes all stores until `shutdown` turns true (or its sender is dropped).
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.stores.is_empty() {
            return;
        }
        let tasks = self.stores.iter().map(|store| {
            let store = Arc::clone(store);
            let mut shutdown = shutdown.clone();
            async move {
                loop {
                    let wait = match store.refresh().await {
                        Ok(()) => store.refresh_interval().unwrap_or(RETRY_AFTER_FAILURE),
                        Err(e) => {
                            tracing::warn!(issuer = %store.name(), error = %e,
                                "JWKS refresh failed; keeping cached keys until stale");
                            store
                                .refresh_interval()
                                .unwrap_or(RETRY_AFTER_FAILURE)
                                .min(RETRY_AFTER_FAILURE)
                        }
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = wait_for_shutdown(&mut shutdown) => return,
                    }
                }
            }
        });
        tokio::select! {
            _ = futures::future::join_all(tasks) => {}
            _ = wait_for_shutdown(&mut shutdown) => {}
        }
    }
}

async fn wait_for_shutdown(rx: &mut tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.run(shutdown).await;
    }
}
