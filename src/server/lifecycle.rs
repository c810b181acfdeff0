//! How the process starts and stops around Pingora's server loop.
//!
//! Start: every listener address is bound once before anything else opens, so an address in use
//! stops start-up at once with the address named (Pingora would retry for seconds, then panic
//! inside a task and keep running without the listener).
//!
//! Stop: Pingora's graceful stop closes the listeners and lets in-flight requests finish, but
//! then always sleeps the whole grace period. Here the server runs on its own thread while this
//! one watches the work still in flight (every listener's open connections, the TikTok
//! background work) and returns as soon as it is all done; the grace period stays the ceiling
//! (Pingora's own end). `SIGINT` stops at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::GatewayConfig;
use crate::transport::ConnectionLimiter;

/// A listener address that cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("listener `{listener}`: cannot listen on {address}: {source}")]
pub struct BindError {
    pub listener: String,
    pub address: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds (and releases) every listener's address, in config order, failing on the first that
/// cannot be bound. Run before start-up opens anything else.
pub fn check_listeners_bind(config: &GatewayConfig) -> Result<(), BindError> {
    for listener in &config.listeners {
        // std sets SO_REUSEADDR like Pingora does, so a port in TIME_WAIT is not a failure here.
        std::net::TcpListener::bind(listener.address).map_err(|source| BindError {
            listener: listener.name.clone(),
            address: listener.address,
            source,
        })?;
    }
    Ok(())
}

/// The work a graceful stop waits for.
#[derive(Default)]
pub struct InFlight {
    listeners: Vec<ConnectionLimiter>,
    background: Vec<Arc<AtomicBool>>,
}

impl InFlight {
    /// A listener whose open connections (in-flight requests, TLS sessions) hold the stop back.
    pub fn listener(&mut self, limiter: ConnectionLimiter) {
        self.listeners.push(limiter);
    }

    /// Wraps a background service so the stop waits for it to return.
    pub fn background<S>(&mut self, service: S) -> Tracked<S> {
        let done = Arc::new(AtomicBool::new(false));
        self.background.push(done.clone());
        Tracked {
            inner: service,
            done,
        }
    }

    /// Nothing left: every connection closed, every tracked background service returned.
    pub fn is_idle(&self) -> bool {
        self.listeners.iter().all(|l| l.active() == 0)
            && self.background.iter().all(|d| d.load(Ordering::Acquire))
    }
}

/// A background service whose return is recorded.
pub struct Tracked<S> {
    inner: S,
    done: Arc<AtomicBool>,
}

#[async_trait]
impl<S: BackgroundService + Send + Sync> BackgroundService for Tracked<S> {
    async fn start(&self, shutdown: pingora::server::ShutdownWatch) {
        self.inner.start(shutdown).await;
        self.done.store(true, Ordering::Release);
    }
}

/// Unix signals: `SIGTERM` graceful stop, `SIGINT` fast stop, `SIGQUIT` graceful upgrade.
pub struct UnixSignals {
    /// Told when a graceful stop or upgrade begins (readiness turns false). Returns the drain
    /// delay: after `SIGTERM`, how long to go on serving (not ready) before the listeners close,
    /// so a load balancer sees the readiness change first. `SIGINT` cuts it short.
    pub on_graceful: Box<dyn Fn() -> Duration + Send + Sync>,
}

#[async_trait]
impl ShutdownSignalWatch for UnixSignals {
    async fn recv(&self) -> ShutdownSignal {
        let mut term = listen(SignalKind::terminate());
        let mut int = listen(SignalKind::interrupt());
        let mut quit = listen(SignalKind::quit());
        let received = tokio::select! {
            _ = recv(&mut term) => ShutdownSignal::GracefulTerminate,
            _ = recv(&mut int) => ShutdownSignal::FastShutdown,
            _ = recv(&mut quit) => ShutdownSignal::GracefulUpgrade,
        };
        if matches!(received, ShutdownSignal::FastShutdown) {
            return received;
        }
        let delay = (self.on_graceful)();
        if matches!(received, ShutdownSignal::GracefulTerminate) && !delay.is_zero() {
            tracing::info!(?delay, "serving on, not ready, before the listeners close");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = recv(&mut int) => return ShutdownSignal::FastShutdown,
            }
        }
        received
    }
}

fn listen(kind: SignalKind) -> Option<tokio::signal::unix::Signal> {
    signal(kind)
        .inspect_err(|e| tracing::error!(error = %e, signal = ?kind, "cannot watch a signal"))
        .ok()
}

/// Waits for a signal; never resolves for one that could not be watched.
async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// How [`run_until_drained`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The server loop returned (fast stop, or the grace period ran out).
    Stopped,
    /// A stop began and nothing was left in flight: the process may exit now.
    Drained,
}

/// How often the in-flight work is looked at during a stop.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Runs `server` on its own thread until it stops, returning early once a stop has begun and
/// `in_flight` is idle.
pub fn run_until_drained<W>(mut server: Server, signals: W, in_flight: InFlight) -> Ended
where
    W: ShutdownSignalWatch + Send + Sync + 'static,
{
    server.bootstrap();
    let mut phases = server.watch_execution_phase();
    let (tx, rx) = std::sync::mpsc::channel();
    let stopped = tx.clone();
    let runner = std::thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(signals),
            });
            let _ = stopped.send(Ended::Stopped);
        });
    if let Err(e) = runner {
        tracing::error!(error = %e, "cannot start the server thread");
        return Ended::Stopped;
    }
    let watcher = std::thread::Builder::new()
        .name("drain watch".into())
        .spawn(move || {
            // Listeners close when the stop is broadcast; only then can idle mean done.
            loop {
                match phases.blocking_recv() {
                    Ok(ExecutionPhase::ShutdownStarted) => break,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
            while !in_flight.is_idle() {
                std::thread::sleep(DRAIN_POLL);
            }
            let _ = tx.send(Ended::Drained);
        });
    if let Err(e) = watcher {
        // Without the watcher the stop still ends, at the grace period.
        tracing::error!(error = %e, "cannot start the drain watcher");
    }
    let ended = rx.recv().unwrap_or(Ended::Stopped);
    if ended == Ended::Drained {
        tracing::info!("nothing left in flight; exiting before the grace period ends");
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ConnectionLimits;

    #[test]
    fn idle_needs_every_connection_closed_and_background_work_returned() {
        let limiter = ConnectionLimiter::new(ConnectionLimits::default());
        let mut work = InFlight::default();
        work.listener(limiter.clone());
        let tracked = work.background(());
        assert!(!work.is_idle(), "background work not returned yet");
        tracked.done.store(true, Ordering::Release);
        assert!(work.is_idle());
        let slot = limiter.try_acquire(None).unwrap();
        assert!(!work.is_idle(), "a connection is open");
        drop(slot);
        assert!(work.is_idle());
    }
}
