//! What happens while the shared backend fails, and how it comes back by itself.
//!
//! After a failure the backend is skipped for `retry_interval` (requests do not each wait for a
//! timeout during an outage); then exactly one request probes it while the others keep using
//! the fallback. A success makes it the backend again. Failures are counted every time and
//! logged once per outage, with its start and its end.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};

use super::metrics::metrics;

/// `on_backend_error` in `rate_limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBackendError {
    /// Decide with this gateway's own limiter (limits become per replica for the outage).
    #[default]
    Local,
    /// Allow every request (availability over protection).
    FailOpen,
    /// Refuse every request with `Retry-After` (protection over availability).
    FailClosed,
}

impl OnBackendError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnBackendError::Local => "local",
            OnBackendError::FailOpen => "fail_open",
            OnBackendError::FailClosed => "fail_closed",
        }
    }
}

impl std::str::FromStr for OnBackendError {
    type Err = UnknownFallback;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "local" => Ok(OnBackendError::Local),
            "fail_open" => Ok(OnBackendError::FailOpen),
            "fail_closed" => Ok(OnBackendError::FailClosed),
            other => Err(UnknownFallback(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("on_backend_error `{0}` is not one of local, fail_open, fail_closed")]
pub struct UnknownFallback(pub String);

/// Health of one shared backend, in the limiter's monotonic nanoseconds.
#[derive(Debug)]
pub(crate) struct BackendHealth {
    backend: &'static str,
    mode: OnBackendError,
    retry_interval: Duration,
    // 0 while healthy; otherwise the earliest time to try the backend again (at least 1).
    down_until: AtomicU64,
    /// `rate_limit_backend_up{backend}`. A reload builds a new limiter while the old one may
    /// still decide, so each limiter writes it on its first outcome and on every change after.
    up: IntGauge,
    /// Whether this limiter has written `up` yet.
    reported: AtomicBool,
    /// `rate_limit_backend_errors_total{backend}`, looked up once.
    errors: IntCounter,
}

/// Whether any limiter has published the backend gauge yet.
static GAUGE_STARTED: Once = Once::new();

impl BackendHealth {
    pub(crate) fn new(
        backend: &'static str,
        mode: OnBackendError,
        retry_interval: Duration,
    ) -> Self {
        let up = metrics().backend_up.with_label_values(&[backend]);
        let errors = metrics().backend_errors.with_label_values(&[backend]);
        // Assumed up until a decision says otherwise, but only at start: a limiter built by a
        // reload during an outage must not report the backend up.
        GAUGE_STARTED.call_once(|| up.set(1));
        Self {
            backend,
            mode,
            retry_interval,
            down_until: AtomicU64::new(0),
            up,
            reported: AtomicBool::new(false),
            errors,
        }
    }

    pub(crate) fn mode(&self) -> OnBackendError {
        self.mode
    }

    pub(crate) fn retry_interval(&self) -> Duration {
        self.retry_interval
    }

    /// Whether this request should use the backend (`now` in nanoseconds).
    pub(crate) fn admit_attempt(&self, now: u64) -> bool {
        let until = self.down_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now < until {
            return false;
        }
        // Claim the probe: push the window on so concurrent requests keep the fallback.
        let next = self.next_window(now);
        self.down_until
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    pub(crate) fn on_success(&self) {
        // Every shared decision lands here: while healthy and reported, only loads, no writes
        // to cache lines every worker shares.
        if self.down_until.load(Ordering::Acquire) == 0 && self.reported.load(Ordering::Relaxed) {
            return;
        }
        self.up.set(1);
        self.reported.store(true, Ordering::Relaxed);
        if self.down_until.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!(
                backend = self.backend,
                "rate-limit backend answers again; shared limiting resumed"
            );
        }
    }

    pub(crate) fn on_failure(&self, now: u64, error: &dyn std::error::Error) {
        self.errors.inc();
        let was = self
            .down_until
            .swap(self.next_window(now), Ordering::AcqRel);
        self.up.set(0);
        self.reported.store(true, Ordering::Relaxed);
        if was == 0 {
            tracing::warn!(
                backend = self.backend,
                error = %error,
                on_backend_error = self.mode.as_str(),
                "rate-limit backend failed; using the fallback until it answers again"
            );
        }
    }

    fn next_window(&self, now: u64) -> u64 {
        let interval = u64::try_from(self.retry_interval.as_nanos()).unwrap_or(u64::MAX);
        now.saturating_add(interval).max(1)
    }

    #[cfg(test)]
    pub(crate) fn is_down(&self) -> bool {
        self.down_until.load(Ordering::Acquire) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes() {
        assert_eq!("local".parse(), Ok(OnBackendError::Local));
        assert_eq!("fail_open".parse(), Ok(OnBackendError::FailOpen));
        assert_eq!("fail_closed".parse(), Ok(OnBackendError::FailClosed));
        assert!("open".parse::<OnBackendError>().is_err());
        assert_eq!(OnBackendError::default(), OnBackendError::Local);
    }

    #[test]
    fn skips_the_backend_after_a_failure_then_lets_one_probe_through() {
        let h = BackendHealth::new("test", OnBackendError::Local, Duration::from_secs(1));
        let err = std::io::Error::other("down");
        assert!(h.admit_attempt(0));
        h.on_failure(10, &err);
        assert!(h.is_down());
        assert!(!h.admit_attempt(500_000_000));
        let after = 1_000_000_011;
        assert!(h.admit_attempt(after), "one probe after the interval");
        assert!(!h.admit_attempt(after), "only one");
        h.on_success();
        assert!(!h.is_down());
        assert!(h.admit_attempt(after));
    }
}
