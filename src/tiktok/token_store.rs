//! Shop tokens at rest: one file, encrypted with ChaCha20-Poly1305 (policy §7: authentication
//! tokens are confidential and always encrypted).
//!
//! Layout: `TTGTOK` magic, a version byte, a fresh random 12-byte nonce per write, then the
//! ciphertext+tag of a JSON map `shop_id -> tokens`. The magic and version are authenticated as
//! associated data, so any change to the file, or a wrong key, fails decryption with a typed
//! error instead of yielding garbage. Writes go to a 0600 temp file in the same directory, are
//! fsynced, renamed over the old file, and the directory is fsynced, so a crash leaves either the
//! old or the new file, never a torn one.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::Secret;

const MAGIC: &[u8; 6] = b"TTGTOK";
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = MAGIC.len() + 1;

/// One shop's tokens. Times are absolute unix seconds, as TikTok returns them.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSet {
    pub access_token: Secret,
    pub access_expires_at: i64,
    pub refresh_token: Secret,
    pub refresh_expires_at: i64,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &self.access_token)
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_token", &self.refresh_token)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish()
    }
}

/// The serialised form; lives only inside `save`/`load`.
#[derive(Serialize, Deserialize)]
struct StoredSet {
    access_token: String,
    access_expires_at: i64,
    refresh_token: String,
    refresh_expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredFile {
    shops: HashMap<String, StoredSet>,
}

/// Failures name the file and what went wrong, never a token or the key.
#[derive(Debug, Error)]
pub enum TokenStoreError {
    #[error("token store key must be 32 bytes, hex (64 digits) or base64")]
    BadKey,
    #[error("token store {path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("token store {0}: not a token store file or unsupported version")]
    Format(PathBuf),
    #[error("token store {0}: cannot decrypt (wrong key or tampered file)")]
    Decrypt(PathBuf),
    #[error("token store {0}: decrypted content is malformed")]
    Content(PathBuf),
    #[error("token store {0}: readable by group or others; expected mode 0600")]
    InsecurePermissions(PathBuf),
}

/// The encrypted file. Blocking I/O: call from `spawn_blocking` in async code.
pub struct TokenStore {
    path: PathBuf,
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    /// `key` is 32 bytes as 64 hex digits or standard/URL-safe base64; anything else is refused.
    pub fn new(path: impl Into<PathBuf>, key: &Secret) -> Result<Self, TokenStoreError> {
        let key = decode_key(key.expose())?;
        Ok(Self {
            path: path.into(),
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All stored shops; an absent file is an empty store.
    pub fn load(&self) -> Result<HashMap<String, TokenSet>, TokenStoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(e) => return Err(self.io("read", e)),
        };
        self.check_permissions()?;
        if bytes.len() < HEADER_LEN + NONCE_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err(TokenStoreError::Format(self.path.clone()));
        }
        if bytes[MAGIC.len()] != VERSION {
            return Err(TokenStoreError::Format(self.path.clone()));
        }
        let (header, rest) = bytes.split_at(HEADER_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: header,
                },
            )
            .map_err(|_| TokenStoreError::Decrypt(self.path.clone()))?;
        let file: StoredFile = serde_json::from_slice(&plain)
            .map_err(|_| TokenStoreError::Content(self.path.clone()))?;
        Ok(file
            .shops
            .into_iter()
            .map(|(shop, s)| {
                let set = TokenSet {
                    access_token: Secret::new(s.access_token),
                    access_expires_at: s.access_expires_at,
                    refresh_token: Secret::new(s.refresh_token),
                    refresh_expires_at: s.refresh_expires_at,
                };
                (shop, set)
            })
            .collect())
    }

