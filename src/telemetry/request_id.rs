//! Request ids: kept from the caller when well-formed (so a trace spans services), generated
//! otherwise. Never trusted for anything but correlation.

use rand::RngCore;

pub const HEADER: &str = "x-request-id";
/// [`HEADER`], parsed once.
pub const HEADER_NAME: http::HeaderName = http::HeaderName::from_static(HEADER);

/// A caller's id is kept only if short and plain, so it cannot smuggle text into logs.
pub fn is_valid(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// 128 random bits as 32 hex characters.
pub fn generate() -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    // By table, not by formatter: this runs for every request that brings no id of its own.
    let mut id = String::with_capacity(32);
    for b in bytes {
        id.push(char::from(DIGITS[usize::from(b >> 4)]));
        id.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    id
}

/// A proxied request's id, as text (logs, queued events) and as the header value it is sent
/// with (upstream request, response): both made once, when the request arrives.
#[derive(Debug, Clone)]
pub struct RequestId {
    text: String,
    header: http::HeaderValue,
}

impl RequestId {
    /// The caller's id if valid, else a new one ([`from_header`]).
    pub fn for_request(value: Option<&[u8]>) -> Result<Self, http::header::InvalidHeaderValue> {
        let text = from_header(value);
        let header = http::HeaderValue::from_str(&text)?;
        Ok(Self { text, header })
    }

    /// The id as a header value (a clone shares the bytes).
    pub fn header(&self) -> http::HeaderValue {
        self.header.clone()
    }
}

impl Default for RequestId {
    /// No id yet: the request has not reached the request filter.
    fn default() -> Self {
        Self {
            text: String::new(),
            header: http::HeaderValue::from_static(""),
        }
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

/// The caller's id if valid, else a new one.
pub fn from_header(value: Option<&[u8]>) -> String {
    match value.and_then(|v| std::str::from_utf8(v).ok()) {
        Some(id) if is_valid(id) => id.to_string(),
        _ => generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_valid_ids_and_replaces_others() {
        assert_eq!(from_header(Some(b"abc-123")), "abc-123");
        assert_ne!(from_header(Some(b"bad id\n{\"x\":1}")), "bad id\n{\"x\":1}");
        assert_eq!(from_header(None).len(), 32);
        assert_ne!(generate(), generate());
        let id = generate();
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
        assert!(is_valid(&id));
        let kept = RequestId::for_request(Some(b"abc-123")).unwrap();
        assert_eq!(&*kept, "abc-123");
        assert_eq!(kept.header(), "abc-123");
        let made = RequestId::for_request(Some(b"bad id")).unwrap();
        assert!(is_valid(&made));
        assert_eq!(made.header(), &*made);
    }
}
