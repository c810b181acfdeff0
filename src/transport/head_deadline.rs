//! A deadline for receiving each whole request head on an HTTP/1 connection (slowloris).
//!
//! Pingora 0.9 bounds only the gap between two reads of a head, so a client that sends one
//! byte just inside every gap holds its connection for ever. [`HeadTimedStream`] wraps the
//! downstream stream and fails its reads once the head has taken longer than the deadline:
//! - a new connection's first head must be complete within the deadline of the accept;
//! - on a kept-alive connection, the deadline starts with the first byte of the next head
//!   (the wait before it is Pingora's keep-alive idle timeout). Pingora drains an unread rest of
//!   the previous body after `logging`; such bytes start the deadline too, which only shortens
//!   the time left for the next head.
//!
//! The pipeline says where a head ends, because only the HTTP parser knows:
//! [`head_received`] when Pingora hands over a parsed request, [`request_finished`] once the
//! response is sent. Bodies are not covered here; they have their own read timeout and minimum
//! rate ([`BodyWatch`](super::BodyWatch)).
//!
//! The same wrapper carries the connection's [`ChunkWatch`]: it sees every byte read, so it
//! checks the lines of chunked request bodies that Pingora parses leniently; and its
//! [`WriteCoalescer`], which gathers a response's writes until Pingora flushes.
//!
//! HTTP/2 connections are never wrapped: many heads share one connection, and Pingora applies
//! its own HTTP/2 handshake and idle timeouts.
//!
//! Given the server's shutdown watch ([`HeadTimedStream::closing_on`]), a fresh connection that
//! has sent nothing yet reads as closed once a graceful stop begins (after a short grace), so it
//! does not hold the stop back until its head deadline, and one whose request is already on
//! its way is still served (Pingora's proxy would drop it at once). The watch ends with the
//! connection's first byte: every later wait for a request is the keep-alive wait's
//! ([`wait_for_next_request`](super::keepalive::wait_for_next_request)), which watches the stop
//! itself, so an idle kept-alive connection holds no watch of its own here.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::chunk_watch::ChunkWatch;
use super::write_coalesce::WriteCoalescer;

/// Reading a head; the deadline runs.
const READING_HEAD: u8 = 0;
/// The head was parsed; the body and the response are not timed here.
const HEAD_RECEIVED: u8 = 1;
/// The response was sent; the next head's deadline starts with its first byte.
const BETWEEN_REQUESTS: u8 = 2;

/// The downstream stream with a deadline on each request head.
///
/// One is allocated for every HTTP/1 connection and lives as long as it, so its size counts in
/// the memory of an idle connection: what all of a listener's connections share sits behind
/// one pointer ([`HeadDeadline`]), and a test keeps it within a 128-byte allocation.
pub struct HeadTimedStream {
    inner: Stream,
    rule: Arc<HeadDeadline>,
    /// Written by the pipeline through a shared reference, read by `poll_read`.
    phase: AtomicU8,
    /// The current head's deadline, and its timer once armed.
    clock: HeadClock,
    /// This connection's missed deadline was counted (later reads fail too; count it once).
    timeout_counted: bool,
    /// Strict chunk lines for chunked request bodies.
    chunks: ChunkWatch,
    /// Resolves when a graceful stop begins; dropped once it has, or with the first byte.
    stopping: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
    /// The graceful stop has begun: a fresh connection's reads end it (after the grace).
    stopped: bool,
    /// A byte of the current head has arrived (a fresh connection is idle until then).
    head_started: bool,
    /// Once stopping, how long a fresh connection still waits for its first byte.
    fresh_grace: Option<Pin<Box<Sleep>>>,
    /// A response's writes, gathered until Pingora flushes (one TLS record, one syscall).
    writes: WriteCoalescer,
}

/// A listener's head deadline, shared by all of its connections.
pub struct HeadDeadline {
    timeout: Duration,
    /// Called once per connection whose head misses the deadline (e.g. to count it).
    on_timeout: Box<dyn Fn() + Send + Sync>,
}

impl HeadDeadline {
    pub fn new(timeout: Duration, on_timeout: impl Fn() + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            timeout,
            on_timeout: Box::new(on_timeout),
        })
    }
}

