//! Rate limiting: keyed GCRA locally (governor) or fleet-wide on Redis (policy §3 availability).

mod decision;
mod headers;
mod local;
mod spec;
mod time;

pub use decision::{Decision, DecisionSource, LimitId, most_restrictive};
pub use headers::{PolicyLabel, RATELIMIT, RATELIMIT_POLICY, RETRY_AFTER, RateLimitHeaders};
pub use spec::{KeyKind, LimitSpec, MAX_COUNT, Period, Rate, SpecError};
pub use time::MonotonicClock;
