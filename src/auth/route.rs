//! A route's authentication and authorization requirement, the entry point the pipeline calls.
//!
//! The route lists the methods it accepts, in order; the first whose credentials the request
//! carries decides (a bad token is refused, not passed on to the next method). Then every
//! required scope must be present. Failure to authenticate is a 401, missing scopes a 403.

use std::sync::Arc;

use http::HeaderMap;

use super::api_key::ApiKeyStore;
use super::credentials::{api_key, bearer_token, has_authorization};
use super::error::AuthError;
use super::identity::Identity;
use super::jwt::JwtVerifier;
use super::mtls::MtlsAuthenticator;
use super::scopes::ScopeSet;

/// One way a route lets callers in.
#[derive(Debug, Clone)]
pub enum AcceptedMethod {
    Jwt(Arc<JwtVerifier>),
    ApiKey(Arc<ApiKeyStore>),
    /// A verified TLS client certificate.
    Mtls(Arc<MtlsAuthenticator>),
    /// `auth: none`, explicitly: everyone, as the anonymous identity.
    Anonymous,
}

/// What the request offers: its headers and, on a TLS listener with client auth, the verified
/// leaf certificate (DER) of the connection.
#[derive(Clone, Copy)]
pub struct RequestCredentials<'a> {
    pub headers: &'a HeaderMap,
    pub client_cert_der: Option<&'a [u8]>,
}

/// Header names only: the values are the credentials.
impl std::fmt::Debug for RequestCredentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCredentials")
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .field("client_cert", &self.client_cert_der.is_some())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteAuthError {
    #[error("a route must accept at least one auth method")]
    NoMethods,
    #[error("`none` cannot be combined with other auth methods or required scopes")]
    AnonymousMixed,
}

#[derive(Debug, Clone)]
pub struct RouteAuth {
    methods: Box<[AcceptedMethod]>,
    required: ScopeSet,
    anonymous: Arc<Identity>,
    /// More than one JWT issuer: pick by the token's (unverified) `iss`.
    several_issuers: bool,
}

impl RouteAuth {
    pub fn new(methods: Vec<AcceptedMethod>, required: ScopeSet) -> Result<Self, RouteAuthError> {
        if methods.is_empty() {
            return Err(RouteAuthError::NoMethods);
        }
        let anonymous = methods
            .iter()
            .any(|m| matches!(m, AcceptedMethod::Anonymous));
        if anonymous && (methods.len() > 1 || !required.is_empty()) {
            return Err(RouteAuthError::AnonymousMixed);
        }
        let issuers = methods
            .iter()
            .filter(|m| matches!(m, AcceptedMethod::Jwt(_)))
            .count();
        Ok(Self {
            methods: methods.into_boxed_slice(),
            required,
            anonymous: Arc::new(Identity::anonymous()),
            several_issuers: issuers > 1,
        })
    }

    pub fn required_scopes(&self) -> &ScopeSet {
        &self.required
    }

    /// Authenticates, then authorizes: the whole stage 2-3 for one request.
    pub async fn check(&self, req: &RequestCredentials<'_>) -> Result<Arc<Identity>, AuthError> {
        let identity = self.authenticate(req).await?;
        self.authorize(&identity)?;
        Ok(identity)
    }

    /// Who the caller is, by the first accepted method whose credentials are present.
    pub async fn authenticate(
        &self,
        req: &RequestCredentials<'_>,
    ) -> Result<Arc<Identity>, AuthError> {
        let mut bearer_seen = false;
        for method in self.methods.iter() {
            match method {
                AcceptedMethod::Jwt(verifier) => {
                    let Some(token) = bearer_token(req.headers)? else {
                        continue;
                    };
                    bearer_seen = true;
                    if self.several_issuers
                        && super::jwt::unverified_issuer(token).as_deref()
                            != Some(verifier.issuer())
                    {
                        continue;
                    }
                    return verifier.verify(token).await;
                }
                AcceptedMethod::ApiKey(store) => {
                    if let Some(key) = api_key(req.headers)? {
                        return store.verify(key);
                    }
                }
                AcceptedMethod::Mtls(auth) => {
                    if let Some(der) = req.client_cert_der {
                        return auth.identify(der);
                    }
                }
                AcceptedMethod::Anonymous => return Ok(Arc::clone(&self.anonymous)),
            }
        }
        if bearer_seen {
            // A bearer token from none of the accepted issuers.
            Err(AuthError::WrongIssuer)
        } else if has_authorization(req.headers) {
            Err(AuthError::WrongScheme)
        } else {
            Err(AuthError::MissingCredentials)
        }
    }

