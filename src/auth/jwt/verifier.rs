//! Verifying a bearer JWT for one issuer.
//!
//! Order of checks, cheapest first: size (before any decoding), key freshness, the cache of
//! verified tokens, then the header (algorithm allow-list, no `crit`; `jwk`/`jku`/`x5u`/`x5c` are
//! never read), the key by `kid` from the issuer's own key set (never from the token), the
//! signature and `iss`/`aud`/`exp`/`sub` presence with `jsonwebtoken`, and finally `exp`/`nbf`/
//! `iat` (and the issuer's maximum token age, if set) against the injected clock with the leeway.
//!
//! `jsonwebtoken`'s defaults are not relied on: its `Validation` is built here with every
//! required claim, issuer and audience set; its own time checks are turned off because they read
//! the system clock, and done below against the injected clock instead. It already refuses
//! unknown `crit`; we refuse every `crit` before it runs (we implement no extension).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::cache::TokenCache;
use super::settings::{JwtConfigError, JwtIssuerSettings};
use super::store::JwksStore;
use crate::auth::error::AuthError;
use crate::auth::identity::{AuthMethod, Identity};
use crate::auth::scopes::ScopeSet;
use crate::clock::SharedClock;

/// Most `amr` values kept from a token, and their longest accepted length.
const MAX_AMR: usize = 16;
const MAX_AMR_BYTES: usize = 64;

