//! Authentication and authorization: JWT (JWKS), API keys, mTLS identities, scopes (policy §3, §6).
//!
//! The pipeline builds one [`RouteAuth`] per route from runtime settings and calls
//! [`RouteAuth::check`] per request: it authenticates with the first accepted method whose
//! credentials are present, then checks the route's scopes. Every refusal is an [`AuthError`]
//! carrying a fixed metrics reason, an HTTP status and a `WWW-Authenticate` value.

pub mod api_key;
pub mod client_verifier;
pub mod credentials;
pub mod error;
pub mod identity;
pub mod jwt;
pub mod mfa;
pub mod mtls;
pub mod propagation;
pub mod route;
pub mod scopes;

pub use api_key::{ApiKeyConfigError, ApiKeySettings, ApiKeyStore};
pub use client_verifier::{
    ClientAuthMode, ClientVerifierError, RotatingClientVerifier, build_client_verifier,
    build_client_verifier_from_pem,
};
pub use error::AuthError;
pub use identity::{AuthMethod, Identity};
pub use jwt::{
    JwksFetcher, JwksRefresher, JwksStore, JwksUrlSettings, JwtAlgorithm, JwtConfigError,
    JwtIssuerSettings, JwtVerifier, KeySource,
};
pub use mfa::{AdminAccess, MfaPolicy};
pub use mtls::{
    CertNames, MtlsAuthenticator, MtlsConfigError, MtlsRule, MtlsSettings, SubjectMatch,
};
pub use route::{AcceptedMethod, RequestCredentials, RouteAuth, RouteAuthError};
pub use scopes::{ScopeError, ScopeSet};