/// Where the deadline of the head being read stands.
enum HeadClock {
    /// No head is being timed (between requests, or reading a body).
    Off,
    /// The head must be complete by then. No timer yet: registering one wakes the runtime's
    /// driver (an eventfd write), which a head that arrives whole, the usual case, need not pay.
    Due(Instant),
    /// A read of the head had to wait: the timer wakes it at the deadline.
    Armed(Pin<Box<Sleep>>),
}

/// A connection accepted just before a stop may have its first request on the way (a client
/// connects, then writes): it gets this long for the first byte before it is closed as idle.
const FRESH_CONNECTION_GRACE: Duration = Duration::from_millis(500);

impl HeadTimedStream {
    /// Wrap a freshly accepted stream: the first head's deadline starts now.
    pub fn new(inner: Stream, rule: Arc<HeadDeadline>) -> Self {
        let due = Instant::now() + rule.timeout;
        Self {
            inner,
            rule,
            phase: AtomicU8::new(READING_HEAD),
            clock: HeadClock::Due(due),
            timeout_counted: false,
            chunks: ChunkWatch::default(),
            stopping: None,
            stopped: false,
            head_started: false,
            fresh_grace: None,
            writes: WriteCoalescer::default(),
        }
    }

    /// End the connection at its next idle moment once `shutdown` turns true.
    pub fn closing_on(mut self, shutdown: &pingora::server::ShutdownWatch) -> Self {
        let mut shutdown = shutdown.clone();
        self.stopping = Some(Box::pin(async move {
            // A dropped sender means the server is gone: stop as well.
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        }));
        self
    }

    /// Whether a graceful stop has begun (registers the waker while it has not).
    fn stop_begun(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.stopped
            && let Some(f) = self.stopping.as_mut()
            && f.as_mut().poll(cx).is_ready()
        {
            self.stopped = true;
            self.stopping = None;
        }
        self.stopped
    }

    fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Release);
    }
}

/// Tell the stream under an HTTP/1 session that its request head has been parsed, and whether
/// its body is chunked (`Some(raw head length)`), so the chunk lines are checked.
/// A no-op for streams that are not wrapped (HTTP/2, other listeners).
pub fn head_received(stream: Option<&Stream>, chunked_head_len: Option<usize>) {
    if let Some(s) = timed(stream) {
        s.chunks.decide(chunked_head_len);
        s.set_phase(HEAD_RECEIVED);
    }
}

/// For an HTTP/1 request with `Transfer-Encoding: chunked`, the length of its raw head.
pub fn chunked_head_len(session: &pingora::protocols::http::ServerSession) -> Option<usize> {
    if session.is_http2() {
        return None;
    }
    let chunked = session
        .req_header()
        .headers
        .get(http::header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    chunked.then(|| session.to_h1_raw().len())
}

/// Whether the chunked body of the current request, as far as it was read, breaks the chunk
/// grammar (see [`ChunkWatch`]).
pub fn chunked_body_malformed(stream: Option<&Stream>) -> bool {
    timed(stream).is_some_and(|s| s.chunks.malformed())
}

/// Tell the stream that the response is sent, so the next head on it is timed again.
pub fn request_finished(stream: Option<&Stream>) {
    if let Some(s) = timed(stream) {
        s.set_phase(BETWEEN_REQUESTS);
    }
}

fn timed(stream: Option<&Stream>) -> Option<&HeadTimedStream> {
    let any: &dyn Any = stream?.as_any();
    any.downcast_ref::<HeadTimedStream>()
}

impl fmt::Debug for HeadTimedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadTimedStream")
            .field("inner", &self.inner)
            .field("timeout", &self.rule.timeout)
            .field("phase", &self.phase.load(Ordering::Relaxed))
            .finish()
    }
}

