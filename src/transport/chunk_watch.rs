//! Strict chunk lines on the raw bytes of an HTTP/1 connection.
//!
//! Pingora hides a chunked body's lines from the application (it parses them leniently and
//! drops extensions), so the check runs where the bytes pass: [`ChunkWatch`] sits in the
//! connection's stream wrapper and sees every byte read.
//!
//! Bytes that follow a request head in the same read are already buffered when the pipeline
//! learns whether the body is chunked, so they are checked speculatively: the watch finds the
//! head's end itself (the first CRLF CRLF after the request line) and runs [`ChunkLines`] over
//! what follows. When the pipeline then says "chunked, head of N bytes", the speculation is used
//! only if its head length is also N; otherwise (a head the watch could not delimit the same
//! way) this request's body is not checked here, rather than refused on a guess. Later reads of
//! a chunked body are checked as they arrive and fail the read once malformed.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use crate::inspect::ChunkLines;

/// A chunked body whose start the watch saw: keep checking.
const CHECK: u8 = 1;
/// Not chunked, or not delimited the same way: nothing to check for this request.
const SKIP: u8 = 2;

/// The `\r\n\r\n` ending a head.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

/// Per-connection state; `on_*` calls come from the stream's `poll_read` (exclusive access),
/// `decide`/`malformed` from the pipeline through a shared reference.
#[derive(Debug, Default)]
pub struct ChunkWatch {
    /// Bytes of the current head seen so far, and how much of `HEAD_END` was just matched.
    head_bytes: usize,
    matched: u8,
    /// A byte other than CR or LF was seen (leading empty lines are not a head's end).
    started: bool,
    lines: ChunkLines,
    /// The head's length as the watch delimited it; 0 while not found.
    head_len: AtomicUsize,
    malformed: AtomicBool,
    /// `CHECK` or `SKIP` once the pipeline has said; 0 before, while speculating.
    decision: AtomicU8,
}

impl ChunkWatch {
    /// A new head starts with the next byte read (connection start, or after a response).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Bytes read while a head is being received.
    pub fn on_head_bytes(&mut self, bytes: &[u8]) {
        // Pingora parses a head as soon as a read completes it, before reading again; another
        // read with a head end already found means those bytes were not a head (e.g. the drained
        // rest of an unread body): start over.
        if *self.head_len.get_mut() != 0 {
            self.reset();
        }
        let mut i = 0;
        if !self.started {
            // Leading empty lines are not a head's end.
            i = bytes
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(bytes.len());
            self.started = i < bytes.len();
        }
        while i < bytes.len() {
            if self.matched == 0 {
                // Only a CR can start the end of a head: jump to the next one (a head is
                // mostly long runs without one, a bearer token for instance).
                match memchr::memchr(b'\r', &bytes[i..]) {
                    Some(at) => i += at,
                    None => break,
                }
            }
            let b = bytes[i];
            i += 1;
            self.matched = if b == HEAD_END[usize::from(self.matched)] {
                self.matched + 1
            } else if b == b'\r' {
                1
            } else {
                0
            };
            if usize::from(self.matched) == HEAD_END.len() {
                self.head_bytes += i;
                *self.head_len.get_mut() = self.head_bytes;
                let ok = self.lines.feed(&bytes[i..]);
                *self.malformed.get_mut() = !ok;
                return;
            }
        }
        self.head_bytes += bytes.len();
    }

    /// Bytes read after the head; false once a chunked body is malformed.
    pub fn on_body_bytes(&mut self, bytes: &[u8]) -> bool {
        if *self.decision.get_mut() != CHECK || self.lines.is_done() {
            return true;
        }
        let ok = self.lines.feed(bytes);
        *self.malformed.get_mut() = !ok;
        ok
    }

    /// The pipeline's word on the parsed head: `Some(len)` for a chunked body after a raw head
    /// of `len` bytes, `None` for anything else.
    pub fn decide(&self, chunked_head_len: Option<usize>) {
        let check = chunked_head_len
            .is_some_and(|len| len != 0 && len == self.head_len.load(Ordering::Acquire));
        self.decision
            .store(if check { CHECK } else { SKIP }, Ordering::Release);
    }

