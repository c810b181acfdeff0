//! What a TikTok Shop sandbox is started with: the app it knows, its shops and their tokens,
//! its rate limit, its clock and the seed its data comes from.

use std::sync::Arc;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Secret;
use crate::sandbox::secret::{random_hex, random_token};

/// The shop [`SandboxConfig::with_onboarding_shop`] adds.
pub const ONBOARDING_SHOP: &str = "7000714532876273420";

/// Seven days: how long TikTok's access tokens last.
pub const ACCESS_TOKEN_LIFETIME_SECS: i64 = 7 * 24 * 3600;
/// About a year: how long a refresh token (the seller's authorization) lasts.
pub const REFRESH_TOKEN_LIFETIME_SECS: i64 = 365 * 24 * 3600;

/// Settings for one sandbox.
#[derive(Clone)]
pub struct SandboxConfig {
    /// The only app this sandbox accepts.
    pub app_key: String,
    pub app_secret: Secret,
    /// The shops authorised for the app.
    pub shops: Vec<SandboxShop>,
    /// Per-shop throttling; `None` never throttles.
    pub rate: Option<SandboxRate>,
    /// TikTok's clock: timestamp windows and token expiry are judged against it.
    pub clock: SharedClock,
    /// Seed for the generated data, so tests see the same orders every run.
    pub seed: u64,
    /// How many orders each shop has.
    pub orders_per_shop: usize,
    /// The app's registered redirect URL: where the authorization page sends the seller's
    /// browser back with `code` and `state` (settable later on the running sandbox).
    pub redirect_uri: Option<String>,
    /// The shop the seller on the authorization page owns (default: the first shop).
    pub authorize_shop: Option<String>,
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("app_key", &self.app_key)
            .field("app_secret", &self.app_secret)
            .field("shops", &self.shops)
            .field("rate", &self.rate)
            .field("seed", &self.seed)
            .field("orders_per_shop", &self.orders_per_shop)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// One authorised shop and the tokens it starts with.
#[derive(Debug, Clone)]
pub struct SandboxShop {
    /// Shop ID, a decimal string (64-bit values never pass through a float).
    pub id: String,
    pub name: String,
    /// Two-letter region: `US`, `GB` or `BR` shape the generated data (others act as `US`).
    pub region: String,
    /// The `shop_cipher` shop-scoped calls must carry.
    pub cipher: String,
    pub access_token: Secret,
    /// Absolute unix seconds.
    pub access_token_expires_at: i64,
    pub refresh_token: Secret,
    /// Absolute unix seconds.
    pub refresh_token_expires_at: i64,
}

impl SandboxShop {
    /// A shop whose tokens were issued at `now`, with TikTok's usual lifetimes.
    pub fn new(
        id: &str,
        region: &str,
        cipher: &str,
        access_token: &str,
        refresh_token: &str,
        now: i64,
    ) -> Self {
        Self {
            id: id.to_owned(),
            name: format!("Sandbox shop {id}"),
            region: region.to_owned(),
            cipher: cipher.to_owned(),
            access_token: Secret::new(access_token),
            access_token_expires_at: now + ACCESS_TOKEN_LIFETIME_SECS,
            refresh_token: Secret::new(refresh_token),
            refresh_token_expires_at: now + REFRESH_TOKEN_LIFETIME_SECS,
        }
    }
}

/// A per-shop token bucket: `per_second` sustained (fractions allowed, e.g. `0.5`), `burst` at
/// once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SandboxRate {
    pub per_second: f64,
    pub burst: u32,
}

impl SandboxConfig {
    /// A ready-made sandbox for the demo and tests: one app, a US shop and a Brazilian shop
    /// (the latter's orders carry CPF numbers), no throttling, the system clock. The app secret,
    /// the shops' tokens and their ciphers are made up afresh by every call.
    pub fn example(seed: u64) -> Self {
        Self::example_with_clock(seed, Arc::new(SystemClock))
    }

    /// [`SandboxConfig::example`] on a given clock.
    pub fn example_with_clock(seed: u64, clock: SharedClock) -> Self {
        let now = clock.unix_seconds();
        let shop = |id: &str, region: &str| {
            SandboxShop::new(
                id,
                region,
                &random_token(&format!("ROW_sbx{region}_"), 26),
                &random_token("TTP_", 40),
                &random_token("TTP_", 40),
                now,
            )
        };
        Self {
            app_key: "6a1b2c3d4e5f6".to_owned(),
            app_secret: Secret::new(random_hex(32)),
            shops: vec![
                shop("7494049642642441621", "US"),
                shop("7495540735365777507", "BR"),
            ],
            rate: None,
            clock,
            seed,
            orders_per_shop: 60,
            redirect_uri: None,
            authorize_shop: None,
        }
    }

    /// Adds a British shop for onboarding (`ONBOARDING_SHOP`) and makes it the one the
    /// authorization page authorizes: configs built from the sandbox before this call do not
    /// know it.
    pub fn with_onboarding_shop(mut self) -> Self {
        let now = self.clock.unix_seconds();
        self.shops.push(SandboxShop::new(
            ONBOARDING_SHOP,
            "GB",
            &random_token("GCP_sbxGB_", 26),
            &random_token("TTP_", 40),
            &random_token("TTP_", 40),
            now,
        ));
        self.authorize_shop = Some(ONBOARDING_SHOP.to_owned());
        self
    }

    /// The config without the shops a seller authorizes at runtime: what a gateway is set up
    /// with before onboarding.
    pub fn without_onboarding_shop(&self) -> Self {
        let mut view = self.clone();
        view.shops.retain(|s| s.id != ONBOARDING_SHOP);
        view
    }
}
