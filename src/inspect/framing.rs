//! Request-smuggling defences: one unambiguous body length or none.
//!
//! Two entry points because Pingora normalises some ambiguity away before application code
//! runs: for HTTP/1 it silently drops `Content-Length` when `Transfer-Encoding` is also present,
//! and collapses identical duplicate `Content-Length` values. [`check_raw_head`] therefore scans
//! the raw HTTP/1 head bytes as received; [`check_framing`] checks the parsed header map (all
//! versions, including HTTP/2 where there is no raw head). Both are strict on purpose: anything
//! a second parser could read differently is refused, and the connection should be closed.
//!
//! What Pingora 0.9 (httparse) already refuses before we run, kept here as defence in depth:
//! control characters other than HTAB in values, obsolete line folding, malformed header names,
//! differing `Content-Length` duplicates, a final coding other than `chunked`, and
//! `Transfer-Encoding` on HTTP/1.0. What only these checks catch: CL+TE together, identical CL
//! duplicates and `1, 1` lists, and `Transfer-Encoding` values other than exactly `chunked`
//! (`gzip, chunked`, `Chunked`, tab or double-space padding), bare LF line endings.

use std::sync::LazyLock;

use http::{HeaderMap, HeaderValue, Version, header};

/// Why the framing of a request was refused. Answered 400 and the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FramingError {
    /// Both `Content-Length` and `Transfer-Encoding`.
    ContentLengthWithTransferEncoding,
    /// More than one `Content-Length` field, or a list value (`1, 1`).
    DuplicateContentLength,
    /// A `Content-Length` that is not a plain decimal number.
    InvalidContentLength,
    /// More than one `Transfer-Encoding` field.
    DuplicateTransferEncoding,
    /// A `Transfer-Encoding` other than exactly `chunked`.
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` on an HTTP/1.0 request (RFC 9112 §6.1).
    TransferEncodingInHttp10,
    /// A control character (other than HTAB) in a header value.
    ControlCharInHeader,
    /// A header name that is not an RFC 9110 token (includes space before the colon).
    InvalidHeaderName,
    /// A header line without a colon.
    MalformedHeaderLine,
    /// A continuation line starting with space or tab (obs-fold).
    ObsoleteLineFolding,
    /// A line ending in a bare LF instead of CRLF.
    BareLineFeed,
    /// `Connection` names a field the gateway relies on end to end (`Host`, `Authorization`...),
    /// an attempt to have a proxy strip it.
    ConnectionNominatesProtectedHeader,
    /// A `Connection` option that is not a token (`"x-forwarded-for"`).
    InvalidConnectionToken,
    /// More `Connection` options than any real client sends.
    TooManyConnectionTokens,
    /// A header name that is not a framing or hop-by-hop field but reads as one once case and
    /// punctuation are ignored (`Content_Length`, `Transfer.Encoding`, `ContentLength`): some
    /// servers and CGI-style gateways fold `_` into `-`, so it could frame the body there.
    DisguisedFramingHeader,
    /// A chunked body whose chunk lines break RFC 9112's grammar: a bare LF or CR, a control
    /// character or separator in an extension, a size that is not plain hex, data longer than
    /// its size (see `chunk_lines`).
    MalformedChunkLine,
}

impl FramingError {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            Self::DuplicateContentLength => "duplicate_content_length",
            Self::InvalidContentLength => "invalid_content_length",
            Self::DuplicateTransferEncoding => "duplicate_transfer_encoding",
            Self::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Self::TransferEncodingInHttp10 => "transfer_encoding_in_http10",
            Self::ControlCharInHeader => "control_char_in_header",
            Self::InvalidHeaderName => "invalid_header_name",
            Self::MalformedHeaderLine => "malformed_header_line",
            Self::ObsoleteLineFolding => "obsolete_line_folding",
            Self::BareLineFeed => "bare_line_feed",
            Self::ConnectionNominatesProtectedHeader => "connection_nominates_protected_header",
            Self::InvalidConnectionToken => "invalid_connection_token",
            Self::TooManyConnectionTokens => "too_many_connection_tokens",
            Self::DisguisedFramingHeader => "disguised_framing_header",
            Self::MalformedChunkLine => "malformed_chunk_line",
        }
    }
}

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for FramingError {}

/// How the request body is delimited, once framing is known to be unambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No `Content-Length` and no `Transfer-Encoding`: no body (HTTP/1) or stream-delimited (H2).
    None,
    /// A declared length.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl BodyFraming {
    /// Whether a body may follow (a declared non-zero length, chunked, or an HTTP/2 stream).
    pub fn may_have_body(&self, version: Version) -> bool {
        match self {
            Self::Length(n) => *n > 0,
            Self::Chunked => true,
            Self::None => version >= Version::HTTP_2,
        }
    }
}

/// Check the parsed header map (any HTTP version) and report the body framing.
pub fn check_framing(version: Version, headers: &HeaderMap) -> Result<BodyFraming, FramingError> {
    check_values(headers.values().map(HeaderValue::as_bytes))?;
    for name in headers.keys() {
        check_header_name(name.as_str().as_bytes())?;
    }

    let mut cls = headers.get_all(header::CONTENT_LENGTH).iter();
    let content_length = match (cls.next(), cls.next()) {
        (None, _) => None,
        (Some(v), None) => Some(parse_content_length(v.as_bytes())?),
        (Some(_), Some(_)) => return Err(FramingError::DuplicateContentLength),
    };

    let mut tes = headers.get_all(header::TRANSFER_ENCODING).iter();
    let chunked = match (tes.next(), tes.next()) {
        (None, _) => false,
        (Some(v), None) => {
            check_transfer_encoding(v)?;
            true
        }
        (Some(_), Some(_)) => return Err(FramingError::DuplicateTransferEncoding),
    };

    match (content_length, chunked) {
        (Some(_), true) => Err(FramingError::ContentLengthWithTransferEncoding),
        (None, true) if version == Version::HTTP_10 || version == Version::HTTP_09 => {
            Err(FramingError::TransferEncodingInHttp10)
        }
        // HTTP/2 and later frame bodies themselves and forbid Transfer-Encoding.
        (None, true) if version >= Version::HTTP_2 => {
            Err(FramingError::UnsupportedTransferEncoding)
        }
        (None, true) => Ok(BodyFraming::Chunked),
        (Some(n), false) => Ok(BodyFraming::Length(n)),
        (None, false) => Ok(BodyFraming::None),
    }
}

/// Refuse control characters in field values. The parsed map can hold them: Pingora builds
/// values without `http`'s validation, so this does not rely on `HeaderValue` invariants.
fn check_values<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<(), FramingError> {
    for value in values {
        if has_ctl(value) {
            return Err(FramingError::ControlCharInHeader);
        }
    }
    Ok(())
}

fn check_transfer_encoding(value: &HeaderValue) -> Result<(), FramingError> {
    // Exactly `chunked`: codings stacked before it (`gzip, chunked`) are legal but nobody
    // sends them to an API, and each variant is a chance for two parsers to disagree.
    if value.as_bytes() == b"chunked" {
        Ok(())
    } else {
        Err(FramingError::UnsupportedTransferEncoding)
    }
}

/// A single plain decimal: no sign, no list, no padding, no leading zeros, fits in u64.
fn parse_content_length(v: &[u8]) -> Result<u64, FramingError> {
    if v.contains(&b',') {
        return Err(FramingError::DuplicateContentLength);
    }
    if v.is_empty() || (v.len() > 1 && v[0] == b'0') {
        return Err(FramingError::InvalidContentLength);
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(FramingError::InvalidContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(FramingError::InvalidContentLength)?;
    }
    Ok(n)
}

/// Scan a raw HTTP/1 request head (request line, header lines, optionally the blank line;
/// what `session.as_downstream().to_h1_raw()` returns) for framing ambiguity that the parsed
/// map no longer shows. Call before anything else reads the head.
pub fn check_raw_head(raw: &[u8]) -> Result<(), FramingError> {
    let mut lines = RawLines { rest: raw };
    let request_line = match lines.next_line()? {
        Some(line) => line,
        None => return Ok(()),
    };
    let http10 = request_line.ends_with(b"HTTP/1.0") || request_line.ends_with(b"HTTP/0.9");

    let mut content_lengths = 0u32;
    let mut transfer_encodings = 0u32;
    while let Some(line) = lines.next_line()? {
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            return Err(FramingError::ObsoleteLineFolding);
        }
        let colon = memchr::memchr(b':', line).ok_or(FramingError::MalformedHeaderLine)?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(FramingError::InvalidHeaderName);
        }
        if has_ctl(value) {
            return Err(FramingError::ControlCharInHeader);
        }
        check_header_name(name)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            content_lengths += 1;
            parse_content_length(strict_value(value).ok_or(FramingError::InvalidContentLength)?)?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encodings += 1;
            if strict_value(value) != Some(b"chunked".as_slice()) {
                return Err(FramingError::UnsupportedTransferEncoding);
            }
        }
    }

    if content_lengths > 1 {
        return Err(FramingError::DuplicateContentLength);
    }
    if transfer_encodings > 1 {
        return Err(FramingError::DuplicateTransferEncoding);
    }
    if transfer_encodings == 1 {
        if content_lengths == 1 {
            return Err(FramingError::ContentLengthWithTransferEncoding);
        }
        if http10 {
            return Err(FramingError::TransferEncodingInHttp10);
        }
    }
    Ok(())
}

/// Fields that decide framing or routing, beyond the hop-by-hop ones (`hop_by_hop::STANDARD`):
/// together, the fields whose look-alike names are refused.
const FRAMING_AND_ROUTING: [&str; 3] = ["content-length", "host", "expect"];

/// Letters and digits in the longest name checked (`proxyauthorization`).
const MAX_FOLDED: usize = 18;

/// A name reduced to its ASCII letters and digits, lower-cased; `None` when longer than
/// [`MAX_FOLDED`] (then it cannot imitate a listed name).
fn fold(name: &[u8]) -> Option<([u8; MAX_FOLDED], usize)> {
    let mut folded = [0u8; MAX_FOLDED];
    let mut len = 0;
    for &b in name {
        if b.is_ascii_alphanumeric() {
            *folded.get_mut(len)? = b.to_ascii_lowercase();
            len += 1;
        }
    }
    Some((folded, len))
}

/// The listed names with their folded forms, folded once (every header of every request is
/// compared with all of them).
static FOLDED_PROTECTED: LazyLock<Vec<(&'static str, [u8; MAX_FOLDED], usize)>> =
    LazyLock::new(|| {
        FRAMING_AND_ROUTING
            .iter()
            .chain(super::hop_by_hop::STANDARD.iter())
            .filter_map(|real| fold(real.as_bytes()).map(|(f, len)| (*real, f, len)))
            .collect()
    });

/// Refuse a name that folds onto a framing or hop-by-hop field without being it. Folding keeps
/// only ASCII letters and digits, lower-cased, so `_`, `.`, doubled or missing `-` and any case
/// mix all land on the same key; the exact name in any case is the real field and passes.
/// Names are already RFC 9110 tokens here (whitespace around them is refused elsewhere).
pub fn check_header_name(name: &[u8]) -> Result<(), FramingError> {
    let Some((folded, len)) = fold(name) else {
        return Ok(());
    };
    let folded = &folded[..len];
    for (real, real_folded, real_len) in FOLDED_PROTECTED.iter() {
        if folded == &real_folded[..*real_len] && !name.eq_ignore_ascii_case(real.as_bytes()) {
            return Err(FramingError::DisguisedFramingHeader);
        }
    }
    Ok(())
}

/// The value of a framing header as clients actually send it: at most one leading space and
/// nothing trailing. Tabs or extra padding are legal OWS but only appear in evasion attempts.
fn strict_value(value: &[u8]) -> Option<&[u8]> {
    let v = value.strip_prefix(b" ").unwrap_or(value);
    if v.first().is_some_and(|b| matches!(b, b' ' | b'\t'))
        || v.last().is_some_and(|b| matches!(b, b' ' | b'\t'))
    {
        None
    } else {
        Some(v)
    }
}

/// CRLF-terminated lines; a bare LF or a stray CR is an error.
struct RawLines<'a> {
    rest: &'a [u8],
}

impl<'a> RawLines<'a> {
    fn next_line(&mut self) -> Result<Option<&'a [u8]>, FramingError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let Some(lf) = memchr::memchr(b'\n', self.rest) else {
            // Unterminated tail: treat as a last line (H2 pseudo heads may omit the CRLF).
            let line = self.rest;
            self.rest = &[];
            return Ok(Some(line));
        };
        if lf == 0 || self.rest[lf - 1] != b'\r' {
            return Err(FramingError::BareLineFeed);
        }
        let line = &self.rest[..lf - 1];
        self.rest = &self.rest[lf + 1..];
        Ok(Some(line))
    }
}

/// Control characters forbidden in field values: everything below 0x20 except HTAB, and DEL.
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Whether `value` holds a control character. Without an early exit the compiler checks many
/// bytes per instruction; values (a bearer token, say) are read whole on every request.
fn has_ctl(value: &[u8]) -> bool {
    value.iter().fold(false, |found, &b| found | is_ctl(b))
}

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protected_name_is_folded_for_the_look_alike_check() {
        // A name too long to fold would silently escape the check.
        assert_eq!(
            FOLDED_PROTECTED.len(),
            FRAMING_AND_ROUTING.len() + crate::inspect::hop_by_hop::STANDARD.len()
        );
    }

    #[test]
    fn control_characters_anywhere_in_a_long_value_are_found() {
        let mut value = vec![b'a'; 700];
        assert!(!has_ctl(&value));
        for at in [0, 1, 31, 32, 333, 699] {
            for ctl in [0x00, 0x0b, 0x1f, 0x7f] {
                value[at] = ctl;
                assert!(has_ctl(&value), "{ctl:#x} at {at}");
                value[at] = b'a';
            }
        }
        value[5] = b'\t';
        assert!(!has_ctl(&value), "HTAB is allowed");
    }

    fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            let name = http::HeaderName::from_bytes(k.as_bytes()).expect("test header name");
            m.append(name, HeaderValue::from_bytes(v).expect("test header value"));
        }
        m
    }

    fn h11(pairs: &[(&str, &[u8])]) -> Result<BodyFraming, FramingError> {
        check_framing(Version::HTTP_11, &map(pairs))
    }

    fn head(lines: &[&str]) -> Vec<u8> {
        let mut s = String::from("POST /order/202309/orders/search HTTP/1.1\r\n");
        for l in lines {
            s.push_str(l);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    #[test]
    fn plain_requests_pass_and_report_framing() {
        assert_eq!(h11(&[("host", b"a")]), Ok(BodyFraming::None));
        assert_eq!(h11(&[("content-length", b"0")]), Ok(BodyFraming::Length(0)));
        assert_eq!(
            h11(&[("content-length", b"42")]),
            Ok(BodyFraming::Length(42))
        );
        assert_eq!(
            h11(&[("transfer-encoding", b"chunked")]),
            Ok(BodyFraming::Chunked)
        );
        assert!(BodyFraming::Chunked.may_have_body(Version::HTTP_11));
        assert!(!BodyFraming::Length(0).may_have_body(Version::HTTP_11));
        assert!(!BodyFraming::None.may_have_body(Version::HTTP_11));
        assert!(BodyFraming::None.may_have_body(Version::HTTP_2));
    }

    #[test]
    fn content_length_with_transfer_encoding_is_refused() {
        assert_eq!(
            h11(&[("content-length", b"5"), ("transfer-encoding", b"chunked")]),
            Err(FramingError::ContentLengthWithTransferEncoding)
        );
        let raw = head(&["Host: a", "Content-Length: 5", "Transfer-Encoding: chunked"]);
        assert_eq!(
            check_raw_head(&raw),
            Err(FramingError::ContentLengthWithTransferEncoding)
        );
        let raw = head(&["transfer-encoding: chunked", "content-length: 0"]);
        assert_eq!(
            check_raw_head(&raw),
            Err(FramingError::ContentLengthWithTransferEncoding)
        );
    }

    #[test]
    fn duplicate_or_conflicting_content_length_is_refused() {
        for pairs in [
            vec![
                ("content-length", b"1".as_slice()),
                ("content-length", b"1"),
            ],
            vec![("content-length", b"1"), ("content-length", b"2")],
            vec![("content-length", b"1, 1")],
            vec![("content-length", b"1,2")],
        ] {
            assert_eq!(
                h11(&pairs),
                Err(FramingError::DuplicateContentLength),
                "{pairs:?}"
            );
        }
        for lines in [
            vec!["Content-Length: 1", "Content-Length: 1"],
            vec!["Content-Length: 1", "content-length: 2"],
            vec!["Content-Length: 1, 1"],
        ] {
            assert_eq!(
                check_raw_head(&head(&lines)),
                Err(FramingError::DuplicateContentLength),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn malformed_content_length_is_refused() {
        for v in [
            b"".as_slice(),
            b"+1",
            b"-1",
            b"1.0",
            b"0x10",
            b"01",
            b"1 ",
            b"1a",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                h11(&[("content-length", v)]),
                Err(FramingError::InvalidContentLength),
                "{v:?}"
            );
        }
        for line in [
            "Content-Length:  5",
            "Content-Length:\t5",
            "Content-Length: 5 ",
            "Content-Length: 05",
        ] {
            assert_eq!(
                check_raw_head(&head(&[line])),
                Err(FramingError::InvalidContentLength),
                "{line:?}"
            );
        }
        assert_eq!(check_raw_head(&head(&["Content-Length:5"])), Ok(()));
    }

    #[test]
    fn transfer_encoding_obfuscations_are_refused() {
        for v in [
            b"xchunked".as_slice(),
            b"chunked, identity",
            b"gzip, chunked",
            b"identity",
            b"Chunked",
            b"CHUNKED",
            b"chunked ",
            b" chunked",
            b"\tchunked",
            b"chunked;q=1",
            b"",
        ] {
            assert_eq!(
                h11(&[("transfer-encoding", v)]),
                Err(FramingError::UnsupportedTransferEncoding),
                "{v:?}"
            );
        }
        for line in [
            "Transfer-Encoding: xchunked",
            "Transfer-Encoding: chunked, identity",
            "Transfer-Encoding:  chunked",
            "Transfer-Encoding:\tchunked",
            "Transfer-Encoding: chunked\t",
            "Transfer-Encoding: Chunked",
            "Transfer-Encoding: gzip, chunked",
        ] {
            assert_eq!(
                check_raw_head(&head(&[line])),
                Err(FramingError::UnsupportedTransferEncoding),
                "{line:?}"
            );
        }
        assert_eq!(
            check_raw_head(&head(&["Transfer-Encoding : chunked"])),
            Err(FramingError::InvalidHeaderName)
        );
        assert_eq!(
            h11(&[
                ("transfer-encoding", b"chunked"),
                ("transfer-encoding", b"chunked")
            ]),
            Err(FramingError::DuplicateTransferEncoding)
        );
        assert_eq!(
            check_raw_head(&head(&[
                "Transfer-Encoding: chunked",
                "Transfer-Encoding: chunked"
            ])),
            Err(FramingError::DuplicateTransferEncoding)
        );
        assert_eq!(
            check_raw_head(&head(&["transfer-encoding: chunked"])),
            Ok(())
        );
        assert_eq!(
            check_raw_head(&head(&["Transfer-Encoding:chunked"])),
            Ok(())
        );
    }

    #[test]
    fn transfer_encoding_on_http10_and_h2_is_refused() {
        let m = map(&[("transfer-encoding", b"chunked")]);
        assert_eq!(
            check_framing(Version::HTTP_10, &m),
            Err(FramingError::TransferEncodingInHttp10)
        );
        assert_eq!(
            check_framing(Version::HTTP_2, &m),
            Err(FramingError::UnsupportedTransferEncoding)
        );
        let raw = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            check_raw_head(raw),
            Err(FramingError::TransferEncodingInHttp10)
        );
    }

    #[test]
    fn control_characters_in_values_are_refused() {
        // `http` refuses these in checked values, but Pingora's are built unchecked, so the
        // value check is exercised on raw bytes.
        for v in [
            b"a\0b".as_slice(),
            b"a\rb",
            b"a\nb",
            b"\x01",
            b"a\x1bb",
            b"a\x7fb",
        ] {
            assert_eq!(
                check_values([b"ok".as_slice(), v]),
                Err(FramingError::ControlCharInHeader),
                "{v:?}"
            );
        }
        assert_eq!(
            check_values([b"a\tb".as_slice(), "caf\u{e9}".as_bytes()]),
            Ok(())
        );
        assert_eq!(h11(&[("x-test", b"a\tb")]), Ok(BodyFraming::None));
        assert_eq!(
            h11(&[("user-agent", "café".as_bytes())]),
            Ok(BodyFraming::None)
        );
        let raw = b"GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n";
        assert_eq!(check_raw_head(raw), Err(FramingError::ControlCharInHeader));
        let raw = b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n";
        assert_eq!(check_raw_head(raw), Err(FramingError::ControlCharInHeader));
    }

    #[test]
    fn obsolete_line_folding_is_refused() {
        let raw = b"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n";
        assert_eq!(check_raw_head(raw), Err(FramingError::ObsoleteLineFolding));
        let raw = b"GET / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\tchunked\r\n\r\n";
        assert_eq!(
            check_raw_head(raw),
            Err(FramingError::UnsupportedTransferEncoding)
        );
        let raw = b"GET / HTTP/1.1\r\nX-A: a\r\n\tContent-Length: 5\r\n\r\n";
        assert_eq!(check_raw_head(raw), Err(FramingError::ObsoleteLineFolding));
    }

    #[test]
    fn bare_line_feeds_and_bad_lines_are_refused() {
        assert_eq!(
            check_raw_head(b"GET / HTTP/1.1\nHost: a\r\n\r\n"),
            Err(FramingError::BareLineFeed)
        );
        assert_eq!(
            check_raw_head(b"GET / HTTP/1.1\r\nHost: a\nContent-Length: 5\r\n\r\n"),
            Err(FramingError::BareLineFeed)
        );
        assert_eq!(
            check_raw_head(b"GET / HTTP/1.1\r\nHost a\r\n\r\n"),
            Err(FramingError::MalformedHeaderLine)
        );
        assert_eq!(
            check_raw_head(b"GET / HTTP/1.1\r\n: a\r\n\r\n"),
            Err(FramingError::InvalidHeaderName)
        );
        assert_eq!(
            check_raw_head(b"GET / HTTP/1.1\r\nX\"A: a\r\n\r\n"),
            Err(FramingError::InvalidHeaderName)
        );
    }

    #[test]
    fn names_that_fold_onto_framing_or_hop_by_hop_fields_are_refused() {
        for name in [
            "Content_Length",
            "content_length",
            "CONTENT_LENGTH",
            "Transfer_Encoding",
            "Transfer.Encoding",
            "TransferEncoding",
            "Transfer--Encoding",
            "Keep_Alive",
            "Proxy_Connection",
            "T_E",
            "Ho_st",
            "Connection_",
            "_Upgrade",
            "HTTP2_Settings",
            "Proxy_Authorization",
        ] {
            let line = format!("{name}: 5");
            assert_eq!(
                check_raw_head(&head(&[&line])),
                Err(FramingError::DisguisedFramingHeader),
                "{name}"
            );
            assert_eq!(
                h11(&[(name.to_ascii_lowercase().as_str(), b"5")]),
                Err(FramingError::DisguisedFramingHeader),
                "{name}"
            );
        }
        // The real fields in any case, and names that merely contain one, pass the name check.
        for name in [
            "content-length",
            "CONTENT-LENGTH",
            "Keep-Alive",
            "TE",
            "X-Content-Length",
            "Content-Lengths",
            "X_Request_Id",
            "Proxy-Authorization-Extra",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ] {
            assert_eq!(check_header_name(name.as_bytes()), Ok(()), "{name}");
        }
    }

    #[test]
    fn headers_after_the_blank_line_are_not_inspected() {
        // The body is not part of the head; text in it that looks like a header is data.
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nContent-Length: 7\r\n";
        assert_eq!(check_raw_head(raw), Ok(()));
        assert_eq!(check_raw_head(b""), Ok(()));
        assert_eq!(check_raw_head(b"GET / HTTP/1.1\r\nHost: a"), Ok(()));
    }
}

/// Properties over generated header sets: the checks are total (no panic on any input) and
/// the two classic smuggling shapes are refused however they are spelled.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const VERSIONS: [Version; 5] = [
        Version::HTTP_09,
        Version::HTTP_10,
        Version::HTTP_11,
        Version::HTTP_2,
        Version::HTTP_3,
    ];

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "Content-Length", "content-length", "CONTENT-LENGTH", "Transfer-Encoding",
                "transfer-encoding", "TRANSFER-encoding", "Host", "Connection", "TE", "Trailer",
            ])
            .prop_map(str::to_owned),
            1 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}",
        ]
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "0", "1", "5", "10", "007", "1, 1", "1,2", " 5", "5 ", "\t5", "+5", "-1",
                "18446744073709551616", "chunked", "Chunked", "gzip, chunked", "chunked ",
                "chunked, gzip", "identity", "", "close",
            ])
            .prop_map(|v| v.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..12),
        ]
    }

    fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
        prop::collection::vec((name(), value()), 0..8)
    }

    /// The header set as a parsed map; pairs `http` itself refuses are left out.
    fn to_map(pairs: &[(String, Vec<u8>)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_bytes(v),
            ) {
                map.append(k, v);
            }
        }
        map
    }

    /// The header set as a raw HTTP/1 head. Values holding CR or LF are dropped so that each
    /// pair stays one line (a split line is its own, separately tested, error).
    fn to_raw(version: &str, pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut raw = format!("POST /orders HTTP/{version}\r\n").into_bytes();
        for (k, v) in pairs {
            if v.iter().any(|b| matches!(b, b'\r' | b'\n')) {
                continue;
            }
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(v);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        raw
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parsed_checks_never_panic(pairs in headers(), v in 0..VERSIONS.len()) {
            let _ = check_framing(VERSIONS[v], &to_map(&pairs));
        }

        #[test]
        fn raw_checks_never_panic(raw in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = check_raw_head(&raw);
        }

        #[test]
        fn cl_with_te_is_always_refused(
            pairs in headers(),
            cl in value(),
            te in value(),
            v in 0..VERSIONS.len(),
            at in any::<prop::sample::Index>(),
        ) {
            let mut pairs = pairs;
            pairs.insert(at.index(pairs.len() + 1), ("Content-Length".into(), cl));
            pairs.push(("Transfer-Encoding".into(), te));
            let map = to_map(&pairs);
            if map.contains_key(header::CONTENT_LENGTH) && map.contains_key(header::TRANSFER_ENCODING) {
                prop_assert!(check_framing(VERSIONS[v], &map).is_err());
            }
            let raw = to_raw(if v < 2 { "1.0" } else { "1.1" }, &pairs);
            let has = |n: &str| raw.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n.as_bytes()));
            if has("\r\ncontent-length: ") && has("\r\ntransfer-encoding: ") {
                prop_assert!(check_raw_head(&raw).is_err());
            }
        }

        #[test]
        fn differing_content_lengths_are_always_refused(
            pairs in headers(),
            a in any::<u64>(),
            b in any::<u64>(),
            v in 0..VERSIONS.len(),
        ) {
            prop_assume!(a != b);
            let mut pairs = pairs;
            pairs.push(("content-length".into(), a.to_string().into_bytes()));
            pairs.push(("Content-Length".into(), b.to_string().into_bytes()));
            prop_assert!(check_framing(VERSIONS[v], &to_map(&pairs)).is_err());
            prop_assert!(check_raw_head(&to_raw("1.1", &pairs)).is_err());
            // Folded into one list value, as some clients send them.
            let list = format!("{a}, {b}").into_bytes();
            let folded = [("Content-Length".to_string(), list)];
            prop_assert!(check_framing(VERSIONS[v], &to_map(&folded)).is_err());
            prop_assert!(check_raw_head(&to_raw("1.1", &folded)).is_err());
        }
    }
}
