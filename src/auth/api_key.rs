//! API keys: configured as SHA-256 hex digests (never the key itself), each with a name and
//! scopes. A presented key is hashed and compared against every stored digest in constant time,
//! without stopping at the first match, so timing says nothing about which digest (if any) matched.
//! Logs and identities carry the key's name, never the key.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::error::AuthError;
use super::identity::{AuthMethod, Identity};
use super::scopes::ScopeSet;
use crate::config::Secret;

/// Longest key accepted; longer values are refused before hashing.
pub const MAX_API_KEY_BYTES: usize = 512;

/// One configured key.
#[derive(Debug, Clone)]
pub struct ApiKeySettings {
    /// Name shown in logs, metrics and `x-gateway-auth` (e.g. `batch-exporter`).
    pub name: String,
    /// Lowercase or uppercase hex SHA-256 of the key (64 hex digits), usually a secret reference.
    pub sha256_hex: Secret,
    /// Scopes granted to callers presenting this key.
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyConfigError {
    #[error("api key `{name}`: sha256 must be 64 hex digits")]
    BadDigest { name: String },
    #[error("api key `{name}`: invalid scope #{index}")]
    BadScope { name: String, index: usize },
    #[error("api key `{name}`: name must be non-empty visible ASCII")]
    BadName { name: String },
    #[error("api key `{name}` is configured twice")]
    DuplicateName { name: String },
    #[error("api keys `{first}` and `{second}` have the same digest")]
    DuplicateDigest { first: String, second: String },
}

struct StoredKey {
    digest: [u8; 32],
    identity: Arc<Identity>,
}

/// The configured keys, ready for lookups.
pub struct ApiKeyStore {
    keys: Box<[StoredKey]>,
}

impl std::fmt::Debug for ApiKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyStore")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl ApiKeyStore {
    pub fn new(settings: &[ApiKeySettings]) -> Result<Self, ApiKeyConfigError> {
        let mut keys: Vec<StoredKey> = Vec::with_capacity(settings.len());
        for s in settings {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(s.sha256_hex.expose().trim(), &mut digest).map_err(|_| {
                ApiKeyConfigError::BadDigest {
                    name: s.name.clone(),
                }
            })?;
            let scopes = ScopeSet::from_config(&s.scopes).map_err(|e| match e {
                super::scopes::ScopeError::Invalid { index } => ApiKeyConfigError::BadScope {
                    name: s.name.clone(),
                    index,
                },
            })?;
            let identity = Identity::new(
                &s.name,
                AuthMethod::ApiKey {
                    key: Arc::from(s.name.as_str()),
                },
                scopes,
                Vec::new(),
            )
            .map_err(|_| ApiKeyConfigError::BadName {
                name: s.name.clone(),
            })?;
            if let Some(other) = keys.iter().find(|k| k.identity.subject() == s.name) {
                return Err(ApiKeyConfigError::DuplicateName {
                    name: other.identity.subject().to_owned(),
                });
            }
            if let Some(other) = keys.iter().find(|k| k.digest == digest) {
                return Err(ApiKeyConfigError::DuplicateDigest {
                    first: other.identity.subject().to_owned(),
                    second: s.name.clone(),
                });
            }
            keys.push(StoredKey {
                digest,
                identity: Arc::new(identity),
            });
        }
        Ok(Self {
            keys: keys.into_boxed_slice(),
        })
    }

    /// The identity for a presented key, or `BadApiKey`.
    pub fn verify(&self, presented: &str) -> Result<Arc<Identity>, AuthError> {
        if presented.is_empty() || presented.len() > MAX_API_KEY_BYTES {
            return Err(AuthError::BadApiKey);
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Scan every key; remember the matching index with constant-time selects.
        let mut found = subtle::Choice::from(0u8);
        let mut index = 0u32;
        for (i, k) in self.keys.iter().enumerate() {
            let hit = k.digest.ct_eq(&digest);
            index = u32::conditional_select(&index, &(i as u32), hit);
            found |= hit;
        }
        if bool::from(found) {
            self.keys
                .get(index as usize)
                .map(|k| Arc::clone(&k.identity))
                .ok_or(AuthError::BadApiKey)
        } else {
            Err(AuthError::BadApiKey)
        }
    }

    /// Configured key names (for the admin status page).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.identity.subject())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(k: &str) -> Secret {
        Secret::new(hex::encode(Sha256::digest(k.as_bytes())))
    }

    fn store() -> ApiKeyStore {
        ApiKeyStore::new(&[
            ApiKeySettings {
                name: "batch-exporter".into(),
                sha256_hex: sha("k-batch-0123456789"),
                scopes: vec!["orders:read".into()],
            },
            ApiKeySettings {
                name: "ops".into(),
                sha256_hex: Secret::new(hex::encode_upper(Sha256::digest(b"k-ops"))),
                scopes: vec![],
            },
        ])
        .unwrap()
    }

    #[test]
    fn accepts_the_right_key_and_names_it() {
        let s = store();
        let id = s.verify("k-batch-0123456789").unwrap();
        assert_eq!(id.subject(), "batch-exporter");
        assert_eq!(id.method_header(), "api_key:batch-exporter");
        assert!(id.has_scope("orders:read"));
        assert_eq!(s.verify("k-ops").unwrap().subject(), "ops");
    }

    #[test]
    fn refuses_wrong_and_one_byte_off_keys() {
        let s = store();
        for bad in [
            "k-batch-0123456788",
            "k-batch-012345678",
            "k-batch-01234567899",
            "K-batch-0123456789",
            "",
            "wrong",
        ] {
            assert_eq!(s.verify(bad).err(), Some(AuthError::BadApiKey), "{bad}");
        }
        assert_eq!(
            s.verify(&"x".repeat(MAX_API_KEY_BYTES + 1)).err(),
            Some(AuthError::BadApiKey)
        );
        // The digest itself is not a key.
        let digest = hex::encode(Sha256::digest(b"k-ops"));
        assert_eq!(s.verify(&digest).err(), Some(AuthError::BadApiKey));
    }

    #[test]
    fn config_errors() {
        let bad = ApiKeySettings {
            name: "x".into(),
            sha256_hex: Secret::new("abc"),
            scopes: vec![],
        };
        assert!(matches!(
            ApiKeyStore::new(&[bad]),
            Err(ApiKeyConfigError::BadDigest { .. })
        ));
        let a = ApiKeySettings {
            name: "a".into(),
            sha256_hex: sha("same"),
            scopes: vec![],
        };
        let b = ApiKeySettings {
            name: "b".into(),
            ..a.clone()
        };
        assert!(matches!(
            ApiKeyStore::new(&[a.clone(), b]),
            Err(ApiKeyConfigError::DuplicateDigest { .. })
        ));
        assert!(matches!(
            ApiKeyStore::new(&[a.clone(), a]),
            Err(ApiKeyConfigError::DuplicateName { .. })
        ));
        // The digest (a secret) never shows in the error text.
        let err = ApiKeyStore::new(&[ApiKeySettings {
            name: "leaky".into(),
            sha256_hex: Secret::new("zz-secret-zz"),
            scopes: vec![],
        }])
        .unwrap_err();
        assert!(!err.to_string().contains("zz-secret-zz"));
    }
}
