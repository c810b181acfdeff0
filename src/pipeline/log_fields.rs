//! Request facts for the access log, bounded so a caller cannot write a novel into it: the
//! protocol, the `Host` it named, and the first bytes of its `User-Agent` (which the caller then
//! passes through the redactor).

use pingora::http::RequestHeader;

/// Longest `Host` logged; longer (or odd) values are left out.
const MAX_HOST: usize = 255;
/// Bytes of the `User-Agent` kept.
const MAX_USER_AGENT: usize = 256;

pub fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// The `Host` (or HTTP/2 `:authority`) when it looks like `host[:port]`.
pub fn host(req: &RequestHeader) -> Option<&str> {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    let plain = raw.len() <= MAX_HOST
        && !raw.is_empty()
        && raw.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        });
    plain.then_some(raw)
}

/// The `User-Agent` as text, cut at [`MAX_USER_AGENT`] bytes (on a character boundary).
pub fn user_agent(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    let mut end = text.len().min(MAX_USER_AGENT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(&text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_plain_or_left_out() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("host", "shop.example:8443").unwrap();
        assert_eq!(host(&r), Some("shop.example:8443"));
        r.insert_header("host", "a b").unwrap();
        assert_eq!(host(&r), None);
        r.insert_header("host", "x".repeat(300)).unwrap();
        assert_eq!(host(&r), None);
    }

    #[test]
    fn user_agents_are_cut_on_a_character_boundary() {
        assert_eq!(user_agent(b"curl/8.5.0"), Some("curl/8.5.0"));
        let long = "é".repeat(200);
        let cut = user_agent(long.as_bytes()).unwrap();
        assert!(cut.len() <= 256 && cut.chars().all(|c| c == 'é'));
        assert_eq!(user_agent(b"  "), None);
        assert_eq!(protocol(http::Version::HTTP_2), "HTTP/2");
    }
}
