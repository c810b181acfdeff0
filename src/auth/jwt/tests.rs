//! Attack and behaviour tests for JWT verification, the key store and the refresher.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};

use super::*;
use crate::auth::error::AuthError;
use crate::clock::{ManualClock, SharedClock};
use crate::config::Secret;
use crate::sandbox::idp::{DEV_AUDIENCE, DevAlg, DevIdp, DevSigner, MintRequest, sign_parts};

const T0: i64 = 1_700_000_000;
const ISS: &str = "https://idp.test";

fn clock() -> (ManualClock, SharedClock) {
    let c = ManualClock::new(T0);
    (c.clone(), Arc::new(c))
}

fn settings(keys: KeySource) -> JwtIssuerSettings {
    JwtIssuerSettings::new(
        "internal-idp",
        ISS,
        vec![DEV_AUDIENCE.into()],
        keys,
        vec![Algorithm::RS256, Algorithm::ES256],
    )
}

/// A verifier whose keys are the signer's JWKS, fixed.
fn fixed_verifier(signer: &DevSigner, clock: &SharedClock) -> JwtVerifier {
    let s = settings(KeySource::JwksFile("unused".into()));
    let set = parse_jwks(
        signer.jwks().to_string().as_bytes(),
        &s.jwks_limits,
        &s.algorithms,
    )
    .unwrap();
    let store = JwksStore::fixed("internal-idp", set, Arc::clone(clock));
    JwtVerifier::with_store(&s, store, Arc::clone(clock)).unwrap()
}

fn mint(signer: &DevSigner, f: impl FnOnce(&mut MintRequest)) -> String {
    let mut r = MintRequest {
        sub: Some("svc-orders".into()),
        scope: Some("orders:read".into()),
        ..MintRequest::default()
    };
    f(&mut r);
    signer.mint(&r).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn good_claims() -> Value {
    json!({"iss": ISS, "sub": "x", "aud": DEV_AUDIENCE, "exp": T0 + 300})
}

#[tokio::test]
async fn accepts_valid_es256_and_rs256_tokens() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let v = fixed_verifier(&signer, &c);
    for alg in [DevAlg::ES256, DevAlg::RS256] {
        let t = mint(&signer, |r| {
            r.alg = alg;
            r.amr = Some(vec!["pwd".into(), "otp".into()]);
        });
        let id = v.verify(&t).await.unwrap();
        assert_eq!(id.subject(), "svc-orders");
        assert!(id.has_scope("orders:read"));
        assert_eq!(id.method_header(), "jwt:internal-idp");
        assert_eq!(id.amr().collect::<Vec<_>>(), ["pwd", "otp"]);
    }
}

#[tokio::test]
async fn refuses_alg_none_in_any_spelling() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let v = fixed_verifier(&signer, &c);
    let kid = signer.current_kid(DevAlg::ES256).unwrap();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        for sig in ["", "AAAA"] {
            let t = format!("{}.{}.{sig}", b64(&header), b64(&good_claims()));
            let e = v.verify(&t).await.unwrap_err();
            assert!(
                matches!(e, AuthError::DisallowedAlgorithm | AuthError::BadSignature),
                "{alg}/{sig}: {e:?}"
            );
        }
    }
}

#[tokio::test]
async fn refuses_hs256_signed_with_the_rsa_public_key() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let v = fixed_verifier(&signer, &c);
    let kid = signer.current_kid(DevAlg::RS256).unwrap();
    let jwks = signer.jwks();
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap()
        .clone();
    let n = URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap();
    let pem = signer.rsa_public_key_pem(&kid).unwrap().into_bytes();
    // Every public form of the key an attacker might try as the HMAC secret.
    for secret in [n, rsa.to_string().into_bytes(), pem] {
        let key = EncodingKey::from_secret(&secret).unwrap();
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let t = sign_parts(&header, &good_claims(), &key, Algorithm::HS256).unwrap();
        assert_eq!(
            v.verify(&t).await.err(),
            Some(AuthError::DisallowedAlgorithm)
        );
    }
}

