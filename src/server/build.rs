//! Assembles the Pingora server from a gateway: one service per listener, plus background work.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use super::health::HealthCheckService;
use super::lifecycle::{Ended, InFlight, UnixSignals, run_until_drained};
use super::metrics_app::MetricsApp;
use super::readiness::{ReadinessChecks, checks_for};
use super::reload::{ReloadService, ResolveService};
use super::tls::{TlsFiles, listener_settings};
use crate::admin::AdminApp;
use crate::auth::{ClientAuthMode, JwksRefresher};
use crate::config::{
    ClientAuth, ConfigError, ConfigIssue, GatewayConfig, Listener, ListenerRole, ListenerTls,
};
use crate::gateway::snapshot::{Snapshot, slow_client_settings};
use crate::gateway::state::{Gateway, StartError};
use crate::gateway::state_services::StateBackground;
use crate::gateway::tiktok::TikTokBackground;
use crate::pipeline::proxy::GatewayProxy;
use crate::transport::{
    ConnectionCapped, ConnectionLimiter, ConnectionLimits, MemoryReturn, TimedServe,
};

/// A built server and the work a graceful stop waits for.
pub struct GatewayServer {
    server: Server,
    in_flight: InFlight,
    gateway: Arc<Gateway>,
}

/// The Pingora server for `config`, before any service is added. With `upgrade`, its bootstrap
/// takes the listening sockets over from the running gateway (on the upgrade socket in
/// `server.state_dir`) instead of binding them.
pub fn new_server(config: &GatewayConfig, upgrade: bool) -> Server {
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: config.server.upgrade_socket().display().to_string(),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    Server::new_with_opt_and_conf(Some(opt), conf)
}

/// Builds a ready-to-run server. `config_path` enables reload on SIGHUP / file change.
pub fn build_server(
    gateway: Arc<Gateway>,
    config_path: Option<PathBuf>,
) -> Result<GatewayServer, StartError> {
    let server = new_server(&gateway.snapshot().config, false);
    build_server_on(server, gateway, config_path)
}

