//! Strict chunked framing of request bodies (RFC 9112 §7.1), checked on the bytes as received.
//!
//! Pingora parses chunk lines with httparse, which accepts any byte inside a chunk extension,
//! bare LF and NUL included, and then drops the extension. The upstream never sees those lines
//! (the body is re-framed), but a line another parser would split differently is a smuggling
//! attempt, so the gateway refuses it: [`ChunkLines`] reads the same bytes incrementally and
//! flags anything outside the grammar.
//!
//! ```text
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*16HEXDIG
//! chunk-ext      = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] )
//! last-chunk     = 1*"0" [ chunk-ext ] CRLF
//! trailer-section = *( field-line CRLF ) CRLF
//! ```
//! The extension is checked by its alphabet (tokens, `;`, `=`, blanks, quoted strings), not by
//! its full grammar: what matters is that no control character, bare CR or bare LF hides in it.
//! Chunk data is skipped by length, never scanned.

/// Longest chunk-size accepted: 16 hex digits (what httparse accepts, up to `u64::MAX`).
const MAX_SIZE_DIGITS: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits; `digits` so far.
    Size { digits: u8 },
    /// Blanks after the size, before `;` or CR.
    SizeBlank,
    /// Inside the extension.
    Extension,
    /// Inside a quoted string of the extension.
    Quoted,
    /// After a backslash inside a quoted string.
    QuotedEscape,
    /// CR of a chunk line seen; LF must follow.
    LineFeed,
    /// Chunk data; bytes left.
    Data { left: u64 },
    /// After the data: CR must follow.
    DataCarriageReturn,
    /// After the data's CR: LF must follow.
    DataLineFeed,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// CR of a trailer line seen; LF must follow.
    TrailerLineFeed,
    /// CR of the final empty line seen; LF must follow.
    FinalLineFeed,
    /// The body is complete; later bytes belong to the next request.
    Done,
    /// Outside the grammar.
    Malformed,
}

/// An incremental, allocation-free check of a chunked body's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLines {
    state: State,
    size: u64,
}

impl Default for ChunkLines {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkLines {
    /// At the first byte of a chunked body.
    pub const fn new() -> Self {
        Self {
            state: State::Size { digits: 0 },
            size: 0,
        }
    }

    /// Whether a byte outside the grammar was seen.
    pub fn is_malformed(&self) -> bool {
        self.state == State::Malformed
    }

