//! The shops the gateway may call TikTok for, beyond the configured ones: shops sellers
//! authorized at runtime, and the status of every shop (a configured shop can be revoked too).
//! Records live in the state layer; every replica keeps a view that egress reads lock-free and
//! refreshes it when the list's version moves (polled, and on a miss), so a shop authorized on
//! one replica is usable on all, and a revocation reaches all within one poll interval.
//!
//! Tokens stay with the [`TokenManager`] (sealed in the store): a shop that becomes active here
//! has its tokens adopted from the store; a revoked one has them dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::config::TikTokShop;
use crate::state::health::{StateHealth, with_timeout};
use crate::state::{SharedState, ShopRecord, ShopStatus, StateError};
use crate::tiktok::authorization::AuthorizedShop;
use crate::tiktok::token_store::TokenSet;
use crate::tiktok::tokens::{AppCredentials, TokenError, TokenManager};

/// A shop as the state layer knows it, with the form egress uses.
#[derive(Debug)]
pub struct ShopEntry {
    pub record: ShopRecord,
    /// Id, app and cipher as egress reads them (no tokens: those are the token manager's).
    pub shop: Arc<TikTokShop>,
}

#[derive(Debug, Default)]
struct View {
    /// `None` until the store was read once.
    version: Option<u64>,
    shops: HashMap<String, Arc<ShopEntry>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("state store: {0}")]
    Store(#[from] StateError),
    #[error("{0}")]
    Tokens(#[from] TokenError),
    #[error("no TikTok token manager")]
    NoTokens,
    #[error("unknown TikTok app `{0}`")]
    UnknownApp(String),
}

pub struct ShopRegistry {
    store: SharedState,
    health: Arc<StateHealth>,
    timeout: Duration,
    clock: SharedClock,
    tokens: Option<TokenManager>,
    /// App credentials by config name, for shops onboarded at runtime.
    apps: HashMap<String, Arc<AppCredentials>>,
    /// Configured shops by id.
    configured: HashMap<String, Arc<TikTokShop>>,
    view: ArcSwap<View>,
    /// One refresh at a time (a miss storm reads the store once).
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ShopRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopRegistry")
            .field("shops", &self.view.load().shops.len())
            .finish_non_exhaustive()
    }
}

