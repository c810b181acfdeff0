//! Runtime settings for one JWT issuer, and their validation. The config layer maps
//! `identity.jwt[]` in `gateway.yaml` onto [`JwtIssuerSettings`].

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use jsonwebtoken::AlgorithmFamily;

use crate::config::Secret;

/// Shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash output size).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JWKS document on disk, read at start and on each config reload.
    JwksFile(PathBuf),
    /// A JWKS URL, fetched by the background refresher and on unknown `kid`s.
    JwksUrl(JwksUrlSettings),
    /// A shared secret for HS256/384/512. The only source that allows HMAC algorithms.
    HmacSecret(Secret),
}

#[derive(Clone)]
pub struct JwksUrlSettings {
    /// `https://...`; plain `http://` only for loopback hosts (dev IdP, tests).
    pub url: String,
    /// Interval of the background refresh (default 5 min).
    pub refresh: Duration,
    /// Minimum time between two fetches triggered by requests (unknown `kid`, stale keys).
    /// Default 30 s; at least 1 s.
    pub unknown_kid_cooldown: Duration,
    /// How long keys stay usable after the last successful fetch while the IdP fails.
    /// After that, tokens are refused (fail closed). Must be at least `refresh`. Default 1 h.
    pub stale_if_error: Duration,
    /// Timeout of one fetch, connect included (default 5 s).
    pub timeout: Duration,
    /// Extra trust anchors (PEM bundle) for an IdP with a private CA, added to the web roots.
    pub extra_roots_pem: Option<PathBuf>,
}

/// Without the URL's query, which may carry an access key (the fetcher hides it too).
impl std::fmt::Debug for JwksUrlSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.url.split(['?', '#']).next().unwrap_or("");
        f.debug_struct("JwksUrlSettings")
            .field("url", &shown)
            .field("refresh", &self.refresh)
            .field("unknown_kid_cooldown", &self.unknown_kid_cooldown)
            .field("stale_if_error", &self.stale_if_error)
            .field("timeout", &self.timeout)
            .field("extra_roots_pem", &self.extra_roots_pem)
            .finish()
    }
}

impl JwksUrlSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            refresh: Duration::from_secs(300),
            unknown_kid_cooldown: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
            extra_roots_pem: None,
        }
    }
}

/// Bounds on a JWKS document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksLimits {
    /// Largest document accepted, in bytes (default 64 KiB).
    pub max_bytes: usize,
    /// Most keys accepted in one document (default 20).
    pub max_keys: usize,
}

impl Default for JwksLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024,
            max_keys: 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct JwtIssuerSettings {
    /// Name routes refer to (`auth: { jwt: internal-idp }`), shown in `x-gateway-auth`.
    pub name: String,
    /// Exact `iss` value required in tokens.
    pub issuer: String,
    /// `aud` must contain at least one of these. Never empty.
    pub audiences: Vec<String>,
    pub keys: KeySource,
    /// Allowed `alg` values. HMAC algorithms only with [`KeySource::HmacSecret`], and then only them.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s). A token whose `iat` is
    /// later than now + leeway is always refused.
    pub leeway: Duration,
    /// When set, tokens must carry `iat` and are refused once older than this (plus the
    /// leeway), whatever their `exp`: bounds the life of a token an IdP minted with a long `exp`.
    pub max_token_age: Option<Duration>,
    /// Claim holding scopes: a space-separated string or an array of strings (default `scope`).
    pub scopes_claim: String,
    /// Tokens longer than this are refused before any decoding (default 8 KiB).
    pub max_token_bytes: usize,
    pub jwks_limits: JwksLimits,
    /// Verified tokens remembered, to skip signature checks on repeats (default 10,000; 0 = off).
    pub cache_capacity: usize,
}

impl JwtIssuerSettings {
    /// Settings with the defaults above for everything but the identifying fields.
    pub fn new(
        name: impl Into<String>,
        issuer: impl Into<String>,
        audiences: Vec<String>,
        keys: KeySource,
        algorithms: Vec<Algorithm>,
    ) -> Self {
        Self {
            name: name.into(),
            issuer: issuer.into(),
            audiences,
            keys,
            algorithms,
            leeway: Duration::from_secs(30),
            max_token_age: None,
            scopes_claim: "scope".into(),
            max_token_bytes: 8 * 1024,
            jwks_limits: JwksLimits::default(),
            cache_capacity: 10_000,
        }
    }

