//! Hop-by-hop fields are about one connection and must never be forwarded (RFC 9110 §7.6.1):
//! the fixed list plus every field the client names in `Connection`.
//!
//! Call [`strip_hop_by_hop`] on the *upstream* request (Pingora's `upstream_request_filter`),
//! before the gateway adds its own headers (identity, TikTok credentials), so a client cannot
//! nominate those for removal. Never call it on the downstream session's header: Pingora reads
//! the request body according to `Transfer-Encoding` there. Pingora 0.9's default
//! `HttpUpstreamRequestPolicy` strips the same fields; this is the gateway's own guarantee,
//! independent of peer options, and it refuses nominations Pingora would silently honour.

use http::{HeaderMap, HeaderName, header};

use super::framing::{FramingError, is_tchar};

/// Fields that are hop-by-hop whatever `Connection` says.
pub(super) const STANDARD: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Fields a client may not nominate in `Connection`: removing them would change routing,
/// framing, identity or client-IP decisions made further along.
const PROTECTED: [&str; 10] = [
    "host",
    "content-length",
    "content-type",
    "authorization",
    "cookie",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-request-id",
];

/// Upper bound on `Connection` options; real clients send one or two.
pub const MAX_CONNECTION_TOKENS: usize = 16;

/// A header container the stripper can edit. Implemented for `http::HeaderMap` and for
/// Pingora's `RequestHeader` (whose `remove_header` keeps its case map in step; editing its
/// `headers` field directly would not).
pub trait HopByHopHeaders {
    fn header_map(&self) -> &HeaderMap;
    fn remove(&mut self, name: &HeaderName);
}

impl HopByHopHeaders for HeaderMap {
    fn header_map(&self) -> &HeaderMap {
        self
    }
    fn remove(&mut self, name: &HeaderName) {
        HeaderMap::remove(self, name);
    }
}

impl HopByHopHeaders for pingora::http::RequestHeader {
    fn header_map(&self) -> &HeaderMap {
        &self.headers
    }
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

/// Refuse (400) a `Connection` header that names a protected field, holds a non-token option,
/// or holds more than [`MAX_CONNECTION_TOKENS`] options. Run it on the downstream request
/// before routing: Pingora removes `Connection` and its nominees from the upstream request
/// before `upstream_request_filter`, so [`strip_hop_by_hop`] there no longer sees them.
pub fn check_connection_header(headers: &HeaderMap) -> Result<(), FramingError> {
    connection_nominations(headers).map(|_| ())
}

/// Remove every hop-by-hop field. Refuses (400) a `Connection` header that names a protected
/// field, holds a non-token option, or holds more than [`MAX_CONNECTION_TOKENS`] options; on
/// error nothing has been removed yet and the request must be answered, not forwarded.
pub fn strip_hop_by_hop<H: HopByHopHeaders + ?Sized>(req: &mut H) -> Result<(), FramingError> {
    let headers = req.header_map();
    // `Connection` is rare on a request that reaches here (Pingora takes it off first): only
    // then are its options read.
    let nominated = if headers.contains_key(header::CONNECTION) {
        connection_nominations(headers)?
    } else {
        Default::default()
    };
    // One pass over the names present (a request has a handful) rather than a lookup per
    // listed field; collected first, as the map cannot change while it is read. Almost always
    // empty, so nothing is allocated.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k) || nominated.iter().flatten().any(|n| n == *k))
        .cloned()
        .collect();
    for name in &doomed {
        req.remove(name);
    }
    Ok(())
}

/// Whether `name` is hop-by-hop whatever `Connection` says: the fixed list and any `proxy-*`.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("proxy-") || STANDARD.contains(&name)
}

