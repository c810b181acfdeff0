//! The facade the pipeline calls: one [`RateLimiter`] per config snapshot holding every route's
//! limits, and one [`RateLimiter::check`] per request per limit.
//!
//! On the local backend a check is a hash, a map lookup and an atomic update, with no await,
//! lock or allocation. On Redis it is one script round trip, bounded by a timeout, with the
//! configured fallback when Redis fails.

use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::Notify;

use super::decision::{Decision, DecisionSource, LimitId, Verdict};
use super::fallback::{BackendHealth, OnBackendError};
use super::headers::{PolicyLabel, RateLimitHeaders};
use super::local::{DEFAULT_MAX_KEYS, LocalLimiter};
use super::metrics::metrics;
use super::redis::{RedisBackend, RedisSettings, RedisSetupError};
use super::spec::LimitSpec;
use super::time::MonotonicClock;

/// `rate_limits:`: where limits are counted.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub backend: Backend,
    /// Hard cap on distinct keys each limit tracks in memory (default 100 000). Keys first
    /// seen beyond it share one overflow bucket until idle keys are swept.
    pub max_keys_per_limit: usize,
    /// How often idle keys are dropped from memory (default 10 s).
    pub sweep_interval: Duration,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            backend: Backend::Local,
            max_keys_per_limit: DEFAULT_MAX_KEYS,
            sweep_interval: Duration::from_secs(10),
        }
    }
}

/// `rate_limits.backend`.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Each gateway counts on its own.
    Local,
    /// Every gateway shares the counts on one Redis.
    Redis(RedisSettings),
}

/// One limit of one route.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// The route's name (metrics label, Redis namespace).
    pub route: String,
    /// The policy's name in `RateLimit-Policy`, unique within the route: e.g. the route's name
    /// for its only limit, or `<route>.<index>` when it has several.
    pub name: String,
    pub spec: LimitSpec,
}

/// Why a limiter could not be built from settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("route `{route}` has two rate limits named `{name}`")]
    DuplicateLimit { route: String, name: String },
    #[error(transparent)]
    Redis(#[from] RedisSetupError),
}

#[derive(Debug)]
struct LimitEntry {
    spec: LimitSpec,
    label: PolicyLabel,
    route: String,
    name: String,
    local: LocalLimiter,
    redis_namespace: String,
    emission_us: u64,
    refused: IntCounter,
}

#[derive(Debug)]
struct Shared {
    backend: RedisBackend,
    health: BackendHealth,
}

/// Every limit of a config snapshot. Share it as `Arc<RateLimiter>`.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Box<[LimitEntry]>,
    shared: Option<Shared>,
    clock: MonotonicClock,
    sweep_interval: Duration,
    wake_sweeper: Notify,
}

/// Sweeps are at least this far apart even when a full table asks for more.
const MIN_SWEEP_GAP: Duration = Duration::from_secs(1);

impl RateLimiter {
    /// Builds the limits in order: the `n`th of `limits` gets `LimitId` index `n`. With the
    /// Redis backend this must run inside a tokio runtime (it does not connect yet).
    pub fn new(
        settings: &RateLimitSettings,
        limits: Vec<LimitSettings>,
    ) -> Result<Self, BuildError> {
        Self::with_clock(settings, limits, MonotonicClock::tokio())
    }

    /// As [`RateLimiter::new`], counting time on `clock` (tests use a manual one).
    pub fn with_clock(
        settings: &RateLimitSettings,
        limits: Vec<LimitSettings>,
        clock: MonotonicClock,
    ) -> Result<Self, BuildError> {
        let prefix = match &settings.backend {
            Backend::Redis(r) => r.key_prefix.as_str(),
            Backend::Local => "",
        };
        let mut entries: Vec<LimitEntry> = Vec::with_capacity(limits.len());
        for l in limits {
            if entries
                .iter()
                .any(|e| e.route == l.route && e.name == l.name)
            {
                return Err(BuildError::DuplicateLimit {
                    route: l.route,
                    name: l.name,
                });
            }
            let emission_us = u64::try_from(l.spec.emission_interval().as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            entries.push(LimitEntry {
                label: PolicyLabel::new(&l.name),
                local: LocalLimiter::new(&l.spec, settings.max_keys_per_limit, clock.clone()),
                redis_namespace: format!("{prefix}:{}:{}:", l.route, l.name),
                emission_us,
                refused: metrics()
                    .rate_limited
                    .with_label_values(&[l.route.as_str(), l.spec.key.label().as_str()]),
                spec: l.spec,
                route: l.route,
                name: l.name,
            });
        }
        let shared = match &settings.backend {
            Backend::Local => None,
            Backend::Redis(r) => Some(Shared {
                backend: RedisBackend::new(r)?,
                health: BackendHealth::new("redis", r.on_backend_error, r.retry_interval),
            }),
        };
        Ok(Self {
            limits: entries.into_boxed_slice(),
            shared,
            clock,
            sweep_interval: settings.sweep_interval,
            wake_sweeper: Notify::new(),
        })
    }

    /// The id of a route's limit by its policy name.
    pub fn find(&self, route: &str, name: &str) -> Option<LimitId> {
        self.limits
            .iter()
            .position(|e| e.route == route && e.name == name)
            .map(LimitId)
    }

    /// Every limit's id, in the order given.
    pub fn ids(&self) -> impl Iterator<Item = LimitId> + '_ {
        (0..self.limits.len()).map(LimitId)
    }

