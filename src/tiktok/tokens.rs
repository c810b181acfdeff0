//! Shop access tokens: served lock-free on the hot path, refreshed in the background before they
//! expire, one refresh in flight per shop, kept sealed in the state store ([`TokenVault`]).
//!
//! On a shared state backend the refresh is single-flight across the fleet: a replica first
//! reads the stored tokens (another replica may have refreshed already), then takes the shop's
//! refresh lease; only the holder calls TikTok, stores the answer under a higher generation and
//! gives the lease back, while the others wait for that generation and use it. Tokens held in
//! memory keep serving calls while the store is unreachable; an answer TikTok gave that could
//! not be stored is kept and stored again until the store takes it.
//!
//! A refresh forced by TikTok's expired-token answer follows the same rules as the background
//! one: it joins the refresh in flight, waits out the back-off after a failed refresh (callers
//! get an error meanwhile, so a failing token host sees one attempt per interval however many
//! requests meet the error), and happens only if the token that met the error is still the
//! current one (see [`AccessToken::generation`]).
//!
//! Sources, per configured shop: the state store if it holds the shop with a usable refresh token
//! (it has the newest tokens, since every refresh is saved there), otherwise the tokens from
//! config secrets. Shops that are not configured are never served, even if the store has them.
//! A token file of earlier versions (`tiktok.token_store.path`) is imported into the store at
//! start for shops the store does not hold.
//!
//! Nothing here logs or returns a token, the app secret or the refresh URL (which carries both):
//! errors name the shop and what failed.

mod access;
mod refresh;
mod vault;

pub use access::AccessToken;
pub use vault::TokenVault;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use prometheus::IntCounterVec;
use thiserror::Error;
use tokio::sync::watch;

use super::token_store::TokenSet;
use crate::clock::SharedClock;
use crate::config::Secret;

/// A TikTok app's credentials for the token endpoint.
#[derive(Clone)]
pub struct AppCredentials {
    pub app_key: String,
    pub app_secret: Secret,
    /// e.g. `https://auth.tiktok-shops.com` (no path needed, no query).
    pub auth_base: String,
    /// PEM bundle that alone is trusted for `auth_base` (the app's `ca`, as for API calls).
    pub ca: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_key", &self.app_key)
            .field("auth_base", &self.auth_base)
            .finish_non_exhaustive()
    }
}

/// One configured shop and the tokens its config provides (all optional: a shop may rely on
/// the store alone).
#[derive(Clone, Debug)]
pub struct ShopTokenSettings {
    pub shop_id: String,
    pub app: Arc<AppCredentials>,
    pub access_token: Option<Secret>,
    /// Absolute unix seconds. Unknown: the token is used as is, and refreshed at once if a
    /// refresh token is configured (which also learns the expiry).
    pub access_expires_at: Option<i64>,
    pub refresh_token: Option<Secret>,
    /// Absolute unix seconds; unknown means "assume still valid".
    pub refresh_expires_at: Option<i64>,
}

/// Timing of the refresher.
#[derive(Clone, Debug)]
pub struct TokenManagerSettings {
    /// Refresh this long before the access token expires.
    pub refresh_margin: Duration,
    /// After a failed refresh, wait this long before the background refresher tries again.
    pub retry_interval: Duration,
    /// Connect and whole-request timeout of the refresh call.
    pub request_timeout: Duration,
    /// The refresher re-checks at least this often (the wall clock may jump).
    pub check_interval: Duration,
    /// Each refresh call is a client span: a child of the call that forced it, a root span when
    /// the background refresher runs it.
    pub tracing: crate::telemetry::otel::Tracing,
}

impl Default for TokenManagerSettings {
    /// Margin 1 day (access tokens last 7), retry 60 s, timeout 10 s, check every 60 s.
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(24 * 3600),
            retry_interval: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            check_interval: Duration::from_secs(60),
            tracing: crate::telemetry::otel::Tracing::disabled(),
        }
    }
}

