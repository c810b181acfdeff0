//! The upstream registry: resolved addresses per target, trust anchors per CA file, and a
//! [`Pool`] per upstream that holds its targets' health (active probes, circuit breakers) and
//! picks the target for each request. Names are resolved in the background, never on the request
//! path (Pingora's `HttpPeer::new` would block and panic on a failed lookup).
//!
//! A config is registered in two steps so a reload that fails to compile changes nothing:
//! [`UpstreamRegistry::prepare`] builds the pools the config needs (keeping the pool, and so the
//! health, of every upstream the reload leaves as it was), `compile` hands them to the routes, and
//! [`UpstreamRegistry::commit`] makes them the ones the resolver and the health checker serve.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use pingora::utils::tls::WrappedX509;
use tokio::sync::Notify;

pub use super::health::pool::{Pool, Selected};
use crate::config::{Target, Upstream};

/// Pools by upstream name.
pub type Pools = HashMap<String, Arc<Pool>>;

/// Shared across config reloads so resolution and health survive a reload.
#[derive(Default)]
pub struct UpstreamRegistry {
    resolved: DashMap<Target, Arc<ArcSwap<Vec<SocketAddr>>>>,
    ca: DashMap<PathBuf, Arc<[WrappedX509]>>,
    pools: ArcSwap<Pools>,
    /// Wakes the health checker when the pools change.
    changed: Notify,
}

impl UpstreamRegistry {
    /// The pools `upstreams` needs: the current pool of every upstream the config leaves as it
    /// was, a fresh one for the others. Loads every CA file (the only way this can fail). Nothing
    /// the running gateway uses changes until [`commit`](Self::commit).
    pub fn prepare(&self, upstreams: &HashMap<String, Arc<Upstream>>) -> Result<Pools, String> {
        let current = self.pools.load();
        let mut out = Pools::new();
        for up in upstreams.values() {
            for t in &up.targets {
                self.resolved.entry(t.clone()).or_insert_with(|| {
                    let now = match t.host.parse::<std::net::IpAddr>() {
                        Ok(ip) => vec![SocketAddr::new(ip, t.port)],
                        // Resolved by `refresh`, at start and then periodically.
                        Err(_) => Vec::new(),
                    };
                    Arc::new(ArcSwap::from_pointee(now))
                });
            }
            let ca = match up.tls.as_ref().and_then(|t| t.ca.as_ref()) {
                Some(path) => Some(self.ca_for(path)?),
                None => None,
            };
            let pool = match current.get(&up.name) {
                Some(p) if p.serves(up) => p.clone(),
                _ => Arc::new(Pool::new(up, ca)?),
            };
            self.sync(&pool);
            out.insert(up.name.clone(), pool);
        }
        Ok(out)
    }

    /// Makes `pools` (from [`prepare`](Self::prepare)) the ones resolution and health checks
    /// serve; pools left out stop counting in the health gauges.
    pub fn commit(&self, pools: Pools) {
        let old = self.pools.swap(Arc::new(pools));
        let new = self.pools.load();
        for (name, pool) in old.iter() {
            if !new.get(name).is_some_and(|p| Arc::ptr_eq(p, pool)) {
                pool.retire();
            }
        }
        self.changed.notify_one();
    }

    /// The pools the running config uses.
    pub fn pools(&self) -> Arc<Pools> {
        self.pools.load_full()
    }

    /// Resolves when the pools change.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Resolves every host name target (run at start and periodically in the background).
    pub async fn refresh(&self) {
        let names: Vec<(Target, Arc<ArcSwap<Vec<SocketAddr>>>)> = self
            .resolved
            .iter()
            .filter(|e| e.key().host.parse::<std::net::IpAddr>().is_err())
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (target, slot) in names {
            match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if !addrs.is_empty() {
                        slot.store(Arc::new(addrs));
                    }
                }
                // Keep the last good answer; a request with none gets a clear 502.
                Err(e) => {
                    tracing::warn!(host = %target.host, error = %e, "upstream name did not resolve")
                }
            }
        }
        for pool in self.pools.load().values() {
            self.sync(pool);
        }
    }

    fn sync(&self, pool: &Pool) {
        pool.sync(|t| {
            self.resolved
                .get(t)
                .map(|s| s.load().as_ref().clone())
                .unwrap_or_default()
        });
    }

    fn ca_for(&self, path: &std::path::Path) -> Result<Arc<[WrappedX509]>, String> {
        if let Some(ca) = self.ca.get(path) {
            return Ok(ca.clone());
        }
        let ca = load_ca(path)?;
        self.ca.insert(path.to_path_buf(), ca.clone());
        Ok(ca)
    }
}

/// Reads a PEM bundle into Pingora's CA type, checking every certificate parses (Pingora's own
/// parser panics on bad DER).
fn load_ca(path: &std::path::Path) -> Result<Arc<[WrappedX509]>, String> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read CA {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("bad PEM in {}: {e}", path.display()))?;
        x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
        out.push(WrappedX509::new(
            cert.as_ref().to_vec(),
            pingora::utils::tls::parse_x509,
        ));
    }
    if out.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(out.into())
}