impl AsyncRead for HeadTimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.phase.load(Ordering::Acquire) {
            HEAD_RECEIVED => {
                this.clock = HeadClock::Off;
                let before = buf.filled().len();
                let read = Pin::new(&mut this.inner).poll_read(cx, buf);
                if matches!(read, Poll::Ready(Ok(())))
                    && !this.chunks.on_body_bytes(&buf.filled()[before..])
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed chunk line in the request body",
                    )));
                }
                read
            }
            BETWEEN_REQUESTS => {
                // No deadline runs while idle: do not keep the last head's timer registered.
                this.clock = HeadClock::Off;
                // The keep-alive wait reads here and watches the stop itself.
                let before = buf.filled().len();
                let read = Pin::new(&mut this.inner).poll_read(cx, buf);
                if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                    this.set_phase(READING_HEAD);
                    this.head_started = true;
                    this.clock = HeadClock::Due(Instant::now() + this.rule.timeout);
                    this.chunks.reset();
                    this.chunks.on_head_bytes(&buf.filled()[before..]);
                }
                read
            }
            _ => {
                let timeout = this.rule.timeout;
                let deadline = match &this.clock {
                    HeadClock::Off => {
                        let due = Instant::now() + timeout;
                        this.clock = HeadClock::Due(due);
                        due
                    }
                    HeadClock::Due(due) => *due,
                    HeadClock::Armed(timer) => timer.deadline(),
                };
                let timed_out = |this: &mut Self| {
                    // The deadline stays passed, so later reads fail too; count it once.
                    if !this.timeout_counted {
                        this.timeout_counted = true;
                        (this.rule.on_timeout)();
                    }
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("request head not complete within {timeout:?}"),
                    )))
                };
                if Instant::now() >= deadline {
                    return timed_out(this);
                }
                let before = buf.filled().len();
                let read = Pin::new(&mut this.inner).poll_read(cx, buf);
                if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                    if !this.head_started {
                        // No longer a fresh connection: the stop is the keep-alive wait's to
                        // watch from here on, and an idle connection keeps no watch (memory).
                        this.head_started = true;
                        this.stopping = None;
                        this.fresh_grace = None;
                    }
                    this.chunks.on_head_bytes(&buf.filled()[before..]);
                }
                if read.is_pending() {
                    // Waiting for more of the head: now the deadline needs a timer to wake us.
                    if !matches!(this.clock, HeadClock::Armed(_)) {
                        this.clock = HeadClock::Armed(Box::pin(tokio::time::sleep_until(deadline)));
                    }
                    if let HeadClock::Armed(timer) = &mut this.clock
                        && timer.as_mut().poll(cx).is_ready()
                    {
                        return timed_out(this);
                    }
                }
                if read.is_pending() && !this.head_started && this.stop_begun(cx) {
                    let grace = this.fresh_grace.get_or_insert_with(|| {
                        Box::pin(tokio::time::sleep(FRESH_CONNECTION_GRACE))
                    });
                    if grace.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(()));
                    }
                }
                read
            }
        }
    }
}