#[tokio::test]
async fn time_claims_with_leeway() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let v = fixed_verifier(&signer, &c);
    let expired = mint(&signer, |r| r.exp = Some(T0 - 31));
    assert_eq!(v.verify(&expired).await.err(), Some(AuthError::Expired));
    let in_leeway = mint(&signer, |r| r.exp = Some(T0 - 10));
    assert!(v.verify(&in_leeway).await.is_ok());
    let future = mint(&signer, |r| r.nbf = Some(T0 + 31));
    assert_eq!(v.verify(&future).await.err(), Some(AuthError::NotYetValid));
    let nbf_in_leeway = mint(&signer, |r| r.nbf = Some(T0 + 10));
    assert!(v.verify(&nbf_in_leeway).await.is_ok());
    let no_exp = mint(&signer, |r| r.omit_exp = true);
    assert_eq!(v.verify(&no_exp).await.err(), Some(AuthError::MissingClaim));
    let text_exp = mint(&signer, |r| {
        r.omit_exp = true;
        r.extra_claims.insert("exp".into(), json!("never"));
    });
    assert!(v.verify(&text_exp).await.is_err());
}

#[tokio::test]
async fn iat_beyond_the_leeway_in_the_future_is_refused() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let v = fixed_verifier(&signer, &c);
    let issued_at = |iat: Value| {
        mint(&signer, |r| {
            r.exp = Some(T0 + 24 * 3600);
            r.extra_claims.insert("iat".into(), iat);
        })
    };
    for (iat, want) in [
        (json!(T0 + 31), Some(AuthError::IssuedInFuture)),
        (
            json!(T0 + 10 * 365 * 24 * 3600),
            Some(AuthError::IssuedInFuture),
        ),
        (json!(i64::MAX), Some(AuthError::IssuedInFuture)),
        (
            json!((T0 + 31) as f64 + 0.5),
            Some(AuthError::IssuedInFuture),
        ),
        (json!("tomorrow"), Some(AuthError::Malformed)),
        (json!(T0 + 30), None),
        (json!(T0 - 3600), None),
    ] {
        let got = v.verify(&issued_at(iat.clone())).await.err();
        assert_eq!(got, want, "iat {iat}");
    }
    assert_eq!(AuthError::IssuedInFuture.reason(), "token_issued_in_future");
}

/// An HMAC issuer with `max_token_age` (so tests can sign claim sets without `iat`).
fn aged_verifier(max_age: Option<Duration>, clock: &SharedClock) -> (JwtVerifier, EncodingKey) {
    let secret = Secret::new("0123456789abcdef0123456789abcdef");
    let mut s = settings(KeySource::HmacSecret(secret.clone()));
    s.algorithms = vec![Algorithm::HS256];
    s.max_token_age = max_age;
    let v = JwtVerifier::new(&s, Arc::clone(clock)).unwrap();
    let key = EncodingKey::from_secret(secret.expose().as_bytes()).unwrap();
    (v, key)
}

#[tokio::test]
async fn max_token_age_requires_iat_and_ends_a_long_lived_token() {
    let (m, c) = clock();
    let header = json!({"alg": "HS256"});
    let day = 24 * 3600;
    let (v, key) = aged_verifier(Some(Duration::from_secs(600)), &c);
    let claims = |iat: Option<i64>| {
        let mut claims = good_claims();
        claims["exp"] = json!(T0 + day);
        if let Some(iat) = iat {
            claims["iat"] = json!(iat);
        }
        sign_parts(&header, &claims, &key, Algorithm::HS256).unwrap()
    };

    // Without `iat` the age cannot be known: refused.
    assert_eq!(
        v.verify(&claims(None)).await.err(),
        Some(AuthError::MissingClaim)
    );
    // Older than 600 s + 30 s leeway, although `exp` is a day away.
    assert_eq!(
        v.verify(&claims(Some(T0 - 630))).await.err(),
        Some(AuthError::TooOld)
    );
    assert_eq!(AuthError::TooOld.reason(), "token_too_old");
    assert!(v.verify(&claims(Some(T0 - 629))).await.is_ok());

    // A fresh token is cached, but never past its age limit.
    let t = claims(Some(T0));
    let first = v.verify(&t).await.unwrap();
    assert!(Arc::ptr_eq(&first, &v.verify(&t).await.unwrap()), "cached");
    m.set(T0 + 600);
    let again = v.verify(&t).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &again), "the cache ends at iat + age");
    m.set(T0 + 630);
    assert_eq!(v.verify(&t).await.err(), Some(AuthError::TooOld));

    // Without the setting, `iat` stays optional and age is not limited.
    let (plain, key) = aged_verifier(None, &c);
    let mut no_iat = good_claims();
    no_iat["exp"] = json!(T0 + day);
    let t = sign_parts(&header, &no_iat, &key, Algorithm::HS256).unwrap();
    assert!(plain.verify(&t).await.is_ok());
    no_iat["iat"] = json!(T0 - 300 * day);
    let t = sign_parts(&header, &no_iat, &key, Algorithm::HS256).unwrap();
    assert!(plain.verify(&t).await.is_ok());
}

