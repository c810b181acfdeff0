//! What one limit is: a rate (`50/s`, `/m`, `/h`), a burst, and the kind of key it counts by.
//! Parsed from the plain strings ops write in `gateway.yaml`; every refusal is a typed error so
//! the config layer can report it with the YAML line.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;

/// Largest count or burst accepted: beyond this a limit is no limit, and the GCRA emission
/// interval would drop below a microsecond (the Redis script's unit).
pub const MAX_COUNT: u32 = 1_000_000;

/// Why a rate, burst or key kind was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("rate is empty; expected e.g. `50/s`, `600/m` or `1000/h`")]
    EmptyRate,
    #[error("rate `{0}` has no `/`; expected e.g. `50/s`, `600/m` or `1000/h`")]
    MissingSlash(String),
    #[error("rate count `{0}` is not a whole number")]
    BadCount(String),
    #[error("rate count and burst must be at least 1")]
    Zero,
    #[error("rate count or burst {0} is above the maximum of {MAX_COUNT}")]
    TooLarge(u64),
    #[error("rate unit `{0}` is not one of s, m, h")]
    BadUnit(String),
    #[error(
        "rate-limit key `{0}` is not one of caller, api_key, client_ip, shop, route, header:<name>"
    )]
    UnknownKeyKind(String),
    #[error("rate-limit key `header:` needs a valid header name, got `{0}`")]
    BadHeaderName(String),
    #[error(
        "rate-limit key `header:{0}` would let callers choose their own key; use `client_ip`, which only trusts forwarding headers from configured proxies"
    )]
    SpoofableHeader(String),
}

/// The unit a rate is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Second,
    Minute,
    Hour,
}

impl Period {
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.as_secs())
    }

    pub fn as_secs(self) -> u64 {
        match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3600,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Period::Second => "s",
            Period::Minute => "m",
            Period::Hour => "h",
        }
    }
}

/// `count` requests per `period`, e.g. `50/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Period,
}

impl Rate {
    /// The GCRA emission interval: time one request "costs".
    pub fn emission_interval(&self) -> Duration {
        self.period.as_duration() / self.count.get()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.period.suffix())
    }
}

impl FromStr for Rate {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SpecError::EmptyRate);
        }
        let (count, unit) = s
            .split_once('/')
            .ok_or_else(|| SpecError::MissingSlash(s.to_owned()))?;
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SpecError::BadCount(count.to_owned()));
        }
        let count = parse_count(count)?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Period::Second,
            "m" | "min" | "minute" => Period::Minute,
            "h" | "hour" => Period::Hour,
            other => return Err(SpecError::BadUnit(other.to_owned())),
        };
        Ok(Rate { count, period })
    }
}

fn parse_count(digits: &str) -> Result<NonZeroU32, SpecError> {
    // Digits only (checked by the caller), so the only failure left is overflow.
    let value: u64 = digits.parse().map_err(|_| SpecError::TooLarge(u64::MAX))?;
    check_count(value)
}

fn check_count(value: u64) -> Result<NonZeroU32, SpecError> {
    if value > u64::from(MAX_COUNT) {
        return Err(SpecError::TooLarge(value));
    }
    u32::try_from(value)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or(SpecError::Zero)
}

/// What a limit counts by. The pipeline extracts the matching value from the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The authenticated subject (JWT `sub`, API key name, mTLS identity).
    Caller,
    /// The API key's configured name (never the key itself).
    ApiKey,
    /// The client address from [`crate::limit::TrustedProxies::client_ip`].
    ClientIp,
    /// The TikTok shop the request acts for.
    Shop,
    /// The value of one request header (lower-case name).
    Header(HeaderName),
    /// One bucket for the whole route: pass an empty key.
    Route,
}

/// Headers a client can set freely to claim another address; keying on them would let every
/// request choose a fresh bucket.
const SPOOFABLE_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
];

impl KeyKind {
    /// The label used in metrics (`rate_limited_total{key_kind}`): bounded by config.
    pub fn label(&self) -> String {
        match self {
            KeyKind::Header(name) => format!("header:{}", name.as_str()),
            other => other.simple_label().to_owned(),
        }
    }

    fn simple_label(&self) -> &'static str {
        match self {
            KeyKind::Caller => "caller",
            KeyKind::ApiKey => "api_key",
            KeyKind::ClientIp => "client_ip",
            KeyKind::Shop => "shop",
            KeyKind::Header(_) => "header",
            KeyKind::Route => "route",
        }
    }
}

impl FromStr for KeyKind {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "caller" => Ok(KeyKind::Caller),
            "api_key" => Ok(KeyKind::ApiKey),
            "client_ip" => Ok(KeyKind::ClientIp),
            "shop" => Ok(KeyKind::Shop),
            "route" => Ok(KeyKind::Route),
            _ => {
                let Some(name) = s.strip_prefix("header:") else {
                    return Err(SpecError::UnknownKeyKind(s.to_owned()));
                };
                let name = name.trim();
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| SpecError::BadHeaderName(name.to_owned()))?;
                if SPOOFABLE_HEADERS.contains(&header.as_str()) {
                    return Err(SpecError::SpoofableHeader(header.as_str().to_owned()));
                }
                Ok(KeyKind::Header(header))
            }
        }
    }
}

