//! The monotonic time the limiters count in: tokio's clock (so `tokio::time::pause()` moves it
//! too) or a manual clock that tests advance by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::nanos::Nanos;

/// Nanoseconds since the clock was made. Cheap to clone; clones share one timeline.
#[derive(Debug, Clone)]
pub enum MonotonicClock {
    Tokio(tokio::time::Instant),
    Manual(Arc<AtomicU64>),
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::tokio()
    }
}

impl MonotonicClock {
    /// Follows `tokio::time::Instant` (real time, or paused test time inside a runtime).
    pub fn tokio() -> Self {
        MonotonicClock::Tokio(tokio::time::Instant::now())
    }

    /// Starts at zero and moves only with [`MonotonicClock::advance`].
    pub fn manual() -> Self {
        MonotonicClock::Manual(Arc::new(AtomicU64::new(0)))
    }

    /// Moves a manual clock forward; no effect on the tokio clock.
    pub fn advance(&self, by: Duration) {
        if let MonotonicClock::Manual(now) = self {
            let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            now.fetch_add(by, Ordering::SeqCst);
        }
    }

    pub fn elapsed(&self) -> Duration {
        match self {
            MonotonicClock::Tokio(start) => start.elapsed(),
            MonotonicClock::Manual(now) => Duration::from_nanos(now.load(Ordering::SeqCst)),
        }
    }
}

impl governor::clock::Clock for MonotonicClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let c = MonotonicClock::manual();
        let c2 = c.clone();
        assert_eq!(c.elapsed(), Duration::ZERO);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c2.elapsed(), Duration::from_millis(1500));
    }
}