#[tokio::test]
async fn issuer_audience_and_subject() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let v = fixed_verifier(&signer, &c);
    let t = mint(&signer, |r| r.iss = Some("https://evil.test".into()));
    assert_eq!(v.verify(&t).await.err(), Some(AuthError::WrongIssuer));
    let t = mint(&signer, |r| r.aud = Some(json!("other-service")));
    assert_eq!(v.verify(&t).await.err(), Some(AuthError::WrongAudience));
    let t = mint(&signer, |r| r.aud = Some(json!(["other", DEV_AUDIENCE])));
    assert!(v.verify(&t).await.is_ok());
    let t = mint(&signer, |r| r.aud = Some(Value::Null));
    assert!(
        v.verify(&t).await.is_err(),
        "a token without aud is refused"
    );
    let t = mint(&signer, |r| {
        r.sub = Some("admin\r\nx-gateway-subject: root".into())
    });
    assert_eq!(v.verify(&t).await.err(), Some(AuthError::Malformed));
}

#[tokio::test]
async fn each_required_claim_must_be_present() {
    let (_, c) = clock();
    // An HMAC issuer, so the test can sign arbitrary claim sets.
    let secret = Secret::new("0123456789abcdef0123456789abcdef");
    let mut s = settings(KeySource::HmacSecret(secret.clone()));
    s.algorithms = vec![Algorithm::HS256];
    let v = JwtVerifier::new(&s, Arc::clone(&c)).unwrap();
    let key = EncodingKey::from_secret(secret.expose().as_bytes()).unwrap();
    let header = json!({"alg": "HS256"});
    for drop in ["aud", "iss", "sub", "exp"] {
        let mut claims = good_claims();
        claims.as_object_mut().unwrap().remove(drop);
        let t = sign_parts(&header, &claims, &key, Algorithm::HS256).unwrap();
        assert_eq!(
            v.verify(&t).await.err(),
            Some(AuthError::MissingClaim),
            "{drop}"
        );
    }
    let t = sign_parts(&header, &good_claims(), &key, Algorithm::HS256).unwrap();
    assert!(v.verify(&t).await.is_ok());
}

#[tokio::test]
async fn tampering_is_detected() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let v = fixed_verifier(&signer, &c);
    let t = mint(&signer, |_| {});
    let parts: Vec<&str> = t.split('.').collect();
    // Signature stripped.
    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(
        v.verify(&stripped).await.err(),
        Some(AuthError::BadSignature)
    );
    let two_parts = format!("{}.{}", parts[0], parts[1]);
    assert_eq!(v.verify(&two_parts).await.err(), Some(AuthError::Malformed));
    // Payload altered after signing (scopes escalated).
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = json!("orders:read admin pii:read");
    let altered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    assert_eq!(
        v.verify(&altered).await.err(),
        Some(AuthError::BadSignature)
    );
    // Signature from another token.
    let other = mint(&signer, |r| r.sub = Some("other".into()));
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        other.rsplit('.').next().unwrap()
    );
    assert_eq!(
        v.verify(&spliced).await.err(),
        Some(AuthError::BadSignature)
    );
    assert_eq!(v.verify("a.b.c.d").await.err(), Some(AuthError::Malformed));
    assert_eq!(v.verify("").await.err(), Some(AuthError::Malformed));
    assert_eq!(v.verify("!!.??.**").await.err(), Some(AuthError::Malformed));
}

