//! Verification keys: a parsed, bounded JWKS document (or an HMAC secret) as a key set looked up
//! by `kid`.
//!
//! Only public signature keys are taken from a JWKS: `oct` (symmetric) keys are skipped, so a
//! published public key can never be turned into an HMAC secret; keys marked for encryption,
//! keys for algorithms the issuer does not allow, RSA keys under 2048 bits and keys with
//! malformed parameters are skipped too. Keys never come from token headers.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::AlgorithmFamily;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::settings::JwksLimits;
use crate::config::Secret;

/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// One key able to verify signatures.
pub struct VerifyingKey {
    kid: Option<Box<str>>,
    /// The JWK's own `alg`, when it names one: then only that algorithm may use the key.
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether a token signed with `alg` may be checked with this key: same family (so an RSA or
    /// EC key is never used as an HMAC secret) and, if the JWK pins an algorithm, that one.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        alg.family() == self.family && self.alg.is_none_or(|a| a == alg)
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// An immutable set of keys, swapped as a whole when the source changes.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<Box<str>, Arc<VerifyingKey>>,
    all: Vec<Arc<VerifyingKey>>,
    digest: [u8; 32],
    /// Set by the store when it installs the set; cached verifications remember it.
    pub(super) generation: u64,
}

impl KeySet {
    /// The single key of an HMAC-secret issuer. It carries no `kid`, so any `kid` selects it.
    pub fn hmac(secret: &Secret) -> Result<Self, JwksError> {
        let key = DecodingKey::from_secret(secret.expose().as_bytes())
            .map_err(|_| JwksError::NoUsableKeys)?;
        let vk = Arc::new(VerifyingKey {
            kid: None,
            alg: None,
            family: AlgorithmFamily::Hmac,
            key,
        });
        Ok(Self {
            by_kid: HashMap::new(),
            all: vec![vk],
            digest: Sha256::digest(secret.expose().as_bytes()).into(),
            generation: 0,
        })
    }

    /// The key for a token's `kid`. A token without `kid`, or a set whose only key has no `kid`,
    /// resolves to that single key; otherwise the `kid` must match exactly.
    pub fn find(&self, kid: Option<&str>) -> Option<&Arc<VerifyingKey>> {
        if let Some(k) = kid.and_then(|k| self.by_kid.get(k)) {
            return Some(k);
        }
        match self.all.as_slice() {
            [only] if kid.is_none() || only.kid.is_none() => Some(only),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Key ids in the set (for the admin status page).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.all.iter().filter_map(|k| k.kid())
    }

    /// SHA-256 of the source document: equal digests mean nothing changed.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Bumped by the store each time the key material changes.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS document larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("JWKS document has more than {max} keys")]
    TooManyKeys { max: usize },
    #[error("JWKS document is not a JSON object with a `keys` array")]
    NotJwks,
    #[error("JWKS document has no usable signature key")]
    NoUsableKeys,
    #[error("JWKS document repeats a key id")]
    DuplicateKid,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Parses a JWKS document, keeping only usable public signature keys for `allowed` algorithms.
pub fn parse_jwks(
    bytes: &[u8],
    limits: &JwksLimits,
    allowed: &[Algorithm],
) -> Result<KeySet, JwksError> {
    if bytes.len() > limits.max_bytes {
        return Err(JwksError::TooLarge {
            max: limits.max_bytes,
        });
    }
    let doc: Document = serde_json::from_slice(bytes).map_err(|_| JwksError::NotJwks)?;
    if doc.keys.len() > limits.max_keys {
        return Err(JwksError::TooManyKeys {
            max: limits.max_keys,
        });
    }
    let mut set = KeySet {
        digest: Sha256::digest(bytes).into(),
        ..KeySet::default()
    };
    for jwk in &doc.keys {
        let Some(vk) = parse_key(jwk, allowed) else {
            tracing::debug!("skipping unusable JWKS key");
            continue;
        };
        let vk = Arc::new(vk);
        if let Some(kid) = &vk.kid
            && set.by_kid.insert(kid.clone(), Arc::clone(&vk)).is_some()
        {
            return Err(JwksError::DuplicateKid);
        }
        set.all.push(vk);
    }
    if set.all.is_empty() {
        return Err(JwksError::NoUsableKeys);
    }
    Ok(set)
}

fn str_field<'a>(jwk: &'a serde_json::Map<String, serde_json::Value>, k: &str) -> Option<&'a str> {
    jwk.get(k).and_then(serde_json::Value::as_str)
}

fn b64_field(jwk: &serde_json::Map<String, serde_json::Value>, k: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(str_field(jwk, k)?).ok()
}

fn parse_key(
    jwk: &serde_json::Map<String, serde_json::Value>,
    allowed: &[Algorithm],
) -> Option<VerifyingKey> {
    if str_field(jwk, "use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops.as_array()?;
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return None;
        }
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(v) => Some(Box::<str>::from(v.as_str()?)),
    };
    let alg = match str_field(jwk, "alg") {
        None => None,
        Some(a) => Some(a.parse::<Algorithm>().ok()?),
    };
    let (family, key) = match str_field(jwk, "kty")? {
        "RSA" => {
            let n = b64_field(jwk, "n")?;
            let e = b64_field(jwk, "e")?;
            let n_trimmed = strip_leading_zeros(&n);
            let e_trimmed = strip_leading_zeros(&e);
            if n_trimmed.len() < MIN_RSA_MODULUS_BYTES
                || e_trimmed.is_empty()
                || e_trimmed.len() > 8
                || e_trimmed.last().is_some_and(|b| b & 1 == 0)
            {
                return None;
            }
            (
                AlgorithmFamily::Rsa,
                DecodingKey::from_rsa_raw_components(n_trimmed, e_trimmed),
            )
        }
        "EC" => {
            let (len, curve_alg) = match str_field(jwk, "crv")? {
                "P-256" => (32, Algorithm::ES256),
                "P-384" => (48, Algorithm::ES384),
                _ => return None,
            };
            if alg.is_some_and(|a| a != curve_alg) {
                return None;
            }
            let x = b64_field(jwk, "x")?;
            let y = b64_field(jwk, "y")?;
            if x.len() != len || y.len() != len {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (AlgorithmFamily::Ec, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            if str_field(jwk, "crv")? != "Ed25519" {
                return None;
            }
            let x = b64_field(jwk, "x")?;
            if x.len() != 32 {
                return None;
            }
            (AlgorithmFamily::Ed, DecodingKey::from_ed_der(&x))
        }
        // `oct` and anything else: never a verification key from a published document.
        _ => return None,
    };
    if alg.is_some_and(|a| a.family() != family) {
        return None;
    }
    // Keep only keys some allowed algorithm can use.
    let usable = allowed
        .iter()
        .any(|a| a.family() == family && alg.is_none_or(|k| k == *a));
    usable.then_some(VerifyingKey {
        kid,
        alg,
        family,
        key,
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa_n() -> String {
        let mut n = vec![0xc3u8; 256];
        n[255] = 0x01;
        URL_SAFE_NO_PAD.encode(n)
    }

    fn ec_xy() -> (String, String) {
        (
            URL_SAFE_NO_PAD.encode([1u8; 32]),
            URL_SAFE_NO_PAD.encode([2u8; 32]),
        )
    }

    fn parse(doc: serde_json::Value, allowed: &[Algorithm]) -> Result<KeySet, JwksError> {
        parse_jwks(doc.to_string().as_bytes(), &JwksLimits::default(), allowed)
    }

    #[test]
    fn keeps_signature_keys_and_skips_the_rest() {
        let (x, y) = ec_xy();
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "r1", "n": rsa_n(), "e": "AQAB", "alg": "RS256", "use": "sig"},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": x, "y": y},
            {"kty": "oct", "kid": "h1", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "n": rsa_n(), "e": "AQAB", "use": "enc"},
            {"kty": "RSA", "kid": "small", "n": URL_SAFE_NO_PAD.encode([0xc3u8; 128]), "e": "AQAB"},
            {"kty": "RSA", "kid": "hs", "n": rsa_n(), "e": "AQAB", "alg": "HS256"},
            {"kty": "EC", "kid": "badlen", "crv": "P-256", "x": "AQ", "y": "AQ"},
            {"kty": "weird", "kid": "w"}
        ]});
        let set = parse(doc, &[Algorithm::RS256, Algorithm::ES256]).unwrap();
        let mut kids: Vec<_> = set.kids().collect();
        kids.sort();
        assert_eq!(kids, ["e1", "r1"]);
        let r1 = set.find(Some("r1")).unwrap();
        assert!(r1.accepts(Algorithm::RS256));
        assert!(!r1.accepts(Algorithm::RS512), "JWK alg pins the algorithm");
        assert!(
            !r1.accepts(Algorithm::HS256),
            "an RSA key is never an HMAC secret"
        );
        let e1 = set.find(Some("e1")).unwrap();
        assert!(e1.accepts(Algorithm::ES256));
        assert!(!e1.accepts(Algorithm::HS256));
        assert!(
            set.find(Some("h1")).is_none(),
            "symmetric keys are never loaded"
        );
        assert!(set.find(Some("nope")).is_none());
        assert!(
            set.find(None).is_none(),
            "no kid with several keys is ambiguous"
        );
    }

