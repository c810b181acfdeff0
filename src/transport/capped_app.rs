//! A Pingora `ServerApp` wrapper that holds a [`ConnectionLimiter`] slot for the whole life of
//! each downstream connection, including the time spent reading request heads.
//!
//! Pingora's `connection_filter` feature can only accept or drop at accept time and never
//! learns when a connection closes, so it cannot enforce a concurrent cap; wrapping the app
//! can. Over-cap connections are closed without a response (nothing has been read yet).
//! Keep-alive reuse is looped here, inside the slot, rather than handed back to the service.
//!
//! It also puts a deadline on request heads ([`HeadTimedStream`]) for HTTP/1 connections, and
//! waits for the first byte of every HTTP/1 request itself, a connection's first request and
//! each next one on a kept-alive connection ([`keepalive`](super::keepalive)): an idle
//! connection holds no request state, and Pingora never waits on a head that has not begun,
//! which it would drop when a stop begins. HTTP/2 connections are handed to Pingora whole.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;

use super::connection_limit::ConnectionLimiter;
use super::head_deadline::{HeadDeadline, HeadTimedStream};
use super::keepalive::{Idle, first_byte, next_head_prefix, wait_for_next_request};
use super::memory_return::OpenConnection;
use crate::telemetry::metrics::metrics;

/// Wraps the proxy app of one listener's service.
pub struct ConnectionCapped<A> {
    inner: Arc<A>,
    limiter: ConnectionLimiter,
    /// Deadline for each HTTP/1 request head; `None` leaves heads untimed (tests only).
    head_deadline: Option<Arc<HeadDeadline>>,
    /// How long a kept-alive HTTP/1 connection waits for its next request.
    idle_timeout: Duration,
    /// Listener name, for the metrics.
    listener: Arc<str>,
}

impl<A> ConnectionCapped<A> {
    pub fn new(inner: A, limiter: ConnectionLimiter) -> Self {
        Self {
            inner: Arc::new(inner),
            limiter,
            head_deadline: None,
            idle_timeout: DEFAULT_IDLE,
            listener: Arc::from(""),
        }
    }

    /// Name the listener (metric label) and set the request-head deadline and the keep-alive
    /// idle timeout.
    pub fn for_listener(
        mut self,
        listener: &str,
        head_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        let name: Arc<str> = Arc::from(listener);
        let counted = Arc::clone(&name);
        self.head_deadline = Some(HeadDeadline::new(head_timeout, move || {
            metrics()
                .connections_closed
                .with_label_values(&[&counted, "head_timeout"])
                .inc();
        }));
        self.listener = name;
        // Pingora counts keep-alive in whole seconds, at least one.
        self.idle_timeout = idle_timeout.max(Duration::from_secs(1));
        self
    }

    /// The limiter, e.g. for a gauge of active connections.
    pub fn limiter(&self) -> &ConnectionLimiter {
        &self.limiter
    }

    /// The wrapped app.
    pub fn inner(&self) -> &A {
        &self.inner
    }
}

/// Pingora's keep-alive timeout when nothing sets one.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// The TCP peer address of a downstream stream, if it has one.
pub fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    digest.peer_addr()?.as_inet().map(|a| a.ip())
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for ConnectionCapped<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Ok(_slot) = self.limiter.try_acquire(peer_ip(&session)) else {
            metrics()
                .connections_closed
                .with_label_values(&[&self.listener, "over_cap"])
                .inc();
            // Dropping the stream closes the connection.
            return None;
        };
        let _open = OpenConnection::opened();
        let pingora_whole = matches!(
            session.selected_alpn_proto(),
            Some(ALPN::H2 | ALPN::Custom(_))
        ) || self
            .inner
            .server_options()
            .is_some_and(|o| o.h2c || o.force_custom);
        if pingora_whole {
            // HTTP/2 multiplexes many heads on one connection; Pingora times those itself.
            return ServerApp::process_new(&self.inner, session, shutdown).await;
        }
        let stream: Stream = match &self.head_deadline {
            Some(rule) => {
                Box::new(HeadTimedStream::new(session, Arc::clone(rule)).closing_on(shutdown))
            }
            None => session,
        };
        self.serve_http1(stream, shutdown).await;
        None
    }

    /// The listener has stopped accepting. Pingora's proxy would now drop every HTTP/1
    /// connection whose next head it is still waiting for, including one accepted a moment
    /// earlier whose request is on the way (a request lost in every upgrade or stop under
    /// load). Here Pingora only ever waits for a head that has begun to arrive (the first byte
    /// is awaited in [`Self::serve_http1`], which watches the stop itself), and the head
    /// deadline bounds that wait, so the cleanup is not passed on.
    async fn cleanup(&self) {}
}

