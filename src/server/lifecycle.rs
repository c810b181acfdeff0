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
use std::path::Path;
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

/// What is wrong with `server.state_dir`.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("server.state_dir {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "server.state_dir {path}: others may write to it (mode {mode:o}); the upgrade socket in it would hand the listening sockets to whoever creates it first"
    )]
    Shared { path: String, mode: u32 },
    #[error("server.state_dir {path}: owned by another user")]
    NotOwned { path: String },
}

/// Creates `server.state_dir` (mode 0700) if it is missing, and refuses one that another user
/// owns or may write to: whoever listens on the upgrade socket first gets the listeners.
pub fn prepare_state_dir(dir: &Path) -> Result<(), StateDirError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let io = |source| StateDirError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let meta = std::fs::metadata(dir).map_err(io)?;
    if meta.mode() & 0o022 != 0 {
        return Err(StateDirError::Shared {
            path: dir.display().to_string(),
            mode: meta.mode() & 0o7777,
        });
    }
    // Our own uid, as the kernel shows it on our /proc entry.
    if let Ok(me) = std::fs::metadata("/proc/self")
        && me.uid() != meta.uid()
    {
        return Err(StateDirError::NotOwned {
            path: dir.display().to_string(),
        });
    }
    Ok(())
}

/// During an upgrade: waits until the webhook queue file at `path` is no longer held by the
/// gateway being replaced (it releases it when it exits, after its drain), or `limit` passes.
/// The embedded store admits one process at a time; the listening sockets are already ours, so
/// connections wait in their backlog meanwhile instead of failing.
pub fn wait_for_store(path: &Path, limit: Duration) -> Result<(), String> {
    let until = std::time::Instant::now() + limit;
    loop {
        match redb::Database::create(path) {
            Ok(db) => {
                drop(db);
                return Ok(());
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if std::time::Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(format!(
                    "{}: still held by the gateway being replaced after {limit:?}",
                    path.display()
                ));
            }
            // Anything else is the queue's own business: its open reports it.
            Err(_) => return Ok(()),
        }
    }
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
    fn the_state_dir_is_created_private_and_a_shared_one_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("state/run");
        prepare_state_dir(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "created private: {mode:o}");
        prepare_state_dir(&fresh).unwrap();

        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            prepare_state_dir(&shared),
            Err(StateDirError::Shared { .. })
        ));
    }

    #[test]
    fn a_queue_file_held_by_another_opener_is_waited_for() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("q.redb");
        let held = redb::Database::create(&path).unwrap();
        let err = wait_for_store(&path, Duration::from_millis(100)).unwrap_err();
        assert!(err.contains("still held"), "{err}");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        wait_for_store(&path, Duration::from_secs(10)).unwrap();
        releaser.join().unwrap();
    }

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
