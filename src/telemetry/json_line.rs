//! Writes one JSON object into a byte buffer, field by field, for the log lines.
//!
//! The access log writes a line per request; going through serde cost about as much as all
//! the gateway's stages together (every key escaped at run time, the timestamp formatted
//! through `fmt`). Here keys are fixed ASCII written as they are, only values are escaped,
//! numbers go through `itoa`/`zmij` (what serde_json itself uses) and the timestamp's date and
//! time of day are formatted once a second per thread. The output is the JSON serde_json
//! writes for the same fields.

use std::cell::Cell;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A JSON object being written into `out`; [`JsonObject::finish`] closes it.
pub struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> JsonObject<'a> {
    pub fn begin(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    /// `key` is one of the line's own field names: plain ASCII that needs no escaping.
    fn key(&mut self, key: &'static str) {
        debug_assert!(
            key.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        );
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, key: &'static str, value: &str) -> &mut Self {
        self.key(key);
        write_escaped(self.out, value);
        self
    }

    /// `null` when absent.
    pub fn str_or_null(&mut self, key: &'static str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => {
                self.key(key);
                self.out.extend_from_slice(b"null");
                self
            }
        }
    }

    /// Left out when absent.
    pub fn str_if_some(&mut self, key: &'static str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(key, v);
        }
        self
    }

    pub fn str_list(&mut self, key: &'static str, values: &[String]) -> &mut Self {
        self.key(key);
        self.out.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_escaped(self.out, v);
        }
        self.out.push(b']');
        self
    }

    pub fn uint(&mut self, key: &'static str, value: u64) -> &mut Self {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// Left out when absent.
    pub fn uint_if_some(&mut self, key: &'static str, value: Option<u64>) -> &mut Self {
        if let Some(v) = value {
            self.uint(key, v);
        }
        self
    }

    /// Shortest round-trip form; `null` for NaN and infinities, as serde_json writes them.
    pub fn float(&mut self, key: &'static str, value: f64) -> &mut Self {
        self.key(key);
        if value.is_finite() {
            self.out
                .extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
        } else {
            self.out.extend_from_slice(b"null");
        }
        self
    }

    /// Left out when absent.
    pub fn float_if_some(&mut self, key: &'static str, value: Option<f64>) -> &mut Self {
        if let Some(v) = value {
            self.float(key, v);
        }
        self
    }

    /// RFC 3339 UTC with microseconds (`2026-12-04T10:00:00.123456Z`), as the application log
    /// writes its `timestamp`.
    pub fn timestamp(&mut self, key: &'static str, at: SystemTime) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        write_rfc3339_micros(self.out, at);
        self.out.push(b'"');
        self
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }
}

