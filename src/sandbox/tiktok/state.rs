//! The sandbox's shared state: shops, live tokens, generated data, webhooks, throttles, and the
//! record of requests. Tests hold the same `Arc` to read what happened or to change the world
//! (expire a token, issue an auth code, change the rate).

use std::collections::HashMap;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::{ACCESS_TOKEN_LIFETIME_SECS, SandboxConfig, SandboxRate};
use super::data::ShopData;
use super::record::{Counters, RecordedRequest};
use super::throttle::Bucket;
use crate::clock::SharedClock;
use crate::config::Secret;

/// Records kept at most; older ones are dropped so a long demo does not grow without bound.
const MAX_RECORDS: usize = 10_000;
/// Auth codes are single use and live 30 minutes.
const AUTH_CODE_LIFETIME_SECS: i64 = 30 * 60;

/// A shop as the sandbox knows it.
#[derive(Debug, Clone)]
pub(crate) struct ShopInfo {
    pub id: String,
    pub name: String,
    pub region: String,
    pub cipher: String,
    /// TikTok's short shop code.
    pub code: String,
}

/// A token or code and the shop it is for.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub shop_id: String,
    pub expires_at: i64,
}

pub(crate) struct Inner {
    pub shops: Vec<ShopInfo>,
    pub access_tokens: HashMap<String, Grant>,
    pub refresh_tokens: HashMap<String, Grant>,
    pub auth_codes: HashMap<String, Grant>,
    pub data: HashMap<String, ShopData>,
    pub rate: Option<SandboxRate>,
    pub buckets: HashMap<String, Bucket>,
    pub records: Vec<RecordedRequest>,
    pub counters: Counters,
    /// For data made while serving (tracking numbers, label links): seeded, so runs repeat.
    /// Tokens and codes come from [`crate::sandbox::secret`] instead.
    pub rng: StdRng,
    pub request_seq: u64,
    /// Where the authorization page sends the seller back.
    pub redirect_uri: Option<String>,
    /// The shop the seller on the authorization page owns.
    pub authorize_shop: Option<String>,
    /// The token host answers every call with an internal error while set.
    pub token_host_down: bool,
}

/// Shared by the server and by tests.
pub struct SandboxState {
    pub(crate) app_key: String,
    pub(crate) app_secret: Secret,
    pub(crate) clock: SharedClock,
    pub(crate) inner: Mutex<Inner>,
}

impl std::fmt::Debug for SandboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxState")
            .field("app_key", &self.app_key)
            .finish_non_exhaustive()
    }
}

impl SandboxState {
    pub(crate) fn new(config: &SandboxConfig) -> Self {
        let now = config.clock.unix_seconds();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut shops = Vec::new();
        let mut access_tokens = HashMap::new();
        let mut refresh_tokens = HashMap::new();
        let mut data = HashMap::new();
        for shop in &config.shops {
            let code = format!("{}LCL{:05}", shop.region, rng.random_range(0..100_000));
            shops.push(ShopInfo {
                id: shop.id.clone(),
                name: shop.name.clone(),
                region: shop.region.clone(),
                cipher: shop.cipher.clone(),
                code,
            });
            access_tokens.insert(
                shop.access_token.expose().to_owned(),
                Grant {
                    shop_id: shop.id.clone(),
                    expires_at: shop.access_token_expires_at,
                },
            );
            refresh_tokens.insert(
                shop.refresh_token.expose().to_owned(),
                Grant {
                    shop_id: shop.id.clone(),
                    expires_at: shop.refresh_token_expires_at,
                },
            );
            data.insert(
                shop.id.clone(),
                ShopData::generate(&mut rng, &shop.region, config.orders_per_shop, now),
            );
        }
        Self {
            app_key: config.app_key.clone(),
            app_secret: config.app_secret.clone(),
            clock: config.clock.clone(),
            inner: Mutex::new(Inner {
                shops,
                access_tokens,
                refresh_tokens,
                auth_codes: HashMap::new(),
                data,
                rate: config.rate,
                buckets: HashMap::new(),
                records: Vec::new(),
                counters: Counters::default(),
                rng,
                request_seq: 0,
                redirect_uri: config.redirect_uri.clone(),
                authorize_shop: config.authorize_shop.clone(),
                token_host_down: false,
            }),
        }
    }

    /// TikTok's clock.
    pub fn now(&self) -> i64 {
        self.clock.unix_seconds()
    }

    /// Every request received so far, oldest first.
    pub fn records(&self) -> Vec<RecordedRequest> {
        self.inner.lock().records.clone()
    }

    /// How many requests arrived (accepted or not).
    pub fn request_count(&self) -> usize {
        self.inner.lock().records.len()
    }

