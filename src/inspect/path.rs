//! Path normalisation before routing: refuse every ambiguous spelling instead of guessing.
//!
//! Routers, proxies and origin servers disagree about dot segments, encoded separators,
//! backslashes, `;` parameters and overlong UTF-8; each disagreement is a route bypass
//! (`/public/..%2fadmin`). So the only paths accepted are ones every reasonable decoder reads
//! the same way, and they are returned unchanged (no allocation). The single rewrite is
//! upper-casing the hex digits of percent escapes (RFC 3986 §6.2.2.1), which cannot change
//! meaning for anyone.

use std::borrow::Cow;

/// Why a path was refused. Answered 400; `as_str()` is safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathError {
    /// No path at all.
    Empty,
    /// Not origin-form (`/...`): asterisk-form, absolute-form or a relative reference.
    NotOriginForm,
    /// A `.` or `..` segment.
    DotSegment,
    /// `//` inside the path.
    EmptySegment,
    /// A segment ending in `.` (`/admin.`, `/..;`), which some servers strip.
    TrailingDot,
    /// A segment ending in an encoded space (`/admin%20`), which some servers strip.
    TrailingSpace,
    /// A raw `\`, which some servers treat as `/`.
    Backslash,
    /// `%2f`: an encoded `/`.
    EncodedSlash,
    /// `%5c`: an encoded `\`.
    EncodedBackslash,
    /// `%2e`: an encoded `.`.
    EncodedDot,
    /// `%25`: an encoded `%`, i.e. double encoding (`%252e`).
    DoubleEncoding,
    /// An encoded `;`, `?` or `#`, which a decoding backend could re-split on.
    EncodedDelimiter,
    /// An encoded unreserved character (`%61` for `a`): the router and the backend would see
    /// different spellings of the same path.
    NonCanonicalEncoding,
    /// `%` not followed by two hex digits.
    InvalidPercentEncoding,
    /// A NUL byte, raw or `%00`.
    NulByte,
    /// Another control character, raw or encoded.
    ControlChar,
    /// A `;` path parameter (`..;/`, `;jsessionid=`).
    PathParameter,
    /// Percent-encoded bytes that are not valid UTF-8, including overlong forms (`%c0%ae`).
    InvalidUtf8,
    /// Valid UTF-8 outside ASCII while the rules allow ASCII only.
    NonAscii,
    /// A character not allowed unencoded in a path (space, `"`, `<`, `{`, `|`, raw non-ASCII...).
    InvalidCharacter,
}

impl PathError {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::NotOriginForm => "not_origin_form",
            Self::DotSegment => "dot_segment",
            Self::EmptySegment => "empty_segment",
            Self::TrailingDot => "trailing_dot",
            Self::TrailingSpace => "trailing_space",
            Self::Backslash => "backslash",
            Self::EncodedSlash => "encoded_slash",
            Self::EncodedBackslash => "encoded_backslash",
            Self::EncodedDot => "encoded_dot",
            Self::DoubleEncoding => "double_encoding",
            Self::EncodedDelimiter => "encoded_delimiter",
            Self::NonCanonicalEncoding => "non_canonical_encoding",
            Self::InvalidPercentEncoding => "invalid_percent_encoding",
            Self::NulByte => "nul_byte",
            Self::ControlChar => "control_char",
            Self::PathParameter => "path_parameter",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::NonAscii => "non_ascii",
            Self::InvalidCharacter => "invalid_character",
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for PathError {}

/// Options for the normaliser. The default is the strict form used for every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathRules {
    /// Accept percent-encoded non-ASCII UTF-8 (`/caf%C3%A9`). Off by default: API paths here
    /// are ASCII, and Unicode look-alikes of `/` and `.` are another bypass family.
    pub allow_non_ascii: bool,
}

/// Normalise `raw_path` (the request target's path, without the query) under the strict
/// default rules. See [`normalize_path_with`].
pub fn normalize_path(raw_path: &str) -> Result<Cow<'_, str>, PathError> {
    normalize_path_with(raw_path, PathRules::default())
}