/// What went wrong, with the shop id and never a token value.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    #[error("tiktok tokens: unknown shop {0}")]
    UnknownShop(String),
    #[error("tiktok tokens: shop {0} has no access token")]
    NoAccessToken(String),
    #[error("tiktok tokens: shop {0}: access token expired")]
    AccessExpired(String),
    #[error("tiktok tokens: shop {0}: no usable refresh token (absent or expired)")]
    NoRefreshToken(String),
    #[error("tiktok tokens: shop {shop}: refresh call {kind}")]
    Transport { shop: String, kind: &'static str },
    #[error(
        "tiktok tokens: shop {shop}: the last refresh failed; next attempt allowed in {retry_in_secs}s"
    )]
    RefreshBackoff { shop: String, retry_in_secs: u64 },
    #[error("tiktok tokens: shop {shop}: token endpoint answered HTTP {status}")]
    HttpStatus { shop: String, status: u16 },
    #[error("tiktok tokens: shop {shop}: token endpoint refused the refresh (code {code})")]
    Refused { shop: String, code: i64 },
    #[error("tiktok tokens: shop {shop}: invalid refresh response: {what}")]
    InvalidResponse { shop: String, what: &'static str },
    #[error("tiktok tokens: app for shop {0} has an invalid auth_base URL")]
    BadAuthBase(String),
    #[error("tiktok tokens: token store: {0}")]
    Store(String),
    #[error("tiktok tokens: cannot build the HTTP client")]
    Client,
    #[error("tiktok tokens: CA bundle {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("tiktok tokens: refresh task failed")]
    Task,
    #[error(
        "tiktok tokens: shop {0}: another gateway is refreshing; its tokens are not stored yet"
    )]
    RefreshElsewhere(String),
    #[error("tiktok tokens: metrics: {0}")]
    Metrics(String),
}

impl TokenError {
    /// A fixed word for the kind of failure (span attributes, metrics): no shop, no value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownShop(_) => "unknown_shop",
            Self::NoAccessToken(_) => "no_access_token",
            Self::AccessExpired(_) => "access_expired",
            Self::NoRefreshToken(_) => "no_refresh_token",
            Self::Transport { .. } => "transport",
            Self::RefreshBackoff { .. } => "backoff",
            Self::HttpStatus { .. } => "http_status",
            Self::Refused { .. } => "refused",
            Self::InvalidResponse { .. } => "invalid_response",
            Self::BadAuthBase(_) => "bad_auth_base",
            Self::Store(_) => "store",
            Self::Client => "client",
            Self::Ca { .. } => "ca",
            Self::Task => "task",
            Self::RefreshElsewhere(_) => "refresh_elsewhere",
            Self::Metrics(_) => "metrics",
        }
    }

    /// Seconds until a refresh may be tried again, when the error is the back-off after a
    /// failed refresh (for a `Retry-After`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RefreshBackoff { retry_in_secs, .. } => Some(*retry_in_secs),
            Self::RefreshElsewhere(_) => Some(1),
            _ => None,
        }
    }
}

/// A shop's tokens as currently known.
#[derive(Clone, Default)]
struct Current {
    /// Bumped by every refresh; tells a caller's token from its replacement.
    generation: u64,
    access: Option<Secret>,
    access_expires_at: Option<i64>,
    refresh: Option<Secret>,
    refresh_expires_at: Option<i64>,
}

impl Current {
    fn from_set(set: TokenSet, generation: u64) -> Self {
        Self {
            generation,
            access: Some(set.access_token),
            access_expires_at: Some(set.access_expires_at),
            refresh: Some(set.refresh_token),
            refresh_expires_at: Some(set.refresh_expires_at),
        }
    }

    fn usable_refresh(&self, now: i64) -> Option<&Secret> {
        match self.refresh_expires_at {
            Some(exp) if exp <= now => None,
            _ => self.refresh.as_ref(),
        }
    }

