//! Pacing of outbound TikTok calls per (app, shop, endpoint) (policy §8, API abuse).
//!
//! TikTok publishes no fixed quota and throttles sub-second bursts, so each key gets a
//! conservative GCRA budget (default 10/s, burst 10). When TikTok throttles anyway (HTTP 429 or
//! code `36009002`), [`OutboundPacer::on_throttled`] blocks that key for TikTok's `Retry-After`
//! or, without one, an exponential backoff with jitter (1 s doubling to a 60 s cap), and halves
//! the key's rate. Successes then earn the rate back one doubling at a time, so a key recovers
//! gradually instead of hitting TikTok at full speed the moment the block ends.
//!
//! Memory is bounded like the inbound limiter's: idle keys are swept, and at most `max_keys`
//! are tracked (newcomers beyond it share one overflow state).

use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;
use rand::Rng;

use super::decision::ceil_secs;
use super::local::PrehashedBuild;
use super::metrics::metrics;
use super::spec::{Period, Rate};
use super::time::MonotonicClock;

/// Halvings of the rate at most (1/16 of the budget).
const MAX_SLOWDOWN: u32 = 4;

/// The pacing budget and backoff shape. Defaults are deliberately conservative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacerSettings {
    /// Budget per (app, shop, endpoint) (default 10/s).
    pub rate: Rate,
    /// Calls a quiet key may make at once (default 10).
    pub burst: NonZeroU32,
    /// First backoff when TikTok throttles without `Retry-After` (default 1 s); doubles on each
    /// further throttle.
    pub backoff_base: Duration,
    /// Longest backoff (default 60 s).
    pub backoff_cap: Duration,
    /// Longest `Retry-After` believed (default 5 min), so a bad header cannot stop a shop for
    /// hours.
    pub max_retry_after: Duration,
    /// Successes needed to double a slowed key's rate again (default 10).
    pub recovery_successes: u32,
    /// Keys tracked at most (default 10 000).
    pub max_keys: usize,
    /// How often idle keys are dropped (default 60 s).
    pub sweep_interval: Duration,
}

impl Default for PacerSettings {
    fn default() -> Self {
        Self {
            rate: Rate {
                count: NonZeroU32::MIN.saturating_add(9),
                period: Period::Second,
            },
            burst: NonZeroU32::MIN.saturating_add(9),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
            recovery_successes: 10,
            max_keys: 10_000,
            sweep_interval: Duration::from_secs(60),
        }
    }
}

/// One outbound budget: TikTok app, shop id and endpoint. `endpoint` must be a bounded name
/// (the route name or a path template such as `/fulfillment/202309/packages/{id}`), never a raw
/// path with ids: it is a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PaceKey<'a> {
    pub app: &'a str,
    pub shop: &'a str,
    pub endpoint: &'a str,
}

/// The call must wait this long; answer the caller 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbound budget exhausted; retry after {}s", self.secs())]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for the `Retry-After` header: rounded up, at least 1.
    pub fn secs(&self) -> u64 {
        ceil_secs(self.0).max(1)
    }
}

#[derive(Debug, Default, Clone)]
struct KeyState {
    /// GCRA theoretical arrival time (limiter nanoseconds).
    tat: u64,
    /// No call before this (after a throttle).
    blocked_until: u64,
    /// Consecutive throttles: the backoff exponent.
    throttles: u32,
    /// Rate halvings in force.
    slowdown: u32,
    /// Successes since the last recovery step.
    successes: u32,
}

impl KeyState {
    fn is_idle(&self, now: u64) -> bool {
        self.tat <= now && self.blocked_until <= now && self.slowdown == 0 && self.throttles == 0
    }
}

/// Per-(app, shop, endpoint) pacing with backoff. Share it as `Arc<OutboundPacer>`.
#[derive(Debug)]
pub struct OutboundPacer {
    settings: PacerSettings,
    emission: u64,
    keys: DashMap<u64, Mutex<KeyState>, PrehashedBuild>,
    overflow: Mutex<KeyState>,
    hasher: RandomState,
    clock: MonotonicClock,
}

impl OutboundPacer {
    pub fn new(settings: PacerSettings) -> Self {
        Self::with_clock(settings, MonotonicClock::tokio())
    }

