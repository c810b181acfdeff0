//! The policy report: for each clause of the security policy (`POLICY.md`) that the gateway can
//! enforce, whether a loaded config meets it (PASS / WARN / FAIL) and the config evidence, by
//! YAML path; the organisational clauses are listed as not checked by the gateway.
//!
//! `report` holds the clause table and runs the checks (`checks`) over the validated config;
//! `render` writes it for people or as JSON. The same report is served at `GET /admin/policy`
//! (`admin`) and printed by `tiktok-gateway policy report`.

pub mod admin;
mod checks;
pub mod render;
pub mod report;

pub use report::{Finding, Report, Status, evaluate};