    /// The limit's spec: its `key` says which request value to pass to [`RateLimiter::check`].
    pub fn spec(&self, id: LimitId) -> Option<&LimitSpec> {
        self.limits.get(id.0).map(|e| &e.spec)
    }

    /// The limit's policy name as rendered in the headers.
    pub fn label(&self, id: LimitId) -> Option<&PolicyLabel> {
        self.limits.get(id.0).map(|e| &e.label)
    }

    /// Counts one request against limit `id` for `key` (the value of the limit's key kind:
    /// caller subject, API key name, client IP text, shop id, header value, or empty for
    /// `route`). Never fails: backend trouble becomes the configured fallback. An `id` from
    /// another limiter (a bug) is refused rather than let through.
    pub async fn check(&self, id: LimitId, key: &[u8]) -> Decision {
        let Some(entry) = self.limits.get(id.0) else {
            tracing::error!(limit = id.0, "rate-limit check with an unknown limit id");
            return Decision {
                limit: id,
                allowed: false,
                quota: 0,
                window_secs: 0,
                remaining: 0,
                reset: Duration::ZERO,
                retry_after: Duration::from_secs(1),
                source: DecisionSource::FailClosed,
            };
        };
        let (verdict, source) = match &self.shared {
            None => (self.check_local(entry, key), DecisionSource::Local),
            // Boxed: the Redis call's state would otherwise size every request's future, local
            // limits included, and each request's future is copied whole when it starts.
            Some(shared) => Box::pin(self.check_shared(shared, entry, key)).await,
        };
        // `rate_limited_total` counts callers over a limit; refusals for a backend outage
        // (`fail_closed`) show in the backend-error counter and the 503 refusals instead.
        if !verdict.allowed && source != DecisionSource::FailClosed {
            entry.refused.inc();
        }
        Decision {
            limit: id,
            allowed: verdict.allowed,
            quota: entry.spec.rate.count.get(),
            window_secs: entry.spec.rate.period.as_secs(),
            remaining: verdict.remaining,
            reset: verdict.reset,
            retry_after: verdict.retry_after,
            source,
        }
    }

    fn check_local(&self, entry: &LimitEntry, key: &[u8]) -> Verdict {
        let verdict = entry.local.check(key);
        if entry.local.is_full() {
            self.wake_sweeper.notify_one();
        }
        verdict
    }

