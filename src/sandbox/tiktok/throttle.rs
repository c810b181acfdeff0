//! Per-shop throttling as TikTok does it: above the rate, HTTP 429 with `36009002` and a
//! `Retry-After`. A token bucket on `tokio::time` so tests can pause and advance time.

use std::time::Duration;

use tokio::time::Instant;

use super::config::SandboxRate;

/// One call per about eleven days: the floor for nonsensical rates.
const MIN_RATE: f64 = 1e-6;

/// One shop's bucket.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn full(rate: SandboxRate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst.max(1)),
            last: now,
        }
    }

    /// Takes one call's worth, or says how long until one is available.
    pub(crate) fn take(&mut self, rate: SandboxRate, now: Instant) -> Result<(), Duration> {
        // A zero, negative or NaN rate would never refill; treat it as the slowest real rate.
        let per_second = if rate.per_second.is_finite() && rate.per_second > 0.0 {
            rate.per_second
        } else {
            MIN_RATE
        };
        let burst = f64::from(rate.burst.max(1));
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - self.tokens) / per_second).min(u32::MAX as f64);
            Err(Duration::from_secs_f64(wait))
        }
    }
}

/// `Retry-After` is whole seconds; never advertise 0 while refusing.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn allows_the_burst_then_refuses_then_refills() {
        let rate = SandboxRate {
            per_second: 2.0,
            burst: 3,
        };
        let mut b = Bucket::full(rate, Instant::now());
        for _ in 0..3 {
            assert!(b.take(rate, Instant::now()).is_ok());
        }
        let wait = b.take(rate, Instant::now()).unwrap_err();
        assert_eq!(retry_after_secs(wait), 1);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(b.take(rate, Instant::now()).is_ok());
        assert!(b.take(rate, Instant::now()).is_err());
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..3 {
            assert!(b.take(rate, Instant::now()).is_ok());
        }
        assert!(b.take(rate, Instant::now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn slow_and_nonsense_rates_stay_finite() {
        for per_second in [0.001, 0.0, -1.0, f64::NAN] {
            let rate = SandboxRate {
                per_second,
                burst: 1,
            };
            let mut b = Bucket::full(rate, Instant::now());
            assert!(b.take(rate, Instant::now()).is_ok());
            let wait = b.take(rate, Instant::now()).unwrap_err();
            assert!(retry_after_secs(wait) >= 1000, "{per_second}");
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2100)), 3);
    }
}
