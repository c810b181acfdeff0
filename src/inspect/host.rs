//! `Host` / `:authority` check: exactly one, well-formed, consistent, and served here.
//!
//! A listener answers only for the names in its list (any well-formed name when the list is
//! empty). Host-header confusion is how requests reach a virtual host or upstream they were
//! not meant for, and how poisoned absolute URLs get built.

use http::{HeaderMap, StatusCode, Uri, Version, header};

use super::limits::SettingsError;

/// Why the request's host was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostError {
    /// No `Host` (HTTP/1.1) and no `:authority` (HTTP/2). 400.
    Missing,
    /// More than one `Host` field. 400.
    Duplicate,
    /// Not `name[:port]`, `IPv4[:port]` or `[IPv6][:port]`; user-info is refused too. 400.
    Invalid,
    /// `Host` differs from the authority in the request target or `:authority`. 400.
    Mismatch,
    /// Well-formed but not a name this listener serves. 421 Misdirected Request.
    NotServed,
}

impl HostError {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Missing => "missing_host",
            Self::Duplicate => "duplicate_host",
            Self::Invalid => "invalid_host",
            Self::Mismatch => "host_mismatch",
            Self::NotServed => "host_not_served",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotServed => StatusCode::MISDIRECTED_REQUEST,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for HostError {}

/// A parsed `host[:port]`, borrowing from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort<'a> {
    /// The name, IPv4 address, or bracketed IPv6 literal (brackets kept), as sent.
    pub host: &'a str,
    pub port: Option<u16>,
}

impl HostPort<'_> {
    fn same_as(&self, other: &HostPort<'_>) -> bool {
        self.host.eq_ignore_ascii_case(other.host) && self.port == other.port
    }
}

/// Parse a `Host` value or authority. Refuses user-info, empty names, bad ports, and
/// characters outside letters, digits, `-`, `.`, `_` (and the IPv6 literal syntax).
pub fn parse_host(value: &str) -> Result<HostPort<'_>, HostError> {
    let (host, port) = if value.starts_with('[') {
        let end = value.find(']').ok_or(HostError::Invalid)?;
        let literal = &value[..=end];
        let inner = &literal[1..literal.len() - 1];
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostError::Invalid);
        }
        match &value[end + 1..] {
            "" => (literal, None),
            rest => (
                literal,
                Some(rest.strip_prefix(':').ok_or(HostError::Invalid)?),
            ),
        }
    } else {
        match value.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        }
    };
    if host.is_empty() || host.len() > 253 {
        return Err(HostError::Invalid);
    }
    if !host.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(HostError::Invalid);
    }
    let port = match port {
        None => None,
        Some(p) => {
            // 1-5 digits, no sign, no leading zero; port 0 is not a real destination.
            if p.is_empty()
                || p.len() > 5
                || p.starts_with('0')
                || !p.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(HostError::Invalid);
            }
            Some(p.parse::<u16>().map_err(|_| HostError::Invalid)?)
        }
    };
    Ok(HostPort { host, port })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Served {
    host: String,
    port: Option<u16>,
}

/// The host names a listener serves. Empty means any well-formed host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostAllowList {
    served: Vec<Served>,
}

impl HostAllowList {
    /// Any well-formed host (still exactly one, consistent with the target).
    pub fn any() -> Self {
        Self::default()
    }

    /// Build from entries like `api.example.com` (any port) or `api.example.com:8443`
    /// (that port only; a request without a port matches an entry for port 80 or 443).
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, SettingsError> {
        let mut served = Vec::with_capacity(entries.len());
        for e in entries {
            let e = e.as_ref();
            let hp = parse_host(e).map_err(|_| SettingsError::InvalidHost(e.to_owned()))?;
            served.push(Served {
                host: hp.host.to_ascii_lowercase(),
                port: hp.port,
            });
        }
        Ok(Self { served })
    }

    /// Whether this listener serves `host` (always, when the list is empty).
    pub fn serves(&self, host: &HostPort<'_>) -> bool {
        self.served.is_empty() || self.served.iter().any(|s| s.matches(host))
    }

    /// Check the request's host. For HTTP/2 the authority comes from `:authority` (in `uri`);
    /// for HTTP/1 from `Host`, which must agree with an absolute-form target if there is one.
    pub fn check(&self, version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), HostError> {
        let mut hosts = headers.get_all(header::HOST).iter();
        let host_header = match (hosts.next(), hosts.next()) {
            (Some(_), Some(_)) => return Err(HostError::Duplicate),
            (Some(v), None) => Some(parse_host(v.to_str().map_err(|_| HostError::Invalid)?)?),
            (None, _) => None,
        };
        let authority = match uri.authority() {
            Some(a) => Some(parse_host(a.as_str())?),
            None => None,
        };
        let effective = match (authority, host_header) {
            (Some(a), Some(h)) if !a.same_as(&h) => return Err(HostError::Mismatch),
            (Some(a), _) => a,
            (None, Some(h)) => h,
            // HTTP/1.0 may omit Host; only acceptable when any host is served.
            (None, None) if version == Version::HTTP_10 && self.served.is_empty() => return Ok(()),
            (None, None) => return Err(HostError::Missing),
        };
        if self.serves(&effective) {
            Ok(())
        } else {
            Err(HostError::NotServed)
        }
    }
}