/// Check `raw_path` and return it unchanged (borrowed), or with percent-escape hex digits
/// upper-cased (owned) if it had lower-case ones. Routing must match on the returned value.
pub fn normalize_path_with(raw_path: &str, rules: PathRules) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw_path.as_bytes();
    match bytes.first() {
        None => return Err(PathError::Empty),
        Some(b'/') => {}
        Some(_) => return Err(PathError::NotOriginForm),
    }

    let mut lower_hex = false;
    let mut seg_start = 1;
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'/' => {
                check_segment(&bytes[seg_start..i], false)?;
                seg_start = i + 1;
                i += 1;
            }
            b'%' => {
                let decoded = hex_pair(bytes, i)?;
                lower_hex |= has_lower_hex(&bytes[i + 1..i + 3]);
                if decoded >= 0x80 {
                    i = check_encoded_utf8(bytes, i, rules, &mut lower_hex)?;
                } else {
                    check_encoded_ascii(decoded)?;
                    i += 3;
                }
            }
            _ => {
                check_raw_byte(b)?;
                i += 1;
            }
        }
    }
    check_segment(&bytes[seg_start..], true)?;

    if lower_hex {
        Ok(Cow::Owned(upper_case_escapes(raw_path)))
    } else {
        Ok(Cow::Borrowed(raw_path))
    }
}

/// Rules for one segment, i.e. the text between two slashes (raw, escapes not decoded).
fn check_segment(seg: &[u8], is_last: bool) -> Result<(), PathError> {
    match seg {
        // `/a/` is an ordinary directory-style path; only an inner empty segment (`//`) is odd.
        [] if is_last => Ok(()),
        [] => Err(PathError::EmptySegment),
        b"." | b".." => Err(PathError::DotSegment),
        [.., b'.'] => Err(PathError::TrailingDot),
        [.., b'%', b'2', b'0'] => Err(PathError::TrailingSpace),
        _ => Ok(()),
    }
}

/// A byte that appears unencoded in the path.
fn check_raw_byte(b: u8) -> Result<(), PathError> {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => Ok(()),
        // unreserved and the sub-delims / `:` / `@` that RFC 3986 allows in a segment
        b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+'
        | b',' | b'=' | b':' | b'@' => Ok(()),
        b';' => Err(PathError::PathParameter),
        b'\\' => Err(PathError::Backslash),
        0 => Err(PathError::NulByte),
        0x01..=0x1f | 0x7f => Err(PathError::ControlChar),
        _ => Err(PathError::InvalidCharacter),
    }
}

/// A decoded ASCII byte from a `%XX` escape.
fn check_encoded_ascii(decoded: u8) -> Result<(), PathError> {
    match decoded {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        b'.' => Err(PathError::EncodedDot),
        b'%' => Err(PathError::DoubleEncoding),
        b';' | b'?' | b'#' => Err(PathError::EncodedDelimiter),
        0 => Err(PathError::NulByte),
        0x01..=0x1f | 0x7f => Err(PathError::ControlChar),
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'~' => {
            Err(PathError::NonCanonicalEncoding)
        }
        _ => Ok(()),
    }
}

/// A run of escapes starting at `start` whose first byte is >= 0x80: it must be exactly one
/// well-formed UTF-8 character (no overlong forms, surrogates or stray continuation bytes).
/// Returns the index just past the character's escapes.
fn check_encoded_utf8(
    bytes: &[u8],
    start: usize,
    rules: PathRules,
    lower_hex: &mut bool,
) -> Result<usize, PathError> {
    let lead = hex_pair(bytes, start)?;
    let len = match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        // continuation byte without a lead, overlong lead (0xc0, 0xc1) or out of range
        _ => return Err(PathError::InvalidUtf8),
    };
    let mut buf = [lead, 0, 0, 0];
    let mut pos = start + 3;
    for slot in buf.iter_mut().take(len).skip(1) {
        if bytes.get(pos) != Some(&b'%') {
            return Err(PathError::InvalidUtf8);
        }
        *slot = hex_pair(bytes, pos)?;
        *lower_hex |= has_lower_hex(&bytes[pos + 1..pos + 3]);
        pos += 3;
    }
    // std's validator rejects overlong encodings, surrogates and code points past U+10FFFF.
    if std::str::from_utf8(&buf[..len]).is_err() {
        return Err(PathError::InvalidUtf8);
    }
    if !rules.allow_non_ascii {
        return Err(PathError::NonAscii);
    }
    Ok(pos)
}

