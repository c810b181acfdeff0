//! Gauges read from the long-lived state when `/metrics` is scraped (nothing to keep in step):
//! - `tiktok_token_expires_in_seconds{shop,token}`: seconds until each shop's access and refresh
//!   token expire (negative once expired; absent while unknown);
//! - `jwks_refresh_age_seconds{issuer}`: seconds since each URL issuer's keys were last fetched
//!   (`+Inf` before the first success);
//! - `ready`: 1 while `/readyz` answers 200.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGauge, Opts};

use crate::auth::JwksStore;
use crate::clock::SharedClock;
use crate::telemetry::readiness::Readiness;
use crate::tiktok::tokens::TokenManager;

pub struct StateGauges {
    tokens: Option<TokenManager>,
    jwks: Vec<Arc<JwksStore>>,
    clock: SharedClock,
    readiness: Arc<Readiness>,
    token_expiry: GaugeVec,
    jwks_age: GaugeVec,
    ready: IntGauge,
}

impl StateGauges {
    pub fn new(
        tokens: Option<TokenManager>,
        jwks: Vec<Arc<JwksStore>>,
        clock: SharedClock,
        readiness: Arc<Readiness>,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self {
            tokens,
            jwks: jwks.into_iter().filter(|s| s.is_remote()).collect(),
            clock,
            readiness,
            token_expiry: GaugeVec::new(
                Opts::new(
                    "tiktok_token_expires_in_seconds",
                    "Seconds until a shop's TikTok token expires, by shop and token (access, \
                     refresh); negative once expired",
                ),
                &["shop", "token"],
            )?,
            jwks_age: GaugeVec::new(
                Opts::new(
                    "jwks_refresh_age_seconds",
                    "Seconds since a JWT issuer's keys were last fetched from its JWKS URL \
                     (+Inf before the first success)",
                ),
                &["issuer"],
            )?,
            ready: IntGauge::new("ready", "1 while /readyz answers 200, else 0")?,
        })
    }
}

impl Collector for StateGauges {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.token_expiry.desc();
        d.extend(self.jwks_age.desc());
        d.extend(self.ready.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = self.clock.unix_seconds();
        self.token_expiry.reset();
        if let Some(tokens) = &self.tokens {
            for shop in tokens.shop_ids() {
                let shop = shop.as_str();
                let expiries = [
                    ("access", tokens.access_expires_at(shop)),
                    ("refresh", tokens.refresh_expires_at(shop)),
                ];
                for (token, at) in expiries {
                    if let Some(at) = at {
                        self.token_expiry
                            .with_label_values(&[shop, token])
                            .set((at - now) as f64);
                    }
                }
            }
        }
        self.jwks_age.reset();
        for store in &self.jwks {
            let age = store
                .last_refreshed_at()
                .map_or(f64::INFINITY, |t| (now - t).max(0) as f64);
            self.jwks_age.with_label_values(&[store.name()]).set(age);
        }
        self.ready.set(i64::from(self.readiness.report_now().ready));
        let mut out = self.token_expiry.collect();
        out.extend(self.jwks_age.collect());
        out.extend(self.ready.collect());
        out
    }
}