impl Served {
    fn matches(&self, req: &HostPort<'_>) -> bool {
        if !self.host.eq_ignore_ascii_case(req.host) {
            return false;
        }
        match (self.port, req.port) {
            (None, _) => true,
            (Some(p), Some(q)) => p == q,
            (Some(p), None) => p == 80 || p == 443,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(values: &[&'static str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(header::HOST, HeaderValue::from_static(v));
        }
        m
    }

    fn origin() -> Uri {
        Uri::from_static("/order/x")
    }

    #[test]
    fn parses_names_addresses_and_ports() {
        assert_eq!(
            parse_host("api.example.com:8443"),
            Ok(HostPort {
                host: "api.example.com",
                port: Some(8443)
            })
        );
        assert_eq!(parse_host("127.0.0.1").map(|h| h.port), Ok(None));
        assert_eq!(
            parse_host("[::1]:8080"),
            Ok(HostPort {
                host: "[::1]",
                port: Some(8080)
            })
        );
        for bad in [
            "", ":80", "a:", "a:0", "a:080", "a:65536", "a:+1", "a:1:2", "user@a", "a b", "a/b",
            "[::1", "[zz]", "[::1]x", "a\\b", "a%2eb",
        ] {
            assert_eq!(parse_host(bad), Err(HostError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn any_list_accepts_one_well_formed_host() {
        let any = HostAllowList::any();
        assert_eq!(
            any.check(Version::HTTP_11, &origin(), &h(&["whatever.example"])),
            Ok(())
        );
        assert_eq!(
            any.check(Version::HTTP_11, &origin(), &HeaderMap::new()),
            Err(HostError::Missing)
        );
        assert_eq!(
            any.check(Version::HTTP_10, &origin(), &HeaderMap::new()),
            Ok(())
        );
        assert_eq!(
            any.check(Version::HTTP_11, &origin(), &h(&["a.example", "b.example"])),
            Err(HostError::Duplicate)
        );
        assert_eq!(
            any.check(Version::HTTP_11, &origin(), &h(&["a.example@evil"])),
            Err(HostError::Invalid)
        );
    }

    #[test]
    fn only_served_hosts_pass() {
        let list = HostAllowList::new(&["API.example.com", "admin.example.com:9443", "svc:443"])
            .expect("valid");
        let ok = |v: &'static str| list.check(Version::HTTP_11, &origin(), &h(&[v]));
        assert_eq!(ok("api.example.com"), Ok(()));
        assert_eq!(ok("Api.Example.Com:8443"), Ok(()));
        assert_eq!(ok("admin.example.com:9443"), Ok(()));
        assert_eq!(ok("svc"), Ok(()));
        assert_eq!(ok("admin.example.com:9444"), Err(HostError::NotServed));
        assert_eq!(ok("admin.example.com"), Err(HostError::NotServed));
        assert_eq!(ok("evil.example.com"), Err(HostError::NotServed));
        assert_eq!(ok("api.example.com."), Err(HostError::NotServed));
        assert_eq!(ok("api.example.com.evil"), Err(HostError::NotServed));
        assert_eq!(
            list.check(Version::HTTP_10, &origin(), &HeaderMap::new()),
            Err(HostError::Missing)
        );
        assert_eq!(HostError::NotServed.status(), 421);
    }

    #[test]
    fn authority_and_host_must_agree() {
        let list = HostAllowList::new(&["api.example.com"]).expect("valid");
        let abs = Uri::from_static("https://api.example.com/x");
        assert_eq!(
            list.check(Version::HTTP_11, &abs, &h(&["api.example.com"])),
            Ok(())
        );
        assert_eq!(
            list.check(Version::HTTP_11, &abs, &h(&["evil.example"])),
            Err(HostError::Mismatch)
        );
        let evil = Uri::from_static("https://evil.example/x");
        assert_eq!(
            list.check(Version::HTTP_11, &evil, &h(&["api.example.com"])),
            Err(HostError::Mismatch)
        );
        // HTTP/2: :authority alone
        assert_eq!(list.check(Version::HTTP_2, &abs, &HeaderMap::new()), Ok(()));
        assert_eq!(
            list.check(Version::HTTP_2, &evil, &HeaderMap::new()),
            Err(HostError::NotServed)
        );
        let userinfo = Uri::from_static("https://user@api.example.com/x");
        assert_eq!(
            list.check(Version::HTTP_2, &userinfo, &HeaderMap::new()),
            Err(HostError::Invalid)
        );
    }

    #[test]
    fn bad_entries_are_config_errors() {
        assert!(HostAllowList::new(&["a b"]).is_err());
        assert!(HostAllowList::new(&["a:99999"]).is_err());
    }
}
