//! Shop tokens in the state store, and the lease that makes one replica of a fleet refresh a
//! shop at a time: the holder refreshes and stores the new tokens with a higher generation; the
//! others wait for them and read them instead of calling TikTok themselves.

use std::sync::Arc;
use std::time::Duration;

use super::TokenError;
use crate::state::health::{StateHealth, with_timeout};
use crate::state::{SealedTokens, SharedState, StateError};
use crate::tiktok::token_seal::TokenSealer;
use crate::tiktok::token_store::TokenSet;

pub struct TokenVault {
    store: SharedState,
    health: Arc<StateHealth>,
    sealer: TokenSealer,
    /// How long a refresh lease lasts (the refresh call ends well before).
    pub(super) lease: Duration,
    timeout: Duration,
    /// This process's name on the leases it takes.
    owner: String,
}

impl std::fmt::Debug for TokenVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVault")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

fn lease_name(shop: &str) -> String {
    format!("token-refresh:{shop}")
}

fn store_error(e: StateError) -> TokenError {
    TokenError::Store(e.to_string())
}

impl TokenVault {
    pub fn new(
        store: SharedState,
        health: Arc<StateHealth>,
        sealer: TokenSealer,
        lease: Duration,
        timeout: Duration,
    ) -> Self {
        Self {
            store,
            health,
            sealer,
            lease,
            timeout,
            owner: format!("{:016x}", rand::random::<u64>()),
        }
    }

    async fn observed<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T, StateError>>,
    ) -> Result<T, TokenError> {
        let result = with_timeout(self.timeout, fut).await;
        self.health.observe(op, &result);
        result.map_err(store_error)
    }

    /// The stored tokens of `shop` and their generation.
    pub async fn load(&self, shop: &str) -> Result<Option<(u64, TokenSet)>, TokenError> {
        let Some(sealed) = self
            .observed("load_tokens", self.store.load_tokens(shop))
            .await?
        else {
            return Ok(None);
        };
        let set = self
            .sealer
            .open(shop, &sealed.sealed)
            .map_err(|e| TokenError::Store(format!("shop {shop}: {e}")))?;
        Ok(Some((sealed.generation, set)))
    }

    /// The generation of the stored tokens of `shop`, without opening them.
    pub async fn load_generation(&self, shop: &str) -> Result<Option<u64>, TokenError> {
        Ok(self
            .observed("load_tokens", self.store.load_tokens(shop))
            .await?
            .map(|sealed| sealed.generation))
    }

    /// Deletes the stored tokens of `shop`; `false` when there were none.
    pub async fn delete(&self, shop: &str) -> Result<bool, TokenError> {
        self.observed("delete_tokens", self.store.delete_tokens(shop))
            .await
    }

    /// Seals and stores `set` as `generation` (a fresh nonce per write); `false` when the store
    /// already holds that generation or a newer one.
    pub async fn save(
        &self,
        shop: &str,
        generation: u64,
        set: &TokenSet,
        now_ms: i64,
    ) -> Result<bool, TokenError> {
        let sealed = self
            .sealer
            .seal(shop, set)
            .map_err(|e| TokenError::Store(e.to_string()))?;
        let tokens = SealedTokens { generation, sealed };
        self.observed(
            "store_tokens",
            self.store.store_tokens(shop, &tokens, now_ms),
        )
        .await
    }

    /// Takes the shop's refresh lease; `false` when another replica holds it.
    pub async fn lease(&self, shop: &str, now_ms: i64) -> Result<bool, TokenError> {
        let until = now_ms.saturating_add(i64::try_from(self.lease.as_millis()).unwrap_or(0));
        self.observed(
            "try_lease",
            self.store
                .try_lease(&lease_name(shop), &self.owner, now_ms, until),
        )
        .await
    }

    /// Gives the lease back (best effort: it ends by itself anyway).
    pub async fn release(&self, shop: &str) {
        let _ = self
            .observed(
                "release_lease",
                self.store.release_lease(&lease_name(shop), &self.owner),
            )
            .await;
    }
}