    /// Every required scope must be present.
    pub fn authorize(&self, identity: &Identity) -> Result<(), AuthError> {
        if identity.scopes().contains_all(&self.required) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                required: Arc::clone(self.required.joined()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::api_key::ApiKeySettings;
    use crate::auth::jwt::JwksStore;
    use crate::auth::jwt::{JwtIssuerSettings, KeySource, parse_jwks};
    use crate::auth::mtls::{MtlsRule, MtlsSettings, SubjectMatch};
    use crate::clock::{ManualClock, SharedClock};
    use crate::config::Secret;
    use crate::sandbox::idp::{DEV_AUDIENCE, DevSigner, MintRequest};
    use http::{HeaderValue, StatusCode};

    #[test]
    fn credentials_debug_shows_header_names_not_values() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("Bearer eyJhbGciOi.secret"),
        );
        let c = RequestCredentials {
            headers: &headers,
            client_cert_der: None,
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("authorization") && !shown.contains("eyJ"),
            "{shown}"
        );
    }
    use sha2::{Digest, Sha256};

    const ISS: &str = "https://idp.test";
    const KEY: &str = "k-batch-0123456789";

    struct Fixture {
        signer: DevSigner,
        jwt: Arc<JwtVerifier>,
        keys: Arc<ApiKeyStore>,
        mtls: Arc<MtlsAuthenticator>,
    }

