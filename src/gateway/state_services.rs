//! The state layer as the running gateway holds it: the store, its health, the block list view,
//! and the background work that keeps them current (health probe, block-list watch, Postgres
//! `LISTEN`). Built once at start; a reload that changes `state:` is refused (it applies on
//! restart).

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::clock::SharedClock;
use crate::config::StateConfig;
use crate::state::blocks::{BlockList, Blocks};
use crate::state::health::{StateHealth, probe};
use crate::state::{SharedState, StateError};

pub struct StateServices {
    pub store: SharedState,
    pub health: Arc<StateHealth>,
    pub blocks: Arc<Blocks>,
    pub config: StateConfig,
}

impl StateServices {
    /// Opens the store (migrating its schema) and reads the block list once, so the kill switch
    /// applies from the first request.
    pub fn start(config: &StateConfig, clock: SharedClock) -> Result<Self, StateError> {
        let store = crate::state::open(config, clock.clone())?;
        let health = StateHealth::new(store.backend());
        let initial = {
            let store = store.clone();
            crate::state::block_on_startup(async move {
                let (version, entries) = store.blocks().await?;
                Ok(BlockList::from_entries(version, &entries))
            })?
        };
        let blocks = Arc::new(Blocks::new(
            store.clone(),
            health.clone(),
            clock,
            config.timeout,
            initial,
        ));
        Ok(Self {
            store,
            health,
            blocks,
            config: config.clone(),
        })
    }
}

/// Runs the health probe, the block-list watcher and the change listener.
pub struct StateBackground {
    pub services: Arc<StateServices>,
}

#[async_trait]
impl BackgroundService for StateBackground {
    async fn start(&self, shutdown: ShutdownWatch) {
        let s = &self.services;
        let poll = s.config.poll_interval;
        tokio::join!(
            probe(
                s.store.clone(),
                s.health.clone(),
                s.config.timeout,
                std::time::Duration::from_secs(5),
                poll.max(std::time::Duration::from_millis(200)),
                shutdown.clone(),
            ),
            s.blocks.watch(poll, shutdown.clone()),
            s.store.listen(shutdown.clone()),
        );
    }
}