    /// Checks the settings; the first problem found is returned. Messages never include secrets.
    pub fn validate(&self) -> Result<(), JwtConfigError> {
        let name = || self.name.clone();
        if self.name.is_empty() || !self.name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(JwtConfigError::BadName { name: name() });
        }
        if self.issuer.is_empty() {
            return Err(JwtConfigError::MissingIssuer { name: name() });
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(JwtConfigError::MissingAudience { name: name() });
        }
        if self.algorithms.is_empty() {
            return Err(JwtConfigError::NoAlgorithms { name: name() });
        }
        if self.scopes_claim.is_empty() {
            return Err(JwtConfigError::BadScopesClaim { name: name() });
        }
        if self.max_token_bytes == 0 || self.max_token_bytes > 64 * 1024 {
            return Err(JwtConfigError::BadLimit {
                name: name(),
                what: "max_token_bytes (1..=64KiB)",
            });
        }
        if self
            .max_token_age
            .is_some_and(|age| age < Duration::from_secs(1))
        {
            return Err(JwtConfigError::BadLimit {
                name: name(),
                what: "max_token_age (at least 1s)",
            });
        }
        if self.jwks_limits.max_bytes == 0 || self.jwks_limits.max_keys == 0 {
            return Err(JwtConfigError::BadLimit {
                name: name(),
                what: "jwks max_bytes / max_keys",
            });
        }
        let hmac_algs = self
            .algorithms
            .iter()
            .filter(|a| a.family() == AlgorithmFamily::Hmac)
            .count();
        match &self.keys {
            KeySource::HmacSecret(secret) => {
                if hmac_algs != self.algorithms.len() {
                    return Err(JwtConfigError::AlgorithmKeyMismatch { name: name() });
                }
                if secret.expose().len() < MIN_HMAC_SECRET_BYTES {
                    return Err(JwtConfigError::WeakHmacSecret { name: name() });
                }
            }
            KeySource::JwksFile(_) | KeySource::JwksUrl(_) => {
                // An HMAC algorithm next to public keys is how the key-confusion attack starts.
                if hmac_algs != 0 {
                    return Err(JwtConfigError::AlgorithmKeyMismatch { name: name() });
                }
            }
        }
        if let KeySource::JwksUrl(u) = &self.keys {
            validate_url(&u.url).map_err(|why| JwtConfigError::BadUrl { name: name(), why })?;
            if u.unknown_kid_cooldown < Duration::from_secs(1)
                || u.refresh < Duration::from_secs(1)
                || u.timeout.is_zero()
            {
                return Err(JwtConfigError::BadLimit {
                    name: name(),
                    what: "refresh and unknown_kid_cooldown must be >= 1s, timeout > 0",
                });
            }
            if u.stale_if_error < u.refresh {
                return Err(JwtConfigError::BadLimit {
                    name: name(),
                    what: "stale_if_error must be >= refresh",
                });
            }
        }
        Ok(())
    }
}