pub struct JwtVerifier {
    name: Arc<str>,
    issuer: Box<str>,
    scopes_claim: Box<str>,
    max_token_bytes: usize,
    leeway_secs: i64,
    /// `max_token_age` in seconds: tokens need `iat` and die at `iat` + this.
    max_age_secs: Option<i64>,
    /// One `Validation` per allowed algorithm: `jsonwebtoken` wants every listed algorithm to be
    /// of the key's family, so a mixed list (RS256 + ES256) must be split.
    validations: Box<[(Algorithm, Validation)]>,
    store: Arc<JwksStore>,
    cache: TokenCache,
    clock: SharedClock,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("name", &self.name)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Validates the settings and builds the verifier with its own key store (a JWKS file is
    /// read now; a URL store fills on first use and from [`super::JwksRefresher`]).
    pub fn new(settings: &JwtIssuerSettings, clock: SharedClock) -> Result<Self, JwtConfigError> {
        settings.validate()?;
        let store = JwksStore::from_source(
            &settings.name,
            &settings.keys,
            settings.jwks_limits,
            &settings.algorithms,
            Arc::clone(&clock),
        )?;
        Self::with_store(settings, store, clock)
    }

    /// Builds the verifier around an existing store: lets a config reload keep a URL store (and
    /// its cached keys) when the issuer's key source did not change, and lets tests inject one.
    pub fn with_store(
        settings: &JwtIssuerSettings,
        store: Arc<JwksStore>,
        clock: SharedClock,
    ) -> Result<Self, JwtConfigError> {
        settings.validate()?;
        let leeway = settings.leeway.as_secs();
        let required: HashSet<String> = ["exp", "iss", "aud", "sub"]
            .into_iter()
            .map(String::from)
            .collect();
        let mut algs = settings.algorithms.clone();
        algs.dedup();
        let validations = algs
            .into_iter()
            .map(|alg| {
                let mut v = Validation::new(alg);
                v.required_spec_claims = required.clone();
                v.set_issuer(&[settings.issuer.as_str()]);
                v.set_audience(&settings.audiences);
                v.validate_aud = true;
                // Checked below against the injected clock.
                v.validate_exp = false;
                v.validate_nbf = false;
                v.leeway = leeway;
                v.sub = None;
                (alg, v)
            })
            .collect();
        Ok(Self {
            name: Arc::from(settings.name.as_str()),
            issuer: settings.issuer.clone().into_boxed_str(),
            scopes_claim: settings.scopes_claim.clone().into_boxed_str(),
            max_token_bytes: settings.max_token_bytes,
            leeway_secs: i64::try_from(leeway).unwrap_or(i64::MAX),
            max_age_secs: settings
                .max_token_age
                .map(|age| i64::try_from(age.as_secs()).unwrap_or(i64::MAX)),
            validations,
            store,
            cache: TokenCache::new(settings.cache_capacity),
            clock,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `iss` value this verifier accepts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn store(&self) -> &Arc<JwksStore> {
        &self.store
    }

    /// Tokens currently cached (for metrics).
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// Verifies a bearer token and returns the caller's identity.
    pub async fn verify(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TokenTooLarge);
        }
        let now = self.clock.unix_seconds();
        let hash = self.cache.is_enabled().then(|| TokenCache::hash(token));
        if self.store.is_fresh(now)
            && let Some(h) = &hash
            && let Some(id) = self.cache.get(h, now, self.store.generation())
        {
            return Ok(id);
        }

        let (header_b64, rest) = token.split_once('.').ok_or(AuthError::Malformed)?;
        let (payload_b64, signature_b64) = rest.split_once('.').ok_or(AuthError::Malformed)?;
        if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.contains('.') {
            return Err(AuthError::Malformed);
        }
        if signature_b64.is_empty() {
            return Err(AuthError::BadSignature);
        }
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| AuthError::Malformed)?;
        let header: TokenHeader<'_> =
            serde_json::from_slice(&header_json).map_err(|_| AuthError::Malformed)?;
        if header.crit {
            return Err(AuthError::UnsupportedCritical);
        }
        // "none" and unknown names do not parse; known names must be on the allow-list.
        let alg: Algorithm = header
            .alg
            .parse()
            .map_err(|_| AuthError::DisallowedAlgorithm)?;
        let validation = self
            .validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
            .ok_or(AuthError::DisallowedAlgorithm)?;

        let (key, generation) = self.store.key_for(header.kid.as_deref()).await?;
        if !key.accepts(alg) {
            return Err(AuthError::DisallowedAlgorithm);
        }
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding_key(), validation)
                .map_err(|e| map_jwt_error(e.kind()))?;
        let claims = data.claims;

        // Time, against the injected clock.
        let now = self.clock.unix_seconds();
        let exp = numeric_date(claims.get("exp"))?.ok_or(AuthError::MissingClaim)?;
        if now >= exp.saturating_add(self.leeway_secs) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = numeric_date(claims.get("nbf"))?
            && nbf > now.saturating_add(self.leeway_secs)
        {
            return Err(AuthError::NotYetValid);
        }
        // A token "issued" beyond the leeway in the future comes from a broken or hostile
        // clock; it would also outlive any maximum age.
        let iat = numeric_date(claims.get("iat"))?;
        if let Some(iat) = iat
            && iat > now.saturating_add(self.leeway_secs)
        {
            return Err(AuthError::IssuedInFuture);
        }
        // With a maximum age, `iat` + age acts as a second `exp`, leeway included.
        let dies_at = match self.max_age_secs {
            None => exp,
            Some(age) => {
                let too_old_at = iat.ok_or(AuthError::MissingClaim)?.saturating_add(age);
                if now >= too_old_at.saturating_add(self.leeway_secs) {
                    return Err(AuthError::TooOld);
                }
                exp.min(too_old_at)
            }
        };

        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(AuthError::MissingClaim)?;
        let scopes = match claims.get(self.scopes_claim.as_ref()) {
            None | Some(Value::Null) => ScopeSet::default(),
            Some(Value::String(s)) => ScopeSet::from_space_separated(s),
            Some(Value::Array(items)) => {
                ScopeSet::from_granted(items.iter().filter_map(Value::as_str))
            }
            Some(_) => return Err(AuthError::Malformed),
        };
        let amr = match claims.get("amr") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| s.len() <= MAX_AMR_BYTES)
                .take(MAX_AMR)
                .map(Box::from)
                .collect(),
            Some(_) => return Err(AuthError::Malformed),
        };
        let identity = Identity::new(
            subject,
            AuthMethod::Jwt {
                issuer: Arc::clone(&self.name),
            },
            scopes,
            amr,
        )
        .map_err(|_| AuthError::Malformed)?;
        let identity = Arc::new(identity);
        if let Some(h) = hash {
            self.cache
                .insert(h, Arc::clone(&identity), dies_at, now, generation);
        }
        Ok(identity)
    }
}

/// The token's `iss`, read WITHOUT verification: only to pick which issuer's verifier to run
/// when a route accepts several. Nothing is trusted from it.
pub(crate) fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: String,
    }
    let payload = token.split('.').nth(1)?;
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Iss>(&json).ok().map(|i| i.iss)
}

/// The header fields we read. Everything else (`jwk`, `jku`, `x5u`, `x5c`, ...) is ignored.
#[derive(Deserialize)]
struct TokenHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// True whenever the field is present, whatever its value (even `null`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// A JWT NumericDate (seconds, possibly fractional) as whole seconds; `Err` if not a number.
fn numeric_date(v: Option<&Value>) -> Result<Option<i64>, AuthError> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() => Ok(Some(f.floor() as i64)),
                    _ => Err(AuthError::Malformed),
                }
            }
        }
        Some(_) => Err(AuthError::Malformed),
    }
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => AuthError::DisallowedAlgorithm,
        ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaim,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        _ => AuthError::Malformed,
    }
}