    #[test]
    fn skips_keys_for_algorithms_not_allowed() {
        let (x, y) = ec_xy();
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "r1", "n": rsa_n(), "e": "AQAB"},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": x, "y": y}
        ]});
        let set = parse(doc, &[Algorithm::ES256]).unwrap();
        assert_eq!(set.kids().collect::<Vec<_>>(), ["e1"]);
        // A single key resolves a token without kid.
        assert!(set.find(None).is_some());
    }

    #[test]
    fn bounds_and_shape() {
        let limits = JwksLimits {
            max_bytes: 100,
            max_keys: 2,
        };
        let big = format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(200));
        assert_eq!(
            parse_jwks(big.as_bytes(), &limits, &[Algorithm::RS256]).err(),
            Some(JwksError::TooLarge { max: 100 })
        );
        let many = r#"{"keys":[{},{},{}]}"#;
        assert_eq!(
            parse_jwks(many.as_bytes(), &limits, &[Algorithm::RS256]).err(),
            Some(JwksError::TooManyKeys { max: 2 })
        );
        assert_eq!(
            parse(json!([1, 2]), &[Algorithm::RS256]).err(),
            Some(JwksError::NotJwks)
        );
        assert_eq!(
            parse(json!({"keys": []}), &[Algorithm::RS256]).err(),
            Some(JwksError::NoUsableKeys)
        );
        let dup = json!({"keys": [
            {"kty": "RSA", "kid": "r1", "n": rsa_n(), "e": "AQAB"},
            {"kty": "RSA", "kid": "r1", "n": rsa_n(), "e": "AQAB"}
        ]});
        assert_eq!(
            parse(dup, &[Algorithm::RS256]).err(),
            Some(JwksError::DuplicateKid)
        );
    }

    #[test]
    fn hmac_set_resolves_any_kid_to_its_secret() {
        let set = KeySet::hmac(&Secret::new("k".repeat(32))).unwrap();
        assert!(
            set.find(Some("whatever"))
                .unwrap()
                .accepts(Algorithm::HS256)
        );
        assert!(!set.find(None).unwrap().accepts(Algorithm::RS256));
    }
}
