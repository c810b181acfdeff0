//! Test support: start the real gateway in-process on free loopback ports, with dev certificates
//! and an order-service sandbox as the upstream.
#![allow(dead_code)]

// The typed config builder names the sandboxes and the dev identity provider.
#[cfg(feature = "demo")]
pub mod binary;
#[cfg(feature = "demo")]
pub mod config;
pub mod env;
pub mod schema;

// Each test binary uses a different part of these.
#[allow(unused_imports)]
#[cfg(feature = "demo")]
pub use self::config::*;
#[allow(unused_imports)]
pub use self::env::{database_url, redis_url};

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::config::load_file;
use tiktok_gateway::gateway::state::Gateway;
use tiktok_gateway::server::build;
use tiktok_gateway::server::dev_certs::{self, DevCerts};

/// A free port on 127.0.0.1 (bound then released; the gateway binds it right after). Never the
/// same one twice in a test process: tests run in parallel, and a released port handed out
/// again before its gateway binds it leaves the second gateway unbound while its test, finding
/// the port listening, talks to the first one.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.contains(&port) {
            seen.push(port);
            return port;
        }
    }
}

pub struct TestGateway {
    pub dir: tempfile::TempDir,
    pub certs: DevCerts,
    pub gateway: Arc<Gateway>,
    pub config_path: PathBuf,
    stop: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestGateway {
    /// `make_config(dir)` returns the YAML; dev certs are already in `dir` as gateway.crt/key,
    /// ca.crt, client.crt/key.
    pub fn start(make_config: impl FnOnce(&Path) -> String) -> TestGateway {
        tiktok_gateway::transport::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = dev_certs::generate(dir.path()).expect("dev certs");
        let yaml = make_config(dir.path());
        schema::assert_conforms("test config", &yaml);
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        let config = load_file(&config_path).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let addrs: Vec<SocketAddr> = config.listeners.iter().map(|l| l.address).collect();
        let gateway = Gateway::new(config, Arc::new(SystemClock)).expect("gateway");
        let server =
            build::build_server(gateway.clone(), Some(config_path.clone())).expect("server");
        let stop = Arc::new(tokio::sync::Notify::new());
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || build::run_until(server, stop2));
        for addr in addrs {
            wait_listening(addr);
        }
        TestGateway {
            dir,
            certs,
            gateway,
            config_path,
            stop,
            thread: Some(thread),
        }
    }

