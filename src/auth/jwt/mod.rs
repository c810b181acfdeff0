//! JWT bearer tokens: per-issuer settings, the key store (JWKS file, JWKS URL or HMAC secret),
//! the verifier with its cache of verified tokens, and the background JWKS refresher.

mod cache;
mod fetcher;
mod keys;
mod refresher;
mod settings;
mod store;
mod verifier;

pub use cache::TokenCache;
pub use fetcher::{FetchError, HttpJwksFetcher, JwksFetcher};
pub use keys::{JwksError, KeySet, VerifyingKey, parse_jwks};
pub use refresher::JwksRefresher;
pub use settings::{JwksLimits, JwksUrlSettings, JwtConfigError, JwtIssuerSettings, KeySource};
pub use store::JwksStore;
pub use verifier::JwtVerifier;
pub(crate) use verifier::unverified_issuer;

/// Signature algorithms, as named in `gateway.yaml` (`"RS256".parse::<JwtAlgorithm>()`).
pub use jsonwebtoken::Algorithm as JwtAlgorithm;

#[cfg(test)]
mod tests;
