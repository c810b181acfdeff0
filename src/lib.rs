//! tiktok-gateway: a security gateway on Pingora between order-management services and TikTok Shop.
//!
//! One folder per concern; `pipeline` decides the order in which they run for each request.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod gateway;
pub mod inspect;
pub mod limit;
pub mod ops;
pub mod pipeline;
pub mod privacy;
pub mod sandbox;
pub mod server;
pub mod telemetry;
pub mod tiktok;
pub mod transport;