/// Decode the two hex digits after the `%` at `at`.
fn hex_pair(bytes: &[u8], at: usize) -> Result<u8, PathError> {
    match (
        bytes.get(at + 1).copied().and_then(hex_val),
        bytes.get(at + 2).copied().and_then(hex_val),
    ) {
        (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
        _ => Err(PathError::InvalidPercentEncoding),
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn has_lower_hex(pair: &[u8]) -> bool {
    pair.iter().any(|b| matches!(b, b'a'..=b'f'))
}

/// Rare path: a valid path whose escapes used lower-case hex.
fn upper_case_escapes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut escape_left = 0;
    for c in raw.chars() {
        if c == '%' {
            escape_left = 2;
            out.push(c);
        } else if escape_left > 0 {
            escape_left -= 1;
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &str) -> PathError {
        match normalize_path(path) {
            Err(e) => e,
            Ok(p) => panic!("{path:?} was accepted as {p:?}"),
        }
    }

    #[test]
    fn ordinary_paths_pass_unchanged_without_allocation() {
        for p in [
            "/",
            "/order/202309/orders/search",
            "/webhooks/tiktok",
            "/order/202309/orders/",
            "/.well-known/jwks.json",
            "/a-b_c~d/e.f/g:h@i",
            "/v1/items/!$&'()*+,=",
            "/name%20with%20space/x",
            "/a%3A%40b",
            "/...a",
        ] {
            let got = normalize_path(p).unwrap_or_else(|e| panic!("{p:?} refused: {e}"));
            assert!(matches!(got, Cow::Borrowed(_)), "{p:?} allocated");
            assert_eq!(got, p);
        }
    }

    #[test]
    fn lower_case_escapes_are_upper_cased() {
        assert_eq!(normalize_path("/a%3ab").ok().as_deref(), Some("/a%3Ab"));
        let rules = PathRules {
            allow_non_ascii: true,
        };
        assert_eq!(
            normalize_path_with("/caf%c3%a9", rules).ok().as_deref(),
            Some("/caf%C3%A9")
        );
    }

    #[test]
    fn dot_segments_are_refused() {
        for p in [
            "/a/../admin",
            "/..",
            "/../",
            "/a/..",
            "/./admin",
            "/a/.",
            "/a/./b",
        ] {
            assert_eq!(refused(p), PathError::DotSegment, "{p}");
        }
    }

    #[test]
    fn encoded_dots_and_separators_are_refused() {
        assert_eq!(refused("/%2e%2e/admin"), PathError::EncodedDot);
        assert_eq!(refused("/%2E%2E/admin"), PathError::EncodedDot);
        assert_eq!(refused("/.%2e/admin"), PathError::EncodedDot);
        assert_eq!(refused("/a%2fb"), PathError::EncodedSlash);
        assert_eq!(refused("/a%2Fb"), PathError::EncodedSlash);
        assert_eq!(refused("/public/..%2fadmin"), PathError::EncodedSlash);
        assert_eq!(refused("/a%5cb"), PathError::EncodedBackslash);
        assert_eq!(refused("/a%5C..%5Cb"), PathError::EncodedBackslash);
    }

    #[test]
    fn double_encoding_is_refused() {
        for p in ["/%252e%252e/admin", "/a%252fb", "/%25", "/100%25"] {
            assert_eq!(refused(p), PathError::DoubleEncoding, "{p}");
        }
    }

    #[test]
    fn semicolon_parameters_are_refused() {
        for p in ["/..;/admin", "/admin;/x", "/a;jsessionid=1", "/a/;"] {
            assert_eq!(refused(p), PathError::PathParameter, "{p}");
        }
        assert_eq!(refused("/a%3bb"), PathError::EncodedDelimiter);
        assert_eq!(refused("/a%3Fb"), PathError::EncodedDelimiter);
        assert_eq!(refused("/a%23b"), PathError::EncodedDelimiter);
    }

    #[test]
    fn empty_segments_are_refused() {
        for p in ["//", "//admin", "/a//b", "/a///", "//evil.example/x"] {
            assert_eq!(refused(p), PathError::EmptySegment, "{p}");
        }
    }

    #[test]
    fn backslashes_are_refused() {
        assert_eq!(refused("/a\\b"), PathError::Backslash);
        assert_eq!(refused("/..\\admin"), PathError::Backslash);
        assert_eq!(refused("/\\\\evil"), PathError::Backslash);
    }

    #[test]
    fn nul_and_control_characters_are_refused() {
        assert_eq!(refused("/admin%00"), PathError::NulByte);
        assert_eq!(refused("/admin%00.json"), PathError::NulByte);
        assert_eq!(refused("/admin\0"), PathError::NulByte);
        assert_eq!(refused("/a\tb"), PathError::ControlChar);
        assert_eq!(refused("/a\r\nb"), PathError::ControlChar);
        assert_eq!(refused("/a%0d%0aSet-Cookie:x"), PathError::ControlChar);
        assert_eq!(refused("/a%09"), PathError::ControlChar);
        assert_eq!(refused("/a%7f"), PathError::ControlChar);
        assert_eq!(refused("/a\x7f"), PathError::ControlChar);
    }

    #[test]
    fn trailing_dots_and_spaces_are_refused() {
        for p in [
            "/admin.",
            "/admin./x",
            "/admin..",
            "/...",
            "/a/b.",
            "/x/...",
        ] {
            assert_eq!(refused(p), PathError::TrailingDot, "{p}");
        }
        assert_eq!(refused("/admin%20"), PathError::TrailingSpace);
        assert_eq!(refused("/admin%20/x"), PathError::TrailingSpace);
    }

    #[test]
    fn overlong_and_invalid_utf8_is_refused() {
        for p in [
            "/%c0%ae%c0%ae/admin", // overlong '.'
            "/%c0%af",             // overlong '/'
            "/%e0%80%ae",          // 3-byte overlong '.'
            "/%f0%80%80%ae",       // 4-byte overlong '.'
            "/%c1%9c",             // overlong '\'
            "/%80",                // continuation without lead
            "/%c3",                // truncated
            "/%c3x",               // lead then raw byte
            "/%e2%82",             // truncated 3-byte
            "/%ed%a0%80",          // UTF-16 surrogate
            "/%f4%90%80%80",       // past U+10FFFF
            "/%ff",
            "/%c3%28", // bad continuation
        ] {
            assert_eq!(refused(p), PathError::InvalidUtf8, "{p}");
        }
    }

    #[test]
    fn non_ascii_needs_opt_in() {
        assert_eq!(refused("/caf%C3%A9"), PathError::NonAscii);
        // fullwidth solidus, a look-alike of '/'
        assert_eq!(refused("/a%EF%BC%8Fb"), PathError::NonAscii);
        let rules = PathRules {
            allow_non_ascii: true,
        };
        assert!(normalize_path_with("/caf%C3%A9/%F0%9F%98%80", rules).is_ok());
        assert_eq!(
            normalize_path_with("/%c0%ae", rules),
            Err(PathError::InvalidUtf8)
        );
        // raw non-ASCII is never valid in a request target, even with the opt-in
        assert_eq!(
            normalize_path_with("/café", rules),
            Err(PathError::InvalidCharacter)
        );
    }

    #[test]
    fn invalid_escapes_are_refused() {
        for p in ["/%", "/a%", "/a%2", "/a%zz", "/a%2g", "/%%32%65", "/a%-1"] {
            assert_eq!(refused(p), PathError::InvalidPercentEncoding, "{p}");
        }
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        for p in [
            "/%61dmin", "/adm%69n", "/%41", "/a%2Db", "/a%5Fb", "/a%7eb", "/%30",
        ] {
            assert_eq!(refused(p), PathError::NonCanonicalEncoding, "{p}");
        }
    }

    #[test]
    fn non_origin_forms_are_refused() {
        assert_eq!(refused(""), PathError::Empty);
        for p in [
            "*",
            "http://evil.example/admin",
            "admin",
            "../admin",
            " /a",
            "%2fadmin",
        ] {
            assert_eq!(refused(p), PathError::NotOriginForm, "{p}");
        }
    }

    #[test]
    fn other_invalid_characters_are_refused() {
        for p in [
            "/a b", "/a\"b", "/a<b", "/a>b", "/a{b", "/a}b", "/a|b", "/a^b", "/a`b", "/a[b",
            "/a]b", "/a?b", "/a#b", "/é",
        ] {
            assert_eq!(refused(p), PathError::InvalidCharacter, "{p}");
        }
    }

    #[test]
    fn reasons_are_distinct() {
        let all = [
            PathError::Empty,
            PathError::NotOriginForm,
            PathError::DotSegment,
            PathError::EmptySegment,
            PathError::TrailingDot,
            PathError::TrailingSpace,
            PathError::Backslash,
            PathError::EncodedSlash,
            PathError::EncodedBackslash,
            PathError::EncodedDot,
            PathError::DoubleEncoding,
            PathError::EncodedDelimiter,
            PathError::NonCanonicalEncoding,
            PathError::InvalidPercentEncoding,
            PathError::NulByte,
            PathError::ControlChar,
            PathError::PathParameter,
            PathError::InvalidUtf8,
            PathError::NonAscii,
            PathError::InvalidCharacter,
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|e| e.as_str()).collect();
        assert_eq!(names.len(), all.len());
    }
}

/// Properties over generated paths: whatever is accepted is already in its final form and
/// holds none of the spellings a backend could read as another path.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Pieces that exercise every rule: separators, dot segments, escapes of every kind and
    /// case, and ordinary characters.
    fn token() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "/",
            "/",
            "/",
            "a",
            "b",
            "Z",
            "0",
            "-",
            "_",
            "~",
            ".",
            "..",
            "%2f",
            "%2F",
            "%5c",
            "%5C",
            "%2e",
            "%2E",
            "%25",
            "%252e",
            "%41",
            "%7e",
            "%3b",
            "%3F",
            "%23",
            "%20",
            "%00",
            "%0a",
            "%c3%a9",
            "%C3%A9",
            "%c0%ae",
            "%e2%80%a8",
            "%",
            "%g1",
            ";",
            "\\",
            " ",
            "?",
            "#",
            "\u{e9}",
            "*",
            ":",
            "@",
            "!",
            "$",
            "&",
            "'",
            "(",
            "+",
            ",",
            "=",
        ])
    }

    fn path_like() -> impl Strategy<Value = String> {
        (any::<bool>(), prop::collection::vec(token(), 0..16)).prop_map(|(rooted, tokens)| {
            let mut s = String::from(if rooted { "/" } else { "" });
            s.extend(tokens);
            s
        })
    }

    fn any_path() -> impl Strategy<Value = String> {
        prop_oneof![3 => path_like(), 1 => any::<String>(), 1 => "/[ -~]{0,24}"]
    }

    fn rules() -> impl Strategy<Value = PathRules> {
        any::<bool>().prop_map(|allow_non_ascii| PathRules { allow_non_ascii })
    }

    /// What an accepted path must never contain, whatever the rules.
    fn assert_unambiguous(out: &str) -> Result<(), TestCaseError> {
        prop_assert!(out.starts_with('/'), "not origin-form: {out:?}");
        prop_assert!(!out.contains("//"), "empty segment in {out:?}");
        for segment in out.split('/') {
            prop_assert!(segment != ".." && segment != ".", "dot segment in {out:?}");
        }
        let lower = out.to_ascii_lowercase();
        for encoded in ["%2f", "%5c", "%2e"] {
            prop_assert!(!lower.contains(encoded), "{encoded} in {out:?}");
        }
        prop_assert!(!out.contains('\\'), "backslash in {out:?}");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn accepted_output_is_a_fixed_point(raw in any_path(), rules in rules()) {
            if let Ok(out) = normalize_path_with(&raw, rules) {
                let again = normalize_path_with(&out, rules);
                prop_assert_eq!(again.as_deref(), Ok(out.as_ref()));
                // A second pass must not even need to rewrite (no lower-case hex left).
                prop_assert!(matches!(again, Ok(Cow::Borrowed(_))));
            }
        }

        #[test]
        fn accepted_output_holds_no_ambiguous_spelling(raw in any_path(), rules in rules()) {
            if let Ok(out) = normalize_path_with(&raw, rules) {
                assert_unambiguous(&out)?;
                // The only rewrite allowed is the case of percent-escape hex digits.
                prop_assert!(out.eq_ignore_ascii_case(&raw));
            }
        }

        #[test]
        fn strict_rules_accept_no_more_than_lenient_ones(raw in any_path()) {
            if let Ok(strict) = normalize_path(&raw) {
                let lenient = normalize_path_with(&raw, PathRules { allow_non_ascii: true });
                prop_assert_eq!(lenient.as_deref(), Ok(strict.as_ref()));
            }
        }
    }
}
