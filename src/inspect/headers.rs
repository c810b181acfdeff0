//! Header-section limits: field count and total size (answered 431).
//!
//! Pingora 0.9 already stops reading a head past 1 MiB or 256 fields; these are the
//! gateway's much lower, configurable ceilings, applied to the parsed map so HTTP/2 is covered.

use http::HeaderMap;

use super::error::InspectError;

/// Bytes a field takes on an HTTP/1 wire: `name: value\r\n`.
const PER_FIELD_OVERHEAD: usize = 4;

/// Refuse more than `max_count` field lines (repeated names count once per line) or more than
/// `max_bytes` of header section, counted as HTTP/1 wire bytes.
pub fn check_header_limits(
    headers: &HeaderMap,
    max_count: usize,
    max_bytes: usize,
) -> Result<(), InspectError> {
    if headers.len() > max_count {
        return Err(InspectError::TooManyHeaders);
    }
    let mut total = 0usize;
    for (name, value) in headers {
        total = total.saturating_add(name.as_str().len() + value.len() + PER_FIELD_OVERHEAD);
        if total > max_bytes {
            return Err(InspectError::HeadersTooLarge);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn with_fields(n: usize) -> HeaderMap {
        let mut m = HeaderMap::new();
        for i in 0..n {
            let name = HeaderName::from_bytes(format!("x-f{i}").as_bytes()).expect("name");
            m.append(name, HeaderValue::from_static("v"));
        }
        m
    }

    #[test]
    fn count_limit_is_inclusive() {
        assert_eq!(
            check_header_limits(&with_fields(100), 100, usize::MAX),
            Ok(())
        );
        assert_eq!(
            check_header_limits(&with_fields(101), 100, usize::MAX),
            Err(InspectError::TooManyHeaders)
        );
    }

    #[test]
    fn repeated_names_count_per_line() {
        let mut m = HeaderMap::new();
        for _ in 0..3 {
            m.append("x-a", HeaderValue::from_static("1"));
        }
        assert_eq!(
            check_header_limits(&m, 2, usize::MAX),
            Err(InspectError::TooManyHeaders)
        );
    }

    #[test]
    fn byte_limit_is_inclusive() {
        let mut m = HeaderMap::new();
        // "x-a" (3) + value (93) + 4 = 100 bytes
        m.insert(
            "x-a",
            HeaderValue::from_str(&"v".repeat(93)).expect("value"),
        );
        assert_eq!(check_header_limits(&m, 10, 100), Ok(()));
        assert_eq!(
            check_header_limits(&m, 10, 99),
            Err(InspectError::HeadersTooLarge)
        );
    }
}
