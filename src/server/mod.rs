//! Pingora wiring: listeners, TLS, background services, reload.

pub mod auth_setup;
pub mod build;
pub mod dev_certs;
pub mod metrics_app;
pub mod reload;
pub mod state;
pub mod tiktok_services;
pub mod tls;
pub mod upstreams;
