//! Per-route content-type allow-list with a real media-type parser (RFC 9110 §8.3.1).
//!
//! Prefix or substring checks let `application/jsonx` or `text/plain; a=application/json`
//! through; here the type and subtype are parsed as tokens and compared case-insensitively,
//! parameters are parsed (token or quoted-string), and a `charset` other than UTF-8 is refused.

use http::{HeaderMap, header};

use super::framing::is_tchar;
use super::limits::SettingsError;

/// Why a request's `Content-Type` was refused (415).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentTypeError {
    /// A body without `Content-Type`.
    Missing,
    /// More than one `Content-Type` field.
    Duplicate,
    /// Not `type/subtype *(; name=value)`.
    Malformed,
    /// A media type the route does not accept.
    NotAllowed,
    /// A `charset` other than UTF-8.
    UnsupportedCharset,
}

impl ContentTypeError {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Missing => "missing_content_type",
            Self::Duplicate => "duplicate_content_type",
            Self::Malformed => "malformed_content_type",
            Self::NotAllowed => "content_type_not_allowed",
            Self::UnsupportedCharset => "unsupported_charset",
        }
    }
}

impl std::fmt::Display for ContentTypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ContentTypeError {}

/// Parameters beyond this many are refused as malformed (real clients send one or two).
const MAX_PARAMS: usize = 8;

/// A parsed media type borrowing from the header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    pub type_: &'a str,
    pub subtype: &'a str,
    /// The `charset` parameter, unquoted, if present.
    pub charset: Option<&'a str>,
    /// Whether a `boundary` parameter is present (multipart).
    pub has_boundary: bool,
}

/// Parse a `Content-Type` value.
pub fn parse_media_type(value: &[u8]) -> Result<MediaType<'_>, ContentTypeError> {
    let value = std::str::from_utf8(value).map_err(|_| ContentTypeError::Malformed)?;
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim_matches([' ', '\t']);
    let (type_, subtype) = essence.split_once('/').ok_or(ContentTypeError::Malformed)?;
    if !is_token(type_) || !is_token(subtype) {
        return Err(ContentTypeError::Malformed);
    }
    let mut media = MediaType {
        type_,
        subtype,
        charset: None,
        has_boundary: false,
    };
    // A `;` inside a quoted parameter value would split wrongly here; such a value is then
    // refused as malformed, which is the safe direction.
    for (n, param) in parts.enumerate() {
        if n >= MAX_PARAMS {
            return Err(ContentTypeError::Malformed);
        }
        let param = param.trim_matches([' ', '\t']);
        let (name, raw_value) = param.split_once('=').ok_or(ContentTypeError::Malformed)?;
        if !is_token(name) {
            return Err(ContentTypeError::Malformed);
        }
        let value = unquote(raw_value)?;
        if name.eq_ignore_ascii_case("charset") {
            if media.charset.is_some() {
                return Err(ContentTypeError::Malformed);
            }
            media.charset = Some(value);
        } else if name.eq_ignore_ascii_case("boundary") {
            if media.has_boundary || value.is_empty() {
                return Err(ContentTypeError::Malformed);
            }
            media.has_boundary = true;
        }
    }
    Ok(media)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// A parameter value: a token, or a quoted-string without escapes.
fn unquote(v: &str) -> Result<&str, ContentTypeError> {
    if let Some(inner) = v.strip_prefix('"') {
        let inner = inner.strip_suffix('"').ok_or(ContentTypeError::Malformed)?;
        if inner
            .bytes()
            .any(|b| b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f)
        {
            return Err(ContentTypeError::Malformed);
        }
        Ok(inner)
    } else if is_token(v) {
        Ok(v)
    } else {
        Err(ContentTypeError::Malformed)
    }
}

/// One accepted media type, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    type_: String,
    subtype: String,
}

/// The media types a route accepts for request bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentTypeAllowList {
    allowed: Vec<Allowed>,
}

impl ContentTypeAllowList {
    /// Build from media types such as `application/json` or `multipart/form-data`
    /// (parameters and wildcards are not accepted here).
    pub fn new<S: AsRef<str>>(types: &[S]) -> Result<Self, SettingsError> {
        let mut allowed = Vec::with_capacity(types.len());
        for t in types {
            let t = t.as_ref();
            let bad = || SettingsError::InvalidMediaType(t.to_owned());
            let (type_, subtype) = t.split_once('/').ok_or_else(bad)?;
            if !is_token(type_) || !is_token(subtype) || type_ == "*" || subtype == "*" {
                return Err(bad());
            }
            allowed.push(Allowed {
                type_: type_.to_ascii_lowercase(),
                subtype: subtype.to_ascii_lowercase(),
            });
        }
        if allowed.is_empty() {
            return Err(SettingsError::NoMediaTypes);
        }
        Ok(Self { allowed })
    }

