//! The HTTP/1 request target's form (RFC 9112 §3.2): routing works on origin form only.
//!
//! A client may send absolute form (`GET http://host/path HTTP/1.1`). Pingora 0.9 accepts it,
//! checks that `Host` (when present) equals its authority, keeps only the path in the parsed
//! URI, and would forward the target verbatim to the upstream. The gateway instead refuses an
//! absolute target whose scheme is not `http`/`https` or whose authority this listener does not
//! serve, and otherwise has the pipeline rewrite it to origin form (with `Host` set to the
//! authority) before routing, so the upstream never sees a target naming another host.

use http::StatusCode;

use super::host::{HostAllowList, parse_host};

/// Why a request target was refused. Always 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetError {
    /// Absolute form with a scheme other than `http` or `https`.
    UnsupportedScheme,
    /// Absolute form whose authority is malformed (user-info, bad port, bad characters).
    InvalidAuthority,
    /// Absolute form naming a host this listener does not serve.
    AuthorityNotServed,
    /// Neither origin form (`/...`), asterisk form (`*`) nor absolute form.
    UnsupportedForm,
}

impl TargetError {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::UnsupportedScheme => "unsupported_target_scheme",
            Self::InvalidAuthority => "invalid_target_authority",
            Self::AuthorityNotServed => "target_authority_not_served",
            Self::UnsupportedForm => "unsupported_target_form",
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for TargetError {}

/// What the pipeline must do with a request target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm<'a> {
    /// Origin or asterisk form: route as is.
    Origin,
    /// Absolute form naming a served host: rewrite to origin form; `Host` becomes this authority.
    Absolute { authority: &'a str },
}

/// Classify the raw HTTP/1 target (`RequestHeader::raw_path`). `CONNECT`'s authority form never
/// gets here: the method is refused before routing on every route.
pub fn check_request_target<'a>(
    raw: &'a [u8],
    hosts: &HostAllowList,
) -> Result<TargetForm<'a>, TargetError> {
    if raw.first() == Some(&b'/') || raw == b"*" {
        return Ok(TargetForm::Origin);
    }
    let sep = raw
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(TargetError::UnsupportedForm)?;
    let scheme = &raw[..sep];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(TargetError::UnsupportedScheme);
    }
    let rest = &raw[sep + 3..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = std::str::from_utf8(&rest[..end]).map_err(|_| TargetError::InvalidAuthority)?;
    let host = parse_host(authority).map_err(|_| TargetError::InvalidAuthority)?;
    if !hosts.serves(&host) {
        return Err(TargetError::AuthorityNotServed);
    }
    Ok(TargetForm::Absolute { authority })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosted() -> HostAllowList {
        HostAllowList::new(&["api.example.test"]).expect("hosts")
    }

    #[test]
    fn origin_and_asterisk_forms_route_as_is() {
        for raw in [b"/orders/1".as_slice(), b"/", b"*", b"/a?b=c"] {
            assert_eq!(check_request_target(raw, &hosted()), Ok(TargetForm::Origin));
        }
    }

    #[test]
    fn absolute_form_to_a_served_host_is_rewritten() {
        for (raw, authority) in [
            (
                b"http://api.example.test/orders/1".as_slice(),
                "api.example.test",
            ),
            (
                b"HTTPS://API.example.test:443/x?y=1",
                "API.example.test:443",
            ),
            (b"http://api.example.test", "api.example.test"),
            (b"http://api.example.test?q", "api.example.test"),
        ] {
            assert_eq!(
                check_request_target(raw, &hosted()),
                Ok(TargetForm::Absolute { authority }),
                "{raw:?}"
            );
        }
        // A listener that serves any host accepts any well-formed authority.
        assert_eq!(
            check_request_target(b"http://other.example/x", &HostAllowList::any()),
            Ok(TargetForm::Absolute {
                authority: "other.example"
            })
        );
    }

    #[test]
    fn absolute_form_elsewhere_or_malformed_is_refused() {
        for (raw, err) in [
            (
                b"http://evil.example/orders/1".as_slice(),
                TargetError::AuthorityNotServed,
            ),
            (
                b"http://api.example.test.evil.example/",
                TargetError::AuthorityNotServed,
            ),
            (b"ftp://api.example.test/", TargetError::UnsupportedScheme),
            (b"ws://api.example.test/", TargetError::UnsupportedScheme),
            (b"http://u@api.example.test/", TargetError::InvalidAuthority),
            (b"http:///orders", TargetError::InvalidAuthority),
            (b"http://a b/", TargetError::InvalidAuthority),
            (b"orders/1", TargetError::UnsupportedForm),
            (b"api.example.test:443", TargetError::UnsupportedForm),
        ] {
            assert_eq!(check_request_target(raw, &hosted()), Err(err), "{raw:?}");
        }
    }
}