/// Bytes a JSON string cannot hold as they are: `"`, `\\` and the control characters.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// A JSON string: quotes, `"` and `\` escaped, control characters as short escapes or
/// `\u00XX`; everything else (UTF-8 included) as it is. Runs without escapes are copied whole.
fn write_escaped(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let mut rest = value.as_bytes();
    while let Some(at) = first_needing_escape(rest) {
        out.extend_from_slice(&rest[..at]);
        let b = rest[at];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Where the first byte that needs escaping is. Eight bytes at a time: a value is mostly plain
/// text, and a byte-by-byte table lookup was most of the cost of writing a line.
fn first_needing_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `v` is zero (or, for `lt`, below `n` <= 0x80): its high bit is set in the
    // result. Exact as to whether any byte is, which is all the chunk test needs.
    const fn zero_bytes(v: u64) -> u64 {
        v.wrapping_sub(ONES) & !v & HIGHS
    }
    let chunks = bytes.chunks_exact(8);
    let tail = chunks.remainder();
    for (i, c) in chunks.enumerate() {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
        let quote = zero_bytes(x ^ (ONES * u64::from(b'"')));
        let backslash = zero_bytes(x ^ (ONES * u64::from(b'\\')));
        if control | quote | backslash != 0 {
            return c
                .iter()
                .position(|&b| NEEDS_ESCAPE[usize::from(b)])
                .map(|at| i * 8 + at);
        }
    }
    tail.iter()
        .position(|&b| NEEDS_ESCAPE[usize::from(b)])
        .map(|at| bytes.len() - tail.len() + at)
}

/// `YYYY-MM-DDTHH:MM:SS` of one second, kept per thread: lines within the same second only
/// add their microseconds.
#[derive(Clone, Copy)]
struct SecondPrefix {
    second: u64,
    text: [u8; 19],
}

thread_local! {
    static PREFIX: Cell<Option<SecondPrefix>> = const { Cell::new(None) };
}

/// The last second RFC 3339's four-digit year can name (9999-12-31T23:59:59).
const LAST_SECOND: u64 = 253_402_300_799;

/// A clock outside 1970..=9999 (never a real request's) is written as the nearest end of that
/// range rather than failing the line.
fn write_rfc3339_micros(out: &mut Vec<u8>, at: SystemTime) {
    let since_epoch = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .min(Duration::new(LAST_SECOND, 999_999_999));
    let second = since_epoch.as_secs();
    let prefix = match PREFIX.get() {
        Some(p) if p.second == second => p,
        _ => {
            let mut whole = String::with_capacity(20);
            // In range by construction, so formatting cannot fail.
            let _ = write!(
                whole,
                "{}",
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(second))
            );
            let mut text = *b"1970-01-01T00:00:00";
            if let Some(head) = whole.as_bytes().get(..19) {
                text.copy_from_slice(head);
            }
            let p = SecondPrefix { second, text };
            PREFIX.set(Some(p));
            p
        }
    };
    out.extend_from_slice(&prefix.text);
    out.push(b'.');
    let micros = since_epoch.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(f: impl FnOnce(&mut JsonObject<'_>)) -> String {
        let mut out = Vec::new();
        let mut obj = JsonObject::begin(&mut out);
        f(&mut obj);
        obj.finish();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let samples = [
            "",
            "plain",
            "quote \" and backslash \\",
            "line\nbreak\rtab\tbell\u{7}nul\u{0}bs\u{8}ff\u{c}us\u{1f}del\u{7f}",
            "ünïcødé ✓ 🚀",
            "\"\"\\\\",
        ];
        for s in samples {
            let line = encode(|o| {
                o.str("v", s);
            });
            assert_eq!(line, serde_json::json!({ "v": s }).to_string(), "{s:?}");
            let back: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(back["v"], s);
        }
    }

    #[test]
    fn the_word_scan_finds_every_byte_that_needs_escaping_wherever_it_is() {
        // Every position in and around a word, every byte value: the scan agrees with the
        // table, byte by byte.
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let expected = bytes.iter().position(|&b| NEEDS_ESCAPE[usize::from(b)]);
                    assert_eq!(first_needing_escape(&bytes), expected, "{len} {at} {b:#x}");
                }
            }
        }
        // Bytes next to the borders of the ranges (0x1f/0x20, 0x21/0x22/0x23, 0x5b/0x5c/0x5d,
        // 0x7f, 0x80 and up) in every lane at once.
        let mixed: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
        let expected = mixed.iter().position(|&b| NEEDS_ESCAPE[usize::from(b)]);
        assert_eq!(first_needing_escape(&mixed), expected);
        let high: Vec<u8> = (0x80..=0xffu8).chain(b" !#[]~".iter().copied()).collect();
        assert_eq!(first_needing_escape(&high), None);
    }

    #[test]
    fn numbers_and_absent_values_match_serde_json() {
        for f in [0.0, 1.5, 0.001, 123456.789, 1e-7, 2.5e21] {
            let line = encode(|o| {
                o.float("f", f);
            });
            assert_eq!(line, serde_json::json!({ "f": f }).to_string());
        }
        assert_eq!(
            encode(|o| {
                o.float("f", f64::NAN);
            }),
            r#"{"f":null}"#
        );
        let line = encode(|o| {
            o.uint("a", 0)
                .uint("b", u64::MAX)
                .str_or_null("c", None)
                .str_if_some("d", None)
                .uint_if_some("e", None)
                .float_if_some("g", None)
                .str_list("h", &["x\"y".to_owned(), "z".to_owned()])
                .str_list("i", &[]);
        });
        assert_eq!(
            line,
            format!(
                r#"{{"a":0,"b":{},"c":null,"h":["x\"y","z"],"i":[]}}"#,
                u64::MAX
            )
        );
    }

    #[test]
    fn the_timestamp_matches_rfc3339_with_microseconds() {
        let base = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        // Within one second, across seconds, and back again (the per-thread prefix must follow).
        for offset_us in [
            0u64,
            1,
            999_999,
            1_000_000,
            1_000_007,
            86_400_000_000,
            5,
            42,
        ] {
            let at = base + Duration::from_micros(offset_us);
            let mut out = Vec::new();
            write_rfc3339_micros(&mut out, at);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                humantime::format_rfc3339_micros(at).to_string()
            );
        }
        let mut out = Vec::new();
        write_rfc3339_micros(&mut out, UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:00.000000Z"
        );
        let mut out = Vec::new();
        write_rfc3339_micros(&mut out, UNIX_EPOCH + Duration::from_secs(LAST_SECOND + 10));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "9999-12-31T23:59:59.999999Z"
        );
    }
}
