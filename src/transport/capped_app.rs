//! A Pingora `ServerApp` wrapper that holds a [`ConnectionLimiter`] slot for the whole life of
//! each downstream connection, including the time spent reading request heads.
//!
//! Pingora's `connection_filter` feature can only accept or drop at accept time and never
//! learns when a connection closes, so it cannot enforce a concurrent cap; wrapping the app
//! can. Over-cap connections are closed without a response (nothing has been read yet).
//! Keep-alive reuse is looped here, inside the slot, rather than handed back to the service.
//!
//! It also puts a deadline on request heads ([`HeadTimedStream`]) for HTTP/1 connections.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;

use super::connection_limit::ConnectionLimiter;
use super::head_deadline::HeadTimedStream;
use crate::telemetry::metrics::metrics;

/// Wraps the proxy app of one listener's service.
pub struct ConnectionCapped<A> {
    inner: Arc<A>,
    limiter: ConnectionLimiter,
    /// Deadline for each HTTP/1 request head; `None` leaves heads untimed (tests only).
    head_timeout: Option<Duration>,
    /// Listener name, for the metrics.
    listener: Arc<str>,
    /// Counts head timeouts on this listener.
    on_head_timeout: Arc<dyn Fn() + Send + Sync>,
}

impl<A> ConnectionCapped<A> {
    pub fn new(inner: A, limiter: ConnectionLimiter) -> Self {
        Self {
            inner: Arc::new(inner),
            limiter,
            head_timeout: None,
            listener: Arc::from(""),
            on_head_timeout: Arc::new(|| {}),
        }
    }

    /// Name the listener (metric label) and set the request-head deadline.
    pub fn for_listener(mut self, listener: &str, head_timeout: Duration) -> Self {
        let name: Arc<str> = Arc::from(listener);
        let counted = Arc::clone(&name);
        self.on_head_timeout = Arc::new(move || {
            metrics()
                .connections_closed
                .with_label_values(&[&counted, "head_timeout"])
                .inc();
        });
        self.listener = name;
        self.head_timeout = Some(head_timeout);
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

/// The TCP peer address of a downstream stream, if it has one.
pub fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    digest.peer_addr()?.as_inet().map(|a| a.ip())
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionCapped<A> {
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
        let session: Stream = match self.head_timeout {
            // HTTP/2 multiplexes many heads on one connection; Pingora times those itself.
            Some(t) if !matches!(session.selected_alpn_proto(), Some(ALPN::H2)) => Box::new(
                HeadTimedStream::new(session, t)
                    .on_timeout(Arc::clone(&self.on_head_timeout))
                    .closing_on(shutdown),
            ),
            _ => session,
        };
        let mut next = self.inner.process_new(session, shutdown).await;
        while let Some(stream) = next {
            next = self.inner.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::connection_limit::ConnectionLimits;
    use pingora::protocols::GetSocketDigest;
    use pingora::protocols::SocketDigest;
    use std::os::unix::io::AsRawFd;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{Notify, mpsc};

    /// Echoes one byte back per request and reuses the connection until the client closes.
    struct EchoApp {
        entered: mpsc::UnboundedSender<()>,
        release: Arc<Notify>,
    }

    #[async_trait]
    impl ServerApp for EchoApp {
        async fn process_new(
            self: &Arc<Self>,
            mut session: Stream,
            _shutdown: &ShutdownWatch,
        ) -> Option<Stream> {
            let _ = self.entered.send(());
            self.release.notified().await;
            let mut b = [0u8; 1];
            match session.read(&mut b).await {
                Ok(1) => {
                    session.write_all(&b).await.ok()?;
                    Some(session)
                }
                _ => None,
            }
        }
    }

    async fn accepted_stream(listener: &TcpListener) -> Stream {
        let (tcp, _) = listener.accept().await.expect("accept");
        let fd = tcp.as_raw_fd();
        let mut stream = pingora::protocols::l4::stream::Stream::from(tcp);
        stream.set_socket_digest(SocketDigest::from_raw_fd(fd));
        Box::new(stream)
    }

    #[tokio::test]
    async fn over_cap_connections_are_closed_and_slots_return_on_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, mut entered) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let app = Arc::new(ConnectionCapped::new(
            EchoApp {
                entered: tx,
                release: Arc::clone(&release),
            },
            ConnectionLimiter::new(ConnectionLimits {
                max_connections: 10,
                max_per_client: 1,
                ipv6_prefix_len: 64,
            }),
        ));
        let (_shutdown_tx, shutdown) = tokio::sync::watch::channel(false);

        // First connection takes the only slot for 127.0.0.1 and waits inside the app.
        let mut first = TcpStream::connect(addr).await.expect("connect");
        let s1 = accepted_stream(&listener).await;
        let (app1, sd1) = (Arc::clone(&app), shutdown.clone());
        let task1 = tokio::spawn(async move { app1.process_new(s1, &sd1).await });
        entered
            .recv()
            .await
            .expect("first connection entered the app");
        assert_eq!(app.limiter().active(), 1);

        // Second connection from the same address is refused: closed without entering the app.
        let mut second = TcpStream::connect(addr).await.expect("connect");
        let s2 = accepted_stream(&listener).await;
        assert!(app.process_new(s2, &shutdown).await.is_none());
        let mut buf = [0u8; 1];
        assert_eq!(second.read(&mut buf).await.expect("read"), 0, "closed");
        assert!(entered.try_recv().is_err());

        // The first connection is served twice (keep-alive loop) inside one slot.
        for byte in [b'a', b'b'] {
            first.write_all(&[byte]).await.expect("write");
            release.notify_one();
            first.read_exact(&mut buf).await.expect("echo");
            assert_eq!(buf[0], byte);
            entered.recv().await.expect("reused");
            assert_eq!(app.limiter().active(), 1);
        }
        drop(first);
        release.notify_one();
        assert!(task1.await.expect("join").is_none());
        assert_eq!(app.limiter().active(), 0);

        // Slot is free again.
        let _third = TcpStream::connect(addr).await.expect("connect");
        let s3 = accepted_stream(&listener).await;
        let (app3, sd3) = (Arc::clone(&app), shutdown.clone());
        let task3 = tokio::spawn(async move { app3.process_new(s3, &sd3).await });
        entered
            .recv()
            .await
            .expect("third connection entered the app");
        assert_eq!(app.limiter().active(), 1);
        task3.abort();
    }
}