impl<A: HttpServerApp + Send + Sync + 'static> ConnectionCapped<A> {
    /// Pingora's HTTP/1 keep-alive loop, with the wait for each next request outside it.
    ///
    /// This future lives as long as the connection, idle time included, so it holds only the
    /// stream and the boxed request future: each session is built in [`Self::serve_request`]
    /// (a plain function), since a session held in this future's state, even moved out, would
    /// make every idle connection's future the size of a whole session.
    async fn serve_http1(&self, mut stream: Stream, shutdown: &ShutdownWatch) {
        // The first request's first byte is awaited here as well: the wrapped stream bounds the
        // wait by the head deadline and, once a stop begins, by a short grace for a request
        // already on its way. A connection that sends nothing never reaches Pingora.
        let Some(byte) = first_byte(&mut stream).await else {
            return;
        };
        // What Pingora sets on a new connection; the app's phases may change both.
        let first = FirstRequest {
            keepalive: (!*shutdown.borrow()).then_some(self.idle_timeout.as_secs()),
            reuses: self
                .inner
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        };
        let mut reused = self
            .serve_request(stream, Next::First(first), byte, shutdown)
            .await;
        // One idle timer for the connection's life, in this future (no allocation); registered
        // at the first wait, moved forward only when it fires early.
        let mut idle = std::pin::pin!(tokio::time::sleep(self.idle_timeout));
        while let Some(next) = reused {
            let (mut stream, persistent) = next.consume();
            let Idle::Next(byte) =
                wait_for_next_request(&mut stream, idle.as_mut(), self.idle_timeout, shutdown)
                    .await
            else {
                return;
            };
            reused = self
                .serve_request(stream, Next::Reused(persistent), byte, shutdown)
                .await;
        }
    }

    /// One request on `stream`, whose head starts with `byte` (read by the wait for it):
    /// Pingora's request future, boxed, with its session in it.
    fn serve_request<'a>(
        &'a self,
        stream: Stream,
        next: Next,
        byte: u8,
        shutdown: &'a ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'a>> {
        let mut session = ServerSession::new_http1(stream);
        match next {
            Next::First(first) => {
                session.set_keepalive(first.keepalive);
                session.set_keepalive_reuses_remaining(first.reuses);
            }
            Next::Reused(Some(persistent)) => persistent.apply_to_session(&mut session),
            Next::Reused(None) => {}
        }
        session.set_pipelined_prefix(next_head_prefix(byte));
        self.inner.process_new_http(session, shutdown)
    }
}

/// The keep-alive settings of a connection's first request.
struct FirstRequest {
    keepalive: Option<u64>,
    reuses: Option<u32>,
}

/// Which request of a kept-alive connection comes next.
enum Next {
    First(FirstRequest),
    /// A later one, with the settings the last request left.
    Reused(Option<HttpPersistentSettings>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::connection_limit::ConnectionLimits;
    use http::Response;
    use pingora::apps::http_app::{HttpServer, ServeHttp};
    use pingora::protocols::GetSocketDigest;
    use pingora::protocols::SocketDigest;
    use std::os::unix::io::AsRawFd;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{Notify, mpsc};

    /// Answers each request with its path, once released; keeps the connection alive.
    struct EchoPath {
        entered: mpsc::UnboundedSender<()>,
        release: Arc<Notify>,
    }

    #[async_trait]
    impl ServeHttp for EchoPath {
        async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
            let _ = self.entered.send(());
            self.release.notified().await;
            let path = session.req_header().uri.path().as_bytes().to_vec();
            Response::builder()
                .header("content-length", path.len())
                .body(path)
                .expect("response")
        }
    }

