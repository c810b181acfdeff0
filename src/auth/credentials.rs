//! Pulling credentials out of request headers: `Authorization: Bearer <jwt>`,
//! `Authorization: ApiKey <key>` and `x-api-key: <key>`.
//!
//! Each helper answers `Ok(None)` when its kind of credential is absent (so the next accepted
//! method can try), and `Err(Malformed)` when it is present but ambiguous or malformed: a repeated
//! header, or both API key forms at once, is refused rather than guessed at.

use http::header::{AUTHORIZATION, AsHeaderName};
use http::{HeaderMap, HeaderValue};

use super::error::AuthError;

pub const API_KEY_HEADER: &str = "x-api-key";

/// The value of a header that may appear once; `Err` when repeated.
fn single(headers: &HeaderMap, name: impl AsHeaderName) -> Result<Option<&HeaderValue>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    Ok(first)
}

/// The single `Authorization` header as text; `Err` when repeated or not visible ASCII.
fn authorization(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    single(headers, AUTHORIZATION)?
        .map(|v| v.to_str().map_err(|_| AuthError::Malformed))
        .transpose()
}

/// Where the credentials of `Scheme credentials` start, if the scheme is `scheme` (compared
/// case-insensitively, RFC 9110 §11.1): just after the first space, an ASCII boundary.
fn credentials_start(value: &[u8], scheme: &str) -> Option<usize> {
    let space = memchr::memchr(b' ', value)?;
    value[..space]
        .eq_ignore_ascii_case(scheme.as_bytes())
        .then_some(space + 1)
}

/// RFC 6750 `b64token` characters, by byte; a JWT uses a subset. Anything else is malformed.
/// A table: a token is hundreds of bytes on every request, checked one load per byte.
const B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    table
};

fn is_b64token(s: &[u8]) -> bool {
    // No early exit: the loop stays branch-free, and a valid token is read whole anyway.
    !s.is_empty() && s.iter().fold(true, |ok, &b| ok & B64TOKEN[usize::from(b)])
}

/// The bearer token, if the request carries `Authorization: Bearer ...`.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = single(headers, AUTHORIZATION)? else {
        return Ok(None);
    };
    // On bytes, so the token is read once: b64token bytes are visible ASCII, so a Bearer value
    // whose token passes is visible ASCII throughout, as `authorization` would require.
    let bytes = value.as_bytes();
    match credentials_start(bytes, "Bearer") {
        Some(start) => {
            let token = &bytes[start..];
            if !is_b64token(token) {
                return Err(AuthError::Malformed);
            }
            std::str::from_utf8(token)
                .map(Some)
                .map_err(|_| AuthError::Malformed)
        }
        // Another scheme (or none): not a bearer token, but still refuse a value that is not
        // visible ASCII, as every other reader of the header does.
        None => value
            .to_str()
            .map(|_| None)
            .map_err(|_| AuthError::Malformed),
    }
}

/// The API key, from `x-api-key` or `Authorization: ApiKey ...` (exactly one of them).
pub fn api_key(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let from_header = single(headers, API_KEY_HEADER)?
        .map(|v| v.to_str().map_err(|_| AuthError::Malformed))
        .transpose()?;
    let from_authorization = match authorization(headers) {
        Ok(Some(v)) => credentials_start(v.as_bytes(), "ApiKey").map(|start| &v[start..]),
        Ok(None) => None,
        // A repeated Authorization header only matters if the key would come from it.
        Err(e) => {
            if from_header.is_none() {
                return Err(e);
            }
            None
        }
    };
    match (from_header, from_authorization) {
        (Some(_), Some(_)) => Err(AuthError::Malformed),
        (Some(k), None) | (None, Some(k)) => {
            let k = k.trim();
            if k.is_empty() {
                Err(AuthError::Malformed)
            } else {
                Ok(Some(k))
            }
        }
        (None, None) => Ok(None),
    }
}

/// True when an `Authorization` header is present at all: lets a caller tell "no credentials"
/// from "credentials in a scheme this route does not take".
pub fn has_authorization(headers: &HeaderMap) -> bool {
    headers.contains_key(AUTHORIZATION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_extraction() {
        assert_eq!(bearer_token(&headers(&[])), Ok(None));
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer a.b.c")])),
            Ok(Some("a.b.c"))
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "bearer a.b.c")])),
            Ok(Some("a.b.c"))
        );
        // Other schemes are not a bearer token (another method may take them).
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Basic dXNlcjpwYXNz")])),
            Ok(None)
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer ")])),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer a b")])),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&[
                ("authorization", "Bearer a.b.c"),
                ("authorization", "Bearer d.e.f")
            ])),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn bearer_values_that_are_not_visible_ascii_are_malformed_whatever_the_scheme() {
        let raw = |v: &[u8]| {
            let mut h = HeaderMap::new();
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
            bearer_token(&h).map(|t| t.map(str::to_owned))
        };
        assert_eq!(raw(b"Bearer a.b\xffc"), Err(AuthError::Malformed));
        assert_eq!(raw(b"Bearer a.b\tc"), Err(AuthError::Malformed));
        assert_eq!(raw(b"Basic \xff"), Err(AuthError::Malformed));
        assert_eq!(raw(b"Bearer\xff"), Err(AuthError::Malformed));
        // No scheme separator at all: not a bearer token.
        assert_eq!(raw(b"Bearer"), Ok(None));
        assert_eq!(raw(b"Bearer  a.b.c"), Err(AuthError::Malformed));
    }

    #[test]
    fn api_key_extraction() {
        assert_eq!(api_key(&headers(&[])), Ok(None));
        assert_eq!(api_key(&headers(&[("x-api-key", "k1")])), Ok(Some("k1")));
        assert_eq!(
            api_key(&headers(&[("authorization", "ApiKey k2")])),
            Ok(Some("k2"))
        );
        assert_eq!(
            api_key(&headers(&[("authorization", "Bearer a.b.c")])),
            Ok(None)
        );
        assert_eq!(
            api_key(&headers(&[
                ("x-api-key", "k1"),
                ("authorization", "ApiKey k2")
            ])),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            api_key(&headers(&[("x-api-key", "k1"), ("x-api-key", "k2")])),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            api_key(&headers(&[("x-api-key", "")])),
            Err(AuthError::Malformed)
        );
    }
}