impl AsyncWrite for HeadTimedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.writes.poll_write(&mut this.inner, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.writes.poll_flush(&mut this.inner, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.writes.poll_shutdown(&mut this.inner, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.writes.poll_write_vectored(&mut this.inner, cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }
}

// Everything else is the wrapped stream's: TLS details, digests, identity.

#[async_trait]
impl Shutdown for HeadTimedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for HeadTimedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadTimedStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadTimedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadTimedStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for HeadTimedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for HeadTimedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    const DEADLINE: Duration = Duration::from_secs(3);

    fn wrapped() -> (Stream, DuplexStream, Arc<AtomicUsize>) {
        let (server, client) = duplex(1024);
        let timeouts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&timeouts);
        let rule = HeadDeadline::new(DEADLINE, move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let stream: Stream = Box::new(HeadTimedStream::new(Box::new(server), rule));
        (stream, client, timeouts)
    }

    async fn read_byte(stream: &mut Stream) -> io::Result<u8> {
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.map(|_| b[0])
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_trickled_past_the_deadline_fails_the_read() {
        let (mut stream, mut client, timeouts) = wrapped();
        // One byte a second: every gap is short, the whole head is not.
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            client.write_all(b"G").await.expect("write");
            assert_eq!(read_byte(&mut stream).await.expect("in time"), b'G');
        }
        let err = read_byte(&mut stream).await.expect_err("deadline passed");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // Expired stays expired, and is counted once.
        client.write_all(b"E").await.expect("write");
        assert!(read_byte(&mut stream).await.is_err());
        assert_eq!(timeouts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_times_out_from_accept() {
        let (mut stream, _client, timeouts) = wrapped();
        let started = tokio::time::Instant::now();
        let err = read_byte(&mut stream).await.expect_err("nothing was sent");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), DEADLINE);
        assert_eq!(timeouts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_after_the_head_are_not_timed_here() {
        let (mut stream, mut client, timeouts) = wrapped();
        client.write_all(b"H").await.expect("write");
        assert_eq!(read_byte(&mut stream).await.expect("head"), b'H');
        head_received(Some(&stream), None);
        tokio::time::sleep(DEADLINE * 5).await;
        client.write_all(b"B").await.expect("write");
        assert_eq!(read_byte(&mut stream).await.expect("body"), b'B');
        assert_eq!(timeouts.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_head_is_timed_from_its_first_byte() {
        let (mut stream, mut client, timeouts) = wrapped();
        head_received(Some(&stream), None);
        request_finished(Some(&stream));
        // Idle between requests is the keep-alive timeout's business, not this deadline's.
        tokio::time::sleep(DEADLINE * 5).await;
        client.write_all(b"N").await.expect("write");
        assert_eq!(read_byte(&mut stream).await.expect("next head"), b'N');
        // From that first byte the deadline runs again.
        let started = tokio::time::Instant::now();
        let err = read_byte(&mut stream)
            .await
            .expect_err("rest of head never came");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), DEADLINE);
        assert_eq!(timeouts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_connection_reads_as_closed_once_a_stop_begins() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (server, _client) = duplex(16);
        let mut fresh: Stream = Box::new(
            HeadTimedStream::new(Box::new(server), HeadDeadline::new(DEADLINE, || {}))
                .closing_on(&rx),
        );
        let mut b = [0u8; 1];
        let read = tokio::spawn(async move { fresh.read(&mut b).await });
        tokio::task::yield_now().await;
        tx.send(true).expect("stop");
        let started = tokio::time::Instant::now();
        let n = read.await.expect("task").expect("clean close");
        assert_eq!(n, 0, "end of stream, not an error");
        assert_eq!(started.elapsed(), FRESH_CONNECTION_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn the_stop_watch_ends_with_the_first_byte_and_a_request_in_progress_is_not_cut() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (server, mut client) = duplex(1024);
        let mut stream = HeadTimedStream::new(Box::new(server), HeadDeadline::new(DEADLINE, || {}))
            .closing_on(&rx);
        assert!(stream.stopping.is_some());
        client.write_all(b"G").await.expect("write");
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.expect("head");
        // Idle waits from here on are the keep-alive wait's, which watches the stop itself: an
        // idle kept-alive connection holds no watch here.
        assert!(
            stream.stopping.is_none(),
            "the watch is dropped at the first byte"
        );
        let mut stream: Stream = Box::new(stream);
        head_received(Some(&stream), None);
        tx.send(true).expect("stop");
        client.write_all(b"B").await.expect("write");
        assert_eq!(read_byte(&mut stream).await.expect("body"), b'B');
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_already_sent_are_read_even_while_stopping() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (server, mut client) = duplex(1024);
        let mut stream: Stream = Box::new(
            HeadTimedStream::new(Box::new(server), HeadDeadline::new(DEADLINE, || {}))
                .closing_on(&rx),
        );
        head_received(Some(&stream), None);
        request_finished(Some(&stream));
        client.write_all(b"N").await.expect("write");
        tx.send(true).expect("stop");
        assert_eq!(read_byte(&mut stream).await.expect("next head"), b'N');
    }

    #[tokio::test]
    async fn signals_on_other_streams_do_nothing() {
        let (server, _client) = duplex(16);
        let plain: Stream = Box::new(server);
        head_received(Some(&plain), None);
        request_finished(None);
    }

    #[tokio::test]
    async fn writes_and_identity_pass_through() {
        let (mut stream, mut client, _) = wrapped();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\n")
            .await
            .expect("write");
        // Gathered until the flush (one TLS record for a whole response), then all of it.
        let mut got = [0u8; 17];
        assert!(
            tokio::time::timeout(Duration::from_millis(50), client.read(&mut got))
                .await
                .is_err(),
            "nothing leaves before the flush"
        );
        stream.flush().await.expect("flush");
        client.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"HTTP/1.1 200 OK\r\n");
        assert!(stream.get_ssl_digest().is_none());
        assert!(stream.selected_alpn_proto().is_none());
    }

    #[test]
    fn the_wrapper_of_every_http1_connection_fits_a_128_byte_allocation() {
        // The allocator serves 129..=160 bytes from the next class up: every idle connection
        // would pay for it (load-tests/idle_connections.sh measures the whole).
        assert!(
            std::mem::size_of::<HeadTimedStream>() <= 128,
            "HeadTimedStream is {} bytes",
            std::mem::size_of::<HeadTimedStream>()
        );
    }
}
