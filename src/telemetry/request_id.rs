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
    }
}
