//! tiktok-gateway: a security gateway on Pingora between order-management services and TikTok Shop.
//!
//! One folder per concern; `pipeline` decides the order in which they run for each request.
//!
//! `demo` and `sandbox` are development code behind the `demo` cargo feature (on by default, off
//! in production builds). The sandboxes are also built for this crate's own unit tests.

pub mod admin;
pub mod allocator;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod gateway;
pub mod inspect;
pub mod limit;
pub mod ops;
pub mod pipeline;
pub mod policy;
pub mod privacy;
#[cfg(any(test, feature = "demo"))]
pub mod sandbox;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tiktok;
pub mod transport;