    /// Whether the whole body (last chunk, trailers, final CRLF) was seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Checks the next bytes of the body; returns false once the framing is malformed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while let Some((&b, rest)) = bytes.split_first() {
            match self.state {
                State::Done => return true,
                State::Malformed => return false,
                State::Data { left } => {
                    // Skip the data in one step: it is opaque.
                    let take = usize::try_from(left).map_or(bytes.len(), |l| l.min(bytes.len()));
                    let left = left - take as u64;
                    bytes = &bytes[take..];
                    self.state = if left == 0 {
                        State::DataCarriageReturn
                    } else {
                        State::Data { left }
                    };
                    continue;
                }
                _ => self.state = self.next(b),
            }
            bytes = rest;
        }
        !self.is_malformed()
    }

    fn next(&mut self, b: u8) -> State {
        match self.state {
            State::Size { digits } => match hex_value(b) {
                Some(v) if digits < MAX_SIZE_DIGITS => {
                    self.size = (self.size << 4) | u64::from(v);
                    State::Size { digits: digits + 1 }
                }
                None if digits > 0 => match b {
                    b';' => State::Extension,
                    b' ' | b'\t' => State::SizeBlank,
                    b'\r' => State::LineFeed,
                    _ => State::Malformed,
                },
                _ => State::Malformed,
            },
            State::SizeBlank => match b {
                b' ' | b'\t' => State::SizeBlank,
                b';' => State::Extension,
                _ => State::Malformed,
            },
            State::Extension => match b {
                b'\r' => State::LineFeed,
                b'"' => State::Quoted,
                b';' | b'=' | b' ' | b'\t' => State::Extension,
                b if is_tchar(b) => State::Extension,
                _ => State::Malformed,
            },
            State::Quoted => match b {
                b'"' => State::Extension,
                b'\\' => State::QuotedEscape,
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => State::Quoted,
                _ => State::Malformed,
            },
            State::QuotedEscape => match b {
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => State::Quoted,
                _ => State::Malformed,
            },
            State::LineFeed => match b {
                b'\n' if self.size == 0 => State::TrailerStart,
                b'\n' => {
                    let left = std::mem::take(&mut self.size);
                    State::Data { left }
                }
                _ => State::Malformed,
            },
            State::DataCarriageReturn => match b {
                b'\r' => State::DataLineFeed,
                _ => State::Malformed,
            },
            State::DataLineFeed => match b {
                b'\n' => State::Size { digits: 0 },
                _ => State::Malformed,
            },
            State::TrailerStart => match b {
                b'\r' => State::FinalLineFeed,
                // A trailer line may not start with a blank (obsolete line folding).
                b if is_field_byte(b) && b != b' ' && b != b'\t' => State::Trailer,
                _ => State::Malformed,
            },
            State::Trailer => match b {
                b'\r' => State::TrailerLineFeed,
                b if is_field_byte(b) => State::Trailer,
                _ => State::Malformed,
            },
            State::TrailerLineFeed => match b {
                b'\n' => State::TrailerStart,
                _ => State::Malformed,
            },
            State::FinalLineFeed => match b {
                b'\n' => State::Done,
                _ => State::Malformed,
            },
            // Handled by `feed` before a byte is taken.
            State::Data { .. } | State::Done | State::Malformed => self.state,
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte allowed in a field line: visible, blank or obs-text; no control character.
fn is_field_byte(b: u8) -> bool {
    matches!(b, b'\t' | 0x20..=0x7e | 0x80..=0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &[u8]) -> ChunkLines {
        let mut c = ChunkLines::new();
        c.feed(body);
        c
    }

    #[test]
    fn well_formed_bodies_are_accepted_whole_and_split_anywhere() {
        let bodies: &[&[u8]] = &[
            b"0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
            b"5;ext\r\nhello\r\n0\r\n\r\n",
            b"5 ; name=value ; other=\"quoted \\\" text\"\r\nhello\r\n00\r\n\r\n",
            b"A\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n",
            b"3\r\n\r\n\n\r\n0\r\n\r\n",
            b"000000000000000f\r\n0123456789abcde\r\n0\r\n\r\n",
        ];
        for body in bodies {
            let c = check(body);
            assert!(c.is_done(), "{:?}", String::from_utf8_lossy(body));
            for cut in 0..body.len() {
                let mut c = ChunkLines::new();
                assert!(c.feed(&body[..cut]));
                assert!(c.feed(&body[cut..]));
                assert!(c.is_done(), "split at {cut}: {body:?}");
            }
        }
    }

    #[test]
    fn bytes_after_the_body_are_not_checked() {
        let mut c = ChunkLines::new();
        assert!(c.feed(b"0\r\n\r\nGET / HTTP/1.1\r\n\n\x00"));
        assert!(c.is_done());
    }

    #[test]
    fn malformed_chunk_lines_are_flagged() {
        let bodies: &[&[u8]] = &[
            // Bare LF: ending the size line, inside an extension, after the data.
            b"5\nhello\r\n0\r\n\r\n",
            b"5;ext\nfoo\r\nhello\r\n0\r\n\r\n",
            b"5;a\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            // Bare CR, NUL and other control characters in the extension.
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
            b"5;a\x0b\r\nhello\r\n0\r\n\r\n",
            b"5;\"a\x01\"\r\nhello\r\n0\r\n\r\n",
            // Separators outside quotes, a missing size, a sign, a hex prefix, too many digits.
            b"5;a@b\r\nhello\r\n0\r\n\r\n",
            b";ext\r\n",
            b"\r\n",
            b"+5\r\nhello\r\n",
            b"0x5\r\nhello\r\n",
            b"00000000000000005\r\nhello\r\n",
            // Blanks after the size with no extension, data longer than declared.
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello!\r\n0\r\n\r\n",
            // Trailers: folded, bare LF, control character.
            b"0\r\n folded\r\n\r\n",
            b"0\r\nX: a\nY: b\r\n\r\n",
            b"0\r\nX: \x00\r\n\r\n",
            b"0\r\n\n",
        ];
        for body in bodies {
            let c = check(body);
            assert!(c.is_malformed(), "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_partial_body_is_neither_done_nor_malformed() {
        let c = check(b"5;a=b\r\nhel");
        assert!(!c.is_done() && !c.is_malformed());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A well-formed chunked body built from data chunks and extension names.
        fn body() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 1..40), "[a-z]{0,6}"),
                0..6,
            )
            .prop_map(|chunks| {
                let mut out = Vec::new();
                for (data, ext) in chunks {
                    out.extend_from_slice(format!("{:x}", data.len()).as_bytes());
                    if !ext.is_empty() {
                        out.extend_from_slice(format!(";{ext}=\"v\"").as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                out
            })
        }

        proptest! {
            #[test]
            fn generated_bodies_are_accepted_in_any_pieces(body in body(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4)) {
                let mut points: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
                points.sort_unstable();
                let mut c = ChunkLines::new();
                let mut from = 0;
                for p in points.into_iter().chain([body.len()]) {
                    prop_assert!(c.feed(&body[from..p]));
                    from = p;
                }
                prop_assert!(c.is_done());
            }

            #[test]
            fn a_bare_line_feed_in_a_chunk_line_is_always_flagged(body in body(), at in any::<prop::sample::Index>()) {
                // Replace one CRLF that ends a chunk-size line by a bare LF.
                let line_ends: Vec<usize> = (1..body.len())
                    .filter(|&i| body[i] == b'\n' && body[i - 1] == b'\r')
                    .collect();
                let i = line_ends[at.index(line_ends.len())];
                let mut bad = body.clone();
                bad.remove(i - 1);
                let mut c = ChunkLines::new();
                c.feed(&bad);
                // Removing the CR either breaks a line or shortens data framing; never accepted
                // as the same complete body.
                prop_assert!(c.is_malformed() || !c.is_done());
            }
        }
    }
}