/// The fields `Connection` nominates, or why the header is refused.
fn connection_nominations(
    headers: &HeaderMap,
) -> Result<[Option<HeaderName>; MAX_CONNECTION_TOKENS], FramingError> {
    let mut nominated: [Option<HeaderName>; MAX_CONNECTION_TOKENS] = Default::default();
    let mut count = 0;
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() {
                continue;
            }
            if !token.iter().all(|&b| is_tchar(b)) {
                return Err(FramingError::InvalidConnectionToken);
            }
            let name =
                HeaderName::from_bytes(token).map_err(|_| FramingError::InvalidConnectionToken)?;
            if PROTECTED.contains(&name.as_str()) {
                return Err(FramingError::ConnectionNominatesProtectedHeader);
            }
            let slot = nominated
                .get_mut(count)
                .ok_or(FramingError::TooManyConnectionTokens)?;
            *slot = Some(name);
            count += 1;
        }
    }
    Ok(nominated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, http::HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn standard_hop_by_hop_fields_are_removed() {
        let mut m = headers(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-authenticate", "Basic"),
            ("proxy-x-custom", "1"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
            ("content-type", "application/json"),
            ("x-request-id", "abc"),
        ]);
        assert_eq!(strip_hop_by_hop(&mut m), Ok(()));
        let mut left: Vec<_> = m.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-request-id"]);
    }

    #[test]
    fn fields_named_in_connection_are_removed() {
        let mut m = headers(&[
            ("connection", "close, X-Secret-Hop"),
            ("connection", "x-other"),
            ("x-secret-hop", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
        ]);
        assert_eq!(strip_hop_by_hop(&mut m), Ok(()));
        let left: Vec<_> = m.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn nominating_protected_fields_is_refused() {
        for v in [
            "close, Host",
            "authorization",
            "X-Forwarded-For",
            "content-length",
            "keep-alive, x-request-id",
        ] {
            let mut m = headers(&[("connection", v), ("host", "a"), ("authorization", "t")]);
            assert_eq!(
                check_connection_header(&m),
                Err(FramingError::ConnectionNominatesProtectedHeader),
                "{v}"
            );
            assert_eq!(
                strip_hop_by_hop(&mut m),
                Err(FramingError::ConnectionNominatesProtectedHeader),
                "{v}"
            );
            assert!(m.contains_key("host") && m.contains_key("connection"));
        }
    }

    #[test]
    fn malformed_or_excessive_connection_options_are_refused() {
        for v in ["\"x-forwarded-for\"", "a b", "x/y", ":authority"] {
            let mut m = headers(&[("connection", v)]);
            assert_eq!(
                strip_hop_by_hop(&mut m),
                Err(FramingError::InvalidConnectionToken),
                "{v}"
            );
        }
        let many = (0..=MAX_CONNECTION_TOKENS)
            .map(|i| format!("x-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut m = HeaderMap::new();
        m.insert(
            "connection",
            http::HeaderValue::from_str(&many).expect("valid test value"),
        );
        assert_eq!(
            strip_hop_by_hop(&mut m),
            Err(FramingError::TooManyConnectionTokens)
        );
        let enough = (0..MAX_CONNECTION_TOKENS)
            .map(|i| format!("x-{i}"))
            .collect::<Vec<_>>()
            .join(", ,");
        m.insert(
            "connection",
            http::HeaderValue::from_str(&enough).expect("valid test value"),
        );
        assert_eq!(strip_hop_by_hop(&mut m), Ok(()));
    }

    #[test]
    fn works_on_pingora_request_headers_and_keeps_case_map_consistent() {
        let mut req = pingora::http::RequestHeader::build("POST", b"/a", None).expect("build");
        req.insert_header("Connection", "close, X-Hop")
            .expect("insert");
        req.insert_header("X-Hop", "1").expect("insert");
        req.insert_header("Transfer-Encoding", "chunked")
            .expect("insert");
        req.insert_header("Content-Type", "application/json")
            .expect("insert");
        assert_eq!(strip_hop_by_hop(&mut req), Ok(()));
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        assert_eq!(wire, b"Content-Type: application/json\r\n");
    }
}
