//! The request pipeline: the Pingora `ProxyHttp` impl, the per-request context and the stage
//! order. `proxy.rs` is the one place that decides in which order the stages run.

pub mod answer;
pub mod auth_stage;
pub mod body;
pub mod ctx;
pub mod inspect_stage;
pub mod limit_stage;
pub mod privacy_stage;
pub mod proxy;
pub mod tiktok_egress;
pub mod webhook_ingress;