#[tokio::test]
async fn keys_in_token_headers_are_ignored() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let v = fixed_verifier(&signer, &c);
    let attacker = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let attacker_signing_kid = attacker.current_kid(DevAlg::ES256).unwrap();
    let mut attacker_jwk = attacker.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == attacker_signing_kid)
        .unwrap()
        .clone();
    // Header kid the attacker names (unknown to us); the attacker's current key signs.
    let attacker_kid = "attacker-key".to_owned();
    attacker_jwk["kid"] = json!(attacker_kid);
    let legit_kid = signer.current_kid(DevAlg::ES256).unwrap();
    let embedded = |kid: &str, extra: (&str, Value)| {
        let mut h = Map::new();
        h.insert(extra.0.into(), extra.1);
        attacker
            .mint(&MintRequest {
                kid: Some(kid.into()),
                extra_header: h,
                ..MintRequest::default()
            })
            .unwrap()
    };
    for extra in [
        ("jwk", attacker_jwk.clone()),
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIBszCCAVmgAwIBAgIU"])),
    ] {
        // The attacker's own kid: not ours.
        let t = embedded(&attacker_kid, extra.clone());
        assert_eq!(
            v.verify(&t).await.err(),
            Some(AuthError::UnknownKey),
            "{}",
            extra.0
        );
        // Our kid, the attacker's signature.
        let t = embedded(&legit_kid, extra.clone());
        assert_eq!(
            v.verify(&t).await.err(),
            Some(AuthError::BadSignature),
            "{}",
            extra.0
        );
    }
}

#[tokio::test]
async fn crit_headers_are_refused() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let v = fixed_verifier(&signer, &c);
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), Value::Null] {
        let t = mint(&signer, |r| {
            r.extra_header.insert("crit".into(), crit.clone());
            r.extra_header.insert("b64".into(), json!(true));
        });
        assert_eq!(
            v.verify(&t).await.err(),
            Some(AuthError::UnsupportedCritical),
            "{crit}"
        );
    }
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_decoding() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let v = fixed_verifier(&signer, &c);
    let t = mint(&signer, |r| {
        r.extra_claims.insert("pad".into(), json!("x".repeat(9000)));
    });
    assert_eq!(v.verify(&t).await.err(), Some(AuthError::TokenTooLarge));
    let garbage = "%".repeat(8 * 1024 + 1);
    assert_eq!(
        v.verify(&garbage).await.err(),
        Some(AuthError::TokenTooLarge)
    );
}

#[tokio::test]
async fn unknown_kid_with_a_fixed_key_set() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let v = fixed_verifier(&signer, &c);
    let t = mint(&signer, |r| r.kid = Some("not-published".into()));
    assert_eq!(v.verify(&t).await.err(), Some(AuthError::UnknownKey));
}

#[tokio::test]
async fn algorithm_must_be_allowed_and_match_the_key() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let mut s = settings(KeySource::JwksFile("unused".into()));
    s.algorithms = vec![Algorithm::ES256];
    let set = parse_jwks(
        signer.jwks().to_string().as_bytes(),
        &s.jwks_limits,
        &[Algorithm::RS256, Algorithm::ES256],
    )
    .unwrap();
    let store = JwksStore::fixed("internal-idp", set, Arc::clone(&c));
    let v = JwtVerifier::with_store(&s, store, Arc::clone(&c)).unwrap();
    let rs = mint(&signer, |r| r.alg = DevAlg::RS256);
    assert_eq!(
        v.verify(&rs).await.err(),
        Some(AuthError::DisallowedAlgorithm)
    );
    // ES256 header naming the RSA key: family mismatch.
    let es_on_rsa = mint(&signer, |r| r.kid = signer.current_kid(DevAlg::RS256));
    assert_eq!(
        v.verify(&es_on_rsa).await.err(),
        Some(AuthError::DisallowedAlgorithm)
    );
}

