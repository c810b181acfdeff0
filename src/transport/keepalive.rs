//! The wait for the next request on an idle HTTP/1 keep-alive connection, outside Pingora.
//!
//! Pingora waits for the next request inside its request processing: while a connection is
//! idle, the whole request future (the proxy's state machine, the session and its head buffer)
//! stays allocated. Most connections of a busy client fleet are idle most of the time, so that
//! is most of the memory per connection. [`wait_for_next_request`] waits with a small future
//! instead, reading one byte; the request processing starts only once that byte has arrived,
//! and gets it back as the start of the next head ([`next_head_prefix`], which Pingora's session
//! takes as a pipelined prefix).
//!
//! The byte is read through the connection's [`HeadTimedStream`](super::HeadTimedStream), so the
//! head deadline starts with it and the chunk watch sees it, exactly as when Pingora read it.
//! The wait ends the connection on the idle timeout, on a close by the client, and as soon as a
//! graceful stop begins.
//!
//! The idle timeout is one timer per connection, not re-armed per request: registering a timer
//! earlier than any other wakes the runtime's driver (an eventfd write), which a fresh timer per
//! request did on most requests.

use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;
use tokio::time::{Instant, Sleep};

/// What Pingora starts a request head with (its `INIT_HEADER_BUF_SIZE`), so a head that
/// follows the first byte does not grow the buffer in small steps.
const HEAD_BUF: usize = 4096;

/// How an idle wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Idle {
    /// The first byte of the next request.
    Next(u8),
    /// Closed by the client, a read error, the idle timeout or a graceful stop: close.
    Close,
}

/// Waits up to `idle` for the first byte of the next request on `stream`.
///
/// `timer` is the connection's one idle timer (pinned in the connection's future, so it costs
/// no allocation): each wait sets only its own deadline; the timer, when it fires before that
/// deadline (it was set by an earlier wait), is moved to it once.
pub async fn wait_for_next_request(
    stream: &mut Stream,
    mut timer: Pin<&mut Sleep>,
    idle: Duration,
    shutdown: &ShutdownWatch,
) -> Idle {
    let mut shutdown = shutdown.clone();
    let deadline = Instant::now() + idle;
    tokio::select! {
        // A request already sent is served, even while stopping (as Pingora does).
        biased;
        byte = first_byte(stream) => byte.map_or(Idle::Close, Idle::Next),
        () = idle_until(timer.as_mut(), deadline) => Idle::Close,
        // A dropped sender means the server is gone: close as well.
        _ = shutdown.wait_for(|stopping| *stopping) => Idle::Close,
    }
}

/// The first byte of a request head; `None` when the connection closes (or reads as closed to
/// a stopping server) or its read fails first. The stream's own rules bound the wait: for the
/// proxy's HTTP/1 connections, the head deadline and, on a fresh connection, the stop grace of
/// [`HeadTimedStream`](super::HeadTimedStream).
pub async fn first_byte(stream: &mut Stream) -> Option<u8> {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte).await {
        Ok(1) => Some(byte[0]),
        _ => None,
    }
}

/// Resolves at `deadline`, moving `timer` forward when it fires earlier.
async fn idle_until(mut timer: Pin<&mut Sleep>, deadline: Instant) {
    loop {
        timer.as_mut().await;
        if Instant::now() >= deadline {
            return;
        }
        timer.as_mut().reset(deadline);
    }
}

/// The start of the next head: the byte the wait read, with room for the rest.
pub fn next_head_prefix(first: u8) -> BytesMut {
    let mut buf = BytesMut::with_capacity(HEAD_BUF);
    buf.extend_from_slice(&[first]);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::protocols::http::ServerSession;
    use tokio::io::{AsyncWriteExt, duplex};

    const IDLE: Duration = Duration::from_secs(5);

    /// One wait with a timer of its own (a connection's first wait).
    async fn wait_once(stream: &mut Stream, shutdown: &ShutdownWatch) -> Idle {
        let timer = std::pin::pin!(tokio::time::sleep(IDLE));
        wait_for_next_request(stream, timer, IDLE, shutdown).await
    }

    #[tokio::test]
    async fn the_first_byte_comes_back_as_the_start_of_the_next_head() {
        let (server, mut client) = duplex(1024);
        let mut stream: Stream = Box::new(server);
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        client
            .write_all(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let Idle::Next(first) = wait_once(&mut stream, &shutdown).await else {
            panic!("the next request was not seen");
        };
        assert_eq!(first, b'G');
        // Pingora parses the replayed byte and the rest from the stream as one head.
        let mut session = ServerSession::new_http1(stream);
        session.set_pipelined_prefix(next_head_prefix(first));
        assert!(session.read_request().await.expect("parsed"));
        assert_eq!(session.req_header().uri.path(), "/next");
        assert_eq!(session.req_header().method, http::Method::GET);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_closes_at_the_idle_timeout() {
        let (server, _client) = duplex(16);
        let mut stream: Stream = Box::new(server);
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let started = tokio::time::Instant::now();
        assert_eq!(wait_once(&mut stream, &shutdown).await, Idle::Close);
        assert_eq!(started.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_timeout_counts_from_the_start_of_each_wait() {
        let (server, mut client) = duplex(16);
        let mut stream: Stream = Box::new(server);
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let mut idle = std::pin::pin!(tokio::time::sleep(IDLE));
        // A request arrives within the first wait; the connection is then busy for most of a
        // timeout (the timer under the deadline fires meanwhile, unobserved).
        client.write_all(b"G").await.expect("write");
        assert_eq!(
            wait_for_next_request(&mut stream, idle.as_mut(), IDLE, &shutdown).await,
            Idle::Next(b'G')
        );
        tokio::time::sleep(IDLE - Duration::from_secs(1)).await;
        // The next wait still gets the whole timeout, and no more.
        let started = tokio::time::Instant::now();
        assert_eq!(
            wait_for_next_request(&mut stream, idle.as_mut(), IDLE, &shutdown).await,
            Idle::Close
        );
        assert_eq!(started.elapsed(), IDLE);
        // Busy past a whole timeout: the next wait gets a whole one again.
        tokio::time::sleep(IDLE * 2).await;
        client.write_all(b"H").await.expect("write");
        assert_eq!(
            wait_for_next_request(&mut stream, idle.as_mut(), IDLE, &shutdown).await,
            Idle::Next(b'H')
        );
    }

    #[tokio::test]
    async fn a_client_close_or_a_graceful_stop_ends_the_wait() {
        let (server, client) = duplex(16);
        let mut stream: Stream = Box::new(server);
        let (tx, shutdown) = tokio::sync::watch::channel(false);
        drop(client);
        assert_eq!(wait_once(&mut stream, &shutdown).await, Idle::Close);

        let (server, _client) = duplex(16);
        let mut stream: Stream = Box::new(server);
        let waiting = tokio::spawn(async move { wait_once(&mut stream, &shutdown).await });
        tx.send(true).expect("stop");
        assert_eq!(waiting.await.expect("join"), Idle::Close);
    }

    #[tokio::test]
    async fn once_stopping_a_request_already_sent_is_served_and_silence_closes() {
        let (server, mut client) = duplex(16);
        let mut stream: Stream = Box::new(server);
        let (_tx, shutdown) = tokio::sync::watch::channel(true);
        client.write_all(b"G").await.expect("write");
        assert_eq!(wait_once(&mut stream, &shutdown).await, Idle::Next(b'G'));
        assert_eq!(wait_once(&mut stream, &shutdown).await, Idle::Close);
    }
}
