//! Pingora wiring: listeners, TLS, background services, reload.

pub mod build;
pub mod dev_certs;
pub mod health;
pub mod metrics_app;
pub mod reload;
pub mod tls;