    /// The complete form the store keeps (only tokens with known expiries).
    fn to_set(&self) -> Option<TokenSet> {
        Some(TokenSet {
            access_token: self.access.clone()?,
            access_expires_at: self.access_expires_at?,
            refresh_token: self.refresh.clone()?,
            refresh_expires_at: self.refresh_expires_at?,
        })
    }
}

type RefreshFlight = Shared<BoxFuture<'static, Result<(), TokenError>>>;

struct ShopState {
    shop_id: String,
    app: Arc<AppCredentials>,
    /// The client for the app's `auth_base` (its own trust anchors).
    http: reqwest::Client,
    current: ArcSwap<Current>,
    /// The refresh in flight, shared by every caller that asks meanwhile.
    flight: Mutex<Option<RefreshFlight>>,
    /// Unix seconds before which no refresh is tried after a failure (background or forced).
    retry_not_before: AtomicI64,
    /// The current tokens came from TikTok but are not in the store yet.
    unsaved: AtomicBool,
}

/// Why a refresh runs: to stay ahead of expiry, or because TikTok refused the token of this
/// generation.
#[derive(Debug, Clone, Copy)]
enum Need {
    Due,
    Replace(u64),
}

type ShopMap = HashMap<Box<str>, Arc<ShopState>>;

struct Inner {
    /// Replaced whole when a shop is added or removed at runtime (rare); read lock-free.
    shops: ArcSwap<ShopMap>,
    vault: Option<TokenVault>,
    clock: SharedClock,
    settings: TokenManagerSettings,
    refreshes: IntCounterVec,
}

