//! Per-route method allow-list (405 with `Allow`).
//!
//! A bit set over the methods an API route can meaningfully use; `TRACE`, `CONNECT` and
//! extension methods cannot be allowed at all. The `Allow` value is built once at load time.

use http::{HeaderValue, Method};

use super::limits::SettingsError;

const KNOWN: [(Method, &str); 7] = [
    (Method::GET, "GET"),
    (Method::HEAD, "HEAD"),
    (Method::POST, "POST"),
    (Method::PUT, "PUT"),
    (Method::PATCH, "PATCH"),
    (Method::DELETE, "DELETE"),
    (Method::OPTIONS, "OPTIONS"),
];

/// The methods a route accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodAllowList {
    bits: u8,
    allow: HeaderValue,
}

impl MethodAllowList {
    /// Build from method names (`GET`, `post`...). Unknown names, `TRACE`, `CONNECT` and an
    /// empty list are configuration errors.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Self, SettingsError> {
        let mut bits = 0u8;
        for name in names {
            let name = name.as_ref();
            let idx = KNOWN
                .iter()
                .position(|(_, n)| n.eq_ignore_ascii_case(name))
                .ok_or_else(|| SettingsError::UnsupportedMethod(name.to_owned()))?;
            bits |= 1 << idx;
        }
        if bits == 0 {
            return Err(SettingsError::NoMethods);
        }
        let allow = KNOWN
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, (_, n))| *n)
            .collect::<Vec<_>>()
            .join(", ");
        let allow = HeaderValue::from_str(&allow).map_err(|_| SettingsError::NoMethods)?;
        Ok(Self { bits, allow })
    }

    /// Whether `method` is allowed.
    #[inline]
    pub fn allows(&self, method: &Method) -> bool {
        KNOWN
            .iter()
            .position(|(m, _)| m == method)
            .is_some_and(|i| self.bits & (1 << i) != 0)
    }

    /// The `Allow` header value for a 405 answer, e.g. `GET, POST`.
    pub fn allow_header(&self) -> &HeaderValue {
        &self.allow
    }
}

impl Default for MethodAllowList {
    /// `GET, HEAD, POST, PUT, PATCH, DELETE`: no `OPTIONS` unless a route asks for it.
    fn default() -> Self {
        Self {
            bits: 0b0011_1111,
            allow: HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_only_listed_methods() {
        let m = MethodAllowList::new(&["post", "GET"]).expect("valid");
        assert!(m.allows(&Method::GET));
        assert!(m.allows(&Method::POST));
        assert!(!m.allows(&Method::PUT));
        assert!(!m.allows(&Method::DELETE));
        assert!(!m.allows(&Method::TRACE));
        assert!(!m.allows(&Method::CONNECT));
        let ext = Method::from_bytes(b"PROPFIND").expect("method");
        assert!(!m.allows(&ext));
        assert_eq!(m.allow_header(), "GET, POST");
    }

    #[test]
    fn dangerous_unknown_and_empty_lists_are_config_errors() {
        assert!(matches!(
            MethodAllowList::new(&["TRACE"]),
            Err(SettingsError::UnsupportedMethod(_))
        ));
        assert!(matches!(
            MethodAllowList::new(&["CONNECT"]),
            Err(SettingsError::UnsupportedMethod(_))
        ));
        assert!(matches!(
            MethodAllowList::new(&["GETT"]),
            Err(SettingsError::UnsupportedMethod(_))
        ));
        assert_eq!(
            MethodAllowList::new::<&str>(&[]),
            Err(SettingsError::NoMethods)
        );
    }

    #[test]
    fn default_matches_its_allow_header() {
        let d = MethodAllowList::default();
        let built = MethodAllowList::new(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
            .expect("valid");
        assert_eq!(d, built);
        assert!(!d.allows(&Method::OPTIONS));
    }
}
