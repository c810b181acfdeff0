//! A route as the pipeline runs it: every name in the config resolved to a direct handle when the
//! snapshot is compiled, so no stage looks anything up by name per request.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use http::HeaderName;
use prometheus::{Histogram, IntCounter};

use crate::auth::RouteAuth;
use crate::config::{Route, TikTokApp, TikTokShop, Upstream};
use crate::limit::LimitId;
use crate::telemetry::metrics::metrics;
use crate::tiktok::developer_webhook::DeveloperWebhookVerifier;
use crate::tiktok::webhook::ShopWebhookVerifier;

/// What ends a request once the shared stages have passed it.
pub enum RouteKind {
    /// Forwarded to the route's upstream by Pingora, body streamed or replayed.
    Proxy,
    /// Signed and sent to TikTok by the gateway through the route's upstream.
    TikTokEgress(TikTokPlan),
    /// Verified, stored durably and acknowledged; delivered from the queue.
    WebhookIngress(WebhookPlan),
    /// A seller's browser back from TikTok's authorization page: state checked, code
    /// exchanged, shops listed and stored.
    TikTokAuthorization(AuthorizationPlan),
}

/// The authorization callback's app, and the `Host` of its shop-list call.
pub struct AuthorizationPlan {
    pub app: Arc<TikTokApp>,
    pub authority: String,
}

/// A TikTok route's app and the shops a caller may name.
pub struct TikTokPlan {
    pub app: Arc<TikTokApp>,
    /// `host[:port]` of the app's `api_base`: the `Host` of every signed call.
    pub authority: String,
    pub shop_header: HeaderName,
    /// The app's shops by id.
    pub shops: HashMap<String, Arc<TikTokShop>>,
}

/// The signature scheme a webhook route verifies, with its verifier.
pub enum WebhookVerifier {
    /// TikTok Shop: `Authorization` = HMAC(app_secret, app_key + body).
    Shop(ShopWebhookVerifier),
    /// TikTok for Developers: `TikTok-Signature: t=..,s=..`.
    Developer(DeveloperWebhookVerifier),
}

pub struct WebhookPlan {
    pub verifier: WebhookVerifier,
    /// Who a verified signature proves: subject `tiktok-webhook:<app>`, no scopes.
    pub identity: Arc<crate::auth::Identity>,
    /// The delivery URL's origin (`http://host:port` or `https://sni:port`).
    pub delivery_origin: String,
}

/// How a route's caller proves who it is.
pub enum Authenticator {
    /// JWT, API key, mTLS or `none`, from the request head.
    Caller(RouteAuth),
    /// A TikTok signature over the raw body; the identity is the app.
    WebhookSignature,
}

/// The route's metric series, labelled once.
pub struct RouteMetrics {
    pub duration: Histogram,
    /// `requests_total{route, status}`, one slot per status code, made on first use.
    by_status: Box<[OnceLock<IntCounter>]>,
    route: Arc<str>,
    /// `upstream_duration_seconds{upstream, outcome}` for the answered outcomes (`1xx`..`5xx`),
    /// made on first use; error outcomes are rare and labelled when they happen.
    upstream_by_class: [OnceLock<Histogram>; 5],
    upstream: Arc<str>,
}

impl RouteMetrics {
    pub fn new(route: &str, upstream: &str) -> Self {
        Self {
            duration: metrics().request_duration.with_label_values(&[route]),
            by_status: (100..600).map(|_| OnceLock::new()).collect(),
            route: route.into(),
            upstream_by_class: Default::default(),
            upstream: upstream.into(),
        }
    }

    /// Observes one upstream exchange of `seconds` that ended with `outcome` (a status class
    /// from [`status_class`](crate::telemetry::metrics::status_class) or an error kind).
    pub fn observe_upstream(&self, outcome: &str, seconds: f64) {
        let slot = match outcome.as_bytes() {
            [class @ b'1'..=b'5', b'x', b'x'] => {
                self.upstream_by_class.get(usize::from(class - b'1'))
            }
            _ => None,
        };
        let labelled = || {
            metrics()
                .upstream_duration
                .with_label_values(&[&*self.upstream, outcome])
        };
        match slot {
            Some(slot) => slot.get_or_init(labelled).observe(seconds),
            None => labelled().observe(seconds),
        }
    }

    /// Counts one answered request with `status` (0 when nothing was answered).
    pub fn count_request(&self, status: u16) {
        let slot = status
            .checked_sub(100)
            .and_then(|i| self.by_status.get(usize::from(i)));
        let labelled = || {
            metrics()
                .requests_total
                .with_label_values(&[&*self.route, &status.to_string()])
        };
        match slot {
            Some(slot) => slot.get_or_init(labelled).inc(),
            None => labelled().inc(),
        }
    }
}

pub struct CompiledRoute {
    pub name: Arc<str>,
    /// The validated route: match, limits, inspection settings, rewrite.
    pub config: Arc<Route>,
    pub kind: RouteKind,
    pub auth: Authenticator,
    /// This route's limits in the snapshot's limiter, in config order.
    pub limit_ids: Box<[LimitId]>,
    pub upstream: Arc<Upstream>,
    /// The upstream's targets and their health: where this route's requests go.
    pub pool: Arc<super::upstreams::Pool>,
    pub metrics: RouteMetrics,
}

impl CompiledRoute {
    pub fn tiktok(&self) -> Option<&TikTokPlan> {
        match &self.kind {
            RouteKind::TikTokEgress(plan) => Some(plan),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_count(upstream: &str, outcome: &str) -> u64 {
        metrics()
            .upstream_duration
            .with_label_values(&[upstream, outcome])
            .get_sample_count()
    }

    /// Answered outcomes go to their cached series, any other outcome to its own: each lands
    /// under the route's upstream and exactly the outcome it was given.
    #[test]
    fn upstream_latency_is_counted_under_its_upstream_and_outcome() {
        let m = RouteMetrics::new("route-metrics-test", "route-metrics-upstream");
        for outcome in [
            "1xx", "2xx", "2xx", "3xx", "4xx", "5xx", "timeout", "connect",
        ] {
            m.observe_upstream(outcome, 0.01);
        }
        let expected = [
            ("1xx", 1),
            ("2xx", 2),
            ("3xx", 1),
            ("4xx", 1),
            ("5xx", 1),
            ("timeout", 1),
            ("connect", 1),
            ("6xx", 0),
        ];
        for (outcome, n) in expected {
            assert_eq!(
                upstream_count("route-metrics-upstream", outcome),
                n,
                "{outcome}"
            );
        }
    }
}
