//! Rate limiting (policy §3 availability, §8 API abuse).
//!
//! - [`RateLimiter`]: every route's limits; keyed GCRA in process (`governor`, bounded memory)
//!   or shared by the fleet on Redis (one atomic Lua script per decision) with a fallback.
//! - [`TrustedProxies`]: the client address a `client_ip` limit counts by.
//! - [`OutboundPacer`]: pacing of calls to TikTok per (app, shop, endpoint), with backoff when
//!   TikTok throttles.

mod client_ip;
mod decision;
mod fallback;
mod headers;
mod limiter;
mod local;
mod metrics;
mod pacer;
mod redis;
mod spec;
mod time;

pub use client_ip::{ClientIpError, TrustedProxies};
pub use decision::{Decision, DecisionSource, LimitId, most_restrictive};
pub use fallback::{OnBackendError, UnknownFallback};
pub use headers::{PolicyLabel, RATELIMIT, RATELIMIT_POLICY, RETRY_AFTER, RateLimitHeaders};
pub use limiter::{Backend, BuildError, LimitSettings, RateLimitSettings, RateLimiter};
pub use pacer::{OutboundPacer, PaceKey, PacerSettings, RetryAfter};
pub use redis::{RedisLimitError, RedisSettings, RedisSetupError};
pub use spec::{KeyKind, LimitSpec, MAX_COUNT, Period, Rate, SpecError};
pub use time::MonotonicClock;