/// Holds every configured shop's tokens. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("shops", &self.inner.shops.load().len())
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    /// Builds the manager from config and, if given, the vault and the tokens of a legacy token
    /// file to import (the store is read here, on a runtime of its own: call at start-up).
    pub fn new(
        settings: TokenManagerSettings,
        shops: Vec<ShopTokenSettings>,
        vault: Option<(TokenVault, HashMap<String, TokenSet>)>,
        clock: SharedClock,
    ) -> Result<Self, TokenError> {
        let (vault, legacy) = match vault {
            Some((vault, legacy)) => (Some(vault), legacy),
            None => (None, HashMap::new()),
        };
        let stored = match &vault {
            Some(vault) => {
                let ids: Vec<String> = shops.iter().map(|s| s.shop_id.clone()).collect();
                let now_ms = clock.unix_millis();
                let load = async {
                    let mut out = HashMap::new();
                    for id in ids {
                        match vault.load(&id).await? {
                            Some((generation, set)) => {
                                out.insert(id, (generation, set));
                            }
                            None => {
                                // Import a legacy file's tokens once, as generation 1.
                                if let Some(set) = legacy.get(&id) {
                                    vault.save(&id, 1, set, now_ms).await?;
                                    out.insert(id, (1, set.clone()));
                                }
                            }
                        }
                    }
                    Ok(out)
                };
                crate::state::block_on_startup(async {
                    load.await.map_err(|e: TokenError| {
                        crate::state::StateError::Unavailable(e.to_string())
                    })
                })
                .map_err(|e| TokenError::Store(e.to_string()))?
            }
            None => HashMap::new(),
        };
        let now = clock.unix_seconds();
        let mut map = HashMap::with_capacity(shops.len());
        // One client per trust configuration; shops of one app share it.
        let mut clients: HashMap<Option<std::path::PathBuf>, reqwest::Client> = HashMap::new();
        for shop in shops {
            if !refresh::valid_base(&shop.app.auth_base) {
                return Err(TokenError::BadAuthBase(shop.shop_id));
            }
            let http = match clients.get(&shop.app.ca) {
                Some(c) => c.clone(),
                None => {
                    let c = refresh::client(settings.request_timeout, shop.app.ca.as_deref())?;
                    clients.insert(shop.app.ca.clone(), c.clone());
                    c
                }
            };
            let from_config = Current {
                generation: 0,
                access: shop.access_token,
                access_expires_at: shop.access_expires_at,
                refresh: shop.refresh_token,
                refresh_expires_at: shop.refresh_expires_at,
            };
            let current = match stored.get(&shop.shop_id) {
                Some((generation, set)) if set.refresh_expires_at > now => {
                    Current::from_set(set.clone(), *generation)
                }
                _ => from_config,
            };
            let state = ShopState {
                shop_id: shop.shop_id.clone(),
                app: shop.app,
                http,
                current: ArcSwap::from_pointee(current),
                flight: Mutex::new(None),
                retry_not_before: AtomicI64::new(i64::MIN),
                unsaved: AtomicBool::new(false),
            };
            map.insert(shop.shop_id.into_boxed_str(), Arc::new(state));
        }
        let refreshes = IntCounterVec::new(
            prometheus::Opts::new(
                "tiktok_token_refresh_total",
                "TikTok access-token refresh attempts by shop and result.",
            ),
            &["shop", "result"],
        )
        .map_err(|e| TokenError::Metrics(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                shops: ArcSwap::from_pointee(map),
                vault,
                clock,
                settings,
                refreshes,
            }),
        })
    }

    /// Registers `tiktok_token_refresh_total{shop,result}`.
    pub fn register_metrics(
        &self,
        registry: &prometheus::Registry,
    ) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.inner.refreshes.clone()))
    }

    /// The shop's current access token, for `x-tts-access-token`. Lock-free: a map lookup, an
    /// atomic load and a reference-count increment.
    pub fn access_token(&self, shop_id: &str) -> Result<AccessToken, TokenError> {
        let shop = self.shop(shop_id)?;
        self.current_token(&shop)
    }

    /// The ids of the shops whose tokens are held (configured and onboarded).
    pub fn shop_ids(&self) -> Vec<String> {
        self.inner
            .shops
            .load()
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    /// Whether tokens for `shop_id` are held.
    pub fn has_shop(&self, shop_id: &str) -> bool {
        self.inner.shops.load().contains_key(shop_id)
    }

    /// Unix seconds at which the shop's refresh token expires, if known.
    pub fn refresh_expires_at(&self, shop_id: &str) -> Option<i64> {
        self.inner
            .shops
            .load()
            .get(shop_id)?
            .current
            .load()
            .refresh_expires_at
    }

    /// Unix seconds at which the shop's access token expires, if known.
    pub fn access_expires_at(&self, shop_id: &str) -> Option<i64> {
        self.inner
            .shops
            .load()
            .get(shop_id)?
            .current
            .load()
            .access_expires_at
    }

    /// A shop authorized at runtime: stores `set` sealed (as a newer generation than any the
    /// store holds) and serves it from now on, refreshed like a configured shop's. Nothing is
    /// served when the store refuses it.
    pub async fn add_shop(
        &self,
        shop_id: &str,
        app: Arc<AppCredentials>,
        set: TokenSet,
    ) -> Result<(), TokenError> {
        let vault = self
            .inner
            .vault
            .as_ref()
            .ok_or_else(|| TokenError::Store("no token store configured".into()))?;
        let stored = vault.load_generation(shop_id).await?;
        let held = self
            .inner
            .shops
            .load()
            .get(shop_id)
            .map(|s| s.current.load().generation);
        let generation = stored.max(held).unwrap_or(0) + 1;
        if !vault
            .save(shop_id, generation, &set, self.inner.clock.unix_millis())
            .await?
        {
            return Err(TokenError::Store(format!(
                "shop {shop_id}: newer tokens were stored meanwhile"
            )));
        }
        self.install(shop_id, app, Current::from_set(set, generation))
    }

    /// Takes a shop another replica authorized: its tokens from the store. `false` when the
    /// store holds none.
    pub async fn adopt_shop(
        &self,
        shop_id: &str,
        app: Arc<AppCredentials>,
    ) -> Result<bool, TokenError> {
        let Some(vault) = &self.inner.vault else {
            return Ok(false);
        };
        let Some((generation, set)) = vault.load(shop_id).await? else {
            return Ok(false);
        };
        self.install(shop_id, app, Current::from_set(set, generation))?;
        Ok(true)
    }

    /// The shop's authorization is gone: its tokens are dropped from memory and deleted from
    /// the store. Returns whether the store held any.
    pub async fn remove_shop(&self, shop_id: &str) -> Result<bool, TokenError> {
        self.forget(shop_id);
        match &self.inner.vault {
            Some(vault) => vault.delete(shop_id).await,
            None => Ok(false),
        }
    }

    /// Drops the shop's tokens from memory only (the store already lost them).
    pub fn forget(&self, shop_id: &str) {
        self.inner.shops.rcu(|map| {
            let mut map = ShopMap::clone(map);
            map.remove(shop_id);
            map
        });
    }

    fn install(
        &self,
        shop_id: &str,
        app: Arc<AppCredentials>,
        current: Current,
    ) -> Result<(), TokenError> {
        if !refresh::valid_base(&app.auth_base) {
            return Err(TokenError::BadAuthBase(shop_id.to_owned()));
        }
        let http = refresh::client(self.inner.settings.request_timeout, app.ca.as_deref())?;
        let state = Arc::new(ShopState {
            shop_id: shop_id.to_owned(),
            app,
            http,
            current: ArcSwap::from_pointee(current),
            flight: Mutex::new(None),
            retry_not_before: AtomicI64::new(i64::MIN),
            unsaved: AtomicBool::new(false),
        });
        self.inner.shops.rcu(|map| {
            let mut map = ShopMap::clone(map);
            map.insert(shop_id.into(), state.clone());
            map
        });
        Ok(())
    }

    /// TikTok answered `105002` (access token expired) to a call made with the token of
    /// `used_generation`; returns the token to retry with.
    ///
    /// - That token was already replaced: the current one, without a refresh.
    /// - A refresh is in flight: joins it.
    /// - The last refresh failed less than the retry interval ago:
    ///   [`TokenError::RefreshBackoff`], without a call.
    /// - Otherwise: refreshes now.
    pub async fn force_refresh(
        &self,
        shop_id: &str,
        used_generation: u64,
    ) -> Result<AccessToken, TokenError> {
        let shop = self.shop(shop_id)?;
        let shop = &shop;
        let flight = {
            // Under the slot lock a finished refresh has already stored its tokens or its
            // back-off (the task writes them before clearing the slot), so these checks and
            // the start of a new flight cannot interleave with one ending.
            let mut slot = shop.flight.lock();
            if shop.current.load().generation != used_generation {
                drop(slot);
                return self.current_token(shop);
            }
            match slot.as_ref() {
                Some(flight) => flight.clone(),
                None => {
                    let now = self.inner.clock.unix_seconds();
                    let not_before = shop.retry_not_before.load(Ordering::Relaxed);
                    if not_before > now {
                        return Err(TokenError::RefreshBackoff {
                            shop: shop.shop_id.clone(),
                            retry_in_secs: u64::try_from(not_before - now).unwrap_or(u64::MAX),
                        });
                    }
                    self.start_flight(shop, &mut slot, Need::Replace(used_generation))
                }
            }
        };
        flight.await?;
        self.current_token(shop)
    }

    fn shop(&self, shop_id: &str) -> Result<Arc<ShopState>, TokenError> {
        self.inner
            .shops
            .load()
            .get(shop_id)
            .cloned()
            .ok_or_else(|| TokenError::UnknownShop(shop_id.to_string()))
    }

    fn current_token(&self, shop: &ShopState) -> Result<AccessToken, TokenError> {
        let current = shop.current.load();
        let token = current
            .access
            .as_ref()
            .ok_or_else(|| TokenError::NoAccessToken(shop.shop_id.clone()))?;
        if let Some(exp) = current.access_expires_at
            && exp <= self.inner.clock.unix_seconds()
        {
            return Err(TokenError::AccessExpired(shop.shop_id.clone()));
        }
        Ok(AccessToken::new(token.clone(), current.generation))
    }

    /// One pass of the refresher: refreshes, concurrently, every shop whose access token is
    /// within the margin of expiry (or of unknown expiry) and that is not waiting out a recent
    /// failure. Returns each attempted shop with its result.
    pub async fn refresh_due(&self) -> Vec<(String, Result<(), TokenError>)> {
        let now = self.inner.clock.unix_seconds();
        let margin = secs(self.inner.settings.refresh_margin);
        let shops = self.inner.shops.load_full();
        let due: Vec<&Arc<ShopState>> = shops
            .values()
            .filter(|shop| {
                let current = shop.current.load();
                current.usable_refresh(now).is_some()
                    && shop.retry_not_before.load(Ordering::Relaxed) <= now
                    && current
                        .access_expires_at
                        .is_none_or(|exp| exp.saturating_sub(margin) <= now)
            })
            .collect();
        let results = futures::future::join_all(due.iter().map(|shop| self.flight(shop))).await;
        due.into_iter()
            .zip(results)
            .map(|(shop, result)| (shop.shop_id.clone(), result))
            .collect()
    }

    /// The background refresher; run it as a background service until `shutdown` turns true.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        self.run_audited(shutdown, None).await
    }

    /// As [`TokenManager::run`], recording each failed refresh in `audit` (the shop id and the
    /// kind of failure; never a token).
    pub async fn run_audited(
        &self,
        mut shutdown: watch::Receiver<bool>,
        audit: Option<&crate::audit::AuditLog>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.inner.save_unsaved().await;
            for (shop, result) in self.refresh_due().await {
                match result {
                    Ok(()) => tracing::info!(shop = %shop, "tiktok access token refreshed"),
                    Err(e) => {
                        tracing::warn!(shop = %shop, error = %e, "tiktok token refresh failed");
                        if let Some(audit) = audit {
                            audit.record(
                                crate::audit::AuditEvent::new(
                                    "tiktok.token_refresh",
                                    crate::audit::Outcome::Failed,
                                )
                                .detail("shop_id", shop.as_str())
                                .detail("error", e.to_string()),
                            );
                        }
                    }
                }
            }
            let wait = self.next_check();
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Time until the earliest shop becomes due, between 1 s and `check_interval`.
    fn next_check(&self) -> Duration {
        let now = self.inner.clock.unix_seconds();
        let margin = secs(self.inner.settings.refresh_margin);
        let cap = self
            .inner
            .settings
            .check_interval
            .max(Duration::from_secs(1));
        let earliest = self
            .inner
            .shops
            .load()
            .values()
            .filter_map(|shop| {
                let current = shop.current.load();
                current.usable_refresh(now)?;
                let due = current.access_expires_at?.saturating_sub(margin);
                Some(due.max(shop.retry_not_before.load(Ordering::Relaxed)))
            })
            .min();
        match earliest {
            Some(at) => Duration::from_secs(at.saturating_sub(now).max(1) as u64).min(cap),
            None => cap,
        }
    }

    /// Joins the shop's refresh in flight or starts one. The refresh runs in its own task so a
    /// caller that gives up (a cancelled request) does not cancel it for the others.
    fn flight(&self, shop: &Arc<ShopState>) -> RefreshFlight {
        let mut slot = shop.flight.lock();
        match slot.as_ref() {
            Some(flight) => flight.clone(),
            None => self.start_flight(shop, &mut slot, Need::Due),
        }
    }

    /// Starts a refresh task and stores it in the shop's (locked, empty) flight slot.
    fn start_flight(
        &self,
        shop: &Arc<ShopState>,
        slot: &mut Option<RefreshFlight>,
        need: Need,
    ) -> RefreshFlight {
        let inner = self.inner.clone();
        let task_shop = shop.clone();
        // The trace context of whoever started the refresh (a TikTok call that met 105002, or
        // none in the background) goes with the task, so its span joins that trace.
        let trace = crate::telemetry::otel::TraceCx::current();
        let handle = tokio::spawn(crate::telemetry::otel::WithTraceCx::with_context(
            async move {
                let result = inner.refresh(&task_shop, need).await;
                // The slot lock is held by the starter until the new flight is stored, so this
                // always clears the flight this task belongs to; the new tokens or the back-off
                // are stored before it.
                *task_shop.flight.lock() = None;
                result
            },
            trace,
        ));
        let flight = async move { handle.await.unwrap_or(Err(TokenError::Task)) }
            .boxed()
            .shared();
        *slot = Some(flight.clone());
        flight
    }
}