    fn fixture() -> Fixture {
        let clock: SharedClock = Arc::new(ManualClock::new(1_700_000_000));
        let signer = DevSigner::new(ISS, Arc::clone(&clock)).unwrap();
        let s = JwtIssuerSettings::new(
            "internal-idp",
            ISS,
            vec![DEV_AUDIENCE.into()],
            KeySource::JwksFile("unused".into()),
            vec![jsonwebtoken::Algorithm::ES256],
        );
        let set = parse_jwks(
            signer.jwks().to_string().as_bytes(),
            &s.jwks_limits,
            &s.algorithms,
        )
        .unwrap();
        let store = JwksStore::fixed("internal-idp", set, Arc::clone(&clock));
        let jwt = Arc::new(JwtVerifier::with_store(&s, store, clock).unwrap());
        let keys = Arc::new(
            ApiKeyStore::new(&[ApiKeySettings {
                name: "batch-exporter".into(),
                sha256_hex: Secret::new(hex::encode(Sha256::digest(KEY))),
                scopes: vec!["orders:read".into()],
            }])
            .unwrap(),
        );
        let mtls = Arc::new(
            MtlsAuthenticator::new(&MtlsSettings {
                rules: vec![MtlsRule {
                    matches: SubjectMatch::Dns("svc.internal".into()),
                    scopes: vec!["orders:read".into()],
                }],
                require_rule_match: true,
            })
            .unwrap(),
        );
        Fixture {
            signer,
            jwt,
            keys,
            mtls,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn route(f: &Fixture, scopes: &[&str]) -> RouteAuth {
        RouteAuth::new(
            vec![
                AcceptedMethod::Jwt(Arc::clone(&f.jwt)),
                AcceptedMethod::ApiKey(Arc::clone(&f.keys)),
            ],
            ScopeSet::from_config(scopes).unwrap(),
        )
        .unwrap()
    }

    async fn check(r: &RouteAuth, h: &HeaderMap) -> Result<Arc<Identity>, AuthError> {
        r.check(&RequestCredentials {
            headers: h,
            client_cert_der: None,
        })
        .await
    }

    #[tokio::test]
    async fn first_present_method_decides() {
        let f = fixture();
        let r = route(&f, &["orders:read"]);
        let token = f
            .signer
            .mint(&MintRequest {
                scope: Some("orders:read".into()),
                ..MintRequest::default()
            })
            .unwrap();
        let bearer = format!("Bearer {token}");
        let id = check(&r, &headers(&[("authorization", &bearer)]))
            .await
            .unwrap();
        assert_eq!(id.method_header(), "jwt:internal-idp");
        let id = check(&r, &headers(&[("x-api-key", KEY)])).await.unwrap();
        assert_eq!(id.method_header(), "api_key:batch-exporter");
        let apikey = format!("ApiKey {KEY}");
        let id = check(&r, &headers(&[("authorization", &apikey)]))
            .await
            .unwrap();
        assert_eq!(id.subject(), "batch-exporter");
        // A bad token is refused even though a good API key is also present.
        let e = check(
            &r,
            &headers(&[("authorization", "Bearer a.b.c"), ("x-api-key", KEY)]),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn refusals_with_status_and_reason() {
        let f = fixture();
        let r = route(&f, &["orders:read"]);
        let cases: Vec<(HeaderMap, &str)> = vec![
            (headers(&[]), "missing_credentials"),
            (
                headers(&[("authorization", "Basic dXNlcjpwYXNz")]),
                "wrong_scheme",
            ),
            (headers(&[("authorization", "Token abc")]), "wrong_scheme"),
            (
                headers(&[("x-api-key", "k-batch-0123456788")]),
                "bad_api_key",
            ),
            (
                headers(&[("authorization", "Bearer e30.e30.")]),
                "bad_signature",
            ),
        ];
        for (h, reason) in cases {
            let e = check(&r, &h).await.unwrap_err();
            assert_eq!(e.reason(), reason);
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
            assert!(e.www_authenticate().starts_with("Bearer realm="));
        }
    }

    #[tokio::test]
    async fn insufficient_scope_is_403_naming_the_scopes() {
        let f = fixture();
        let r = route(&f, &["orders:read", "pii:read"]);
        let e = check(&r, &headers(&[("x-api-key", KEY)]))
            .await
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            e.www_authenticate(),
            "Bearer realm=\"tiktok-gateway\", error=\"insufficient_scope\", scope=\"orders:read pii:read\""
        );
        // Never echo the credential.
        assert!(!format!("{e:?} {e}").contains(KEY));
    }

    #[tokio::test]
    async fn mtls_and_anonymous() {
        let f = fixture();
        let r = RouteAuth::new(
            vec![AcceptedMethod::Mtls(Arc::clone(&f.mtls))],
            ScopeSet::from_config(["orders:read"]).unwrap(),
        )
        .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let der = rcgen::CertificateParams::new(vec!["svc.internal".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec();
        let h = headers(&[]);
        let id = r
            .check(&RequestCredentials {
                headers: &h,
                client_cert_der: Some(&der),
            })
            .await
            .unwrap();
        assert_eq!(id.subject(), "svc.internal");
        assert_eq!(
            check(&r, &h).await.unwrap_err(),
            AuthError::MissingCredentials
        );

        let open = RouteAuth::new(vec![AcceptedMethod::Anonymous], ScopeSet::default()).unwrap();
        assert_eq!(check(&open, &h).await.unwrap().method_header(), "none");
        assert_eq!(
            RouteAuth::new(
                vec![AcceptedMethod::Anonymous],
                ScopeSet::from_config(["x"]).unwrap()
            )
            .err(),
            Some(RouteAuthError::AnonymousMixed)
        );
        assert_eq!(
            RouteAuth::new(vec![], ScopeSet::default()).err(),
            Some(RouteAuthError::NoMethods)
        );
    }

    #[tokio::test]
    async fn several_issuers_pick_by_iss() {
        let f = fixture();
        let clock: SharedClock = Arc::new(ManualClock::new(1_700_000_000));
        let secret = Secret::new("0123456789abcdef0123456789abcdef");
        let mut s = JwtIssuerSettings::new(
            "partner",
            "https://partner.test",
            vec![DEV_AUDIENCE.into()],
            KeySource::HmacSecret(secret.clone()),
            vec![jsonwebtoken::Algorithm::HS256],
        );
        s.cache_capacity = 0;
        let partner = Arc::new(JwtVerifier::new(&s, clock).unwrap());
        let r = RouteAuth::new(
            vec![
                AcceptedMethod::Jwt(Arc::clone(&f.jwt)),
                AcceptedMethod::Jwt(partner),
            ],
            ScopeSet::default(),
        )
        .unwrap();
        let ours = f.signer.mint(&MintRequest::default()).unwrap();
        let id = check(
            &r,
            &headers(&[("authorization", &format!("Bearer {ours}"))]),
        )
        .await
        .unwrap();
        assert_eq!(id.method_header(), "jwt:internal-idp");
        let theirs = crate::sandbox::idp::sign_parts(
            &serde_json::json!({"alg": "HS256"}),
            &serde_json::json!({"iss": "https://partner.test", "sub": "p", "aud": DEV_AUDIENCE,
                "exp": 1_700_000_300}),
            &jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()).unwrap(),
            jsonwebtoken::Algorithm::HS256,
        )
        .unwrap();
        let id = check(
            &r,
            &headers(&[("authorization", &format!("Bearer {theirs}"))]),
        )
        .await
        .unwrap();
        assert_eq!(id.method_header(), "jwt:partner");
        let stranger = f
            .signer
            .mint(&MintRequest {
                iss: Some("https://stranger.test".into()),
                ..MintRequest::default()
            })
            .unwrap();
        assert_eq!(
            check(
                &r,
                &headers(&[("authorization", &format!("Bearer {stranger}"))])
            )
            .await
            .unwrap_err(),
            AuthError::WrongIssuer
        );
    }
}
