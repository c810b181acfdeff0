//! Operator tooling: commands that help deploy and watch the gateway rather than being it
//! (`tiktok-gateway schema`, `tiktok-gateway health`).

pub mod health_probe;
pub mod schema;
