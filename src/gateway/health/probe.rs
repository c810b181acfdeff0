//! Active probes, on Pingora's load-balancing health checks: `HttpHealthCheck` (a `GET` of the
//! configured path, any 2xx passes) and `TcpHealthCheck` (a connection). Both connect the way
//! traffic does: a TLS upstream is probed over TLS with its `sni` and `ca`, so a target whose
//! certificate would fail a request also fails its probe.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::lb::health_check::{HealthCheck as PingoraCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::{Backend, Extensions};
use pingora::upstreams::peer::{BasicPeer, HttpPeer, PeerOptions};
use pingora::utils::tls::WrappedX509;
use pingora::{Error, ErrorType};

use crate::config::{HealthCheck, Probe, Target, Upstream};

type Check = Box<dyn PingoraCheck + Send + Sync>;

/// The probes of one upstream: one HTTP check per target (each sends its own `Host`), or one
/// TCP check for all.
pub struct Prober {
    checks: Vec<(Target, Check)>,
    tcp: Option<Check>,
    pub timeout: Duration,
    pub interval: Duration,
}

impl Prober {
    pub fn new(
        up: &Upstream,
        hc: &HealthCheck,
        ca: Option<Arc<[WrappedX509]>>,
    ) -> Result<Self, String> {
        let mut prober = Self {
            checks: Vec::new(),
            tcp: None,
            timeout: hc.timeout,
            interval: hc.interval,
        };
        match &hc.probe {
            Probe::Tcp => {
                let mut check = TcpHealthCheck::new();
                check.peer_template = BasicPeer {
                    _address: placeholder().into(),
                    sni: up.tls.as_ref().map(|t| t.sni.clone()).unwrap_or_default(),
                    options: options(hc.timeout, ca),
                };
                prober.tcp = Some(check);
            }
            Probe::Http { path } => {
                for target in &up.targets {
                    let host = match &up.tls {
                        Some(t) => t.sni.clone(),
                        None => target.to_string(),
                    };
                    let mut check = HttpHealthCheck::new(&host, up.tls.is_some());
                    let mut peer = HttpPeer::new(
                        placeholder(),
                        up.tls.is_some(),
                        up.tls.as_ref().map(|t| t.sni.clone()).unwrap_or_default(),
                    );
                    peer.options = options(hc.timeout, ca.clone());
                    check.peer_template = peer;
                    check.req = probe_request(path, &host)
                        .map_err(|e| format!("upstreams.{}.health_check.path: {e}", up.name))?;
                    check.validator = Some(Box::new(|resp| {
                        if resp.status.is_success() {
                            Ok(())
                        } else {
                            Error::e_explain(
                                ErrorType::CustomCode("probe status", resp.status.as_u16()),
                                "the health check answered without 2xx",
                            )
                        }
                    }));
                    prober.checks.push((target.clone(), Box::new(check)));
                }
            }
        }
        Ok(prober)
    }

    /// Probes `addr` of `target` once, bounded by the timeout. `Err` says why it failed.
    pub async fn probe(&self, target: &Target, addr: SocketAddr) -> Result<(), String> {
        let check = match &self.tcp {
            Some(c) => c,
            None => match self.checks.iter().find(|(t, _)| t == target) {
                Some((_, c)) => c,
                None => return Err("no probe for this target".into()),
            },
        };
        let backend = Backend {
            addr: addr.into(),
            weight: 1,
            ext: Extensions::new(),
        };
        match tokio::time::timeout(self.timeout, check.check(&backend)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}

/// Replaced by each target's address when a probe runs.
fn placeholder() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1))
}

/// Connect, TLS and read bounded by the probe's timeout; trust anchors as for traffic.
fn options(timeout: Duration, ca: Option<Arc<[WrappedX509]>>) -> PeerOptions {
    let mut o = PeerOptions::new();
    o.connection_timeout = Some(timeout);
    o.total_connection_timeout = Some(timeout);
    o.read_timeout = Some(timeout);
    o.write_timeout = Some(timeout);
    o.ca = ca;
    o
}

fn probe_request(path: &str, host: &str) -> pingora::Result<pingora::http::RequestHeader> {
    let mut req = pingora::http::RequestHeader::build("GET", path.as_bytes(), Some(3))?;
    req.insert_header(http::header::HOST, host)?;
    req.insert_header(http::header::USER_AGENT, "tiktok-gateway-health-check")?;
    req.insert_header(http::header::CONNECTION, "close")?;
    Ok(req)
}
