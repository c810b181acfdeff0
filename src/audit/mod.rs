//! The audit trail (POLICY.md §13): who did what to the gateway, and what the gateway refused or
//! failed to do on its own (admin actions, config reloads, shop authorizations and revocations,
//! block-list changes, token refresh failures, PII-leak blocks, webhook signature failures).
//!
//! Every part of the gateway reports through one [`AuditLog`] handle (`Gateway::audit`). A
//! record holds no secret and no buyer data: subjects, key names, shop ids and config hashes are
//! fine; tokens, codes, bodies and buyer fields never are.

pub mod chain;
pub mod checkpoint;
mod event;

pub use event::{AuditEvent, Outcome};

/// Where audit records go. Cheap to clone through an `Arc`; `record` never blocks a request.
#[derive(Debug, Default)]
pub struct AuditLog {}

impl AuditLog {
    pub fn new() -> Self {
        Self {}
    }

    /// Records `event`. Also written to the application log under the `audit` target.
    pub fn record(&self, event: AuditEvent) {
        tracing::info!(
            target: "audit",
            action = event.action,
            outcome = event.outcome.as_str(),
            actor = event.actor.as_deref().unwrap_or("system"),
            detail = %serde_json::Value::Object(event.detail.clone()),
        );
    }
}
