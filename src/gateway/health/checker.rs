//! The active health checker: one loop for every upstream with a `health_check`, run as a
//! background service. Each pool's round probes all its endpoints concurrently; rounds of
//! different pools overlap, so a slow upstream never delays another's probes. A reload that adds
//! or replaces a pool wakes the loop, and the new pool is probed at once.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;

use crate::gateway::upstreams::UpstreamRegistry;

/// Longest sleep between two looks at the pools (a safety net; changes also wake the loop).
const MAX_SLEEP: Duration = Duration::from_secs(1);

pub async fn run(registry: &UpstreamRegistry, mut shutdown: watch::Receiver<bool>) {
    let mut rounds = FuturesUnordered::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = Instant::now();
        let pools = registry.pools();
        let mut wake = now + MAX_SLEEP;
        for pool in pools.values().filter(|p| p.has_probes()) {
            if pool.round_due(now) {
                let pool = pool.clone();
                rounds.push(async move { pool.probe_round().await });
            } else if let Some(at) = pool.next_round() {
                wake = wake.min(at);
            }
        }
        drop(pools);
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            Some(()) = rounds.next(), if !rounds.is_empty() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = registry.changed() => {}
        }
    }
}
