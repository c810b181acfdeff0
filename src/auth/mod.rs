//! Authentication and authorization: JWT (JWKS), API keys, mTLS identities, scopes (policy §3, §6).