/// `https` anywhere; `http` only to a loopback host.
fn validate_url(raw: &str) -> Result<(), &'static str> {
    let url = reqwest::Url::parse(raw).map_err(|_| "not a valid URL")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not allowed");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = url.host_str().unwrap_or("");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err("plain http is only allowed to a loopback host")
            }
        }
        _ => Err("scheme must be https"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtConfigError {
    #[error("jwt issuer `{name}`: name must be non-empty visible ASCII")]
    BadName { name: String },
    #[error("jwt issuer `{name}`: issuer is required")]
    MissingIssuer { name: String },
    #[error("jwt issuer `{name}`: at least one non-empty audience is required")]
    MissingAudience { name: String },
    #[error("jwt issuer `{name}`: at least one algorithm is required")]
    NoAlgorithms { name: String },
    #[error("jwt issuer `{name}`: scopes_claim must not be empty")]
    BadScopesClaim { name: String },
    #[error(
        "jwt issuer `{name}`: HMAC algorithms require an HMAC secret key source, \
         and an HMAC secret allows only HMAC algorithms"
    )]
    AlgorithmKeyMismatch { name: String },
    #[error("jwt issuer `{name}`: HMAC secret must be at least 32 bytes")]
    WeakHmacSecret { name: String },
    #[error("jwt issuer `{name}`: jwks url: {why}")]
    BadUrl { name: String, why: &'static str },
    #[error("jwt issuer `{name}`: bad {what}")]
    BadLimit { name: String, what: &'static str },
    #[error("jwt issuer `{name}`: keys: {why}")]
    Keys { name: String, why: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(keys: KeySource, algs: Vec<Algorithm>) -> JwtIssuerSettings {
        JwtIssuerSettings::new("idp", "https://idp", vec!["gw".into()], keys, algs)
    }

    #[test]
    fn hmac_only_with_an_hmac_secret() {
        let file = KeySource::JwksFile("jwks.json".into());
        assert!(
            base(file.clone(), vec![Algorithm::RS256])
                .validate()
                .is_ok()
        );
        // HS256 next to a public-key source: the RSA-key-as-HMAC-secret attack is refused here.
        assert!(matches!(
            base(file.clone(), vec![Algorithm::RS256, Algorithm::HS256]).validate(),
            Err(JwtConfigError::AlgorithmKeyMismatch { .. })
        ));
        let secret = KeySource::HmacSecret(Secret::new("s".repeat(32)));
        assert!(
            base(secret.clone(), vec![Algorithm::HS256])
                .validate()
                .is_ok()
        );
        assert!(matches!(
            base(secret, vec![Algorithm::HS256, Algorithm::RS256]).validate(),
            Err(JwtConfigError::AlgorithmKeyMismatch { .. })
        ));
        let weak = KeySource::HmacSecret(Secret::new("short-secret-value"));
        let err = base(weak, vec![Algorithm::HS256]).validate().unwrap_err();
        assert!(matches!(err, JwtConfigError::WeakHmacSecret { .. }));
        assert!(!err.to_string().contains("short-secret-value"));
    }

    #[test]
    fn required_fields_and_limits() {
        let file = KeySource::JwksFile("jwks.json".into());
        let mut s = base(file.clone(), vec![Algorithm::ES256]);
        s.audiences.clear();
        assert!(matches!(
            s.validate(),
            Err(JwtConfigError::MissingAudience { .. })
        ));
        let mut s = base(file.clone(), vec![]);
        s.algorithms.clear();
        assert!(matches!(
            s.validate(),
            Err(JwtConfigError::NoAlgorithms { .. })
        ));
        let mut s = base(file.clone(), vec![Algorithm::ES256]);
        s.max_token_age = Some(Duration::from_millis(500));
        assert!(matches!(s.validate(), Err(JwtConfigError::BadLimit { .. })));
        s.max_token_age = Some(Duration::from_secs(1));
        assert!(s.validate().is_ok());
        let mut s = base(file, vec![Algorithm::ES256]);
        s.issuer.clear();
        assert!(matches!(
            s.validate(),
            Err(JwtConfigError::MissingIssuer { .. })
        ));
    }

    #[test]
    fn url_rules() {
        let ok = |u: &str| {
            base(
                KeySource::JwksUrl(JwksUrlSettings::new(u)),
                vec![Algorithm::ES256],
            )
            .validate()
        };
        assert!(ok("https://idp.example/.well-known/jwks.json").is_ok());
        assert!(ok("http://127.0.0.1:8080/jwks").is_ok());
        assert!(ok("http://[::1]:8080/jwks").is_ok());
        assert!(ok("http://idp.example/jwks").is_err());
        assert!(ok("https://user:pw@idp.example/jwks").is_err());
        assert!(ok("ftp://idp.example/jwks").is_err());
        let mut u = JwksUrlSettings::new("https://idp.example/jwks");
        u.stale_if_error = Duration::from_secs(10);
        assert!(
            base(KeySource::JwksUrl(u), vec![Algorithm::ES256])
                .validate()
                .is_err()
        );
    }
}