impl ShopRegistry {
    pub fn new(
        store: SharedState,
        health: Arc<StateHealth>,
        timeout: Duration,
        clock: SharedClock,
        tokens: Option<TokenManager>,
        apps: HashMap<String, Arc<AppCredentials>>,
        configured: &[TikTokShop],
    ) -> Self {
        Self {
            store,
            health,
            timeout,
            clock,
            tokens,
            apps,
            configured: configured
                .iter()
                .map(|s| (s.id.clone(), Arc::new(s.clone())))
                .collect(),
            view: ArcSwap::from_pointee(View::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    async fn observed<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T, StateError>>,
    ) -> Result<T, StateError> {
        let result = with_timeout(self.timeout, fut).await;
        self.health.observe(op, &result);
        result
    }

    /// The state layer's record of `shop_id`, if any. Lock-free.
    pub fn get(&self, shop_id: &str) -> Option<Arc<ShopEntry>> {
        self.view.load().shops.get(shop_id).cloned()
    }

    /// Whether `shop_id` was revoked (configured or not). Lock-free.
    pub fn is_revoked(&self, shop_id: &str) -> bool {
        self.get(shop_id)
            .is_some_and(|e| e.record.status == ShopStatus::Revoked)
    }

    /// An active shop of `app` onboarded at runtime; reads the store again when this replica
    /// does not know the shop yet and the list changed (another replica onboarded it).
    pub async fn active(&self, shop_id: &str, app: &str) -> Option<Arc<TikTokShop>> {
        let found = |view: &View| {
            view.shops
                .get(shop_id)
                .filter(|e| e.record.status == ShopStatus::Active && e.record.app == app)
                .map(|e| e.shop.clone())
        };
        if let Some(shop) = found(&self.view.load()) {
            return Some(shop);
        }
        if let Err(e) = self.refresh_if_changed().await {
            tracing::warn!(error = %e, "shop list could not be read");
        }
        found(&self.view.load())
    }

    /// Every record this replica knows.
    pub fn records(&self) -> Vec<ShopRecord> {
        let mut out: Vec<ShopRecord> = self
            .view
            .load()
            .shops
            .values()
            .map(|e| e.record.clone())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The configured shops by id.
    pub fn configured(&self) -> &HashMap<String, Arc<TikTokShop>> {
        &self.configured
    }

    /// Reads the list when its version moved (or was never read).
    pub async fn refresh_if_changed(&self) -> Result<(), ShopError> {
        let version = self
            .observed("shop_version", self.store.shop_version())
            .await?;
        if self.view.load().version == Some(version) {
            return Ok(());
        }
        self.refresh().await
    }

    /// Reads every record and swaps the view in; adopts the tokens of active shops this
    /// replica does not hold yet, drops those of revoked ones.
    pub async fn refresh(&self) -> Result<(), ShopError> {
        let _one = self.refreshing.lock().await;
        let (version, records) = self.observed("shops", self.store.shops()).await?;
        if self.view.load().version == Some(version) {
            return Ok(());
        }
        let mut shops = HashMap::with_capacity(records.len());
        for record in records {
            if let Some(tokens) = &self.tokens {
                match record.status {
                    ShopStatus::Active if !tokens.has_shop(&record.id) => {
                        match self.apps.get(&record.app) {
                            Some(app) => {
                                if let Err(e) = tokens.adopt_shop(&record.id, app.clone()).await {
                                    tracing::warn!(shop = %record.id, error = %e, "tokens of an authorized shop could not be read");
                                }
                            }
                            None => {
                                tracing::warn!(shop = %record.id, app = %record.app, "authorized shop of an app no longer configured")
                            }
                        }
                    }
                    ShopStatus::Revoked if tokens.has_shop(&record.id) => tokens.forget(&record.id),
                    _ => {}
                }
            }
            let shop = Arc::new(TikTokShop {
                id: record.id.clone(),
                app: record.app.clone(),
                cipher: record.cipher.clone(),
                access_token: None,
                access_token_expires_at: None,
                refresh_token: None,
                refresh_token_expires_at: None,
            });
            shops.insert(record.id.clone(), Arc::new(ShopEntry { record, shop }));
        }
        self.view.store(Arc::new(View {
            version: Some(version),
            shops,
        }));
        Ok(())
    }

    /// Keeps the view fresh until `shutdown`: every `poll`, when the version moved.
    pub async fn watch(&self, poll: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.refresh_if_changed().await {
                tracing::debug!(error = %e, "shop list refresh failed; keeping the last view");
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Stores the shops of a new authorization (tokens sealed, then the records) and serves
    /// them. On a failure, what was stored for this authorization is deleted again.
    pub async fn authorized(
        &self,
        app: &str,
        shops: &[AuthorizedShop],
        tokens_set: &TokenSet,
        by: &str,
    ) -> Result<(), ShopError> {
        let tokens = self.tokens.as_ref().ok_or(ShopError::NoTokens)?;
        let creds = self
            .apps
            .get(app)
            .ok_or_else(|| ShopError::UnknownApp(app.to_owned()))?;
        let mut done: Vec<&str> = Vec::new();
        let result = async {
            for shop in shops {
                tokens
                    .add_shop(&shop.id, creds.clone(), tokens_set.clone())
                    .await?;
                done.push(&shop.id);
                let record = ShopRecord {
                    id: shop.id.clone(),
                    app: app.to_owned(),
                    cipher: shop.cipher.clone(),
                    name: shop.name.clone(),
                    region: shop.region.clone(),
                    status: ShopStatus::Active,
                    changed_by: by.to_owned(),
                    updated_at: self.clock.unix_seconds(),
                };
                self.observed("put_shop", self.store.put_shop(&record))
                    .await?;
            }
            Ok::<(), ShopError>(())
        }
        .await;
        if let Err(e) = result {
            for id in done {
                let _ = tokens.remove_shop(id).await;
            }
            return Err(e);
        }
        self.refresh().await
    }

    /// Marks `shop_id` revoked (kept, so egress refuses it) and deletes its tokens. `None` when
    /// the shop is neither configured nor onboarded (for `app`, when given).
    pub async fn revoke(
        &self,
        shop_id: &str,
        app: Option<&str>,
        by: &str,
    ) -> Result<Option<ShopRecord>, ShopError> {
        let _ = self.refresh_if_changed().await;
        let known = match self.get(shop_id) {
            Some(entry) => Some(entry.record.clone()),
            None => self.configured.get(shop_id).map(|s| ShopRecord {
                id: s.id.clone(),
                app: s.app.clone(),
                cipher: s.cipher.clone(),
                name: String::new(),
                region: String::new(),
                status: ShopStatus::Active,
                changed_by: String::new(),
                updated_at: 0,
            }),
        };
        let Some(mut record) = known.filter(|r| app.is_none_or(|a| a == r.app)) else {
            return Ok(None);
        };
        record.status = ShopStatus::Revoked;
        record.changed_by = by.to_owned();
        record.updated_at = self.clock.unix_seconds();
        // The status first: once it is stored, no replica calls TikTok for the shop, whatever
        // happens to the token deletion (retried by the next revocation).
        self.observed("put_shop", self.store.put_shop(&record))
            .await?;
        if let Some(tokens) = &self.tokens {
            tokens.remove_shop(shop_id).await?;
        }
        self.refresh().await?;
        Ok(Some(record))
    }
}

/// `tiktok_gateway_tiktok_shop_authorization_expiring_total{shop}`: TikTok's warnings (webhook
/// type 7) that a shop's authorization expires soon; someone must ask the seller to authorize
/// again. Shop ids are a bounded set (the app's shops).
pub fn authorization_expiring() -> &'static prometheus::IntCounterVec {
    static COUNTER: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| {
        // A constant name and label: this fails only on a programming error (as the gateway's
        // other static metrics).
        let counter = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tiktok_shop_authorization_expiring_total",
                "TikTok warnings (webhook type 7) that a shop's authorization expires soon, by shop.",
            ),
            &["shop"],
        )
        .expect("static metric definition");
        crate::telemetry::metrics::register(Box::new(counter.clone()), "shop authorization expiring");
        counter
    })
}