/// Adds the gateway's services to `server` (from [`new_server`], bootstrapped or not).
pub fn build_server_on(
    mut server: Server,
    gateway: Arc<Gateway>,
    config_path: Option<PathBuf>,
) -> Result<GatewayServer, StartError> {
    let snapshot = gateway.snapshot();
    let config = &snapshot.config;
    let conf = server.configuration.clone();
    let mut in_flight = InFlight::default();
    let stopping = gateway.clone();
    // Every TLS listener's certificate, key and client CA, re-read on SIGHUP or change.
    let mut rotating: Vec<Arc<TlsFiles>> = Vec::new();

    for (listener_index, listener) in config.listeners.iter().enumerate() {
        let addr = listener.address.to_string();
        let tls = match &listener.tls {
            Some(t) => {
                let (settings, files) = tls_settings(listener, t)?;
                rotating.push(files);
                Some(settings)
            }
            None => None,
        };
        match listener.role {
            ListenerRole::Proxy => {
                let proxy = GatewayProxy {
                    listener: listener.name.as_str().into(),
                    listener_index,
                    gateway: gateway.clone(),
                };
                let app = capped(http_proxy(&conf, proxy), listener);
                in_flight.listener(app.limiter().clone());
                let mut svc = Service::new(format!("proxy:{}", listener.name), app);
                svc.add_listener(endpoint(&addr, tls));
                server.add_service(svc);
            }
            ListenerRole::Metrics => {
                let app = timed_app(
                    MetricsApp {
                        gateway: gateway.clone(),
                    },
                    listener,
                );
                in_flight.listener(app.limiter().clone());
                add_app(&mut server, &listener.name, app, &addr, tls);
            }
            ListenerRole::Admin => {
                let app = timed_app(
                    AdminApp {
                        gateway: gateway.clone(),
                    },
                    listener,
                );
                in_flight.listener(app.limiter().clone());
                add_app(&mut server, &listener.name, app, &addr, tls);
            }
        }
    }

    if let Some(path) = config_path {
        server.add_service(background_service(
            "config reload",
            ReloadService {
                gateway: gateway.clone(),
                path,
                tls: rotating,
                poll: Duration::from_secs(2),
            },
        ));
    }
    // A stop waits for deliveries in flight and a token refresh under way.
    server.add_service(background_service(
        "state health, block list and change listener",
        StateBackground {
            services: gateway.state.clone(),
        },
    ));
    // A stop waits for the writer too: what is queued when the stop begins is stored first.
    server.add_service(background_service(
        "audit log writer",
        in_flight.background(crate::audit::AuditWriter {
            log: gateway.audit.clone(),
        }),
    ));
    server.add_service(background_service(
        "tiktok tokens and webhook delivery",
        in_flight.background(TikTokBackground {
            services: gateway.tiktok.clone(),
            audit: gateway.audit.clone(),
            poll_interval: gateway.state.config.poll_interval,
        }),
    ));
    let stores: Vec<_> = gateway.jwt.values().map(|v| v.store().clone()).collect();
    let refresher = JwksRefresher::new(stores);
    if !refresher.is_empty() {
        server.add_service(background_service("jwks refresh", refresher));
    }
    // Always running: a reload may add the first upstream with a `health_check`.
    server.add_service(background_service(
        "upstream health checks",
        HealthCheckService {
            upstreams: gateway.upstreams.clone(),
        },
    ));
    server.add_service(background_service(
        "readiness checks",
        ReadinessChecks::new(gateway.readiness.clone(), checks_for(&gateway)),
    ));
    // Before the first connection (`main` asks first; asking again is harmless and logs).
    if let Err(e) = crate::transport::memory_return::disable_transparent_huge_pages() {
        tracing::warn!(error = %e, "could not turn transparent huge pages off: memory returned after a spike of connections may come back");
    }
    server.add_service(background_service(
        "memory return after connection spikes",
        MemoryReturn,
    ));
    server.add_service(background_service(
        "upstream resolver",
        ResolveService {
            gateway,
            every: Duration::from_secs(30),
        },
    ));
    Ok(GatewayServer {
        server,
        in_flight,
        gateway: stopping,
    })
}

/// A TLS listener's settings: certificate, key and client-certificate verifier, each checked here
/// (Pingora's own loaders panic on a bad file).
fn tls_settings(
    listener: &Listener,
    t: &ListenerTls,
) -> Result<(TlsSettings, Arc<TlsFiles>), StartError> {
    let mode = match t.client_auth {
        ClientAuth::None => ClientAuthMode::None,
        ClientAuth::Optional => ClientAuthMode::Optional,
        ClientAuth::Required => ClientAuthMode::Required,
    };
    listener_settings(&listener.name, t, mode).map_err(|e| StartError::Listener {
        listener: listener.name.clone(),
        reason: e.to_string(),
    })
}

/// What `validate` runs: the same compile as start-up, and the listeners' TLS material loaded the
/// way start-up loads it. A config this accepts does not fail to start for a config reason.
pub fn validate(config: GatewayConfig) -> Result<Snapshot, ConfigError> {
    let mut issues = crate::config::Issues::default();
    for listener in &config.listeners {
        if let Some(t) = &listener.tls
            && let Err(e) = tls_settings(listener, t)
        {
            issues.add(
                format!("listeners.{}.tls", listener.name),
                None,
                e.to_string(),
            );
        }
    }
    issues.into_result(())?;
    crate::gateway::snapshot::check(config, Arc::new(crate::clock::SystemClock))
}

/// What `validate` found in a config's text: the snapshot when it is valid, and every issue
/// (errors, and the warnings that do not fail it) with its position in the text.
pub struct Validated {
    pub snapshot: Option<Snapshot>,
    pub issues: Vec<ConfigIssue>,
}

