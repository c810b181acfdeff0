//! Readiness: a registry of named causes that keep the gateway from doing its job. Components
//! report into it (`report("jwt:idp", Err(..))`, `report("jwt:idp", Ok(()))`); `/readyz` answers
//! 503 while any blocking cause is present and lists them. A check registered with
//! [`Readiness::expect`] counts as failing until its first report, so a gateway is never ready
//! before every check has passed once.
//!
//! Two weights: a **blocking** cause (JWT issuer without keys, webhook queue that cannot write,
//! shop without a usable token, Redis when limits fail closed) makes the gateway not ready; a
//! **degraded** one (Redis while a fallback keeps requests flowing) is listed but leaves it
//! ready: taking every replica out of service because a shared cache is down would turn a
//! degraded fleet into an outage. Draining is a blocking cause of its own.
//!
//! Reasons are shown on the unauthenticated metrics listener: they name the check and the kind
//! of failure, never a URL, a secret or a request's data.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use serde::Serialize;

/// How much a failing check matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Weight {
    /// The gateway cannot do its job: not ready.
    Blocking,
    /// Working with a fallback: listed, still ready.
    Degraded,
}

/// One current cause, as `/readyz` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    pub check: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
struct Check {
    weight: Weight,
    /// Why it fails; `None` while it passes.
    failing: Option<String>,
}

/// The registry. One per gateway; cheap to read.
#[derive(Debug, Default)]
pub struct Readiness {
    checks: RwLock<BTreeMap<String, Check>>,
    draining: AtomicBool,
}

/// The cause a graceful stop adds.
pub const DRAINING: &str = "draining";

/// What `/readyz` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub ready: bool,
    /// Blocking causes (draining first), in check-name order.
    pub causes: Vec<Cause>,
    /// Degraded checks: listed, not blocking.
    pub degraded: Vec<Cause>,
    /// Every check known, passing or not.
    pub checks: Vec<String>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a check that has not run yet: failing (with `weight`) until it reports.
    pub fn expect(&self, check: impl Into<String>, weight: Weight) {
        self.checks.write().entry(check.into()).or_insert(Check {
            weight,
            failing: Some("not checked yet".to_owned()),
        });
    }

    /// The outcome of a check: `Ok` clears it, `Err(reason)` records it with `weight`.
    pub fn report(&self, check: &str, weight: Weight, outcome: Result<(), String>) {
        let failing = outcome.err();
        // Read first: almost always nothing changes, and a write lock would contend with every
        // `/readyz`.
        let unchanged = self
            .checks
            .read()
            .get(check)
            .is_some_and(|c| c.weight == weight && c.failing == failing);
        if !unchanged {
            self.checks
                .write()
                .insert(check.to_owned(), Check { weight, failing });
        }
    }

    /// A graceful stop began: not ready from now on.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn report_now(&self) -> Report {
        let mut causes = Vec::new();
        if self.is_draining() {
            causes.push(Cause {
                check: DRAINING.to_owned(),
                reason: "the gateway is stopping".to_owned(),
            });
        }
        let mut degraded = Vec::new();
        let mut names = Vec::new();
        for (name, check) in self.checks.read().iter() {
            names.push(name.clone());
            let Some(reason) = &check.failing else {
                continue;
            };
            let cause = Cause {
                check: name.clone(),
                reason: reason.clone(),
            };
            match check.weight {
                Weight::Blocking => causes.push(cause),
                Weight::Degraded => degraded.push(cause),
            }
        }
        Report {
            ready: causes.is_empty(),
            causes,
            degraded,
            checks: names,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_checks_block_until_they_pass() {
        let r = Readiness::new();
        assert!(r.report_now().ready, "nothing registered");
        r.expect("jwt:idp", Weight::Blocking);
        r.expect("redis:rate_limits", Weight::Degraded);
        let now = r.report_now();
        assert!(!now.ready);
        assert_eq!(now.causes[0].check, "jwt:idp");
        assert_eq!(now.causes[0].reason, "not checked yet");
        assert_eq!(now.degraded[0].check, "redis:rate_limits");

        r.report("jwt:idp", Weight::Blocking, Ok(()));
        let now = r.report_now();
        assert!(now.ready, "a degraded check does not block");
        assert_eq!(now.degraded.len(), 1);
        assert_eq!(now.checks, ["jwt:idp", "redis:rate_limits"]);

        r.report("jwt:idp", Weight::Blocking, Err("no keys".into()));
        assert_eq!(
            r.report_now().causes,
            [Cause {
                check: "jwt:idp".into(),
                reason: "no keys".into()
            }]
        );
        // `expect` never hides a failure already reported.
        r.expect("jwt:idp", Weight::Blocking);
        assert_eq!(r.report_now().causes[0].reason, "no keys");
    }

    #[test]
    fn draining_blocks_and_comes_first() {
        let r = Readiness::new();
        r.report("webhook_queue", Weight::Blocking, Err("disk full".into()));
        r.begin_draining();
        let now = r.report_now();
        assert!(!now.ready);
        assert_eq!(now.causes[0].check, DRAINING);
        assert_eq!(now.causes[1].check, "webhook_queue");
    }
}