    async fn accepted_stream(listener: &TcpListener) -> Stream {
        let (tcp, _) = listener.accept().await.expect("accept");
        let fd = tcp.as_raw_fd();
        let mut stream = pingora::protocols::l4::stream::Stream::from(tcp);
        stream.set_socket_digest(SocketDigest::from_raw_fd(fd));
        Box::new(stream)
    }

    /// Sends `GET path` and reads the answer up to its body (the path itself).
    async fn get(client: &mut TcpStream, path: &str) -> String {
        client
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.ends_with(path.as_bytes()) {
            let n = client.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before the answer: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).expect("utf-8")
    }

    fn capped(
        entered: mpsc::UnboundedSender<()>,
        release: Arc<Notify>,
        max_per_client: usize,
    ) -> Arc<ConnectionCapped<HttpServer<EchoPath>>> {
        Arc::new(ConnectionCapped::new(
            HttpServer::new_app(EchoPath { entered, release }),
            ConnectionLimiter::new(ConnectionLimits {
                max_connections: 10,
                max_per_client,
                ipv6_prefix_len: 64,
            }),
        ))
    }

    #[tokio::test]
    async fn over_cap_connections_are_closed_and_slots_return_on_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, mut entered) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let app = capped(tx, Arc::clone(&release), 1);
        let (_shutdown_tx, shutdown) = tokio::sync::watch::channel(false);

        // First connection takes the only slot for 127.0.0.1.
        let mut first = TcpStream::connect(addr).await.expect("connect");
        let s1 = accepted_stream(&listener).await;
        let (app1, sd1) = (Arc::clone(&app), shutdown.clone());
        let task1 = tokio::spawn(async move { app1.process_new(s1, &sd1).await });
        release.notify_one();
        assert!(get(&mut first, "/a").await.ends_with("/a"));
        assert_eq!(app.limiter().active(), 1);

        // Second connection from the same address is refused: closed without entering the app.
        let mut second = TcpStream::connect(addr).await.expect("connect");
        let s2 = accepted_stream(&listener).await;
        assert!(app.process_new(s2, &shutdown).await.is_none());
        let mut buf = [0u8; 1];
        assert_eq!(second.read(&mut buf).await.expect("read"), 0, "closed");
        entered.recv().await.expect("first request entered");
        assert!(entered.try_recv().is_err());

        // The first connection is served again (keep-alive loop) inside the same slot, its
        // next head read from the byte the idle wait took plus the rest.
        release.notify_one();
        assert!(get(&mut first, "/bb").await.ends_with("/bb"));
        entered.recv().await.expect("reused");
        assert_eq!(app.limiter().active(), 1);
        drop(first);
        assert!(task1.await.expect("join").is_none());
        assert_eq!(app.limiter().active(), 0);

        // Slot is free again.
        let mut third = TcpStream::connect(addr).await.expect("connect");
        let s3 = accepted_stream(&listener).await;
        let (app3, sd3) = (Arc::clone(&app), shutdown.clone());
        let task3 = tokio::spawn(async move { app3.process_new(s3, &sd3).await });
        release.notify_one();
        assert!(get(&mut third, "/c").await.ends_with("/c"));
        assert_eq!(app.limiter().active(), 1);
        task3.abort();
    }

    #[tokio::test]
    async fn an_idle_kept_alive_connection_closes_when_a_stop_begins() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, _entered) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let app = capped(tx, Arc::clone(&release), 4);
        let (stop, shutdown) = tokio::sync::watch::channel(false);

        let mut client = TcpStream::connect(addr).await.expect("connect");
        let s = accepted_stream(&listener).await;
        let (app1, sd) = (Arc::clone(&app), shutdown.clone());
        let task = tokio::spawn(async move { app1.process_new(s, &sd).await });
        release.notify_one();
        get(&mut client, "/a").await;
        // Idle between requests: the stop closes the connection and frees the slot.
        stop.send(true).expect("stop");
        assert!(task.await.expect("join").is_none());
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).await.expect("read"), 0, "closed");
        assert_eq!(app.limiter().active(), 0);
    }
}
