//! The in-process backend: keyed GCRA on `governor`, with memory bounded two ways.
//!
//! - Idle keys (whose bucket is indistinguishable from a fresh one) are dropped by [`sweep`],
//!   which the facade's maintenance task runs on an interval.
//! - At most `max_keys` keys are tracked. A key first seen while the table is full does not get
//!   a bucket of its own: all such keys share one *overflow* bucket with the same quota. A flood
//!   of unique keys therefore costs no memory and only throttles itself (and other newcomers
//!   until the next sweep frees room); keys already tracked keep their own buckets. Filling up
//!   also wakes the sweeper early.
//!
//! Keys are hashed to 64 bits with a per-process random SipHash key: no allocation per check,
//! no caller data kept in memory, and collisions cannot be aimed at from outside.
//!
//! [`sweep`]: LocalLimiter::sweep

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use super::decision::Verdict;
use super::spec::LimitSpec;
use super::time::MonotonicClock;

/// Default cap on distinct keys per limit (~100 bytes each with the map overhead).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The hashes are already uniformly random, so the map uses them as they are.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PrehashedBuild;

#[derive(Debug, Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are stored; fold anything else in rather than panic.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl BuildHasher for PrehashedBuild {
    type Hasher = Prehashed;
    fn build_hasher(&self) -> Prehashed {
        Prehashed::default()
    }
}

/// governor state store with a hard cap on keys and a shared overflow bucket.
#[derive(Debug)]
pub(crate) struct BoundedKeyStore {
    map: DashMap<u64, InMemoryState, PrehashedBuild>,
    overflow: InMemoryState,
    max_keys: usize,
    // Approximate: concurrent first sightings may overshoot by the number of threads; the
    // sweep resets it to the exact count.
    len: AtomicUsize,
    // Shared with the limiter, which cannot reach the store once governor owns it.
    full: Arc<AtomicBool>,
}

impl BoundedKeyStore {
    fn new(max_keys: usize, full: Arc<AtomicBool>) -> Self {
        Self {
            map: DashMap::with_hasher(PrehashedBuild),
            overflow: InMemoryState::default(),
            max_keys: max_keys.max(1),
            len: AtomicUsize::new(0),
            full,
        }
    }
}