impl Inner {
    async fn refresh(&self, shop: &ShopState, need: Need) -> Result<(), TokenError> {
        let result = match &self.vault {
            Some(vault) => self.refresh_fleet(shop, need, vault).await,
            None => self.refresh_once(shop).await.map(|_| ()),
        };
        match &result {
            Ok(()) => {}
            // Waiting for another replica is not a failed refresh: no back-off, no count.
            Err(TokenError::RefreshElsewhere(_)) => return result,
            Err(_) => {
                let retry = self
                    .clock
                    .unix_seconds()
                    .saturating_add(secs(self.settings.retry_interval));
                shop.retry_not_before.store(retry, Ordering::Relaxed);
            }
        }
        result
    }

    /// Whether the shop still needs a refresh for `need` with the tokens it holds now.
    fn needed(&self, shop: &ShopState, need: Need) -> bool {
        let current = shop.current.load();
        match need {
            Need::Replace(generation) => current.generation == generation,
            Need::Due => {
                let now = self.clock.unix_seconds();
                let margin = secs(self.settings.refresh_margin);
                current
                    .access_expires_at
                    .is_none_or(|exp| exp.saturating_sub(margin) <= now)
            }
        }
    }

    /// Takes newer tokens from the store if it has them; `true` when it did.
    async fn adopt_stored(&self, shop: &ShopState, vault: &TokenVault) -> Result<bool, TokenError> {
        let Some((generation, set)) = vault.load(&shop.shop_id).await? else {
            return Ok(false);
        };
        if generation <= shop.current.load().generation {
            return Ok(false);
        }
        shop.current
            .store(Arc::new(Current::from_set(set, generation)));
        shop.unsaved.store(false, Ordering::Relaxed);
        shop.retry_not_before.store(i64::MIN, Ordering::Relaxed);
        Ok(true)
    }

