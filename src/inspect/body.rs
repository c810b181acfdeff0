//! Request-body watch: the size ceiling (413) and a minimum upload rate (408), chunk by chunk.
//!
//! Pingora's downstream read timeout only bounds the gap between two reads, so a client that
//! sends a byte just inside every timeout holds a connection forever. [`BodyWatch::on_chunk`],
//! called for every chunk (bodies read whole by the pipeline and bodies streamed to the
//! upstream alike), refuses a body whose average rate, after a grace period, falls below the
//! floor (`connections.min_body_rate`). Time is passed in, so tests drive it by hand.

use std::time::{Duration, Instant};

use super::error::InspectError;
use super::framing::BodyFraming;

/// Minimum-rate settings for request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRate {
    /// Bytes per second the body must average once the grace period is over; 0 disables.
    pub min_bytes_per_sec: u64,
    /// Time allowed before the rate is enforced (covers slow starts and small bodies).
    pub grace: Duration,
}

impl Default for BodyRate {
    /// 1 KiB/s after 5 s: a 1 MiB body may take up to ~17 minutes, a stalled one cannot.
    fn default() -> Self {
        Self {
            min_bytes_per_sec: 1024,
            grace: Duration::from_secs(5),
        }
    }
}

/// Refuse early when the declared `Content-Length` is already over the ceiling, before any
/// body byte is read (the upstream must see none of it).
pub fn check_declared_length(
    framing: BodyFraming,
    max_body_bytes: u64,
) -> Result<(), InspectError> {
    match framing {
        BodyFraming::Length(n) if n > max_body_bytes => Err(InspectError::BodyTooLarge),
        _ => Ok(()),
    }
}

/// Per-request body state; lives in the request context.
#[derive(Debug, Clone)]
pub struct BodyWatch {
    max_bytes: u64,
    received: u64,
    rate: BodyRate,
    started: Instant,
}

impl BodyWatch {
    /// Start watching when the head has been read (`now`).
    pub fn new(max_bytes: u64, rate: BodyRate, now: Instant) -> Self {
        Self {
            max_bytes,
            received: 0,
            rate,
            started: now,
        }
    }

    /// Account a chunk of `len` bytes received at `now`. Chunked bodies can only be checked
    /// here, so this runs on every chunk regardless of the declared length.
    pub fn on_chunk(&mut self, len: usize, now: Instant) -> Result<(), InspectError> {
        self.received = self.received.saturating_add(len as u64);
        if self.received > self.max_bytes {
            return Err(InspectError::BodyTooLarge);
        }
        if self.rate.min_bytes_per_sec == 0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.started);
        let Some(enforced) = elapsed.checked_sub(self.rate.grace) else {
            return Ok(());
        };
        // received / enforced_secs >= min, in integers: received * 1000 >= min * enforced_ms
        let needed = u128::from(self.rate.min_bytes_per_sec) * enforced.as_millis();
        if u128::from(self.received) * 1000 < needed {
            return Err(InspectError::BodyTooSlow);
        }
        Ok(())
    }

    /// Bytes accounted so far.
    pub fn received(&self) -> u64 {
        self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOW: BodyRate = BodyRate {
        min_bytes_per_sec: 100,
        grace: Duration::from_secs(2),
    };

    #[test]
    fn declared_length_over_the_ceiling_is_refused_before_reading() {
        assert_eq!(
            check_declared_length(BodyFraming::Length(1024), 1024),
            Ok(())
        );
        assert_eq!(
            check_declared_length(BodyFraming::Length(1025), 1024),
            Err(InspectError::BodyTooLarge)
        );
        assert_eq!(check_declared_length(BodyFraming::Chunked, 0), Ok(()));
        assert_eq!(check_declared_length(BodyFraming::None, 0), Ok(()));
    }

    #[test]
    fn size_ceiling_is_inclusive_across_chunks() {
        let t = Instant::now();
        let mut w = BodyWatch::new(
            10,
            BodyRate {
                min_bytes_per_sec: 0,
                ..SLOW
            },
            t,
        );
        assert_eq!(w.on_chunk(6, t), Ok(()));
        assert_eq!(w.on_chunk(4, t), Ok(()));
        assert_eq!(w.received(), 10);
        assert_eq!(w.on_chunk(1, t), Err(InspectError::BodyTooLarge));
    }

    #[test]
    fn slow_bodies_are_refused_after_the_grace_period() {
        let t = Instant::now();
        let mut w = BodyWatch::new(1 << 20, SLOW, t);
        // within grace anything goes
        assert_eq!(w.on_chunk(1, t + Duration::from_secs(2)), Ok(()));
        // 3 s after grace needs 300 bytes; 1 + 299 = 300 is exactly enough
        assert_eq!(w.on_chunk(299, t + Duration::from_secs(5)), Ok(()));
        // 1 s later 400 are needed, 301 is not enough
        assert_eq!(
            w.on_chunk(1, t + Duration::from_secs(6)),
            Err(InspectError::BodyTooSlow)
        );
    }

    #[test]
    fn a_trickle_is_refused_and_a_steady_upload_is_not() {
        let t = Instant::now();
        let mut trickle = BodyWatch::new(1 << 20, SLOW, t);
        let mut refused = false;
        for s in 1..=60 {
            if trickle.on_chunk(10, t + Duration::from_secs(s)).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);

        let mut steady = BodyWatch::new(1 << 20, SLOW, t);
        for s in 1..=60 {
            assert_eq!(steady.on_chunk(150, t + Duration::from_secs(s)), Ok(()));
        }
    }
}