/// Loads `text` (read from `path`) and runs [`validate`] on it, keeping the load's warnings.
pub fn validate_text(text: &str, path: &std::path::Path) -> Validated {
    let base_dir = path.parent().unwrap_or(std::path::Path::new("."));
    let config = match crate::config::load_str(text, base_dir, path) {
        Ok(config) => config,
        Err(e) => {
            return Validated {
                snapshot: None,
                issues: e.issues,
            };
        }
    };
    let warnings = config.warnings.clone();
    match validate(config) {
        Ok(snapshot) => Validated {
            snapshot: Some(snapshot),
            issues: warnings,
        },
        Err(e) => {
            let mut issues = e.issues;
            crate::config::report::locate(text, &mut issues);
            issues.extend(warnings);
            Validated {
                snapshot: None,
                issues,
            }
        }
    }
}

/// A listener's app under its connection caps and request-head deadline. The caps hold a slot
/// for the whole connection, keep-alive included.
fn capped<A: ServerApp + Send + Sync + 'static>(
    app: A,
    listener: &Listener,
) -> ConnectionCapped<A> {
    let limiter = ConnectionLimiter::new(ConnectionLimits {
        max_connections: listener.connections.max,
        max_per_client: listener.connections.max_per_ip,
        ..ConnectionLimits::default()
    });
    ConnectionCapped::new(app, limiter).for_listener(
        &listener.name,
        listener.connections.header_timeout,
        listener.connections.idle_timeout,
    )
}

/// One of the gateway's own HTTP apps (metrics, admin) under the listener's `connections`
/// settings, like the proxy.
fn timed_app<SV: ServeHttp + Send + Sync + 'static>(
    app: SV,
    listener: &Listener,
) -> ConnectionCapped<HttpServer<TimedServe<SV>>> {
    let settings = slow_client_settings(&listener.connections);
    capped(
        HttpServer::new_app(TimedServe::new(app, settings)),
        listener,
    )
}

fn add_app<A: ServerApp + Send + Sync + 'static>(
    server: &mut Server,
    name: &str,
    app: A,
    addr: &str,
    tls: Option<pingora::listeners::tls::TlsSettings>,
) {
    let mut svc = Service::new(format!("app:{name}"), app);
    svc.add_listener(endpoint(addr, tls));
    server.add_service(svc);
}

/// A listening endpoint without Pingora's 64 KiB read buffer per connection: rustls reads
/// into its own record buffer, and Pingora reads HTTP/1 heads into its own head buffer, so the
/// read buffer under them only held memory (most of an idle connection's). Behind TLS the
/// write buffer goes too (1.4 KiB per idle connection): a response's writes are gathered above
/// TLS instead, only while it is written (`transport::write_coalesce`), so head and body still
/// leave as one record in one syscall.
fn endpoint(addr: &str, tls: Option<TlsSettings>) -> ListenerConfig {
    match tls {
        Some(settings) => ListenerConfig::tcp(addr)
            .tls(settings)
            .l4_buffer(L4BufferSettings::unbuffered()),
        None => ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::default().read(0)),
    }
}

/// Stops the server when notified (tests and the demo), instead of on Unix signals.
pub struct NotifyShutdown(pub Arc<tokio::sync::Notify>);

#[async_trait]
impl ShutdownSignalWatch for NotifyShutdown {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::FastShutdown
    }
}

/// Runs until SIGTERM (graceful: returns as soon as nothing is in flight, at the latest after
/// the grace period), SIGINT (fast) or SIGQUIT (hand sockets to a new process).
pub fn run_with_signals(built: GatewayServer) -> Ended {
    let gateway = built.gateway.clone();
    let signals = UnixSignals {
        on_graceful: Box::new(move || {
            gateway.readiness.begin_draining();
            tracing::info!(
                "graceful stop: /readyz answers 503, listeners close, in-flight work drains"
            );
            // Read now: a reload may have changed it.
            gateway.snapshot().config.server.drain_delay
        }),
    };
    run_until_drained(built.server, signals, built.in_flight)
}

/// Runs until `stop` is notified.
pub fn run_until(built: GatewayServer, stop: Arc<tokio::sync::Notify>) {
    let mut server = built.server;
    server.bootstrap();
    server.run(RunArgs {
        shutdown_signal: Box::new(NotifyShutdown(stop)),
    });
}
