//! Operator tooling: commands that help deploy and watch the gateway rather than being it
//! (`tiktok-gateway schema`, `tiktok-gateway health`, `tiktok-gateway audit`).

pub mod admin_client;
pub mod audit_cli;
pub mod health_probe;
pub mod schema;