#[tokio::test]
async fn scopes_from_a_configured_claim_string_or_array() {
    let (_, c) = clock();
    let secret = Secret::new("0123456789abcdef0123456789abcdef");
    let key = EncodingKey::from_secret(secret.expose().as_bytes()).unwrap();
    let mut s = settings(KeySource::HmacSecret(secret));
    s.algorithms = vec![Algorithm::HS256];
    s.scopes_claim = "scp".into();
    let v = JwtVerifier::new(&s, Arc::clone(&c)).unwrap();
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let mut claims = good_claims();
    claims["scp"] = json!(["orders:read", "pii:read", 7]);
    claims["scope"] = json!("admin");
    let t = sign_parts(&header, &claims, &key, Algorithm::HS256).unwrap();
    let id = v.verify(&t).await.unwrap();
    assert_eq!(id.scopes().joined().as_ref(), "orders:read pii:read");
    claims["scp"] = json!("a b");
    let t = sign_parts(&header, &claims, &key, Algorithm::HS256).unwrap();
    assert_eq!(
        v.verify(&t).await.unwrap().scopes().joined().as_ref(),
        "a b"
    );
    claims["scp"] = json!({"not": "scopes"});
    let t = sign_parts(&header, &claims, &key, Algorithm::HS256).unwrap();
    assert_eq!(v.verify(&t).await.err(), Some(AuthError::Malformed));
    // Wrong secret.
    let bad = EncodingKey::from_secret(b"another-secret-another-secret-xx").unwrap();
    let t = sign_parts(&header, &good_claims(), &bad, Algorithm::HS256).unwrap();
    assert_eq!(v.verify(&t).await.err(), Some(AuthError::BadSignature));
}

#[tokio::test]
async fn cached_tokens_expire_at_exp() {
    let (m, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let v = fixed_verifier(&signer, &c);
    let t = mint(&signer, |r| r.exp = Some(T0 + 60));
    let first = v.verify(&t).await.unwrap();
    assert_eq!(v.cached_tokens(), 1);
    let second = v.verify(&t).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second), "served from the cache");
    m.set(T0 + 60);
    // Past exp the cache no longer answers; the leeway still admits the token...
    let third = v.verify(&t).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &third));
    m.set(T0 + 91);
    // ...until exp + leeway.
    assert_eq!(v.verify(&t).await.err(), Some(AuthError::Expired));
}

// ---- Remote key store: rotation, unknown-kid burst, outage. -----------------------------------

/// Serves the signer's JWKS, counting fetches; can be switched off.
struct FakeIdp {
    signer: Arc<DevSigner>,
    fetches: AtomicU64,
    down: AtomicBool,
}

#[async_trait]
impl JwksFetcher for FakeIdp {
    async fn fetch(&self, _max: usize) -> Result<Vec<u8>, FetchError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        // Yield so concurrent callers really overlap with the fetch.
        tokio::task::yield_now().await;
        if self.down.load(Ordering::SeqCst) {
            return Err(FetchError::Status(503));
        }
        Ok(self.signer.jwks().to_string().into_bytes())
    }
}

struct Remote {
    clock: ManualClock,
    idp: Arc<FakeIdp>,
    verifier: JwtVerifier,
}

fn remote() -> Remote {
    let (m, c) = clock();
    let signer = Arc::new(DevSigner::new(ISS, Arc::clone(&c)).unwrap());
    let idp = Arc::new(FakeIdp {
        signer,
        fetches: AtomicU64::new(0),
        down: AtomicBool::new(false),
    });
    let mut url = JwksUrlSettings::new("https://idp.test/jwks");
    url.refresh = Duration::from_secs(300);
    url.unknown_kid_cooldown = Duration::from_secs(30);
    url.stale_if_error = Duration::from_secs(600);
    let s = settings(KeySource::JwksUrl(url.clone()));
    let store = JwksStore::remote(
        "internal-idp",
        &url,
        s.jwks_limits,
        &s.algorithms,
        Arc::clone(&idp) as Arc<dyn JwksFetcher>,
        Arc::clone(&c),
    );
    let verifier = JwtVerifier::with_store(&s, store, c).unwrap();
    Remote {
        clock: m,
        idp,
        verifier,
    }
}

impl Remote {
    fn fetches(&self) -> u64 {
        self.idp.fetches.load(Ordering::SeqCst)
    }
    fn mint(&self, f: impl FnOnce(&mut MintRequest)) -> String {
        mint(&self.idp.signer, f)
    }
}