/// One limit of a route: `rate_limit: { key, rate, burst }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    pub key: KeyKind,
    pub rate: Rate,
    /// Requests that may arrive at once on a fresh key. Defaults to the rate's count.
    pub burst: NonZeroU32,
}

impl LimitSpec {
    /// Parses the three YAML values. `burst: None` means "same as the rate's count".
    pub fn parse(key: &str, rate: &str, burst: Option<u64>) -> Result<Self, SpecError> {
        let key = key.parse()?;
        let rate: Rate = rate.parse()?;
        let burst = match burst {
            Some(b) => check_count(b)?,
            None => rate.count,
        };
        Ok(LimitSpec { key, rate, burst })
    }

    /// The GCRA emission interval.
    pub fn emission_interval(&self) -> Duration {
        self.rate.emission_interval()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates_in_each_unit() {
        let r: Rate = "50/s".parse().unwrap();
        assert_eq!((r.count.get(), r.period), (50, Period::Second));
        let r: Rate = " 600 / m ".parse().unwrap();
        assert_eq!((r.count.get(), r.period), (600, Period::Minute));
        let r: Rate = "1000/hour".parse().unwrap();
        assert_eq!((r.count.get(), r.period), (1000, Period::Hour));
        assert_eq!(r.to_string(), "1000/h");
        assert_eq!(
            "4/s".parse::<Rate>().unwrap().emission_interval(),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn refuses_bad_rates() {
        assert_eq!("".parse::<Rate>(), Err(SpecError::EmptyRate));
        assert!(matches!(
            "50".parse::<Rate>(),
            Err(SpecError::MissingSlash(_))
        ));
        assert!(matches!(
            "-5/s".parse::<Rate>(),
            Err(SpecError::BadCount(_))
        ));
        assert!(matches!(
            "5.5/s".parse::<Rate>(),
            Err(SpecError::BadCount(_))
        ));
        assert!(matches!("/s".parse::<Rate>(), Err(SpecError::BadCount(_))));
        assert_eq!("0/s".parse::<Rate>(), Err(SpecError::Zero));
        assert!(matches!("5/d".parse::<Rate>(), Err(SpecError::BadUnit(_))));
        assert!(matches!("5/".parse::<Rate>(), Err(SpecError::BadUnit(_))));
        assert_eq!(
            "2000000/s".parse::<Rate>(),
            Err(SpecError::TooLarge(2_000_000))
        );
        assert!(matches!(
            "99999999999999999999999/s".parse::<Rate>(),
            Err(SpecError::TooLarge(_))
        ));
    }

    #[test]
    fn parses_key_kinds() {
        assert_eq!("caller".parse(), Ok(KeyKind::Caller));
        assert_eq!("api_key".parse(), Ok(KeyKind::ApiKey));
        assert_eq!("client_ip".parse(), Ok(KeyKind::ClientIp));
        assert_eq!("shop".parse(), Ok(KeyKind::Shop));
        assert_eq!("route".parse(), Ok(KeyKind::Route));
        let h: KeyKind = "header:X-Tenant".parse().unwrap();
        assert_eq!(h, KeyKind::Header(HeaderName::from_static("x-tenant")));
        assert_eq!(h.label(), "header:x-tenant");
    }

    #[test]
    fn refuses_unknown_and_spoofable_keys() {
        assert!(matches!(
            "ip".parse::<KeyKind>(),
            Err(SpecError::UnknownKeyKind(_))
        ));
        assert!(matches!(
            "header:".parse::<KeyKind>(),
            Err(SpecError::BadHeaderName(_))
        ));
        assert!(matches!(
            "header:bad name".parse::<KeyKind>(),
            Err(SpecError::BadHeaderName(_))
        ));
        for h in ["X-Forwarded-For", "forwarded", "x-real-ip"] {
            assert!(matches!(
                format!("header:{h}").parse::<KeyKind>(),
                Err(SpecError::SpoofableHeader(_))
            ));
        }
    }

    #[test]
    fn burst_defaults_to_count_and_is_checked() {
        let s = LimitSpec::parse("caller", "50/s", None).unwrap();
        assert_eq!(s.burst.get(), 50);
        let s = LimitSpec::parse("caller", "50/s", Some(100)).unwrap();
        assert_eq!(s.burst.get(), 100);
        assert_eq!(
            LimitSpec::parse("caller", "50/s", Some(0)),
            Err(SpecError::Zero)
        );
        assert_eq!(
            LimitSpec::parse("caller", "50/s", Some(5_000_000)),
            Err(SpecError::TooLarge(5_000_000))
        );
    }
}
