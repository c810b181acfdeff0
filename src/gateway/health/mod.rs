//! Upstream target health: active probes (`health_check`) and passive ejection by a circuit
//! breaker per target (`circuit_breaker`). Every way the gateway reaches an upstream (proxied
//! routes, TikTok egress, webhook delivery) picks its target through a [`pool::Pool`] and
//! reports the outcome on its [`endpoint::Attempt`], so a target that is down is skipped by all
//! of them until it recovers.

pub mod breaker;
pub mod checker;
pub mod endpoint;
pub mod pool;
pub mod probe;
pub mod probe_health;