    pub fn counters(&self) -> Counters {
        self.inner.lock().counters.clone()
    }

    /// Forgets the records and zeroes the counters.
    pub fn reset_records(&self) {
        let mut inner = self.inner.lock();
        inner.records.clear();
        inner.counters = Counters::default();
    }

    /// Makes every access token of `shop_id` expired as of now; calls with them get `105002`.
    /// Returns how many tokens it expired.
    pub fn expire_access_tokens(&self, shop_id: &str) -> usize {
        let now = self.now();
        let mut inner = self.inner.lock();
        let mut n = 0;
        for grant in inner.access_tokens.values_mut() {
            if grant.shop_id == shop_id && grant.expires_at >= now {
                grant.expires_at = now - 1;
                n += 1;
            }
        }
        n
    }

    /// Issues a new access token for `shop_id` directly (as if the seller re-authorised).
    pub fn issue_access_token(&self, shop_id: &str) -> Option<Secret> {
        let now = self.now();
        let mut inner = self.inner.lock();
        if !inner.shops.iter().any(|s| s.id == shop_id) {
            return None;
        }
        let token = inner.new_token("TTP_at_");
        inner.access_tokens.insert(
            token.clone(),
            Grant {
                shop_id: shop_id.to_owned(),
                expires_at: now + ACCESS_TOKEN_LIFETIME_SECS,
            },
        );
        Some(Secret::new(token))
    }

    /// A fresh single-use auth code for `shop_id`, as a seller's authorisation redirect carries.
    pub fn issue_auth_code(&self, shop_id: &str) -> Option<Secret> {
        let now = self.now();
        let mut inner = self.inner.lock();
        if !inner.shops.iter().any(|s| s.id == shop_id) {
            return None;
        }
        let code = inner.new_token("ROW_ac_");
        inner.auth_codes.insert(
            code.clone(),
            Grant {
                shop_id: shop_id.to_owned(),
                expires_at: now + AUTH_CODE_LIFETIME_SECS,
            },
        );
        Some(Secret::new(code))
    }

    /// Sets the app's registered redirect URL (the gateway's callback route).
    pub fn set_redirect_uri(&self, uri: &str) {
        self.inner.lock().redirect_uri = Some(uri.to_owned());
    }

    /// Makes the token host fail every call (HTTP 503, `36009003`) until called with `false`.
    pub fn set_token_host_down(&self, down: bool) {
        self.inner.lock().token_host_down = down;
    }

    /// How many calls reached the token host's `token/get` (accepted or not).
    pub fn token_get_count(&self) -> usize {
        self.inner
            .lock()
            .records
            .iter()
            .filter(|r| r.path == super::tokens::GET_PATH)
            .count()
    }

    /// Changes (or removes) the per-shop rate; buckets start full again.
    pub fn set_rate(&self, rate: Option<SandboxRate>) {
        let mut inner = self.inner.lock();
        inner.rate = rate;
        inner.buckets.clear();
    }

    /// The IDs of a shop's orders, newest first.
    pub fn order_ids(&self, shop_id: &str) -> Vec<String> {
        let inner = self.inner.lock();
        inner
            .data
            .get(shop_id)
            .map(|d| d.order_ids())
            .unwrap_or_default()
    }

    /// One order as TikTok would return it, for tests to compare against.
    pub fn order(&self, shop_id: &str, order_id: &str) -> Option<serde_json::Value> {
        let inner = self.inner.lock();
        inner.data.get(shop_id)?.order(order_id).cloned()
    }

    /// The webhook address registered for an event type, if any.
    pub fn webhook_address(&self, shop_id: &str, event_type: &str) -> Option<String> {
        let inner = self.inner.lock();
        inner
            .data
            .get(shop_id)?
            .webhooks
            .get(event_type)
            .map(|w| w.address.clone())
    }
}

impl Inner {
    /// An opaque token with a recognisable prefix, from the OS-seeded RNG (not the data seed:
    /// tokens must not repeat across runs).
    pub(crate) fn new_token(&mut self, prefix: &str) -> String {
        crate::sandbox::secret::random_token(prefix, 40)
    }

    /// TikTok-shaped request id: a timestamp-like prefix and a counter.
    pub(crate) fn next_request_id(&mut self, now: i64) -> String {
        self.request_seq += 1;
        format!("{now}{:018X}", self.request_seq)
    }

    pub(crate) fn record(&mut self, record: RecordedRequest) {
        self.counters.count(record.rejected);
        if self.records.len() == MAX_RECORDS {
            self.records.remove(0);
        }
        self.records.push(record);
    }

    pub(crate) fn shop(&self, shop_id: &str) -> Option<&ShopInfo> {
        self.shops.iter().find(|s| s.id == shop_id)
    }
}
