//! Small writes to a downstream HTTP/1 connection gathered until the writer flushes, so a
//! response's head and short body leave as one TLS record in one syscall.
//!
//! Pingora writes an HTTP/1 response head and its body with separate writes and flushes where
//! it needs bytes on the wire: it is built over a socket with a 1 460-byte write buffer. Under
//! TLS the gateway turns that socket buffer off (it held 1.4 KiB on every idle connection, see
//! `server::build`), which made every write its own TLS record and its own `writev`: two per
//! response. This buffer sits above TLS with the same size and the same rule (a write that
//! would overflow it sends what is held first; one at least its size goes straight through), but
//! it exists only from a response's first write to its flush, so an idle connection holds none.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

/// Pingora's own socket write buffer size: the same point at which bytes go out unflushed.
const LIMIT: usize = 1460;

/// Bytes written but not yet handed to the stream below: a fixed buffer boxed only while a
/// response is written, so the connection's stream wrapper carries one pointer for it (the
/// wrapper's size decides its allocation class on every connection).
#[derive(Debug, Default)]
pub struct WriteCoalescer {
    held: Option<Box<Held>>,
}

#[derive(Debug)]
struct Held {
    len: usize,
    bytes: [u8; LIMIT],
}

impl Held {
    fn filled(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Appends `data`; the caller has made sure it fits.
    fn push(&mut self, data: &[u8]) {
        let end = self.len + data.len();
        self.bytes[self.len..end].copy_from_slice(data);
        self.len = end;
    }
}

impl WriteCoalescer {
    fn held_len(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.len)
    }

    fn buffer(&mut self) -> &mut Held {
        self.held.get_or_insert_with(|| {
            Box::new(Held {
                len: 0,
                bytes: [0; LIMIT],
            })
        })
    }

    pub fn poll_write<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.held_len() + data.len() > LIMIT {
            ready!(self.poll_send_held(inner, cx))?;
            if data.len() >= LIMIT {
                return Pin::new(inner).poll_write(cx, data);
            }
        }
        self.buffer().push(data);
        Poll::Ready(Ok(data.len()))
    }

    pub fn poll_write_vectored<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.held_len() + total > LIMIT {
            ready!(self.poll_send_held(inner, cx))?;
            if total >= LIMIT {
                return Pin::new(inner).poll_write_vectored(cx, bufs);
            }
        }
        let held = self.buffer();
        for b in bufs {
            held.push(b);
        }
        Poll::Ready(Ok(total))
    }

    /// Sends what is held, then flushes the stream below.
    pub fn poll_flush<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_send_and_release(inner, cx))?;
        Pin::new(inner).poll_flush(cx)
    }

    /// Sends what is held, then shuts the stream below down.
    pub fn poll_shutdown<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_send_and_release(inner, cx))?;
        Pin::new(inner).poll_shutdown(cx)
    }

    /// Sends what is held and releases the buffer: between responses a connection holds none.
    fn poll_send_and_release<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_send_held(inner, cx))?;
        self.held = None;
        Poll::Ready(Ok(()))
    }

    /// Hands every held byte to the stream below (as many writes as it takes).
    fn poll_send_held<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(held) = self.held.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while held.len > 0 {
            let n = ready!(Pin::new(&mut *inner).poll_write(cx, held.filled()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            // A partial write (rare: a full socket) keeps the rest at the front.
            let n = n.min(held.len);
            held.bytes.copy_within(n..held.len, 0);
            held.len -= n;
        }
        Poll::Ready(Ok(()))
    }

    #[cfg(test)]
    fn holds_a_buffer(&self) -> bool {
        self.held.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// Records each write; accepts at most `max` bytes per write and is not ready every
    /// `pending_every`-th call, like a socket under pressure.
    #[derive(Default)]
    struct Socket {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        max: Option<usize>,
        pending_every: Option<usize>,
        calls: usize,
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            if self
                .pending_every
                .is_some_and(|n| self.calls.is_multiple_of(n))
            {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(self.max.unwrap_or(usize::MAX));
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn until_ready<T>(mut f: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..10_000 {
            if let Poll::Ready(v) = f(&mut cx) {
                return v;
            }
        }
        panic!("never ready");
    }

    fn write_all(c: &mut WriteCoalescer, s: &mut Socket, mut data: &[u8]) {
        while !data.is_empty() {
            let n = until_ready(|cx| c.poll_write(s, cx, data)).unwrap();
            data = &data[n..];
        }
    }

    #[test]
    fn a_head_and_a_short_body_leave_in_one_write_at_flush() {
        let (mut c, mut s) = (WriteCoalescer::default(), Socket::default());
        write_all(
            &mut c,
            &mut s,
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n",
        );
        write_all(&mut c, &mut s, b"ok");
        assert!(s.writes.is_empty(), "nothing leaves before the flush");
        until_ready(|cx| c.poll_flush(&mut s, cx)).unwrap();
        assert_eq!(
            s.writes,
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()]
        );
        assert_eq!(s.flushes, 1);
        assert!(!c.holds_a_buffer(), "an idle connection holds no buffer");
    }

    #[test]
    fn large_writes_pass_through_after_what_is_held_and_order_is_kept() {
        let mut s = Socket {
            max: Some(700),
            pending_every: Some(3),
            ..Socket::default()
        };
        let mut c = WriteCoalescer::default();
        let head = vec![b'h'; 300];
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let tail = vec![b't'; 10];
        write_all(&mut c, &mut s, &head);
        write_all(&mut c, &mut s, &body);
        write_all(&mut c, &mut s, &tail);
        until_ready(|cx| c.poll_flush(&mut s, cx)).unwrap();
        let sent: Vec<u8> = s.writes.concat();
        assert_eq!(sent, [head, body, tail].concat(), "every byte, in order");
        assert!(s.writes.iter().all(|w| w.len() <= 700));
    }

    #[test]
    fn vectored_writes_are_gathered_too_and_shutdown_sends_what_is_held() {
        let (mut c, mut s) = (WriteCoalescer::default(), Socket::default());
        let parts = [
            io::IoSlice::new(b"5\r\n"),
            io::IoSlice::new(b"hello"),
            io::IoSlice::new(b"\r\n"),
        ];
        let n = until_ready(|cx| c.poll_write_vectored(&mut s, cx, &parts)).unwrap();
        assert_eq!(n, 10);
        assert!(s.writes.is_empty());
        until_ready(|cx| c.poll_shutdown(&mut s, cx)).unwrap();
        assert_eq!(s.writes.concat(), b"5\r\nhello\r\n");
    }
}
