//! The gateway's state: the compiled, immutable config snapshot every request reads (routes with
//! direct handles to their auth requirement, limiters, upstream plan, TikTok resolver, privacy
//! policy and metric handles), how it is built from a validated config, and the long-lived
//! services that outlive a reload (upstream registry, JWT key caches, TikTok tokens and queue).
//! Nothing here knows about Pingora's request phases (`pipeline/`) or its server (`server/`).

pub mod auth;
pub mod health;
pub mod metrics;
pub mod route;
pub mod router;
pub mod snapshot;
pub mod state;
pub mod state_services;
pub mod tiktok;
pub mod upstream_call;
pub mod upstreams;
pub mod webhook_delivery;
