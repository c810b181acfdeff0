//! What can go wrong in the state layer. Messages name what failed, never a URL, a password,
//! a token or an event body.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum StateError {
    /// The backend cannot be reached or refused the operation for a reason that may pass
    /// (connection refused, disk full, timeout). Callers answer 503 and retry later.
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
    /// The operation did not finish within `state.timeout`.
    #[error("state backend did not answer within {0} ms")]
    Timeout(u64),
    /// The stored schema is newer than this gateway understands: refusing to start.
    #[error(
        "state schema version {found} is newer than this gateway's {supported}: upgrade the gateway (refusing to start)"
    )]
    NewerSchema { found: i64, supported: i64 },
    /// A stored record cannot be decoded.
    #[error("state record damaged: {0}")]
    Corrupt(String),
    /// The caller passed something the store refuses (an empty key, a body too large).
    #[error("state: {0}")]
    Invalid(String),
}

impl StateError {
    /// A short, fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Timeout(_) => "timeout",
            Self::NewerSchema { .. } => "newer_schema",
            Self::Corrupt(_) => "corrupt",
            Self::Invalid(_) => "invalid",
        }
    }

    /// Whether the backend itself failed (as opposed to a refused input).
    pub fn is_backend_failure(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout(_))
    }
}