    pub fn with_clock(settings: PacerSettings, clock: MonotonicClock) -> Self {
        let emission = u64::try_from(settings.rate.emission_interval().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            settings,
            emission,
            keys: DashMap::with_hasher(PrehashedBuild),
            overflow: Mutex::new(KeyState::default()),
            hasher: RandomState::new(),
            clock,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn with_state<R>(&self, key: &PaceKey<'_>, f: impl FnOnce(&mut KeyState) -> R) -> R {
        let slot = self.hasher.hash_one(key);
        if let Some(state) = self.keys.get(&slot) {
            return f(&mut state.lock());
        }
        if self.keys.len() >= self.settings.max_keys {
            return f(&mut self.overflow.lock());
        }
        let state = self.keys.entry(slot).or_default();
        f(&mut state.lock())
    }

    /// Takes one call from the key's budget, or says how long to wait.
    pub fn try_acquire(&self, key: &PaceKey<'_>) -> Result<(), RetryAfter> {
        let now = self.now();
        let (emission, burst) = (self.emission, self.settings.burst.get());
        let result = self.with_state(key, |s| {
            if now < s.blocked_until {
                return Err(s.blocked_until - now);
            }
            let t = emission.saturating_mul(1 << s.slowdown);
            let b = (burst >> s.slowdown).max(1);
            let tolerance = t.saturating_mul(u64::from(b - 1));
            let tat = s.tat.max(now);
            let earliest = tat.saturating_sub(tolerance);
            if now < earliest {
                return Err(earliest - now);
            }
            s.tat = tat.saturating_add(t);
            Ok(())
        });
        result.map_err(|wait| {
            metrics()
                .outbound_paced
                .with_label_values(&[key.shop, key.endpoint])
                .inc();
            RetryAfter(Duration::from_nanos(wait))
        })
    }

    /// TikTok throttled a call on this key (HTTP 429 or code `36009002`): block the key for
    /// `retry_after` if TikTok sent one, else for the next backoff step; halve its rate.
    /// Returns how long the key is blocked.
    pub fn on_throttled(&self, key: &PaceKey<'_>, retry_after: Option<Duration>) -> Duration {
        metrics()
            .outbound_throttled
            .with_label_values(&[key.shop, key.endpoint])
            .inc();
        let now = self.now();
        let delay = self.with_state(key, |s| {
            s.throttles = s.throttles.saturating_add(1);
            s.slowdown = (s.slowdown + 1).min(MAX_SLOWDOWN);
            s.successes = 0;
            let delay = match retry_after {
                Some(d) => d.min(self.settings.max_retry_after),
                None => self.backoff(s.throttles),
            };
            let until = now.saturating_add(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX));
            s.blocked_until = s.blocked_until.max(until);
            // Start the slowed budget empty when the block ends: one call, then the slowed
            // pace, rather than a burst that could trip TikTok again straight away.
            let t = self.emission.saturating_mul(1 << s.slowdown);
            let b = (self.settings.burst.get() >> s.slowdown).max(1);
            let tolerance = t.saturating_mul(u64::from(b - 1));
            s.tat = s.tat.max(s.blocked_until.saturating_add(tolerance));
            delay
        });
        tracing::warn!(
            shop = key.shop,
            endpoint = key.endpoint,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "TikTok throttled the gateway; pausing this shop and endpoint"
        );
        delay
    }

    /// A call on this key succeeded: every `recovery_successes` successes undo one halving of
    /// the rate and one step of backoff.
    pub fn on_success(&self, key: &PaceKey<'_>) {
        let needed = self.settings.recovery_successes.max(1);
        let slot = self.hasher.hash_one(key);
        // Only keys that were slowed have anything to recover; do not create state for others.
        if let Some(state) = self.keys.get(&slot) {
            let mut s = state.lock();
            if s.slowdown == 0 && s.throttles == 0 {
                return;
            }
            s.successes += 1;
            if s.successes >= needed {
                s.successes = 0;
                s.slowdown = s.slowdown.saturating_sub(1);
                s.throttles = s.throttles.saturating_sub(1);
            }
        }
    }

    /// `backoff_base * 2^(n-1)`, capped, plus up to 25% jitter (never beyond the cap) so that
    /// keys throttled together do not all come back together.
    fn backoff(&self, throttles: u32) -> Duration {
        let exp = throttles.saturating_sub(1).min(20);
        let step = self
            .settings
            .backoff_base
            .saturating_mul(1 << exp)
            .min(self.settings.backoff_cap);
        let jitter = step.mul_f64(rand::rng().random_range(0.0..=0.25));
        (step + jitter).min(self.settings.backoff_cap)
    }

    /// Current rate divisor for a key (1 = full budget). For tests and the status page.
    pub fn slowdown(&self, key: &PaceKey<'_>) -> u32 {
        let slot = self.hasher.hash_one(key);
        self.keys.get(&slot).map_or(1, |s| 1 << s.lock().slowdown)
    }

    /// Keys tracked in memory.
    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    /// Drops keys whose state is the same as a fresh key's.
    pub fn sweep(&self) {
        let now = self.now();
        self.keys.retain(|_, s| !s.get_mut().is_idle(now));
        self.keys.shrink_to_fit();
        let mut overflow = self.overflow.lock();
        if overflow.is_idle(now) {
            *overflow = KeyState::default();
        }
    }

    /// Runs [`OutboundPacer::sweep`] every `sweep_interval` until the pacer is dropped.
    pub fn spawn_maintenance(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let period = self.settings.sweep_interval.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(this) = weak.upgrade() else { return };
                this.sweep();
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: PaceKey<'static> = PaceKey {
        app: "main",
        shop: "7494049642642441621",
        endpoint: "order-search",
    };

    fn pacer(rate: u32, burst: u32) -> (OutboundPacer, MonotonicClock) {
        let clock = MonotonicClock::manual();
        let settings = PacerSettings {
            rate: Rate {
                count: NonZeroU32::new(rate).unwrap(),
                period: Period::Second,
            },
            burst: NonZeroU32::new(burst).unwrap(),
            ..PacerSettings::default()
        };
        (OutboundPacer::with_clock(settings, clock.clone()), clock)
    }

    #[test]
    fn default_budget_is_conservative() {
        let s = PacerSettings::default();
        assert_eq!(s.rate.to_string(), "10/s");
        assert_eq!(s.burst.get(), 10);
    }

    #[test]
    fn paces_each_key_separately() {
        let (p, clock) = pacer(10, 10);
        for _ in 0..10 {
            assert_eq!(p.try_acquire(&KEY), Ok(()));
        }
        let wait = p.try_acquire(&KEY).unwrap_err();
        assert_eq!(wait.0, Duration::from_millis(100));
        assert_eq!(wait.secs(), 1);
        let other_shop = PaceKey { shop: "1", ..KEY };
        let other_endpoint = PaceKey {
            endpoint: "order-detail",
            ..KEY
        };
        assert_eq!(p.try_acquire(&other_shop), Ok(()));
        assert_eq!(p.try_acquire(&other_endpoint), Ok(()));
        clock.advance(Duration::from_millis(100));
        assert_eq!(p.try_acquire(&KEY), Ok(()));
    }

    #[test]
    fn backoff_doubles_from_one_second_with_jitter_up_to_the_cap() {
        let (p, _clock) = pacer(10, 10);
        let expected_floor = [1u64, 2, 4, 8, 16, 32, 60, 60, 60];
        for (i, floor) in expected_floor.iter().enumerate() {
            let d = p.on_throttled(&KEY, None);
            let floor = Duration::from_secs(*floor);
            let ceiling = floor.mul_f64(1.25).min(Duration::from_secs(60));
            assert!(
                d >= floor && d <= ceiling,
                "throttle {}: {d:?} not in [{floor:?}, {ceiling:?}]",
                i + 1
            );
        }
    }

    #[test]
    fn a_throttled_key_is_blocked_for_the_backoff_and_slowed() {
        let (p, clock) = pacer(10, 10);
        let delay = p.on_throttled(&KEY, None);
        let refused = p.try_acquire(&KEY).unwrap_err();
        assert_eq!(refused.0, delay);
        assert_eq!(p.slowdown(&KEY), 2);
        // Other keys are not affected.
        assert_eq!(p.try_acquire(&PaceKey { shop: "2", ..KEY }), Ok(()));
        clock.advance(delay);
        // After the block: half the rate (5/s, burst 5), starting empty.
        assert_eq!(p.try_acquire(&KEY), Ok(()));
        assert_eq!(
            p.try_acquire(&KEY).unwrap_err().0,
            Duration::from_millis(200)
        );
    }

    #[test]
    fn honours_retry_after_within_a_sane_bound() {
        let (p, clock) = pacer(10, 10);
        assert_eq!(
            p.on_throttled(&KEY, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(p.try_acquire(&KEY).unwrap_err().secs(), 7);
        clock.advance(Duration::from_secs(7));
        assert_eq!(p.try_acquire(&KEY), Ok(()));
        // A Retry-After of a day is cut to max_retry_after.
        let k = PaceKey { shop: "3", ..KEY };
        assert_eq!(
            p.on_throttled(&k, Some(Duration::from_secs(86_400))),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn recovers_gradually_after_successes() {
        let (p, clock) = pacer(10, 10);
        let d1 = p.on_throttled(&KEY, None);
        clock.advance(d1);
        let d2 = p.on_throttled(&KEY, None);
        assert!(d2 >= Duration::from_secs(2));
        assert_eq!(p.slowdown(&KEY), 4);
        for _ in 0..10 {
            p.on_success(&KEY);
        }
        assert_eq!(p.slowdown(&KEY), 2);
        // One step of backoff was forgiven too: the next throttle waits 2 s, not 4 s.
        clock.advance(d2);
        let d3 = p.on_throttled(&KEY, None);
        assert!(d3 >= Duration::from_secs(2) && d3 <= Duration::from_millis(2500));
        clock.advance(d3);
        for _ in 0..20 {
            p.on_success(&KEY);
        }
        assert_eq!(p.slowdown(&KEY), 1);
    }

    #[test]
    fn memory_is_bounded_and_idle_keys_are_swept() {
        let clock = MonotonicClock::manual();
        let settings = PacerSettings {
            max_keys: 5,
            ..PacerSettings::default()
        };
        let p = OutboundPacer::with_clock(settings, clock.clone());
        let shops: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        for shop in &shops {
            let _ = p.try_acquire(&PaceKey { shop, ..KEY });
        }
        assert_eq!(p.tracked_keys(), 5);
        p.on_throttled(&PaceKey { shop: "0", ..KEY }, Some(Duration::from_secs(30)));
        clock.advance(Duration::from_secs(2));
        p.sweep();
        // Only the throttled key still differs from a fresh one.
        assert_eq!(p.tracked_keys(), 1);
    }
}
