//! One audit record as its producer describes it.

use serde_json::{Map, Value};

/// What became of the action a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The action was permitted and done.
    Allowed,
    /// The action was refused (bad credentials, forged state, wrong signature ...).
    Refused,
    /// The gateway tried and failed (token host error, store unavailable ...).
    Failed,
    /// Something observed rather than done (a shop's authorization is about to expire).
    Noted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Noted => "noted",
        }
    }
}

/// An audit record before it is stored: `action` is a dotted name fixed in code
/// (`admin.blocks.add`, `config.reload`, `shop.authorized` ...), `actor` the subject that acted
/// (`None` for the gateway itself), `detail` a small JSON object of non-secret facts.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub action: &'static str,
    pub outcome: Outcome,
    pub actor: Option<String>,
    pub detail: Map<String, Value>,
}

impl AuditEvent {
    pub fn new(action: &'static str, outcome: Outcome) -> Self {
        Self {
            action,
            outcome,
            actor: None,
            detail: Map::new(),
        }
    }

    pub fn actor(mut self, subject: impl Into<String>) -> Self {
        self.actor = Some(subject.into());
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }
}