    /// The fleet-wide refresh: newer stored tokens first, then the lease; the holder calls
    /// TikTok, the others wait for what it stores.
    async fn refresh_fleet(
        &self,
        shop: &ShopState,
        need: Need,
        vault: &TokenVault,
    ) -> Result<(), TokenError> {
        if self.adopt_stored(shop, vault).await? && !self.needed(shop, need) {
            return Ok(());
        }
        if !vault.lease(&shop.shop_id, self.clock.unix_millis()).await? {
            // Another replica refreshes: use what it stores, polling for up to one lease.
            let deadline = tokio::time::Instant::now() + vault.lease;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if self.adopt_stored(shop, vault).await.unwrap_or(false) {
                    return Ok(());
                }
            }
            return Err(TokenError::RefreshElsewhere(shop.shop_id.clone()));
        }
        // A holder before us may have finished between the read and the lease.
        let result = match self.adopt_stored(shop, vault).await {
            Ok(true) if !self.needed(shop, need) => Ok(()),
            Err(e) => Err(e),
            Ok(_) => self.refresh_once(shop).await.map(|_| ()),
        };
        vault.release(&shop.shop_id).await;
        result
    }

    /// Calls TikTok with the shop's refresh token and installs (and stores) the answer.
    async fn refresh_once(&self, shop: &ShopState) -> Result<u64, TokenError> {
        use crate::telemetry::otel;
        // Only the shop id and the outcome: the call's URL carries the app secret and the
        // refresh token.
        let span = self
            .settings
            .tracing
            .client_span(|| "tiktok.token_refresh".into(), None);
        let traceparent = span.as_ref().and_then(otel::traceparent);
        let result = self.call_refresh(shop, traceparent.as_deref()).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        if let Some(cx) = &span {
            otel::set(
                cx,
                [
                    opentelemetry::KeyValue::new("gateway.shop", shop.shop_id.clone()),
                    opentelemetry::KeyValue::new("gateway.outcome", outcome),
                ],
            );
            if let Err(e) = &result {
                otel::fail(cx, e.kind());
            }
            otel::end(cx);
        }
        self.refreshes
            .with_label_values(&[shop.shop_id.as_str(), outcome])
            .inc();
        result
    }

    async fn call_refresh(
        &self,
        shop: &ShopState,
        traceparent: Option<&str>,
    ) -> Result<u64, TokenError> {
        let now = self.clock.unix_seconds();
        let current = shop.current.load_full();
        let refresh_token = current
            .usable_refresh(now)
            .ok_or_else(|| TokenError::NoRefreshToken(shop.shop_id.clone()))?;
        let url = refresh::refresh_url(
            &shop.app.auth_base,
            &shop.app.app_key,
            &shop.app.app_secret,
            refresh_token,
        )
        .ok_or_else(|| TokenError::BadAuthBase(shop.shop_id.clone()))?;
        let set = refresh::call(&shop.http, url, traceparent, &shop.shop_id, now).await?;
        let generation = current.generation + 1;
        shop.current
            .store(Arc::new(Current::from_set(set, generation)));
        shop.retry_not_before.store(i64::MIN, Ordering::Relaxed);
        // TikTok may already have retired the old refresh token: what it answered must reach
        // the store. Tried a few times now; if the store is still down, the background loop
        // keeps trying, and the new tokens are used from memory meanwhile.
        shop.unsaved.store(true, Ordering::Relaxed);
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if self.save(shop).await.is_ok() {
                break;
            }
        }
        if shop.unsaved.load(Ordering::Relaxed) {
            tracing::error!(shop = %shop.shop_id, "tiktok tokens refreshed but not stored yet; will keep trying");
        }
        Ok(generation)
    }

    /// Stores the shop's current tokens if they are not stored yet.
    async fn save(&self, shop: &ShopState) -> Result<(), TokenError> {
        let Some(vault) = &self.vault else {
            shop.unsaved.store(false, Ordering::Relaxed);
            return Ok(());
        };
        if !shop.unsaved.load(Ordering::Relaxed) {
            return Ok(());
        }
        let current = shop.current.load_full();
        let Some(set) = current.to_set() else {
            shop.unsaved.store(false, Ordering::Relaxed);
            return Ok(());
        };
        vault
            .save(
                &shop.shop_id,
                current.generation,
                &set,
                self.clock.unix_millis(),
            )
            .await?;
        // Unless a newer refresh replaced them meanwhile, these are now stored.
        if shop.current.load().generation == current.generation {
            shop.unsaved.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Stores every refreshed token set the store missed.
    async fn save_unsaved(&self) {
        for shop in self.shops.load().values() {
            if shop.unsaved.load(Ordering::Relaxed) && self.save(shop).await.is_ok() {
                tracing::info!(shop = %shop.shop_id, "refreshed tiktok tokens stored");
            }
        }
    }
}

/// Exchanges a seller's single-use auth code at the app's token host for the first tokens of
/// the authorization. Errors name what failed (`Refused` carries TikTok's code, `36004004` for a
/// used or invalid code), never the code, the tokens or the URL.
pub async fn exchange_auth_code(
    app: &AppCredentials,
    auth_code: &str,
    timeout: Duration,
    now: i64,
) -> Result<TokenSet, TokenError> {
    const WHO: &str = "(new authorization)";
    if !refresh::valid_base(&app.auth_base) {
        return Err(TokenError::BadAuthBase(WHO.into()));
    }
    let client = refresh::client(timeout, app.ca.as_deref())?;
    let url = refresh::token_get_url(&app.auth_base, &app.app_key, &app.app_secret, auth_code)
        .ok_or_else(|| TokenError::BadAuthBase(WHO.into()))?;
    refresh::call(&client, url, None, WHO, now).await
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