    /// Replaces the file's content with `shops`, atomically.
    pub fn save(&self, shops: &HashMap<String, TokenSet>) -> Result<(), TokenStoreError> {
        let file = StoredFile {
            shops: shops
                .iter()
                .map(|(shop, t)| {
                    let stored = StoredSet {
                        access_token: t.access_token.expose().to_owned(),
                        access_expires_at: t.access_expires_at,
                        refresh_token: t.refresh_token.expose().to_owned(),
                        refresh_expires_at: t.refresh_expires_at,
                    };
                    (shop.clone(), stored)
                })
                .collect(),
        };
        let plain =
            serde_json::to_vec(&file).map_err(|_| TokenStoreError::Content(self.path.clone()))?;
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[MAGIC.len()] = VERSION;
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &header,
                },
            )
            .map_err(|_| TokenStoreError::Content(self.path.clone()))?;

        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // tempfile creates the file with mode 0600 on unix.
        let mut tmp = tempfile::Builder::new()
            .prefix(".tokens-")
            .tempfile_in(&dir)
            .map_err(|e| self.io("create temp file", e))?;
        set_owner_only(tmp.as_file()).map_err(|e| self.io("chmod", e))?;
        tmp.write_all(&header).map_err(|e| self.io("write", e))?;
        tmp.write_all(&nonce).map_err(|e| self.io("write", e))?;
        tmp.write_all(&ciphertext)
            .map_err(|e| self.io("write", e))?;
        tmp.as_file().sync_all().map_err(|e| self.io("fsync", e))?;
        tmp.persist(&self.path)
            .map_err(|e| self.io("rename", e.error))?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io("fsync directory", e))?;
        Ok(())
    }

    fn io(&self, op: &'static str, source: std::io::Error) -> TokenStoreError {
        TokenStoreError::Io {
            path: self.path.clone(),
            op,
            source,
        }
    }

    #[cfg(unix)]
    fn check_permissions(&self) -> Result<(), TokenStoreError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(&self.path).map_err(|e| self.io("stat", e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(TokenStoreError::InsecurePermissions(self.path.clone()));
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn check_permissions(&self) -> Result<(), TokenStoreError> {
        Ok(())
    }
}

#[cfg(unix)]
fn set_owner_only(file: &fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_owner_only(_file: &fs::File) -> std::io::Result<()> {
    Ok(())
}

pub(crate) fn decode_key(text: &str) -> Result<[u8; 32], TokenStoreError> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|_| TokenStoreError::BadKey)?
    } else {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or(TokenStoreError::BadKey)?
    };
    bytes.try_into().map_err(|_| TokenStoreError::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn tokens(n: u8) -> TokenSet {
        TokenSet {
            access_token: Secret::new(format!("ROW_access_{n}")),
            access_expires_at: 1_718_900_000 + i64::from(n),
            refresh_token: Secret::new(format!("ROW_refresh_{n}")),
            refresh_expires_at: 1_750_000_000 + i64::from(n),
        }
    }

    fn sample() -> HashMap<String, TokenSet> {
        HashMap::from([
            ("7494049642642441621".to_string(), tokens(1)),
            ("7495540735365777507".to_string(), tokens(2)),
        ])
    }

    #[test]
    fn round_trips_and_keeps_tokens_out_of_the_file_and_debug() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.enc");
        let store = TokenStore::new(&path, &Secret::new(HEX_KEY)).unwrap();
        assert!(store.load().unwrap().is_empty());
        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), sample());
        let raw = fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("ROW_access") && !text.contains("ROW_refresh"));
        assert!(!text.contains("7494049642642441621"));
        assert!(!format!("{:?}", store.load().unwrap()).contains("ROW_"));
        // A fresh nonce per write: saving the same content twice gives different bytes.
        store.save(&sample()).unwrap();
        assert_ne!(fs::read(&path).unwrap(), raw);
        assert_eq!(store.load().unwrap(), sample());
    }

    #[test]
    fn accepts_hex_and_base64_keys_of_32_bytes_only() {
        let bytes = hex::decode(HEX_KEY).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        TokenStore::new(&path, &Secret::new(HEX_KEY))
            .unwrap()
            .save(&sample())
            .unwrap();
        // The same key in base64 reads what the hex form wrote.
        let same = TokenStore::new(&path, &Secret::new(b64)).unwrap();
        assert_eq!(same.load().unwrap(), sample());
        let short = base64::engine::general_purpose::STANDARD.encode(&bytes[..16]);
        let long = format!("{HEX_KEY}00");
        for bad in [
            "",
            "not a key",
            &HEX_KEY[..62],
            &long,
            &short,
            "passwordpasswordpasswordpassword",
        ] {
            assert!(
                matches!(
                    TokenStore::new(&path, &Secret::new(bad)),
                    Err(TokenStoreError::BadKey)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn wrong_key_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        TokenStore::new(&path, &Secret::new(HEX_KEY))
            .unwrap()
            .save(&sample())
            .unwrap();
        let other = "ff".repeat(32);
        let err = TokenStore::new(&path, &Secret::new(other))
            .unwrap()
            .load()
            .unwrap_err();
        assert!(matches!(err, TokenStoreError::Decrypt(_)), "{err}");
        assert!(!err.to_string().contains(HEX_KEY));
    }

    #[test]
    fn tampering_anywhere_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let store = TokenStore::new(&path, &Secret::new(HEX_KEY)).unwrap();
        store.save(&sample()).unwrap();
        let good = fs::read(&path).unwrap();
        for i in [
            0,
            MAGIC.len(),
            HEADER_LEN,
            HEADER_LEN + NONCE_LEN,
            good.len() / 2,
            good.len() - 1,
        ] {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            fs::write(&path, &bad).unwrap();
            let err = store.load().unwrap_err();
            assert!(
                matches!(
                    err,
                    TokenStoreError::Decrypt(_) | TokenStoreError::Format(_)
                ),
                "byte {i}: {err}"
            );
        }
        fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(matches!(store.load(), Err(TokenStoreError::Decrypt(_))));
        fs::write(&path, b"TTGTOK").unwrap();
        assert!(matches!(store.load(), Err(TokenStoreError::Format(_))));
    }

    #[cfg(unix)]
    #[test]
    fn file_is_owner_only_and_loose_permissions_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let store = TokenStore::new(&path, &Secret::new(HEX_KEY)).unwrap();
        store.save(&sample()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            store.load(),
            Err(TokenStoreError::InsecurePermissions(_))
        ));
        // Saving again replaces the file with an owner-only one.
        store.save(&sample()).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(store.load().unwrap(), sample());
        // No temp files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