    /// Starts the gateway on the YAML `config` renders into the gateway's folder.
    #[cfg(feature = "demo")]
    pub fn with(config: &Config) -> TestGateway {
        TestGateway::start(|dir| config.render(dir))
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The access log once `ready` holds for it (bounded): lines are written by a background
    /// writer a moment after their request, so a check for what a line must NOT carry first
    /// waits for the line.
    pub fn access_log_when(&self, ready: impl Fn(&str) -> bool) -> String {
        for _ in 0..100 {
            let log = self.access_log();
            if ready(&log) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = self.access_log();
        assert!(
            ready(&log),
            "the access log never showed the expected lines:\n{log}"
        );
        log
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Tasks on the server's runtimes may still be dropping their handles (the webhook queue
        // file's lock among them, held by the audit writer too) after the thread ends: a restart in the same process must
        // find everything released.
        for _ in 0..500 {
            if Arc::strong_count(&self.gateway) == 1
                && Arc::strong_count(&self.gateway.tiktok) == 1
                && Arc::strong_count(&self.gateway.audit) == 1
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The gateway binary running as a process of its own, so a test can kill it the hard way
/// (`SIGKILL`: no shutdown, no cleanup), as a lost pod or a crashed host would.
pub struct ChildGateway {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    child: Option<std::process::Child>,
}

impl ChildGateway {
    /// Writes `make_config(dir)` as the config and runs `tiktok-gateway run` on it; returns once
    /// every listener accepts connections. Its output goes to `gateway.out` in `dir`.
    pub fn start(make_config: impl FnOnce(&Path) -> String) -> ChildGateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = make_config(dir.path());
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        let config = load_file(&config_path).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let addrs: Vec<SocketAddr> = config.listeners.iter().map(|l| l.address).collect();
        let out = std::fs::File::create(dir.path().join("gateway.out")).expect("output file");
        let err = out.try_clone().expect("output file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
            .args(["run", "--config"])
            .arg(&config_path)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the gateway binary");
        let mut gw = ChildGateway {
            dir,
            config_path,
            child: Some(child),
        };
        for addr in addrs {
            for attempt in 0.. {
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(50)).is_ok() {
                    break;
                }
                if attempt > 400 || gw.exited() {
                    panic!("gateway process did not listen on {addr}:\n{}", gw.output());
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        gw
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// What the process printed so far (application log, errors).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.out")).unwrap_or_default()
    }

    /// `SIGKILL`, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(50)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("gateway did not listen on {addr}");
}

/// An HTTPS client trusting the dev CA (HTTP/1.1 and HTTP/2 by ALPN).
pub fn https_client(certs: &DevCerts) -> reqwest::Client {
    tiktok_gateway::transport::install_crypto_provider();
    let ca = std::fs::read(&certs.ca_cert).expect("ca");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca pem")])
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Sends raw bytes and returns everything the server answered until it closed or went quiet.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                // One response is enough for these tests.
                let text = String::from_utf8_lossy(&out);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    });
                    if len.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// An HTTPS client trusting the dev CA that presents a client certificate (PEM cert + PKCS#8
/// key files), for mTLS listeners.
pub fn https_client_with_cert(certs: &DevCerts, cert: &Path, key: &Path) -> reqwest::Client {
    tiktok_gateway::transport::install_crypto_provider();
    let ca = std::fs::read(&certs.ca_cert).expect("ca");
    let mut pem = std::fs::read(cert).expect("client cert");
    pem.extend_from_slice(&std::fs::read(key).expect("client key"));
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca pem")])
        .identity(reqwest::Identity::from_pem(&pem).expect("identity pem"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A plain HTTP client (for plaintext loopback listeners).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

// ---------------------------------------------------------------- Redis outages

/// A TCP relay to Redis that a test can cut and restore, to play an outage without touching the
/// real server (other tests share it).
pub struct Relay {
    pub addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays every connection to `target` (`host:port`) while up.
    pub async fn start(target: String) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay bind");
        let addr = listener.local_addr().expect("relay addr");
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                // While cut, connections are accepted then closed: the client sees a dropped
                // connection, as when Redis restarts.
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                conns2.lock().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Relay {
            addr,
            up,
            conns,
            accept,
        }
    }

    /// Drops every relayed connection and refuses new ones until [`Relay::restore`].
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }

    /// As [`Relay::cut`], returning once every relayed connection is closed: an aborted relay
    /// task may otherwise still forward a request that was already on its way.
    pub async fn cut_and_wait(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        let conns: Vec<_> = self.conns.lock().drain(..).collect();
        for c in conns {
            c.abort();
            let _ = c.await;
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// `redis://[auth@]host:port[/db]` split into the address and a rebuilder for another address
/// (the same URL pointing at a [`Relay`]). `None` for anything else (a socket path, TLS).
pub fn split_redis_url(url: &str) -> Option<(String, impl Fn(SocketAddr) -> String + use<>)> {
    let rest = url.strip_prefix("redis://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (auth, hostport) = match authority.rsplit_once('@') {
        Some((auth, hp)) => (format!("{auth}@"), hp.to_owned()),
        None => (String::new(), authority.to_owned()),
    };
    let tail = tail.to_owned();
    Some((hostport, move |addr: SocketAddr| {
        format!("redis://{auth}{addr}{tail}")
    }))
}

/// The Prometheus text a gateway's metrics listener on `port` serves now.
pub async fn metrics_text(port: u16) -> String {
    http_client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics request")
        .text()
        .await
        .expect("metrics body")
}

/// `<prefix>-<pid>-<nanos>`: a name no earlier run used, so Redis state under it starts empty.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// One HTTP/1.1 request a [`TlsRecorder`] received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Request line and headers, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

/// An HTTPS upstream on 127.0.0.1 with the given certificate: records every request and
/// answers `200` with an empty body (keep-alive).
pub struct TlsRecorder {
    pub addr: SocketAddr,
    received: Arc<parking_lot::Mutex<Vec<RecordedRequest>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TlsRecorder {
    pub async fn start(cert: &Path, key: &Path) -> TlsRecorder {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        tiktok_gateway::transport::install_crypto_provider();
        let chain = CertificateDer::pem_file_iter(cert)
            .expect("cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("cert pem");
        let key = PrivateKeyDer::from_pem_file(key).expect("key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received: Arc<parking_lot::Mutex<Vec<RecordedRequest>>> = Arc::default();
        let sink = received.clone();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, sink) = (acceptor.clone(), sink.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve_recorded(stream, sink).await;
                    }
                });
            }
        });
        TlsRecorder {
            addr,
            received,
            accept,
        }
    }

    pub fn received(&self) -> Vec<RecordedRequest> {
        self.received.lock().clone()
    }
}

impl Drop for TlsRecorder {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Reads requests (framed by `Content-Length`) until the peer closes; answers each with 200.
async fn serve_recorded<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    sink: Arc<parking_lot::Mutex<Vec<RecordedRequest>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let len = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[end + 4..end + 4 + len].to_vec();
        buf.drain(..end + 4 + len);
        sink.lock().push(RecordedRequest { head, body });
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Reads until the peer closes (a read error counts as closed); panics if it is still open
/// after `limit`.
pub async fn read_until_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}
