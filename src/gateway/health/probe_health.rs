//! What the active probes say about one target: healthy or not, flipped only by a run of
//! consecutive results (the thresholds), so one lost probe does not take a target out.
//!
//! A target starts presumed healthy (a start or a reload never blocks traffic) and the first
//! probe result decides at once: a dead target is out after one interval, not three.

#[derive(Debug, Clone)]
pub struct ProbeHealth {
    healthy: bool,
    /// Whether any probe result has been seen yet.
    known: bool,
    /// Consecutive results that disagree with `healthy`.
    streak: u32,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl ProbeHealth {
    pub fn new(healthy_threshold: u32, unhealthy_threshold: u32) -> Self {
        Self {
            healthy: true,
            known: false,
            streak: 0,
            healthy_threshold: healthy_threshold.max(1),
            unhealthy_threshold: unhealthy_threshold.max(1),
        }
    }

    /// Healthy, or presumed so before the first probe.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Records one probe result; true when it flipped the verdict.
    pub fn observe(&mut self, passed: bool) -> bool {
        if !self.known {
            self.known = true;
            let flipped = passed != self.healthy;
            self.healthy = passed;
            self.streak = 0;
            return flipped;
        }
        if passed == self.healthy {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = if passed {
            self.healthy_threshold
        } else {
            self.unhealthy_threshold
        };
        if self.streak >= needed {
            self.healthy = passed;
            self.streak = 0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_result_decides_at_once() {
        let mut h = ProbeHealth::new(2, 3);
        assert!(h.healthy(), "presumed healthy before any probe");
        assert!(h.observe(false));
        assert!(!h.healthy());

        let mut h = ProbeHealth::new(2, 3);
        assert!(!h.observe(true));
        assert!(h.healthy());
    }

    #[test]
    fn flips_need_consecutive_results() {
        let mut h = ProbeHealth::new(2, 3);
        h.observe(true);
        assert!(!h.observe(false));
        assert!(!h.observe(false));
        // A pass breaks the run.
        assert!(!h.observe(true));
        assert!(!h.observe(false));
        assert!(!h.observe(false));
        assert!(h.healthy());
        assert!(h.observe(false), "the third failure in a row");
        assert!(!h.healthy());
        assert!(!h.observe(true));
        assert!(!h.healthy());
        assert!(h.observe(true), "the second pass in a row");
        assert!(h.healthy());
    }

    #[test]
    fn thresholds_of_one_flip_on_every_change() {
        let mut h = ProbeHealth::new(1, 1);
        h.observe(true);
        assert!(h.observe(false));
        assert!(h.observe(true));
        assert!(!h.observe(true));
    }
}
