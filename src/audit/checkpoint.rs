//! Signed checkpoints: every so often the gateway signs `(seq, hash)` of the chain's head with
//! `audit.signing_key` and appends the signature to the chain as an `audit.checkpoint` record.
//!
//! Ed25519 rather than an HMAC: an auditor checks the log with the public key alone
//! (`tiktok-gateway audit public-key` prints it), and whoever can verify cannot forge. The hash
//! chain alone already shows a record changed, removed, inserted or reordered in the middle;
//! the signatures also show a rewrite of the whole chain after the last checkpoint by someone
//! who can write to the store but does not hold the key.

use base64::Engine;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::chain::AuditRecord;
use crate::config::Secret;

/// The action of a checkpoint record.
pub const CHECKPOINT_ACTION: &str = "audit.checkpoint";

const CONTEXT: &[u8] = b"tiktok-gateway/audit-checkpoint/v1\0";

fn message(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + 40);
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// Parses 32 bytes written as 64 hex digits or base64.
pub fn parse_key_bytes(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|_| "not hex".to_string())?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| "expected 32 bytes as 64 hex digits or base64".to_string())?
    };
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("expected 32 bytes, found {}", bytes.len()))
}

/// The short id a checkpoint names its key by: the first 8 bytes of SHA-256 of the public key.
pub fn key_id(public: &[u8]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

/// Signs checkpoints. Built from the 32-byte Ed25519 seed in `audit.signing_key`.
pub struct Signer {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id())
            .finish()
    }
}

impl Signer {
    pub fn from_secret(secret: &Secret) -> Result<Self, String> {
        let seed = parse_key_bytes(secret.expose())?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| "not a usable Ed25519 seed".to_string())?;
        Ok(Self { pair })
    }

    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    pub fn key_id(&self) -> String {
        key_id(self.pair.public_key().as_ref())
    }

    /// The detail of a checkpoint record covering `(seq, hash)`.
    pub fn checkpoint_detail(&self, seq: u64, hash: &[u8; 32]) -> serde_json::Map<String, Value> {
        let sig = self.pair.sign(&message(seq, hash));
        let Value::Object(map) = json!({
            "covers_seq": seq,
            "covers_hash": hex::encode(hash),
            "key_id": self.key_id(),
            "signature": hex::encode(sig.as_ref()),
        }) else {
            return serde_json::Map::new();
        };
        map
    }
}

/// A checkpoint record's claim, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub covers_seq: u64,
    pub covers_hash: [u8; 32],
    pub key_id: String,
    pub signature: Vec<u8>,
}

impl Checkpoint {
    pub fn parse(record: &AuditRecord) -> Result<Self, String> {
        let v: Value = serde_json::from_str(&record.detail).map_err(|_| "detail is not JSON")?;
        let covers_seq = v["covers_seq"].as_u64().ok_or("no covers_seq")?;
        let covers_hash = v["covers_hash"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
            .ok_or("no covers_hash")?;
        let key_id = v["key_id"].as_str().ok_or("no key_id")?.to_owned();
        let signature = v["signature"]
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .ok_or("no signature")?;
        Ok(Self {
            covers_seq,
            covers_hash,
            key_id,
            signature,
        })
    }

    /// Whether the signature is `public`'s over `(covers_seq, covers_hash)`.
    pub fn verify(&self, public: &[u8; 32]) -> bool {
        UnparsedPublicKey::new(&ED25519, public)
            .verify(
                &message(self.covers_seq, &self.covers_hash),
                &self.signature,
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_verifies_with_the_public_key_only() {
        let signer = Signer::from_secret(&Secret::new("11".repeat(32))).unwrap();
        let detail = signer.checkpoint_detail(7, &[3u8; 32]);
        let record = AuditRecord {
            seq: 8,
            time: 0,
            action: CHECKPOINT_ACTION.into(),
            outcome: "noted".into(),
            actor: None,
            detail: Value::Object(detail).to_string(),
            prev_hash: [0; 32],
            hash: [0; 32],
        };
        let cp = Checkpoint::parse(&record).unwrap();
        assert_eq!(cp.covers_seq, 7);
        assert!(cp.verify(&signer.public_key()));
        let other = Signer::from_secret(&Secret::new("22".repeat(32))).unwrap();
        assert!(!cp.verify(&other.public_key()));
        let mut forged = cp.clone();
        forged.covers_seq = 6;
        assert!(!forged.verify(&signer.public_key()));
        assert!(parse_key_bytes("abcd").is_err());
    }
}
