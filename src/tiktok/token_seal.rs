//! Shop tokens sealed for the state store: ChaCha20-Poly1305 with the `tiktok.token_store.key`,
//! a fresh random nonce per write, and the shop id (with a fixed label and the format version) as
//! associated data, so sealed tokens copied onto another shop's row, or tampered with, fail to
//! open instead of being used.
//!
//! Layout: version byte, 12-byte nonce, ciphertext and tag of a JSON object.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::token_store::{TokenSet, decode_key};
use crate::config::Secret;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const LABEL: &[u8] = b"tiktok-gateway/shop-tokens/v1\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SealError {
    #[error("token store key must be 32 bytes, hex (64 digits) or base64")]
    BadKey,
    #[error("stored tokens cannot be opened (wrong key, another shop's row, or tampered)")]
    Open,
    #[error("tokens cannot be sealed")]
    Seal,
}

#[derive(Serialize, Deserialize)]
struct Plain {
    access_token: String,
    access_expires_at: i64,
    refresh_token: String,
    refresh_expires_at: i64,
}

/// Seals and opens one shop's tokens.
#[derive(Clone)]
pub struct TokenSealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for TokenSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSealer([redacted])")
    }
}

fn aad(shop: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(LABEL.len() + 1 + shop.len());
    aad.extend_from_slice(LABEL);
    aad.push(VERSION);
    aad.extend_from_slice(shop.as_bytes());
    aad
}

impl TokenSealer {
    pub fn new(key: &Secret) -> Result<Self, SealError> {
        let key = decode_key(key.expose()).map_err(|_| SealError::BadKey)?;
        Ok(Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    pub fn seal(&self, shop: &str, tokens: &TokenSet) -> Result<Vec<u8>, SealError> {
        let plain = serde_json::to_vec(&Plain {
            access_token: tokens.access_token.expose().to_owned(),
            access_expires_at: tokens.access_expires_at,
            refresh_token: tokens.refresh_token.expose().to_owned(),
            refresh_expires_at: tokens.refresh_expires_at,
        })
        .map_err(|_| SealError::Seal)?;
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = aad(shop);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn open(&self, shop: &str, sealed: &[u8]) -> Result<TokenSet, SealError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        let aad = aad(shop);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Open)?;
        let p: Plain = serde_json::from_slice(&plain).map_err(|_| SealError::Open)?;
        Ok(TokenSet {
            access_token: Secret::new(p.access_token),
            access_expires_at: p.access_expires_at,
            refresh_token: Secret::new(p.refresh_token),
            refresh_expires_at: p.refresh_expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn tokens() -> TokenSet {
        TokenSet {
            access_token: Secret::new("ROW_access_secret"),
            access_expires_at: 1_718_900_000,
            refresh_token: Secret::new("ROW_refresh_secret"),
            refresh_expires_at: 1_750_000_000,
        }
    }

    #[test]
    fn seals_with_a_fresh_nonce_and_binds_the_shop() {
        let sealer = TokenSealer::new(&Secret::new(KEY)).unwrap();
        let a = sealer.seal("7494", &tokens()).unwrap();
        let b = sealer.seal("7494", &tokens()).unwrap();
        assert_ne!(a, b, "a fresh nonce per write");
        assert!(!String::from_utf8_lossy(&a).contains("ROW_"));
        assert_eq!(sealer.open("7494", &a).unwrap(), tokens());
        // Another shop's row, a flipped bit, a wrong key: refused.
        assert_eq!(sealer.open("7495", &a), Err(SealError::Open));
        let mut bad = a.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(sealer.open("7494", &bad), Err(SealError::Open));
        let other = TokenSealer::new(&Secret::new("ff".repeat(32))).unwrap();
        assert_eq!(other.open("7494", &a), Err(SealError::Open));
        assert!(TokenSealer::new(&Secret::new("short")).is_err());
    }
}