    /// `application/json` only: the default for JSON routes.
    pub fn json() -> Self {
        Self {
            allowed: vec![Allowed {
                type_: "application".into(),
                subtype: "json".into(),
            }],
        }
    }

    /// Check the request's `Content-Type`. Call only when the request carries a body.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ContentTypeError> {
        let mut values = headers.get_all(header::CONTENT_TYPE).iter();
        let value = match (values.next(), values.next()) {
            (None, _) => return Err(ContentTypeError::Missing),
            (Some(v), None) => v,
            (Some(_), Some(_)) => return Err(ContentTypeError::Duplicate),
        };
        let media = parse_media_type(value.as_bytes())?;
        if !self.allowed.iter().any(|a| {
            a.type_.eq_ignore_ascii_case(media.type_)
                && a.subtype.eq_ignore_ascii_case(media.subtype)
        }) {
            return Err(ContentTypeError::NotAllowed);
        }
        if let Some(cs) = media.charset
            && !(cs.eq_ignore_ascii_case("utf-8") || cs.eq_ignore_ascii_case("utf8"))
        {
            return Err(ContentTypeError::UnsupportedCharset);
        }
        if media.type_.eq_ignore_ascii_case("multipart") && !media.has_boundary {
            return Err(ContentTypeError::Malformed);
        }
        Ok(())
    }

    /// Whether this list accepts exactly JSON, i.e. the route's body must be checked as JSON.
    pub fn is_json_only(&self) -> bool {
        self.allowed.len() == 1
            && self.allowed[0].type_ == "application"
            && self.allowed[0].subtype == "json"
    }
}

impl Default for ContentTypeAllowList {
    fn default() -> Self {
        Self::json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_ct(values: &[&'static str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(header::CONTENT_TYPE, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn json_forms_are_accepted() {
        let json = ContentTypeAllowList::json();
        for v in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
            "application/json ; charset=utf8",
        ] {
            assert_eq!(json.check(&with_ct(&[v])), Ok(()), "{v}");
        }
    }

    #[test]
    fn look_alikes_and_other_types_are_refused() {
        let json = ContentTypeAllowList::json();
        for v in [
            "application/jsonx",
            "application/json-patch+json",
            "application/x-json",
            "text/json",
            "text/plain",
            "text/plain; a=b",
            "application/problem+json",
            "multipart/form-data; boundary=x",
        ] {
            assert_eq!(
                json.check(&with_ct(&[v])),
                Err(ContentTypeError::NotAllowed),
                "{v}"
            );
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        let json = ContentTypeAllowList::json();
        for v in [
            "application",
            "application/",
            "/json",
            "application/json/x",
            "application json",
            "application/json; charset",
            "application/json; charset=",
            "application/json; charset=\"utf-8",
            "application/json; =utf-8",
            "application/json; charset=utf-8; charset=utf-8",
            "application/json; a=1; b=2; c=3; d=4; e=5; f=6; g=7; h=8; i=9",
            "",
            "text/plain; a=application/json",
        ] {
            assert_eq!(
                json.check(&with_ct(&[v])),
                Err(ContentTypeError::Malformed),
                "{v}"
            );
        }
    }

    #[test]
    fn charset_must_be_utf8() {
        let json = ContentTypeAllowList::json();
        for v in [
            "application/json; charset=iso-8859-1",
            "application/json; charset=utf-16",
            "application/json; charset=utf-7",
        ] {
            assert_eq!(
                json.check(&with_ct(&[v])),
                Err(ContentTypeError::UnsupportedCharset),
                "{v}"
            );
        }
    }

    #[test]
    fn missing_or_duplicate_headers_are_refused() {
        let json = ContentTypeAllowList::json();
        assert_eq!(
            json.check(&HeaderMap::new()),
            Err(ContentTypeError::Missing)
        );
        assert_eq!(
            json.check(&with_ct(&["application/json", "application/json"])),
            Err(ContentTypeError::Duplicate)
        );
    }

    #[test]
    fn multipart_needs_a_boundary() {
        let list =
            ContentTypeAllowList::new(&["multipart/form-data", "application/json"]).expect("valid");
        assert!(!list.is_json_only());
        assert_eq!(
            list.check(&with_ct(&["multipart/form-data; boundary=----abc"])),
            Ok(())
        );
        assert_eq!(
            list.check(&with_ct(&["multipart/form-data"])),
            Err(ContentTypeError::Malformed)
        );
        assert_eq!(list.check(&with_ct(&["application/json"])), Ok(()));
    }

    #[test]
    fn invalid_configuration_is_refused() {
        assert!(ContentTypeAllowList::new(&["application/*"]).is_err());
        assert!(ContentTypeAllowList::new(&["json"]).is_err());
        assert!(ContentTypeAllowList::new(&["application/json; charset=utf-8"]).is_err());
        assert!(ContentTypeAllowList::new::<&str>(&[]).is_err());
        assert!(ContentTypeAllowList::json().is_json_only());
    }
}