#[tokio::test]
async fn first_use_fetches_keys() {
    let r = remote();
    let t = r.mint(|_| {});
    assert!(r.verifier.verify(&t).await.is_ok());
    assert_eq!(r.fetches(), 1);
    assert!(r.verifier.verify(&t).await.is_ok());
    assert_eq!(r.fetches(), 1);
}

#[tokio::test]
async fn rotation_is_picked_up_with_one_refetch() {
    let r = remote();
    r.verifier.store().refresh().await.unwrap();
    let old = r.mint(|_| {});
    assert!(r.verifier.verify(&old).await.is_ok());
    assert_eq!(r.fetches(), 1);

    let new_kid = r.idp.signer.rotate(DevAlg::ES256).unwrap();
    let new = r.mint(|_| {});
    assert!(new.len() > 10);
    let id = r.verifier.verify(&new).await.unwrap();
    assert_eq!(id.subject(), "svc-orders");
    assert_eq!(r.fetches(), 2, "exactly one refetch for the new kid");
    assert!(r.verifier.store().key_ids().contains(&new_kid));

    // The IdP drops the old key: once refetched, tokens signed with it fail, cached or not.
    let old_kid = r
        .verifier
        .store()
        .key_ids()
        .into_iter()
        .find(|k| k.starts_with("es-") && *k != new_kid)
        .unwrap();
    assert!(r.idp.signer.drop_key(&old_kid));
    r.verifier.store().refresh().await.unwrap();
    assert_eq!(
        r.verifier.verify(&old).await.err(),
        Some(AuthError::UnknownKey)
    );
    assert!(r.verifier.verify(&new).await.is_ok());
}

#[tokio::test]
async fn a_burst_of_random_kids_costs_one_fetch_per_cooldown() {
    let r = remote();
    r.verifier.store().refresh().await.unwrap();
    assert_eq!(r.fetches(), 1);
    let tokens: Vec<String> = (0..1000)
        .map(|i| r.mint(|m| m.kid = Some(format!("bogus-{i}-{}", rand::random::<u64>()))))
        .collect();
    let results = futures::future::join_all(tokens.iter().map(|t| r.verifier.verify(t))).await;
    assert!(
        results
            .iter()
            .all(|e| e.as_ref().err() == Some(&AuthError::UnknownKey))
    );
    assert_eq!(r.fetches(), 2, "one refetch for the whole burst");

    // Still inside the cooldown: nothing more.
    r.clock.advance(29);
    for t in tokens.iter().take(100) {
        assert_eq!(
            r.verifier.verify(t).await.err(),
            Some(AuthError::UnknownKey)
        );
    }
    assert_eq!(r.fetches(), 2);

    // Next cooldown window: at most one more.
    r.clock.advance(1);
    let results = futures::future::join_all(tokens.iter().map(|t| r.verifier.verify(t))).await;
    assert!(results.iter().all(Result::is_err));
    assert_eq!(r.fetches(), 3);
    // Valid tokens are unaffected throughout.
    assert!(r.verifier.verify(&r.mint(|_| {})).await.is_ok());
}

#[tokio::test]
async fn outage_keeps_keys_for_the_stale_window_then_fails_closed() {
    let r = remote();
    r.verifier.store().refresh().await.unwrap();
    let t = r.mint(|m| m.ttl_seconds = Some(3600));
    assert!(r.verifier.verify(&t).await.is_ok());

    r.idp.down.store(true, Ordering::SeqCst);
    r.clock.advance(300);
    assert!(r.verifier.store().refresh().await.is_err());
    r.clock.advance(299);
    // 599 s after the last success: cached keys (and the cached token) still work.
    assert!(r.verifier.verify(&t).await.is_ok());
    let fresh_token = r.mint(|m| m.ttl_seconds = Some(3600));
    assert!(r.verifier.verify(&fresh_token).await.is_ok());

    r.clock.advance(2);
    // Past stale_if_error: refused, even though the token was cached.
    assert_eq!(
        r.verifier.verify(&t).await.err(),
        Some(AuthError::KeysUnavailable)
    );
    assert_eq!(
        r.verifier.verify(&fresh_token).await.err(),
        Some(AuthError::KeysUnavailable)
    );
    let during = r.fetches();

    // The IdP comes back: after the cooldown a request triggers a fetch and tokens work again.
    r.idp.down.store(false, Ordering::SeqCst);
    r.clock.advance(30);
    assert!(r.verifier.verify(&t).await.is_ok());
    assert_eq!(r.fetches(), during + 1);
}