impl StateStore for BoundedKeyStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if !self.map.contains_key(key) {
            if self.len.load(Ordering::Relaxed) >= self.max_keys {
                self.full.store(true, Ordering::Relaxed);
                return self.overflow.measure_and_replace(&NotKeyed::NonKey, f);
            }
            if let dashmap::Entry::Vacant(slot) = self.map.entry(*key) {
                slot.insert(InMemoryState::default());
                self.len.fetch_add(1, Ordering::Relaxed);
            }
        }
        StateStore::measure_and_replace(&self.map, key, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for BoundedKeyStore {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.map, drop_below);
        self.len.store(self.map.len(), Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

type Gcra = RateLimiter<u64, BoundedKeyStore, MonotonicClock, StateInformationMiddleware>;

/// One limit's keyed GCRA in this process.
#[derive(Debug)]
pub(crate) struct LocalLimiter {
    gcra: Gcra,
    clock: MonotonicClock,
    hasher: RandomState,
    emission: Duration,
    burst: u32,
    full: Arc<AtomicBool>,
}

impl LocalLimiter {
    pub(crate) fn new(spec: &LimitSpec, max_keys: usize, clock: MonotonicClock) -> Self {
        let emission = spec.emission_interval().max(Duration::from_nanos(1));
        // `with_period` is `None` only for a zero interval, excluded just above.
        let quota = Quota::with_period(emission)
            .unwrap_or_else(|| Quota::per_second(spec.rate.count))
            .allow_burst(spec.burst);
        let full = Arc::new(AtomicBool::new(false));
        let store = BoundedKeyStore::new(max_keys, full.clone());
        let gcra = Gcra::new(quota, store, clock.clone());
        Self {
            gcra,
            clock,
            hasher: RandomState::new(),
            emission,
            burst: spec.burst.get(),
            full,
        }
    }

    fn slot(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Takes one request from `key`'s bucket if it conforms.
    pub(crate) fn check(&self, key: &[u8]) -> Verdict {
        match self.gcra.check_key(&self.slot(key)) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Verdict {
                    allowed: true,
                    remaining,
                    reset: self.emission * self.burst.saturating_sub(remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Verdict {
                    allowed: false,
                    remaining: 0,
                    reset: wait + self.emission * self.burst.saturating_sub(1),
                    retry_after: wait,
                }
            }
        }
    }

    /// Drops idle keys; clears the "table was full" flag.
    pub(crate) fn sweep(&self) {
        self.gcra.retain_recent();
        self.gcra.shrink_to_fit();
        self.take_full();
    }

    /// Whether the key table is full (cleared by the next sweep).
    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Whether a key was diverted to the overflow bucket since the last call.
    pub(crate) fn take_full(&self) -> bool {
        self.full.swap(false, Ordering::Relaxed)
    }

    /// Keys currently tracked (the overflow bucket is not counted).
    pub(crate) fn len(&self) -> usize {
        self.gcra.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: &str, burst: u64, max_keys: usize) -> (LocalLimiter, MonotonicClock) {
        let clock = MonotonicClock::manual();
        let spec = LimitSpec::parse("caller", rate, Some(burst)).unwrap();
        (LocalLimiter::new(&spec, max_keys, clock.clone()), clock)
    }

    #[test]
    fn admits_the_burst_then_the_rate_and_refuses_the_rest() {
        let (l, clock) = limiter("10/s", 5, 100);
        let mut remaining = Vec::new();
        for _ in 0..5 {
            let v = l.check(b"alice");
            assert!(v.allowed);
            remaining.push(v.remaining);
        }
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
        let refused = l.check(b"alice");
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert_eq!(refused.remaining, 0);

        // Over one more second at 3x the rate, exactly 10 more conform.
        let mut admitted = 0;
        for _ in 0..30 {
            clock.advance(Duration::from_nanos(33_333_334));
            admitted += u32::from(l.check(b"alice").allowed);
        }
        assert_eq!(admitted, 10);
    }

    #[test]
    fn reset_counts_until_the_bucket_is_full_again() {
        let (l, clock) = limiter("10/s", 5, 100);
        let v = l.check(b"k");
        assert_eq!(v.reset, Duration::from_millis(100));
        clock.advance(Duration::from_millis(100));
        let v = l.check(b"k");
        assert_eq!((v.remaining, v.reset), (4, Duration::from_millis(100)));
    }

    #[test]
    fn keys_are_isolated() {
        let (l, _clock) = limiter("1/s", 1, 100);
        assert!(l.check(b"alice").allowed);
        assert!(!l.check(b"alice").allowed);
        assert!(l.check(b"bob").allowed);
        assert!(!l.check(b"bob").allowed);
    }

    #[test]
    fn sweep_evicts_idle_keys_only() {
        let (l, clock) = limiter("1/s", 2, 1000);
        for i in 0..100u32 {
            assert!(l.check(&i.to_be_bytes()).allowed);
        }
        assert_eq!(l.len(), 100);
        // governor keeps a key until one emission interval after its bucket is full again.
        clock.advance(Duration::from_millis(2500));
        assert!(l.check(b"active").allowed);
        assert!(l.check(b"active").allowed);
        clock.advance(Duration::from_millis(10));
        l.sweep();
        // Only "active" still has a bucket that differs from a fresh one.
        assert_eq!(l.len(), 1);
        assert!(!l.check(b"active").allowed);
    }

    #[test]
    fn a_flood_of_unique_keys_is_capped_and_shares_one_overflow_bucket() {
        let (l, clock) = limiter("1/s", 1, 10);
        for i in 0..10u32 {
            assert!(l.check(&i.to_be_bytes()).allowed);
        }
        assert!(!l.take_full());
        // Table full: 10_000 newcomers add no keys and get one shared bucket between them.
        let admitted = (10..10_010u32)
            .filter(|i| l.check(&i.to_be_bytes()).allowed)
            .count();
        assert_eq!(admitted, 1);
        assert_eq!(l.len(), 10);
        assert!(l.take_full());
        // Tracked keys keep their own bucket meanwhile.
        clock.advance(Duration::from_secs(1));
        assert!(l.check(&3u32.to_be_bytes()).allowed);
        // Once idle keys are swept, newcomers get their own buckets again.
        clock.advance(Duration::from_secs(5));
        l.sweep();
        assert_eq!(l.len(), 0);
        assert!(l.check(b"newcomer").allowed);
        assert_eq!(l.len(), 1);
    }
}
