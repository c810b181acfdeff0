//! Upstream selection: resolved addresses per upstream, round robin, and a short passive
//! ejection of targets that failed to connect (a light circuit breaker) so one dead target does
//! not fail every other request. Names are resolved in the background, never on the request path
//! (Pingora's `HttpPeer::new` would block and panic on a failed lookup).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;

use crate::config::{Target, Upstream};
use crate::error::GatewayError;

/// How long a target that refused a connection is skipped.
const EJECT_FOR: Duration = Duration::from_secs(5);

struct Resolved {
    /// Per target, its current addresses.
    addrs: Vec<(Target, Vec<SocketAddr>)>,
}

/// Shared across config reloads so resolution and health survive a reload.
#[derive(Default)]
pub struct UpstreamRegistry {
    resolved: DashMap<Target, Arc<ArcSwap<Vec<SocketAddr>>>>,
    ejected: DashMap<SocketAddr, Instant>,
    cursor: DashMap<String, Arc<AtomicUsize>>,
    ca: DashMap<std::path::PathBuf, Arc<[WrappedX509]>>,
}

impl UpstreamRegistry {
    /// Registers the targets of a config: IP literals resolve at once, names on `refresh`.
    pub fn register(&self, upstreams: &HashMap<String, Arc<Upstream>>) -> Result<(), String> {
        for up in upstreams.values() {
            for t in &up.targets {
                if let Ok(ip) = t.host.parse::<std::net::IpAddr>() {
                    self.resolved.entry(t.clone()).or_insert_with(|| {
                        Arc::new(ArcSwap::from_pointee(vec![SocketAddr::new(ip, t.port)]))
                    });
                } else {
                    self.resolved
                        .entry(t.clone())
                        .or_insert_with(|| Arc::new(ArcSwap::from_pointee(Vec::new())));
                }
            }
            if let Some(ca) = up.tls.as_ref().and_then(|t| t.ca.as_ref())
                && !self.ca.contains_key(ca)
            {
                self.ca.insert(ca.clone(), load_ca(ca)?);
            }
        }
        Ok(())
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
    }

    /// Picks a peer for `up`: round robin over resolved addresses, skipping ejected ones
    /// unless all are ejected.
    pub fn select(
        &self,
        up: &Upstream,
        attempt: usize,
    ) -> Result<(HttpPeer, SocketAddr), GatewayError> {
        let resolved = Resolved {
            addrs: up
                .targets
                .iter()
                .map(|t| {
                    let addrs = self
                        .resolved
                        .get(t)
                        .map(|s| s.load().as_ref().clone())
                        .unwrap_or_default();
                    (t.clone(), addrs)
                })
                .collect(),
        };
        let all: Vec<SocketAddr> = resolved
            .addrs
            .iter()
            .flat_map(|(_, a)| a.iter().copied())
            .collect();
        if all.is_empty() {
            return Err(GatewayError::bad_gateway(
                "upstream_unresolved",
                "the upstream has no resolved address",
            ));
        }
        let cursor = self
            .cursor
            .entry(up.name.clone())
            .or_insert_with(|| Arc::new(AtomicUsize::new(0)))
            .clone();
        let start = cursor.fetch_add(1, Ordering::Relaxed).wrapping_add(attempt);
        let now = Instant::now();
        let healthy = |a: &SocketAddr| self.ejected.get(a).is_none_or(|until| *until <= now);
        let addr = (0..all.len())
            .map(|i| all[(start + i) % all.len()])
            .find(|a| healthy(a))
            .unwrap_or(all[start % all.len()]);
        let (tls, sni) = match &up.tls {
            Some(t) => (true, t.sni.clone()),
            None => (false, String::new()),
        };
        let mut peer = HttpPeer::new(addr, tls, sni);
        // Pingora's connection pool keys on address, SNI and verify flags but not on the trust
        // anchors: without this, a connection verified under one upstream's `ca` could be
        // lent to another upstream at the same address that trusts a different CA.
        peer.group_key = pool_group(&up.name);
        peer.options.connection_timeout = Some(up.connect_timeout);
        peer.options.total_connection_timeout = Some(up.connect_timeout * 2);
        peer.options.read_timeout = Some(up.read_timeout);
        peer.options.write_timeout = Some(up.write_timeout);
        peer.options.idle_timeout = Some(up.idle_timeout);
        if let Some(ca) = up.tls.as_ref().and_then(|t| t.ca.as_ref()) {
            peer.options.ca = self.ca.get(ca).map(|c| c.clone());
        }
        Ok((peer, addr))
    }

    pub fn eject(&self, addr: SocketAddr) {
        self.ejected.insert(addr, Instant::now() + EJECT_FOR);
    }

    pub fn restore(&self, addr: &SocketAddr) {
        self.ejected.remove(addr);
    }
}

/// Reads a PEM bundle into Pingora's CA type, checking every certificate parses (Pingora's own
/// parser panics on bad DER).
/// A pool partition per upstream name.
fn pool_group(upstream: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    upstream.hash(&mut h);
    h.finish()
}

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
