//! The answer to one rate-limit check: allowed or not, and the numbers the response headers show.

use std::time::Duration;

/// Which limit of a [`crate::limit::RateLimiter`] a decision is about (an index into its limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitId(pub(crate) usize);

impl LimitId {
    /// Position of the limit in the list given to [`crate::limit::RateLimiter::new`].
    pub fn index(self) -> usize {
        self.0
    }
}

/// Who made the decision: useful in the access log, never needed to act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionSource {
    /// The in-process GCRA (local backend, or Redis fallback `local`).
    Local,
    /// The shared GCRA on Redis.
    Redis,
    /// Redis failed and the limit is configured `fail_open`.
    FailOpen,
    /// Redis failed and the limit is configured `fail_closed`.
    FailClosed,
}

/// The result of one check of one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub limit: LimitId,
    pub allowed: bool,
    /// The policy's quota: the rate's count (`q` in `RateLimit-Policy`).
    pub quota: u32,
    /// The policy's window in seconds: the rate's period (`w`).
    pub window_secs: u64,
    /// Requests the key may still send right now (`r` in `RateLimit`).
    pub remaining: u32,
    /// Time until the key's bucket is full again (`t` in `RateLimit`).
    pub reset: Duration,
    /// When refused, how long until one request would conform; zero when allowed.
    pub retry_after: Duration,
    pub source: DecisionSource,
}

impl Decision {
    /// `Retry-After` in whole seconds: rounded up, at least 1, so a client that obeys it is
    /// never refused again for the same reason straight away.
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after).max(1)
    }

    /// `t` of the `RateLimit` field, in whole seconds rounded up.
    pub fn reset_secs(&self) -> u64 {
        ceil_secs(self.reset)
    }
}

pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Of several decisions for one request, the one to act on: a refusal if there is any (the one
/// with the longest wait), otherwise the allowed one with the fewest requests remaining.
pub fn most_restrictive(decisions: &[Decision]) -> Option<&Decision> {
    decisions.iter().min_by(|a, b| {
        a.allowed
            .cmp(&b.allowed)
            .then(b.retry_after.cmp(&a.retry_after))
            .then(a.remaining.cmp(&b.remaining))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(allowed: bool, remaining: u32, retry_ms: u64) -> Decision {
        Decision {
            limit: LimitId(0),
            allowed,
            quota: 10,
            window_secs: 1,
            remaining,
            reset: Duration::from_millis(1500),
            retry_after: Duration::from_millis(retry_ms),
            source: DecisionSource::Local,
        }
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(d(false, 0, 1).retry_after_secs(), 1);
        assert_eq!(d(false, 0, 1001).retry_after_secs(), 2);
        assert_eq!(d(true, 3, 0).retry_after_secs(), 1);
        assert_eq!(d(true, 3, 0).reset_secs(), 2);
    }

    #[test]
    fn refusal_with_longest_wait_wins() {
        let all = [
            d(true, 1, 0),
            d(false, 0, 300),
            d(false, 0, 900),
            d(true, 0, 0),
        ];
        assert_eq!(most_restrictive(&all), Some(&all[2]));
        let allowed = [d(true, 5, 0), d(true, 2, 0)];
        assert_eq!(most_restrictive(&allowed), Some(&allowed[1]));
        assert_eq!(most_restrictive(&[]), None);
    }
}

/// What a backend answers for one key, before the facade adds the policy numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub allowed: bool,
    pub remaining: u32,
    pub reset: Duration,
    pub retry_after: Duration,
}