#[tokio::test]
async fn fetch_failures_and_bad_documents_keep_the_old_keys() {
    let r = remote();
    r.verifier.store().refresh().await.unwrap();
    let gen0 = r.verifier.store().generation();
    // Same document again: nothing changes, cached tokens stay valid.
    r.verifier.store().refresh().await.unwrap();
    assert_eq!(r.verifier.store().generation(), gen0);
    r.idp.down.store(true, Ordering::SeqCst);
    assert!(r.verifier.store().refresh().await.is_err());
    assert_eq!(r.verifier.store().generation(), gen0);
    assert_eq!(r.verifier.store().fetch_counts(), (3, 1));
}

#[tokio::test]
async fn refresher_runs_until_shutdown() {
    let r = remote();
    let refresher = JwksRefresher::new([Arc::clone(r.verifier.store())]);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn({
        let refresher = refresher.clone();
        async move { refresher.run(rx).await }
    });
    for _ in 0..500 {
        if r.fetches() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(r.fetches() >= 1, "refresher fetched at start");
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("refresher stops on shutdown")
        .unwrap();
    assert!(JwksRefresher::new([]).is_empty());
}

#[tokio::test]
async fn http_fetcher_against_the_dev_idp() {
    let (_, c) = clock();
    let idp = DevIdp::start(Arc::clone(&c)).await.unwrap();
    let mut s = JwtIssuerSettings::new(
        "dev",
        idp.issuer(),
        vec![DEV_AUDIENCE.into()],
        KeySource::JwksUrl(JwksUrlSettings::new(idp.jwks_url())),
        vec![Algorithm::ES256, Algorithm::RS256],
    );
    s.leeway = Duration::from_secs(5);
    let v = JwtVerifier::new(&s, Arc::clone(&c)).unwrap();
    let t = idp
        .mint(&MintRequest {
            alg: DevAlg::RS256,
            scope: Some("orders:read".into()),
            ..MintRequest::default()
        })
        .unwrap();
    assert!(v.verify(&t).await.unwrap().has_scope("orders:read"));
    assert_eq!(idp.jwks_fetches(), 1);

    idp.set_down(true);
    assert!(matches!(
        v.store().refresh().await,
        Err(super::store::RefreshError::Fetch(FetchError::Status(503)))
    ));
    idp.set_down(false);
    assert!(v.store().refresh().await.is_ok());

    // Document size bound on the wire.
    let mut small = JwksUrlSettings::new(idp.jwks_url());
    small.timeout = Duration::from_secs(5);
    let fetcher = HttpJwksFetcher::new(&small).unwrap();
    assert_eq!(fetcher.fetch(64).await.err(), Some(FetchError::TooLarge));
    assert!(fetcher.fetch(64 * 1024).await.is_ok());

    // Minting over HTTP (used by the demo).
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        )
        .build()
        .unwrap();
    let resp: Value = client
        .post(format!("http://{}/mint", idp.addr()))
        .json(&json!({"sub": "demo", "scope": "orders:read", "amr": ["mfa"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v.verify(resp["token"].as_str().unwrap()).await.unwrap();
    assert_eq!(id.subject(), "demo");
}

#[test]
fn file_source_is_loaded_and_validated() {
    let (_, c) = clock();
    let signer = DevSigner::new(ISS, Arc::clone(&c)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, signer.jwks().to_string()).unwrap();
    let v = JwtVerifier::new(&settings(KeySource::JwksFile(path.clone())), Arc::clone(&c)).unwrap();
    assert_eq!(v.store().key_ids().len(), 2);
    std::fs::write(&path, "{\"keys\": []}").unwrap();
    assert!(matches!(
        JwtVerifier::new(&settings(KeySource::JwksFile(path)), Arc::clone(&c)),
        Err(JwtConfigError::Keys { .. })
    ));
    assert!(
        JwtVerifier::new(
            &settings(KeySource::JwksFile(dir.path().join("missing.json"))),
            c
        )
        .is_err()
    );
}
