//! A bounded cache of verified tokens, so a caller repeating the same token does not pay for a
//! signature check on every request.
//!
//! Keyed by SHA-256 of the token (collision-resistant: a forged token cannot land on a cached
//! entry; the token itself is not kept). An entry expires at the token's `exp` (or earlier, when
//! the issuer's maximum token age ends first), never later, and
//! is ignored once the issuer's key set has changed, so a dropped key does not live on here.
//! When full, expired entries are swept (at most once a second); if it is still full, new
//! tokens are simply verified without being cached.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::auth::identity::Identity;

pub type TokenHash = [u8; 32];

struct Entry {
    identity: Arc<Identity>,
    expires_at: i64,
    generation: u64,
}

pub struct TokenCache {
    map: DashMap<TokenHash, Entry>,
    capacity: usize,
    last_sweep: AtomicI64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.map.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens; 0 disables it.
    pub fn new(capacity: usize) -> Self {
        Self {
            map: DashMap::new(),
            capacity,
            last_sweep: AtomicI64::new(i64::MIN),
        }
    }

    pub fn hash(token: &str) -> TokenHash {
        Sha256::digest(token.as_bytes()).into()
    }

    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The identity for a token verified earlier, if still valid at `now` under key `generation`.
    pub fn get(&self, hash: &TokenHash, now: i64, generation: u64) -> Option<Arc<Identity>> {
        if !self.is_enabled() {
            return None;
        }
        let entry = self.map.get(hash)?;
        if now < entry.expires_at && entry.generation == generation {
            return Some(Arc::clone(&entry.identity));
        }
        drop(entry);
        self.map.remove_if(hash, |_, e| {
            now >= e.expires_at || e.generation != generation
        });
        None
    }

    /// Remembers a verified token until `expires_at` (its `exp`, or `iat` + maximum age).
    pub fn insert(
        &self,
        hash: TokenHash,
        identity: Arc<Identity>,
        expires_at: i64,
        now: i64,
        generation: u64,
    ) {
        if !self.is_enabled() || expires_at <= now {
            return;
        }
        if self.map.len() >= self.capacity {
            self.sweep(now);
            if self.map.len() >= self.capacity {
                return;
            }
        }
        self.map.insert(
            hash,
            Entry {
                identity,
                expires_at,
                generation,
            },
        );
    }

    fn sweep(&self, now: i64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if last == now
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.map.retain(|_, e| now < e.expires_at);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::identity::AuthMethod;
    use crate::auth::scopes::ScopeSet;

    fn id(sub: &str) -> Arc<Identity> {
        Arc::new(Identity::new(sub, AuthMethod::Mtls, ScopeSet::default(), vec![]).unwrap())
    }

    #[test]
    fn entries_expire_at_exp_and_on_key_change() {
        let c = TokenCache::new(10);
        let h = TokenCache::hash("t1");
        c.insert(h, id("a"), 1_000, 900, 1);
        assert_eq!(c.get(&h, 999, 1).unwrap().subject(), "a");
        assert!(
            c.get(&h, 999, 2).is_none(),
            "new key generation invalidates"
        );
        c.insert(h, id("a"), 1_000, 900, 1);
        assert!(c.get(&h, 1_000, 1).is_none(), "expired exactly at exp");
        assert!(c.is_empty());
        assert!(c.get(&TokenCache::hash("t2"), 900, 1).is_none());
    }

    #[test]
    fn bounded() {
        let c = TokenCache::new(3);
        for i in 0..10 {
            c.insert(TokenCache::hash(&format!("t{i}")), id("a"), 2_000, 1_000, 1);
        }
        assert_eq!(c.len(), 3);
        // Once entries expire, the sweep makes room.
        c.insert(TokenCache::hash("late"), id("b"), 5_000, 3_000, 1);
        assert_eq!(c.len(), 1);
        assert!(c.get(&TokenCache::hash("late"), 3_001, 1).is_some());
    }

    #[test]
    fn disabled_at_zero_capacity() {
        let c = TokenCache::new(0);
        let h = TokenCache::hash("t");
        c.insert(h, id("a"), 2_000, 1_000, 1);
        assert!(c.get(&h, 1_001, 1).is_none());
    }
}
