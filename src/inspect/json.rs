//! JSON body check for JSON routes: size, nesting depth, UTF-8 and well-formedness.
//!
//! Depth is checked first by a byte scanner that tracks brackets outside strings and builds
//! nothing, so a `[[[[...` bomb is refused after reading `max_depth` bytes of it. Then the body
//! is validated as UTF-8 (`serde_json` does not validate UTF-8 inside strings it skips) and
//! parsed into `IgnoredAny`, which checks the full grammar without building a DOM.

use http::StatusCode;
use serde::de::IgnoredAny;

/// The deepest nesting `serde_json` itself accepts; settings may not exceed it.
pub const SERDE_JSON_MAX_DEPTH: u32 = 127;

/// Why a JSON body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonError {
    /// Larger than the route's limit (413).
    TooLarge,
    /// Nested deeper than the limit (400).
    TooDeep,
    /// Not UTF-8 (400).
    InvalidUtf8,
    /// Not one well-formed JSON value (400).
    Malformed,
}

impl JsonError {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::TooLarge => "json_too_large",
            Self::TooDeep => "json_too_deep",
            Self::InvalidUtf8 => "json_invalid_utf8",
            Self::Malformed => "json_malformed",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for JsonError {}

/// Check a complete request body. An empty body passes (there is no JSON to check: a
/// body-less POST is the route's business); anything else must be exactly one JSON value.
pub fn check_json(body: &[u8], max_bytes: usize, max_depth: u32) -> Result<(), JsonError> {
    if body.len() > max_bytes {
        return Err(JsonError::TooLarge);
    }
    if body.is_empty() {
        return Ok(());
    }
    if max_nesting_exceeds(body, max_depth) {
        return Err(JsonError::TooDeep);
    }
    if std::str::from_utf8(body).is_err() {
        return Err(JsonError::InvalidUtf8);
    }
    serde_json::from_slice::<IgnoredAny>(body)
        .map(|_| ())
        .map_err(|_| JsonError::Malformed)
}

/// Whether arrays/objects nest deeper than `max_depth` anywhere in `body`. Brackets inside
/// strings do not count; the scan stops at the first level too deep.
pub fn max_nesting_exceeds(body: &[u8], max_depth: u32) -> bool {
    let mut depth = 0u32;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            // Unbalanced closers are left for the parser to refuse.
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn nested(depth: usize) -> Vec<u8> {
        let mut v = "[".repeat(depth).into_bytes();
        v.extend("]".repeat(depth).bytes());
        v
    }

    #[test]
    fn well_formed_bodies_pass() {
        for body in [
            r#"{"address":"https://partner.tiktokshop.com","event_type":"PACKAGE_UPDATE"}"#,
            r#"{"type":1,"data":{"order_id":"576653688135258178","ok":true,"n":null}}"#,
            r#"[1, 2.5e3, -0, "x\"]}[{", {"a": []}]"#,
            " \n{}\t",
            "\"text\"",
            "42",
            r#"{"s":"caf\u00e9 ☕"}"#,
        ] {
            assert_eq!(check_json(body.as_bytes(), MIB, 32), Ok(()), "{body}");
        }
        assert_eq!(check_json(b"", MIB, 32), Ok(()));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in [
            "{",
            "{\"a\":1,}",
            "[1,]",
            "{'a':1}",
            "{\"a\":1}{\"b\":2}",
            "{\"a\":1} x",
            "NaN",
            "{\"a\":01}",
            "/* c */ {}",
            "{\"a\":\"\x01\"}",
            "{\"a\":\"\\x\"}",
            "\u{feff}{}",
            "  ",
            "]",
            "{a:1}",
        ] {
            assert_eq!(
                check_json(body.as_bytes(), MIB, 32),
                Err(JsonError::Malformed),
                "{body:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_refused_even_inside_strings() {
        assert_eq!(
            check_json(b"{\"a\":\"\xff\"}", MIB, 32),
            Err(JsonError::InvalidUtf8)
        );
        assert_eq!(
            check_json(b"{\"a\":\"\xc0\xae\"}", MIB, 32),
            Err(JsonError::InvalidUtf8)
        );
    }

    #[test]
    fn depth_limit_is_inclusive() {
        assert_eq!(check_json(&nested(32), MIB, 32), Ok(()));
        assert_eq!(check_json(&nested(33), MIB, 32), Err(JsonError::TooDeep));
        let objects = format!("{}1{}", r#"{"a":"#.repeat(33), "}".repeat(33));
        assert_eq!(
            check_json(objects.as_bytes(), MIB, 32),
            Err(JsonError::TooDeep)
        );
        // an unclosed bomb is refused by depth before the parser sees it
        assert_eq!(
            check_json("[".repeat(100_000).as_bytes(), MIB, 32),
            Err(JsonError::TooDeep)
        );
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let body = format!(r#"{{"a":"{}","b":"\"[[["}}"#, "[".repeat(100));
        assert_eq!(check_json(body.as_bytes(), MIB, 2), Ok(()));
    }

    #[test]
    fn size_limit_is_inclusive() {
        let body = format!(r#"{{"a":"{}"}}"#, "x".repeat(100));
        let len = body.len();
        assert_eq!(check_json(body.as_bytes(), len, 32), Ok(()));
        assert_eq!(
            check_json(body.as_bytes(), len - 1, 32),
            Err(JsonError::TooLarge)
        );
    }
}
