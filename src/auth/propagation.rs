//! Identity headers sent upstream. Callers can never set them: every inbound `x-gateway-*`
//! header is removed first, then the gateway writes its own from the verified identity.

use http::HeaderMap;
use http::header::HeaderName;

use super::identity::Identity;

pub const SUBJECT: HeaderName = HeaderName::from_static("x-gateway-subject");
pub const SCOPES: HeaderName = HeaderName::from_static("x-gateway-scopes");
pub const AUTH: HeaderName = HeaderName::from_static("x-gateway-auth");

const PREFIX: &str = "x-gateway-";

/// Whether a header name is one the gateway owns (`x-gateway-*`; names are lowercase in `http`).
pub fn is_gateway_header(name: &HeaderName) -> bool {
    name.as_str().starts_with(PREFIX)
}

/// Removes every `x-gateway-*` header a caller sent.
pub fn strip_gateway_headers(headers: &mut HeaderMap) {
    // Collect first: the map cannot be mutated while iterating. Almost always empty.
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_gateway_header(n))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// Strips caller-sent gateway headers, then sets subject, scopes and method from `identity`.
pub fn set_identity_headers(headers: &mut HeaderMap, identity: &Identity) {
    strip_gateway_headers(headers);
    for (name, value) in identity_headers(identity) {
        headers.insert(name, value.clone());
    }
}

/// How many headers [`identity_headers`] gives.
pub const IDENTITY_HEADERS: usize = 3;

/// The three headers for `identity`, for callers that set headers through their own API
/// (e.g. Pingora's `RequestHeader::insert_header_name`).
pub fn identity_headers(
    identity: &Identity,
) -> [(HeaderName, &http::HeaderValue); IDENTITY_HEADERS] {
    [
        (SUBJECT, identity.subject_header()),
        (SCOPES, identity.scopes_header()),
        (AUTH, identity.method_header()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::identity::AuthMethod;
    use crate::auth::scopes::ScopeSet;
    use http::HeaderValue;
    use std::sync::Arc;

    #[test]
    fn spoofed_identity_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.append("x-gateway-subject", HeaderValue::from_static("admin"));
        h.append("X-Gateway-Subject", HeaderValue::from_static("root"));
        h.append(
            "x-gateway-scopes",
            HeaderValue::from_static("admin pii:read"),
        );
        h.append("x-gateway-anything", HeaderValue::from_static("1"));
        h.append("x-other", HeaderValue::from_static("kept"));
        let id = Identity::new(
            "svc",
            AuthMethod::ApiKey {
                key: Arc::from("batch"),
            },
            ScopeSet::from_space_separated("orders:read"),
            vec![],
        )
        .unwrap();
        set_identity_headers(&mut h, &id);
        assert_eq!(h.get_all("x-gateway-subject").iter().count(), 1);
        assert_eq!(h["x-gateway-subject"], "svc");
        assert_eq!(h["x-gateway-scopes"], "orders:read");
        assert_eq!(h["x-gateway-auth"], "api_key:batch");
        assert!(h.get("x-gateway-anything").is_none());
        assert_eq!(h["x-other"], "kept");
    }

    #[test]
    fn strip_alone() {
        let mut h = HeaderMap::new();
        h.append("x-gateway-subject", HeaderValue::from_static("admin"));
        strip_gateway_headers(&mut h);
        assert!(h.is_empty());
    }
}
