//! The circuit breaker of one target: closed (traffic flows), open (the target is skipped for the
//! cool-down), half-open (one request may try it; its outcome closes or re-opens the breaker).
//! Pure state: time comes in as an argument, so every transition is tested without waiting.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    /// Skipped until `until`.
    Open {
        until: Instant,
    },
    /// The cool-down is over; `trial` is when the one admitted request started, if one is out.
    HalfOpen {
        trial: Option<Instant>,
    },
}

/// Whether a request may go to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Yes, as the half-open trial: its outcome decides the breaker.
    Trial,
    No,
}

/// What a report did to the breaker (for the log and the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    Opened,
    Closed,
}

#[derive(Debug)]
pub struct Breaker {
    /// Consecutive failures that open it; 0: never opens.
    threshold: u32,
    cool_down: Duration,
    state: State,
    /// Consecutive failures while closed.
    failures: u32,
}

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold,
            cool_down,
            state: State::Closed,
            failures: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Decides one request. After the cool-down the first request becomes the trial; a trial
    /// that never reports back (its request vanished) is replaced after another cool-down.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed => Admit::Yes,
            State::Open { until } if now < until => Admit::No,
            State::HalfOpen {
                trial: Some(started),
            } if now < started + self.cool_down => Admit::No,
            State::Open { .. } | State::HalfOpen { .. } => {
                self.state = State::HalfOpen { trial: Some(now) };
                Admit::Trial
            }
        }
    }

    /// A request succeeded. In half-open that closes the breaker; while open, a success from a
    /// request admitted before it opened says nothing about now and changes nothing.
    pub fn success(&mut self) -> Change {
        match self.state {
            State::Closed => {
                self.failures = 0;
                Change::None
            }
            State::HalfOpen { .. } => {
                self.close();
                Change::Closed
            }
            State::Open { .. } => Change::None,
        }
    }

    /// A request failed: the threshold-th consecutive failure opens the breaker, and a failed
    /// half-open trial opens it again for another cool-down.
    pub fn failure(&mut self, now: Instant) -> Change {
        if self.threshold == 0 {
            return Change::None;
        }
        match self.state {
            State::Closed => {
                self.failures += 1;
                if self.failures >= self.threshold {
                    self.open(now);
                    Change::Opened
                } else {
                    Change::None
                }
            }
            State::HalfOpen { .. } => {
                self.open(now);
                Change::Opened
            }
            State::Open { .. } => Change::None,
        }
    }

    /// The trial request ended without a verdict (the client went away): the next request may
    /// try instead.
    pub fn release_trial(&mut self) {
        if let State::HalfOpen { trial: Some(_) } = self.state {
            self.state = State::HalfOpen { trial: None };
        }
    }

    /// An active probe passed. Once the cool-down is over that is as good as a trial request,
    /// so an idle target does not stay ejected until traffic happens to try it.
    pub fn probe_passed(&mut self, now: Instant) -> Change {
        match self.state {
            State::Open { until } if now >= until => {
                self.close();
                Change::Closed
            }
            State::HalfOpen { .. } => {
                self.close();
                Change::Closed
            }
            _ => Change::None,
        }
    }

    /// When the breaker lets a request try again, if it is keeping the target out.
    pub fn next_chance(&self, now: Instant) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            State::Open { until } => Some(until.max(now)),
            State::HalfOpen {
                trial: Some(started),
            } => Some((started + self.cool_down).max(now)),
            State::HalfOpen { trial: None } => Some(now),
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = State::Open {
            until: now + self.cool_down,
        };
        self.failures = 0;
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(10);

    fn breaker() -> (Breaker, Instant) {
        (Breaker::new(3, COOL), Instant::now())
    }

    #[test]
    fn opens_only_after_consecutive_failures() {
        let (mut b, t) = breaker();
        assert_eq!(b.failure(t), Change::None);
        assert_eq!(b.failure(t), Change::None);
        // A success in between resets the count.
        assert_eq!(b.success(), Change::None);
        assert_eq!(b.failure(t), Change::None);
        assert_eq!(b.failure(t), Change::None);
        assert_eq!(b.admit(t), Admit::Yes);
        assert_eq!(b.failure(t), Change::Opened);
        assert_eq!(b.state(), State::Open { until: t + COOL });
        assert_eq!(b.admit(t), Admit::No);
        assert_eq!(b.admit(t + COOL - Duration::from_millis(1)), Admit::No);
    }

    #[test]
    fn half_open_admits_one_trial_whose_success_closes() {
        let (mut b, t) = breaker();
        for _ in 0..3 {
            b.failure(t);
        }
        let later = t + COOL;
        assert_eq!(b.admit(later), Admit::Trial);
        // Only one request tries while the trial is out.
        assert_eq!(b.admit(later), Admit::No);
        assert_eq!(b.admit(later + Duration::from_secs(1)), Admit::No);
        assert_eq!(b.success(), Change::Closed);
        assert!(b.is_closed());
        assert_eq!(b.admit(later), Admit::Yes);
        // Closed again from scratch: it takes three failures to open once more.
        assert_eq!(b.failure(later), Change::None);
        assert_eq!(b.failure(later), Change::None);
        assert_eq!(b.failure(later), Change::Opened);
    }

    #[test]
    fn a_failed_trial_reopens_for_another_cool_down() {
        let (mut b, t) = breaker();
        for _ in 0..3 {
            b.failure(t);
        }
        let later = t + COOL;
        assert_eq!(b.admit(later), Admit::Trial);
        assert_eq!(b.failure(later), Change::Opened);
        assert_eq!(
            b.state(),
            State::Open {
                until: later + COOL
            }
        );
        assert_eq!(b.admit(later + Duration::from_secs(1)), Admit::No);
        assert_eq!(b.admit(later + COOL), Admit::Trial);
    }

    #[test]
    fn a_vanished_trial_is_released_or_expires() {
        let (mut b, t) = breaker();
        for _ in 0..3 {
            b.failure(t);
        }
        let later = t + COOL;
        assert_eq!(b.admit(later), Admit::Trial);
        b.release_trial();
        assert_eq!(b.state(), State::HalfOpen { trial: None });
        assert_eq!(b.admit(later), Admit::Trial);
        // Never reported nor released: another request may try after a cool-down.
        assert_eq!(b.admit(later + COOL - Duration::from_millis(1)), Admit::No);
        assert_eq!(b.admit(later + COOL), Admit::Trial);
    }

    #[test]
    fn reports_while_open_change_nothing() {
        let (mut b, t) = breaker();
        for _ in 0..3 {
            b.failure(t);
        }
        let open = b.state();
        assert_eq!(b.success(), Change::None);
        assert_eq!(b.failure(t + Duration::from_secs(1)), Change::None);
        assert_eq!(
            b.state(),
            open,
            "a late failure does not extend the cool-down"
        );
    }

    #[test]
    fn a_passing_probe_closes_only_after_the_cool_down() {
        let (mut b, t) = breaker();
        for _ in 0..3 {
            b.failure(t);
        }
        assert_eq!(b.probe_passed(t + Duration::from_secs(1)), Change::None);
        assert!(!b.is_closed());
        assert_eq!(b.probe_passed(t + COOL), Change::Closed);
        assert!(b.is_closed());
        assert_eq!(b.probe_passed(t + COOL), Change::None);
    }

    #[test]
    fn threshold_zero_never_opens() {
        let mut b = Breaker::new(0, COOL);
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(b.failure(t), Change::None);
        }
        assert_eq!(b.admit(t), Admit::Yes);
    }

    #[test]
    fn next_chance_says_when_the_target_may_be_tried() {
        let (mut b, t) = breaker();
        assert_eq!(b.next_chance(t), None);
        for _ in 0..3 {
            b.failure(t);
        }
        assert_eq!(b.next_chance(t), Some(t + COOL));
        b.admit(t + COOL);
        assert_eq!(b.next_chance(t + COOL), Some(t + COOL + COOL));
    }
}