    async fn check_shared(
        &self,
        shared: &Shared,
        entry: &LimitEntry,
        key: &[u8],
    ) -> (Verdict, DecisionSource) {
        let now = self.now_nanos();
        if shared.health.admit_attempt(now) {
            let redis_key = shared.backend.key(&entry.redis_namespace, key);
            let burst = entry.spec.burst.get();
            match shared
                .backend
                .check(&redis_key, entry.emission_us, burst)
                .await
            {
                Ok(verdict) => {
                    shared.health.on_success();
                    return (verdict, DecisionSource::Redis);
                }
                Err(e) => shared.health.on_failure(self.now_nanos(), &e),
            }
        }
        match shared.health.mode() {
            OnBackendError::Local => (self.check_local(entry, key), DecisionSource::Local),
            OnBackendError::FailOpen => (
                Verdict {
                    allowed: true,
                    remaining: entry.spec.burst.get(),
                    reset: Duration::ZERO,
                    retry_after: Duration::ZERO,
                },
                DecisionSource::FailOpen,
            ),
            OnBackendError::FailClosed => {
                let wait = shared.health.retry_interval().max(Duration::from_secs(1));
                (
                    Verdict {
                        allowed: false,
                        remaining: 0,
                        reset: wait,
                        retry_after: wait,
                    },
                    DecisionSource::FailClosed,
                )
            }
        }
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// `RateLimit-Policy`, `RateLimit` and (when refused) `Retry-After` for the decisions of one
    /// request. Decisions whose id is not this limiter's are skipped.
    pub fn headers(&self, decisions: &[Decision]) -> Option<RateLimitHeaders> {
        let items: Vec<(&PolicyLabel, &Decision)> = decisions
            .iter()
            .filter_map(|d| self.limits.get(d.limit.0).map(|e| (&e.label, d)))
            .collect();
        RateLimitHeaders::build(&items)
    }

    /// Drops idle keys from every limit's memory now.
    pub fn sweep(&self) {
        for e in self.limits.iter() {
            e.local.sweep();
        }
    }

    /// Keys held in memory for one limit (for tests and the status page).
    pub fn tracked_keys(&self, id: LimitId) -> usize {
        self.limits.get(id.0).map_or(0, |e| e.local.len())
    }

    /// Runs [`RateLimiter::sweep`] every `sweep_interval`, and early (at most once a second)
    /// when a limit's key table fills up. Ends when the limiter is dropped.
    pub fn spawn_maintenance(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let interval = self.sweep_interval.max(MIN_SWEEP_GAP);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                // Holding the limiter while waiting keeps it alive for at most one interval
                // after everyone else dropped it.
                let Some(this) = weak.upgrade() else { return };
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = this.wake_sweeper.notified() => {}
                }
                this.sweep();
                drop(this);
                tokio::time::sleep(MIN_SWEEP_GAP).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn limit(route: &str, name: &str, key: &str, rate: &str, burst: u64) -> LimitSettings {
        LimitSettings {
            route: route.to_owned(),
            name: name.to_owned(),
            spec: LimitSpec::parse(key, rate, Some(burst)).unwrap(),
        }
    }

    fn local(limits: Vec<LimitSettings>) -> (RateLimiter, MonotonicClock) {
        let clock = MonotonicClock::manual();
        let l =
            RateLimiter::with_clock(&RateLimitSettings::default(), limits, clock.clone()).unwrap();
        (l, clock)
    }

    #[tokio::test]
    async fn admits_rate_plus_burst_in_a_window_and_refuses_the_rest_with_headers() {
        let (rl, clock) = local(vec![limit("orders", "orders", "caller", "10/s", 5)]);
        let id = rl.find("orders", "orders").unwrap();
        let refused_before = metrics()
            .rate_limited
            .with_label_values(&["orders", "caller"])
            .get();

        // One second of traffic at 5x the rate, both ends included: the burst plus 10 more.
        let mut admitted = 0;
        let mut last_refusal = None;
        for _ in 0..=50 {
            let d = rl.check(id, b"alice").await;
            if d.allowed {
                admitted += 1;
            } else {
                last_refusal = Some(d);
            }
            clock.advance(Duration::from_millis(20));
        }
        assert_eq!(admitted, 5 + 10);

        let refusal = last_refusal.unwrap();
        assert_eq!(refusal.source, DecisionSource::Local);
        let h = rl.headers(&[refusal]).unwrap();
        assert_eq!(h.policy, "\"orders\";q=10;w=1");
        assert_eq!(h.rate_limit.unwrap(), "\"orders\";r=0;t=1");
        assert_eq!(h.retry_after, Some(http::HeaderValue::from(1u64)));
        let refused_after = metrics()
            .rate_limited
            .with_label_values(&["orders", "caller"])
            .get();
        assert!(refused_after - refused_before >= 35);

        // An allowed answer shows what is left and no Retry-After.
        clock.advance(Duration::from_secs(2));
        let ok = rl.check(id, b"alice").await;
        let h = rl.headers(&[ok]).unwrap();
        assert_eq!(h.rate_limit.unwrap(), "\"orders\";r=4;t=1");
        assert_eq!(h.retry_after, None);
    }

    #[tokio::test]
    async fn keys_and_limits_are_isolated() {
        let (rl, _clock) = local(vec![
            limit("orders", "orders.caller", "caller", "1/m", 1),
            limit("orders", "orders.ip", "client_ip", "1/m", 1),
        ]);
        let (by_caller, by_ip) = (LimitId(0), LimitId(1));
        assert!(rl.check(by_caller, b"alice").await.allowed);
        assert!(!rl.check(by_caller, b"alice").await.allowed);
        assert!(rl.check(by_caller, b"bob").await.allowed);
        // The same key value in another limit has its own bucket.
        assert!(rl.check(by_ip, b"alice").await.allowed);
        assert_eq!(rl.spec(by_ip).unwrap().key, crate::limit::KeyKind::ClientIp);
    }

    #[tokio::test]
    async fn unknown_ids_are_refused_and_duplicate_names_rejected() {
        let (rl, _clock) = local(vec![limit("orders", "orders", "caller", "1/s", 1)]);
        let d = rl.check(LimitId(7), b"alice").await;
        assert!(!d.allowed);
        assert_eq!(d.source, DecisionSource::FailClosed);
        let dup = RateLimiter::new(
            &RateLimitSettings::default(),
            vec![
                limit("orders", "x", "caller", "1/s", 1),
                limit("orders", "x", "shop", "1/s", 1),
            ],
        );
        assert!(matches!(dup, Err(BuildError::DuplicateLimit { .. })));
    }

    #[tokio::test]
    async fn a_full_key_table_wakes_the_sweeper() {
        let clock = MonotonicClock::manual();
        let settings = RateLimitSettings {
            max_keys_per_limit: 50,
            sweep_interval: Duration::from_secs(3600),
            ..RateLimitSettings::default()
        };
        let rl = Arc::new(
            RateLimiter::with_clock(
                &settings,
                vec![limit("r", "r", "client_ip", "100/s", 1)],
                clock.clone(),
            )
            .unwrap(),
        );
        let task = rl.spawn_maintenance();
        for i in 0..50u32 {
            rl.check(LimitId(0), &i.to_be_bytes()).await;
        }
        assert_eq!(rl.tracked_keys(LimitId(0)), 50);
        clock.advance(Duration::from_secs(1));
        // The 51st key finds the table full: it is served by the overflow bucket and the
        // sweeper runs long before its hour-long interval.
        assert!(rl.check(LimitId(0), b"newcomer").await.allowed);
        let mut swept = false;
        for _ in 0..200 {
            if rl.tracked_keys(LimitId(0)) == 0 {
                swept = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(swept, "sweeper did not run after the table filled up");
        drop(rl);
        task.abort();
    }

    fn unreachable_redis(mode: OnBackendError) -> RateLimitSettings {
        // Port 1 on loopback: nothing listens, connections are refused at once.
        let mut redis = RedisSettings::new(Secret::new("redis://127.0.0.1:1"));
        redis.on_backend_error = mode;
        redis.retry_interval = Duration::from_millis(50);
        RateLimitSettings {
            backend: Backend::Redis(redis),
            ..RateLimitSettings::default()
        }
    }

    #[tokio::test]
    async fn redis_down_falls_back_to_the_local_limiter() {
        let errors_before = metrics().backend_errors.with_label_values(&["redis"]).get();
        let rl = RateLimiter::new(
            &unreachable_redis(OnBackendError::Local),
            vec![limit("orders", "orders", "caller", "1/m", 2)],
        )
        .unwrap();
        let mut allowed = Vec::new();
        for _ in 0..4 {
            let d = rl.check(LimitId(0), b"alice").await;
            assert_eq!(d.source, DecisionSource::Local);
            allowed.push(d.allowed);
        }
        assert_eq!(allowed, [true, true, false, false]);
        assert!(metrics().backend_errors.with_label_values(&["redis"]).get() > errors_before);
    }

    #[tokio::test]
    async fn redis_down_fail_open_and_fail_closed() {
        let open = RateLimiter::new(
            &unreachable_redis(OnBackendError::FailOpen),
            vec![limit("orders", "orders", "caller", "1/m", 1)],
        )
        .unwrap();
        for _ in 0..3 {
            let d = open.check(LimitId(0), b"alice").await;
            assert!(d.allowed);
            assert_eq!(d.source, DecisionSource::FailOpen);
        }
        let closed = RateLimiter::new(
            &unreachable_redis(OnBackendError::FailClosed),
            vec![limit("orders", "orders", "caller", "1/m", 1)],
        )
        .unwrap();
        let d = closed.check(LimitId(0), b"alice").await;
        assert!(!d.allowed);
        assert_eq!(d.source, DecisionSource::FailClosed);
        assert_eq!(d.retry_after_secs(), 1);
        let h = closed.headers(&[d]).unwrap();
        assert_eq!(h.retry_after, Some(http::HeaderValue::from(1u64)));
    }
}