    /// Whether the chunked body seen so far breaks the grammar.
    pub fn malformed(&self) -> bool {
        self.decision.load(Ordering::Acquire) == CHECK && self.malformed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

    fn watch(reads: &[&[u8]], head_len: Option<usize>) -> ChunkWatch {
        let mut w = ChunkWatch::default();
        w.on_head_bytes(reads[0]);
        w.decide(head_len);
        for r in &reads[1..] {
            w.on_body_bytes(r);
        }
        w
    }

    #[test]
    fn body_bytes_in_the_head_read_are_checked() {
        let read = [HEAD, b"5;a\nb\r\nhello\r\n0\r\n\r\n"].concat();
        assert!(watch(&[&read], Some(HEAD.len())).malformed());
        let read = [HEAD, b"5;a=b\r\nhello\r\n0\r\n\r\n"].concat();
        assert!(!watch(&[&read], Some(HEAD.len())).malformed());
    }

    #[test]
    fn later_reads_are_checked_and_fail() {
        let w = watch(&[HEAD, b"5\r\nhello\r\n", b"3;\x00\r\n"], Some(HEAD.len()));
        assert!(w.malformed());
        let w = watch(&[HEAD, b"5\r\nhel", b"lo\r\n0\r\n\r\n"], Some(HEAD.len()));
        assert!(!w.malformed());
    }

    #[test]
    fn bodies_that_are_not_chunked_are_never_refused() {
        let read = [HEAD, b"{\"not\": \"chunked\"}"].concat();
        assert!(!watch(&[&read], None).malformed());
    }

    #[test]
    fn a_head_delimited_differently_is_not_checked() {
        let read = [HEAD, b"5;a\nb\r\n"].concat();
        assert!(!watch(&[&read], Some(HEAD.len() + 2)).malformed());
    }

    #[test]
    fn leading_empty_lines_are_not_a_head_end() {
        let read = [b"\r\n\r\n".as_slice(), HEAD, b"0;\x01\r\n\r\n"].concat();
        assert!(watch(&[&read], Some(HEAD.len() + 4)).malformed());
    }

    #[test]
    fn a_second_read_before_the_decision_starts_a_new_head() {
        let mut w = ChunkWatch::default();
        w.on_head_bytes(b"drained rest\r\n\r\nof a body");
        w.on_head_bytes(&[HEAD, b"0\r\n\r\n"].concat());
        w.decide(Some(HEAD.len()));
        assert!(!w.malformed());
    }

    /// The head length the watch must find, byte by byte: leading CR/LF skipped, then the
    /// first CRLF CRLF.
    fn reference_head_len(bytes: &[u8]) -> usize {
        let start = bytes
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(bytes.len());
        bytes[start..]
            .windows(4)
            .position(|w| w == HEAD_END)
            .map_or(0, |at| start + at + 4)
    }

    #[test]
    fn the_head_end_is_found_wherever_the_reads_split_it() {
        let token = "e".repeat(600);
        let heads: [Vec<u8>; 4] = [
            HEAD.to_vec(),
            [b"\r\n\n".as_slice(), HEAD].concat(),
            format!("GET / HTTP/1.1\r\nAuthorization: Bearer {token}\r\nX: \r\r\n\r\n")
                .into_bytes(),
            b"GET / HTTP/1.1\r\nA: b\r\n\r\r\n\r\n".to_vec(),
        ];
        for head in &heads {
            let expected = reference_head_len(head);
            assert!(expected > 0);
            let read = [head.as_slice(), b"0\r\n\r\n"].concat();
            for first in 0..=read.len() {
                for second in [
                    first,
                    (first + 1).min(read.len()),
                    (first + 7).min(read.len()),
                ] {
                    let mut w = ChunkWatch::default();
                    for part in [&read[..first], &read[first..second], &read[second..]] {
                        // Reads after the end is found are the body's, as on a connection.
                        if *w.head_len.get_mut() == 0 {
                            w.on_head_bytes(part);
                        } else {
                            w.on_body_bytes(part);
                        }
                    }
                    assert_eq!(
                        *w.head_len.get_mut(),
                        expected,
                        "split at {first}/{second} of {:?}",
                        String::from_utf8_lossy(head)
                    );
                }
            }
        }
    }
}
