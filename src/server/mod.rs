//! Pingora wiring: listeners, TLS, background services, reload, start-up and stop.

pub mod build;
pub mod dev_certs;
pub mod health;
pub mod lifecycle;
pub mod metrics_app;
pub mod readiness;
pub mod reload;
pub mod tls;
